//! The knowledge base's public JSON API for sites' own pages and widgets (no sign-in):
//! `GET /v1/kb/{site}/search` and `POST /v1/kb/{site}/feedback`. Rate-limited per client
//! address and answered cross-origin only for the site's allowed origins (the middleware does
//! both). Searches and votes feed the KB counters: searches, searches with no good result (and
//! their normalised query as a content gap), helpful yes/no, and deflections.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_schemas::{normalize_query, Site};
use crm_search::Hit;
use serde::{Deserialize, Serialize};

use crate::auth::now_ms;
use crate::{params, reply, ApiError, ApiState};

/// A hit is a good answer if the keyword ranking found it or its meaning is this close.
pub const GOOD_SIMILARITY: f32 = 0.35;

/// Whether a search found something worth reading (else it is a content gap).
pub fn answered(hits: &[Hit]) -> bool {
    hits.first().is_some_and(|h| h.keyword_rank.is_some() || h.similarity.is_some_and(|s| s >= GOOD_SIMILARITY))
}

#[derive(Serialize)]
struct PublicHit<'a> {
    article_id: &'a str,
    title: &'a str,
    url: String,
    snippet_html: &'a str,
}

pub(crate) async fn public_site(state: &ApiState, site_id: &str) -> Result<Site, ApiError> {
    if !crm_schemas::valid_key(site_id) {
        return Err(ApiError::NotFound(format!("site {site_id}")));
    }
    state.kb.site(&state.store, site_id).await?.ok_or_else(|| ApiError::NotFound(format!("site {site_id}")))
}

/// The absolute URL of a help-centre path when `--help-base-url` is set, else the path.
pub(crate) fn public_url(state: &ApiState, path: &str) -> String {
    match &state.help_base_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => path.to_owned(),
    }
}

/// Records a counted search: one search, and when nothing good came back a no-result search
/// plus a gap row under the normalised query.
pub(crate) fn count_search(state: &ApiState, site_id: &str, q: &str, hits: &[Hit]) {
    let now = now_ms();
    let good = answered(hits);
    state.kb.count(site_id, now, "", "", |c| {
        c.searches += 1;
        c.no_result_searches += u64::from(!good);
    });
    // Gap rows are shown to every staff member and kept: no emails or phone numbers in them.
    let gap = normalize_query(&crate::chat::writer::redact(q));
    if !good && !gap.is_empty() {
        state.kb.count(site_id, now, "", &gap, |c| c.no_result_searches += 1);
    }
}

pub async fn search(State(state): State<ApiState>, Path(site_id): Path<String>, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    public_site(&state, &site_id).await?;
    let q = params::required(&query, "q")?;
    let limit = params::limit(&query, 5, 20)?;
    let typeahead = params::flag(&query, "typeahead")?;
    let hits = state.kb.search(&site_id, q, limit).await?;
    // Search-as-you-type asks on every keystroke: only the submitted query is counted.
    if !typeahead {
        count_search(&state, &site_id, q, &hits);
    }
    let items: Vec<PublicHit> = hits
        .iter()
        .map(|h| PublicHit { article_id: &h.id, title: &h.title, url: public_url(&state, &h.url), snippet_html: &h.snippet_html })
        .collect();
    Ok(reply::ok(serde_json::json!({ "hits": items, "answered": answered(&hits) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Feedback {
    article_id: String,
    helpful: bool,
}

/// Counts a helpful/unhelpful vote on a live article; a helpful one is a deflection.
pub(crate) fn count_vote(state: &ApiState, site_id: &str, article_id: &str, helpful: bool) {
    let now = now_ms();
    state.kb.count(site_id, now, article_id, "", |c| {
        if helpful {
            c.helpful_yes += 1;
        } else {
            c.helpful_no += 1;
        }
    });
    if helpful {
        state.kb.count(site_id, now, "", "", |c| c.deflections += 1);
    }
}

pub async fn feedback(State(state): State<ApiState>, Path(site_id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    public_site(&state, &site_id).await?;
    let vote: Feedback = params::json(&body)?;
    if state.kb.entry_by_id(&site_id, &vote.article_id).is_none() {
        return Err(ApiError::NotFound(format!("article {}", vote.article_id)));
    }
    count_vote(&state, &site_id, &vote.article_id, vote.helpful);
    Ok((StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "success": true, "data": { "recorded": true } }))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(keyword_rank: Option<usize>, similarity: Option<f32>) -> Hit {
        Hit { id: "a".into(), title: "t".into(), url: "/u".into(), snippet_html: String::new(), score: 0.1, keyword_rank, similarity }
    }

    #[test]
    fn a_search_is_answered_by_a_keyword_hit_or_a_close_meaning() {
        assert!(!answered(&[]));
        assert!(answered(&[hit(Some(1), None)]));
        assert!(answered(&[hit(None, Some(0.5))]));
        assert!(!answered(&[hit(None, Some(0.25)), hit(Some(2), None)]), "only the best hit decides");
    }
}
