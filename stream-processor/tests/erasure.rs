//! Erasure tombstones through the real processor, on the columnar store and on a real ClickHouse
//! server (`CRM_TEST_CLICKHOUSE_URL`; without it that test fails, never skips): a lead with two
//! devices is erased, then the whole log is processed again from the start by a fresh processor
//! (a reprocessing or a crash before the log commit) and nothing of the lead comes back, while the
//! bystander's replay is deduplicated as before; a visit after the erasure is new data and kept.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use crm_schemas::{lead_id_for, Erasure, ErasureSubject};
use crm_service::Shutdown;
use crm_store::Store;
use serde_json::json;
use support::{now_ms, record, Pipeline};

/// Events carry their id, as the collector's always do: a replay then has the same ids.
fn event(mut body: serde_json::Value) -> crm_eventlog::Record {
    body["event_id"] = json!(uuid::Uuid::new_v4().to_string());
    record(body)
}

fn page(visitor: &str, ts: i64, path: &str) -> crm_eventlog::Record {
    event(json!({"v": 1, "type": "pageview", "site_id": "s1", "visitor_id": visitor, "ts": ts, "url": format!("https://acme.example{path}")}))
}

fn identify(visitor: &str, ts: i64, traits: serde_json::Value) -> crm_eventlog::Record {
    event(json!({"v": 1, "type": "identify", "site_id": "s1", "visitor_id": visitor, "ts": ts, "traits": traits}))
}

async fn replay_after_erase(store: Arc<dyn Store>) {
    let mut p = Pipeline::new(store.clone()).await;
    let t = now_ms() - 3_600_000;
    let ada = lead_id_for("s1", "ada@acme.example");
    p.run(vec![page("laptop", t, "/"), page("laptop", t + 1_000, "/pricing"), identify("laptop", t + 2_000, json!({"email": "ada@acme.example"}))]).await;
    p.run(vec![page("phone", t + 10_000, "/demo"), identify("phone", t + 11_000, json!({"email": "Ada@acme.example"})), page("bo", t + 12_000, "/")]).await;
    let form = json!({"v": 1, "type": "form_submit", "site_id": "s1", "visitor_id": "kiosk", "ts": t + 13_000, "form_id": "demo",
                      "url": "https://acme.example/contact", "traits": {"email": "ada@acme.example"}});
    p.run(vec![event(form)]).await;
    let lead = store.leads(&[("s1".into(), ada.clone())]).await.unwrap().pop().expect("lead");
    assert_eq!(lead.visitor_ids, vec!["laptop", "phone", "kiosk"]);

    let erasure = Erasure {
        erasure_id: "e1".into(),
        site_id: "s1".into(),
        subject: ErasureSubject::Lead { lead_id: ada.clone() },
        visitor_ids: lead.visitor_ids.clone(),
        lead_ids: vec![ada.clone()],
        requested_by: "admin".into(),
        at_ms: now_ms(),
        completed_at_ms: None,
        counts: BTreeMap::new(),
    };
    store.put_erasure(&erasure).await.unwrap();
    let counts = store.erase_subject(&erasure, &[lead.visitor_ids.clone(), vec![lead.email.clone()]].concat()).await.unwrap();
    assert_eq!(counts.get("events"), Some(&6));
    assert_eq!(counts.get("leads"), Some(&1));

    // The whole log again, as one batch, through a processor that never saw it.
    let source = p.consumer.source().to_owned();
    let outcome = p.processor().process(&p.delivered, &source, &Shutdown::new()).await.unwrap();
    assert_eq!(outcome.erased, 6, "every event of the lead's three devices");
    assert_eq!(outcome.events_written, 0);
    assert_eq!(outcome.duplicates, 1, "the bystander's event");
    for visitor in ["laptop", "phone", "kiosk"] {
        assert!(store.visitor("s1", visitor).await.unwrap().is_none(), "{visitor}");
        assert!(store.visitor_events("s1", visitor, 10, None).await.unwrap().items.is_empty(), "{visitor}");
    }
    assert!(store.leads(&[("s1".into(), ada.clone())]).await.unwrap().is_empty());
    assert!(store.visitor("s1", "bo").await.unwrap().is_some());

    // Coming back after the erasure is a new visit: stored, with a fresh profile.
    p.run(vec![page("phone", now_ms(), "/blog")]).await;
    let profile = store.visitor("s1", "phone").await.unwrap().expect("a new profile");
    assert_eq!((profile.pageviews, profile.visits), (1, 1));
    assert!(profile.lead_id.is_none(), "the old identity is not restored");
    assert_eq!(store.visitor_events("s1", "phone", 10, None).await.unwrap().items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_lead_stays_erased_through_a_replay_on_the_columnar_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crm_store_embedded::ColumnarStore::open(dir.path()).unwrap());
    replay_after_erase(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_lead_stays_erased_through_a_replay_on_clickhouse() {
    replay_after_erase(support::clickhouse_store("crm_erasure").await).await;
}
