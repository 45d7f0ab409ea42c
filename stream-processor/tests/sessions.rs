//! Sessions written per batch: a session a batch closes (its visitor went idle and came back)
//! is stored in its final state next to the one the batch opened, and a later batch updates the
//! open session in place.

mod support;

use std::sync::Arc;

use crm_store::{EmbeddedStore, Store};
use support::{now_ms, page, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_open_sessions_are_stored_in_their_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let mut p = Pipeline::new(store.clone()).await;
    let t0 = now_ms() - 3_600_000;
    let minute = 60_000;
    p.run(vec![
        page("v1", t0, "/"),
        page("v1", t0 + minute, "/pricing"),
        page("v2", t0 + 2 * minute, "/"),
        page("v1", t0 + 40 * minute, "/docs"),
        page("v1", t0 + 41 * minute, "/demo"),
    ])
    .await;
    let mut sessions = store.sessions_between("s1", t0 - 1, t0 + 3_600_000, 100).await.unwrap();
    sessions.sort_by_key(|s| (s.visitor_id.clone(), s.start_ms));
    let summary: Vec<(&str, i64, u32, i64)> = sessions.iter().map(|s| (s.visitor_id.as_str(), s.start_ms - t0, s.pageviews, s.end_ms - s.start_ms)).collect();
    assert_eq!(summary, vec![("v1", 0, 2, minute), ("v1", 40 * minute, 2, minute), ("v2", 2 * minute, 1, 0)], "{sessions:?}");
    assert_eq!(sessions[0].exit_page.as_deref(), Some("/pricing"), "the closed session kept its last page");

    p.run(vec![page("v1", t0 + 42 * minute, "/signup")]).await;
    let sessions = store.sessions_between("s1", t0 + 30 * minute, t0 + 3_600_000, 100).await.unwrap();
    let open: Vec<_> = sessions.iter().filter(|s| s.visitor_id == "v1").collect();
    assert_eq!(open.len(), 1, "updated in place, not a second row: {sessions:?}");
    assert_eq!((open[0].pageviews, open[0].exit_page.as_deref()), (3, Some("/signup")));
}
