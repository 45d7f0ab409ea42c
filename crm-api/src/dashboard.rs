//! The growth dashboard's static files (built by widgets/dashboard/build.sh): embedded in the
//! binary and served at `/` (the page) and `/app/{file}` (its script and style), or read from a
//! directory at each request when the operator points `--dashboard-dir` at one (development).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::ApiState;

const INDEX: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../widgets/dashboard/dist/index.html"));
const APP_JS: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../widgets/dashboard/dist/app.js"));
const APP_CSS: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../widgets/dashboard/dist/app.css"));

fn asset(state: &ApiState, name: &str) -> Option<(Vec<u8>, &'static str)> {
    let content_type = match name {
        "index.html" => "text/html; charset=utf-8",
        "app.js" => "text/javascript; charset=utf-8",
        "app.css" => "text/css; charset=utf-8",
        _ => return None,
    };
    if let Some(dir) = &state.dashboard_dir {
        return std::fs::read(dir.join(name)).ok().map(|bytes| (bytes, content_type));
    }
    let bytes = match name {
        "index.html" => INDEX,
        "app.js" => APP_JS,
        _ => APP_CSS,
    };
    Some((bytes.to_vec(), content_type))
}

fn serve(state: &ApiState, name: &str) -> Response {
    match asset(state, name) {
        Some((bytes, content_type)) => {
            let mut response = bytes.into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        None => crate::ApiError::NotFound(format!("dashboard file {name}")).into_response(),
    }
}

pub async fn index(State(state): State<ApiState>) -> Response {
    serve(&state, "index.html")
}

pub async fn file(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    if name == "index.html" {
        return StatusCode::NOT_FOUND.into_response();
    }
    serve(&state, &name)
}
