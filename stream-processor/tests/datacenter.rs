//! The datacenter-network bot signal through the real processor: with an ASN database loaded, an
//! event from a hosting network (AWS here) is a bot and so is its visitor's profile, while a
//! browser on a consumer network is not; a site that turns the signal off counts both as people;
//! without an ASN database nothing changes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crm_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, Record, Topic};
use crm_schemas::{BotSettings, CollectedEvent, Site, WireEvent};
use crm_service::{MetricsRegistry, Shutdown};
use crm_store::{EmbeddedStore, Store};
use crm_stream_processor::{Enricher, GeoLookup, IpStorage, Processor, ProcessorConfig, ProcessorMetrics};
use maxminddb_writer::paths::IpAddrWithMask;
use serde_json::json;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

#[derive(serde::Serialize)]
struct Asn<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: &'a str,
}

/// 198.51.100.0/24 → AS 16509 (Amazon Web Services); 203.0.113.0/24 → AS 3320 (Deutsche Telekom).
fn asn_db() -> Vec<u8> {
    let mut db = maxminddb_writer::Database::default();
    for (cidr, asn, org) in [("198.51.100.0/24", 16509, "AMAZON-02"), ("203.0.113.0/24", 3320, "Deutsche Telekom AG")] {
        let value = db.insert_value(Asn { autonomous_system_number: asn, autonomous_system_organization: org }).unwrap();
        db.insert_node(cidr.parse::<IpAddrWithMask>().unwrap(), value);
    }
    db.write_to(Vec::new()).unwrap()
}

fn pageview(site: &str, visitor: &str, ip: &str) -> Record {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let wire: WireEvent = serde_json::from_value(json!({"v": 1, "type": "pageview", "site_id": site, "visitor_id": visitor, "ts": now, "url": "https://acme.example/pricing"})).unwrap();
    let collected = CollectedEvent { event: wire, received_at_ms: now, ip: Some(ip.into()), user_agent: Some(CHROME.into()) };
    Record::new(Topic::Events, Bytes::from_static(b"k"), serde_json::to_vec(&collected).unwrap())
}

/// (is the cloud visitor a bot, is the home visitor a bot) after one batch.
async fn judged(datacenter_asn: bool, geo: GeoLookup) -> (bool, bool) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let mut site = Site::new("s1", "Acme", 0);
    site.bots = BotSettings { datacenter_asn };
    store.put_site(&site).await.unwrap();
    log.append(vec![pageview("s1", "cloud", "198.51.100.7"), pageview("s1", "home", "203.0.113.9")]).await.unwrap();
    let mut consumer = log.subscribe("datacenter-test", &Topic::ALL).await.unwrap();
    let delivered = consumer.poll(10, Duration::from_secs(2)).await.unwrap();
    let mut processor = Processor::new(ProcessorConfig::default(), store.clone(), Enricher::new(geo, IpStorage::Anonymized), ProcessorMetrics::new(&MetricsRegistry::new()));
    processor.process(&delivered, consumer.source(), &Shutdown::new()).await.unwrap();
    let bot = |visitor: &'static str| {
        let store = store.clone();
        async move {
            let profile = store.visitor("s1", visitor).await.unwrap().expect("profile");
            let events = store.visitor_events("s1", visitor, 10, None).await.unwrap().items;
            assert!(events.iter().all(|e| e.is_bot == profile.is_bot), "{visitor}: the event and its profile agree");
            profile.is_bot
        }
    };
    (bot("cloud").await, bot("home").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosting_networks_are_bots_where_an_asn_database_is_loaded_and_the_site_allows() {
    let with_asn = || GeoLookup::from_bytes(None, Some(asn_db())).unwrap();
    assert_eq!(judged(true, with_asn()).await, (true, false), "AWS is a bot, a Telekom home line a person");
    assert_eq!(judged(false, with_asn()).await, (false, false), "the site turned the signal off");
    assert_eq!(judged(true, GeoLookup::disabled()).await, (false, false), "no ASN database, no signal");
}
