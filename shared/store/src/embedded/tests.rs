//! The embedded store's own tests: the shared conformance suite plus its specifics.

use super::*;
use crate::conformance::StoreHarness;

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
