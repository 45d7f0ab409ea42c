//! Request-level collector errors, each with its HTTP status and stable error code.

use std::time::Duration;

use crm_schemas::{FieldError, ValidationError};
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the pixel's query string exceeds {limit} bytes; send large events with POST /v1/events")]
    QueryTooLong { limit: usize },
    #[error("batch holds {count} events, the limit is {limit}")]
    TooManyEvents { count: usize, limit: usize },
    #[error("content type {0:?} is not accepted; send application/json or text/plain")]
    UnsupportedMediaType(String),
    #[error("content encoding {0:?} is not accepted; send gzip or identity")]
    UnsupportedEncoding(String),
    #[error("body is not valid gzip")]
    MalformedGzip,
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("body is not valid UTF-8")]
    InvalidUtf8,
    #[error("the batch contains no events")]
    EmptyBatch,
    #[error("too many requests; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("failed to read the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("{0} not found")]
    NotFound(String),
    #[error("origin {0} may not use this site's forms")]
    OriginNotAllowed(String),
    #[error("some fields need attention")]
    InvalidFields(Vec<FieldError>),
    #[error("{0}")]
    InvalidEvent(ValidationError),
    #[error("event log unavailable: {0}")]
    LogUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::PayloadTooLarge { .. } | IngestError::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::QueryTooLong { .. } => StatusCode::URI_TOO_LONG,
            IngestError::UnsupportedMediaType(_) | IngestError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::MalformedGzip
            | IngestError::MalformedJson(_)
            | IngestError::InvalidUtf8
            | IngestError::EmptyBatch
            | IngestError::BodyRead(_) => StatusCode::BAD_REQUEST,
            IngestError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            IngestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            IngestError::NotFound(_) => StatusCode::NOT_FOUND,
            IngestError::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            IngestError::InvalidFields(_) => StatusCode::UNPROCESSABLE_ENTITY,
            IngestError::InvalidEvent(_) => StatusCode::BAD_REQUEST,
            IngestError::LogUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::TooManyEvents { .. } => "too_many_events",
            IngestError::QueryTooLong { .. } => "query_too_long",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
            IngestError::MalformedGzip => "malformed_gzip",
            IngestError::MalformedJson(_) => "malformed_json",
            IngestError::InvalidUtf8 => "invalid_utf8",
            IngestError::EmptyBatch => "empty_batch",
            IngestError::RateLimited { .. } => "rate_limited",
            IngestError::BodyRead(_) => "body_read_failed",
            IngestError::BodyTimeout(_) => "body_timeout",
            IngestError::NotFound(_) => "not_found",
            IngestError::OriginNotAllowed(_) => "origin_not_allowed",
            IngestError::InvalidFields(_) => "invalid_fields",
            IngestError::InvalidEvent(error) => error.code,
            IngestError::LogUnavailable(_) => "log_unavailable",
            IngestError::Internal(_) => "internal",
        }
    }

    /// Whether a client should retry the same request later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, IngestError::RateLimited { .. } | IngestError::LogUnavailable(_))
    }

    /// Structured detail for the error envelope: the per-field errors of a form submission, the
    /// offending field of an invalid event.
    pub fn details(&self) -> Option<serde_json::Value> {
        match self {
            IngestError::InvalidFields(fields) => Some(serde_json::json!({ "fields": fields })),
            IngestError::InvalidEvent(error) => error.field.as_ref().map(|f| serde_json::json!({ "field": f })),
            _ => None,
        }
    }

    /// Seconds for `Retry-After`, where one applies.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            IngestError::RateLimited { retry_after } => Some(retry_after.as_secs().max(1)),
            IngestError::LogUnavailable(_) => Some(1),
            _ => None,
        }
    }
}
