//! [`Overlay`]: a store whose pipeline role is one implementation and every other role is
//! another store. Tests use it to break or delay the write path (a torn write, durability that
//! lags acknowledgement) while reads and configuration go to a real store.

use std::sync::Arc;

use crate::{forward_roles, PipelineStore, Store};

/// `pipeline` answers [`PipelineStore`]; `rest` answers every other role.
pub struct Overlay<P> {
    pub pipeline: P,
    pub rest: Arc<dyn Store>,
}

impl<P: PipelineStore> Overlay<P> {
    pub fn new(pipeline: P, rest: Arc<dyn Store>) -> Self {
        Overlay { pipeline, rest }
    }
}

forward_roles!(impl [P: PipelineStore] Overlay<P>, pipeline; PipelineStore);
forward_roles!(impl [P: Send + Sync + 'static] Overlay<P>, rest; EventStore, ProfileStore, LeadStore, WorkflowStore, AccountStore, ConfigStore, KnowledgeStore, PrivacyStore);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crm_schemas::Site;

    use std::collections::HashSet;

    use async_trait::async_trait;
    use uuid::Uuid;

    use super::*;
    use crate::conformance::sample_event;
    use crate::{ConfigStore, Durable, EmbeddedStore, Result, WriteBatch, WriteOutcome};

    /// Counts writes and claims durability only up to offset 5 of one partition.
    struct Counting {
        writes: AtomicUsize,
    }

    #[async_trait]
    impl PipelineStore for Counting {
        async fn unseen_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
            Ok(ids.iter().copied().collect())
        }
        async fn write(&self, _batch: Arc<WriteBatch>) -> Result<WriteOutcome> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(WriteOutcome::default())
        }
        fn durable_positions(&self) -> Durable {
            Durable::Upto(BTreeMap::from([("log/0".to_string(), 5)]))
        }
    }

    /// Takes any store that can answer configuration reads: `&dyn Store` must satisfy it.
    async fn site_name<S: ConfigStore + ?Sized>(store: &S, id: &str) -> Option<String> {
        store.site(id).await.unwrap().map(|site| site.name)
    }

    #[tokio::test]
    async fn the_pipeline_role_goes_to_one_store_and_every_other_role_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let rest: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        rest.put_site(&Site::new("s1", "Site one", 0)).await.unwrap();
        let overlay: Arc<dyn Store> = Arc::new(Overlay::new(Counting { writes: AtomicUsize::new(0) }, rest.clone()));

        let batch = WriteBatch { events: vec![sample_event("s1", "v1", 1_000, crm_schemas::EventBody::Pageview, "/")], ..Default::default() };
        overlay.write(Arc::new(batch)).await.unwrap();
        assert!(rest.visitor_events("s1", "v1", 10, None).await.unwrap().items.is_empty(), "the write went to the pipeline role only");
        assert_eq!(site_name(&*overlay, "s1").await.as_deref(), Some("Site one"), "reads go to the other store");

        let durable = overlay.durable_positions();
        assert!(durable.covers(&BTreeMap::from([("log/0".to_string(), 5)])));
        assert!(!durable.covers(&BTreeMap::from([("log/0".to_string(), 6)])));
        assert!(!durable.covers(&BTreeMap::from([("log/1".to_string(), 0)])), "an absent partition has nothing durable");
        assert!(rest.durable_positions().covers(&BTreeMap::from([("log/9".to_string(), u64::MAX)])), "the embedded store is durable on return");
    }
}
