//! The collector's view of configured sites: an in-memory map refreshed from the store, updated
//! in place when the API changes a site in the same process, and consulted on a miss so a newly
//! created site works at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_schemas::Site;
use crm_store::{Store, StoreError};
use parking_lot::RwLock;

pub struct SiteDirectory {
    store: Arc<dyn Store>,
    sites: RwLock<HashMap<String, Arc<Site>>>,
    /// Recently missed ids, so a flood of unknown ids doesn't turn into a flood of store reads.
    misses: RwLock<HashMap<String, Instant>>,
}

const MISS_TTL: Duration = Duration::from_secs(5);
const MAX_MISSES: usize = 10_000;

impl SiteDirectory {
    pub async fn load(store: Arc<dyn Store>) -> Result<Arc<SiteDirectory>, StoreError> {
        let directory = Arc::new(SiteDirectory { store, sites: RwLock::default(), misses: RwLock::default() });
        directory.refresh().await?;
        Ok(directory)
    }

    /// The store the directory reads from (the collector also reads lead forms and the known
    /// traits of a visitor through it).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn refresh(&self) -> Result<(), StoreError> {
        let sites = self.store.sites().await?;
        let map = sites.into_iter().map(|s| (s.site_id.clone(), Arc::new(s))).collect();
        *self.sites.write() = map;
        self.misses.write().clear();
        Ok(())
    }

    pub fn upsert(&self, site: Site) {
        self.misses.write().remove(&site.site_id);
        self.sites.write().insert(site.site_id.clone(), Arc::new(site));
    }

    pub fn remove(&self, site_id: &str) {
        self.sites.write().remove(site_id);
    }

    /// The site, consulting the store on a miss (at most once per id every few seconds).
    pub async fn get(&self, site_id: &str) -> Option<Arc<Site>> {
        if let Some(site) = self.sites.read().get(site_id) {
            return Some(site.clone());
        }
        if let Some(at) = self.misses.read().get(site_id) {
            if at.elapsed() < MISS_TTL {
                return None;
            }
        }
        match self.store.site(site_id).await {
            Ok(Some(site)) => {
                self.upsert(site);
                self.sites.read().get(site_id).cloned()
            }
            Ok(None) => {
                let mut misses = self.misses.write();
                if misses.len() >= MAX_MISSES {
                    misses.clear();
                }
                misses.insert(site_id.to_owned(), Instant::now());
                None
            }
            Err(err) => {
                tracing::warn!(error = %err, site_id, "site lookup failed");
                None
            }
        }
    }

    /// Periodically reloads the directory until `shutdown`.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration, shutdown: crm_service::Shutdown) {
        let directory = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.wait() => return,
                }
                if let Err(err) = directory.refresh().await {
                    tracing::warn!(error = %err, "site directory refresh failed");
                }
            }
        });
    }
}
