//! The shared store conformance suite against a real ClickHouse server. Needs
//! `CRM_TEST_CLICKHOUSE_URL` (scripts/test.sh starts a server and sets it); without it every
//! test fails — it never passes by skipping.

use std::sync::Arc;

use async_trait::async_trait;
use crm_store::conformance::StoreHarness;
use crm_store::Store;
use crm_store_clickhouse::{ClickHouseConfig, ClickHouseStore};

pub fn clickhouse_url() -> String {
    std::env::var("CRM_TEST_CLICKHOUSE_URL")
        .expect("CRM_TEST_CLICKHOUSE_URL is not set: start a server with scripts/clickhouse.sh (scripts/test.sh does)")
}

struct ClickHouseHarness {
    config: ClickHouseConfig,
}

impl ClickHouseHarness {
    fn new() -> Self {
        let database = format!("crm_test_{}", uuid::Uuid::new_v4().simple());
        ClickHouseHarness { config: ClickHouseConfig::new(clickhouse_url(), database) }
    }
}

#[async_trait]
impl StoreHarness for ClickHouseHarness {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(ClickHouseStore::connect(&self.config).await.expect("connect to ClickHouse"))
    }
}

crm_store::store_conformance_suite!(ClickHouseHarness::new());
