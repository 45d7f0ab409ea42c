//! Versioned, idempotent migrations. Each migration is a list of statements applied once and
//! recorded in `schema_migrations`; every statement is also safe to re-run (`IF NOT EXISTS`).
//!
//! Choices:
//! * `events` — MergeTree partitioned by month, ordered by (site, day, visitor, ts, id) so the
//!   overview scans one site's date range and a timeline reads one visitor's granules; a bloom
//!   filter on `event_id` serves the processor's replay check. Replays never reach it: the
//!   processor drops stored ids and inserts each batch's events in one atomic insert, last.
//! * `visitors`, `sessions`, `sites`, `users`, `meta`, `forms` — ReplacingMergeTree keyed by identity
//!   with a version column; reads use FINAL so they are exact before merges.
//! * Retention — `TTL` on events, sessions and dead letters (`retention_days`), whole parts
//!   dropped; none by default, like the embedded store.

/// (version, name, statements). `{ttl}` is replaced by the retention clause (or nothing).
pub const MIGRATIONS: &[(u32, &str, &[&str])] = &[(
    1,
    "initial schema",
    &[
        "CREATE TABLE IF NOT EXISTS events (
            site_id LowCardinality(String),
            ts DateTime64(3, 'UTC'),
            visitor_id String,
            event_id String,
            kind LowCardinality(String),
            path String,
            is_bot UInt8,
            body String CODEC(ZSTD(3)),
            INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1,
            INDEX idx_visitor visitor_id TYPE bloom_filter(0.01) GRANULARITY 1
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(ts)
        ORDER BY (site_id, toDate(ts), visitor_id, ts, event_id)
        {ttl_events}
        SETTINGS ttl_only_drop_parts = 1",
        "CREATE TABLE IF NOT EXISTS visitors (
            site_id LowCardinality(String),
            visitor_id String,
            version UInt64,
            is_bot UInt8,
            rank_intent UInt64,
            rank_engagement UInt64,
            rank_last_seen UInt64,
            profile String CODEC(ZSTD(3)),
            INDEX idx_visitor visitor_id TYPE bloom_filter(0.01) GRANULARITY 1
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY (site_id, visitor_id)",
        "CREATE TABLE IF NOT EXISTS sessions (
            site_id LowCardinality(String),
            start DateTime64(3, 'UTC'),
            session_id String,
            version UInt64,
            visitor_id String,
            is_bot UInt8,
            pageviews UInt32,
            bounce UInt8,
            duration_ms UInt64,
            referrer_host String,
            country LowCardinality(String),
            device LowCardinality(String),
            browser LowCardinality(String),
            utm_source String,
            body String CODEC(ZSTD(3))
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(start)
        ORDER BY (site_id, start, session_id)
        {ttl_sessions}
        SETTINGS ttl_only_drop_parts = 1",
        "CREATE TABLE IF NOT EXISTS dead_letters (
            site_id LowCardinality(String),
            received DateTime64(3, 'UTC'),
            id String,
            body String CODEC(ZSTD(3))
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(received)
        ORDER BY (site_id, received, id)
        {ttl_dead_letters}
        SETTINGS ttl_only_drop_parts = 1",
        "CREATE TABLE IF NOT EXISTS sites (key String, version UInt64, body String) ENGINE = ReplacingMergeTree(version) ORDER BY key",
        "CREATE TABLE IF NOT EXISTS users (key String, version UInt64, body String) ENGINE = ReplacingMergeTree(version) ORDER BY key",
        "CREATE TABLE IF NOT EXISTS meta (key String, version UInt64, body String) ENGINE = ReplacingMergeTree(version) ORDER BY key",
    ],
), (
    2,
    "lead forms",
    // `deleted` is ReplacingMergeTree's is_deleted column: a delete is a newer row with 1.
    &["CREATE TABLE IF NOT EXISTS forms (key String, version UInt64, deleted UInt8 DEFAULT 0, body String)
       ENGINE = ReplacingMergeTree(version, deleted) ORDER BY key"],
), (3, "leads", crate::store::LEADS_MIGRATION), (4, "alerts", crate::store::ALERTS_MIGRATION), (5, "ai insights", crate::store::INSIGHTS_MIGRATION),
    (6, "business data", crate::store::BUSINESS_MIGRATION),
    (7, "refresh tokens and the auth audit log", crate::store::AUTH_MIGRATION),
    (8, "knowledge base", crate::store::KB_MIGRATION),
    (9, "data-subject erasures", crate::store::PRIVACY_MIGRATION),
];

/// Renders a migration statement for the configured retention.
pub fn render(statement: &str, retention_days: Option<u32>) -> String {
    let ttl = |column: &str| retention_days.map(|days| format!("TTL toDateTime({column}) + INTERVAL {days} DAY")).unwrap_or_default();
    statement
        .replace("{ttl_events}", &ttl("ts"))
        .replace("{ttl_sessions}", &ttl("start"))
        .replace("{ttl_dead_letters}", &ttl("received"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_renders_into_ttl_clauses() {
        let events = MIGRATIONS[0].2[0];
        assert!(render(events, Some(30)).contains("TTL toDateTime(ts) + INTERVAL 30 DAY"));
        assert!(!render(events, None).contains("{ttl"));
        assert!(!render(events, None).contains("TTL"));
    }
}
