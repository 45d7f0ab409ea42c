//! Query-parameter parsing into typed values with precise errors (axum's own rejections are
//! plain text; these produce the error envelope).

use std::collections::HashMap;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use crate::ApiError;

pub type Query = HashMap<String, String>;

pub fn required<'a>(query: &'a Query, name: &'static str) -> Result<&'a str, ApiError> {
    match query.get(name).map(String::as_str) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ApiError::MissingParameter(name)),
    }
}

fn invalid(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter { name: name.to_owned(), message: message.into() }
}

pub fn limit(query: &Query, default: usize, max: usize) -> Result<usize, ApiError> {
    match query.get("limit") {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(invalid("limit", format!("must be an integer from 1 to {max}"))),
        },
    }
}

/// A `true`/`false` parameter (absent: false).
pub fn flag(query: &Query, name: &str) -> Result<bool, ApiError> {
    match query.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(invalid(name, "must be true or false")),
    }
}

/// Parses an enum-like parameter through serde's snake_case names.
pub fn choice<T: serde::de::DeserializeOwned + Default>(query: &Query, name: &str, allowed: &str) -> Result<T, ApiError> {
    Ok(optional_choice(query, name, allowed)?.unwrap_or_default())
}

/// [`choice`] for parameters without a default: `None` when absent.
pub fn optional_choice<T: serde::de::DeserializeOwned>(query: &Query, name: &str, allowed: &str) -> Result<Option<T>, ApiError> {
    match query.get(name) {
        None => Ok(None),
        Some(text) => serde_json::from_value(serde_json::Value::String(text.clone())).map(Some).map_err(|_| invalid(name, format!("must be one of {allowed}"))),
    }
}

/// Accepts `YYYY-MM-DD` (UTC midnight), RFC 3339, or epoch milliseconds.
pub fn timestamp_ms(query: &Query, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = query.get(name) else { return Ok(None) };
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(Some(ms));
    }
    if let Ok(date) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        let at = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc();
        return Ok(Some((at.unix_timestamp_nanos() / 1_000_000) as i64));
    }
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(Some((at.unix_timestamp_nanos() / 1_000_000) as i64));
    }
    Err(invalid(name, "must be YYYY-MM-DD, RFC 3339 or epoch milliseconds"))
}

/// Parses a JSON request body into `T`; any mismatch is a `malformed_json` error with serde's
/// explanation (unknown fields, wrong types, missing fields).
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// Renders epoch milliseconds as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Query {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn timestamps_in_three_forms() {
        let q = query(&[("a", "2026-11-24"), ("b", "2026-11-24T01:00:00Z"), ("c", "1700000000000"), ("d", "yesterday")]);
        assert_eq!(timestamp_ms(&q, "a").unwrap(), Some(1_795_478_400_000));
        assert_eq!(timestamp_ms(&q, "b").unwrap(), Some(1_795_478_400_000 + 3_600_000));
        assert_eq!(timestamp_ms(&q, "c").unwrap(), Some(1_700_000_000_000));
        assert!(matches!(timestamp_ms(&q, "d"), Err(ApiError::InvalidParameter { .. })));
        assert_eq!(timestamp_ms(&q, "missing").unwrap(), None);
        assert_eq!(rfc3339(1_795_478_400_000), "2026-11-24T00:00:00Z");
    }

    #[test]
    fn limits() {
        assert_eq!(limit(&query(&[]), 50, 200).unwrap(), 50);
        assert_eq!(limit(&query(&[("limit", "200")]), 50, 200).unwrap(), 200);
        for bad in ["0", "201", "-1", "ten"] {
            assert!(limit(&query(&[("limit", bad)]), 50, 200).is_err(), "{bad}");
        }
    }
}
