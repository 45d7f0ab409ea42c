//! The embedded store's [`PrivacyStore`]: erasure tombstones in `erasures`, per-site retention,
//! and the erase itself: one write transaction removes every index entry and record of the subject, then the
//! event bodies it pointed at are overwritten with zeros in their segments (bodies.rs), so the
//! bytes are gone from disk and not only unreachable.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use crm_schemas::{add_count, Alert, Conversation, DeadLetter, Erasure, IdentityConflict, IdentityOverride, InsightRequest, OverrideKind, Session};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::bodies::{self, BodyRef};
use super::{alerts, db_err, decode, encode, insights, kb, leads, profiles, rank_kind, EmbeddedStore, DEAD_LETTERS, EVENTS, META, SESSIONS, SORTS, VISITORS, VISITOR_EVENTS, VISITOR_RANK, VISITOR_SITES};
use crate::{PrivacyStore, Result, ERASURE_REVISION_KEY};

/// (site, erasure id) → the erasure.
const ERASURES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("erasures");
/// (segment, offset) → length of erased event bodies not yet overwritten: written in the erase's
/// transaction, cleared once the bytes are zeros, finished at the next open after a crash.
const UNZEROED: TableDefinition<(u32, u64), u32> = TableDefinition::new("erased_bodies_unzeroed");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(ERASURES).map_err(db_err)?;
    txn.open_table(UNZEROED).map_err(db_err)?;
    Ok(())
}

/// Overwrites the bodies an erase committed but a crash kept from zeroing (at open).
pub(super) fn finish_zeroing(db: &Database, dir: &std::path::Path) -> Result<usize> {
    let pending: Vec<BodyRef> = {
        let txn = db.begin_read().map_err(db_err)?;
        let table = txn.open_table(UNZEROED).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (key, len) = row.map_err(db_err)?;
            let (segment, offset) = key.value();
            out.push((segment, offset, len.value(), 0));
        }
        out
    };
    if !pending.is_empty() {
        bodies::zero(dir, &pending)?;
        clear_unzeroed(db)?;
    }
    Ok(pending.len())
}

fn clear_unzeroed(db: &Database) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(UNZEROED).map_err(db_err)?.retain(|_, _| false).map_err(db_err)?;
    txn.commit().map_err(db_err)
}

fn put(db: &Database, erasure: &Erasure) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut table = txn.open_table(ERASURES).map_err(db_err)?;
        table.insert((erasure.site_id.as_str(), erasure.erasure_id.as_str()), encode(erasure)?.as_slice()).map_err(db_err)?;
        txn.open_table(META).map_err(db_err)?.insert(ERASURE_REVISION_KEY, erasure.erasure_id.as_bytes()).map_err(db_err)?;
    }
    txn.commit().map_err(db_err)
}

fn list(db: &Database, site: &str) -> Result<Vec<Erasure>> {
    let mut out: Vec<Erasure> = super::site_rows(db, ERASURES, site)?;
    out.sort_by(|a, b| (a.at_ms, &a.erasure_id).cmp(&(b.at_ms, &b.erasure_id)));
    Ok(out)
}

/// Keys of a `(site, …)` table whose value `doomed` picks, read before any removal.
macro_rules! doomed_keys {
    ($table:expr, $lower:expr, $site:expr, |$key:ident, $value:ident| $pick:expr, $own:expr) => {{
        let mut keys = Vec::new();
        for row in $table.range($lower..).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let $key = k.value();
            if $key.0 != $site {
                break;
            }
            let $value = v.value();
            if $pick {
                keys.push($own);
            }
        }
        keys
    }};
}

/// Everything about the subject in one transaction; returns the counts and the bodies to zero.
fn erase(txn: &WriteTransaction, erasure: &Erasure, needles: &[String]) -> Result<(BTreeMap<String, u64>, Vec<BodyRef>)> {
    let site = erasure.site_id.as_str();
    let visitors: HashSet<&str> = erasure.visitor_ids.iter().map(String::as_str).collect();
    let lead_ids: HashSet<&str> = erasure.lead_ids.iter().map(String::as_str).collect();
    let mut counts = BTreeMap::new();
    let mut bodies = Vec::new();

    // Events: the timeline index names each of the visitor's (ts, id) keys.
    let mut timeline = txn.open_table(VISITOR_EVENTS).map_err(db_err)?;
    let mut events = txn.open_table(EVENTS).map_err(db_err)?;
    for visitor in &visitors {
        let keys: Vec<(i64, u128)> = {
            let mut keys = Vec::new();
            for row in timeline.range((site, *visitor, i64::MIN, 0u128)..=(site, *visitor, i64::MAX, u128::MAX)).map_err(db_err)? {
                let (key, _) = row.map_err(db_err)?;
                let (_, _, ts, id) = key.value();
                keys.push((ts, id));
            }
            keys
        };
        for (ts, id) in &keys {
            timeline.remove((site, *visitor, *ts, *id)).map_err(db_err)?;
            if let Some(at) = events.remove((site, *ts, *id)).map_err(db_err)? {
                bodies.push(at.value());
            }
        }
        add_count(&mut counts, "events", keys.len() as u64);
    }

    // Profiles with their rank entries.
    let mut profile_rows = txn.open_table(VISITORS).map_err(db_err)?;
    let mut ranks = txn.open_table(VISITOR_RANK).map_err(db_err)?;
    let mut visitor_sites = txn.open_table(VISITOR_SITES).map_err(db_err)?;
    for visitor in &visitors {
        let removed = profile_rows.remove((site, *visitor)).map_err(db_err)?.map(|row| profiles::rank_keys(row.value())).transpose()?;
        if let Some((is_bot, values)) = removed {
            for (sort, value) in SORTS.into_iter().zip(values) {
                ranks.remove((site, rank_kind(sort, is_bot), value, *visitor)).map_err(db_err)?;
            }
            visitor_sites.remove((*visitor, site)).map_err(db_err)?;
            add_count(&mut counts, "profiles", 1);
        }
    }

    let mut sessions = txn.open_table(SESSIONS).map_err(db_err)?;
    let doomed = doomed_keys!(sessions, (site, i64::MIN, ""), site, |key, value| visitors.contains(decode::<Session>(value)?.visitor_id.as_str()), (key.1, key.2.to_owned()));
    for (start, id) in &doomed {
        sessions.remove((site, *start, id.as_str())).map_err(db_err)?;
    }
    add_count(&mut counts, "sessions", doomed.len() as u64);

    let mut dead = txn.open_table(DEAD_LETTERS).map_err(db_err)?;
    let doomed = doomed_keys!(dead, (site, i64::MIN, 0u128), site, |key, value| {
        let letter: DeadLetter = decode(value)?;
        needles.iter().any(|n| !n.is_empty() && letter.payload.contains(n.as_str()))
    }, (key.1, key.2));
    for (at, id) in &doomed {
        dead.remove((site, *at, *id)).map_err(db_err)?;
    }
    add_count(&mut counts, "dead_letters", doomed.len() as u64);

    erase_lead_records(txn, site, &visitors, &lead_ids, &mut counts)?;
    erase_conversations(txn, site, &visitors, &mut counts)?;
    Ok((counts, bodies))
}

/// Site retention in one transaction: the site's events before `before` (found through the
/// timeline index, which needs no body read), sessions started and dead letters received before
/// it. Returns the counts and the bodies to zero.
fn drop_before(txn: &WriteTransaction, site: &str, before: i64) -> Result<(BTreeMap<String, u64>, Vec<BodyRef>)> {
    let mut counts = BTreeMap::new();
    let mut bodies = Vec::new();
    let mut timeline = txn.open_table(VISITOR_EVENTS).map_err(db_err)?;
    let old: Vec<(String, i64, u128)> = {
        let mut keys = Vec::new();
        for row in timeline.range((site, "", i64::MIN, 0u128)..).map_err(db_err)? {
            let (key, _) = row.map_err(db_err)?;
            let (s, visitor, ts, id) = key.value();
            if s != site {
                break;
            }
            if ts < before {
                keys.push((visitor.to_owned(), ts, id));
            }
        }
        keys
    };
    let mut events = txn.open_table(EVENTS).map_err(db_err)?;
    for (visitor, ts, id) in &old {
        timeline.remove((site, visitor.as_str(), *ts, *id)).map_err(db_err)?;
        if let Some(at) = events.remove((site, *ts, *id)).map_err(db_err)? {
            bodies.push(at.value());
        }
    }
    add_count(&mut counts, "events", old.len() as u64);
    let mut sessions = txn.open_table(SESSIONS).map_err(db_err)?;
    let doomed: Vec<(i64, String)> = {
        let mut keys = Vec::new();
        for row in sessions.range((site, i64::MIN, "")..(site, before, "")).map_err(db_err)? {
            let (key, _) = row.map_err(db_err)?;
            keys.push((key.value().1, key.value().2.to_owned()));
        }
        keys
    };
    for (start, id) in &doomed {
        sessions.remove((site, *start, id.as_str())).map_err(db_err)?;
    }
    add_count(&mut counts, "sessions", doomed.len() as u64);
    let mut dead = txn.open_table(DEAD_LETTERS).map_err(db_err)?;
    let doomed: Vec<(i64, u128)> = {
        let mut keys = Vec::new();
        for row in dead.range((site, i64::MIN, 0u128)..(site, before, 0u128)).map_err(db_err)? {
            let (key, _) = row.map_err(db_err)?;
            keys.push((key.value().1, key.value().2));
        }
        keys
    };
    for (at, id) in &doomed {
        dead.remove((site, *at, *id)).map_err(db_err)?;
    }
    add_count(&mut counts, "dead_letters", doomed.len() as u64);
    Ok((counts, bodies))
}

fn erase_lead_records(txn: &WriteTransaction, site: &str, visitors: &HashSet<&str>, lead_ids: &HashSet<&str>, counts: &mut BTreeMap<String, u64>) -> Result<()> {
    let mut leads_table = txn.open_table(leads::LEADS).map_err(db_err)?;
    let mut crm = txn.open_table(leads::LEAD_CRM).map_err(db_err)?;
    let mut audit = txn.open_table(leads::LEAD_AUDIT).map_err(db_err)?;
    let mut scores = txn.open_table(leads::SCORES).map_err(db_err)?;
    let mut requests = txn.open_table(insights::REQUESTS).map_err(db_err)?;
    let mut requests_due = txn.open_table(insights::DUE).map_err(db_err)?;
    let mut insight_rows = txn.open_table(insights::INSIGHTS).map_err(db_err)?;
    for lead in lead_ids {
        add_count(counts, "leads", leads_table.remove((site, *lead)).map_err(db_err)?.is_some() as u64);
        add_count(counts, "lead_crm", crm.remove((site, *lead)).map_err(db_err)?.is_some() as u64);
        let audit_keys: Vec<(i64, u128)> = {
            let mut keys = Vec::new();
            for row in audit.range((site, *lead, i64::MIN, 0u128)..=(site, *lead, i64::MAX, u128::MAX)).map_err(db_err)? {
                let (key, _) = row.map_err(db_err)?;
                keys.push((key.value().2, key.value().3));
            }
            keys
        };
        for (at, id) in &audit_keys {
            audit.remove((site, *lead, *at, *id)).map_err(db_err)?;
        }
        add_count(counts, "lead_audit", audit_keys.len() as u64);
        let score_keys: Vec<i64> = {
            let mut keys = Vec::new();
            for row in scores.range((site, *lead, i64::MIN)..=(site, *lead, i64::MAX)).map_err(db_err)? {
                keys.push(row.map_err(db_err)?.0.value().2);
            }
            keys
        };
        for at in &score_keys {
            scores.remove((site, *lead, *at)).map_err(db_err)?;
        }
        add_count(counts, "score_points", score_keys.len() as u64);
        let request = requests.remove((site, *lead)).map_err(db_err)?.map(|v| decode::<InsightRequest>(v.value())).transpose()?;
        if let Some(request) = request {
            requests_due.remove((request.next_attempt_ms, site, *lead)).map_err(db_err)?;
            add_count(counts, "insight_requests", 1);
        }
        add_count(counts, "insights", insight_rows.remove((site, *lead)).map_err(db_err)?.is_some() as u64);
    }

    let mut alert_rows = txn.open_table(alerts::ALERTS).map_err(db_err)?;
    let mut alerts_due = txn.open_table(alerts::DUE).map_err(db_err)?;
    let doomed = doomed_keys!(alert_rows, (site, ""), site, |key, value| {
        let alert: Alert = decode(value)?;
        lead_ids.contains(alert.lead_id.as_str())
    }, (key.1.to_owned(), decode::<Alert>(value)?.next_attempt_ms));
    for (id, next) in &doomed {
        alert_rows.remove((site, id.as_str())).map_err(db_err)?;
        alerts_due.remove((*next, site, id.as_str())).map_err(db_err)?;
    }
    add_count(counts, "alerts", doomed.len() as u64);

    let mut conflicts = txn.open_table(leads::CONFLICTS).map_err(db_err)?;
    let doomed = doomed_keys!(conflicts, (site, "", ""), site, |key, value| {
        let conflict: IdentityConflict = decode(value)?;
        visitors.contains(key.1) || lead_ids.contains(key.2) || lead_ids.contains(conflict.lead_id.as_str())
    }, (key.1.to_owned(), key.2.to_owned()));
    for (visitor, other) in &doomed {
        conflicts.remove((site, visitor.as_str(), other.as_str())).map_err(db_err)?;
    }
    add_count(counts, "identity_conflicts", doomed.len() as u64);

    let mut overrides = txn.open_table(leads::OVERRIDES).map_err(db_err)?;
    let doomed = doomed_keys!(overrides, (site, ""), site, |key, value| override_names(&decode(value)?, visitors, lead_ids), key.1.to_owned());
    for key in &doomed {
        overrides.remove((site, key.as_str())).map_err(db_err)?;
    }
    add_count(counts, "identity_overrides", doomed.len() as u64);
    Ok(())
}

/// Whether a person's identity decision names one of the erased visitors or leads.
pub(crate) fn override_names(decision: &IdentityOverride, visitors: &HashSet<&str>, lead_ids: &HashSet<&str>) -> bool {
    match &decision.kind {
        OverrideKind::Merge { from_lead_id, into_lead_id } => lead_ids.contains(from_lead_id.as_str()) || lead_ids.contains(into_lead_id.as_str()),
        OverrideKind::MoveVisitor { visitor_id, to_lead_id } => {
            visitors.contains(visitor_id.as_str()) || to_lead_id.as_deref().is_some_and(|l| lead_ids.contains(l))
        }
    }
}

fn erase_conversations(txn: &WriteTransaction, site: &str, visitors: &HashSet<&str>, counts: &mut BTreeMap<String, u64>) -> Result<()> {
    let mut conversations = txn.open_table(kb::CONVERSATIONS).map_err(db_err)?;
    let doomed = doomed_keys!(conversations, (site, i64::MIN, 0u128), site, |key, value| {
        let conversation: Conversation = decode(value)?;
        conversation.visitor_id.as_deref().is_some_and(|v| visitors.contains(v))
    }, (key.1, key.2, decode::<Conversation>(value)?.conversation_id));
    let mut starts = txn.open_table(kb::CONVERSATION_START).map_err(db_err)?;
    let mut messages = txn.open_table(kb::MESSAGES).map_err(db_err)?;
    let mut message_ids = txn.open_table(kb::MESSAGE_IDS).map_err(db_err)?;
    for (started, uuid, id) in &doomed {
        conversations.remove((site, *started, *uuid)).map_err(db_err)?;
        starts.remove((site, id.as_str())).map_err(db_err)?;
        let keys: Vec<(i64, String)> = {
            let mut keys = Vec::new();
            for row in messages.range((site, id.as_str(), i64::MIN, "")..).map_err(db_err)? {
                let (key, _) = row.map_err(db_err)?;
                let (s, c, at, m) = key.value();
                if s != site || c != id {
                    break;
                }
                keys.push((at, m.to_owned()));
            }
            keys
        };
        for (at, message) in &keys {
            messages.remove((site, id.as_str(), *at, message.as_str())).map_err(db_err)?;
            message_ids.remove((site, id.as_str(), message.as_str())).map_err(db_err)?;
        }
        add_count(counts, "messages", keys.len() as u64);
    }
    add_count(counts, "conversations", doomed.len() as u64);
    Ok(())
}

/// The erase's transaction as `erase_subject` runs it (index removal and unzeroed refs), without
/// the zeroing after the commit: what a crash between the two leaves. Returns the counts and how
/// many bodies wait.
#[cfg(test)]
pub(super) fn erase_for_test(txn: &WriteTransaction, erasure: &Erasure) -> Result<(BTreeMap<String, u64>, usize)> {
    let (counts, doomed) = erase(txn, erasure, &[])?;
    record_unzeroed(txn, &doomed)?;
    Ok((counts, doomed.len()))
}

/// Runs `delete` in one write transaction that also records the bodies it unlinked, commits,
/// then zeros those bodies. Only once no index entry points at them: a reader of an older
/// snapshot may still be reading (it then gets a decode error rather than deleted data); a crash
/// before the zeros land leaves the refs in `UNZEROED` for the next open.
fn delete_and_zero(
    db: &Database,
    dir: &std::path::Path,
    delete: impl FnOnce(&WriteTransaction) -> Result<(BTreeMap<String, u64>, Vec<BodyRef>)>,
) -> Result<BTreeMap<String, u64>> {
    let txn = db.begin_write().map_err(db_err)?;
    let (counts, doomed) = delete(&txn)?;
    record_unzeroed(&txn, &doomed)?;
    txn.commit().map_err(db_err)?;
    bodies::zero(dir, &doomed)?;
    if !doomed.is_empty() {
        clear_unzeroed(db)?;
    }
    Ok(counts)
}

fn record_unzeroed(txn: &WriteTransaction, doomed: &[BodyRef]) -> Result<()> {
    let mut unzeroed = txn.open_table(UNZEROED).map_err(db_err)?;
    for (segment, offset, len, _) in doomed {
        unzeroed.insert((*segment, *offset), *len).map_err(db_err)?;
    }
    Ok(())
}

#[async_trait]
impl PrivacyStore for EmbeddedStore {
    async fn put_erasure(&self, erasure: &Erasure) -> Result<()> {
        let erasure = erasure.clone();
        self.blocking(move |db| put(db, &erasure)).await
    }

    async fn erasures(&self, site_id: &str) -> Result<Vec<Erasure>> {
        let site = site_id.to_owned();
        self.blocking(move |db| list(db, &site)).await
    }

    async fn erase_subject(&self, erasure: &Erasure, needles: &[String]) -> Result<BTreeMap<String, u64>> {
        let (erasure, needles) = (erasure.clone(), needles.to_vec());
        self.with_bodies(move |db, dir| {
            let counts = delete_and_zero(db, dir, |txn| erase(txn, &erasure, &needles))?;
            tracing::info!(site_id = %erasure.site_id, events = counts.get("events").copied().unwrap_or(0), "erased subject");
            Ok(counts)
        })
        .await
    }

    async fn drop_site_before(&self, site_id: &str, before_ms: i64) -> Result<BTreeMap<String, u64>> {
        let site = site_id.to_owned();
        self.with_bodies(move |db, dir| delete_and_zero(db, dir, |txn| drop_before(txn, &site, before_ms))).await
    }
}
