//! The knowledge base's staff API (`/api/v1/kb/…`): article CRUD with versions, soft delete and
//! restore; staff search over the same index the public uses; KB analytics. Everyone signed in
//! reads; admins and sales managers write. The public surfaces are [`public`] (search and
//! feedback under `/v1/kb/`) and [`help`] (the server-rendered help centre under `/help/`).

pub mod help;
pub mod import;
pub mod markdown;
pub mod public;
pub mod runtime;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_schemas::{slugify, Article, ArticleStatus};
use crm_store::{KbReport, Store};
use serde::{Deserialize, Serialize};

use crate::auth::{now_ms, AuthUser};
use crate::rbac::Permission;
use crate::{params, reply, ApiError, ApiState};
pub use runtime::{KbRuntime, LoadStats};

/// What a person writes; the API sets the rest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArticleInput {
    site_id: Option<String>,
    slug: Option<String>,
    title: String,
    body_md: String,
    category: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    status: Option<ArticleStatus>,
    /// On update: the version being edited (a newer stored one is a conflict).
    version: Option<u32>,
}

/// An article in a listing: everything but the bodies.
#[derive(Serialize)]
struct ArticleSummary<'a> {
    site_id: &'a str,
    article_id: &'a str,
    slug: &'a str,
    title: &'a str,
    category: &'a Option<String>,
    tags: &'a [String],
    status: ArticleStatus,
    version: u32,
    updated_at_ms: i64,
    updated_by: &'a str,
    published_at_ms: Option<i64>,
    deleted_at_ms: Option<i64>,
    url: String,
}

fn summary(a: &Article) -> ArticleSummary<'_> {
    ArticleSummary {
        site_id: &a.site_id,
        article_id: &a.article_id,
        slug: &a.slug,
        title: &a.title,
        category: &a.category,
        tags: &a.tags,
        status: a.status,
        version: a.version,
        updated_at_ms: a.updated_at_ms,
        updated_by: &a.updated_by,
        published_at_ms: a.published_at_ms,
        deleted_at_ms: a.deleted_at_ms,
        url: runtime::article_path(&a.site_id, &a.slug),
    }
}

fn validation(problems: Vec<crm_schemas::FieldError>) -> ApiError {
    ApiError::Validation(problems.into_iter().map(|p| (p.field, p.message)).collect())
}

/// Renders, versions and stores `article` as written by `author`, then updates the index. The
/// caller holds the KB write lock and has checked slug and version. Used by the API and
/// `crm import kb`.
pub async fn save_article(store: &Arc<dyn Store>, kb: &KbRuntime, mut article: Article, author: &str) -> Result<Article, ApiError> {
    let now = now_ms();
    article.body_html = markdown::render(&article.body_md).html;
    article.version += 1;
    article.updated_at_ms = now;
    article.updated_by = author.to_owned();
    if article.version == 1 {
        article.created_at_ms = now;
        article.created_by = author.to_owned();
    }
    if article.status == ArticleStatus::Published && article.published_at_ms.is_none() {
        article.published_at_ms = Some(now);
    }
    let problems = article.check();
    if !problems.is_empty() {
        return Err(validation(problems));
    }
    store.put_article(&article, &article.version_row(author, now)).await?;
    kb.article_written(store, &article).await?;
    tracing::info!(site_id = %article.site_id, article_id = %article.article_id, version = article.version, by = author, live = article.is_live(), "kb article saved");
    Ok(article)
}

/// A new article (not stored) from the writable fields.
pub fn new_article(site_id: &str, slug: Option<String>, title: &str, body_md: String, category: Option<String>, tags: Vec<String>, status: ArticleStatus) -> Article {
    Article {
        site_id: site_id.to_owned(),
        article_id: format!("art_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        slug: slug.unwrap_or_else(|| slugify(title)),
        title: title.trim().to_owned(),
        body_md,
        body_html: String::new(),
        category,
        tags,
        status,
        version: 0,
        created_at_ms: 0,
        created_by: String::new(),
        updated_at_ms: 0,
        updated_by: String::new(),
        published_at_ms: None,
        deleted_at_ms: None,
    }
}

/// 409 `slug_exists` when another article of the site that is not deleted has the slug.
pub async fn check_slug(store: &Arc<dyn Store>, article: &Article) -> Result<(), ApiError> {
    let taken = store.articles(&article.site_id).await?.into_iter().any(|a| a.slug == article.slug && a.article_id != article.article_id && a.deleted_at_ms.is_none());
    if taken {
        return Err(ApiError::Conflict { code: "slug_exists", message: format!("another article of {} has the slug {}", article.site_id, article.slug), details: None });
    }
    Ok(())
}

async fn existing(state: &ApiState, site_id: &str, article_id: &str) -> Result<Article, ApiError> {
    state.store.article(site_id, article_id).await?.ok_or_else(|| ApiError::NotFound(format!("article {site_id}/{article_id}")))
}

pub async fn list(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(Permission::KbRead)?;
    let site_id = params::required(&query, "site_id")?;
    state.require_site(site_id).await?;
    let limit = params::limit(&query, 50, 500)?;
    let status: Option<ArticleStatus> = params::optional_choice(&query, "status", "draft or published")?;
    let include_deleted = params::flag(&query, "include_deleted")?;
    let category = query.get("category");
    let tag = query.get("tag");
    let mut articles: Vec<Article> = state
        .store
        .articles(site_id)
        .await?
        .into_iter()
        .filter(|a| include_deleted || a.deleted_at_ms.is_none())
        .filter(|a| status.is_none_or(|s| a.status == s))
        .filter(|a| category.is_none_or(|c| a.category.as_ref() == Some(c)))
        .filter(|a| tag.is_none_or(|t| a.tags.contains(t)))
        .collect();
    articles.sort_by(|a, b| a.article_id.cmp(&b.article_id));
    let cursor = reply::decode_cursor(query.get("cursor"))?;
    let (items, next) = reply::slice_after(articles, |a| a.article_id.clone(), cursor.as_deref(), limit);
    Ok(reply::page(items.iter().map(summary).collect(), next, limit))
}

pub async fn get_one(State(state): State<ApiState>, user: AuthUser, Path((site_id, article_id)): Path<(String, String)>) -> Result<Response, ApiError> {
    user.require(Permission::KbRead)?;
    Ok(reply::ok(existing(&state, &site_id, &article_id).await?))
}

pub async fn create(State(state): State<ApiState>, user: AuthUser, body: Bytes) -> Result<Response, ApiError> {
    user.require(Permission::KbManage)?;
    let input: ArticleInput = params::json(&body)?;
    let site_id = input.site_id.clone().ok_or(ApiError::Validation(vec![("site_id".into(), "is required".into())]))?;
    if input.version.is_some() {
        return Err(ApiError::Validation(vec![("version".into(), "is set by the API on create".into())]));
    }
    state.require_site(&site_id).await?;
    let article = new_article(&site_id, input.slug, &input.title, input.body_md, input.category, input.tags, input.status.unwrap_or(ArticleStatus::Draft));
    let problems = article.check();
    if !problems.is_empty() {
        return Err(validation(problems));
    }
    let _guard = state.kb_write_lock.lock().await;
    check_slug(&state.store, &article).await?;
    let saved = save_article(&state.store, &state.kb, article, &user.username).await?;
    Ok(reply::created(saved))
}

pub async fn update(State(state): State<ApiState>, user: AuthUser, Path((site_id, article_id)): Path<(String, String)>, body: Bytes) -> Result<Response, ApiError> {
    user.require(Permission::KbManage)?;
    let input: ArticleInput = params::json(&body)?;
    if input.site_id.as_ref().is_some_and(|s| *s != site_id) {
        return Err(ApiError::Validation(vec![("site_id".into(), "cannot be changed".into())]));
    }
    let Some(version) = input.version else {
        return Err(ApiError::Validation(vec![("version".into(), "is required: the version you edited".into())]));
    };
    let _guard = state.kb_write_lock.lock().await;
    let mut article = existing(&state, &site_id, &article_id).await?;
    if article.version != version {
        return Err(ApiError::Conflict {
            code: "version_conflict",
            message: format!("the article is at version {}, not {version}: reload and edit again", article.version),
            details: Some(serde_json::json!({ "current_version": article.version, "updated_by": article.updated_by })),
        });
    }
    article.slug = input.slug.unwrap_or(article.slug);
    article.title = input.title.trim().to_owned();
    article.body_md = input.body_md;
    article.category = input.category;
    article.tags = input.tags;
    if let Some(status) = input.status {
        article.status = status;
    }
    let problems = article.check();
    if !problems.is_empty() {
        return Err(validation(problems));
    }
    check_slug(&state.store, &article).await?;
    Ok(reply::ok(save_article(&state.store, &state.kb, article, &user.username).await?))
}

pub async fn delete(State(state): State<ApiState>, user: AuthUser, Path((site_id, article_id)): Path<(String, String)>) -> Result<Response, ApiError> {
    user.require(Permission::KbManage)?;
    let _guard = state.kb_write_lock.lock().await;
    let mut article = existing(&state, &site_id, &article_id).await?;
    if article.deleted_at_ms.is_none() {
        article.deleted_at_ms = Some(now_ms());
        save_article(&state.store, &state.kb, article, &user.username).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn restore(State(state): State<ApiState>, user: AuthUser, Path((site_id, article_id)): Path<(String, String)>) -> Result<Response, ApiError> {
    user.require(Permission::KbManage)?;
    let _guard = state.kb_write_lock.lock().await;
    let mut article = existing(&state, &site_id, &article_id).await?;
    if article.deleted_at_ms.is_none() {
        return Ok(reply::ok(article));
    }
    article.deleted_at_ms = None;
    check_slug(&state.store, &article).await?;
    Ok(reply::ok(save_article(&state.store, &state.kb, article, &user.username).await?))
}

pub async fn versions(
    State(state): State<ApiState>,
    user: AuthUser,
    Path((site_id, article_id)): Path<(String, String)>,
    Query(query): Query<params::Query>,
) -> Result<Response, ApiError> {
    user.require(Permission::KbRead)?;
    let limit = params::limit(&query, 50, 500)?;
    existing(&state, &site_id, &article_id).await?;
    Ok(reply::ok(state.store.article_versions(&site_id, &article_id, limit).await?))
}

/// Staff search: the public ranking, nothing counted.
pub async fn search(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(Permission::KbRead)?;
    let site_id = params::required(&query, "site_id")?;
    let q = params::required(&query, "q")?;
    let limit = params::limit(&query, 10, 50)?;
    state.require_site(site_id).await?;
    let hits = state.kb.search(site_id, q, limit).await?;
    Ok(reply::ok(serde_json::json!({ "hits": hits, "semantic": state.kb.semantic() })))
}

/// KB analytics of `[from, to)` (default: the last 30 days).
pub async fn analytics(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(Permission::KbRead)?;
    let site_id = params::required(&query, "site_id")?;
    state.require_site(site_id).await?;
    let to = params::timestamp_ms(&query, "to")?.unwrap_or_else(|| now_ms() + crm_schemas::DAY_MS);
    let from = params::timestamp_ms(&query, "from")?.unwrap_or(to - 30 * crm_schemas::DAY_MS);
    let (from_day, to_day) = (crm_schemas::utc_day(from), crm_schemas::utc_day(to));
    if to_day <= from_day || to_day - from_day > crm_store::MAX_REPORT_DAYS {
        return Err(ApiError::InvalidParameter { name: "to".into(), message: format!("the window must be 1 to {} days", crm_store::MAX_REPORT_DAYS) });
    }
    let limit = params::limit(&query, 20, 200)?;
    let counters = state.store.kb_counters(site_id, from_day, to_day).await?;
    let report = KbReport::build(from_day, to_day, &counters, limit);
    let catalog = state.kb.catalog(site_id);
    let titles: std::collections::HashMap<&str, &str> = catalog.values().map(|e| (e.article_id.as_str(), e.title.as_str())).collect();
    let top: Vec<serde_json::Value> = report
        .top_articles
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or_default();
            v["title"] = titles.get(a.article_id.as_str()).map(|t| serde_json::Value::String((*t).to_owned())).unwrap_or(serde_json::Value::Null);
            v
        })
        .collect();
    let mut body = serde_json::to_value(&report).map_err(|e| ApiError::Internal(e.to_string()))?;
    body["top_articles"] = serde_json::Value::Array(top);
    Ok(reply::ok(body))
}
