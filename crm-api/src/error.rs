//! API errors: one enum, each variant with its status and stable code, rendered as the error
//! envelope. Store failures become 503 when retryable and 500 otherwise, never leaking details.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use crm_store::{QueryErrorKind, StoreError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("invalid username or password")]
    BadCredentials,
    /// A wrong, replayed or malformed second-factor or recovery code.
    #[error("{0}")]
    BadSecondFactor(&'static str),
    #[error("your role may not {0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(String),
    /// A public write from a page the site does not allow (its `allowed_origins`).
    #[error("origin {0} may not send to this site")]
    OriginNotAllowed(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String, details: Option<serde_json::Value> },
    /// Well-formed input that cannot be applied, with structured details (e.g. import rows).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String, details: Option<serde_json::Value> },
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("validation failed")]
    Validation(Vec<(String, String)>),
    #[error("invalid parameter {name}: {message}")]
    InvalidParameter { name: String, message: String },
    #[error("missing parameter {0}")]
    MissingParameter(&'static str),
    /// Too many requests (`rate_limited`) or too many failed logins (`too_many_attempts`).
    #[error("{message}")]
    RateLimited { code: &'static str, message: String, retry_after_secs: u64 },
    /// A field over its size limit (the body itself was accepted).
    #[error("{message}")]
    PayloadTooLarge { code: &'static str, message: String },
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("storage temporarily unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::InvalidToken(_) | ApiError::BadCredentials | ApiError::BadSecondFactor(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::MalformedJson(_) | ApiError::InvalidParameter { .. } | ApiError::MissingParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) | ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::BadCredentials => "bad_credentials",
            ApiError::BadSecondFactor(_) => "bad_second_factor",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::OriginNotAllowed(_) => "origin_not_allowed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict { code, .. } | ApiError::Unprocessable { code, .. } | ApiError::RateLimited { code, .. } | ApiError::PayloadTooLarge { code, .. } => code,
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Validation(_) => "validation_failed",
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::MissingParameter(_) => "missing_parameter",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            ApiError::Validation(fields) => {
                let map: serde_json::Map<String, serde_json::Value> =
                    fields.iter().map(|(f, m)| (f.clone(), serde_json::Value::String(m.clone()))).collect();
                Some(json!({ "fields": map }))
            }
            ApiError::InvalidParameter { name, .. } => Some(json!({ "parameter": name })),
            ApiError::MissingParameter(name) => Some(json!({ "parameter": name })),
            ApiError::Conflict { details, .. } | ApiError::Unprocessable { details, .. } => details.clone(),
            ApiError::RateLimited { retry_after_secs, .. } => Some(json!({ "retry_after_secs": retry_after_secs })),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::InvalidCursor => ApiError::InvalidParameter { name: "cursor".into(), message: "not a cursor this API issued".into() },
            StoreError::Query { kind, message } => {
                let code = match kind {
                    QueryErrorKind::Invalid => "sql_invalid",
                    QueryErrorKind::NotAllowed => "sql_not_allowed",
                    QueryErrorKind::Timeout => "sql_timeout",
                    QueryErrorKind::TooLarge => "sql_too_large",
                    QueryErrorKind::Unsupported => "sql_unsupported",
                };
                ApiError::Unprocessable { code, message, details: None }
            }
            other if other.is_retryable() => ApiError::Unavailable(other.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &self {
            tracing::error!(error = %detail, code = self.code(), "api request failed");
        }
        let body = crm_service::ApiErrorBody { code: self.code(), message: &self.to_string(), details: self.details() };
        let mut response = (self.status(), axum::Json(json!({ "success": false, "error": body }))).into_response();
        if matches!(self, ApiError::Unavailable(_)) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        if let ApiError::RateLimited { retry_after_secs, .. } = &self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from((*retry_after_secs).max(1)));
        }
        if self.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("route {}", uri.path()))
}

pub async fn method_not_allowed() -> Response {
    let body = crm_service::ApiErrorBody { code: "method_not_allowed", message: "method not allowed on this route", details: None };
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(json!({ "success": false, "error": body }))).into_response()
}
