//! The knowledge base through the real router: article CRUD with versions, conflicts and RBAC;
//! the index following writes; the public search and feedback API with per-site CORS, rate
//! limits and counters; KB analytics; the server-rendered help centre (validated as HTML5).

mod support;

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;

async fn site(api: &Api, site_id: &str, origins: &[&str]) {
    let mut site = crm_schemas::Site::new(site_id, "Acme Cloud", 0);
    site.allowed_origins = origins.iter().map(|o| o.to_string()).collect();
    api.store.put_site(&site).await.unwrap();
}

async fn create(api: &Api, token: &str, body: Value) -> Value {
    let (status, reply) = api.call(Method::POST, "/api/v1/kb/articles", Some(token), Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    reply["data"].clone()
}

fn article(title: &str, body: &str, status: &str) -> Value {
    json!({ "site_id": "acme", "title": title, "body_md": body, "category": "security", "tags": ["sso"], "status": status })
}

#[tokio::test]
async fn articles_have_versions_conflicts_soft_delete_and_roles() {
    let api = start().await;
    site(&api, "acme", &[]).await;
    let (admin, manager, rep) = (api.login("admin").await, api.login("manager").await, api.login("rep").await);

    let created = create(&api, &manager, article("Set up single sign-on (SAML)", "## Steps\n\nOpen **Settings**.", "published")).await;
    let id = created["article_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("art_") && id.len() == 16, "{id}");
    assert_eq!((created["slug"].as_str(), created["version"].as_u64(), created["created_by"].as_str()), (Some("set-up-single-sign-on-saml"), Some(1), Some("manager")));
    assert!(created["body_html"].as_str().unwrap().contains("<strong>Settings</strong>"));
    let draft = create(&api, &admin, json!({ "site_id": "acme", "title": "Roadmap", "body_md": "Soon." })).await;
    assert_eq!(draft["status"], "draft", "new articles are drafts unless published");

    // Slugs are unique per site among articles not deleted.
    let (status, reply) = api.call(Method::POST, "/api/v1/kb/articles", Some(&admin), Some(article("Set up single sign-on (SAML)", "x", "draft"))).await;
    assert_eq!((status, code(&reply)), (409, "slug_exists"));

    // Edits name the version they change.
    let path = format!("/api/v1/kb/articles/acme/{id}");
    let edit = |version: u64, title: &str| json!({ "title": title, "body_md": "Open **Settings** → SSO.", "category": "security", "tags": ["sso"], "version": version });
    let (status, reply) = api.call(Method::PUT, &path, Some(&admin), Some(edit(1, "Single sign-on"))).await;
    assert_eq!((status, reply["data"]["version"].as_u64()), (200, Some(2)), "{reply}");
    let (status, reply) = api.call(Method::PUT, &path, Some(&manager), Some(edit(1, "Stale edit"))).await;
    assert_eq!((status, code(&reply)), (409, "version_conflict"), "{reply}");
    assert_eq!(reply["error"]["details"]["current_version"], 2);
    let (status, reply) = api.call(Method::PUT, &path, Some(&admin), Some(json!({ "title": "x", "body_md": "y" }))).await;
    assert_eq!(status, 422, "an edit without its version: {reply}");

    let (status, versions) = api.get(&format!("{path}/versions"), &rep).await;
    assert_eq!(status, 200);
    let seen: Vec<(u64, &str, &str)> = versions["data"].as_array().unwrap().iter().map(|v| (v["version"].as_u64().unwrap(), v["author"].as_str().unwrap(), v["title"].as_str().unwrap())).collect();
    assert_eq!(seen, [(2, "admin", "Single sign-on"), (1, "manager", "Set up single sign-on (SAML)")]);
    assert!(versions["data"][0]["at_ms"].as_i64().unwrap() >= versions["data"][1]["at_ms"].as_i64().unwrap());

    // Reps and customer success read but do not write.
    for reader in [&rep, &api.login("cs").await] {
        assert_eq!(api.get(&path, reader).await.0, 200);
        let (status, reply) = api.call(Method::PUT, &path, Some(reader), Some(edit(2, "Nope"))).await;
        assert_eq!((status, code(&reply)), (403, "forbidden"));
        assert_eq!(api.call(Method::DELETE, &path, Some(reader), None).await.0, 403);
    }

    // Soft delete: gone from lists (unless asked) but kept with its history; restore brings it back.
    assert_eq!(api.call(Method::DELETE, &path, Some(&manager), None).await.0, 204);
    assert_eq!(api.call(Method::DELETE, &path, Some(&manager), None).await.0, 204, "deleting twice is a no-op");
    let (_, list) = api.get("/api/v1/kb/articles?site_id=acme", &rep).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (_, list) = api.get("/api/v1/kb/articles?site_id=acme&include_deleted=true", &rep).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(list["data"][0].get("body_md").is_none(), "listings carry no bodies");
    let (_, one) = api.get(&path, &rep).await;
    assert!(one["data"]["deleted_at_ms"].is_i64());
    let (status, restored) = api.call(Method::POST, &format!("{path}/restore"), Some(&admin), None).await;
    assert_eq!((status, restored["data"]["version"].as_u64(), restored["data"]["deleted_at_ms"].is_null()), (200, Some(4), true));
    let (_, versions) = api.get(&format!("{path}/versions?limit=2"), &rep).await;
    assert_eq!(versions["data"][1]["deleted"], true);

    let (_, drafts) = api.get("/api/v1/kb/articles?site_id=acme&status=draft", &rep).await;
    assert_eq!(drafts["data"][0]["article_id"], draft["article_id"]);
    assert_eq!(api.get("/api/v1/kb/articles?site_id=nope", &rep).await.0, 404);
    assert_eq!(api.get("/api/v1/kb/articles/acme/art_000000000000", &rep).await.0, 404);
}

#[tokio::test]
async fn malformed_oversized_and_hostile_articles_are_typed_errors() {
    let api = start().await;
    site(&api, "acme", &[]).await;
    let admin = api.login("admin").await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({ "site_id": "acme", "title": "", "body_md": "x" }), 422, "title"),
        (json!({ "site_id": "acme", "title": "T", "body_md": "x", "slug": "Not A Slug" }), 422, "slug"),
        (json!({ "site_id": "acme", "title": "T", "body_md": "x", "tags": ["<script>"] }), 422, "tags[0]"),
        (json!({ "site_id": "acme", "title": "T", "body_md": "x", "category": "../etc" }), 422, "category"),
        (json!({ "site_id": "acme", "title": "T", "body_md": "x".repeat(200 * 1024 + 1) }), 422, "body_md"),
        (json!({ "site_id": "acme", "title": "T", "body_md": "x", "tags": (0..21).map(|i| format!("t{i}")).collect::<Vec<_>>() }), 422, "tags"),
        (json!({ "site_id": "acme", "title": "T", "body_md": "x", "version": 3 }), 422, "version"),
        (json!({ "site_id": "acme", "title": 5, "body_md": "x" }), 400, ""),
        (json!({ "site_id": "acme", "title": "T", "body_md": "x", "evil": true }), 400, ""),
        (json!({ "site_id": "acme", "title": "T", "body_md": "x", "status": "archived" }), 400, ""),
        (json!({ "title": "T", "body_md": "x" }), 422, "site_id"),
        (json!({ "site_id": "ghost", "title": "T", "body_md": "x" }), 404, ""),
    ];
    for (body, status, field) in cases {
        let (got, reply) = api.call(Method::POST, "/api/v1/kb/articles", Some(&admin), Some(body.clone())).await;
        assert_eq!(got, status, "{body:.200} → {reply}");
        if !field.is_empty() {
            let fields = reply["error"]["details"]["fields"].as_object().unwrap();
            assert!(fields.contains_key(field), "{field} in {fields:?}");
        }
    }
    // Over the 1 MiB body limit; not JSON at all.
    let huge = json!({ "site_id": "acme", "title": "T", "body_md": "x".repeat(1_100_000) });
    assert_eq!(api.call(Method::POST, "/api/v1/kb/articles", Some(&admin), Some(huge)).await.0, 413);
    let response = api.client.post(format!("{}/api/v1/kb/articles", api.base)).bearer_auth(&admin).body("{not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    // A hostile body is stored as written and rendered without its script.
    let hostile = create(&api, &admin, json!({ "site_id": "acme", "title": "<img src=x onerror=alert(1)>", "body_md": "<script>alert(1)</script>\n\n[x](javascript:alert(2))" })).await;
    let html = hostile["body_html"].as_str().unwrap();
    assert!(!html.contains("<script") && !html.contains("javascript:"), "{html}");
    assert_eq!(hostile["slug"], "img-src-x-onerror-alert-1");
}

async fn search(api: &Api, site: &str, q: &str, extra: &str) -> (u16, Value) {
    let url = format!("/v1/kb/{site}/search?q={}{extra}", url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>());
    api.call(Method::GET, &url, None, None).await
}

fn hit_ids(reply: &Value) -> Vec<String> {
    reply["data"]["hits"].as_array().map(|h| h.iter().map(|h| h["article_id"].as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn search_follows_writes_and_counts_gaps_votes_and_deflections() {
    let api = start_with(crm_api::ApiConfig { per_ip_per_minute: None, per_user_per_minute: None, public_per_ip_per_minute: None, ..crm_api::ApiConfig::default() }).await;
    site(&api, "acme", &[]).await;
    let admin = api.login("admin").await;
    let sso = create(&api, &admin, article("Single sign-on with SAML", "Connect Okta or Azure AD to sign in.", "published")).await;
    let sso_id = sso["article_id"].as_str().unwrap().to_owned();
    let draft = create(&api, &admin, article("Pricing for enterprise", "Enterprise plans start at 50 seats.", "draft")).await;

    let (status, reply) = search(&api, "acme", "saml okta", "").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(hit_ids(&reply), std::slice::from_ref(&sso_id));
    assert_eq!(reply["data"]["answered"], true);
    assert!(reply["data"]["hits"][0]["snippet_html"].as_str().unwrap().contains("<mark>"));
    assert_eq!(reply["data"]["hits"][0]["url"], "/help/acme/a/single-sign-on-with-saml");
    assert!(hit_ids(&search(&api, "acme", "enterprise seats", "").await.1).is_empty(), "drafts are not searchable");

    // Publishing, editing and deleting move the index.
    let path = format!("/api/v1/kb/articles/acme/{}", draft["article_id"].as_str().unwrap());
    let publish = json!({ "title": "Pricing for enterprise", "body_md": "Enterprise plans start at 50 seats.", "status": "published", "version": 1 });
    assert_eq!(api.call(Method::PUT, &path, Some(&admin), Some(publish)).await.0, 200);
    assert_eq!(hit_ids(&search(&api, "acme", "enterprise seats", "&typeahead=true").await.1).len(), 1);
    let retitle = json!({ "title": "Volume discounts", "body_md": "Discounts from 50 seats.", "status": "published", "version": 2 });
    assert_eq!(api.call(Method::PUT, &path, Some(&admin), Some(retitle)).await.0, 200);
    assert!(hit_ids(&search(&api, "acme", "enterprise", "&typeahead=true").await.1).is_empty(), "old words leave with the edit");
    assert_eq!(hit_ids(&search(&api, "acme", "discounts", "&typeahead=true").await.1).len(), 1);
    assert_eq!(api.call(Method::DELETE, &path, Some(&admin), None).await.0, 204);
    assert!(hit_ids(&search(&api, "acme", "discounts", "&typeahead=true").await.1).is_empty(), "deleted articles leave search");

    // Staff search sees the same ranking and counts nothing.
    let (status, staff) = api.get("/api/v1/kb/search?site_id=acme&q=saml", &api.login("rep").await).await;
    assert_eq!((status, staff["data"]["hits"][0]["id"].as_str()), (200, Some(sso_id.as_str())));
    assert_eq!(staff["data"]["semantic"], false);

    // Hostile and malformed queries.
    assert_eq!(search(&api, "ghost", "saml", "").await.0, 404);
    assert_eq!(search(&api, "../etc", "saml", "").await.0, 404);
    let (status, reply) = search(&api, "acme", &"q".repeat(600), "").await;
    assert_eq!((status, code(&reply)), (400, "invalid_parameter"));
    assert_eq!(api.call(Method::GET, "/v1/kb/acme/search", None, None).await.0, 400);
    assert_eq!(search(&api, "acme", "saml", "&limit=0").await.0, 400);
    assert_eq!(search(&api, "acme", "saml", "&typeahead=maybe").await.0, 400);
    let (status, reply) = search(&api, "acme", "\" OR 1=1 -- <script>alert(1)</script> AND (", "").await;
    assert_eq!(status, 200, "query syntax is text, not operators: {reply}");
    assert!(!reply.to_string().contains("<script>"), "{reply}");

    // Votes.
    let vote = |article_id: &str, helpful: Value| json!({ "article_id": article_id, "helpful": helpful });
    for (body, status) in [(vote(&sso_id, json!(true)), 202), (vote(&sso_id, json!(true)), 202), (vote(&sso_id, json!(false)), 202), (vote("art_none", json!(true)), 404), (vote(&sso_id, json!("yes")), 400), (json!({}), 400)] {
        let (got, reply) = api.call(Method::POST, "/v1/kb/acme/feedback", None, Some(body.clone())).await;
        assert_eq!(got, status, "{body} → {reply}");
    }
    // A search with no good answer is a content gap under its normalised text.
    assert_eq!(search(&api, "acme", "  How do I EXPORT   invoices? ", "").await.0, 200);
    assert_eq!(search(&api, "acme", "how do i export invoices?", "").await.0, 200);
    assert_eq!(search(&api, "acme", "call me 07700 900123", "&typeahead=true").await.0, 200);
    assert_eq!(search(&api, "acme", "call me 07700 900123", "").await.0, 200);
    assert!(api.kb.flush_counters(&api.store).await.unwrap() > 0);
    let rows = counters_around_today(&api, "acme").await;
    let site_row = rows.iter().find(|r| r.article_id.is_empty() && r.query.is_empty()).unwrap();
    // Counted: "saml okta" (answered), "enterprise seats" (then a draft), the hostile query and
    // the export question twice; typeahead searches are not.
    assert_eq!((site_row.searches, site_row.no_result_searches, site_row.deflections), (6, 5, 2), "{rows:?}");
    let gap = rows.iter().find(|r| r.query.starts_with("how")).unwrap();
    assert!(rows.iter().all(|r| !r.query.contains("900123")), "no phone numbers in gap rows: {rows:?}");
    assert_eq!((gap.query.as_str(), gap.no_result_searches), ("how do i export invoices?", 2));
    let article_row = rows.iter().find(|r| r.article_id == sso_id).unwrap();
    assert_eq!((article_row.helpful_yes, article_row.helpful_no), (2, 1));

    let (status, report) = api.get("/api/v1/kb/analytics?site_id=acme", &admin).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["data"]["totals"]["searches"], 6);
    assert!(report["data"]["gaps"].as_array().unwrap().iter().any(|g| g["query"] == "call me [number]"), "{report}");
    assert_eq!(report["data"]["gaps"][0]["query"], "how do i export invoices?");
    assert_eq!(report["data"]["top_articles"][0]["title"], "Single sign-on with SAML");
    assert_eq!(report["data"]["top_articles"][0]["helpful_rate"].as_f64().map(|r| (r * 100.0).round()), Some(67.0));
    assert_eq!(report["data"]["days"].as_array().unwrap().len(), 30, "the last 30 days, today included");
    assert_eq!(api.get("/api/v1/kb/analytics?site_id=acme&from=2026-01-10&to=2026-01-01", &admin).await.0, 400);
}

fn crm_api_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The counters of yesterday to tomorrow summed per (article, query), so a run that crosses UTC
/// midnight sees the same totals.
async fn counters_around_today(api: &Api, site: &str) -> Vec<crm_schemas::KbCounter> {
    let today = crm_schemas::utc_day(crm_api_now());
    let mut summed: std::collections::BTreeMap<(String, String), crm_schemas::KbCounter> = Default::default();
    for row in api.store.kb_counters(site, today - 1, today + 2).await.unwrap() {
        let entry = summed.entry((row.article_id.clone(), row.query.clone())).or_insert_with(|| crm_schemas::KbCounter::key(site, today, &row.article_id, &row.query));
        entry.add(&row);
    }
    summed.into_values().collect()
}

#[tokio::test]
async fn public_api_answers_the_sites_origins_only_and_is_rate_limited() {
    let api = start_with(crm_api::ApiConfig { per_ip_per_minute: None, per_user_per_minute: None, public_per_ip_per_minute: Some(4), ..crm_api::ApiConfig::default() }).await;
    site(&api, "acme", &["https://www.acme.io"]).await;
    let get = |origin: &'static str| api.client.get(format!("{}/v1/kb/acme/search?q=sso", api.base)).header("origin", origin).send();
    let allowed = get("https://www.acme.io").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://www.acme.io");
    assert_eq!(allowed.headers()["cache-control"], "no-store");
    let foreign = get("https://evil.example").await.unwrap();
    assert!(foreign.headers().get("access-control-allow-origin").is_none(), "a foreign origin gets no CORS grant");
    let preflight = api
        .client
        .request(Method::OPTIONS, format!("{}/v1/kb/acme/feedback", api.base))
        .header("origin", "https://www.acme.io")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-methods"], "GET, POST");
    // The fourth request of the minute (the preflight counts too) is the last allowed; then 429
    // with Retry-After, as JSON.
    assert_eq!(get("https://www.acme.io").await.unwrap().status(), 200);
    let limited = get("https://www.acme.io").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(limited.headers()["access-control-allow-origin"], "https://www.acme.io", "the page can read why");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // The staff API has its own budget.
    assert_eq!(api.get("/api/v1/kb/articles?site_id=acme", &api.login("admin").await).await.0, 200);
}

/// Parses `html` with html5lib in strict mode (the HTML5 parsing algorithm; any parse error
/// fails). The validator is installed by scripts/html-validator.sh; without it this fails.
fn assert_valid_html(html: &str, what: &str) {
    let python = std::env::var("CRM_TEST_HTML_VALIDATOR").expect("CRM_TEST_HTML_VALIDATOR is not set: run scripts/test.sh, or export CRM_TEST_HTML_VALIDATOR=$(scripts/html-validator.sh)");
    let script = "import sys, html5lib\nhtml5lib.HTMLParser(strict=True).parse(sys.stdin.buffer.read().decode('utf-8'))\n";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the validator runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(html.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{what} is not valid HTML5: {}\n{html}", String::from_utf8_lossy(&out.stderr));
}

async fn page(api: &Api, path: &str, user_agent: &str) -> (u16, HashMap<String, String>, String) {
    let response = api.client.get(format!("{}{path}", api.base)).header("user-agent", user_agent).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
    (status, headers, response.text().await.unwrap())
}

/// The JSON-LD blocks of a page, parsed.
fn json_ld(html: &str) -> Vec<Value> {
    html.split("<script type=\"application/ld+json\">").skip(1).map(|rest| serde_json::from_str(&rest[..rest.find("</script>").unwrap()]).unwrap()).collect()
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

#[tokio::test]
async fn the_help_centre_renders_valid_pages_with_seo_tags() {
    for base_url in [None, Some("https://help.acme.io")] {
        let config = crm_api::ApiConfig { per_ip_per_minute: None, per_user_per_minute: None, public_per_ip_per_minute: None, ..crm_api::ApiConfig::default() };
        let api = start_custom(config, |state| state.with_help_base_url(base_url.map(str::to_owned))).await;
        site(&api, "acme", &[]).await;
        let admin = api.login("admin").await;
        let faq = "Intro.\n\n## Do you support SSO?\n\nYes: SAML and OIDC.\n\n## Can I enforce it?\n\nYes, per workspace.\n\n| plan | sso |\n| - | - |\n| pro | yes |\n";
        let sso = create(&api, &admin, article("Single sign-on & SAML <setup>", faq, "published")).await;
        create(&api, &admin, json!({ "site_id": "acme", "title": "Exporting data", "body_md": "<script>alert(1)</script> CSV export.\n\n![x](javascript:alert(1))", "category": "data", "status": "published" })).await;
        create(&api, &admin, json!({ "site_id": "acme", "title": "Secret roadmap", "body_md": "Not yet.", "status": "draft" })).await;
        let prefix = base_url.unwrap_or("");

        let (status, headers, home) = page(&api, "/help/acme/", BROWSER).await;
        assert_eq!(status, 200);
        assert!(headers["content-type"].starts_with("text/html"));
        assert!(headers["content-security-policy"].contains("default-src 'none'") && !headers["content-security-policy"].contains("script-src"));
        assert_valid_html(&home, "the home page");
        assert!(home.contains(&format!("<link rel=\"canonical\" href=\"{prefix}/help/acme/\">")), "{home}");
        assert!(home.contains("/help/acme/c/security") && home.contains("/help/acme/c/data") && !home.contains("roadmap"));

        let slug = sso["slug"].as_str().unwrap();
        let (status, headers, html) = page(&api, &format!("/help/acme/a/{slug}"), BROWSER).await;
        assert_eq!(status, 200);
        assert_eq!(headers["cache-control"], "public, max-age=60");
        assert_valid_html(&html, "an article page");
        assert!(html.contains("<title>Single sign-on &amp; SAML &lt;setup&gt; · Acme Cloud help centre</title>"), "{html}");
        assert!(html.contains("<meta name=\"description\" content=\"Intro. Do you support SSO?"));
        assert!(html.contains(&format!("<link rel=\"canonical\" href=\"{prefix}/help/acme/a/{slug}\">")));
        assert!(html.contains("<meta property=\"og:type\" content=\"article\">") && html.contains("<table>"));
        let ld = json_ld(&html);
        assert_eq!(ld[0]["@type"], "Article");
        assert_eq!(ld[0]["headline"], "Single sign-on & SAML <setup>");
        assert!(ld[0]["dateModified"].as_str().unwrap().starts_with("20"));
        assert_eq!(ld[1]["@type"], "FAQPage");
        assert_eq!(ld[1]["mainEntity"][0]["name"], "Do you support SSO?");
        assert_eq!(ld[1]["mainEntity"][1]["acceptedAnswer"]["text"], "Yes, per workspace. plan sso pro yes");

        let (_, _, export) = page(&api, "/help/acme/a/exporting-data", BROWSER).await;
        assert_valid_html(&export, "an article with a hostile body");
        assert!(export.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !export.contains("<script>alert") && !export.contains("javascript:"));
        assert_eq!(json_ld(&export).len(), 1, "no FAQPage without two questions");

        let (status, _, category) = page(&api, "/help/acme/c/security", BROWSER).await;
        assert_eq!(status, 200);
        assert_valid_html(&category, "a category page");
        let (status, headers, results) = page(&api, "/help/acme/search?q=saml+%3Cb%3E", BROWSER).await;
        assert_eq!((status, headers["cache-control"].as_str()), (200, "no-store"));
        assert_valid_html(&results, "a search page");
        assert!(results.contains("noindex") && results.contains("<mark>") && results.contains("saml &lt;b&gt;"));
        let (_, _, empty) = page(&api, "/help/acme/search", BROWSER).await;
        assert_valid_html(&empty, "an empty search page");

        for missing in ["/help/acme/a/secret-roadmap", "/help/acme/a/nope", "/help/ghost/", "/help/acme/c/nothing"] {
            let (status, headers, body) = page(&api, missing, BROWSER).await;
            assert_eq!(status, 404, "{missing}");
            assert!(headers["content-type"].starts_with("text/html"));
            assert_valid_html(&body, missing);
        }

        let (status, headers, sitemap) = page(&api, "/help/acme/sitemap.xml", BROWSER).await;
        assert_eq!(status, 200);
        assert!(headers["content-type"].starts_with("application/xml"));
        assert!(sitemap.contains(&format!("<loc>{prefix}/help/acme/a/{slug}</loc>")) && sitemap.contains("/help/acme/a/exporting-data"));
        assert!(!sitemap.contains("secret-roadmap"), "drafts are not listed");
        assert_eq!(sitemap.matches("<url>").count(), 3);

        // Views count for people, not bots; the no-JavaScript vote redirects back and counts.
        page(&api, &format!("/help/acme/a/{slug}"), "Googlebot/2.1 (+http://www.google.com/bot.html)").await;
        page(&api, &format!("/help/acme/a/{slug}"), "curl/8.5.0").await;
        let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let voted = no_redirects.post(format!("{}/help/acme/a/{slug}/feedback", api.base)).form(&[("helpful", "yes")]).send().await.unwrap();
        assert_eq!(voted.status(), 303);
        assert_eq!(voted.headers()["location"], format!("/help/acme/a/{slug}?thanks=1").as_str());
        let bad = no_redirects.post(format!("{}/help/acme/a/{slug}/feedback", api.base)).form(&[("helpful", "maybe")]).send().await.unwrap();
        assert_eq!(bad.status(), 422);
        let (_, _, thanks) = page(&api, &format!("/help/acme/a/{slug}?thanks=1"), BROWSER).await;
        assert!(thanks.contains("Thanks for your feedback"));
        api.kb.flush_counters(&api.store).await.unwrap();
        let rows = counters_around_today(&api, "acme").await;
        let row = rows.iter().find(|r| r.article_id == sso["article_id"].as_str().unwrap()).unwrap();
        assert_eq!((row.views, row.helpful_yes), (2, 1), "two browser views (the page and the thanks page), no bot views");
    }
}
