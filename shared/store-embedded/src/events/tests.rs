//! Write path, commit point and timeline tests of [`ColumnarEvents`].

use super::compact::Compacted;
use super::*;
use crm_schemas::{Device, EventBody, Geo, VisitorProfile};

const T0: i64 = 1_700_000_000_000;

fn event(site: &str, visitor: &str, ts_ms: i64) -> StoredEvent {
    StoredEvent {
        event_id: Uuid::new_v4(),
        site_id: site.into(),
        visitor_id: visitor.into(),
        session_id: format!("{visitor}-s"),
        client_session_id: None,
        ts_ms,
        received_at_ms: ts_ms,
        url: None,
        path: Some("/".into()),
        referrer: None,
        title: None,
        props: Default::default(),
        body: EventBody::Pageview,
        ip: None,
        geo: Geo::default(),
        device: Device::default(),
        is_bot: false,
        intent_signal: None,
    }
}

fn positions(offset: u64) -> BTreeMap<String, u64> {
    BTreeMap::from([("log/events/0".to_string(), offset)])
}

fn covered(store: &ColumnarEvents, offset: u64) -> bool {
    store.durable_positions().covers(&positions(offset))
}

#[test]
fn events_are_readable_at_once_and_durable_after_the_commit_point() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    // Two days and two sites: four parts.
    let events = vec![event("s1", "v1", T0), event("s1", "v1", T0 + 1000), event("s1", "v1", T0 + DAY_MS), event("s2", "v1", T0), event("s1", "v2", T0)];
    assert_eq!(store.append(&events, &[], &[], &positions(4)).unwrap(), (5, 0));
    assert_eq!(store.visitor_events("s1", "v1", 10, None).unwrap().items.len(), 3, "acknowledged events are visible before they are durable");
    assert!(!covered(&store, 4));

    store.commit_point().unwrap();
    assert!(covered(&store, 4));
    assert_eq!(store.buffered(), 0);
    assert_eq!(store.part_count(), 3, "(s1, day 0), (s1, day 1), (s2, day 0)");
    drop(store);

    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert!(covered(&store, 4), "durable positions survive reopen");
    let timeline = store.visitor_events("s1", "v1", 10, None).unwrap();
    let expected: Vec<Uuid> = vec![events[2].event_id, events[1].event_id, events[0].event_id];
    assert_eq!(timeline.items.iter().map(|e| e.event_id).collect::<Vec<_>>(), expected, "newest first across parts");
    assert_eq!(timeline.items[0], events[2], "stored events come back unchanged");
    assert_eq!(store.visitor_events("s2", "v1", 10, None).unwrap().items.len(), 1);
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert!(store.unseen(&ids).unwrap().is_empty(), "every committed id is known after reopen");
}

#[test]
fn an_id_is_stored_once_whether_it_is_buffered_frozen_or_in_a_part() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let first = event("s1", "v1", T0);
    let twice = [first.clone(), first.clone()];
    assert_eq!(store.append(&twice, &[], &[], &positions(1)).unwrap(), (1, 1), "the first copy in a batch wins");
    assert_eq!(store.append(std::slice::from_ref(&first), &[], &[], &positions(2)).unwrap(), (0, 1), "buffered");
    store.commit_point().unwrap();
    assert_eq!(store.append(std::slice::from_ref(&first), &[], &[], &positions(3)).unwrap(), (0, 1), "in a part");
    let other_site = StoredEvent { site_id: "s2".into(), ..event("s2", "v1", T0) };
    assert_eq!(store.append(std::slice::from_ref(&other_site), &[], &[], &positions(4)).unwrap(), (1, 0));
    store.commit_point().unwrap();
    assert_eq!(store.visitor_events("s1", "v1", 10, None).unwrap().items.len(), 1);
}

#[test]
fn a_crash_before_the_manifest_edit_loses_the_events_and_their_positions_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let kept = event("s1", "v1", T0);
    store.append(std::slice::from_ref(&kept), &[], &[], &positions(1)).unwrap();
    store.commit_point().unwrap();
    let lost = event("s1", "v1", T0 + 10);
    store.append(std::slice::from_ref(&lost), &[], &[], &positions(2)).unwrap();
    assert!(store.commit_point_failing(Some(FailAt::BeforeEdit)).is_err());
    assert!(store.visitor_events("s1", "v1", 10, None).unwrap().items.len() == 2, "still readable until the process dies");
    assert!(!covered(&store, 2));
    drop(store);

    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert!(covered(&store, 1) && !covered(&store, 2), "the position of the lost event is not durable, so the log delivers it again");
    let unseen = store.unseen(&[kept.event_id, lost.event_id]).unwrap();
    assert_eq!(unseen, HashSet::from([lost.event_id]), "the replay stores it again");
    assert_eq!(store.part_count(), 1);
    let files = walk(dir.path());
    assert_eq!(files.iter().filter(|f| f.ends_with(".parquet")).count(), 1, "the orphan part was removed: {files:?}");
    assert_eq!(store.append(std::slice::from_ref(&lost), &[], &[], &positions(2)).unwrap(), (1, 0));
}

#[test]
fn a_crash_after_the_manifest_edit_keeps_the_events_and_their_positions_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let kept = event("s1", "v1", T0);
    store.append(std::slice::from_ref(&kept), &[], &[], &positions(7)).unwrap();
    assert!(store.commit_point_failing(Some(FailAt::AfterEdit)).is_err());
    drop(store);
    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert!(covered(&store, 7));
    assert!(store.unseen(&[kept.event_id]).unwrap().is_empty(), "a replay finds it stored and drops it");
    assert_eq!(store.visitor_events("s1", "v1", 10, None).unwrap().items, vec![kept]);
}

#[test]
fn timelines_page_newest_first_across_buffer_and_parts() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let mut all = Vec::new();
    for round in 0..3 {
        let batch: Vec<StoredEvent> = (0..4).map(|i| event("s1", "v1", T0 + round * 100 + i)).collect();
        store.append(&batch, &[], &[], &positions(round as u64)).unwrap();
        all.extend(batch);
        if round < 2 {
            store.commit_point().unwrap(); // two parts, the last round buffered
        }
    }
    store.append(&[event("s1", "other", T0 + 50)], &[], &[], &positions(9)).unwrap();
    all.sort_by(|a, b| (b.ts_ms, b.event_id).cmp(&(a.ts_ms, a.event_id)));
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.visitor_events("s1", "v1", 5, cursor.as_deref()).unwrap();
        seen.extend(page.items.iter().map(|e| e.event_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, all.iter().map(|e| e.event_id).collect::<Vec<_>>());
    assert!(matches!(store.visitor_events("s1", "v1", 5, Some("garbage")), Err(StoreError::InvalidCursor)));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

fn session(visitor: &str, start_ms: i64, pageviews: u32) -> Session {
    Session {
        site_id: "s1".into(),
        session_id: format!("{visitor}-{start_ms}"),
        visitor_id: visitor.into(),
        start_ms,
        end_ms: start_ms + 1_000 * i64::from(pageviews),
        pageviews,
        events: pageviews,
        device_category: "pc".into(),
        browser: "Firefox".into(),
        ..Session::default()
    }
}

/// Timelines, overview and sessions of site s1 on the first two days.
async fn everything(store: &ColumnarEvents) -> (Vec<Vec<Uuid>>, Overview, Vec<Session>) {
    let mut timelines = Vec::new();
    for visitor in ["v0", "v1", "v2"] {
        timelines.push(store.visitor_events("s1", visitor, 1_000, None).unwrap().items.iter().map(|e| e.event_id).collect());
    }
    let overview = store.overview("s1", T0 - DAY_MS, T0 + 3 * DAY_MS, 10).await.unwrap();
    let sessions = store.sessions_between("s1", T0 - DAY_MS, T0 + 3 * DAY_MS, 1_000).await.unwrap();
    (timelines, overview, sessions)
}

fn files_under(dir: &Path, extension: &str) -> usize {
    walk(dir).iter().filter(|f| f.ends_with(extension)).count()
}

#[tokio::test]
async fn compaction_keeps_every_row_and_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let mut ids = Vec::new();
    for round in 0..6i64 {
        let events: Vec<StoredEvent> = (0..30).map(|i| event("s1", &format!("v{}", i % 3), T0 + round * 1_000 + i)).collect();
        ids.extend(events.iter().map(|e| e.event_id));
        // Each round rewrites the same open session of v0 with one more pageview.
        let sessions = vec![session("v0", T0, round as u32 + 1), session("v1", T0 + round, 1)];
        store.append(&events, &sessions, &[], &positions(round as u64)).unwrap();
        store.commit_point().unwrap();
    }
    let before = everything(&store).await;
    assert_eq!(store.part_count(), 6);
    assert_eq!(before.2.iter().find(|s| s.visitor_id == "v0").unwrap().pageviews, 6, "the latest version of the open session");

    let done = store.compact(T0, 4).unwrap();
    assert_eq!(done, Compacted { groups: 2, inputs: 12 }, "events and sessions of (s1, day 0)");
    assert_eq!(store.part_count(), 1);
    assert_eq!(everything(&store).await, before);
    assert_eq!(files_under(dir.path(), ".parquet"), 2, "inputs are deleted once no reader holds them");
    assert!(store.unseen(&ids).unwrap().is_empty(), "the merged sidecar holds every id");
    assert_eq!(store.compact(T0, 4).unwrap(), Compacted::default(), "nothing left to merge");
    drop(store);

    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert_eq!(everything(&store).await, before, "the same after reopen");
    assert!(store.durable_positions().covers(&positions(5)), "compaction keeps the durable positions");
}

#[tokio::test]
async fn closed_days_merge_whatever_their_part_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    for round in 0..2 {
        store.append(&[event("s1", "v0", T0 + round)], &[], &[], &positions(round as u64)).unwrap();
        store.commit_point().unwrap();
    }
    assert_eq!(store.compact(T0 + DAY_MS, 8).unwrap(), Compacted::default(), "yesterday stays open for late events");
    assert_eq!(store.compact(T0 + 2 * DAY_MS, 8).unwrap(), Compacted { groups: 1, inputs: 2 });
    let levels: Vec<u8> = lock(&store.parts).iter().map(|p| p.meta.level).collect();
    assert_eq!(levels, vec![1]);
}

/// A merge reads its inputs a few rows at a time and writes as it goes: with batches far
/// smaller than the parts, every read answers as before, and each session keeps one row.
#[tokio::test]
async fn a_merge_streams_through_small_batches_with_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    for round in 0..5i64 {
        let events: Vec<StoredEvent> = (0..40).map(|i| event("s1", &format!("v{}", (i * 7 + round) % 3), T0 + (i * 13 + round * 5) % 97)).collect();
        // v0's session grows every round; v1 and v2 start a new one each round.
        let sessions = vec![session("v0", T0, round as u32 + 1), session("v1", T0 + round, 1), session("v2", T0 + 10 + round, 2)];
        store.append(&events, &sessions, &[], &positions(round as u64)).unwrap();
        store.commit_point().unwrap();
    }
    let before = everything(&store).await;
    let day = T0.div_euclid(DAY_MS);
    for stream in [Stream::Events, Stream::Sessions] {
        let inputs: Vec<Arc<LivePart>> = store.parts_snapshot().into_iter().filter(|p| p.meta.stream == stream).collect();
        assert_eq!(inputs.len(), 5);
        // 3 rows per read and 5 per write: every batch boundary falls inside a run.
        store.merge(stream, "s1", day, 1, &inputs, 3, 5).unwrap();
    }
    assert_eq!(everything(&store).await, before);
    let parts = store.parts_snapshot();
    assert_eq!(parts.len(), 2);
    let sessions = parts.iter().find(|p| p.meta.stream == Stream::Sessions).unwrap();
    assert_eq!(sessions.meta.rows, 1 + 5 + 5, "one row per session: v0's five versions collapse");
    let events = parts.iter().find(|p| p.meta.stream == Stream::Events).unwrap();
    assert_eq!(events.meta.rows, 200);
    let written = part::read_all(&events.path).unwrap();
    let keys: Vec<(i64, i64, Uuid)> = written.iter().map(|e| (part::visitor_hash(&e.visitor_id), e.ts_ms, e.event_id)).collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "the merged part is in key order");
    assert_eq!((events.meta.min_ts, events.meta.max_ts), (T0, T0 + 96));
    drop(store);
    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert_eq!(everything(&store).await, before, "the same after reopen");
}

/// Merges go up one level at a time: a row is rewritten once per level, not once per merge.
#[tokio::test]
async fn parts_merge_by_level() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let mut offset = 0;
    let mut commit = |store: &ColumnarEvents, n: usize| {
        for _ in 0..n {
            offset += 1;
            store.append(&[event("s1", "v0", T0 + offset as i64)], &[], &[], &positions(offset)).unwrap();
            store.commit_point().unwrap();
        }
    };
    let levels = |store: &ColumnarEvents| {
        let mut levels: Vec<u8> = lock(&store.parts).iter().map(|p| p.meta.level).collect();
        levels.sort();
        levels
    };
    commit(&store, 3);
    assert_eq!(store.compact(T0, 3).unwrap(), Compacted { groups: 1, inputs: 3 });
    assert_eq!(levels(&store), vec![1]);
    commit(&store, 2);
    assert_eq!(store.compact(T0, 3).unwrap(), Compacted::default(), "two level-0 parts and one level-1 part: no level has three");
    commit(&store, 1);
    assert_eq!(store.compact(T0, 3).unwrap(), Compacted { groups: 1, inputs: 3 }, "the level-0 parts only");
    assert_eq!(levels(&store), vec![1, 1]);
    commit(&store, 3);
    store.compact(T0, 3).unwrap();
    assert_eq!(levels(&store), vec![1, 1, 1]);
    store.compact(T0, 3).unwrap();
    assert_eq!(levels(&store), vec![2], "three level-1 parts make a level-2 part");
    assert_eq!(store.visitor_events("s1", "v0", 100, None).unwrap().items.len(), 9);
}

#[tokio::test]
async fn readers_keep_compacted_inputs_alive() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    for round in 0..3 {
        store.append(&[event("s1", "v0", T0 + round)], &[], &[], &positions(round as u64)).unwrap();
        store.commit_point().unwrap();
    }
    let reader = store.parts_snapshot(); // a query in flight
    store.compact(T0, 2).unwrap();
    assert_eq!(files_under(dir.path(), ".parquet"), 4, "three inputs held by the reader, one merged part");
    assert!(reader.iter().all(|p| p.path.exists()));
    drop(reader);
    assert_eq!(files_under(dir.path(), ".parquet"), 1);
    assert_eq!(files_under(dir.path(), ".idx"), 1);
}

#[tokio::test]
async fn retention_drops_whole_days_and_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let days: Vec<StoredEvent> = (0..3).map(|d| event("s1", "v0", T0 + d * DAY_MS)).collect();
    store.append(&days, &[session("v0", T0, 1)], &[], &positions(1)).unwrap();
    store.commit_point().unwrap();
    let first_kept = (T0 + 2 * DAY_MS).div_euclid(DAY_MS);
    assert_eq!(store.drop_days_before(first_kept).unwrap(), 3, "two event days and one session day");
    let left = store.visitor_events("s1", "v0", 10, None).unwrap().items;
    assert_eq!(left, vec![days[2].clone()]);
    assert_eq!(store.unseen(&[days[0].event_id]).unwrap().len(), 1, "a dropped event's id is forgotten with it");
    assert!(store.sessions_between("s1", T0 - 1, T0 + 1, 10).await.unwrap().is_empty());
    drop(store);
    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert_eq!(store.visitor_events("s1", "v0", 10, None).unwrap().items, vec![days[2].clone()]);
    assert_eq!(files_under(dir.path(), ".parquet"), 1);
}

#[test]
fn a_failed_commit_point_leaves_its_rows_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let first = event("s1", "v1", T0);
    store.append(std::slice::from_ref(&first), &[session("v1", T0, 1)], &[], &positions(1)).unwrap();
    assert!(store.commit_point_failing(Some(FailAt::BeforeEdit)).is_err());
    assert_eq!(store.buffered(), 1, "back in the buffer");
    let second = event("s1", "v1", T0 + 5);
    store.append(std::slice::from_ref(&second), &[session("v1", T0, 2)], &[], &positions(2)).unwrap();
    assert_eq!(store.append(std::slice::from_ref(&first), &[], &[], &positions(2)).unwrap(), (0, 1), "its id is still known");
    store.commit_point().unwrap();
    assert!(covered(&store, 2));
    drop(store);
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let ids: Vec<Uuid> = store.visitor_events("s1", "v1", 10, None).unwrap().items.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, vec![second.event_id, first.event_id]);
    assert_eq!(files_under(dir.path(), ".parquet"), 2, "the failed attempt's files were orphans, removed at open");
}

fn profile(visitor: &str, intent: u8, last_seen_ms: i64) -> VisitorProfile {
    VisitorProfile { site_id: "s1".into(), visitor_id: visitor.into(), intent_score: intent, last_seen_ms, ..VisitorProfile::default() }
}

fn ranked(store: &ColumnarEvents) -> Vec<(String, u8)> {
    let query = crm_store::VisitorQuery { site_id: "s1".into(), limit: 100, ..Default::default() };
    store.list_profiles(&query).unwrap().items.into_iter().map(|p| (p.visitor_id, p.intent_score)).collect()
}

#[test]
fn profiles_are_durable_with_their_commit_point_and_runs_fold() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    for round in 0..12u8 {
        let profiles = vec![profile("v0", round, T0 + i64::from(round)), profile(&format!("v{}", round + 1), 50, T0)];
        store.append(&[event("s1", "v0", T0 + i64::from(round))], &[], &profiles, &positions(u64::from(round))).unwrap();
        store.commit_point().unwrap();
    }
    let before = ranked(&store);
    assert_eq!(before.len(), 13);
    assert_eq!(before.last().unwrap(), &("v0".to_string(), 11), "lowest intent last, at its latest state");
    let runs = walk(&dir.path().join("profiles")).len();
    assert!(runs <= MAX_PROFILE_RUNS + 1, "runs fold into one full run: {runs} files");
    drop(store);
    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert_eq!(ranked(&store), before, "the same ranked list after reopen");

    // A commit point that fails before its manifest edit takes the profile updates with it.
    store.append(&[event("s1", "v0", T0 + 100)], &[], &[profile("v0", 99, T0 + 100)], &positions(20)).unwrap();
    assert_eq!(store.profile("s1", "v0").unwrap().unwrap().intent_score, 99, "applied in memory at once");
    assert!(store.commit_point_failing(Some(FailAt::BeforeEdit)).is_err());
    drop(store);
    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert_eq!(store.profile("s1", "v0").unwrap().unwrap().intent_score, 11, "not durable without its events");
    assert!(!covered(&store, 20));
}

/// 3 000 profiles of ~1 KB each, under a budget of about 300 of them: after each commit point
/// the hot ones fit the budget, and every read returns what was written, cold or hot, before
/// and after runs fold and the store reopens.
#[test]
fn profiles_over_the_budget_are_evicted_and_read_back_from_their_runs() {
    let dir = tempfile::tempdir().unwrap();
    let make = |i: usize, round: u8| {
        let mut p = profile(&format!("v{i:04}"), ((i * 7 + usize::from(round)) % 100) as u8, T0 + i as i64);
        p.landing_page = Some(format!("/landing/{}", "x".repeat(600)));
        p.geo.org = (i % 5 == 0).then(|| format!("org{}", i % 3));
        p.visits = u32::from(round) + 1;
        p
    };
    let budget = 300 * (crate::profiles::Row::of(&make(0, 0)).json.len() + 48);
    let store = ColumnarEvents::open_with_budget(dir.path(), budget).unwrap();
    let mut expected: Vec<VisitorProfile> = (0..3_000).map(|i| make(i, 0)).collect();
    for (n, chunk) in expected.chunks(500).enumerate() {
        store.append(&[], &[], chunk, &positions(n as u64)).unwrap();
        store.commit_point().unwrap();
        let (known, hot, hot_bytes, _) = store.profile_memory();
        assert_eq!(known, (n + 1) * 500);
        assert!(hot_bytes <= budget, "after commit point {n}: {hot_bytes} hot bytes, budget {budget}");
        assert!(hot < known, "some profiles are cold");
    }
    // Rewrite every third profile over 12 more commit points: runs pile up and fold, and the
    // rewritten profiles' homes move.
    for round in 1..=12u8 {
        let changed: Vec<VisitorProfile> = (0..3_000).filter(|i| i % 3 == usize::from(round) % 3).map(|i| make(i, round)).collect();
        for p in &changed {
            let i: usize = p.visitor_id[1..].parse().unwrap();
            expected[i] = p.clone();
        }
        store.append(&[], &[], &changed, &positions(100 + u64::from(round))).unwrap();
        store.commit_point().unwrap();
        assert!(store.profile_memory().2 <= budget);
    }
    assert!(store.profile_memory().3 <= MAX_PROFILE_RUNS, "runs were folded");
    let check = |store: &ColumnarEvents| {
        for p in expected.iter().step_by(7) {
            assert_eq!(store.profile("s1", &p.visitor_id).unwrap().as_ref(), Some(p), "{}", p.visitor_id);
        }
        let keys: Vec<(String, String)> = expected.iter().step_by(11).map(|p| ("s1".to_string(), p.visitor_id.clone())).collect();
        assert_eq!(store.profiles_of(&keys).unwrap(), expected.iter().step_by(11).cloned().collect::<Vec<_>>());
        let mut by_rank = expected.clone();
        by_rank.sort_by_key(|p| (crm_store::rank_value(p, crm_store::VisitorSort::Intent), p.visitor_id.clone()));
        let mut listed = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.list_profiles(&crm_store::VisitorQuery { site_id: "s1".into(), limit: 700, cursor, ..Default::default() }).unwrap();
            listed.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, by_rank, "the ranked list pages through every profile, cold ones read back");
        let orgs = store.profile_orgs("s1", 10);
        assert_eq!(orgs, crm_store::group_orgs(expected.iter().filter_map(crm_store::org_member), 10));
    };
    check(&store);
    drop(store);
    let store = ColumnarEvents::open_with_budget(dir.path(), budget).unwrap();
    assert_eq!(store.profile_memory().1, 0, "a reopened store reads no profile until asked");
    check(&store);
    let runs = walk(&dir.path().join("profiles")).len();
    assert_eq!(runs, store.profile_memory().3, "folded runs' files are gone");
}

/// A profile updated (dirty) is never evicted, whatever the budget: its only copy is in memory
/// until the next commit point writes it.
#[test]
fn dirty_profiles_stay_in_memory_until_their_commit_point() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open_with_budget(dir.path(), 0).unwrap();
    store.append(&[], &[], &[profile("a", 10, T0)], &positions(0)).unwrap();
    store.commit_point().unwrap();
    assert_eq!(store.profile_memory().1, 0, "a zero budget keeps nothing clean hot");
    store.append(&[], &[], &[profile("a", 20, T0 + 1), profile("b", 30, T0)], &positions(1)).unwrap();
    assert_eq!(store.profile_memory().1, 2);
    assert!(store.commit_point_failing(Some(FailAt::BeforeEdit)).is_err());
    assert_eq!(store.profile("s1", "a").unwrap().unwrap().intent_score, 20, "still hot after a failed commit point");
    drop(store);
    let store = ColumnarEvents::open_with_budget(dir.path(), 0).unwrap();
    assert_eq!(store.profile("s1", "a").unwrap().unwrap().intent_score, 10);
    assert_eq!(store.profile("s1", "b").unwrap(), None);
}

/// A fold takes the newest runs and leaves a much larger old run alone, so a store with a
/// million profiles does not rewrite them all every few commit points.
#[test]
fn folds_leave_a_large_old_run_alone_until_the_newer_runs_near_its_size() {
    let run = |id: u64, rows: u64| Arc::new(Run::new(id, PathBuf::from(format!("run-{id}.parquet")), rows));
    let ids = |runs: Vec<Arc<Run>>| runs.iter().map(|r| r.id()).collect::<Vec<_>>();
    let mut runs = vec![run(1, 1_000_000)];
    runs.extend((2..=9).map(|id| run(id, 20_000)));
    assert_eq!(ids(runs_to_fold(runs)), (2..=9).collect::<Vec<_>>());
    assert_eq!(ids(runs_to_fold(vec![run(1, 1_000_000), run(10, 200_000), run(11, 100_000), run(12, 50_000)])), vec![10, 11, 12]);
    assert_eq!(ids(runs_to_fold(vec![run(1, 1_000_000), run(10, 400_000), run(11, 150_000), run(12, 100_000)])), vec![1, 10, 11, 12], "newer runs near its size");
    assert_eq!(ids(runs_to_fold(vec![run(1, 1_000_000), run(2, 10)])), vec![1, 2], "at least two");
}

/// Profiles with the same rank value (score and millisecond) list in visitor order, and a
/// cursor inside such a group resumes after its visitor: every profile comes once, whatever the
/// order they were written in.
#[test]
fn equal_ranks_page_in_visitor_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    // Written out of visitor order; v-b, v-d, v-a, v-e tie, v-c ranks first, v-f last.
    let profiles = vec![profile("v-b", 50, T0), profile("v-d", 50, T0), profile("v-c", 90, T0), profile("v-a", 50, T0), profile("v-f", 10, T0), profile("v-e", 50, T0)];
    store.append(&[], &[], &profiles, &positions(1)).unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let query = crm_store::VisitorQuery { site_id: "s1".into(), limit: 2, cursor: cursor.clone(), ..Default::default() };
        let page = store.list_profiles(&query).unwrap();
        seen.extend(page.items.into_iter().map(|p| p.visitor_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, vec!["v-c", "v-a", "v-b", "v-d", "v-e", "v-f"]);
    // The same order in one page, and after a reopen (slots are numbered in load order then).
    assert_eq!(ranked(&store).into_iter().map(|(v, _)| v).collect::<Vec<_>>(), seen);
    store.commit_point().unwrap();
    drop(store);
    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert_eq!(ranked(&store).into_iter().map(|(v, _)| v).collect::<Vec<_>>(), seen);
}

/// The overview with rollups ignored: what every rollup-backed answer must equal.
async fn scanned_overview(store: &ColumnarEvents, from_ms: i64, to_ms: i64) -> Overview {
    query::overview(&store.snapshot("s1", from_ms, to_ms).unwrap(), from_ms, to_ms, 10).await.unwrap()
}

/// Overview and daily, two-day and hourly timeseries answer as if there were no rollups.
async fn answers_as_scanned(store: &ColumnarEvents, from_ms: i64, to_ms: i64) {
    assert_eq!(store.overview("s1", from_ms, to_ms, 10).await.unwrap(), scanned_overview(store, from_ms, to_ms).await, "overview of [{from_ms}, {to_ms})");
    for step in [DAY_MS, 2 * DAY_MS, 3_600_000] {
        let starts = series_buckets(from_ms, to_ms, step).unwrap();
        let scanned = query::timeseries(&store.snapshot("s1", from_ms, to_ms).unwrap(), &starts, from_ms, to_ms, step, &crm_store::filters::Filters::default()).await.unwrap();
        assert_eq!(store.timeseries("s1", from_ms, to_ms, step).await.unwrap(), scanned, "timeseries of [{from_ms}, {to_ms}) by {step} ms");
    }
}

fn rollups_used(store: &ColumnarEvents, from_ms: i64, to_ms: i64) -> Vec<i64> {
    let mut days: Vec<i64> = store.snapshot_with("s1", from_ms, to_ms, true).unwrap().rollups.iter().map(|r| r.day()).collect();
    days.sort_unstable();
    days
}

#[tokio::test]
async fn day_rollups_answer_for_closed_days_until_their_parts_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let day0 = T0.div_euclid(DAY_MS);
    let start = day0 * DAY_MS;
    let mut offset = 0;
    for day in 0..3i64 {
        for round in 0..2i64 {
            let at = start + day * DAY_MS + round * 60_000;
            let mut events: Vec<StoredEvent> = (0..4).map(|i| event("s1", &format!("v{}", (i + day) % 5), at + i)).collect();
            events[0].path = Some(format!("/day-{day}"));
            events[1].is_bot = true;
            let mut sessions = vec![session("v0", start + day * DAY_MS, round as u32 + 1), session(&format!("v{}", day + 1), at, 1)];
            sessions[1].referrer_host = Some(format!("ref{day}.example"));
            offset += 1;
            store.append(&events, &sessions, &[], &positions(offset)).unwrap();
            store.commit_point().unwrap();
        }
    }
    let (from, to) = (start - DAY_MS, start + 4 * DAY_MS);
    let expected = scanned_overview(&store, from, to).await;
    let now = start + 5 * DAY_MS;
    assert_eq!(store.build_rollups(now).await.unwrap(), 0, "days waiting for their merge are not rolled up");
    store.compact(now, 4).unwrap();
    assert_eq!(store.build_rollups(now).await.unwrap(), 3);
    assert_eq!(store.build_rollups(now).await.unwrap(), 0, "a day is rolled up once");
    assert_eq!(rollups_used(&store, from, to), vec![day0, day0 + 1, day0 + 2]);
    assert!(store.snapshot_with("s1", from, to, true).unwrap().event_files.is_empty(), "rolled-up days are not scanned");
    assert_eq!(store.overview("s1", from, to, 10).await.unwrap(), expected);
    assert_eq!(expected.visitors, 5, "a visitor seen on several days counts once");
    assert_eq!(rollups_used(&store, start + 1, to), vec![day0 + 1, day0 + 2], "a day the window cuts is scanned");
    for (a, b) in [(from, to), (start + 1, to), (start + DAY_MS, start + 2 * DAY_MS), (start + 90_000, start + DAY_MS + 30_000)] {
        answers_as_scanned(&store, a, b).await;
    }
    let daily = store.timeseries("s1", start, start + 3 * DAY_MS, DAY_MS).await.unwrap();
    assert_eq!(daily.iter().map(|p| p.visitors).collect::<Vec<_>>(), vec![4, 5, 4], "pageviewers and session starters (a bot's pageview does not count)");

    // A late event for day 1: buffered, then in a part of its own, then merged and rolled up again.
    let mut late = event("s1", "v9", start + DAY_MS + 5_000);
    late.path = Some("/late".into());
    store.append(std::slice::from_ref(&late), &[], &[], &positions(offset + 1)).unwrap();
    assert_eq!(rollups_used(&store, from, to), vec![day0, day0 + 2], "a buffered row turns its day's rollup off");
    let with_late = store.overview("s1", from, to, 10).await.unwrap();
    answers_as_scanned(&store, from, to).await;
    assert_eq!((with_late.pageviews, with_late.visitors), (expected.pageviews + 1, 6));
    store.commit_point().unwrap();
    assert_eq!(rollups_used(&store, from, to), vec![day0, day0 + 2], "so does a part the rollup does not name");
    assert_eq!(store.overview("s1", from, to, 10).await.unwrap(), with_late);
    store.compact(now, 4).unwrap();
    assert_eq!(store.build_rollups(now).await.unwrap(), 1);
    assert_eq!(rollups_used(&store, from, to), vec![day0, day0 + 1, day0 + 2]);
    assert_eq!(store.overview("s1", from, to, 10).await.unwrap(), with_late);
    assert_eq!(files_under(dir.path(), ".roll"), 3, "the replaced rollup's file is deleted");
    drop(store);

    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert_eq!(rollups_used(&store, from, to), vec![day0, day0 + 1, day0 + 2], "rollups survive a reopen");
    assert_eq!(store.overview("s1", from, to, 10).await.unwrap(), with_late);
    answers_as_scanned(&store, from, to).await;
    store.drop_days_before(day0 + 1).unwrap();
    assert_eq!(files_under(dir.path(), ".roll"), 2, "retention takes the day's rollup with its parts");
    assert_eq!(store.overview("s1", from, to, 10).await.unwrap(), scanned_overview(&store, from, to).await);
}

/// A visitor counted as a human on closed, rolled-up days whose profile becomes a bot later
/// leaves those days too: the rollups that counted it are read around until rebuilt without it.
#[tokio::test]
async fn a_visitor_turning_bot_leaves_the_rolled_up_days_it_was_counted_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    let day0 = T0.div_euclid(DAY_MS);
    let start = day0 * DAY_MS;
    for day in 0..2i64 {
        let at = start + day * DAY_MS;
        let events: Vec<StoredEvent> = (0..4).map(|i| event("s1", &format!("v{i}"), at + i)).collect();
        let sessions: Vec<Session> = (0..4).map(|i| session(&format!("v{i}"), at + i, 1)).collect();
        let profiles: Vec<VisitorProfile> = (0..4).map(|i| profile(&format!("v{i}"), 1, at + i)).collect();
        store.append(&events, &sessions, &profiles, &positions(day as u64)).unwrap();
        store.commit_point().unwrap();
    }
    let (from, to, now) = (start, start + 2 * DAY_MS, start + 5 * DAY_MS);
    store.compact(now, 4).unwrap();
    assert_eq!(store.build_rollups(now).await.unwrap(), 2);
    assert_eq!(store.overview("s1", from, to, 10).await.unwrap().visitors, 4);

    // v1 sends a flagged event on day 3: no part of days 0 and 1 changes, its profile does.
    let mut flagged = event("s1", "v1", start + 3 * DAY_MS);
    flagged.is_bot = true;
    let mut bot = profile("v1", 1, flagged.ts_ms);
    bot.is_bot = true;
    store.append(&[flagged], &[], &[bot], &positions(9)).unwrap();
    assert!(rollups_used(&store, from, to).is_empty(), "both days counted v1");
    let without = store.overview("s1", from, to, 10).await.unwrap();
    assert_eq!((without.visitors, without.sessions, without.pageviews), (3, 6, 6));
    answers_as_scanned(&store, from, to).await;

    assert_eq!(store.build_rollups(now).await.unwrap(), 2, "the two rollups are rebuilt without v1");
    assert_eq!(rollups_used(&store, from, to), vec![day0, day0 + 1]);
    assert_eq!(store.overview("s1", from, to, 10).await.unwrap(), without);
    assert_eq!(store.build_rollups(now).await.unwrap(), 0);
    store.commit_point().unwrap();
    drop(store);

    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert_eq!(store.bot_visitors("s1", from), vec!["v1"], "the bot profile is durable");
    assert_eq!(rollups_used(&store, from, to), vec![day0, day0 + 1]);
    assert_eq!(store.overview("s1", from, to, 10).await.unwrap(), without);
    answers_as_scanned(&store, from, to).await;
}

/// Folds run on their own thread while commit points keep writing newer rows of the same
/// profiles (no profile stays hot, so every read goes through its home): each profile reads
/// as last written, during and after the folds, and after a reopen.
#[test]
fn profiles_written_while_their_runs_fold_keep_their_newest_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ColumnarEvents::open_with_budget(dir.path(), 0).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let folder = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut folds = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                folds += usize::from(store.fold_profile_runs().unwrap());
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            folds
        })
    };
    let version = |round: u64| profile("v", 0, T0 + round as i64).last_seen_ms;
    for round in 0..80u64 {
        let written: Vec<VisitorProfile> = (0..40).map(|v| profile(&format!("v{v:02}"), (round % 100) as u8, version(round))).collect();
        store.append(&[], &[], &written, &positions(round)).unwrap();
        store.commit_point_failing(None).unwrap();
        let read = store.profile("s1", &format!("v{:02}", round % 40)).unwrap().unwrap();
        assert_eq!(read.last_seen_ms, version(round), "round {round}");
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let folds = folder.join().unwrap();
    assert!(folds >= 2, "the runs folded while commit points went on ({folds} folds)");
    let check = |store: &ColumnarEvents| {
        for v in 0..40 {
            assert_eq!(store.profile("s1", &format!("v{v:02}")).unwrap().unwrap().last_seen_ms, version(79), "v{v:02}");
        }
    };
    check(&store);
    drop(store);
    check(&ColumnarEvents::open_with_budget(dir.path(), 0).unwrap());
}

/// Every value of the `visitor_id` column of every Parquet file under `dir` (event and session
/// parts, profile runs), whatever the file's role.
fn visitor_ids_on_disk(dir: &Path) -> Vec<String> {
    use datafusion::arrow::array::AsArray;
    let mut out = Vec::new();
    for path in walk(dir).into_iter().filter(|p| p.ends_with(".parquet")) {
        let file = std::fs::File::open(&path).unwrap();
        let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            if let Ok(column) = batch.schema().index_of("visitor_id") {
                out.extend(batch.column(column).as_string::<i32>().iter().flatten().map(str::to_owned));
            }
        }
    }
    out
}

#[tokio::test]
async fn an_erase_rewrites_every_file_that_held_the_visitors_and_only_their_rows_leave() {
    let dir = tempfile::tempdir().unwrap();
    let store = ColumnarEvents::open(dir.path()).unwrap();
    // Two days, several commit points (several parts and profile runs), one rollup-ready day.
    for (round, day) in [(0u64, 0), (1, 0), (2, 1)] {
        let ts = T0 + day * DAY_MS + round as i64 * 1000;
        let events = [event("s1", "secret", ts), event("s1", "keep", ts + 1), event("s2", "secret", ts)];
        let sessions = [session("secret", ts, 1), session("keep", ts + 1, 1)];
        store.append(&events, &sessions, &[profile("secret", 70, ts), profile("keep", 20, ts)], &positions(round)).unwrap();
        store.commit_point().unwrap();
    }
    // A merged, rolled-up closed day holding the visitor too.
    store.compact(T0 + 10 * DAY_MS, 2).unwrap();
    assert!(store.build_rollups(T0 + 10 * DAY_MS).await.unwrap() > 0);
    let before = everything(&store).await;
    assert!(visitor_ids_on_disk(dir.path()).iter().any(|v| v == "secret"));

    let erased = store.erase_visitors("s1", &["secret".to_string()]).unwrap();
    assert_eq!((erased.events, erased.sessions, erased.profiles), (3, 3, 1));
    // Files of removed parts and runs go when the last reader lets go: none holds them here.
    let on_disk = visitor_ids_on_disk(dir.path());
    assert_eq!(on_disk.iter().filter(|v| *v == "secret").count(), 3, "only site s2's events (another site's data)");
    assert!(on_disk.iter().any(|v| v == "keep"));
    assert!(store.profile("s1", "secret").unwrap().is_none());
    assert!(store.visitor_events("s1", "secret", 10, None).unwrap().items.is_empty());
    assert_eq!(store.visitor_events("s1", "keep", 10, None).unwrap().items.len(), 3);
    assert_eq!(store.visitor_events("s2", "secret", 10, None).unwrap().items.len(), 3);
    let after = everything(&store).await;
    assert_eq!(after.1.pageviews, before.1.pageviews - 3, "the overview drops by exactly its events");
    assert_eq!(after.1.visitors, before.1.visitors - 1);
    assert_eq!(ranked(&store), vec![("keep".to_string(), 20)]);
    drop(store);
    let store = ColumnarEvents::open(dir.path()).unwrap();
    assert!(store.profile("s1", "secret").unwrap().is_none(), "no run brings it back");
    assert_eq!(ranked(&store), vec![("keep".to_string(), 20)]);
    assert_eq!(everything(&store).await.1.pageviews, after.1.pageviews);
    assert_eq!(store.erase_visitors("s1", &["secret".to_string()]).unwrap(), Erased::default(), "a second erase finds nothing");
}
