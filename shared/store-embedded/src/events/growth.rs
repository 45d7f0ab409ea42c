//! The growth-report reads of the columnar event store (funnel and goal rows, retention grids,
//! custom events, paths): each takes the site's snapshot of the window and hands it to
//! [`crate::query`].

use crm_store::StoreError;

use super::ColumnarEvents;
use crate::query;

impl ColumnarEvents {
    /// The rows of a growth report (see [`crm_store::EventStore::matched_events`]).
    pub async fn matched_events(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[crm_store::growth::EventMatch], keep_unmatched: bool) -> Result<Vec<crm_store::growth::MatchedEvent>, StoreError> {
        crm_store::growth::check_matchers(matchers)?;
        query::matched_events(&self.snapshot(site_id, from_ms, to_ms)?, from_ms, to_ms, matchers, keep_unmatched).await
    }

    /// The retention grid counted in DataFusion, when it can be (see [`query::retention`]).
    pub async fn retention(&self, site_id: &str, spec: &crm_store::growth::RetentionSpec) -> Result<Option<crm_store::growth::RetentionReport>, StoreError> {
        crm_store::growth::check_matchers(&spec.matchers())?;
        query::retention(&self.snapshot(site_id, spec.start_ms, spec.end_ms())?, spec).await
    }

    /// The custom events of a window (see [`crm_store::EventStore::custom_events`]).
    pub async fn custom_events(&self, site_id: &str, from_ms: i64, to_ms: i64, top: usize) -> Result<Vec<crm_store::explore::CustomEventStats>, StoreError> {
        query::custom_events(&self.snapshot(site_id, from_ms, to_ms)?, from_ms, to_ms, top).await
    }

    /// The pages around a page (see [`crm_store::EventStore::page_paths`]).
    pub async fn page_paths(&self, site_id: &str, from_ms: i64, to_ms: i64, glob: &str, top: usize) -> Result<crm_store::explore::PagePaths, StoreError> {
        crm_store::growth::check_matchers(&[crm_store::growth::EventMatch::Page(glob.to_owned())])?;
        query::page_paths(&self.snapshot(site_id, from_ms, to_ms)?, from_ms, to_ms, glob, top).await
    }
}
