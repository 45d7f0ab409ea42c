//! Growth reports on ClickHouse, pushed down to SQL: the rows of funnels, retention and goals
//! (one bit per matcher), the custom-event listing (names, then properties through
//! `ARRAY JOIN JSONExtractKeysAndValuesRaw`, values compared by type as `crm_store::explore`
//! defines), and page paths (`lagInFrame`/`leadInFrame` over each session's pageviews). Only
//! aggregates leave the server; `crm_store::explore`'s builders put them in report order, so
//! every backend breaks ties alike.

use clickhouse::Row;
use crm_schemas::Scalar;
use crm_store::explore::{CustomEventStats, CustomEventsBuilder, PagePaths, PathsBuilder, ValueKey};
use crm_store::growth::{self, EventMatch, GlobForm, MatchedEvent};
use crm_store::Result;
use serde::Deserialize;

use super::{ch_err, range, ClickHouseStore, HUMANS};
use crate::rows::MatchedRow;

#[derive(Row, Deserialize)]
struct NameRow {
    name: String,
    events: u64,
    visitors: u64,
}

#[derive(Row, Deserialize)]
struct PropertyRow {
    name: String,
    key: String,
    events: u64,
    types: Vec<String>,
    distinct: u64,
}

#[derive(Row, Deserialize)]
struct ValueRow {
    name: String,
    key: String,
    class: u8,
    num: f64,
    text: String,
    count: u64,
}

#[derive(Row, Deserialize)]
struct PathRow {
    prev: Option<String>,
    next: Option<String>,
    count: u64,
}

/// Each property of the window's human custom events, its value classed (0 boolean, 1 number,
/// 2 string) with the number folded (`-0` is `0`) and the text of strings and booleans. The type
/// comes from the stored document: the raw value ClickHouse hands out is re-printed (`5.0`
/// becomes `5`), which would list a float as an integer.
fn properties(from: &str) -> String {
    format!(
        "SELECT JSONExtractString(body, 'name') AS name, kv.1 AS key, JSONType(body, 'props', kv.1) AS t,
                multiIf(t = 'Bool', 0, t IN ('Int64', 'UInt64', 'Double'), 1, t = 'String', 2, 3) AS class,
                if(class = 1, JSONExtractFloat(kv.2) + 0, 0) AS num,
                multiIf(class = 2, JSONExtractString(kv.2), class = 0, kv.2, '') AS text
         FROM events ARRAY JOIN JSONExtractKeysAndValuesRaw(body, 'props') AS kv
         WHERE {from} AND kind = 'custom' AND is_bot = 0{HUMANS}"
    )
}

fn type_name(t: &str) -> &'static str {
    match t {
        "String" => "string",
        "Int64" | "UInt64" => "integer",
        "Double" => "float",
        "Bool" => "boolean",
        _ => "other",
    }
}

impl ClickHouseStore {
    /// [`crm_store::EventStore::matched_events`]: the matchers become one `mask` expression.
    pub(super) async fn matched(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[EventMatch], keep_unmatched: bool) -> Result<Vec<MatchedEvent>> {
        growth::check_matchers(matchers)?;
        let mask = mask_sql(matchers);
        let keep = if keep_unmatched { " OR kind IN ('pageview', 'custom')" } else { "" };
        let sql = format!(
            "SELECT visitor_id, toUnixTimestamp64Milli(ts) AS ts_ms, toUInt32({mask}) AS mask FROM events
             WHERE {} AND is_bot = 0{HUMANS} AND (({mask}) != 0{keep}) ORDER BY visitor_id, ts, event_id",
            range("ts")
        );
        let query = bind_matchers(self.analytics(site_id, from_ms, &sql).bind(site_id).bind(from_ms).bind(to_ms), matchers);
        let rows: Vec<MatchedRow> = query.fetch_all().await.map_err(ch_err)?;
        Ok(rows.into_iter().map(|r| MatchedEvent { visitor_id: r.visitor_id, ts_ms: r.ts_ms, mask: r.mask }).collect())
    }

    /// [`crm_store::EventStore::custom_events`] in three aggregate queries.
    pub(super) async fn custom_event_stats(&self, site_id: &str, from_ms: i64, to_ms: i64, top: usize) -> Result<Vec<CustomEventStats>> {
        let window = range("ts");
        let names = format!(
            "SELECT JSONExtractString(body, 'name') AS name, count() AS events, uniqExact(visitor_id) AS visitors
             FROM events WHERE {window} AND kind = 'custom' AND is_bot = 0{HUMANS} GROUP BY name"
        );
        let props = format!(
            "SELECT name, key, count() AS events, arraySort(groupUniqArray(toString(t))) AS types, uniqExact(class, num, text) AS distinct
             FROM ({}) GROUP BY name, key",
            properties(&window)
        );
        let values = format!(
            "SELECT name, key, class, num, text, count() AS count FROM ({}) GROUP BY name, key, class, num, text
             ORDER BY name, key, count DESC, class, num, text LIMIT {top} BY name, key",
            properties(&window)
        );
        let query = |sql: &str| self.analytics(site_id, from_ms, sql).bind(site_id).bind(from_ms).bind(to_ms);
        let mut builder = CustomEventsBuilder::default();
        for row in query(&names).fetch_all::<NameRow>().await.map_err(ch_err)? {
            builder.add_name(&row.name, row.events, row.visitors);
        }
        for row in query(&props).fetch_all::<PropertyRow>().await.map_err(ch_err)? {
            builder.add_property(&row.name, &row.key, row.events, row.types.iter().map(|t| type_name(t)), row.distinct);
        }
        for row in query(&values).fetch_all::<ValueRow>().await.map_err(ch_err)? {
            let value = match row.class {
                0 => ValueKey::Bool(row.text == "true"),
                1 => ValueKey::number(row.num),
                _ => ValueKey::Text(row.text),
            };
            builder.add_value(&row.name, &row.key, value, row.count);
        }
        Ok(builder.finish(top))
    }

    /// [`crm_store::EventStore::page_paths`]: neighbours from window functions over each
    /// session's pageviews of the window, grouped on the server.
    pub(super) async fn paths(&self, site_id: &str, from_ms: i64, to_ms: i64, glob: &str, top: usize) -> Result<PagePaths> {
        growth::check_matchers(&[EventMatch::Page(glob.to_owned())])?;
        let (page, pattern) = match glob.contains('*') {
            false => ("p = {page:String}", glob.to_owned()),
            true => ("match(p, {page:String})", growth::glob_regex(glob)),
        };
        let sql = format!(
            "SELECT prev, next, count() AS count FROM (
               SELECT path AS p, lagInFrame(toNullable(path)) OVER w AS prev, leadInFrame(toNullable(path)) OVER w AS next
               FROM events WHERE {} AND kind = 'pageview' AND is_bot = 0{HUMANS}
               WINDOW w AS (PARTITION BY JSONExtractString(body, 'session_id') ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
             ) WHERE {page} GROUP BY prev, next",
            range("ts")
        );
        let rows: Vec<PathRow> = self.analytics(site_id, from_ms, &sql).bind(site_id).bind(from_ms).bind(to_ms).param("page", pattern).fetch_all().await.map_err(ch_err)?;
        let mut builder = PathsBuilder::new(glob);
        for row in rows {
            builder.add_pair(row.prev.as_deref(), row.next.as_deref(), row.count);
        }
        Ok(builder.finish(top))
    }
}

/// The sum of one bit per matcher an event satisfies, as SQL over `events`: literals travel as
/// server-side parameters `m0`, `m1`, … ([`bind_matchers`]), globs as an equality, a prefix or
/// an anchored RE2 ([`growth::glob_form`]).
pub(super) fn mask_sql(matchers: &[EventMatch]) -> String {
    let condition = |i: usize, m: &EventMatch| match m {
        EventMatch::Any => "1".to_owned(),
        EventMatch::Page(glob) => match growth::glob_form(glob) {
            GlobForm::All => "(kind = 'pageview')".to_owned(),
            GlobForm::Exact(_) => format!("(kind = 'pageview' AND path = {{m{i}:String}})"),
            GlobForm::Prefix(_) => format!("(kind = 'pageview' AND startsWith(path, {{m{i}:String}}))"),
            GlobForm::Pattern => format!("(kind = 'pageview' AND match(path, {{m{i}:String}}))"),
        },
        EventMatch::Event(_) => format!("(kind = 'custom' AND JSONExtractString(body, 'name') = {{m{i}:String}})"),
        // Typed like `PropertyCondition::holds_for`: the JSON type decides, numbers compare as Float64.
        EventMatch::EventWhere { condition, .. } => {
            let typed = match condition.value {
                Scalar::Str(_) => format!("JSONType(body, 'props', {{k{i}:String}}) = 'String' AND JSONExtractString(body, 'props', {{k{i}:String}}) = {{v{i}:String}}"),
                Scalar::Bool(_) => format!("JSONType(body, 'props', {{k{i}:String}}) = 'Bool' AND JSONExtractRaw(body, 'props', {{k{i}:String}}) = {{v{i}:String}}"),
                Scalar::Int(_) | Scalar::Float(_) => format!(
                    "JSONType(body, 'props', {{k{i}:String}}) IN ('Int64', 'UInt64', 'Double') AND JSONExtractFloat(body, 'props', {{k{i}:String}}) = toFloat64({{v{i}:String}})"
                ),
            };
            format!("(kind = 'custom' AND JSONExtractString(body, 'name') = {{m{i}:String}} AND {typed})")
        }
    };
    match matchers.is_empty() {
        true => "0".to_owned(),
        false => matchers.iter().enumerate().map(|(i, m)| format!("if({}, {}, 0)", condition(i, m), 1u64 << i)).collect::<Vec<_>>().join(" + "),
    }
}

/// Binds the parameters [`mask_sql`] names.
pub(super) fn bind_matchers(mut query: clickhouse::query::Query, matchers: &[EventMatch]) -> clickhouse::query::Query {
    for (i, m) in matchers.iter().enumerate() {
        let name = format!("m{i}");
        query = match m {
            EventMatch::Any => query,
            EventMatch::Page(glob) => match growth::glob_form(glob) {
                GlobForm::All => query,
                GlobForm::Exact(text) | GlobForm::Prefix(text) => query.param(&name, text),
                GlobForm::Pattern => query.param(&name, growth::glob_regex(glob)),
            },
            EventMatch::Event(text) => query.param(&name, text.as_str()),
            EventMatch::EventWhere { name: event, condition } => {
                let value = match &condition.value {
                    Scalar::Str(text) => text.clone(),
                    Scalar::Bool(b) => b.to_string(),
                    Scalar::Int(n) => n.to_string(),
                    Scalar::Float(f) => f.to_string(),
                };
                query.param(&name, event.as_str()).param(&format!("k{i}"), condition.key.as_str()).param(&format!("v{i}"), value)
            }
        };
    }
    query
}
