//! Batch jobs that read the store as a whole: daily rollups (`crm batch rollups`), per-site
//! retention (`crm batch retention`), the customer health and churn jobs on DataFusion, the
//! playbooks they run, and the account simulator used by `crm demo accounts` and the tests.

pub mod churn;
pub mod churn_job;
pub mod health;
pub mod health_job;
pub mod parquet_table;
pub mod playbooks;
pub mod retention;
pub mod simulator;
pub mod usage;

use crm_schemas::{utc_day, DAY_MS};
use crm_store::{Store, StoreError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid job parameter: {0}")]
    InvalidParameter(String),
    #[error("query engine error: {0}")]
    Engine(String),
}

impl BatchError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, BatchError::Store(e) if e.is_retryable())
    }
}

/// One site's traffic on one UTC day (bots excluded).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DailyRollup {
    pub site_id: String,
    pub day: String,
    pub visitors: u64,
    pub sessions: u64,
    pub pageviews: u64,
    pub bounce_rate: f64,
    pub avg_session_duration_ms: u64,
}

pub(crate) fn day_string(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day * 86_400)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| day.to_string())
}

/// Rollups for the `days` complete UTC days before `now_ms` (plus today so far), oldest first,
/// for every site or the given one.
pub async fn daily_rollups(store: &dyn Store, site: Option<&str>, days: u32, now_ms: i64) -> Result<Vec<DailyRollup>, BatchError> {
    if days == 0 || days > 366 {
        return Err(BatchError::InvalidParameter("days must be between 1 and 366".into()));
    }
    let mut site_ids: Vec<String> = match site {
        Some(id) => vec![id.to_owned()],
        None => store.sites().await?.into_iter().map(|s| s.site_id).collect(),
    };
    site_ids.sort();
    let today = utc_day(now_ms);
    let mut rows = Vec::new();
    for site_id in site_ids {
        for day in (today - i64::from(days))..=today {
            let overview = store.overview(&site_id, day * DAY_MS, (day + 1) * DAY_MS, 1).await?;
            rows.push(DailyRollup {
                site_id: site_id.clone(),
                day: day_string(day),
                visitors: overview.visitors,
                sessions: overview.sessions,
                pageviews: overview.pageviews,
                bounce_rate: overview.bounce_rate,
                avg_session_duration_ms: overview.avg_session_duration_ms,
            });
        }
    }
    tracing::info!(rows = rows.len(), "daily rollups computed");
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_schemas::{EventBody, Site};
    use crm_store::conformance::{sample_event, sample_session};
    use crm_store::prelude::*;
    use crm_store::{EmbeddedStore, WriteBatch};

    #[tokio::test]
    async fn rollups_split_traffic_by_utc_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.put_site(&Site::new("s1", "S1", 0)).await.unwrap();
        let day = 20_000i64;
        let t = day * DAY_MS;
        let batch = WriteBatch {
            events: vec![
                sample_event("s1", "a", t + 10, EventBody::Pageview, "/"),
                sample_event("s1", "a", t + 20, EventBody::Pageview, "/x"),
                sample_event("s1", "b", t + DAY_MS + 5, EventBody::Pageview, "/"),
            ],
            sessions: vec![sample_session("s1", "a", t + 10, 2, 30_000), sample_session("s1", "b", t + DAY_MS + 5, 1, 0)],
            ..WriteBatch::default()
        };
        store.write(batch.into()).await.unwrap();
        let rows = daily_rollups(&store, None, 2, t + DAY_MS + 1000).await.unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].day, "2024-10-04");
        assert_eq!((rows[1].pageviews, rows[1].sessions, rows[1].visitors), (2, 1, 1));
        assert_eq!((rows[2].pageviews, rows[2].bounce_rate), (1, 1.0));
        assert_eq!(rows[0].pageviews, 0);
        assert!(daily_rollups(&store, Some("s1"), 0, t).await.is_err());
    }
}
