//! ClickHouse data-subject erasure and per-site retention: the `erasures` table (the tombstones, versioned so the put
//! with the counts replaces the first), and the erase itself: per table a count, then an
//! `ALTER TABLE … DELETE` mutation that rewrites the parts before it returns, so the subject's
//! rows are gone from disk and not only hidden (lightweight deletes only mask them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use clickhouse::Row;
use crm_schemas::{add_count, Erasure};
use crm_store::{ConfigStore, PrivacyStore, Result, ERASURE_REVISION_KEY};
use serde::Serialize;

use super::{ch_err, encode, now_nanos, ClickHouseStore};
use crate::rows::{IdRow, Scalar64};

pub(crate) const MIGRATION: &[&str] = &["CREATE TABLE IF NOT EXISTS erasures (site_id LowCardinality(String), erasure_id String, version UInt64,
        at DateTime64(3, 'UTC'), body String)
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, erasure_id)"];

/// Needles per `multiSearchAny` call (the function takes at most 255).
const NEEDLES_PER_SEARCH: usize = 200;

#[derive(Row, Serialize)]
struct ErasureRow {
    site_id: String,
    erasure_id: String,
    version: u64,
    at: i64,
    body: String,
}

/// [`now_nanos`], but above every version this process wrote before: the second put of an
/// erasure (with the counts) replaces the first even within one clock tick or after a clock step
/// back.
fn next_version() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_nanos();
    let last = LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1))).unwrap_or_else(|last| last);
    now.max(last + 1)
}

/// The ids of `ids` that are not empty: an empty id would match every row whose (JSON) column is
/// missing or blank.
fn named(ids: &[String]) -> Vec<String> {
    ids.iter().filter(|id| !id.is_empty()).cloned().collect()
}

/// `column IN ?` for each term whose list is not empty, joined by OR, and the lists to bind in
/// order. No term left gives no lists, and [`ClickHouseStore::purge`] then deletes nothing.
fn any_of<'a>(terms: &[(&str, &'a [String])]) -> (String, Vec<&'a [String]>) {
    let mut sql = Vec::new();
    let mut lists = Vec::new();
    for &(column, list) in terms {
        if !list.is_empty() {
            sql.push(format!("{column} IN ?"));
            lists.push(list);
        }
    }
    (sql.join(" OR "), lists)
}

impl ClickHouseStore {
    /// Deletes the site's rows of `table` matching `filter`, whose `?`s take `lists` in order, as
    /// a mutation that has rewritten the parts when it returns (`mutations_sync = 2`). Returns
    /// the records found first: for a ReplacingMergeTree (`replacing`) the latest versions, so a
    /// record counts once however many versions it has. Nothing runs when a list is empty (an
    /// empty `IN` must not select everything) or nothing matches (so a re-run is cheap).
    async fn purge(&self, table: &str, replacing: bool, site_id: &str, filter: &str, lists: &[&[String]]) -> Result<u64> {
        if lists.is_empty() || lists.iter().any(|list| list.is_empty()) {
            return Ok(0);
        }
        let bound = |sql: String| lists.iter().fold(self.client.query(&sql).bind(site_id), |query, list| query.bind(*list));
        let rows: Scalar64 =
            bound(format!("SELECT count() AS value FROM {table} WHERE site_id = ? AND ({filter})")).fetch_one().await.map_err(ch_err)?;
        if rows.value == 0 {
            return Ok(0);
        }
        let records = if replacing {
            let latest: Scalar64 =
                bound(format!("SELECT count() AS value FROM {table} FINAL WHERE site_id = ? AND ({filter})")).fetch_one().await.map_err(ch_err)?;
            latest.value
        } else {
            rows.value
        };
        // A heavyweight mutation, not `DELETE FROM`: a lightweight delete only masks the rows
        // until a merge, and erasure is about the bytes. Waits for every replica.
        bound(format!("ALTER TABLE {table} DELETE WHERE site_id = ? AND ({filter})"))
            .with_setting("mutations_sync", "2")
            .execute()
            .await
            .map_err(ch_err)?;
        Ok(records)
    }

    /// Per-site retention of one table: the site's rows whose `column` is before `before_ms`,
    /// counted (the latest versions for a ReplacingMergeTree) and deleted by a mutation.
    async fn purge_before(&self, table: &str, replacing: bool, site_id: &str, column: &str, before_ms: i64) -> Result<u64> {
        let filter = format!("{column} < fromUnixTimestamp64Milli(toInt64(?), 'UTC')");
        let count = |final_: &str| format!("SELECT count() AS value FROM {table} {final_} WHERE site_id = ? AND {filter}");
        let rows: Scalar64 = self.client.query(&count("")).bind(site_id).bind(before_ms).fetch_one().await.map_err(ch_err)?;
        if rows.value == 0 {
            return Ok(0);
        }
        let records = if replacing {
            let latest: Scalar64 = self.client.query(&count("FINAL")).bind(site_id).bind(before_ms).fetch_one().await.map_err(ch_err)?;
            latest.value
        } else {
            rows.value
        };
        self.client
            .query(&format!("ALTER TABLE {table} DELETE WHERE site_id = ? AND {filter}"))
            .bind(site_id)
            .bind(before_ms)
            .with_setting("mutations_sync", "2")
            .execute()
            .await
            .map_err(ch_err)?;
        Ok(records)
    }

    /// The site's chat conversations (any stored version) started by one of `visitors`.
    async fn conversations_of(&self, site_id: &str, visitors: &[String]) -> Result<Vec<String>> {
        if visitors.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<IdRow> = self
            .client
            .query("SELECT DISTINCT conversation_id AS id FROM kb_conversations WHERE site_id = ? AND JSONExtractString(body, 'visitor_id') IN ? ORDER BY id")
            .bind(site_id)
            .bind(visitors)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }
}

#[async_trait]
impl PrivacyStore for ClickHouseStore {
    async fn put_erasure(&self, erasure: &Erasure) -> Result<()> {
        let row = ErasureRow {
            site_id: erasure.site_id.clone(),
            erasure_id: erasure.erasure_id.clone(),
            version: next_version(),
            at: erasure.at_ms,
            body: encode(erasure)?,
        };
        // The tombstone first: the revision only ever names an erasure that is stored.
        self.insert_rows("erasures", &[row]).await?;
        self.put_meta(ERASURE_REVISION_KEY, erasure.erasure_id.as_bytes()).await
    }

    async fn erasures(&self, site_id: &str) -> Result<Vec<Erasure>> {
        let query = self.client.query("SELECT body FROM erasures FINAL WHERE site_id = ? ORDER BY at, erasure_id").bind(site_id);
        self.bodies(query).await
    }

    async fn erase_subject(&self, erasure: &Erasure, needles: &[String]) -> Result<BTreeMap<String, u64>> {
        let site_id = erasure.site_id.as_str();
        let visitors = named(&erasure.visitor_ids);
        let leads = named(&erasure.lead_ids);
        let needles = named(needles);
        let (visitors, leads) = (visitors.as_slice(), leads.as_slice());
        let mut counts = BTreeMap::new();

        // (count key, table, whether a ReplacingMergeTree[, filter])
        let by_visitor: [(&str, &str, bool); 3] = [("events", "events", false), ("sessions", "sessions", true), ("profiles", "visitors", true)];
        for (kind, table, replacing) in by_visitor {
            add_count(&mut counts, kind, self.purge(table, replacing, site_id, "visitor_id IN ?", &[visitors]).await?);
        }
        let by_lead: [(&str, &str, bool, &str); 7] = [
            ("leads", "leads", true, "lead_id IN ?"),
            ("lead_crm", "lead_crm", true, "lead_id IN ?"),
            ("lead_audit", "lead_audit", false, "lead_id IN ?"),
            ("score_points", "lead_scores", true, "lead_id IN ?"),
            ("insights", "insights", true, "lead_id IN ?"),
            ("insight_requests", "insight_requests", true, "lead_id IN ?"),
            ("alerts", "alerts", true, "JSONExtractString(body, 'lead_id') IN ?"),
        ];
        for (kind, table, replacing, filter) in by_lead {
            add_count(&mut counts, kind, self.purge(table, replacing, site_id, filter, &[leads]).await?);
        }

        let (filter, lists) =
            any_of(&[("visitor_id", visitors), ("other_lead_id", leads), ("JSONExtractString(body, 'lead_id')", leads)]);
        add_count(&mut counts, "identity_conflicts", self.purge("identity_conflicts", true, site_id, &filter, &lists).await?);
        let (filter, lists) = any_of(&[
            ("JSONExtractString(body, 'kind', 'from_lead_id')", leads),
            ("JSONExtractString(body, 'kind', 'into_lead_id')", leads),
            ("JSONExtractString(body, 'kind', 'to_lead_id')", leads),
            ("JSONExtractString(body, 'kind', 'visitor_id')", visitors),
        ]);
        add_count(&mut counts, "identity_overrides", self.purge("identity_overrides", true, site_id, &filter, &lists).await?);

        // Messages before their conversations: a re-run after a failure in between still finds
        // the conversations, and through them any messages left.
        let conversations = self.conversations_of(site_id, visitors).await?;
        let conversations = conversations.as_slice();
        add_count(&mut counts, "messages", self.purge("kb_messages", true, site_id, "conversation_id IN ?", &[conversations]).await?);
        add_count(&mut counts, "conversations", self.purge("kb_conversations", true, site_id, "conversation_id IN ?", &[conversations]).await?);

        let searches: Vec<&[String]> = needles.chunks(NEEDLES_PER_SEARCH).collect();
        let filter = vec!["multiSearchAny(body, ?)"; searches.len()].join(" OR ");
        add_count(&mut counts, "dead_letters", self.purge("dead_letters", true, site_id, &filter, &searches).await?);

        let events = counts.get("events").copied().unwrap_or(0);
        let records: u64 = counts.values().sum();
        tracing::info!(site_id, erasure_id = %erasure.erasure_id, events, records, "erased subject");
        Ok(counts)
    }

    async fn drop_site_before(&self, site_id: &str, before_ms: i64) -> Result<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for (kind, table, column, replacing) in [("events", "events", "ts", false), ("sessions", "sessions", "start", true), ("dead_letters", "dead_letters", "received", true)] {
            add_count(&mut counts, kind, self.purge_before(table, replacing, site_id, column, before_ms).await?);
        }
        Ok(counts)
    }
}
