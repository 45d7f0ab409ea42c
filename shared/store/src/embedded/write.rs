//! The embedded store's write transaction: one processor batch — events (deduplicated by id),
//! the timeline index, visitor profiles with their rank indexes, sessions, dead letters, and the
//! lead, alert and insight records — committed atomically or not at all. Event bodies go to
//! the append-only segments (`bodies.rs`), written and synced just before the commit.

use redb::{Database, ReadableTable};

use super::bodies::{self, Appender};
use super::{alerts, db_err, encode, insights, leads, profiles, rank_kind, DEAD_LETTERS, EVENTS, RECORD_POSITIONS, EVENT_IDS, SESSIONS, SORTS, VISITORS, VISITOR_EVENTS, VISITOR_RANK, VISITOR_SITES};
use crate::{Result, WriteBatch, WriteOutcome};

pub(super) fn write(db: &Database, appender: &mut Appender, batch: &WriteBatch) -> Result<WriteOutcome> {
    let txn = db.begin_write().map_err(db_err)?;
    appender.begin()?;
    let mut outcome = WriteOutcome::default();
    {
        // Each table's keys go in sorted order: consecutive inserts then walk the same B-tree
        // path and land on leaves this transaction has already copied, instead of a random
        // page per key.
        let mut ids = txn.open_table(EVENT_IDS).map_err(db_err)?;
        let mut by_id: Vec<usize> = (0..batch.events.len()).collect();
        by_id.sort_by_key(|&i| batch.events[i].event_id.as_u128());
        let mut fresh = vec![false; batch.events.len()];
        for i in by_id {
            // The insert returns the entry it replaced: one walk both checks and records the
            // id. The sort is stable, so a repeat within the batch loses to its first copy.
            if ids.insert(batch.events[i].event_id.as_u128(), ()).map_err(db_err)?.is_some() {
                outcome.duplicates_skipped += 1;
            } else {
                fresh[i] = true;
            }
        }
        // Bodies and the time-keyed events table keep the batch's order (close to time order).
        let mut events = txn.open_table(EVENTS).map_err(db_err)?;
        let mut timeline_keys = Vec::with_capacity(batch.events.len());
        for (event, _) in batch.events.iter().zip(&fresh).filter(|(_, fresh)| **fresh) {
            let id = event.event_id.as_u128();
            let at = appender.push(&encode(event)?, bodies::kind_of(event))?;
            events.insert((event.site_id.as_str(), event.ts_ms, id), at).map_err(db_err)?;
            timeline_keys.push((event.site_id.as_str(), event.visitor_id.as_str(), event.ts_ms, id));
            outcome.events_written += 1;
        }
        timeline_keys.sort_unstable();
        let mut timeline = txn.open_table(VISITOR_EVENTS).map_err(db_err)?;
        for key in timeline_keys {
            timeline.insert(key, ()).map_err(db_err)?;
        }

        let mut visitors = txn.open_table(VISITORS).map_err(db_err)?;
        let mut profiles_in_order: Vec<_> = batch.visitors.iter().collect();
        profiles_in_order.sort_by(|a, b| (&a.site_id, &a.visitor_id).cmp(&(&b.site_id, &b.visitor_id)));
        // A visitor listed twice keeps its last state (as sequential upserts would).
        profiles_in_order.reverse();
        profiles_in_order.dedup_by(|a, b| a.site_id == b.site_id && a.visitor_id == b.visitor_id);
        profiles_in_order.reverse();
        let mut rank_removals = Vec::new();
        let mut rank_inserts = Vec::new();
        let mut new_visitors = Vec::new();
        for profile in profiles_in_order {
            let key = (profile.site_id.as_str(), profile.visitor_id.as_str());
            // The replaced row carries the rank keys it was indexed under (profiles.rs).
            let previous = match visitors.insert(key, profiles::pack(profile)?.as_slice()).map_err(db_err)? {
                Some(old) => Some(profiles::rank_keys(old.value())?),
                None => None,
            };
            let (is_bot, values) = profiles::rank_keys_of(profile);
            if previous == Some((is_bot, values)) {
                continue;
            }
            match previous {
                Some((old_bot, old_values)) => {
                    for (sort, value) in SORTS.into_iter().zip(old_values) {
                        rank_removals.push((key.0, rank_kind(sort, old_bot), value, key.1));
                    }
                }
                None => new_visitors.push((key.1, key.0)),
            }
            for (sort, value) in SORTS.into_iter().zip(values) {
                rank_inserts.push((key.0, rank_kind(sort, is_bot), value, key.1));
            }
        }
        // Removals before inserts: a key removed and added again (one sort's value unchanged
        // while another's moved) ends up present, as with the per-profile order.
        rank_removals.sort_unstable();
        rank_inserts.sort_unstable();
        let mut ranks = txn.open_table(VISITOR_RANK).map_err(db_err)?;
        for key in rank_removals {
            ranks.remove(key).map_err(db_err)?;
        }
        for key in rank_inserts {
            ranks.insert(key, ()).map_err(db_err)?;
        }
        new_visitors.sort_unstable();
        let mut visitor_sites = txn.open_table(VISITOR_SITES).map_err(db_err)?;
        for key in new_visitors {
            visitor_sites.insert(key, ()).map_err(db_err)?;
        }
        let mut sessions = txn.open_table(SESSIONS).map_err(db_err)?;
        let mut sessions_in_order: Vec<_> = batch.sessions.iter().collect();
        // Stable: a session listed twice is written in batch order, so its last state stays.
        sessions_in_order.sort_by(|a, b| (&a.site_id, a.start_ms, &a.session_id).cmp(&(&b.site_id, b.start_ms, &b.session_id)));
        for session in sessions_in_order {
            sessions
                .insert((session.site_id.as_str(), session.start_ms, session.session_id.as_str()), encode(session)?.as_slice())
                .map_err(db_err)?;
        }
        let mut dead = txn.open_table(DEAD_LETTERS).map_err(db_err)?;
        for letter in &batch.dead_letters {
            dead.insert((letter.site_id.as_str(), letter.received_at_ms, letter.id.as_u128()), encode(letter)?.as_slice())
                .map_err(db_err)?;
        }
        leads::write(&txn, batch)?;
        alerts::insert_new(&txn, &batch.alerts)?;
        insights::upsert(&txn, &batch.insight_requests)?;
        if !batch.log_positions.is_empty() {
            let mut positions = txn.open_table(RECORD_POSITIONS).map_err(db_err)?;
            for (key, &offset) in &batch.log_positions {
                let highest = positions.get(key.as_str()).map_err(db_err)?.map_or(offset, |old| old.value().max(offset));
                positions.insert(key.as_str(), highest).map_err(db_err)?;
            }
        }
    }
    appender.flush(&txn)?;
    txn.commit().map_err(db_err)?;
    Ok(outcome)
}
