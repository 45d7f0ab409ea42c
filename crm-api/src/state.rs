//! Shared API state: the store, the token keys, and who to tell when a site changes (the
//! in-process collector's site directory, when the API and collector share a process).

use std::sync::Arc;

use crm_schemas::Site;
use crm_store::Store;

use crate::JwtKeys;

/// Called after a site is created or changed.
pub type SiteListener = Arc<dyn Fn(&Site) + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub keys: Arc<JwtKeys>,
    pub site_listener: Option<SiteListener>,
}

impl ApiState {
    pub fn new(store: Arc<dyn Store>, keys: JwtKeys) -> ApiState {
        ApiState { store, keys: Arc::new(keys), site_listener: None }
    }

    pub fn with_site_listener(mut self, listener: SiteListener) -> ApiState {
        self.site_listener = Some(listener);
        self
    }
}
