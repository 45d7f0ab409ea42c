//! Bulk exports for batch jobs in columnar formats (no row-by-row JSON): ClickHouse renders
//! Parquet, the DataFusion jobs read it as Arrow record batches.

use crm_store::Result;

use super::{ch_err, ClickHouseStore};

/// Columns of the account-usage export (the health job's `events` table):
/// `account_id, visitor_id, ts_ms, kind, name, session_id, engaged_ms`.
const ACCOUNT_EVENTS: &str = "
SELECT v.account_id AS account_id, e.visitor_id AS visitor_id, toUnixTimestamp64Milli(e.ts) AS ts_ms,
       toString(e.kind) AS kind, JSONExtractString(e.body, 'name') AS name,
       JSONExtractString(e.body, 'session_id') AS session_id, toInt64(JSONExtractUInt(e.body, 'engaged_ms')) AS engaged_ms
FROM events AS e
INNER JOIN (
    SELECT visitor_id, JSONExtractString(profile, 'traits', 'account_id') AS account_id
    FROM visitors FINAL WHERE site_id = ? AND is_bot = 0 AND account_id != ''
) AS v ON e.visitor_id = v.visitor_id
WHERE e.site_id = ? AND e.is_bot = 0
  AND e.ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND e.ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC')";

impl ClickHouseStore {
    /// Events in `[from_ms, to_ms)` of visitors that identified with an `account_id` trait,
    /// as one Parquet file (strings as UTF-8).
    pub async fn export_account_events_parquet(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<u8>> {
        let mut cursor = self
            .client
            .clone()
            .with_setting("output_format_parquet_string_as_string", "1")
            .query(ACCOUNT_EVENTS)
            .bind(site_id)
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_bytes("Parquet")
            .map_err(ch_err)?;
        let mut out = Vec::new();
        while let Some(chunk) = cursor.next().await.map_err(ch_err)? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}
