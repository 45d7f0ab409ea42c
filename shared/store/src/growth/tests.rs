//! The funnel and retention definitions on hand-computed visitors (the numbers in the comments
//! are worked out by hand from the module docs, not by running the code).

use crm_schemas::StoredEvent;

use super::*;
use crate::conformance::{
    by_first_visit_grid, funnel_events, funnel_spec, grid, retention_events, signup_grid, signup_returning_to_the_app, step_figures, weekly_by_first_visit, ANY_ORDER,
    FUNNEL_WINDOW, MINUTE as MIN, MONDAY, ORDERED, STRICT, WEEK,
};

/// Rows as a backend returns them: matched (or, with `keep`, unmatched pageviews and custom
/// events), ordered by visitor and time.
fn rows(events: &[StoredEvent], matchers: &[EventMatch], keep: bool) -> Vec<MatchedEvent> {
    let mut out: Vec<MatchedEvent> = events
        .iter()
        .map(|e| MatchedEvent { visitor_id: e.visitor_id.clone(), ts_ms: e.ts_ms, mask: matchers.iter().enumerate().filter(|(_, m)| m.matches(e)).map(|(i, _)| 1 << i).sum() })
        .filter(|r| r.mask != 0 || keep)
        .collect();
    out.sort_by(|a, b| (&a.visitor_id, a.ts_ms).cmp(&(&b.visitor_id, b.ts_ms)));
    out
}

#[test]
fn funnels_in_each_order() {
    let (from, to) = FUNNEL_WINDOW;
    for (order, keep, expected) in [(FunnelOrder::Ordered, false, ORDERED), (FunnelOrder::Strict, true, STRICT), (FunnelOrder::Any, false, ANY_ORDER)] {
        let spec = funnel_spec(order);
        let report = funnel(&spec, &rows(&funnel_events("s1"), &spec.steps, keep), from, to);
        assert_eq!(step_figures(&report), expected.to_vec(), "{order:?}");
    }
    let spec = funnel_spec(FunnelOrder::Ordered);
    let report = funnel(&spec, &rows(&funnel_events("s1"), &spec.steps, false), from, to);
    assert_eq!(report.steps[1].step, "page:/pricing*");
    assert!((report.steps[3].conversion_rate - 1.0 / 7.0).abs() < 1e-12);
    let strict = funnel_spec(FunnelOrder::Strict);
    let loose = funnel(&strict, &rows(&funnel_events("s1"), &strict.steps, false), from, to);
    assert_eq!(loose.steps[1].visitors, 4, "without the unmatched rows strict cannot see /about");
}

#[test]
fn a_funnel_without_visitors_is_zeros_not_nan() {
    let spec = funnel_spec(FunnelOrder::Ordered);
    let report = funnel(&spec, &[], 0, MIN);
    assert!(report.steps.iter().all(|s| s.visitors == 0 && s.conversion_rate == 0.0 && s.median_ms_from_previous.is_none()));
}

#[test]
fn matchers_parse_and_refuse_with_reasons() {
    assert_eq!(EventMatch::parse("any"), Ok(EventMatch::Any));
    assert_eq!(EventMatch::parse("page:/blog/*"), Ok(EventMatch::Page("/blog/*".into())));
    assert_eq!(EventMatch::parse("event:plan:team"), Ok(EventMatch::Event("plan:team".into())));
    for bad in ["", "page", "page:", "page:blog", "event:", "click:/x", "page:/a\nb", &format!("event:{}", "x".repeat(257))] {
        assert!(EventMatch::parse(bad).is_err(), "{bad:?}");
    }
    let too_few = FunnelSpec { steps: vec![EventMatch::Page("/".into())], window_ms: MIN, order: FunnelOrder::Ordered };
    assert!(too_few.validate().is_err());
    let any_step = FunnelSpec { steps: vec![EventMatch::Any, EventMatch::Page("/".into())], window_ms: MIN, order: FunnelOrder::Ordered };
    assert!(any_step.validate().is_err());
    let short = FunnelSpec { steps: vec![EventMatch::Page("/".into()); 2], window_ms: 59_999, order: FunnelOrder::Ordered };
    assert!(short.validate().is_err());
}

#[test]
fn globs_match_like_their_regular_expressions_say() {
    for (glob, text, expected) in [
        ("/", "/", true),
        ("/", "/x", false),
        ("/pricing*", "/pricing", true),
        ("/pricing*", "/pricing/team", true),
        ("/pricing*", "/about/pricing", false),
        ("*/docs/*", "/en/docs/api", true),
        ("/a*b*c", "/abc", true),
        ("/a*b*c", "/ab", false),
        ("/a*a", "/a", false),
        ("/v1.0/(x)", "/v1.0/(x)", true),
        ("/v1.0/(x)", "/v1x0/(x)", false),
        ("*", "", true),
    ] {
        assert_eq!(glob_matches(glob, text), expected, "{glob} ~ {text}");
        let by_form = match glob_form(glob) {
            GlobForm::All => true,
            GlobForm::Exact(path) => text == path,
            GlobForm::Prefix(prefix) => text.starts_with(prefix),
            GlobForm::Pattern => glob_matches(glob, text),
        };
        assert_eq!(by_form, expected, "{glob} ~ {text} by its form {:?}", glob_form(glob));
    }
    assert_eq!(glob_form("*"), GlobForm::All);
    assert_eq!(glob_form("/pricing*"), GlobForm::Prefix("/pricing"));
    assert_eq!(glob_form("*/docs"), GlobForm::Pattern);
    assert_eq!(glob_form("/a*b*"), GlobForm::Pattern);
    assert_eq!(glob_regex("/v1.0/(x)*"), r"^/v1\.0/\(x\).*$");
    assert_eq!(glob_regex("/a+b?[c]{2}|^$\\"), r"^/a\+b\?\[c\]\{2\}\|\^\$\\$");
}

#[test]
fn weekly_retention_by_first_visit() {
    assert_eq!(Period::Week.start_of(MONDAY + 6 * 24 * 3_600_000 + 5), MONDAY, "weeks start on Monday");
    assert_eq!(Period::Week.start_of(MONDAY - 1), MONDAY - WEEK);
    let (events, first_seen) = retention_events("s1");
    let spec = weekly_by_first_visit();
    let report = retention(&spec, &rows(&events, &spec.matchers(), false), &first_seen);
    assert_eq!(grid(&report), by_first_visit_grid());
    assert_eq!(report.cohorts[1].start_ms, MONDAY + WEEK);
    assert_eq!(report.cohorts[0].rates, vec![1.0, 0.5, 1.0]);
}

#[test]
fn retention_from_an_event_returning_on_a_page() {
    let (events, first_seen) = retention_events("s1");
    let spec = signup_returning_to_the_app();
    let report = retention(&spec, &rows(&events, &spec.matchers(), false), &first_seen);
    assert_eq!(grid(&report), signup_grid());
    assert_eq!(report.cohorts[2].rates, vec![0.0], "an empty cohort has rates of 0, not NaN");
    let bad = RetentionSpec { start_ms: MONDAY + 1, ..spec.clone() };
    assert!(bad.validate().is_err(), "a cohort starts at the start of its period");
    assert!(RetentionSpec { cohorts: 27, ..spec }.validate().is_err());
}

#[test]
fn goals_on_the_fixture_without_a_store() {
    use crate::conformance::{fixture_goals, goal_events, GOALS_WINDOW, GOAL_FIGURES};
    let goals = fixture_goals();
    let (from, to) = GOALS_WINDOW;
    // What a backend returns: human rows of the window (the fixture's bot is `crawler`).
    let events: Vec<StoredEvent> = goal_events().into_iter().filter(|e| e.visitor_id != "crawler" && (from..to).contains(&e.ts_ms)).collect();
    let counts = crate::goals::counts_of_rows(&rows(&events, &crate::goals::matchers(&goals), false), goals.len(), None);
    let figures = crate::goals::figures(&goals, &counts, 9);
    assert_eq!(figures.iter().map(|g| (g.conversions, g.events)).collect::<Vec<_>>(), GOAL_FIGURES.to_vec());
    assert_eq!(figures[0].conversion_rate, 2.0 / 9.0);
    assert_eq!(crate::goals::figures(&goals, &crate::goals::GoalCounts::default(), 0)[0].conversion_rate, 0.0, "no visitors is a rate of 0, not NaN");
}

#[test]
fn property_matchers_refuse_what_a_backend_cannot_compare() {
    use crm_schemas::{PropertyCondition, Scalar};
    let with = |key: &str, value: Scalar| EventMatch::EventWhere { name: "signup".into(), condition: PropertyCondition { key: key.into(), value } };
    assert!(check_matchers(&[with("plan", Scalar::Str("team".into())), with("n", Scalar::Float(2.5))]).is_ok());
    for bad in [with("", Scalar::Int(1)), with("n", Scalar::Float(f64::INFINITY)), with("k", Scalar::Str("x".repeat(MAX_MATCH_BYTES + 1))), with("a\u{7}", Scalar::Bool(true))] {
        assert!(check_matchers(&[bad.clone()]).is_err(), "{bad:?}");
    }
    assert_eq!(with("plan", Scalar::Str("team".into())).label(), r#"event:signup where plan = "team""#);
}
