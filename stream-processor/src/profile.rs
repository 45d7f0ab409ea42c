//! Sessionisation and the per-visitor profile update, applied event by event.
//!
//! A new session starts on the first event, after 30 minutes idle, when the UTC day changes, or
//! when a pageview arrives with a UTM campaign different from the session's. Each session gets a
//! deterministic id (FNV-1a of site, visitor and start time).

use crm_schemas::{utc_day, EventBody, Scalar, Session, Site, StoredEvent, VisitorProfile};

use crate::scoring;
use crate::urls::{referrer_host, Glob, UrlFacts};

/// A site's intent rules compiled for matching, and its decay half-life.
#[derive(Clone, Debug)]
pub struct SiteRules {
    rules: Vec<(Glob, String, f64)>,
    pub half_life_days: f64,
    /// What lead company fit is scored against.
    pub icp: crm_schemas::IdealCustomerProfile,
    /// Events from datacenter networks are bots (`Site.bots.datacenter_asn`).
    pub datacenter_asn: bool,
}

impl SiteRules {
    pub fn new(site: &Site) -> SiteRules {
        SiteRules {
            rules: site.effective_rules().into_iter().map(|r| (Glob::new(&r.pattern), r.signal, r.points)).collect(),
            half_life_days: site.intent_half_life_days,
            icp: site.icp.clone(),
            datacenter_asn: site.bots.datacenter_asn,
        }
    }

    /// The first rule matching `path`: (signal, points).
    fn matching(&self, path: &str) -> Option<(&str, f64)> {
        let lower = path.to_ascii_lowercase();
        self.rules.iter().find(|(glob, _, _)| glob.matches_lower(&lower)).map(|(_, signal, points)| (signal.as_str(), *points))
    }
}

pub const SESSION_IDLE_MS: i64 = 30 * 60 * 1000;
const MAX_ACTIVE_DAYS: usize = 30;

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xffu8)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn starts_new_session(current: Option<&Session>, event: &StoredEvent, campaign: Option<&str>) -> bool {
    let Some(session) = current else { return true };
    if event.ts_ms - session.end_ms > SESSION_IDLE_MS {
        return true;
    }
    if utc_day(event.ts_ms) != utc_day(session.end_ms) && event.ts_ms > session.end_ms {
        return true;
    }
    matches!(event.body, EventBody::Pageview) && campaign.is_some() && campaign != session.utm.campaign.as_deref()
}

/// Applies one enriched event to the visitor's profile (created by the caller if new), filling
/// the event's `session_id` and `intent_signal`. `facts` are the event URL's (from enrichment).
/// The visitor's open session is `profile.current_session`; when this event starts a new one,
/// the session it closed is returned (its final state), so a caller writing sessions per batch
/// keeps every session the batch touched without copying one per event.
pub fn apply_event(profile: &mut VisitorProfile, event: &mut StoredEvent, site: &SiteRules, facts: &UrlFacts) -> Option<Session> {
    let is_pageview = matches!(event.body, EventBody::Pageview);
    let mut utm = facts.utm.clone();
    if is_pageview {
        // Props may carry UTM values the tracker captured on landing.
        for (key, slot) in [("utm_source", &mut utm.source), ("utm_medium", &mut utm.medium), ("utm_campaign", &mut utm.campaign)] {
            if slot.is_none() {
                *slot = event.props.get(key).and_then(Scalar::as_str).map(str::to_owned);
            }
        }
    }
    let is_new_visitor = profile.events == 0;
    if is_new_visitor {
        profile.site_id = event.site_id.clone();
        profile.visitor_id = event.visitor_id.clone();
        profile.first_seen_ms = event.ts_ms;
        profile.last_seen_ms = event.ts_ms;
        profile.intent_updated_ms = event.ts_ms;
    }

    let campaign = if is_pageview { utm.campaign.as_deref() } else { None };
    let mut closed = None;
    if starts_new_session(profile.current_session.as_ref(), event, campaign) {
        let previous_end = profile.current_session.as_ref().map(|s| s.end_ms);
        closed = profile.current_session.take();
        let id = fnv1a(&[event.site_id.as_bytes(), event.visitor_id.as_bytes(), &event.ts_ms.to_le_bytes()]);
        let page_host = facts.host.as_deref();
        profile.current_session = Some(Session {
            site_id: event.site_id.clone(),
            session_id: format!("{id:016x}"),
            visitor_id: event.visitor_id.clone(),
            start_ms: event.ts_ms,
            end_ms: event.ts_ms,
            referrer_host: if is_pageview { referrer_host(event.referrer.as_deref(), page_host) } else { None },
            utm: if is_pageview { utm.clone() } else { Default::default() },
            country: event.geo.country.clone(),
            device_category: event.device.category.clone(),
            browser: event.device.browser.clone(),
            is_bot: event.is_bot,
            ..Session::default()
        });
        profile.visits += 1;
        profile.return_gap_ms = previous_end.map(|end| (event.ts_ms - end).max(0));
    }
    let session = profile.current_session.as_mut().expect("session exists");
    session.end_ms = session.end_ms.max(event.ts_ms);
    session.events += 1;
    session.is_bot |= event.is_bot;
    event.session_id = session.session_id.clone();

    // Intent points decay to this event's time before new points are added.
    if event.ts_ms > profile.intent_updated_ms {
        profile.intent_points =
            scoring::decay_points(profile.intent_points, profile.intent_updated_ms, event.ts_ms, site.half_life_days);
        profile.intent_updated_ms = event.ts_ms;
    }
    let credit = |signal: &str, points: f64, session: &mut Session, profile_signals: &mut std::collections::BTreeMap<String, u32>| {
        *profile_signals.entry(signal.to_owned()).or_insert(0) += 1;
        if !session.signals.iter().any(|s| s == signal) {
            session.signals.push(signal.to_owned());
            return points;
        }
        0.0
    };
    let mut points = 0.0;
    match &event.body {
        EventBody::Pageview => {
            session.pageviews += 1;
            if session.landing_page.is_none() {
                session.landing_page = event.path.clone();
            }
            session.exit_page = event.path.clone();
            profile.pageviews += 1;
            if profile.landing_page.is_none() {
                profile.landing_page = event.path.clone();
                profile.first_referrer = session.referrer_host.clone();
            }
            if profile.first_utm.is_empty() && !utm.is_empty() {
                profile.first_utm = utm.clone();
            }
            if !utm.is_empty() {
                profile.last_utm = utm;
            }
            if let Some((signal, rule_points)) = event.path.as_deref().and_then(|path| site.matching(path)) {
                points += credit(signal, rule_points, session, &mut profile.intent_signals);
                event.intent_signal = Some(signal.to_owned());
            }
        }
        EventBody::Engagement { scroll_depth, engaged_ms } => {
            session.engaged_ms += engaged_ms;
            session.max_scroll = session.max_scroll.max(*scroll_depth);
            profile.time_spent_ms += engaged_ms;
        }
        EventBody::Click { .. } => session.clicks += 1,
        EventBody::Identify { traits } => {
            for (key, value) in traits {
                profile.traits.insert(key.clone(), value.clone());
            }
            if traits.contains_key("email") {
                points += credit("identified", scoring::IDENTIFY_POINTS, session, &mut profile.intent_signals);
                event.intent_signal = Some("identified".into());
            }
        }
        EventBody::FormSubmit { traits, .. } => {
            for (key, value) in traits {
                profile.traits.insert(key.clone(), value.clone());
            }
            points += credit("form_submit", scoring::FORM_SUBMIT_POINTS, session, &mut profile.intent_signals);
            event.intent_signal = Some("form_submit".into());
        }
        // Form views and starts are funnel analytics (per form), not intent: only a submission
        // says something about the visitor.
        EventBody::FormView { .. } | EventBody::FormStart { .. } => {}
        // Chat events the API writes for the visitor: talking to us is intent, asking for a
        // person more so. Other custom events are the site's own analytics.
        EventBody::Custom { name } => {
            let by_visitor = event.props.get("author").and_then(Scalar::as_str) == Some("visitor");
            let signal = match name.as_str() {
                "chat_message" if by_visitor => Some(("chat", scoring::CHAT_POINTS)),
                "chat_handoff" => Some(("chat_handoff", scoring::CHAT_HANDOFF_POINTS)),
                _ => None,
            };
            if let Some((signal, signal_points)) = signal {
                points += credit(signal, signal_points, session, &mut profile.intent_signals);
                event.intent_signal = Some(signal.to_owned());
            }
        }
    }
    profile.intent_points += points;

    profile.events += 1;
    profile.first_seen_ms = profile.first_seen_ms.min(event.ts_ms);
    profile.last_seen_ms = profile.last_seen_ms.max(event.ts_ms);
    profile.is_bot |= event.is_bot;
    // Compared before copied: most events repeat the visitor's device and place.
    if !event.device.category.is_empty() && profile.device != event.device {
        profile.device = event.device.clone();
    }
    if (event.geo.country.is_some() || event.geo.asn.is_some()) && profile.geo != event.geo {
        profile.geo = event.geo.clone();
    }
    let day = utc_day(event.ts_ms);
    if !profile.active_days.contains(&day) {
        profile.active_days.push(day);
        profile.active_days.sort_unstable();
        let excess = profile.active_days.len().saturating_sub(MAX_ACTIVE_DAYS);
        profile.active_days.drain(..excess);
    }
    profile.engagement_score = scoring::engagement_score(profile);
    profile.intent_score = scoring::intent_score(profile.intent_points);
    closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::urls::url_facts;
    use crm_schemas::{Device, Geo};
    use std::collections::BTreeMap;

    const T0: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn event(ts_ms: i64, body: EventBody, url: &str) -> StoredEvent {
        StoredEvent {
            event_id: uuid::Uuid::new_v4(),
            site_id: "s".into(),
            visitor_id: "v".into(),
            session_id: String::new(),
            client_session_id: None,
            ts_ms,
            received_at_ms: ts_ms,
            url: Some(url.into()),
            path: url_facts(Some(url)).path,
            referrer: Some("https://news.example/item".into()),
            title: None,
            props: BTreeMap::new(),
            body,
            ip: None,
            geo: Geo { country: Some("DE".into()), ..Geo::default() },
            device: Device { browser: "Chrome".into(), category: "pc".into(), ..Device::default() },
            is_bot: false,
            intent_signal: None,
        }
    }

    fn run(profile: &mut VisitorProfile, events: &mut [StoredEvent]) -> Vec<Session> {
        let site = SiteRules::new(&Site::new("s", "S", 0));
        events
            .iter_mut()
            .map(|e| {
                let facts = url_facts(e.url.as_deref());
                apply_event(profile, e, &site, &facts);
                profile.current_session.clone().expect("an event always leaves an open session")
            })
            .collect()
    }

    #[test]
    fn sessions_split_on_idle_midnight_and_campaign() {
        let mut profile = VisitorProfile::default();
        let midnight = (T0 / 86_400_000 + 1) * 86_400_000;
        let mut events = vec![
            event(T0, EventBody::Pageview, "https://a.example/"),
            event(T0 + 60_000, EventBody::Pageview, "https://a.example/blog"),
            event(T0 + 60_000 + SESSION_IDLE_MS + 1, EventBody::Pageview, "https://a.example/"),
            event(midnight - 1000, EventBody::Pageview, "https://a.example/"),
            event(midnight + 1000, EventBody::Pageview, "https://a.example/"),
            event(midnight + 2000, EventBody::Pageview, "https://a.example/?utm_campaign=spring"),
            event(midnight + 3000, EventBody::Pageview, "https://a.example/?utm_campaign=spring"),
        ];
        let sessions = run(&mut profile, &mut events);
        let ids: Vec<&str> = events.iter().map(|e| e.session_id.as_str()).collect();
        assert_eq!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2], "idle gap");
        assert_ne!(ids[3], ids[4], "midnight");
        assert_ne!(ids[4], ids[5], "new campaign");
        assert_eq!(ids[5], ids[6], "same campaign continues");
        assert_eq!(profile.visits, 5);
        assert_eq!(sessions[1].pageviews, 2);
        assert_eq!(sessions[1].landing_page.as_deref(), Some("/"));
        assert_eq!(sessions[1].exit_page.as_deref(), Some("/blog"));
        assert_eq!(sessions[0].referrer_host.as_deref(), Some("news.example"));
        assert_eq!(profile.return_gap_ms, Some(1000), "gap before the campaign session");
    }

    #[test]
    fn chat_messages_and_handoffs_are_intent_but_other_custom_events_are_not() {
        let chat = |ts: i64, name: &str, author: Option<&str>| {
            let mut e = event(ts, EventBody::Custom { name: name.into() }, "https://a.example/");
            if let Some(author) = author {
                e.props.insert("author".into(), Scalar::Str(author.into()));
            }
            e
        };
        let mut profile = VisitorProfile::default();
        let mut events = vec![
            chat(T0, "signup_clicked", None),
            chat(T0 + 1, "chat_message", Some("agent")),
            chat(T0 + 2, "chat_message", Some("visitor")),
            chat(T0 + 3, "chat_message", Some("visitor")),
            chat(T0 + 4, "chat_handoff", None),
        ];
        run(&mut profile, &mut events);
        let signals: Vec<Option<&str>> = events.iter().map(|e| e.intent_signal.as_deref()).collect();
        assert_eq!(signals, [None, None, Some("chat"), Some("chat"), Some("chat_handoff")]);
        // Decay over the few milliseconds between events is below a millionth of a point.
        assert!((profile.intent_points - (scoring::CHAT_POINTS + scoring::CHAT_HANDOFF_POINTS)).abs() < 1e-6, "each signal once per session: {}", profile.intent_points);
        assert_eq!((profile.intent_signals.get("chat"), profile.intent_signals.get("chat_handoff")), (Some(&2), Some(&1)));
    }

    #[test]
    fn intent_credits_each_signal_once_per_session_and_counts_every_view() {
        let mut profile = VisitorProfile::default();
        let mut events = vec![
            event(T0, EventBody::Pageview, "https://a.example/pricing"),
            event(T0 + 1000, EventBody::Pageview, "https://a.example/pricing"),
            event(T0 + 2000, EventBody::Pageview, "https://a.example/demo"),
        ];
        run(&mut profile, &mut events);
        assert_eq!(profile.intent_signals.get("pricing"), Some(&2));
        assert_eq!(profile.intent_signals.get("demo"), Some(&1));
        assert!((profile.intent_points - 50.0).abs() < 1e-3, "{}", profile.intent_points);
        assert_eq!(profile.intent_score, scoring::intent_score(profile.intent_points));
        assert_eq!(events[0].intent_signal.as_deref(), Some("pricing"));
        // A week later the points have halved before the next credit.
        let mut later = vec![event(T0 + 7 * 86_400_000, EventBody::Pageview, "https://a.example/pricing")];
        run(&mut profile, &mut later);
        assert!((profile.intent_points - (25.0 + 20.0)).abs() < 1e-3, "{}", profile.intent_points);
    }

    #[test]
    fn engagement_clicks_forms_and_traits() {
        let mut profile = VisitorProfile::default();
        let mut traits = BTreeMap::new();
        traits.insert("email".to_owned(), Scalar::Str("ada@acme.example".into()));
        let mut events = vec![
            event(T0, EventBody::Pageview, "https://a.example/"),
            event(T0 + 5000, EventBody::Engagement { scroll_depth: 80, engaged_ms: 42_000 }, "https://a.example/"),
            event(T0 + 6000, EventBody::Click { target: Default::default() }, "https://a.example/"),
            event(T0 + 7000, EventBody::FormSubmit { form_id: "f".into(), traits }, "https://a.example/"),
        ];
        let sessions = run(&mut profile, &mut events);
        let last = sessions.last().unwrap();
        assert_eq!((last.engaged_ms, last.max_scroll, last.clicks), (42_000, 80, 1));
        assert!(!last.is_bounce());
        assert_eq!(profile.time_spent_ms, 42_000);
        assert_eq!(profile.traits.get("email").and_then(Scalar::as_str), Some("ada@acme.example"));
        assert_eq!(profile.intent_signals.get("form_submit"), Some(&1));
        assert_eq!(profile.events, 4);
        assert!(profile.engagement_score > 0);
    }

    #[test]
    fn bots_stay_flagged() {
        let mut profile = VisitorProfile::default();
        let mut bot = event(T0, EventBody::Pageview, "https://a.example/");
        bot.is_bot = true;
        let mut events = vec![bot, event(T0 + 1, EventBody::Pageview, "https://a.example/")];
        let sessions = run(&mut profile, &mut events);
        assert!(profile.is_bot && sessions[1].is_bot);
    }
}
