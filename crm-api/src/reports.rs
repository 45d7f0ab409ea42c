//! Reports flattened into one table each for the exports (`export.rs`): the JSON `data` of the
//! report's endpoint in, column names and rows of JSON scalars out. Where a report nests, the
//! table is long: one row per top-list entry, retention cell, path neighbour or top value.

use serde_json::Value;

/// Column names and rows.
pub(crate) type Rows = (Vec<String>, Vec<Vec<Value>>);

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// `section, key, value`: the headline figures (section `summary`), each top list's entries,
/// and each goal's conversions and rate.
pub(crate) fn overview_table(data: Value) -> Rows {
    let overview = &data["overview"];
    let mut rows = Vec::new();
    for figure in ["visitors", "sessions", "pageviews", "bounce_rate", "avg_session_duration_ms"] {
        rows.push(vec!["summary".into(), figure.into(), overview[figure].clone()]);
    }
    for list in ["top_pages", "top_referrers", "countries", "devices", "browsers", "utm_sources"] {
        for entry in items(&overview[list]) {
            rows.push(vec![list.into(), entry["key"].clone(), entry["count"].clone()]);
        }
    }
    for goal in items(&data["goals"]) {
        rows.push(vec!["goal_conversions".into(), goal["goal_id"].clone(), goal["conversions"].clone()]);
        rows.push(vec!["goal_conversion_rate".into(), goal["goal_id"].clone(), goal["conversion_rate"].clone()]);
    }
    (names(&["section", "key", "value"]), rows)
}

/// One row per bucket, with a `goal:<id>` conversions column per goal.
pub(crate) fn timeseries_table(data: Value) -> Rows {
    let figures = ["start", "visitors", "sessions", "pageviews", "bounce_rate", "avg_session_duration_ms"];
    let points = items(&data["points"]);
    let goal_ids: Vec<String> = points.first().map(|p| items(&p["goals"]).iter().filter_map(|g| g["goal_id"].as_str().map(str::to_owned)).collect()).unwrap_or_default();
    let mut columns = names(&figures);
    columns.extend(goal_ids.iter().map(|id| format!("goal:{id}")));
    let rows = points
        .iter()
        .map(|p| {
            let mut row: Vec<Value> = figures.iter().map(|f| p[*f].clone()).collect();
            row.extend(items(&p["goals"]).iter().map(|g| g["conversions"].clone()));
            row
        })
        .collect();
    (columns, rows)
}

/// Per goal; per goal and source with `by=source`; per goal and bucket with `interval`.
pub(crate) fn goals_table(data: Value) -> Rows {
    let goals = items(&data["goals"]);
    if goals.iter().any(|g| g.get("sources").is_some()) {
        let rows = goals.iter().flat_map(|g| items(&g["sources"]).iter().map(move |s| vec![g["goal_id"].clone(), g["name"].clone(), s["key"].clone(), s["count"].clone()])).collect();
        return (names(&["goal_id", "name", "source", "conversions"]), rows);
    }
    if goals.iter().any(|g| g.get("series").is_some()) {
        let rows = goals
            .iter()
            .flat_map(|g| items(&g["series"]).iter().map(move |p| vec![g["goal_id"].clone(), p["start"].clone(), p["conversions"].clone(), p["conversion_rate"].clone()]))
            .collect();
        return (names(&["goal_id", "start", "conversions", "conversion_rate"]), rows);
    }
    let columns = ["goal_id", "name", "conversions", "events", "conversion_rate"];
    (names(&columns), goals.iter().map(|g| columns.iter().map(|c| g[*c].clone()).collect()).collect())
}

pub(crate) fn funnel_table(data: Value) -> Rows {
    let columns = ["step", "visitors", "conversion_rate", "drop_off", "median_ms_from_previous"];
    let rows = items(&data["steps"])
        .iter()
        .enumerate()
        .map(|(i, s)| std::iter::once(Value::from(i as u64 + 1)).chain(columns.iter().map(|c| s[*c].clone())).collect())
        .collect();
    let mut header = names(&["step_number"]);
    header.extend(names(&columns));
    (header, rows)
}

/// One row per cohort and period (period 0 is the cohort itself).
pub(crate) fn retention_table(data: Value) -> Rows {
    let mut rows = Vec::new();
    for cohort in items(&data["cohorts"]) {
        for (period, returning) in items(&cohort["returning"]).iter().enumerate() {
            rows.push(vec![cohort["start"].clone(), cohort["size"].clone(), Value::from(period as u64), returning.clone(), cohort["rates"][period].clone()]);
        }
    }
    (names(&["cohort_start", "size", "period", "returning", "rate"]), rows)
}

pub(crate) fn paths_table(data: Value) -> Rows {
    let mut rows = Vec::new();
    for direction in ["previous", "next"] {
        for entry in items(&data[direction]) {
            rows.push(vec![direction.into(), entry["key"].clone(), entry["count"].clone()]);
        }
    }
    (names(&["direction", "page", "views"]), rows)
}

/// One row per event name, property and top value (a name without properties: one row).
pub(crate) fn custom_events_table(data: Value) -> Rows {
    let mut rows = Vec::new();
    for event in items(&data["events"]) {
        let head = || vec![event["name"].clone(), event["events"].clone(), event["visitors"].clone()];
        let properties = items(&event["properties"]);
        if properties.is_empty() {
            rows.push(head().into_iter().chain(std::iter::repeat_n(Value::Null, 6)).collect());
        }
        for property in properties {
            let types = items(&property["types"]).iter().filter_map(Value::as_str).collect::<Vec<_>>().join("|");
            for top in items(&property["top"]) {
                let value = match &top["value"] {
                    Value::String(s) => Value::String(s.clone()),
                    other => Value::String(other.to_string()),
                };
                let mut row = head();
                row.extend([property["key"].clone(), property["events"].clone(), types.clone().into(), property["distinct"].clone(), value, top["count"].clone()]);
                rows.push(row);
            }
        }
    }
    (names(&["name", "events", "visitors", "property", "property_events", "types", "distinct", "value", "value_count"]), rows)
}
