//! Conformance: funnels and retention on hand-computed visitors. The fixtures live here so the
//! pure functions' unit tests (growth/tests.rs) and every backend read the same events; the
//! expected figures are worked out by hand in the comments, never taken from a run.

use std::collections::{BTreeMap, HashMap};

use crm_schemas::{EventBody, Goal, GoalMatch, PropertyCondition, Scalar, StoredEvent, VisitorProfile};

use super::{sample_event, sample_profile, StoreHarness};
use crate::goals::{self, GoalAsk};
use crate::growth::{self, CohortStart, EventMatch, FunnelOrder, FunnelReport, FunnelSpec, Period, RetentionReport, RetentionSpec};
use crate::WriteBatch;

pub const MINUTE: i64 = 60_000;
/// Monday 2024-01-01, 00:00 UTC: the funnel's window opens here, and the first cohort.
pub const MONDAY: i64 = 1_704_067_200_000;
pub const WEEK: i64 = 7 * 24 * 60 * MINUTE;

/// A pageview of `what`, or the custom event `event:<name>`.
pub fn growth_event(site: &str, visitor: &str, ts_ms: i64, what: &str) -> StoredEvent {
    let (body, path) = match what.strip_prefix("event:") {
        Some(name) => (EventBody::Custom { name: name.into() }, None),
        None => (EventBody::Pageview, Some(what.to_owned())),
    };
    let mut e = sample_event(site, visitor, ts_ms, body, "/");
    e.path = path;
    e.props = BTreeMap::new();
    e
}

/// Funnel visitors, minutes after [`MONDAY`].
pub fn funnel_events(site: &str) -> Vec<StoredEvent> {
    let e = |v: &str, minutes: i64, what: &str| growth_event(site, v, MONDAY + minutes * MINUTE, what);
    vec![
        // a: all four steps, a minute apart.
        e("a", 0, "/"), e("a", 1, "/pricing"), e("a", 2, "event:signup"), e("a", 3, "/welcome"),
        // b: three steps (the glob takes /pricing/team), 5 and 10 minutes apart.
        e("b", 0, "/"), e("b", 5, "/pricing/team"), e("b", 15, "event:signup"),
        // c: /about between / and /pricing: 2 steps ordered, 1 strict.
        e("c", 0, "/"), e("c", 1, "/about"), e("c", 2, "/pricing"),
        // d: /pricing before /: 1 step ordered, 2 in any order.
        e("d", 0, "/pricing"), e("d", 1, "/"),
        // e: /pricing two days later, outside the one-day window.
        e("e", 0, "/"), e("e", 2 * 24 * 60, "/pricing"),
        // f: only the last step: no attempt in order, 1 step in any order.
        e("f", 0, "/welcome"),
        // g: / twice, then /pricing and signup: ordered from the first / (gaps 11 and 1 min),
        // strict from the second (gaps 1 and 1).
        e("g", 0, "/"), e("g", 10, "/"), e("g", 11, "/pricing"), e("g", 12, "event:signup"),
        // h: / before the window opens, /pricing inside it.
        e("h", -5, "/"), e("h", 1, "/pricing"),
        // i: a signup event named otherwise, and a pageview named like the event.
        e("i", 0, "/"), e("i", 1, "event:sign-up"), e("i", 2, "/signup"),
    ]
}

/// The fixture's funnel: `/` → `/pricing*` → event `signup` → `/welcome`, within a day.
pub fn funnel_spec(order: FunnelOrder) -> FunnelSpec {
    let steps = ["page:/", "page:/pricing*", "event:signup", "page:/welcome"].map(|s| EventMatch::parse(s).unwrap()).to_vec();
    FunnelSpec { steps, window_ms: 24 * 60 * MINUTE, order }
}

/// The window the fixture's attempts must start in.
pub const FUNNEL_WINDOW: (i64, i64) = (MONDAY, MONDAY + 24 * 60 * MINUTE);

/// Per step: (visitors, drop-off, median minutes from the previous step).
pub type StepFigures = (u64, u64, Option<i64>);

/// Ordered. Step 1: a b c d e g i (7). Step 2: a b c g (gaps 1 5 2 11 → lower median 2).
/// Step 3: a b g (gaps 1 10 1 → 1). Step 4: a (gap 1).
pub const ORDERED: [StepFigures; 4] = [(7, 0, None), (4, 3, Some(2)), (3, 1, Some(1)), (1, 2, Some(1))];
/// Strict. Step 2: a b g (c has /about between; g from its second /), gaps 1 5 1 → 1.
/// Step 3: a b g, gaps 1 10 1 → 1. Step 4: a.
pub const STRICT: [StepFigures; 4] = [(7, 0, None), (3, 4, Some(1)), (3, 0, Some(1)), (1, 2, Some(1))];
/// Any order. Completed at least 1: a b c d e f g h i; 2: a b c d g (gaps to the 2nd 1 5 2 1
/// 11 → 2); 3: a b g (gaps 1 10 1 → 1); 4: a (gap 1).
pub const ANY_ORDER: [StepFigures; 4] = [(9, 0, None), (5, 4, Some(2)), (3, 2, Some(1)), (1, 2, Some(1))];

pub fn step_figures(report: &FunnelReport) -> Vec<StepFigures> {
    report.steps.iter().map(|s| (s.visitors, s.drop_off, s.median_ms_from_previous.map(|ms| ms / MINUTE))).collect()
}

/// Retention visitors (an hour into the given week after [`MONDAY`]) and their profiles'
/// first-seen times.
pub fn retention_events(site: &str) -> (Vec<StoredEvent>, HashMap<String, i64>) {
    let at = |week: i64| MONDAY + week * WEEK + 3_600_000;
    let e = |v: &str, week: i64, what: &str| growth_event(site, v, at(week), what);
    let events = vec![
        // p: new in week 0, back in weeks 1 and 2; signs up in week 0, uses the app in week 1.
        e("p", 0, "/"), e("p", 0, "event:signup"), e("p", 1, "/app/home"), e("p", 2, "/"),
        // q: new in week 0, back in week 2 only.
        e("q", 0, "/"), e("q", 2, "/"),
        // r: new in week 1, back in week 2.
        e("r", 1, "/"), e("r", 2, "/"),
        // s: first seen before the range; signs up in week 1, the app in weeks 1 and 2.
        e("s", 0, "/"), e("s", 1, "event:signup"), e("s", 1, "/app"), e("s", 2, "/app/x"),
        // t: new in week 2.
        e("t", 2, "/"),
    ];
    let first_seen = HashMap::from([("p", 0), ("q", 0), ("r", 1), ("s", -1), ("t", 2)].map(|(v, w)| (v.to_owned(), at(w))));
    (events, first_seen)
}

pub fn weekly_by_first_visit() -> RetentionSpec {
    RetentionSpec { period: Period::Week, start_ms: MONDAY, cohorts: 3, start: CohortStart::FirstVisit, return_on: EventMatch::Any }
}

pub fn signup_returning_to_the_app() -> RetentionSpec {
    RetentionSpec { start: CohortStart::Event(EventMatch::Event("signup".into())), return_on: EventMatch::Page("/app*".into()), ..weekly_by_first_visit() }
}

/// Week 0: p q (p back in 1 and 2, q in 2). Week 1: r (back in 2). Week 2: t. s is older.
pub fn by_first_visit_grid() -> Vec<Vec<u64>> {
    vec![vec![2, 1, 2], vec![1, 1], vec![1]]
}

/// Week 0: p (the app in week 1). Week 1: s (the app in its own week does not count; week 2 does).
pub fn signup_grid() -> Vec<Vec<u64>> {
    vec![vec![1, 1, 0], vec![1, 1], vec![0]]
}

pub fn grid(report: &RetentionReport) -> Vec<Vec<u64>> {
    report.cohorts.iter().map(|c| c.returning.clone()).collect()
}

/// The profile the processor would write for a fixture visitor (first and last event).
pub(super) fn profile_of(site: &str, visitor: &str, events: &[StoredEvent], first_seen: Option<i64>) -> VisitorProfile {
    let times: Vec<i64> = events.iter().filter(|e| e.visitor_id == visitor).map(|e| e.ts_ms).collect();
    let mut profile = sample_profile(site, visitor, 1, 1, *times.iter().max().expect("the visitor has events"));
    profile.first_seen_ms = first_seen.unwrap_or(*times.iter().min().expect("events"));
    profile
}

/// The profiles the processor would write for a fixture's visitors of `site` (first and last
/// event; `crawler` a bot), each then passed to `adjust`.
pub(super) fn fixture_profiles(site: &str, events: &[StoredEvent], mut adjust: impl FnMut(&mut VisitorProfile)) -> Vec<VisitorProfile> {
    let mut ids: Vec<&str> = events.iter().filter(|e| e.site_id == site).map(|e| e.visitor_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|v| {
            let mut profile = profile_of(site, v, events, None);
            profile.is_bot = v == "crawler";
            adjust(&mut profile);
            profile
        })
        .collect()
}

pub async fn funnels_and_retention_match_the_fixture(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let mut events = funnel_events("s1");
    let (retention, first_seen) = retention_events("s4");
    events.extend(retention);
    // A bot walks the whole funnel with rows that look human: its profile keeps it out.
    let bot_steps = ["/", "/pricing", "event:signup", "/welcome"];
    events.extend(bot_steps.iter().enumerate().map(|(i, what)| growth_event("s1", "crawler", MONDAY + i as i64 * MINUTE, what)));
    // Another site with the same visitor ids, all converting.
    events.extend(bot_steps.iter().enumerate().map(|(i, what)| growth_event("s2", "a", MONDAY + 30 * MINUTE + i as i64 * MINUTE, what)));
    events.extend(bot_steps.iter().enumerate().map(|(i, what)| growth_event("s2", "b", MONDAY + 30 * MINUTE + i as i64 * MINUTE, what)));
    let mut visitors: Vec<VisitorProfile> = Vec::new();
    let mut ids: Vec<(&str, String)> = events.iter().map(|e| (e.site_id.as_str(), e.visitor_id.clone())).collect();
    ids.sort();
    ids.dedup();
    for (site, visitor) in ids {
        let mut profile = profile_of(site, &visitor, &events, if site == "s4" { first_seen.get(&visitor).copied() } else { None });
        profile.is_bot = visitor == "crawler";
        visitors.push(profile);
    }
    store.write(WriteBatch { events: events.clone(), visitors, ..WriteBatch::default() }.into()).await.expect("write");

    let (from, to) = FUNNEL_WINDOW;
    for (order, expected) in [(FunnelOrder::Ordered, ORDERED), (FunnelOrder::Strict, STRICT), (FunnelOrder::Any, ANY_ORDER)] {
        let report = growth::funnel_report(&*store, "s1", from, to, &funnel_spec(order)).await.expect("funnel");
        assert_eq!(step_figures(&report), expected.to_vec(), "{order:?}");
    }
    let other = growth::funnel_report(&*store, "s2", from, to, &funnel_spec(FunnelOrder::Ordered)).await.expect("funnel s2");
    assert_eq!(other.steps.iter().map(|s| s.visitors).collect::<Vec<_>>(), vec![2, 2, 2, 2], "sites apart");

    // Globs with regex metacharacters match literally on every backend.
    let dotted = FunnelSpec { steps: vec![EventMatch::Page("/v1.0/*".into()), EventMatch::Page("/(x)".into())], window_ms: 60 * MINUTE, order: FunnelOrder::Ordered };
    let literal = vec![growth_event("s3", "dot", MONDAY, "/v1.0/a"), growth_event("s3", "dot", MONDAY + 1, "/(x)"), growth_event("s3", "nodot", MONDAY, "/v1x0/a")];
    let literal_profiles = vec![profile_of("s3", "dot", &literal, None), profile_of("s3", "nodot", &literal, None)];
    store.write(WriteBatch { events: literal.clone(), visitors: literal_profiles, ..WriteBatch::default() }.into()).await.expect("write s3");
    let report = growth::funnel_report(&*store, "s3", from, to, &dotted).await.expect("funnel s3");
    assert_eq!(report.steps.iter().map(|s| s.visitors).collect::<Vec<_>>(), vec![1, 1], "`.` and `(` are literal in a glob");

    let by_visit = growth::retention_report(&*store, "s4", &weekly_by_first_visit()).await.expect("retention");
    assert_eq!(grid(&by_visit), by_first_visit_grid());
    let by_signup = growth::retention_report(&*store, "s4", &signup_returning_to_the_app()).await.expect("retention by signup");
    assert_eq!(grid(&by_signup), signup_grid());
}

/// A small deterministic generator (xorshift64*) for the random fixture below.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// 160 visitors of site `r` over three weeks from [`MONDAY`]: pageviews of six paths, two custom
/// events and form views (never a funnel row), with equal timestamps on purpose, a few bots by
/// profile, and some visitors first seen before the range.
fn random_growth_fixture() -> (Vec<StoredEvent>, Vec<VisitorProfile>) {
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let whats = ["/", "/pricing", "/pricing/team", "/demo", "/contact", "/blog/x", "event:signup", "event:invite", "form"];
    let (mut events, mut profiles) = (Vec::new(), Vec::new());
    for v in 0..160 {
        let visitor = format!("r{v:03}");
        let mut at = MONDAY + dice.below(21 * 24 * 60) as i64 * MINUTE;
        let mut mine = Vec::new();
        for _ in 0..1 + dice.below(24) {
            // Mostly minutes apart, sometimes the same millisecond, sometimes days later.
            at += match dice.below(10) {
                0 => 0,
                1 => dice.below(4 * 24 * 60) as i64 * MINUTE,
                _ => dice.below(30) as i64 * MINUTE + dice.below(1000) as i64,
            };
            let what = whats[dice.below(whats.len() as u64) as usize];
            let mut event = match what {
                "form" => sample_event("r", &visitor, at, EventBody::FormView { form_id: "f".into() }, "/contact"),
                what => growth_event("r", &visitor, at, what),
            };
            if what == "event:signup" {
                let plan = [Scalar::Str("team".into()), Scalar::Str("solo".into()), Scalar::Int(5), Scalar::Float(5.0)][dice.below(4) as usize].clone();
                event.props.insert("plan".into(), plan);
            }
            mine.push(event);
        }
        let first = (dice.below(5) == 0).then_some(MONDAY - WEEK);
        let mut profile = profile_of("r", &visitor, &mine, first);
        profile.is_bot = dice.below(12) == 0;
        // Acquisition sources for goals by source: a UTM source, else a referrer, else none.
        match dice.below(4) {
            0 => profile.first_utm.source = Some(["newsletter", "ads"][dice.below(2) as usize].into()),
            1 => profile.first_referrer = Some(["www.google.com", "news.ycombinator.com", ""][dice.below(3) as usize].into()),
            _ => {}
        }
        // A few visitors have no profile (yet): they are human, and their source is `(direct)`.
        if v % 15 != 7 {
            profiles.push(profile);
        }
        events.extend(mine);
    }
    (events, profiles)
}

/// Every funnel, retention and goal report a store computes itself (ClickHouse pushes them
/// down) equals the Rust fold over its matched rows, on random visitors with ties, long gaps,
/// bots, typed properties and acquisition sources; and the reports are not empty, so the
/// comparison means something.
pub async fn growth_reports_equal_the_fold_over_matched_rows(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let (events, visitors) = random_growth_fixture();
    store.write(WriteBatch { events, visitors, ..WriteBatch::default() }.into()).await.expect("write");
    let step = |text: &str| EventMatch::parse(text).expect("step");
    let four = ["page:/", "page:/pricing*", "event:signup", "page:/demo"].map(step).to_vec();
    let two = ["page:/pricing*", "event:signup"].map(step).to_vec();
    let ranges = [(MONDAY, MONDAY + WEEK), (MONDAY + 3 * 24 * 60 * MINUTE, MONDAY + 17 * 24 * 60 * MINUTE)];
    let mut converted = 0;
    for order in [FunnelOrder::Ordered, FunnelOrder::Strict, FunnelOrder::Any] {
        for (steps, window_ms) in [(&four, 60 * MINUTE), (&four, 24 * 60 * MINUTE), (&two, 10 * MINUTE)] {
            for (from, to) in ranges {
                let spec = FunnelSpec { steps: steps.clone(), window_ms, order };
                let report = growth::funnel_report(&*store, "r", from, to, &spec).await.expect("funnel");
                let reference = growth::funnel_from_rows(&*store, "r", from, to, &spec).await.expect("fold");
                assert_eq!(report, reference, "{order:?}, {} steps, window {window_ms} ms, from {from}", steps.len());
                converted += report.steps.last().map_or(0, |s| s.visitors);
            }
        }
    }
    assert!(converted > 0, "some visitor finishes some funnel");
    let page = |glob: &str| EventMatch::Page(glob.into());
    let specs = [
        RetentionSpec { period: Period::Day, start_ms: MONDAY, cohorts: 21, start: CohortStart::FirstVisit, return_on: EventMatch::Any },
        RetentionSpec { period: Period::Week, start_ms: MONDAY, cohorts: 4, start: CohortStart::Event(page("/pricing*")), return_on: EventMatch::Event("signup".into()) },
        RetentionSpec { period: Period::Week, start_ms: MONDAY - WEEK, cohorts: 3, start: CohortStart::FirstVisit, return_on: page("/demo") },
        RetentionSpec { period: Period::Day, start_ms: MONDAY + 2 * 24 * 60 * MINUTE, cohorts: 9, start: CohortStart::Event(EventMatch::Any), return_on: page("/") },
    ];
    let mut returned = 0;
    for spec in specs {
        let report = growth::retention_report(&*store, "r", &spec).await.expect("retention");
        let reference = growth::retention_from_rows(&*store, "r", &spec).await.expect("fold");
        assert_eq!(report, reference, "{spec:?}");
        returned += report.cohorts.iter().flat_map(|c| c.returning.iter().skip(1)).sum::<u64>();
    }
    assert!(returned > 0, "some cohort has returning visitors");

    let goal = |id: &str, target: GoalMatch| Goal { goal_id: id.into(), name: id.into(), target };
    let signup = |value: Option<Scalar>| GoalMatch::Event { name: "signup".into(), property: value.map(|value| PropertyCondition { key: "plan".into(), value }) };
    let goals = vec![
        goal("demo", GoalMatch::Page { pattern: "/demo".into() }),
        goal("pricing", GoalMatch::Page { pattern: "/pricing*".into() }),
        goal("signup", signup(None)),
        goal("team", signup(Some(Scalar::Str("team".into())))),
        goal("five", signup(Some(Scalar::Int(5)))),
        goal("blog", GoalMatch::Page { pattern: "*/x".into() }),
    ];
    for (from, to) in ranges {
        for ask in [GoalAsk::default(), GoalAsk { top_sources: Some(3), step_ms: Some(24 * 60 * MINUTE) }, GoalAsk { top_sources: Some(10), step_ms: Some(60 * MINUTE) }] {
            let counts = goals::goal_counts(&*store, "r", from, to, &goals, ask).await.expect("goal counts");
            let reference = goals::goal_counts_from_rows(&*store, "r", from, to, &goals, ask).await.expect("fold");
            assert_eq!(counts, reference, "goals {ask:?} from {from}");
            assert!(counts.conversions.iter().all(|&n| n > 0), "every goal converts someone: {counts:?}");
        }
    }
}
