//! Conformance: goal conversions on hand-computed visitors (one site, nine human visitors, a
//! bot, and typed property conditions). The expected figures are worked out in the comments.

use std::collections::BTreeMap;

use crm_schemas::{Goal, GoalMatch, PropertyCondition, Scalar, StoredEvent, VisitorProfile};

use super::growth::{fixture_profiles, growth_event, MINUTE, MONDAY};
use super::StoreHarness;
use crate::goals::{self, GoalPoint};
use crate::{Count, WriteBatch};

pub const GOALS_SITE: &str = "s5";
/// The window the figures are for: the day from [`MONDAY`].
pub const GOALS_WINDOW: (i64, i64) = (MONDAY, MONDAY + 24 * 60 * MINUTE);

fn props(pairs: &[(&str, Scalar)]) -> BTreeMap<String, Scalar> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// The fixture's events, minutes after [`MONDAY`]: every visitor views `/` first.
pub fn goal_events() -> Vec<StoredEvent> {
    let e = |v: &str, minutes: i64, what: &str, with: &[(&str, Scalar)]| {
        let mut event = growth_event(GOALS_SITE, v, MONDAY + minutes * MINUTE, what);
        event.props = props(with);
        event
    };
    let team = || ("plan", Scalar::Str("team".into()));
    let mut events = Vec::new();
    for v in ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"] {
        events.push(e(v, 0, "/", &[]));
    }
    events.extend([
        // u1: the thank-you page and a team signup.
        e("u1", 1, "/thanks", &[]), e("u1", 2, "event:signup", &[team()]),
        // u2: a solo signup and a page the glob /thanks* takes.
        e("u2", 1, "event:signup", &[("plan", Scalar::Str("solo".into()))]), e("u2", 2, "/thanks/again", &[]),
        // u3: two team signups, the first with 5 seats (an integer), the second an hour later.
        e("u3", 3, "event:signup", &[team(), ("seats", Scalar::Int(5))]), e("u3", 69, "/app", &[]), e("u3", 70, "event:signup", &[team()]),
        // u4: 5.0 seats (a float equals the integer 5).
        e("u4", 1, "event:signup", &[("seats", Scalar::Float(5.0))]),
        // u5: trial is the string "true", not the boolean; u6: the boolean.
        e("u5", 1, "event:signup", &[("trial", Scalar::Str("true".into()))]),
        e("u6", 1, "event:signup", &[("trial", Scalar::Bool(true))]),
        // u7: pricing only. u8: the thank-you page before the window. u9: another event's name.
        e("u7", 1, "/pricing", &[]), e("u8", -5, "/thanks", &[]), e("u9", 1, "event:signup-team", &[team()]),
        // A bot converting on everything with rows that look human.
        e("crawler", 0, "/", &[]), e("crawler", 1, "/thanks", &[]), e("crawler", 2, "event:signup", &[team(), ("seats", Scalar::Int(5)), ("trial", Scalar::Bool(true))]),
    ]);
    events
}

/// The fixture's goals, in the order of [`GOAL_FIGURES`].
pub fn fixture_goals() -> Vec<Goal> {
    let goal = |id: &str, target: GoalMatch| Goal { goal_id: id.into(), name: id.to_uppercase(), target };
    let event_where = |key: &str, value: Scalar| GoalMatch::Event { name: "signup".into(), property: Some(PropertyCondition { key: key.into(), value }) };
    vec![
        goal("thanks", GoalMatch::Page { pattern: "/thanks*".into() }),
        goal("team", event_where("plan", Scalar::Str("team".into()))),
        goal("seats", event_where("seats", Scalar::Int(5))),
        goal("trial", event_where("trial", Scalar::Bool(true))),
        goal("signup", GoalMatch::Event { name: "signup".into(), property: None }),
    ]
}

/// The window's visitors: u1–u9 (the bot is out).
pub const GOAL_VISITORS: u64 = 9;
/// Per goal: (conversions, events). thanks: u1 u2 (u8's view is before the window). team: u1 u3
/// (u3 twice; u9's event has another name). seats: u3 (5) u4 (5.0). trial: u6 (u5's is a
/// string). signup: u1 u2 u3 u4 u5 u6, u3 twice.
pub const GOAL_FIGURES: [(u64, u64); 5] = [(2, 2), (2, 3), (2, 2), (1, 1), (6, 7)];

/// Acquisition sources of the signups: u4 u5 u6 direct, u1 u3 by utm_source (over u3's
/// referrer), u2 by its referrer host.
pub fn signup_sources() -> Vec<Count> {
    [("(direct)", 3), ("newsletter", 2), ("news.example", 1)].map(|(key, count)| Count { key: key.into(), count }).to_vec()
}

/// The team goal per hour: u1 and u3 in the first hour (of 9 visitors), u3 in the second (of 1,
/// u3's `/app`), none after.
pub fn team_hours() -> Vec<(u64, f64)> {
    let mut hours = vec![(2, 2.0 / 9.0), (1, 1.0)];
    hours.resize(24, (0, 0.0));
    hours
}

/// The profiles the processor would write for [`goal_events`]: first-touch sources for u1-u3, `crawler` a bot.
pub fn goal_profiles(events: &[StoredEvent]) -> Vec<VisitorProfile> {
    fixture_profiles(GOALS_SITE, events, |profile| match profile.visitor_id.as_str() {
        "u1" => profile.first_utm.source = Some("newsletter".into()),
        "u2" => profile.first_referrer = Some("news.example".into()),
        "u3" => (profile.first_utm.source, profile.first_referrer) = (Some("newsletter".into()), Some("x.example".into())),
        _ => {}
    })
}

pub async fn goals_match_the_fixture(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let events = goal_events();
    let visitors = goal_profiles(&events);
    store.write(WriteBatch { events: events.clone(), visitors, ..WriteBatch::default() }.into()).await.expect("write");
    let goals = fixture_goals();
    let (from, to) = GOALS_WINDOW;

    let (visitors, report) = goals::goals_report(&*store, GOALS_SITE, from, to, &goals, Some(10)).await.expect("goals");
    assert_eq!(visitors, GOAL_VISITORS);
    let figures: Vec<(u64, u64)> = report.iter().map(|g| (g.conversions, g.events)).collect();
    assert_eq!(figures, GOAL_FIGURES.to_vec());
    for (goal, (conversions, _)) in report.iter().zip(GOAL_FIGURES) {
        assert_eq!(goal.conversion_rate, conversions as f64 / GOAL_VISITORS as f64, "{}", goal.goal_id);
    }
    assert_eq!(report[4].sources.as_deref(), Some(&signup_sources()[..]));

    let hour = 60 * MINUTE;
    let points = store.timeseries(GOALS_SITE, from, to, hour).await.expect("timeseries");
    let counts = goals::goal_counts(&*store, GOALS_SITE, from, to, &goals, goals::GoalAsk { top_sources: None, step_ms: Some(hour) }).await.expect("goal counts");
    let series = goals::series(&goals, &counts, &points);
    let team: Vec<(u64, f64)> = series[1].iter().map(|p: &GoalPoint| (p.conversions, p.conversion_rate)).collect();
    assert_eq!(team, team_hours());

    // No goals: nothing asked of the store, nothing counted.
    let none = goals::goal_counts(&*store, GOALS_SITE, from, to, &[], goals::GoalAsk { top_sources: Some(3), step_ms: Some(hour) }).await.expect("no goals");
    assert_eq!((none.conversions.len(), none.sources.map(|s| s.len()), none.buckets.map(|b| b.len())), (0, Some(0), Some(0)));
}
