//! Per-site retention (`privacy.retention_days` in a site's settings): each site that sets it
//! loses its events, sessions and dead letters from before the first kept UTC day, on whatever
//! store. `crm up` runs it hourly; `crm batch retention` runs it once (split deployments, cron).

use std::collections::BTreeMap;

use crm_schemas::{utc_day, DAY_MS};
use crm_store::Store;
use serde::Serialize;

use crate::BatchError;

/// What retention removed from one site.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteRetention {
    pub site_id: String,
    pub retention_days: u32,
    /// The first UTC day kept (`YYYY-MM-DD`); everything before it went.
    pub first_kept_day: String,
    pub deleted: BTreeMap<String, u64>,
}

/// Applies every site's retention at `now_ms` (one site with `only`). Sites without a retention
/// setting are left alone.
pub async fn apply(store: &dyn Store, only: Option<&str>, now_ms: i64) -> Result<Vec<SiteRetention>, BatchError> {
    let mut done = Vec::new();
    for site in store.sites().await? {
        if only.is_some_and(|id| id != site.site_id) {
            continue;
        }
        let Some(days) = site.privacy.retention_days else { continue };
        // Today counts as one of the days kept.
        let first_kept = utc_day(now_ms) - i64::from(days.max(1)) + 1;
        let deleted = store.drop_site_before(&site.site_id, first_kept * DAY_MS).await?;
        if !deleted.is_empty() {
            tracing::info!(site_id = %site.site_id, days, deleted = deleted.values().sum::<u64>(), "site retention applied");
        }
        done.push(SiteRetention { site_id: site.site_id, retention_days: days, first_kept_day: crate::day_string(first_kept), deleted });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_schemas::{EventBody, PrivacySettings, Site};
    use crm_store::conformance::sample_event;
    use crm_store::{ConfigStore, EmbeddedStore, EventStore, PipelineStore, WriteBatch};

    #[tokio::test]
    async fn only_sites_with_a_retention_lose_their_days_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let now = 20_000 * DAY_MS + 3_600_000;
        let mut short = Site::new("short", "Short", 0);
        short.privacy = PrivacySettings { retention_days: Some(2), ..PrivacySettings::default() };
        store.put_site(&short).await.unwrap();
        store.put_site(&Site::new("forever", "Forever", 0)).await.unwrap();
        let mut events = Vec::new();
        for site in ["short", "forever"] {
            for days_ago in 0..4 {
                events.push(sample_event(site, "v", now - days_ago * DAY_MS, EventBody::Pageview, &format!("/{days_ago}")));
            }
        }
        store.write(WriteBatch { events, ..WriteBatch::default() }.into()).await.unwrap();
        let done = apply(&store, None, now).await.unwrap();
        assert_eq!(done.len(), 1, "the site without a setting is not touched");
        assert_eq!((done[0].site_id.as_str(), done[0].first_kept_day.as_str()), ("short", "2024-10-03"));
        assert_eq!(done[0].deleted.get("events"), Some(&2), "today and yesterday are kept");
        let paths = |site: &'static str| {
            let store = &store;
            async move { store.visitor_events(site, "v", 10, None).await.unwrap().items.into_iter().filter_map(|e| e.path).collect::<Vec<_>>() }
        };
        assert_eq!(paths("short").await, vec!["/0", "/1"]);
        assert_eq!(paths("forever").await.len(), 4);
        assert!(apply(&store, Some("short"), now).await.unwrap()[0].deleted.is_empty(), "a second run finds nothing");
        assert!(apply(&store, Some("nowhere"), now).await.unwrap().is_empty());
    }
}
