//! One-time conversion of a data directory the redb store wrote (the upgrade to this design):
//! its events, sessions and visitor profiles move into the columnar layout and then leave redb.
//! CRM records, configuration and dead letters stay in redb, which is this store's records half.
//!
//! [`ColumnarStore::open`](crate::ColumnarStore::open) runs it before anything can read, so no
//! caller sees a half-converted store. Rows go over in chunks, each made durable by a commit
//! point, so memory stays bounded by one chunk; redb is only read until the very end. An
//! interrupted conversion starts again from the beginning at the next open and is still exact:
//! events already converted are skipped by id (the columnar store's dedupe), a session is
//! written again as a newer version of the same state, a profile is overwritten with itself.
//! Only when every row is durable in parts, and the counts agree, does one redb transaction
//! drop the pipeline tables and the event body segments; the redb file is then compacted, so
//! the disk space comes back.

use std::collections::BTreeMap;
use std::time::Instant;

use crm_store::embedded::PipelineChunk;
use crm_store::{EmbeddedStore, Result, StoreError};

use crate::events::ColumnarEvents;

/// Rows per chunk: about 50 MB of events in memory at ~1 KB each.
pub const CHUNK: usize = 50_000;

/// What a conversion moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Converted {
    pub events: u64,
    /// Events an interrupted earlier run had already converted (skipped by id).
    pub events_already_converted: u64,
    pub sessions: u64,
    pub visitors: u64,
}

/// Converts what `records` holds into `columnar`, calling `after_chunk` with the number of
/// chunks done after each one is durable (tests interrupt there). `None` when there was nothing
/// to convert.
pub(crate) fn convert(records: &mut EmbeddedStore, columnar: &ColumnarEvents, chunk: usize, mut after_chunk: impl FnMut(usize) -> Result<()>) -> Result<Option<Converted>> {
    let held = records.pipeline_counts()?;
    if held.is_empty() {
        return Ok(None);
    }
    tracing::info!(events = held.events, sessions = held.sessions, visitors = held.visitors, "converting the redb store's events, sessions and profiles to columnar parts");
    let started = Instant::now();
    let no_positions = BTreeMap::new();
    let mut converted = Converted::default();
    let mut chunks = 0;
    let exported = records.export_pipeline(chunk, |rows| -> Result<()> {
        match rows {
            PipelineChunk::Events(events) => {
                let (written, skipped) = columnar.append(&events, &[], &[], &no_positions)?;
                converted.events += written as u64;
                converted.events_already_converted += skipped as u64;
            }
            PipelineChunk::Sessions(sessions) => {
                columnar.append(&[], &sessions, &[], &no_positions)?;
                converted.sessions += sessions.len() as u64;
            }
            PipelineChunk::Visitors(visitors) => {
                columnar.append(&[], &[], &visitors, &no_positions)?;
                converted.visitors += visitors.len() as u64;
            }
        }
        columnar.commit_point()?;
        chunks += 1;
        tracing::info!(chunks, events = converted.events + converted.events_already_converted, of = held.events, sessions = converted.sessions, visitors = converted.visitors, "conversion progress");
        after_chunk(chunks)
    })?;
    // Every exported row is durable in parts now. Check the counts before redb lets go of them.
    let events = converted.events + converted.events_already_converted;
    if events != exported.events || converted.sessions != exported.sessions || converted.visitors != exported.visitors {
        return Err(StoreError::Corrupt(format!("conversion moved {converted:?} but the redb store handed out {exported:?}; the redb tables are kept")));
    }
    records.clear_pipeline()?;
    let compacted = records.compact()?;
    tracing::info!(
        events = converted.events,
        already_converted = converted.events_already_converted,
        sessions = converted.sessions,
        visitors = converted.visitors,
        elapsed_ms = started.elapsed().as_millis() as u64,
        compacted,
        "converted the redb store to columnar parts"
    );
    Ok(Some(converted))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crm_schemas::{DeadLetter, EventBody};
    use crm_store::conformance::{sample_event, sample_profile, sample_session};
    use crm_store::prelude::*;
    use crm_store::{BotFilter, VisitorQuery, VisitorSort, WriteBatch};
    use uuid::Uuid;

    use crate::ColumnarStore;

    const T0: i64 = 1_700_000_000_000;
    const HOUR: i64 = 3_600_000;
    const SITES: [&str; 3] = ["s1", "s2", "s3"];

    /// A redb store as the previous version left it: 3 sites, 120 visitors, events over ten
    /// days (pageviews, form steps, clicks; some bots), sessions, profiles, dead letters and
    /// a site record. Returns the visitors per site.
    async fn fill(store: &dyn Store) -> Vec<String> {
        let visitors: Vec<String> = (0..40).map(|v| format!("v{v:02}")).collect();
        for (s, site) in SITES.iter().enumerate() {
            let mut batch = WriteBatch::default();
            for (v, visitor) in visitors.iter().enumerate() {
                for e in 0..(5 + v % 7) {
                    // Distinct timestamps per site, so every order is total.
                    let ts = T0 + ((v * 97 + e * 1_013 + s * 7) as i64) * 60_000;
                    let path = ["/", "/pricing", "/docs", "/demo"][e % 4];
                    let body = match e % 5 {
                        3 => EventBody::FormView { form_id: "demo".into() },
                        4 => EventBody::FormStart { form_id: "demo".into() },
                        _ => EventBody::Pageview,
                    };
                    let mut event = sample_event(site, visitor, ts, body, path);
                    event.is_bot = v % 10 == 9;
                    batch.events.push(event);
                }
                let mut profile = sample_profile(site, visitor, (v * 7 % 100) as u8, (v * 13 % 100) as u8, T0 + v as i64 * 1_000);
                profile.is_bot = v % 10 == 9;
                batch.visitors.push(profile);
                batch.sessions.push(sample_session(site, visitor, T0 + (v as i64) * 60_000 + s as i64, 1 + (v % 4) as u32, (v as i64 % 3) * 30_000));
            }
            batch.dead_letters.push(DeadLetter { id: Uuid::new_v4(), site_id: site.to_string(), received_at_ms: T0, code: "invalid".into(), message: "bad".into(), payload: "{}".into() });
            store.write(Arc::new(batch)).await.unwrap();
        }
        visitors
    }

    /// Every read a conversion must keep, rendered comparably.
    async fn reads(store: &dyn Store, sites: &[&str], visitors: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let (from, to) = (T0 - HOUR, T0 + 48 * HOUR);
        for &site in sites {
            out.push(format!("{:?}", store.overview(site, from, to, 10).await.unwrap()));
            out.push(format!("{:?}", store.timeseries(site, from, to, 6 * HOUR).await.unwrap()));
            out.push(format!("{:?}", store.form_stats(site, from, to).await.unwrap()));
            let mut cursor: Option<String> = None;
            loop {
                let page = store.scan_events(site, from, to, 50, cursor.as_deref()).await.unwrap();
                out.extend(page.items.iter().map(|e| format!("scan {} {} {}", e.event_id, e.visitor_id, e.ts_ms)));
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            for session in store.sessions_between(site, from, to, 1_000).await.unwrap() {
                out.push(format!("{session:?}"));
            }
            for sort in [VisitorSort::Intent, VisitorSort::Engagement, VisitorSort::LastSeen] {
                for bots in [BotFilter::Exclude, BotFilter::Only] {
                    let page = store.list_visitors(&VisitorQuery { site_id: site.into(), sort, bots, limit: 1_000, cursor: None }).await.unwrap();
                    out.push(format!("{sort:?} {bots:?} {:?}", page.items.iter().map(|p| &p.visitor_id).collect::<Vec<_>>()));
                }
            }
            for visitor in visitors.iter().step_by(3) {
                out.push(format!("{:?}", store.visitor(site, visitor).await.unwrap()));
                let timeline = store.visitor_events(site, visitor, 100, None).await.unwrap();
                out.push(format!("{:?}", timeline.items.iter().map(|e| e.event_id).collect::<Vec<_>>()));
            }
            out.push(format!("{:?}", store.dead_letters(site, 10, None).await.unwrap().items));
        }
        out.push(format!("{:?}", store.find_visitor("v07").await.unwrap()));
        out.push(format!("{:?}", store.site("s1").await.unwrap()));
        out
    }

    async fn written_by_redb(dir: &std::path::Path) -> (Vec<String>, Vec<String>, Vec<Uuid>) {
        let redb = crm_store::EmbeddedStore::open(dir).unwrap();
        redb.put_site(&crm_schemas::Site::new("s1", "Site one", T0)).await.unwrap();
        let visitors = fill(&redb).await;
        let ids = redb.scan_events("s1", 0, i64::MAX, 10_000, None).await.unwrap().items.iter().map(|e| e.event_id).collect();
        (reads(&redb, &SITES, &visitors).await, visitors, ids)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redb_data_directory_converts_without_loss() {
        let dir = tempfile::tempdir().unwrap();
        let (before, visitors, ids) = written_by_redb(dir.path()).await;
        assert!(!ids.is_empty());

        let redb_bytes = || std::fs::metadata(dir.path().join("store.redb")).unwrap().len();
        let before_bytes = redb_bytes();
        let store = ColumnarStore::open(dir.path()).unwrap();
        assert!(store.records().pipeline_counts().unwrap().is_empty(), "the redb pipeline tables are emptied");
        assert!(redb_bytes() < before_bytes / 2, "the redb file is compacted: {before_bytes} → {} bytes", redb_bytes());
        let after = reads(&store, &SITES, &visitors).await;
        let others = reads(&store, &SITES[1..], &visitors).await;
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b, a);
        }
        assert!(store.unseen_event_ids(&ids).await.unwrap().is_empty(), "converted ids are known: a replay of them is skipped");
        let segments: Vec<_> = std::fs::read_dir(dir.path().join("event-bodies")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).collect();
        assert!(segments.iter().all(|len| *len == 0), "the event body segments are gone: {segments:?}");

        // The converted store takes new writes, and reopening does not convert again.
        let counted = store.overview("s1", T0 - HOUR, T0 + 48 * HOUR, 10).await.unwrap().pageviews;
        let new = sample_event("s1", "v00", T0 + 47 * HOUR, EventBody::Pageview, "/new");
        store.write(Arc::new(WriteBatch { events: vec![new.clone()], ..WriteBatch::default() })).await.unwrap();
        drop(store);
        let store = ColumnarStore::open(dir.path()).unwrap();
        assert_eq!(store.overview("s1", T0 - HOUR, T0 + 48 * HOUR, 10).await.unwrap().pageviews, counted + 1);
        assert!(store.visitor_events("s1", "v00", 100, None).await.unwrap().items.iter().any(|e| e.event_id == new.event_id));
        assert_eq!(reads(&store, &SITES[1..], &visitors).await, others, "the other sites are as converted");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_conversion_resumes_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let (before, visitors, _) = written_by_redb(dir.path()).await;
        let failed = ColumnarStore::open_converting(dir.path(), crate::profiles::DEFAULT_BUDGET_BYTES, 200, |chunk| if chunk == 3 { Err(crm_store::StoreError::Io("interrupted".into())) } else { Ok(()) });
        assert!(failed.is_err());
        {
            // Three chunks of events are durable in parts, and redb still holds everything.
            let records = crm_store::EmbeddedStore::open(dir.path()).unwrap();
            assert!(records.pipeline_counts().unwrap().events > 0);
        }
        let store = ColumnarStore::open(dir.path()).unwrap();
        assert_eq!(reads(&store, &SITES, &visitors).await, before, "no event, session or profile lost or counted twice");
        assert!(store.records().pipeline_counts().unwrap().is_empty());
    }
}
