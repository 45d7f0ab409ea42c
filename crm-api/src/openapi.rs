//! The API's OpenAPI 3.1 document (`GET /api/v1/openapi.json`) and its rendered reference
//! (`GET /api/v1/docs`), both generated from [`OPERATIONS`]: one entry per route with its
//! parameters, body, permission and every status it can answer. A test walks the same table
//! against the router, so a route missing here (or a documented route missing there) fails it.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::rbac::Permission;

/// Where a parameter goes and its JSON schema.
pub struct Param {
    pub name: &'static str,
    pub path: bool,
    pub required: bool,
    pub schema: &'static str,
    pub doc: &'static str,
}

const fn q(name: &'static str, required: bool, schema: &'static str, doc: &'static str) -> Param {
    Param { name, path: false, required, schema, doc }
}

const fn p(name: &'static str, doc: &'static str) -> Param {
    Param { name, path: true, required: true, schema: r#"{"type":"string","minLength":1,"maxLength":200}"#, doc }
}

pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// `None`: no sign-in needed.
    pub permission: Option<Permission>,
    pub params: &'static [Param],
    /// JSON schema of the request body, if it takes one (JSON, or CSV for imports).
    pub body: Option<&'static str>,
    pub success: u16,
    /// Statuses beyond the common ones (400, 401/403 when signed in, 408, 413, 429, 500, 503).
    pub errors: &'static [u16],
}

const SITE: Param = q("site_id", true, r#"{"type":"string","minLength":1,"maxLength":64,"examples":["demo"]}"#, "the site");
/// Path parameters with an example the demo data has, so generated requests reach real records.
const PATH_SITE: Param = Param { name: "site_id", path: true, required: true, schema: r#"{"type":"string","minLength":1,"maxLength":64,"examples":["demo"]}"#, doc: "the site" };
const PATH_FORM: Param = Param { name: "form_id", path: true, required: true, schema: r#"{"type":"string","minLength":1,"maxLength":64,"examples":["demo-request"]}"#, doc: "the form" };
const LIMIT: Param = q("limit", false, r#"{"type":"integer","minimum":1,"maximum":500}"#, "page size");
const LIMIT_1000: Param = q("limit", false, r#"{"type":"integer","minimum":1,"maximum":1000}"#, "page size");
const CURSOR: Param = q("cursor", false, r#"{"type":"string","maxLength":512}"#, "`meta.next_cursor` of the previous page");
const FROM: Param = q("from", false, r#"{"type":"string","maxLength":40,"examples":["2026-11-01"]}"#, "YYYY-MM-DD, RFC 3339 or epoch ms (default: 7 days before `to`)");
const TO: Param = q("to", false, r#"{"type":"string","maxLength":40}"#, "YYYY-MM-DD, RFC 3339 or epoch ms (default: now)");

/// Funnel step `n`: `page:<glob>` or `event:<name>`.
const fn step(n: usize, required: bool) -> Param {
    const NAMES: [&str; 8] = ["step1", "step2", "step3", "step4", "step5", "step6", "step7", "step8"];
    q(NAMES[n - 1], required, r#"{"type":"string","minLength":6,"maxLength":262,"examples":["page:/pricing*","event:signup"]}"#, "page:<path glob> (`*` any run of characters) or event:<custom event name>")
}

const fn op(method: &'static str, path: &'static str, tag: &'static str, summary: &'static str, permission: Option<Permission>) -> Operation {
    Operation { method, path, tag, summary, permission, params: &[], body: None, success: 200, errors: &[] }
}

const fn with(mut o: Operation, params: &'static [Param], body: Option<&'static str>, success: u16, errors: &'static [u16]) -> Operation {
    o.params = params;
    o.body = body;
    o.success = success;
    o.errors = errors;
    o
}

use Permission as P;

const QUERY: &str = r#"{"type":"object","required":["site_id","sql"],"additionalProperties":false,"properties":{"site_id":{"type":"string","maxLength":64,"examples":["demo"]},"sql":{"type":"string","maxLength":20000,"examples":["SELECT path, count(*) AS views FROM events WHERE kind = 'pageview' AND NOT is_bot GROUP BY path ORDER BY views DESC LIMIT 10"]},"limit":{"type":"integer","minimum":1,"maximum":10000},"timeout_ms":{"type":"integer","minimum":100,"maximum":30000}}}"#;
/// Repeated `filter=dimension:op:value` (crm_store::filters).
const FILTER: Param = Param {
    name: "filter",
    path: false,
    required: false,
    schema: r#"{"type":"array","maxItems":10,"items":{"type":"string","pattern":"^(page|source|utm_source|country|device|browser):(is|is_not|prefix|glob):.+$","maxLength":300,"examples":["country:is:DE","page:glob:/blog/*"]}}"#,
    doc: "narrow the figures (all must hold): page, source, utm_source, country, device or browser; is, is_not, prefix or glob (`*`); values as the top lists key them, e.g. (direct), (unknown)",
};

const ERASE: &str = r#"{"type":"object","required":["site_id"],"additionalProperties":false,"properties":{"site_id":{"type":"string","maxLength":64,"examples":["demo"]},"visitor_id":{"type":"string","minLength":1,"maxLength":256,"description":"an unidentified visitor (an identified one is erased through its lead)"},"lead_id":{"type":"string","minLength":1,"maxLength":256,"description":"a lead with every device linked to it and every lead merged into it"}},"description":"exactly one of visitor_id and lead_id"}"#;
const LOGIN: &str = r#"{"type":"object","required":["username","password"],"additionalProperties":false,"properties":{"username":{"type":"string","maxLength":128},"password":{"type":"string","maxLength":1024}}}"#;
const REFRESH: &str = r#"{"type":"object","required":["refresh_token"],"additionalProperties":false,"properties":{"refresh_token":{"type":"string","maxLength":256}}}"#;
const TOTP_ANSWER: &str = r#"{"type":"object","required":["challenge"],"additionalProperties":false,"properties":{"challenge":{"type":"string","maxLength":1024},"code":{"type":"string","pattern":"^[0-9]{6}$"},"recovery_code":{"type":"string","maxLength":64}}}"#;
const TOTP_CHALLENGE: &str = r#"{"type":"object","required":["challenge"],"additionalProperties":false,"properties":{"challenge":{"type":"string","maxLength":1024}}}"#;
const TOTP_CODE: &str = r#"{"type":"object","required":["code"],"additionalProperties":false,"properties":{"code":{"type":"string","pattern":"^[0-9]{6}$"}}}"#;
const TOTP_DISABLE: &str = r#"{"type":"object","additionalProperties":false,"properties":{"code":{"type":"string"},"recovery_code":{"type":"string","maxLength":64}}}"#;
const AUTH_POLICY: &str = r#"{"type":"object","required":["require_totp"],"additionalProperties":false,"properties":{"require_totp":{"type":"boolean"}}}"#;
const LOGOUT: &str = r#"{"type":"object","additionalProperties":false,"properties":{"refresh_token":{"type":"string","maxLength":256},"everywhere":{"type":"boolean"}}}"#;
const USER_NEW: &str = r#"{"type":"object","required":["username","password","role"],"additionalProperties":false,"properties":{"username":{"type":"string"},"password":{"type":"string"},"role":{"type":"string","enum":["admin","sales_manager","sales_rep","customer_success"]}}}"#;
const USER_PATCH: &str = r#"{"type":"object","additionalProperties":false,"properties":{"role":{"type":"string","enum":["admin","sales_manager","sales_rep","customer_success"]},"password":{"type":"string"},"disabled":{"type":"boolean"},"reset_totp":{"type":"boolean","description":"remove the user's second factor (a lost device)"}}}"#;
const SITE_BODY: &str = r#"{"type":"object","required":["name"],"properties":{"site_id":{"type":"string"},"name":{"type":"string"},"allowed_origins":{"type":"array","items":{"type":"string"}},"page_rules":{"type":"array"},"intent_half_life_days":{"type":"number"},"icp":{"type":"object"},"chat":{"type":"object"},"privacy":{"type":"object","additionalProperties":false,"properties":{"honor_dnt_gpc":{"type":"boolean","description":"drop, unrecorded, events of requests with DNT: 1 or Sec-GPC: 1"},"retention_days":{"type":"integer","minimum":1,"maximum":3650,"description":"keep the site's events, sessions and dead letters this many days (applied hourly by crm up, or by crm batch retention)"}}},"bots":{"type":"object","additionalProperties":false,"properties":{"datacenter_asn":{"type":"boolean","description":"events from datacenter and hosting networks (by ASN, when an ASN database is loaded) are bots; default true"}}},"goals":{"type":"array","maxItems":32,"description":"conversions; absent keeps the site's goals","items":{"type":"object","required":["goal_id","name","match"],"additionalProperties":false,"properties":{"goal_id":{"type":"string","pattern":"^[A-Za-z0-9_.-]{1,64}$"},"name":{"type":"string","minLength":1,"maxLength":100},"match":{"oneOf":[{"type":"object","required":["kind","pattern"],"additionalProperties":false,"properties":{"kind":{"const":"page"},"pattern":{"type":"string","minLength":1,"maxLength":256,"description":"path glob starting with / or *"}}},{"type":"object","required":["kind","name"],"additionalProperties":false,"properties":{"kind":{"const":"event"},"name":{"type":"string","minLength":1,"maxLength":100},"property":{"type":"object","required":["key","value"],"additionalProperties":false,"properties":{"key":{"type":"string","minLength":1,"maxLength":64},"value":{"type":["string","number","boolean"]}}}}}]}}}}}}"#;
const LEAD_NEW: &str = r#"{"type":"object","required":["site_id","email"],"additionalProperties":false,"properties":{"site_id":{"type":"string"},"email":{"type":"string"},"traits":{"type":"object"}}}"#;
const LEAD_PATCH: &str = r#"{"type":"object","additionalProperties":false,"properties":{"status":{"type":"string","enum":["new","contacted","qualified","unqualified","customer","lost"]},"owner":{"type":["string","null"]},"notes":{"type":["string","null"]}}}"#;
const OUTCOME: &str = r#"{"type":"object","required":["outcome"],"additionalProperties":false,"properties":{"outcome":{"type":"string","enum":["won","lost","unqualified"]}}}"#;
const MERGE: &str = r#"{"type":"object","required":["lead_id"],"additionalProperties":false,"properties":{"lead_id":{"type":"string"}}}"#;
const SPLIT: &str = r#"{"type":"object","required":["visitor_id"],"additionalProperties":false,"properties":{"visitor_id":{"type":"string"},"to_lead_id":{"type":"string"}}}"#;
const RESOLVE: &str = r#"{"type":"object","required":["visitor_id","other_lead_id","action"],"additionalProperties":false,"properties":{"visitor_id":{"type":"string"},"other_lead_id":{"type":"string"},"action":{"type":"string","enum":["keep","move","merge"]}}}"#;
const RULE: &str = r#"{"type":"object","required":["site_id","name","condition","webhook_url"],"additionalProperties":false,"properties":{"site_id":{"type":"string"},"rule_id":{"type":"string"},"name":{"type":"string"},"webhook_url":{"type":"string"},"window_hours":{"type":"integer"},"enabled":{"type":"boolean"},"condition":{"type":"object","required":["type"],"properties":{"type":{"type":"string","enum":["page_views","score_crossed","target_account","playbook","chat_handoff"]}}}}}"#;
const FORM: &str = r#"{"type":"object","required":["name","fields"],"properties":{"site_id":{"type":"string"},"form_id":{"type":"string"},"name":{"type":"string"},"fields":{"type":"array","items":{"type":"object"}}}}"#;
const TASK_PATCH: &str = r#"{"type":"object","additionalProperties":false,"properties":{"status":{"type":"string","enum":["open","done"]},"owner":{"type":"string"}}}"#;
const CSV: &str = r#"{"type":"string"}"#;
const ARTICLE: &str = r#"{"type":"object","required":["site_id","title","body_md"],"additionalProperties":false,"properties":{"site_id":{"type":"string"},"slug":{"type":"string","pattern":"^[a-z0-9]+(-[a-z0-9]+)*$","maxLength":100},"title":{"type":"string","maxLength":200},"body_md":{"type":"string","maxLength":204800},"category":{"type":["string","null"]},"tags":{"type":"array","maxItems":20,"items":{"type":"string"}},"status":{"type":"string","enum":["draft","published"]}}}"#;
const ARTICLE_UPDATE: &str = r#"{"type":"object","required":["title","body_md","version"],"additionalProperties":false,"properties":{"site_id":{"type":"string"},"slug":{"type":"string"},"title":{"type":"string","maxLength":200},"body_md":{"type":"string","maxLength":204800},"category":{"type":["string","null"]},"tags":{"type":"array","items":{"type":"string"}},"status":{"type":"string","enum":["draft","published"]},"version":{"type":"integer","minimum":1,"description":"the version you edited"}}}"#;
const FEEDBACK: &str = r#"{"type":"object","required":["article_id","helpful"],"additionalProperties":false,"properties":{"article_id":{"type":"string","maxLength":64},"helpful":{"type":"boolean"}}}"#;
const CHAT_START: &str = r#"{"type":"object","additionalProperties":false,"properties":{"visitor_id":{"type":["string","null"],"maxLength":64},"session_id":{"type":["string","null"],"maxLength":64},"url":{"type":["string","null"],"maxLength":2048}}}"#;
const CHAT_SEND: &str = r#"{"type":"object","required":["token","text"],"additionalProperties":false,"properties":{"token":{"type":"string","maxLength":128},"text":{"type":"string","minLength":1,"maxLength":2000},"client_id":{"type":"string","maxLength":64}}}"#;
const CHAT_TOKEN: &str = r#"{"type":"object","required":["token"],"additionalProperties":false,"properties":{"token":{"type":"string","maxLength":128}}}"#;
const CHAT_FEEDBACK: &str = r#"{"type":"object","required":["token","helpful"],"additionalProperties":false,"properties":{"token":{"type":"string","maxLength":128},"helpful":{"type":"boolean"}}}"#;
const CHAT_REPLY: &str = r#"{"type":"object","required":["text"],"additionalProperties":false,"properties":{"text":{"type":"string","minLength":1,"maxLength":2000}}}"#;
const CHAT_CLOSE: &str = r#"{"type":"object","required":["resolved"],"additionalProperties":false,"properties":{"resolved":{"type":"boolean"}}}"#;
const PATH_CONVERSATION: Param = Param { name: "conversation_id", path: true, required: true, schema: r#"{"type":"string","minLength":1,"maxLength":64}"#, doc: "the conversation" };
const PATH_ARTICLE: Param = Param { name: "article_id", path: true, required: true, schema: r#"{"type":"string","minLength":1,"maxLength":64}"#, doc: "the article" };
const KB_QUERY: Param = q("q", true, r#"{"type":"string","minLength":1,"maxLength":512}"#, "the question or keywords");

/// Every route of the API (the dashboard's `/` and `/app/{file}` are not API operations).
pub const OPERATIONS: &[Operation] = &[
    with(op("post", "/api/v1/auth/login", "auth", "Sign in: an access token (15 min) and a refresh token (30 days)", None), &[], Some(LOGIN), 200, &[401, 422]),
    with(op("post", "/api/v1/auth/refresh", "auth", "Rotate a refresh token (reuse of a rotated one revokes its family)", None), &[], Some(REFRESH), 200, &[401, 422]),
    with(op("post", "/api/v1/auth/logout", "auth", "Revoke this sign-in's refresh tokens (or all, with `everywhere` and an access token)", None), &[], Some(LOGOUT), 200, &[401, 422]),
    op("get", "/api/v1/auth/me", "auth", "The caller, their role and permissions", Some(P::SitesRead)),
    with(op("post", "/api/v1/auth/login/totp", "auth", "Finish a login with the challenge and a TOTP code or a recovery code", None), &[], Some(TOTP_ANSWER), 200, &[401, 422, 429]),
    with(op("post", "/api/v1/auth/login/totp/enroll", "auth", "Enrol a second factor during a login the policy holds (with the challenge)", None), &[], Some(TOTP_CHALLENGE), 200, &[401, 409, 422, 429]),
    with(op("post", "/api/v1/auth/login/totp/confirm", "auth", "Confirm that enrolment with a first code: tokens and the recovery codes", None), &[], Some(TOTP_ANSWER), 200, &[400, 401, 409, 422, 429]),
    with(op("post", "/api/v1/auth/totp/enroll", "auth", "Start enrolling your own second factor: the secret and its otpauth URI", Some(P::SitesRead)), &[], None, 200, &[409]),
    with(op("post", "/api/v1/auth/totp/confirm", "auth", "Turn your second factor on with a first code; answers the recovery codes once", Some(P::SitesRead)), &[], Some(TOTP_CODE), 200, &[409, 422]),
    with(op("post", "/api/v1/auth/totp/disable", "auth", "Turn your second factor off with a current code or a recovery code", Some(P::SitesRead)), &[], Some(TOTP_DISABLE), 200, &[409, 422, 429]),
    op("get", "/api/v1/auth/policy", "users", "The sign-in policy (whether a second factor is required)", Some(P::UsersManage)),
    with(op("put", "/api/v1/auth/policy", "users", "Require (or stop requiring) a second factor for every user", Some(P::UsersManage)), &[], Some(AUTH_POLICY), 200, &[422]),
    with(op("get", "/api/v1/auth/audit", "users", "Authentication audit log, newest first", Some(P::AuditRead)), &[q("username", false, r#"{"type":"string","maxLength":128}"#, "only this user"), LIMIT, CURSOR], None, 200, &[]),
    op("get", "/api/v1/users", "users", "Users (no password hashes)", Some(P::UsersManage)),
    with(op("post", "/api/v1/users", "users", "Create a user", Some(P::UsersManage)), &[], Some(USER_NEW), 201, &[409, 422]),
    with(op("patch", "/api/v1/users/{username}", "users", "Change a user's role or password, or disable them (revokes their refresh tokens)", Some(P::UsersManage)), &[p("username", "the user")], Some(USER_PATCH), 200, &[404, 422]),
    op("get", "/api/v1/sites", "sites", "Sites", Some(P::SitesRead)),
    with(op("post", "/api/v1/sites", "sites", "Create a site", Some(P::SitesManage)), &[], Some(SITE_BODY), 201, &[409, 422]),
    with(op("get", "/api/v1/sites/{site_id}", "sites", "One site", Some(P::SitesRead)), &[PATH_SITE], None, 200, &[404]),
    with(op("put", "/api/v1/sites/{site_id}", "sites", "Replace a site's settings", Some(P::SitesManage)), &[PATH_SITE], Some(SITE_BODY), 200, &[404, 422]),
    with(op("get", "/api/v1/visitors", "visitors", "Visitors ranked by intent, engagement or recency", Some(P::AnalyticsRead)), &[SITE, LIMIT, CURSOR, q("sort", false, r#"{"type":"string","enum":["intent","engagement","last_seen"]}"#, "order"), q("bots", false, r#"{"type":"string","enum":["exclude","only"]}"#, "bots filter")], None, 200, &[]),
    with(op("get", "/api/v1/visitors/{visitor_id}", "visitors", "One visitor's profile and scores", Some(P::AnalyticsRead)), &[p("visitor_id", "the visitor"), q("site_id", false, r#"{"type":"string","maxLength":64}"#, "the site")], None, 200, &[404, 409]),
    with(op("get", "/api/v1/visitors/{visitor_id}/events", "visitors", "A visitor's timeline, newest first", Some(P::AnalyticsRead)), &[p("visitor_id", "the visitor"), q("site_id", false, r#"{"type":"string","maxLength":64}"#, "the site"), LIMIT, CURSOR], None, 200, &[404, 409]),
    with(op("get", "/api/v1/analytics/overview", "analytics", "Traffic overview of a window, with each goal's conversions; narrowed by filters, compared with the previous period", Some(P::AnalyticsRead)), &[SITE, FROM, TO, q("limit", false, r#"{"type":"integer","minimum":1,"maximum":100}"#, "entries per top list"), FILTER, q("compare", false, r#"{"type":"string","enum":["previous"]}"#, "adds `previous`: the same figures for the period of the same length just before, and their relative change")], None, 200, &[404]),
    with(op("get", "/api/v1/analytics/timeseries", "analytics", "Traffic per day or hour, with each goal's conversions per bucket; narrowed by filters", Some(P::AnalyticsRead)), &[SITE, FROM, TO, q("interval", false, r#"{"type":"string","enum":["day","hour"]}"#, "bucket size"), FILTER], None, 200, &[404]),
    with(op("get", "/api/v1/analytics/live", "analytics", "Visitors and pageviews of the last five minutes; narrowed by filters", Some(P::AnalyticsRead)), &[SITE, FILTER], None, 200, &[404]),
    with(op("get", "/api/v1/analytics/forms", "analytics", "Lead-form funnels", Some(P::AnalyticsRead)), &[SITE, FROM, TO], None, 200, &[404]),
    with(op("get", "/api/v1/analytics/funnel", "analytics", "Conversion funnel of 2 to 8 steps: visitors, drop-off and median time per step", Some(P::AnalyticsRead)), &[SITE, FROM, TO, step(1, true), step(2, true), step(3, false), step(4, false), step(5, false), step(6, false), step(7, false), step(8, false), q("window", false, r#"{"type":"string","pattern":"^[1-9][0-9]{0,5}[mhd]$","examples":["1d"]}"#, "conversion window from step 1: minutes, hours or days (1m to 90d; default 1d)"), q("order", false, r#"{"type":"string","enum":["ordered","strict","any"]}"#, "ordered (others may come between), strict (each step the very next pageview or custom event) or any order; default ordered. A visitor's events of the same millisecond count in step order")], None, 200, &[404]),
    with(op("post", "/api/v1/query", "analytics", "Read-only SQL over one site's events, sessions and visitors (422 sql_invalid, sql_not_allowed, sql_timeout, sql_too_large, sql_unsupported)", Some(P::AnalyticsQuery)), &[], Some(QUERY), 200, &[404, 422]),
    with(op("get", "/api/v1/analytics/goals", "analytics", "The site's goals: conversions, events and conversion rate, by acquisition source and per day or hour when asked", Some(P::AnalyticsRead)), &[SITE, FROM, TO, q("by", false, r#"{"type":"string","enum":["source"]}"#, "conversions per acquisition source (first utm_source, else first referrer host, else (direct))"), q("interval", false, r#"{"type":"string","enum":["day","hour"]}"#, "adds a series of this bucket size"), q("limit", false, r#"{"type":"integer","minimum":1,"maximum":100}"#, "sources per goal (default 10)")], None, 200, &[404]),
    with(op("get", "/api/v1/analytics/events", "analytics", "Custom events of a window with their properties: events, visitors, value types, distinct and most frequent values", Some(P::AnalyticsRead)), &[SITE, FROM, TO, q("limit", false, r#"{"type":"integer","minimum":1,"maximum":50}"#, "most frequent values per property (default 10)")], None, 200, &[404]),
    with(op("get", "/api/v1/analytics/paths", "analytics", "The pages viewed just before and after a page, within sessions", Some(P::AnalyticsRead)), &[SITE, FROM, TO, q("page", true, r#"{"type":"string","minLength":1,"maxLength":256,"examples":["/pricing","/blog/*"]}"#, "a path, or a glob (`*` any run of characters), starting with / or *"), q("limit", false, r#"{"type":"integer","minimum":1,"maximum":100}"#, "entries per list (default 10)")], None, 200, &[404]),
    with(op("get", "/api/v1/analytics/export", "analytics", "A report, or the window's raw events (streamed; admin and sales manager), as CSV or Parquet; takes the report's own parameters", Some(P::AnalyticsRead)), &[SITE, FROM, TO, q("report", true, r#"{"type":"string","enum":["events","overview","timeseries","goals","funnel","retention","paths","custom_events"]}"#, "what to export: raw events (needs analytics_query) or a report"), q("format", false, r#"{"type":"string","enum":["csv","parquet"]}"#, "csv (default) or parquet"), q("page", false, r#"{"type":"string","maxLength":256,"examples":["/pricing"]}"#, "paths: the page"), step(1, false), step(2, false), step(3, false), q("window", false, r#"{"type":"string","pattern":"^[1-9][0-9]{0,5}[mhd]$"}"#, "funnel: conversion window"), q("period", false, r#"{"type":"string","enum":["day","week"]}"#, "retention: cohort period"), q("cohorts", false, r#"{"type":"integer","minimum":1,"maximum":26}"#, "retention: cohorts"), q("by", false, r#"{"type":"string","enum":["source"]}"#, "goals: by acquisition source"), q("interval", false, r#"{"type":"string","enum":["day","hour"]}"#, "timeseries and goals: bucket size"), q("limit", false, r#"{"type":"integer","minimum":1,"maximum":50}"#, "entries per list")], None, 200, &[403, 404]),
    with(op("get", "/api/v1/analytics/retention", "analytics", "Retention grid: daily or weekly cohorts and their returning visitors", Some(P::AnalyticsRead)), &[SITE, q("from", false, r#"{"type":"string","maxLength":40,"examples":["2026-11-02"]}"#, "first cohort: the period holding this date (default: as many periods back as `cohorts`)"), q("period", false, r#"{"type":"string","enum":["day","week"]}"#, "UTC days or ISO weeks (default week)"), q("cohorts", false, r#"{"type":"integer","minimum":1,"maximum":26}"#, "number of cohorts (default 8)"), q("start", false, r#"{"type":"string","maxLength":262,"examples":["first_visit","event:signup"]}"#, "first_visit (default), page:<glob> or event:<name>: what puts a visitor in a cohort"), q("return", false, r#"{"type":"string","maxLength":262,"examples":["any","page:/app*"]}"#, "any (default), page:<glob> or event:<name>: what counts as returning")], None, 200, &[404]),
    with(op("post", "/api/v1/privacy/erase", "privacy", "Erase a data subject: events, sessions, profiles, lead and CRM records, audit, scores, alerts, chats and dead letters; replays of its events are dropped (409 visitor_is_identified: erase its lead)", Some(P::PrivacyErase)), &[], Some(ERASE), 200, &[404, 409, 422]),
    with(op("get", "/api/v1/privacy/erasures", "privacy", "The site's erasures: who asked, when, what they covered and what was deleted", Some(P::PrivacyErase)), &[SITE], None, 200, &[]),
    with(op("get", "/api/v1/privacy/export", "privacy", "Subject access export: everything held about a visitor or a lead (with all its devices) as one JSON document", Some(P::PrivacyExport)), &[SITE, q("visitor_id", false, r#"{"type":"string","minLength":1,"maxLength":256}"#, "a visitor (an identified one exports its lead)"), q("lead_id", false, r#"{"type":"string","minLength":1,"maxLength":256}"#, "a lead")], None, 200, &[404, 422]),
    with(op("get", "/api/v1/dead-letters", "analytics", "Events the collector refused, newest first", Some(P::DeadLettersRead)), &[SITE, LIMIT, CURSOR], None, 200, &[]),
    with(op("get", "/api/v1/leads", "leads", "Leads, filtered, sorted and paginated", Some(P::LeadsRead)), &[SITE, LIMIT, CURSOR, q("status", false, r#"{"type":"string"}"#, "lead status"), q("owner", false, r#"{"type":"string"}"#, "owner"), q("min_score", false, r#"{"type":"integer","minimum":0,"maximum":100}"#, "lowest score"), q("max_score", false, r#"{"type":"integer","minimum":0,"maximum":100}"#, "highest score"), q("company", false, r#"{"type":"string"}"#, "company domain"), q("source", false, r#"{"type":"string"}"#, "first-touch source"), q("active_since", false, r#"{"type":"string"}"#, "date"), q("sort", false, r#"{"type":"string","enum":["score","last_activity","created"]}"#, "order"), q("include_deleted", false, r#"{"type":"boolean"}"#, "include soft-deleted")], None, 200, &[]),
    with(op("post", "/api/v1/leads", "leads", "Add a lead by hand", Some(P::LeadsCreate)), &[], Some(LEAD_NEW), 201, &[404, 409, 422]),
    with(op("get", "/api/v1/leads/{lead_id}", "leads", "One lead with its score breakdown and history", Some(P::LeadsRead)), &[p("lead_id", "the lead"), SITE], None, 200, &[404]),
    with(op("patch", "/api/v1/leads/{lead_id}", "leads", "Edit status, owner, notes (reps: own leads only)", Some(P::LeadsUpdate)), &[p("lead_id", "the lead"), SITE], Some(LEAD_PATCH), 200, &[404, 422]),
    with(op("delete", "/api/v1/leads/{lead_id}", "leads", "Soft-delete a lead", Some(P::LeadsDelete)), &[p("lead_id", "the lead"), SITE], None, 204, &[404]),
    with(op("get", "/api/v1/leads/{lead_id}/timeline", "leads", "A lead's multi-device timeline", Some(P::LeadsRead)), &[p("lead_id", "the lead"), SITE, LIMIT, CURSOR], None, 200, &[404]),
    with(op("get", "/api/v1/leads/{lead_id}/audit", "leads", "A lead's change audit", Some(P::LeadsRead)), &[p("lead_id", "the lead"), SITE, LIMIT], None, 200, &[404]),
    with(op("post", "/api/v1/leads/{lead_id}/outcome", "leads", "Record how a lead ended", Some(P::LeadsUpdate)), &[p("lead_id", "the lead"), SITE], Some(OUTCOME), 200, &[404, 422]),
    with(op("post", "/api/v1/leads/{lead_id}/merge", "leads", "Merge another lead into this one", Some(P::LeadsMerge)), &[p("lead_id", "the lead kept"), SITE], Some(MERGE), 200, &[404, 409, 422]),
    with(op("post", "/api/v1/leads/{lead_id}/split", "leads", "Move a visitor out of a lead", Some(P::LeadsMerge)), &[p("lead_id", "the lead"), SITE], Some(SPLIT), 200, &[404, 409, 422]),
    with(op("get", "/api/v1/identity-conflicts", "leads", "Visitors seen with two identities", Some(P::LeadsMerge)), &[SITE, LIMIT, q("all", false, r#"{"type":"boolean"}"#, "include resolved")], None, 200, &[]),
    with(op("post", "/api/v1/identity-conflicts/resolve", "leads", "Resolve an identity conflict", Some(P::LeadsMerge)), &[SITE], Some(RESOLVE), 200, &[404, 409, 422]),
    with(op("get", "/api/v1/reports/score-feedback", "leads", "Win rate by score band", Some(P::ReportsRead)), &[SITE], None, 200, &[]),
    with(op("get", "/api/v1/accounts", "accounts", "Companies: leads by email domain, visitors by IP organisation", Some(P::AccountsRead)), &[SITE, LIMIT], None, 200, &[]),
    with(op("get", "/api/v1/accounts/{account_id}", "accounts", "One company", Some(P::AccountsRead)), &[p("account_id", "the account"), SITE], None, 200, &[404]),
    with(op("get", "/api/v1/accounts/{account_id}/health", "health", "An account's latest health with history", Some(P::HealthRead)), &[p("account_id", "the account"), SITE], None, 200, &[404]),
    with(op("get", "/api/v1/health", "health", "Current customer health, worst first", Some(P::HealthRead)), &[SITE, q("risk", false, r#"{"type":"string","enum":["healthy","at_risk","critical"]}"#, "risk level"), LIMIT_1000, CURSOR], None, 200, &[]),
    with(op("get", "/api/v1/health/dashboard", "health", "Executive dashboard", Some(P::HealthRead)), &[SITE], None, 200, &[]),
    with(op("get", "/api/v1/tasks", "health", "Playbook tasks", Some(P::AccountsRead)), &[SITE, q("status", false, r#"{"type":"string","enum":["open","done"]}"#, "status"), q("account_id", false, r#"{"type":"string"}"#, "account"), LIMIT_1000, CURSOR], None, 200, &[]),
    with(op("patch", "/api/v1/tasks/{task_id}", "health", "Close, reopen or assign a task", Some(P::AccountsUpdate)), &[p("task_id", "the task"), SITE], Some(TASK_PATCH), 200, &[404, 422]),
    with(op("post", "/api/v1/import/{kind}", "health", "Import business data (CSV; all rows or none)", Some(P::DataImport)), &[Param { name: "kind", path: true, required: true, schema: r#"{"type":"string","enum":["accounts","invoices","tickets","relationships"]}"#, doc: "what the file holds" }, SITE], Some(CSV), 200, &[404, 422]),
    with(op("get", "/api/v1/alert-rules", "alerts", "Alert rules (secrets redacted)", Some(P::AlertsRead)), &[SITE], None, 200, &[]),
    with(op("post", "/api/v1/alert-rules", "alerts", "Create an alert rule (the webhook secret is shown once)", Some(P::AlertsManage)), &[], Some(RULE), 201, &[404, 409, 422]),
    with(op("delete", "/api/v1/alert-rules/{site_id}/{rule_id}", "alerts", "Delete an alert rule", Some(P::AlertsManage)), &[PATH_SITE, p("rule_id", "the rule")], None, 204, &[404]),
    with(op("get", "/api/v1/alerts", "alerts", "Fired alerts with their delivery attempts", Some(P::AlertsRead)), &[SITE, q("limit", false, r#"{"type":"integer","minimum":1,"maximum":1000}"#, "page size")], None, 200, &[]),
    with(op("get", "/api/v1/forms", "forms", "Lead form definitions", Some(P::FormsRead)), &[SITE], None, 200, &[404]),
    with(op("post", "/api/v1/forms", "forms", "Create a lead form", Some(P::FormsManage)), &[], Some(FORM), 201, &[404, 409, 422]),
    with(op("get", "/api/v1/forms/{site_id}/{form_id}", "forms", "One lead form", Some(P::FormsRead)), &[PATH_SITE, PATH_FORM], None, 200, &[404]),
    with(op("put", "/api/v1/forms/{site_id}/{form_id}", "forms", "Replace a lead form", Some(P::FormsManage)), &[PATH_SITE, PATH_FORM], Some(FORM), 200, &[404, 422]),
    with(op("delete", "/api/v1/forms/{site_id}/{form_id}", "forms", "Delete a lead form", Some(P::FormsManage)), &[PATH_SITE, PATH_FORM], None, 204, &[404]),
    with(op("get", "/api/v1/kb/articles", "knowledge base", "A site's articles without bodies (drafts too; deleted ones on request)", Some(P::KbRead)), &[SITE, LIMIT, CURSOR, q("status", false, r#"{"type":"string","enum":["draft","published"]}"#, "only this status"), q("category", false, r#"{"type":"string","maxLength":100}"#, "only this category"), q("tag", false, r#"{"type":"string","maxLength":64}"#, "only with this tag"), q("include_deleted", false, r#"{"type":"boolean"}"#, "include soft-deleted")], None, 200, &[404]),
    with(op("post", "/api/v1/kb/articles", "knowledge base", "Write a new article (markdown; a draft unless `status` is published)", Some(P::KbManage)), &[], Some(ARTICLE), 201, &[404, 409, 422]),
    with(op("get", "/api/v1/kb/articles/{site_id}/{article_id}", "knowledge base", "One article with its markdown and rendered HTML", Some(P::KbRead)), &[PATH_SITE, PATH_ARTICLE], None, 200, &[404]),
    with(op("put", "/api/v1/kb/articles/{site_id}/{article_id}", "knowledge base", "Edit an article; `version` must be the one edited (else 409 `version_conflict`)", Some(P::KbManage)), &[PATH_SITE, PATH_ARTICLE], Some(ARTICLE_UPDATE), 200, &[404, 409, 422]),
    with(op("delete", "/api/v1/kb/articles/{site_id}/{article_id}", "knowledge base", "Soft-delete an article (it leaves the help centre and search; history stays)", Some(P::KbManage)), &[PATH_SITE, PATH_ARTICLE], None, 204, &[404]),
    with(op("post", "/api/v1/kb/articles/{site_id}/{article_id}/restore", "knowledge base", "Undelete an article", Some(P::KbManage)), &[PATH_SITE, PATH_ARTICLE], None, 200, &[404, 409]),
    with(op("get", "/api/v1/kb/articles/{site_id}/{article_id}/versions", "knowledge base", "An article's versions with author and time, newest first", Some(P::KbRead)), &[PATH_SITE, PATH_ARTICLE, LIMIT], None, 200, &[404]),
    with(op("get", "/api/v1/kb/search", "knowledge base", "Search live articles as visitors do (hybrid keyword and semantic); not counted", Some(P::KbRead)), &[SITE, KB_QUERY, q("limit", false, r#"{"type":"integer","minimum":1,"maximum":50}"#, "hits")], None, 200, &[404]),
    with(op("get", "/api/v1/kb/analytics", "knowledge base", "Views, searches, content gaps, helpfulness and deflection per day", Some(P::KbRead)), &[SITE, FROM, TO, q("limit", false, r#"{"type":"integer","minimum":1,"maximum":200}"#, "top articles and gaps")], None, 200, &[404]),
    with(op("get", "/v1/kb/{site_id}/search", "knowledge base (public)", "Public help search for a site's pages (no sign-in; CORS for the site's origins; `typeahead=true` is not counted)", None), &[PATH_SITE, KB_QUERY, q("limit", false, r#"{"type":"integer","minimum":1,"maximum":20}"#, "hits"), q("typeahead", false, r#"{"type":"boolean"}"#, "search-as-you-type (not counted)")], None, 200, &[404]),
    with(op("post", "/v1/kb/{site_id}/feedback", "knowledge base (public)", "A visitor's helpful yes/no on a live article (a yes counts as a deflection)", None), &[PATH_SITE], Some(FEEDBACK), 202, &[403, 404, 422]),
    with(op("get", "/api/v1/chat/conversations", "chat", "Chat inbox, newest first (reading it marks you online)", Some(P::ChatRespond)), &[SITE, LIMIT, CURSOR, q("status", false, r#"{"type":"string","enum":["open","handed_off","resolved","closed"]}"#, "only this status"), q("visitor_id", false, r#"{"type":"string","maxLength":64}"#, "one visitor's conversations")], None, 200, &[404]),
    with(op("get", "/api/v1/chat/conversations/{site_id}/{conversation_id}", "chat", "A conversation with its transcript", Some(P::ChatRespond)), &[PATH_SITE, PATH_CONVERSATION], None, 200, &[404]),
    with(op("post", "/api/v1/chat/conversations/{site_id}/{conversation_id}/messages", "chat", "Reply to a visitor (assigns the conversation to you if nobody has it)", Some(P::ChatRespond)), &[PATH_SITE, PATH_CONVERSATION], Some(CHAT_REPLY), 201, &[404, 409, 422]),
    with(op("post", "/api/v1/chat/conversations/{site_id}/{conversation_id}/close", "chat", "Close a conversation, answered or not", Some(P::ChatRespond)), &[PATH_SITE, PATH_CONVERSATION], Some(CHAT_CLOSE), 200, &[404]),
    with(op("post", "/v1/chat/{site_id}/conversations", "chat (public)", "The widget starts a conversation: its id, its secret token and the greeting", None), &[PATH_SITE], Some(CHAT_START), 201, &[403, 404, 422]),
    with(op("get", "/v1/chat/{site_id}/conversations/{conversation_id}", "chat (public)", "The widget polls a conversation (messages after `after`)", None), &[PATH_SITE, PATH_CONVERSATION, q("token", true, r#"{"type":"string","maxLength":128}"#, "the conversation's token"), q("after", false, r#"{"type":"integer"}"#, "epoch ms of the last message seen")], None, 200, &[404]),
    with(op("post", "/v1/chat/{site_id}/conversations/{conversation_id}/messages", "chat (public)", "The visitor sends a message; the answer comes back with it", None), &[PATH_SITE, PATH_CONVERSATION], Some(CHAT_SEND), 201, &[403, 404, 409, 413, 422]),
    with(op("post", "/v1/chat/{site_id}/conversations/{conversation_id}/handoff", "chat (public)", "The visitor asks for a person", None), &[PATH_SITE, PATH_CONVERSATION], Some(CHAT_TOKEN), 200, &[403, 404, 409]),
    with(op("post", "/v1/chat/{site_id}/conversations/{conversation_id}/feedback", "chat (public)", "The visitor rates the answer (helpful resolves the conversation)", None), &[PATH_SITE, PATH_CONVERSATION], Some(CHAT_FEEDBACK), 200, &[403, 404]),
    op("get", "/api/v1/openapi.json", "meta", "This document", None),
    op("get", "/api/v1/docs", "meta", "This document, rendered", None),
];

fn parse(schema: &str) -> Value {
    serde_json::from_str(schema).unwrap_or_else(|e| panic!("schema {schema}: {e}"))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "Done; no content",
        304 => "Not modified (If-None-Match matched the ETag)",
        400 => "Malformed JSON or an invalid/missing parameter — codes `malformed_json`, `invalid_parameter`, `missing_parameter`, `bad_request`",
        401 => "Not signed in, or the token is invalid or expired — codes `unauthorized`, `invalid_token`, `bad_credentials`",
        403 => "The caller's role lacks the permission — code `forbidden`; a public write from an origin the site does not allow — code `origin_not_allowed`",
        404 => "Not found — code `not_found`",
        405 => "Method not allowed — code `method_not_allowed`",
        408 => "The request body did not arrive in time — code `body_timeout`",
        409 => "Conflicts with an existing record — codes `site_exists`, `lead_exists`, `rule_exists`, `form_exists`, `user_exists`, `already_merged`, `ambiguous_visitor`, `slug_exists`, `version_conflict`, `conversation_closed`, `conversation_full`, `visitor_is_identified`",
        413 => "Request body too large — code `payload_too_large`",
        422 => "Validation failed — code `validation_failed` (details.fields names each field), or an import's `invalid_rows`",
        429 => "Rate limited (`rate_limited`) or locked out after failed logins (`too_many_attempts`); see Retry-After",
        500 => "Internal error — code `internal`",
        503 => "Storage temporarily unavailable — code `unavailable`; or past the server's connection caps — codes `too_many_connections`, `too_many_connections_from_address`; see Retry-After",
        _ => "Other",
    }
}

/// Every status an operation can answer.
pub fn statuses(o: &Operation) -> Vec<u16> {
    let mut all = vec![o.success, 400, 405, 408, 413, 429, 500, 503];
    if o.method == "get" {
        all.push(304);
    }
    if o.permission.is_some() {
        all.extend([401, 403]);
    }
    all.extend(o.errors);
    all.sort_unstable();
    all.dedup();
    all
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let success = json!({"type":"object","required":["success","data"],"properties":{"success":{"const":true},"data":{},"meta":{"type":"object"}}});
    let error = json!({"type":"object","required":["success","error"],"properties":{"success":{"const":false},"error":{"type":"object","required":["code","message"],"properties":{"code":{"type":"string"},"message":{"type":"string"},"details":{}}}}});
    let retry = json!({"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}});
    let mut paths = Map::new();
    for o in OPERATIONS {
        let mut responses = Map::new();
        for status in statuses(o) {
            let mut response = json!({ "description": reason(status) });
            match status {
                204 | 304 => {}
                s if s < 300 && o.path.ends_with("/docs") => response["content"] = json!({"text/html": {"schema": {"type": "string"}}}),
                s if s < 300 && o.path.ends_with("/analytics/export") => {
                    response["content"] = json!({"text/csv": {"schema": {"type": "string"}}, "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}})
                }
                s if s < 300 && o.path.ends_with("/openapi.json") => response["content"] = json!({"application/json": {"schema": {"type": "object"}}}),
                s if s < 300 => response["content"] = json!({"application/json": {"schema": success.clone()}}),
                s => {
                    response["content"] = json!({"application/json": {"schema": error.clone()}});
                    if s == 429 || s == 503 {
                        response["headers"] = retry.clone();
                    }
                }
            }
            responses.insert(status.to_string(), response);
        }
        let parameters: Vec<Value> = o
            .params
            .iter()
            .map(|p| json!({ "name": p.name, "in": if p.path { "path" } else { "query" }, "required": p.required, "description": p.doc, "schema": parse(p.schema) }))
            .collect();
        let mut operation = json!({
            "tags": [o.tag],
            "summary": o.summary,
            "operationId": format!("{}_{}", o.method, o.path.trim_start_matches("/api/v1/").replace(['/', '{', '}', '-', '.'], "_")),
            "parameters": parameters,
            "responses": responses,
        });
        match o.permission {
            Some(permission) => {
                operation["security"] = json!([{ "bearer": [] }]);
                operation["x-permission"] = json!(permission);
            }
            None => operation["security"] = json!([]),
        }
        if let Some(body) = o.body {
            let media = if body == CSV { "text/csv" } else { "application/json" };
            operation["requestBody"] = json!({ "required": true, "content": { media: { "schema": parse(body) } } });
        }
        let entry = paths.entry(o.path.to_owned()).or_insert_with(|| json!({}));
        entry[o.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "CRM API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Lead intelligence and customer health. Every answer uses the envelope {success, data, meta} or {success: false, error: {code, message, details}}. Reads carry a weak ETag; send If-None-Match for a 304.",
        },
        "servers": [{ "url": "/" }],
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } } },
        "paths": paths,
    })
}

pub async fn json() -> Response {
    crate::reply::raw_json(document())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The reference page: every operation with its permission, parameters and statuses.
pub async fn docs() -> Response {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>CRM API reference</title><style>\
         body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2430}\
         h2{margin-top:2rem;border-bottom:1px solid #ddd}code{background:#f3f4f6;padding:0 .25rem;border-radius:3px}\
         .op{margin:1rem 0;padding:.5rem 1rem;border-left:4px solid #4f6bed;background:#fafbff}.m{font-weight:700;text-transform:uppercase;margin-right:.5rem}\
         small{color:#555}</style></head><body><h1>CRM API reference</h1>\
         <p>Machine-readable: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>. Sign in with <code>POST /api/v1/auth/login</code>, send <code>Authorization: Bearer &lt;access_token&gt;</code>.</p>",
    );
    let mut tag = "";
    for o in OPERATIONS {
        if o.tag != tag {
            tag = o.tag;
            html.push_str(&format!("<h2>{}</h2>", escape(tag)));
        }
        let permission = o.permission.map_or("none (public)".to_owned(), |p| serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default());
        let params: Vec<String> = o.params.iter().map(|p| format!("<code>{}</code>{} — {}", escape(p.name), if p.required { " (required)" } else { "" }, escape(p.doc))).collect();
        let statuses: Vec<String> = statuses(o).iter().map(|s| format!("{s}")).collect();
        html.push_str(&format!(
            "<div class=\"op\"><span class=\"m\">{}</span><code>{}</code><p>{}</p><small>permission: {} · parameters: {} · body: {} · statuses: {}</small></div>",
            o.method,
            escape(o.path),
            escape(o.summary),
            escape(&permission),
            if params.is_empty() { "none".to_owned() } else { params.join(", ") },
            if o.body.is_some() { "yes" } else { "none" },
            statuses.join(", ")
        ));
    }
    html.push_str("</body></html>");
    let mut response = html.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_parses_and_names_every_operation_once() {
        let doc = document();
        let mut ids = std::collections::HashSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                assert!(ids.insert(operation["operationId"].as_str().unwrap().to_owned()), "{method} {path}");
                assert!(operation["responses"]["400"].is_object() && operation["responses"]["429"]["headers"]["Retry-After"].is_object());
            }
        }
        assert_eq!(ids.len(), OPERATIONS.len());
    }
}
