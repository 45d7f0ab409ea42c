//! The embedded store's own tests: the shared conformance suite plus its specifics.

use super::*;
use crate::conformance::StoreHarness;
use crate::{rank_value, Store};

struct EmbeddedHarness {
    dir: tempfile::TempDir,
}

impl EmbeddedHarness {
    fn new() -> Self {
        EmbeddedHarness { dir: tempfile::tempdir().unwrap() }
    }
}

#[async_trait]
impl StoreHarness for EmbeddedHarness {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::open(self.dir.path()).unwrap())
    }
}

crate::store_conformance_suite!(EmbeddedHarness::new());

#[test]
fn second_open_of_the_same_file_is_refused_with_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedStore::open(dir.path()).unwrap();
    assert!(matches!(EmbeddedStore::open(dir.path()), Err(StoreError::InUse(_))));
}

#[test]
fn rank_value_orders_descending() {
    let mut high = VisitorProfile { intent_score: 90, last_seen_ms: 10, ..VisitorProfile::default() };
    let low = VisitorProfile { intent_score: 10, last_seen_ms: 20, ..VisitorProfile::default() };
    assert!(rank_value(&high, VisitorSort::Intent) < rank_value(&low, VisitorSort::Intent));
    assert!(rank_value(&high, VisitorSort::LastSeen) > rank_value(&low, VisitorSort::LastSeen));
    high.intent_score = 10;
    assert!(rank_value(&low, VisitorSort::Intent) < rank_value(&high, VisitorSort::Intent), "ties break by recency");
}

mod bodies_on_disk {
    //! Event bodies in segment files: rollover, cutting uncommitted bytes, upgrading old stores.

    use super::*;
    use crate::conformance::sample_event;
    use crm_schemas::EventBody;
    use std::io::Write;

    fn batch(events: Vec<StoredEvent>) -> WriteBatch {
        WriteBatch { events, ..WriteBatch::default() }
    }

    fn events(count: usize, from_ts: i64) -> Vec<StoredEvent> {
        (0..count).map(|i| sample_event("s1", &format!("v{}", i % 3), from_ts + i as i64, if i % 2 == 0 { EventBody::Pageview } else { EventBody::Custom { name: "x".into() } }, "/p")).collect()
    }

    fn segment_files(dir: &Path) -> Vec<(String, u64)> {
        let mut files: Vec<_> = std::fs::read_dir(dir.join("event-bodies"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
            .collect();
        files.sort();
        files
    }

    async fn all_events(store: &EmbeddedStore) -> Vec<StoredEvent> {
        store.scan_events("s1", 0, i64::MAX, 10_000, None).await.unwrap().items
    }

    #[tokio::test]
    async fn batches_roll_over_to_new_segments_and_stay_readable_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let written: Vec<StoredEvent> = {
            let store = EmbeddedStore::open_inner(dir.path(), 8 << 20, 4096).unwrap();
            let mut written = Vec::new();
            for round in 0..6 {
                let batch_events = events(10, 1_000 + round * 100);
                written.extend(batch_events.clone());
                store.write(batch(batch_events).into()).await.unwrap();
            }
            assert_eq!(all_events(&store).await, written);
            written
        };
        let files = segment_files(dir.path());
        assert!(files.len() >= 2, "4 KiB segments must roll over: {files:?}");
        let store = EmbeddedStore::open_inner(dir.path(), 8 << 20, 4096).unwrap();
        assert_eq!(all_events(&store).await, written);
        let timeline = store.visitor_events("s1", "v1", 100, None).await.unwrap().items;
        assert_eq!(timeline.len(), written.iter().filter(|e| e.visitor_id == "v1").count());
        assert_eq!(store.overview("s1", 0, i64::MAX, 10).await.unwrap().pageviews, 30);
    }

    #[tokio::test]
    async fn bytes_no_commit_references_are_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let first = events(5, 1_000);
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.write(batch(first.clone()).into()).await.unwrap();
        }
        let (name, committed_len) = segment_files(dir.path()).pop().unwrap();
        // A crash between appending a batch's bodies and committing its transaction.
        let path = dir.path().join("event-bodies").join(&name);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[b'x'; 777]).unwrap();
        std::fs::write(dir.path().join("event-bodies").join("00000009.seg"), b"orphan").unwrap();

        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(segment_files(dir.path()), vec![(name, committed_len)], "uncommitted bytes and segments removed");
        let second = events(5, 2_000);
        store.write(batch(second.clone()).into()).await.unwrap();
        assert_eq!(all_events(&store).await, [first, second].concat());
    }

    #[tokio::test]
    async fn a_store_that_kept_bodies_in_the_btree_is_upgraded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let old = events(25_001, 1_000); // more than one migration chunk
        {
            let db = Database::create(dir.path().join("store.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(LEGACY_EVENTS).unwrap();
                for event in &old {
                    table.insert((event.site_id.as_str(), event.ts_ms, event.event_id.as_u128()), encode(event).unwrap().as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.scan_events("s1", 0, i64::MAX, 10_000, cursor.as_deref()).await.unwrap();
            seen.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, old);
        assert_eq!(store.overview("s1", 0, i64::MAX, 10).await.unwrap().pageviews, 12_501);
        let txn = store.db.begin_read().unwrap();
        assert!(!txn.list_tables().unwrap().any(|t| redb::TableHandle::name(&t) == "events"), "the old table is dropped");
    }
}

mod profiles_with_rank_keys {
    //! Profile rows that carry their rank keys: updates re-index exactly, old stores upgrade.

    use super::*;
    use crate::conformance::sample_profile;

    fn intent_query(limit: usize) -> VisitorQuery {
        VisitorQuery { site_id: "s1".into(), sort: VisitorSort::Intent, bots: BotFilter::Exclude, limit, cursor: None }
    }

    #[tokio::test]
    async fn a_store_with_bare_json_profiles_is_upgraded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let old: Vec<VisitorProfile> = (0..10_003).map(|i| sample_profile("s1", &format!("v{i:05}"), (i % 100) as u8, 1, 1_000 + i as i64)).collect();
        {
            // The layout before: JSON rows, a rank-keys table, and the rank index built from it.
            let db = Database::create(dir.path().join("store.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut visitors = txn.open_table(LEGACY_VISITORS).unwrap();
                let rank_keys: TableDefinition<(&str, &str), (u8, u64, u64, u64)> = TableDefinition::new(LEGACY_VISITOR_RANK_KEYS);
                let mut rank_keys = txn.open_table(rank_keys).unwrap();
                let mut ranks = txn.open_table(VISITOR_RANK).unwrap();
                let mut sites = txn.open_table(VISITOR_SITES).unwrap();
                for p in &old {
                    let key = (p.site_id.as_str(), p.visitor_id.as_str());
                    visitors.insert(key, encode(p).unwrap().as_slice()).unwrap();
                    let values = SORTS.map(|sort| rank_value(p, sort));
                    for (sort, value) in SORTS.into_iter().zip(values) {
                        ranks.insert((key.0, rank_kind(sort, false), value, key.1), ()).unwrap();
                    }
                    rank_keys.insert(key, (0, values[0], values[1], values[2])).unwrap();
                    sites.insert((key.1, key.0), ()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.visitor("s1", "v00042").await.unwrap().as_ref(), Some(&old[42]));
        assert_eq!(store.find_visitor("v10002").await.unwrap(), vec![old[10_002].clone()]);
        let top = store.list_visitors(&intent_query(3)).await.unwrap().items;
        assert_eq!(top.iter().map(|p| p.visitor_id.as_str()).collect::<Vec<_>>(), ["v09999", "v09899", "v09799"]);

        // An update after the upgrade drops the entries the migrated row was indexed under.
        let mut lifted = old[5].clone();
        lifted.intent_score = 100;
        store.write(WriteBatch { visitors: vec![lifted.clone()], ..WriteBatch::default() }.into()).await.unwrap();
        let top = store.list_visitors(&intent_query(2)).await.unwrap().items;
        assert_eq!(top, vec![lifted, old[9_999].clone()]);
        let mut all = Vec::new();
        let mut query = intent_query(5_000);
        loop {
            let page = store.list_visitors(&query).await.unwrap();
            all.extend(page.items);
            match page.next_cursor {
                Some(next) => query.cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(all.len(), old.len(), "one index entry per visitor, none left behind");
        let txn = store.db.begin_read().unwrap();
        let names: Vec<String> = txn.list_tables().unwrap().map(|t| redb::TableHandle::name(&t).to_owned()).collect();
        assert!(!names.iter().any(|n| n == "visitors" || n == "visitor_rank_keys"), "old tables dropped: {names:?}");
    }

    #[tokio::test]
    async fn a_batch_written_in_key_order_keeps_first_events_and_last_profiles() {
        // The write sorts each table's keys; repeats inside one batch must still resolve as
        // sequential writes would: an event id is stored once (its first copy), a visitor
        // listed twice ends in its last state with one index entry.
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let first = crate::conformance::sample_event("s1", "v1", 1_000, crm_schemas::EventBody::Pageview, "/first");
        let mut repeat = first.clone();
        repeat.path = Some("/repeat".into());
        let other = crate::conformance::sample_event("s1", "v1", 2_000, crm_schemas::EventBody::Pageview, "/other");
        let early = sample_profile("s1", "v1", 90, 5, 1_000);
        let late = sample_profile("s1", "v1", 10, 5, 2_000);
        let neighbour = sample_profile("s1", "v0", 50, 5, 1_500);
        let batch = WriteBatch {
            events: vec![first.clone(), other.clone(), repeat],
            visitors: vec![early, neighbour.clone(), late.clone()],
            ..WriteBatch::default()
        };
        let outcome = store.write(batch.into()).await.unwrap();
        assert_eq!((outcome.events_written, outcome.duplicates_skipped), (2, 1));
        let timeline = store.visitor_events("s1", "v1", 10, None).await.unwrap().items;
        assert_eq!(timeline, vec![other, first]);
        assert_eq!(store.list_visitors(&intent_query(10)).await.unwrap().items, vec![neighbour, late]);
    }

    #[tokio::test]
    async fn an_unchanged_rank_keeps_its_single_index_entry_and_a_bot_flip_moves_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut profile = sample_profile("s1", "v1", 50, 5, 1_000);
        store.write(WriteBatch { visitors: vec![profile.clone()], ..WriteBatch::default() }.into()).await.unwrap();
        profile.pageviews += 1; // same rank keys, new content
        store.write(WriteBatch { visitors: vec![profile.clone()], ..WriteBatch::default() }.into()).await.unwrap();
        assert_eq!(store.list_visitors(&intent_query(10)).await.unwrap().items, vec![profile.clone()]);
        profile.is_bot = true;
        store.write(WriteBatch { visitors: vec![profile.clone()], ..WriteBatch::default() }.into()).await.unwrap();
        assert!(store.list_visitors(&intent_query(10)).await.unwrap().items.is_empty());
        let bots = VisitorQuery { bots: BotFilter::Only, ..intent_query(10) };
        assert_eq!(store.list_visitors(&bots).await.unwrap().items, vec![profile]);
    }
}

/// Every byte of the event-body segments, concatenated.
fn segment_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir.join("event-bodies")).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erase_zeroes_the_event_bodies_on_disk_and_a_crash_before_the_zeroing_is_finished_at_open() {
    use crate::PrivacyStore;
    let dir = tempfile::tempdir().unwrap();
    let erasure = |visitor: &str| crm_schemas::Erasure {
        erasure_id: format!("e-{visitor}"),
        site_id: "s1".into(),
        subject: crm_schemas::ErasureSubject::Visitor { visitor_id: visitor.into() },
        visitor_ids: vec![visitor.into()],
        lead_ids: vec![],
        requested_by: "admin".into(),
        at_ms: 0,
        completed_at_ms: None,
        counts: Default::default(),
    };
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut event = crate::conformance::sample_event("s1", "secret-visitor-1", 1_000, crm_schemas::EventBody::Pageview, "/private-path-1");
        event.title = Some("Title of secret-visitor-1".into());
        let other = crate::conformance::sample_event("s1", "kept-visitor", 1_000, crm_schemas::EventBody::Pageview, "/kept");
        let doomed = crate::conformance::sample_event("s1", "secret-visitor-2", 1_000, crm_schemas::EventBody::Pageview, "/private-path-2");
        store.write(Arc::new(WriteBatch { events: vec![event, other, doomed], ..WriteBatch::default() })).await.unwrap();
        assert!(holds(&segment_bytes(dir.path()), "secret-visitor-1"));
        let counts = store.erase_subject(&erasure("secret-visitor-1"), &[]).await.unwrap();
        assert_eq!(counts.get("events"), Some(&1));
        let bytes = segment_bytes(dir.path());
        assert!(!holds(&bytes, "secret-visitor-1") && !holds(&bytes, "private-path-1"), "the body's bytes are gone");
        assert!(holds(&bytes, "kept-visitor") && holds(&bytes, "secret-visitor-2"));
        assert_eq!(store.visitor_events("s1", "kept-visitor", 10, None).await.unwrap().items.len(), 1, "neighbours still read back");

        // A crash between the erase's commit and its zeroing: the refs are in the table.
        let txn = store.db.begin_write().unwrap();
        let (_, doomed) = privacy::erase_for_test(&txn, &erasure("secret-visitor-2")).unwrap();
        txn.commit().unwrap();
        assert_eq!(doomed, 1);
    }
    assert!(holds(&segment_bytes(dir.path()), "secret-visitor-2"), "not zeroed yet: the crash came first");
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert!(!holds(&segment_bytes(dir.path()), "secret-visitor-2"), "zeroed at open");
    assert!(store.visitor_events("s1", "secret-visitor-2", 10, None).await.unwrap().items.is_empty());
    assert_eq!(store.visitor_events("s1", "kept-visitor", 10, None).await.unwrap().items.len(), 1);
}
