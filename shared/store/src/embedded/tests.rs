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
