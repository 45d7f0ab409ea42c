//! `crm demo`: realistic synthetic traffic for a running collector — visitors with personas
//! (bouncers, readers, researchers, buyers, bots), several sessions over the past days, UTM and
//! referrer mixes, engagement and clicks, and some buyers identifying themselves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoCommand {
    #[command(subcommand)]
    pub command: Option<DemoSubcommand>,
    #[command(flatten)]
    pub traffic: DemoArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum DemoSubcommand {
    /// Write simulated customer accounts (a year of product usage, invoices with cancellations,
    /// tickets, relationships; known churn propensity) into the store, then run the health and
    /// churn jobs on them. Needs the store to itself: run it before `crm up` on the same data
    /// directory (or against ClickHouse).
    Accounts(AccountsArgs),
}

#[derive(Args, Debug)]
pub struct AccountsArgs {
    #[command(flatten)]
    pub data: crate::config::DataArgs,
    #[command(flatten)]
    pub store: crate::config::StoreArgs,
    #[arg(long, env = "CRM_DEMO_SITE", default_value = "demo")]
    pub site: String,
    #[arg(long, env = "CRM_DEMO_ACCOUNTS", default_value_t = 300)]
    pub accounts: usize,
    /// Days of history, ending today.
    #[arg(long, env = "CRM_DEMO_HISTORY_DAYS", default_value_t = 365)]
    pub days: usize,
    #[arg(long, env = "CRM_DEMO_SEED", default_value_t = 42)]
    pub seed: u64,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Base URL of a running `crm up` or `crm ingest`.
    #[arg(long, env = "CRM_DEMO_TARGET", default_value = "http://127.0.0.1:8080")]
    pub target: String,
    #[arg(long, env = "CRM_DEMO_SITE", default_value = "demo")]
    pub site: String,
    #[arg(long, env = "CRM_DEMO_VISITORS", default_value_t = 300)]
    pub visitors: usize,
    /// Spread visits over this many past days (at most 6, within the collector's clock window).
    #[arg(long, env = "CRM_DEMO_DAYS", default_value_t = 6)]
    pub days: u32,
    #[arg(long, env = "CRM_DEMO_SEED", default_value_t = 42)]
    pub seed: u64,
    #[arg(long, env = "CRM_DEMO_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
];
const BOT_AGENTS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    "python-requests/2.32.3",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
];
/// (utm_source, utm_medium, utm_campaign, referrer)
const SOURCES: &[(Option<&str>, Option<&str>, Option<&str>, Option<&str>)] = &[
    (None, None, None, None),
    (None, None, None, Some("https://www.google.com/")),
    (None, None, None, Some("https://www.linkedin.com/feed/")),
    (None, None, None, Some("https://news.ycombinator.com/item?id=1")),
    (Some("google"), Some("cpc"), Some("brand-q4"), Some("https://www.google.com/")),
    (Some("linkedin"), Some("paid_social"), Some("abm-enterprise"), Some("https://www.linkedin.com/")),
    (Some("newsletter"), Some("email"), Some("november-digest"), None),
    (Some("g2"), Some("referral"), None, Some("https://www.g2.com/products/x")),
];
const CONTENT_PAGES: &[&str] = &["/", "/blog/revenue-intelligence-101", "/blog/lead-scoring-guide", "/features", "/integrations", "/about"];
const RESEARCH_PAGES: &[&str] = &["/docs/getting-started", "/docs/api", "/case-studies/acme", "/customers", "/security"];
const BUYING_PAGES: &[&str] = &["/pricing", "/pricing/enterprise", "/demo", "/contact"];
const COMPANIES: &[(&str, &str)] = &[
    ("acme.example", "Acme Corp"),
    ("globex.example", "Globex"),
    ("initech.example", "Initech"),
    ("umbrella.example", "Umbrella Health"),
    ("hooli.example", "Hooli"),
    ("stark.example", "Stark Industries"),
];
const FIRST_NAMES: &[&str] = &["ada", "grace", "alan", "linus", "margaret", "ken", "barbara", "dennis"];

#[derive(Clone, Copy, PartialEq)]
enum Persona {
    Bouncer,
    Reader,
    Researcher,
    Buyer,
    Bot,
}

fn persona(rng: &mut StdRng) -> Persona {
    match rng.gen_range(0..100) {
        0..=29 => Persona::Bouncer,
        30..=59 => Persona::Reader,
        60..=79 => Persona::Researcher,
        80..=91 => Persona::Buyer,
        _ => Persona::Bot,
    }
}

/// The lead form `crm up` creates for the demo site on first start (what widgets/demo-site's
/// contact page embeds and `crm demo` traffic submits).
pub const DEMO_FORM_ID: &str = "demo-request";

pub fn demo_form(site_id: &str, now_ms: i64) -> crm_schemas::FormDefinition {
    let definition = json!({
        "site_id": site_id, "form_id": DEMO_FORM_ID, "name": "Request a demo",
        "submit_label": "Request a demo", "success_message": "Thanks! We'll be in touch within one business day.",
        "created_at_ms": now_ms, "updated_at_ms": now_ms,
        "fields": [
            {"name": "email", "label": "Work email", "type": "email", "required": true, "company_email": true, "placeholder": "you@company.com"},
            {"name": "name", "label": "Full name", "type": "text", "required": true, "progressive": true, "max_length": 120},
            {"name": "company", "label": "Company", "type": "text", "required": true, "progressive": true, "max_length": 120},
            {"name": "team_size", "label": "Team size", "type": "select", "options": ["1-10", "11-50", "51-200", "201-1000", "1000+"]},
            {"name": "use_case", "label": "What would you like to see?", "type": "textarea", "max_length": 256},
            {"name": "newsletter", "label": "Send me product news", "type": "checkbox"},
            {"name": "source", "type": "hidden", "value": "demo-request-form"}
        ]
    });
    serde_json::from_value(definition).expect("the demo form definition is valid JSON for FormDefinition")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One session's events plus the user agent to send them with.
struct SessionPlan {
    user_agent: &'static str,
    events: Vec<Value>,
}

fn base(site: &str, kind: &str, visitor: &str, session: &str, ts: i64, url: &str) -> Value {
    json!({"v": 1, "type": kind, "site_id": site, "event_id": uuid::Uuid::new_v4().to_string(),
           "visitor_id": visitor, "session_id": session, "ts": ts, "url": url,
           "viewport": {"w": 1440, "h": 900}, "lang": "en-US"})
}

fn plan_visitor(rng: &mut StdRng, args: &DemoArgs, index: usize, now: i64) -> Vec<SessionPlan> {
    let persona = persona(rng);
    let visitor = format!("demo-{:05}-{}", index, uuid::Uuid::new_v4().simple());
    let user_agent = if persona == Persona::Bot { *BOT_AGENTS.choose(rng).expect("agents") } else { *USER_AGENTS.choose(rng).expect("agents") };
    let sessions = match persona {
        Persona::Bouncer | Persona::Bot => 1,
        Persona::Reader => rng.gen_range(1..=2),
        Persona::Researcher => rng.gen_range(1..=3),
        Persona::Buyer => rng.gen_range(2..=4),
    };
    let days = args.days.clamp(1, 6) as i64;
    let mut starts: Vec<i64> = (0..sessions).map(|_| now - rng.gen_range(10 * 60_000..days * 86_400_000)).collect();
    starts.sort_unstable();
    let host = "https://www.demo-saas.example";
    let mut plans = Vec::new();
    for (n, start) in starts.into_iter().enumerate() {
        let session = uuid::Uuid::new_v4().simple().to_string();
        let (source, medium, campaign, referrer) = *SOURCES.choose(rng).expect("sources");
        let mut pages: Vec<&str> = vec![*CONTENT_PAGES.choose(rng).expect("pages")];
        let extra = match persona {
            Persona::Bouncer => 0,
            Persona::Reader => rng.gen_range(1..4),
            Persona::Researcher => rng.gen_range(2..6),
            Persona::Buyer => rng.gen_range(3..7),
            Persona::Bot => rng.gen_range(5..15),
        };
        for _ in 0..extra {
            let pool = match persona {
                Persona::Researcher => RESEARCH_PAGES,
                Persona::Buyer if rng.gen_bool(0.6) => BUYING_PAGES,
                Persona::Bot => BUYING_PAGES,
                _ => CONTENT_PAGES,
            };
            pages.push(pool.choose(rng).expect("pages"));
        }
        let mut ts = start;
        let mut events = Vec::new();
        for (i, page) in pages.iter().enumerate() {
            let mut url = format!("{host}{page}");
            if i == 0 {
                if let Some(source) = source {
                    url.push_str(&format!("?utm_source={source}&utm_medium={}", medium.unwrap_or("")));
                    if let Some(campaign) = campaign {
                        url.push_str(&format!("&utm_campaign={campaign}"));
                    }
                }
            }
            let mut view = base(&args.site, "pageview", &visitor, &session, ts, &url);
            view["title"] = json!(format!("Demo SaaS — {page}"));
            if i == 0 {
                if let Some(referrer) = referrer {
                    view["referrer"] = json!(referrer);
                }
            } else {
                view["referrer"] = json!(format!("{host}{}", pages[i - 1]));
            }
            events.push(view);
            let dwell = match persona {
                Persona::Bouncer => rng.gen_range(1_000..8_000),
                Persona::Bot => rng.gen_range(50..400),
                _ => rng.gen_range(8_000..180_000),
            };
            if persona != Persona::Bot {
                if persona != Persona::Bouncer && rng.gen_bool(0.5) {
                    let mut click = base(&args.site, "click", &visitor, &session, ts + dwell / 2, &url);
                    click["target"] = json!({"text": "Learn more", "href": format!("{host}/features"), "selector": "a.cta", "outbound": false});
                    events.push(click);
                }
                let mut engagement = base(&args.site, "engagement", &visitor, &session, ts + dwell, &url);
                engagement["scroll_depth"] = json!(rng.gen_range(10..=100));
                engagement["engaged_ms"] = json!(dwell * rng.gen_range(5..10) / 10);
                events.push(engagement);
            }
            ts += dwell + rng.gen_range(500..3_000);
        }
        let submits = persona == Persona::Buyer && n > 0 && rng.gen_bool(0.6);
        // The demo-request form sits on /demo: everyone who reaches it sees it (a view), buyers
        // who submit start it first; some others start and abandon it.
        if persona != Persona::Bot && (submits || pages.iter().any(|p| *p == "/demo")) {
            let form_event = |kind: &str, at: i64| {
                let mut event = base(&args.site, kind, &visitor, &session, at, &format!("{host}/demo"));
                event["form_id"] = json!(DEMO_FORM_ID);
                event
            };
            events.push(form_event("form_view", ts - 400));
            if submits || rng.gen_bool(0.3) {
                events.push(form_event("form_start", ts - 200));
            }
        }
        if submits {
            let (domain, company) = *COMPANIES.choose(rng).expect("companies");
            let first = *FIRST_NAMES.choose(rng).expect("names");
            let mut submit = base(&args.site, "form_submit", &visitor, &session, ts, &format!("{host}/demo"));
            submit["form_id"] = json!(DEMO_FORM_ID);
            submit["traits"] = json!({"email": format!("{first}.{index}@{domain}"), "name": first, "company": company});
            events.push(submit);
        }
        plans.push(SessionPlan { user_agent, events });
    }
    plans
}

pub async fn run(args: DemoArgs) -> Result<()> {
    if args.visitors == 0 || args.concurrency == 0 {
        bail!("--visitors and --concurrency must be at least 1");
    }
    let endpoint = format!("{}/v1/events", args.target.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let now = now_ms();
    let mut plans = Vec::new();
    for index in 0..args.visitors {
        plans.extend(plan_visitor(&mut rng, &args, index, now));
    }
    let total_events: usize = plans.iter().map(|p| p.events.len()).sum();
    println!("sending {total_events} events in {} sessions for {} visitors to {endpoint}", plans.len(), args.visitors);
    let started = Instant::now();
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let queue = Arc::new(tokio::sync::Mutex::new(plans));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (queue, client, endpoint, accepted, rejected) = (queue.clone(), client.clone(), endpoint.clone(), accepted.clone(), rejected.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(plan) = queue.lock().await.pop() else { return Ok::<(), anyhow::Error>(()) };
                let body = serde_json::to_vec(&json!({ "events": plan.events }))?;
                let mut attempt = 0;
                loop {
                    let response = client
                        .post(&endpoint)
                        .header("content-type", "text/plain")
                        .header("user-agent", plan.user_agent)
                        .body(body.clone())
                        .send()
                        .await
                        .with_context(|| format!("posting to {endpoint}"))?;
                    let status = response.status();
                    if (status.as_u16() == 429 || status.as_u16() == 503) && attempt < 20 {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                        continue;
                    }
                    let reply: Value = response.json().await.unwrap_or(Value::Null);
                    if !status.is_success() {
                        bail!("collector answered {status}: {reply}");
                    }
                    accepted.fetch_add(reply["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    rejected.fetch_add(reply["rejected"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    break;
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    println!(
        "done in {:.1}s: {} accepted, {} rejected. Try GET /api/v1/visitors?site_id={}&sort=intent",
        started.elapsed().as_secs_f64(),
        accepted.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
        args.site
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_valid_events() {
        let args = DemoArgs { target: String::new(), site: "demo".into(), visitors: 200, days: 6, seed: 7, concurrency: 1 };
        let mut rng = StdRng::seed_from_u64(args.seed);
        let now = now_ms();
        let mut kinds = std::collections::HashSet::new();
        let mut bots = 0;
        for index in 0..args.visitors {
            for plan in plan_visitor(&mut rng, &args, index, now) {
                bots += usize::from(BOT_AGENTS.contains(&plan.user_agent));
                for event in plan.events {
                    let wire: crm_schemas::WireEvent = serde_json::from_value(event.clone()).expect("wire shape");
                    kinds.insert(format!("{:?}", wire.kind));
                    wire.validate(&crm_schemas::Limits::default()).unwrap_or_else(|e| panic!("{event}: {e}"));
                    let ts = event["ts"].as_i64().unwrap();
                    assert!(ts > now - 7 * 86_400_000 && ts <= now + 60_000, "within the accepted clock window");
                }
            }
        }
        for kind in ["FormView", "FormStart", "FormSubmit", "Pageview", "Engagement", "Click"] {
            assert!(kinds.contains(&format!("Some({kind})")), "{kind} missing from {kinds:?}");
        }
        assert!(bots > 0, "bots are part of the mix");
    }

    #[test]
    fn demo_form_is_a_valid_definition() {
        assert_eq!(demo_form("demo", 0).check(), vec![]);
    }
}
