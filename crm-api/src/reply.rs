//! Success envelopes and the opaque cursor encoding.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::json;

use crate::ApiError;

pub fn ok<T: Serialize>(data: T) -> Response {
    axum::Json(json!({ "success": true, "data": data })).into_response()
}

/// A bare JSON document (not enveloped), e.g. the OpenAPI document.
pub fn raw_json(value: serde_json::Value) -> Response {
    axum::Json(value).into_response()
}

pub fn created<T: Serialize>(data: T) -> Response {
    (StatusCode::CREATED, axum::Json(json!({ "success": true, "data": data }))).into_response()
}

pub fn page<T: Serialize>(items: Vec<T>, next_cursor: Option<String>, limit: usize) -> Response {
    let next = next_cursor.map(|c| URL_SAFE_NO_PAD.encode(c.as_bytes()));
    axum::Json(json!({
        "success": true,
        "data": items,
        "meta": { "limit": limit, "next_cursor": next, "has_more": next.is_some() },
    }))
    .into_response()
}

/// One page of an already sorted in-memory list whose `key`s increase along it: the items after
/// `cursor` (the key of the previous page's last item), and the cursor of the next page.
pub fn slice_after<T>(items: Vec<T>, key: impl Fn(&T) -> String, cursor: Option<&str>, limit: usize) -> (Vec<T>, Option<String>) {
    let start = cursor.map_or(0, |c| items.partition_point(|item| key(item).as_str() <= c));
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next = if more { rest.last().map(&key) } else { None };
    (rest, next)
}

/// Decodes a cursor handed out by [`page`].
pub fn decode_cursor(cursor: Option<&String>) -> Result<Option<String>, ApiError> {
    let Some(cursor) = cursor else { return Ok(None) };
    let invalid = || ApiError::InvalidParameter { name: "cursor".into(), message: "not a cursor this API issued".into() };
    let bytes = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).map_err(|_| invalid())?;
    String::from_utf8(bytes).map(Some).map_err(|_| invalid())
}
