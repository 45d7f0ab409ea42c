//! `POST /api/v1/query`: analysts' read-only SQL over one site's `events`, `sessions` and
//! `visitors` (see `crm_store::sql_guard` for what is refused, and the store for the second
//! wall: the embedded store plans it over the site's rows alone, ClickHouse runs it rewritten
//! to the site's rows under `readonly = 1`). Typed answers: 422
//! `sql_invalid`, `sql_not_allowed`, `sql_timeout`, `sql_too_large`, and `sql_unsupported` on a
//! store that does not run SQL (all 422: the request is well formed, the query cannot be run).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use crm_store::sql_guard::{self, SqlError, SqlLimits};
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthUser;
use crate::{reply, ApiError, ApiState};

/// Most rows one query may return, and the longest it may run.
const MAX_ROWS: usize = 10_000;
const MAX_TIMEOUT_MS: u64 = 30_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    site_id: String,
    sql: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

fn unprocessable(code: &'static str, message: String) -> ApiError {
    ApiError::Unprocessable { code, message, details: None }
}

pub async fn run(State(state): State<ApiState>, user: AuthUser, body: Bytes) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsQuery)?;
    let request: QueryRequest = crate::params::json(&body)?;
    let invalid = |name: &str, message: &str| ApiError::InvalidParameter { name: name.into(), message: message.into() };
    let max_rows = request.limit.unwrap_or(1_000);
    if !(1..=MAX_ROWS).contains(&max_rows) {
        return Err(invalid("limit", "an integer from 1 to 10000"));
    }
    let timeout_ms = request.timeout_ms.unwrap_or(10_000);
    if !(100..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(invalid("timeout_ms", "from 100 to 30000 milliseconds"));
    }
    let dialect = state.store.sql_dialect().ok_or(unprocessable("sql_unsupported", "this store does not run SQL: use the embedded store (the default) or ClickHouse".into()))?;
    let checked = sql_guard::check(&request.sql, dialect).map_err(|e| match e {
        SqlError::Invalid(message) => unprocessable("sql_invalid", message),
        SqlError::NotAllowed(what) => unprocessable("sql_not_allowed", format!("not allowed: {what}")),
        SqlError::TooLong => unprocessable("sql_too_large", e.to_string()),
    })?;
    state.require_site(&request.site_id).await?;
    let limits = SqlLimits { max_rows, timeout: std::time::Duration::from_millis(timeout_ms), ..SqlLimits::default() };
    let started = std::time::Instant::now();
    let result = state.store.query_sql(&request.site_id, &checked, &limits).await?;
    tracing::info!(site_id = %request.site_id, user = %user.username, rows = result.rows.len(), elapsed_ms = started.elapsed().as_millis() as u64, dialect = ?dialect, "analyst query");
    Ok(reply::ok(json!({
        "site_id": request.site_id,
        "columns": result.columns,
        "rows": result.rows,
        "truncated": result.truncated,
        "elapsed_ms": started.elapsed().as_millis() as u64,
    })))
}
