//! The reference builders on the conformance fixture, without a store.

use super::*;
use crate::conformance::{custom_event_stats, explore_events, home_paths, pricing_paths, EXPLORE_WINDOW};

/// The fixture's rows a backend would select: human, inside the window.
fn human_rows() -> Vec<StoredEvent> {
    let (from, to) = EXPLORE_WINDOW;
    explore_events().into_iter().filter(|e| e.visitor_id != "crawler" && (from..to).contains(&e.ts_ms)).collect()
}

#[test]
fn the_builders_give_the_fixture_figures() {
    let mut builder = CustomEventsBuilder::default();
    human_rows().iter().for_each(|e| builder.add(e));
    assert_eq!(builder.finish(2), custom_event_stats());
    assert_eq!(paths_of(&human_rows(), "/pricing*", 3), pricing_paths());
    assert_eq!(paths_of(&human_rows(), "/", 10), home_paths());
}

#[test]
fn numbers_are_one_value_whatever_their_type() {
    assert_eq!(ValueKey::of(&Scalar::Int(5)), ValueKey::of(&Scalar::Float(5.0)));
    assert_eq!(ValueKey::of(&Scalar::Float(-0.0)), ValueKey::of(&Scalar::Int(0)));
    assert_ne!(ValueKey::of(&Scalar::Str("5".into())), ValueKey::of(&Scalar::Int(5)));
    assert_eq!(ValueKey::of(&Scalar::Float(5.0)).scalar(), Scalar::Int(5));
    assert_eq!(ValueKey::of(&Scalar::Float(2.5)).scalar(), Scalar::Float(2.5));
    assert_eq!(ValueKey::number(1e300).scalar(), Scalar::Float(1e300), "too large for an exact integer");
    let mut keys = vec![ValueKey::Text("a".into()), ValueKey::number(2.0), ValueKey::Bool(true), ValueKey::number(-1.0), ValueKey::Bool(false)];
    keys.sort();
    assert_eq!(keys, vec![ValueKey::Bool(false), ValueKey::Bool(true), ValueKey::number(-1.0), ValueKey::number(2.0), ValueKey::Text("a".into())]);
}

#[test]
fn aggregates_from_a_backend_finish_like_rows() {
    let mut builder = CustomEventsBuilder::default();
    builder.add_name("signup", 4, 3);
    builder.add_property("signup", "plan", 4, ["string"], 2);
    builder.add_value("signup", "plan", ValueKey::Text("team".into()), 2);
    builder.add_value("signup", "plan", ValueKey::Text("solo".into()), 2);
    let stats = builder.finish(1);
    assert_eq!((stats[0].events, stats[0].visitors, stats[0].properties[0].distinct), (4, 3, 2));
    assert_eq!(stats[0].properties[0].top, vec![ValueCount { value: Scalar::Str("solo".into()), count: 2 }]);
}

#[test]
fn a_page_alone_in_its_session_is_entered_and_left() {
    let mut builder = PathsBuilder::new("/a");
    builder.add_session(&["/a"]);
    builder.add_session(&["/a", "/a"]);
    let paths = builder.finish(10);
    assert_eq!(paths.views, 3);
    assert_eq!(paths.previous, vec![Count { key: ENTRANCE.into(), count: 2 }, Count { key: "/a".into(), count: 1 }]);
    assert_eq!(paths.next, vec![Count { key: EXIT.into(), count: 2 }, Count { key: "/a".into(), count: 1 }]);
}
