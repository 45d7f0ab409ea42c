//! The JSON envelopes every endpoint speaks, and the boxed body type servers share.
//!
//! Errors: `{"success":false,"error":{"code":"…","message":"…","details":…}}` with a stable
//! `code`; successes from the API: `{"success":true,"data":…,"meta":{…}}`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body type of every server here (hyper handlers and axum routers alike).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

#[derive(Debug, Serialize)]
pub struct ApiErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    success: bool,
    error: ApiErrorBody<'a>,
}

pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub fn error_response(status: StatusCode, code: &str, message: &str, details: Option<serde_json::Value>) -> Response<Body> {
    json_response(status, &ErrorEnvelope { success: false, error: ApiErrorBody { code, message, details } })
}

pub fn text_response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}
