//! The embedded store's write transaction: one processor batch — events (deduplicated by id),
//! the timeline index, visitor profiles with their rank indexes, sessions, dead letters, and the
//! lead, alert and insight records — committed atomically or not at all. Event bodies go to
//! the append-only segments (`bodies.rs`), written and synced just before the commit.

use redb::{Database, ReadableTable};

use super::bodies::{self, Appender};
use super::{alerts, db_err, encode, insights, leads, profiles, rank_kind, DEAD_LETTERS, EVENTS, EVENT_IDS, SESSIONS, SORTS, VISITORS, VISITOR_EVENTS, VISITOR_RANK, VISITOR_SITES};
use crate::{Result, WriteBatch, WriteOutcome};

pub(super) fn write(db: &Database, appender: &mut Appender, batch: &WriteBatch) -> Result<WriteOutcome> {
    let txn = db.begin_write().map_err(db_err)?;
    appender.begin()?;
    let mut outcome = WriteOutcome::default();
    {
        let mut ids = txn.open_table(EVENT_IDS).map_err(db_err)?;
        let mut events = txn.open_table(EVENTS).map_err(db_err)?;
        let mut timeline = txn.open_table(VISITOR_EVENTS).map_err(db_err)?;
        for event in &batch.events {
            let id = event.event_id.as_u128();
            if ids.get(id).map_err(db_err)?.is_some() {
                outcome.duplicates_skipped += 1;
                continue;
            }
            ids.insert(id, ()).map_err(db_err)?;
            let at = appender.push(&encode(event)?, bodies::kind_of(event))?;
            events.insert((event.site_id.as_str(), event.ts_ms, id), at).map_err(db_err)?;
            timeline
                .insert((event.site_id.as_str(), event.visitor_id.as_str(), event.ts_ms, id), ())
                .map_err(db_err)?;
            outcome.events_written += 1;
        }
        let mut visitors = txn.open_table(VISITORS).map_err(db_err)?;
        let mut ranks = txn.open_table(VISITOR_RANK).map_err(db_err)?;
        let mut visitor_sites = txn.open_table(VISITOR_SITES).map_err(db_err)?;
        for profile in &batch.visitors {
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
                        ranks.remove((key.0, rank_kind(sort, old_bot), value, key.1)).map_err(db_err)?;
                    }
                }
                None => {
                    visitor_sites.insert((key.1, key.0), ()).map_err(db_err)?;
                }
            }
            for (sort, value) in SORTS.into_iter().zip(values) {
                ranks.insert((key.0, rank_kind(sort, is_bot), value, key.1), ()).map_err(db_err)?;
            }
        }
        let mut sessions = txn.open_table(SESSIONS).map_err(db_err)?;
        for session in &batch.sessions {
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
    }
    appender.flush(&txn)?;
    txn.commit().map_err(db_err)?;
    Ok(outcome)
}
