//! The public help centre, rendered on the server (no JavaScript): `/help/{site}/` (categories
//! and recent articles), `/help/{site}/c/{category}`, `/help/{site}/a/{slug}` (with a helpful
//! yes/no form), `/help/{site}/search?q=` and `/help/{site}/sitemap.xml`.
//!
//! Every page carries what search engines read: `<title>`, meta description, canonical link,
//! Open Graph tags, and on articles JSON-LD `Article` (plus `FAQPage` when the article has two or
//! more question headings). Drafts, deleted articles and unknown sites are an HTML 404. Article
//! views are counted unless the user agent looks like a bot.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use crm_search::hybrid::escape_html as esc;

use super::markdown;
use super::public::{count_search, count_vote, public_site, public_url};
use super::runtime::{article_path, CatalogEntry};
use crate::auth::now_ms;
use crate::{params, ApiError, ApiState};

/// The help centre's own policy: inline styles, https images, forms back to itself, no scripts.
pub const HELP_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLE: &str = "body{font:16px/1.6 system-ui,sans-serif;max-width:46rem;margin:0 auto;padding:1rem;color:#1f2933}\
a{color:#0b63c5}header{display:flex;gap:1rem;align-items:center;justify-content:space-between;flex-wrap:wrap;border-bottom:1px solid #d9e2ec;margin-bottom:1rem}\
header a{text-decoration:none;font-weight:600}form.search input{padding:.4rem;min-width:14rem}mark{background:#fff3b0}\
pre{overflow:auto;background:#f0f4f8;padding:.75rem}table{border-collapse:collapse}td,th{border:1px solid #d9e2ec;padding:.3rem .6rem}\
.meta{color:#627d98;font-size:.9rem}.vote button{margin-right:.5rem}ul.hits li{margin-bottom:1rem}";

/// JSON for inside `<script type="application/ld+json">`: `<`, `>` and `&` escaped so no text
/// can close the element.
fn json_ld(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_default().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

struct Page<'a> {
    site_id: &'a str,
    site_name: &'a str,
    title: String,
    description: String,
    /// Root-relative path of the canonical URL.
    path: String,
    og_type: &'static str,
    json_ld: Vec<serde_json::Value>,
    body: String,
}

fn render_page(state: &ApiState, page: Page<'_>) -> String {
    let canonical = public_url(state, &page.path);
    let mut head = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<meta name=\"description\" content=\"{description}\">\n<link rel=\"canonical\" href=\"{canonical}\">\n\
         <meta property=\"og:title\" content=\"{title}\">\n<meta property=\"og:description\" content=\"{description}\">\n\
         <meta property=\"og:type\" content=\"{og_type}\">\n<meta property=\"og:url\" content=\"{canonical}\">\n<meta property=\"og:site_name\" content=\"{site}\">\n\
         <style>{STYLE}</style>\n",
        title = esc(&page.title),
        description = esc(&page.description),
        canonical = esc(&canonical),
        og_type = page.og_type,
        site = esc(page.site_name),
    );
    for ld in &page.json_ld {
        head.push_str(&format!("<script type=\"application/ld+json\">{}</script>\n", json_ld(ld)));
    }
    let site = esc(page.site_id);
    format!(
        "{head}</head>\n<body>\n<header><a href=\"/help/{site}/\">{name} help centre</a>\n\
         <form class=\"search\" action=\"/help/{site}/search\" method=\"get\" role=\"search\"><label for=\"q\">Search</label> \
         <input id=\"q\" name=\"q\" type=\"search\" maxlength=\"200\"> <button type=\"submit\">Go</button></form></header>\n<main>\n{body}</main>\n</body>\n</html>\n",
        name = esc(page.site_name),
        body = page.body,
    )
}

fn html(status: StatusCode, body: String, cache: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(HELP_CSP));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// An HTML 404 (the help centre never answers a person with JSON).
fn not_found(what: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"robots\" content=\"noindex\">\n<title>Not found</title>\n</head>\n\
         <body>\n<h1>Not found</h1>\n<p>{}</p>\n</body>\n</html>\n",
        esc(what)
    );
    html(StatusCode::NOT_FOUND, body, "no-store")
}

/// The site, or the 404 page.
async fn site_or_404(state: &ApiState, site_id: &str) -> Result<crm_schemas::Site, Response> {
    match public_site(state, site_id).await {
        Ok(site) => Ok(site),
        Err(ApiError::NotFound(_)) => Err(not_found("There is no help centre here.")),
        Err(other) => Err(other.into_response()),
    }
}

fn article_list(site_id: &str, entries: &[&CatalogEntry]) -> String {
    let mut out = String::from("<ul>\n");
    for e in entries {
        out.push_str(&format!(
            "<li><a href=\"{}\">{}</a><br><span class=\"meta\">{}</span></li>\n",
            esc(&article_path(site_id, &e.slug)),
            esc(&e.title),
            esc(&e.description)
        ));
    }
    out.push_str("</ul>\n");
    out
}

fn category_title(slug: &str) -> String {
    let mut words: Vec<String> = slug.split('-').map(str::to_owned).collect();
    if let Some(first) = words.first_mut() {
        let mut chars = first.chars();
        *first = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
    }
    words.join(" ")
}

pub async fn home(State(state): State<ApiState>, Path(site_id): Path<String>) -> Response {
    let site = match site_or_404(&state, &site_id).await {
        Ok(site) => site,
        Err(response) => return response,
    };
    let catalog = state.kb.catalog(&site_id);
    let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
    for e in catalog.values() {
        *categories.entry(e.category.as_deref().unwrap_or("general")).or_default() += 1;
    }
    let mut recent: Vec<&CatalogEntry> = catalog.values().map(|e| e.as_ref()).collect();
    recent.sort_by(|a, b| b.updated_at_ms.cmp(&a.updated_at_ms).then_with(|| a.slug.cmp(&b.slug)));
    recent.truncate(10);
    let mut body = format!("<h1>{} help centre</h1>\n", esc(&site.name));
    if catalog.is_empty() {
        body.push_str("<p>No articles yet.</p>\n");
    } else {
        body.push_str("<h2>Categories</h2>\n<ul>\n");
        for (category, count) in &categories {
            body.push_str(&format!("<li><a href=\"/help/{}/c/{}\">{}</a> ({count})</li>\n", esc(&site_id), esc(category), esc(&category_title(category))));
        }
        body.push_str("</ul>\n<h2>Recently updated</h2>\n");
        body.push_str(&article_list(&site_id, &recent));
    }
    let page = Page {
        site_id: &site_id,
        site_name: &site.name,
        title: format!("{} help centre", site.name),
        description: format!("Answers and guides for {}: {} articles.", site.name, catalog.len()),
        path: format!("/help/{site_id}/"),
        og_type: "website",
        json_ld: vec![],
        body,
    };
    html(StatusCode::OK, render_page(&state, page), "public, max-age=60")
}

pub async fn category(State(state): State<ApiState>, Path((site_id, category)): Path<(String, String)>) -> Response {
    let site = match site_or_404(&state, &site_id).await {
        Ok(site) => site,
        Err(response) => return response,
    };
    let catalog = state.kb.catalog(&site_id);
    let entries: Vec<&CatalogEntry> = catalog.values().map(|e| e.as_ref()).filter(|e| e.category.as_deref().unwrap_or("general") == category).collect();
    if entries.is_empty() {
        return not_found("This category has no articles.");
    }
    let name = category_title(&category);
    let page = Page {
        site_id: &site_id,
        site_name: &site.name,
        title: format!("{name} · {} help centre", site.name),
        description: format!("{} articles about {name}.", entries.len()),
        path: format!("/help/{site_id}/c/{category}"),
        og_type: "website",
        json_ld: vec![],
        body: format!("<h1>{}</h1>\n{}", esc(&name), article_list(&site_id, &entries)),
    };
    html(StatusCode::OK, render_page(&state, page), "public, max-age=60")
}

fn iso(ms: i64) -> String {
    params::rfc3339(ms)
}

pub async fn article(State(state): State<ApiState>, Path((site_id, slug)): Path<(String, String)>, Query(query): Query<params::Query>, headers: HeaderMap) -> Response {
    let site = match site_or_404(&state, &site_id).await {
        Ok(site) => site,
        Err(response) => return response,
    };
    let Some(entry) = state.kb.entry_by_slug(&site_id, &slug) else { return not_found("This article does not exist or is not published.") };
    let article = match state.store.article(&site_id, &entry.article_id).await {
        Ok(Some(article)) if article.is_live() => article,
        Ok(_) => return not_found("This article does not exist or is not published."),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !crm_bots::Detector::builtin().is_bot(user_agent) {
        state.kb.count(&site_id, now_ms(), &article.article_id, "", |c| c.views += 1);
    }
    let rendered = markdown::render(&article.body_md);
    let canonical = public_url(&state, &article_path(&site_id, &slug));
    let mut json_ld = vec![serde_json::json!({
        "@context": "https://schema.org",
        "@type": "Article",
        "headline": article.title,
        "description": entry.description,
        "datePublished": iso(article.published_at_ms.unwrap_or(article.created_at_ms)),
        "dateModified": iso(article.updated_at_ms),
        "mainEntityOfPage": canonical,
        "publisher": { "@type": "Organization", "name": site.name },
    })];
    if rendered.faq.len() >= 2 {
        let questions: Vec<serde_json::Value> = rendered
            .faq
            .iter()
            .map(|(q, a)| serde_json::json!({ "@type": "Question", "name": q, "acceptedAnswer": { "@type": "Answer", "text": a } }))
            .collect();
        json_ld.push(serde_json::json!({ "@context": "https://schema.org", "@type": "FAQPage", "mainEntity": questions }));
    }
    let thanks = query.contains_key("thanks");
    let vote = if thanks {
        "<p class=\"vote\" role=\"status\">Thanks for your feedback!</p>\n".to_owned()
    } else {
        format!(
            "<form class=\"vote\" method=\"post\" action=\"{}/feedback\"><p>Was this article helpful? \
             <button type=\"submit\" name=\"helpful\" value=\"yes\">Yes</button><button type=\"submit\" name=\"helpful\" value=\"no\">No</button></p></form>\n",
            esc(&article_path(&site_id, &slug))
        )
    };
    let category = article.category.as_deref().unwrap_or("general");
    let updated = iso(article.updated_at_ms);
    let body = format!(
        "<article>\n<p class=\"meta\"><a href=\"/help/{site}/c/{cat}\">{cat_name}</a> · updated <time datetime=\"{updated}\">{day}</time></p>\n\
         <h1>{title}</h1>\n{html}</article>\n{vote}",
        site = esc(&site_id),
        cat = esc(category),
        cat_name = esc(&category_title(category)),
        day = updated.get(..10).unwrap_or(&updated),
        title = esc(&article.title),
        html = article.body_html,
    );
    let page = Page {
        site_id: &site_id,
        site_name: &site.name,
        title: format!("{} · {} help centre", article.title, site.name),
        description: entry.description.clone(),
        path: article_path(&site_id, &slug),
        og_type: "article",
        json_ld,
        body,
    };
    html(StatusCode::OK, render_page(&state, page), if thanks { "no-store" } else { "public, max-age=60" })
}

/// The no-JavaScript vote: `helpful=yes|no` as a form post, answered with 303 back to the article.
pub async fn vote(State(state): State<ApiState>, Path((site_id, slug)): Path<(String, String)>, body: Bytes) -> Response {
    if let Err(response) = site_or_404(&state, &site_id).await {
        return response;
    }
    let Some(entry) = state.kb.entry_by_slug(&site_id, &slug) else { return not_found("This article does not exist or is not published.") };
    let helpful = match url::form_urlencoded::parse(&body).find(|(k, _)| k == "helpful").map(|(_, v)| v.into_owned()).as_deref() {
        Some("yes") => true,
        Some("no") => false,
        _ => {
            return ApiError::Validation(vec![("helpful".into(), "must be yes or no".into())]).into_response();
        }
    };
    count_vote(&state, &site_id, &entry.article_id, helpful);
    let location = format!("{}?thanks=1", article_path(&site_id, &slug));
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn search(State(state): State<ApiState>, Path(site_id): Path<String>, Query(query): Query<params::Query>) -> Response {
    let site = match site_or_404(&state, &site_id).await {
        Ok(site) => site,
        Err(response) => return response,
    };
    let q = query.get("q").map(|q| q.trim()).unwrap_or("");
    let mut body = String::from("<h1>Search</h1>\n");
    if q.is_empty() {
        body.push_str("<p>Type a question in the search box above.</p>\n");
    } else {
        let hits = match state.kb.search(&site_id, q, 10).await {
            Ok(hits) => hits,
            Err(ApiError::InvalidParameter { message, .. }) => {
                body.push_str(&format!("<p>{}</p>\n", esc(&format!("The query {message}."))));
                Vec::new()
            }
            Err(other) => return other.into_response(),
        };
        count_search(&state, &site_id, q, &hits);
        body.push_str(&format!("<p>{} results for <strong>{}</strong></p>\n<ul class=\"hits\">\n", hits.len(), esc(q)));
        for hit in &hits {
            // The snippet is escaped text with <mark> added by the search crate.
            body.push_str(&format!("<li><a href=\"{}\">{}</a><br>{}</li>\n", esc(&hit.url), esc(&hit.title), hit.snippet_html));
        }
        body.push_str("</ul>\n");
        if hits.is_empty() {
            body.push_str("<p>Nothing matched. Try other words.</p>\n");
        }
    }
    let page = Page {
        site_id: &site_id,
        site_name: &site.name,
        title: if q.is_empty() { format!("Search · {} help centre", site.name) } else { format!("{q} · search · {} help centre", site.name) },
        description: format!("Search the {} help centre.", site.name),
        path: format!("/help/{site_id}/search"),
        og_type: "website",
        json_ld: vec![],
        body,
    };
    // Results pages are not for search engines' indexes.
    let html_text = render_page(&state, page).replacen("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\">\n<meta name=\"robots\" content=\"noindex\">", 1);
    html(StatusCode::OK, html_text, "no-store")
}

pub async fn sitemap(State(state): State<ApiState>, Path(site_id): Path<String>) -> Response {
    if let Err(response) = site_or_404(&state, &site_id).await {
        return response;
    }
    let catalog = state.kb.catalog(&site_id);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
    xml.push_str(&format!("<url><loc>{}</loc></url>\n", esc(&public_url(&state, &format!("/help/{site_id}/")))));
    for e in catalog.values() {
        xml.push_str(&format!("<url><loc>{}</loc><lastmod>{}</lastmod></url>\n", esc(&public_url(&state, &article_path(&site_id, &e.slug))), iso(e.updated_at_ms)));
    }
    xml.push_str("</urlset>\n");
    let mut response = (StatusCode::OK, xml).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_ld_cannot_close_its_script() {
        let text = json_ld(&serde_json::json!({ "headline": "</script><script>alert(1)</script> & <!--" }));
        assert!(!text.contains('<') && !text.contains('>') && !text.contains('&'), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["headline"], "</script><script>alert(1)</script> & <!--");
    }

    #[test]
    fn category_titles() {
        assert_eq!(category_title("getting-started"), "Getting started");
        assert_eq!(category_title("sso"), "Sso");
    }
}
