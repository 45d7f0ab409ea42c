//! Goals: what a site counts as a conversion. A goal is a pageview whose path matches a glob,
//! or a custom event by name, optionally with one typed property condition
//! (`crm('track', 'signup', {plan: 'team'})` converts for `signup` where `plan = "team"`).
//! Goals are part of a [`Site`](crate::Site)'s settings; the reports live in `crm_store::goals`.

use serde::{Deserialize, Serialize};

use crate::{valid_key, FieldError, Scalar};

/// Most goals one site may define: each is one bit of the 32-bit mask growth reports select
/// rows with (`crm_store::growth::MatchedEvent`), so every goal is answered in one pass.
pub const MAX_GOALS: usize = 32;
/// Longest goal name, page glob or event name.
const MAX_TEXT: usize = 256;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    /// Stable key (1–64 of `[A-Za-z0-9_.-]`), distinct within the site.
    pub goal_id: String,
    /// What the dashboard shows.
    pub name: String,
    /// Which events convert.
    #[serde(rename = "match")]
    pub target: GoalMatch,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GoalMatch {
    /// A pageview whose path matches `pattern` (`*` is any run of characters, all else literal).
    Page { pattern: String },
    /// A custom event called `name`, optionally with a property of a given value.
    Event {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        property: Option<PropertyCondition>,
    },
}

/// `props[key] == value`, compared by type: strings and booleans exactly, numbers by value
/// (the integer 5 equals 5.0), and a value of another type never matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyCondition {
    pub key: String,
    pub value: Scalar,
}

impl PropertyCondition {
    /// Whether an event property holds this condition's value.
    pub fn holds_for(&self, actual: &Scalar) -> bool {
        same_value(actual, &self.value)
    }
}

/// Typed equality of two property values (see [`PropertyCondition`]).
pub fn same_value(a: &Scalar, b: &Scalar) -> bool {
    let number = |s: &Scalar| match s {
        Scalar::Int(i) => Some(*i as f64),
        Scalar::Float(f) => Some(*f),
        _ => None,
    };
    match (a, b) {
        (Scalar::Str(x), Scalar::Str(y)) => x == y,
        (Scalar::Bool(x), Scalar::Bool(y)) => x == y,
        _ => matches!((number(a), number(b)), (Some(x), Some(y)) if x == y),
    }
}

fn plain_text(text: &str, max: usize) -> bool {
    !text.trim().is_empty() && text.len() <= max && !text.chars().any(char::is_control)
}

/// Every problem of a site's goal list, each naming its field (`goals[2].match.pattern`).
pub fn check_goals(goals: &[Goal]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if goals.len() > MAX_GOALS {
        errors.push(FieldError::new("goals", "invalid_value", format!("at most {MAX_GOALS} goals")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, goal) in goals.iter().enumerate() {
        let field = |name: &str| format!("goals[{i}].{name}");
        if !valid_key(&goal.goal_id) || !seen.insert(goal.goal_id.as_str()) {
            errors.push(FieldError::new(&field("goal_id"), "invalid_id", "goal ids are distinct keys of 1–64 of [A-Za-z0-9_.-]"));
        }
        if !plain_text(&goal.name, 100) {
            errors.push(FieldError::new(&field("name"), "invalid_value", "a name is 1–100 bytes without control characters"));
        }
        match &goal.target {
            GoalMatch::Page { pattern } => {
                if !plain_text(pattern, MAX_TEXT) || !(pattern.starts_with('/') || pattern.starts_with('*')) {
                    errors.push(FieldError::new(&field("match.pattern"), "invalid_value", "a page glob starts with `/` or `*` and is 1–256 bytes"));
                }
            }
            GoalMatch::Event { name, property } => {
                if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                    errors.push(FieldError::new(&field("match.name"), "invalid_value", "an event name is 1–100 bytes without control characters"));
                }
                if let Some(condition) = property {
                    if condition.key.is_empty() || condition.key.len() > 64 || condition.key.chars().any(char::is_control) {
                        errors.push(FieldError::new(&field("match.property.key"), "invalid_value", "a property key is 1–64 bytes"));
                    }
                    let fits = match &condition.value {
                        Scalar::Str(s) => s.len() <= MAX_TEXT,
                        Scalar::Float(f) => f.is_finite(),
                        Scalar::Int(_) | Scalar::Bool(_) => true,
                    };
                    if !fits {
                        errors.push(FieldError::new(&field("match.property.value"), "invalid_value", "a string of at most 256 bytes, a finite number or a boolean"));
                    }
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn goal(json: &str) -> Goal {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn goals_read_and_write_their_json_shape() {
        let page = goal(r#"{"goal_id":"thanks","name":"Thank-you page","match":{"kind":"page","pattern":"/thanks*"}}"#);
        assert_eq!(page.target, GoalMatch::Page { pattern: "/thanks*".into() });
        let event = goal(r#"{"goal_id":"team","name":"Team signup","match":{"kind":"event","name":"signup","property":{"key":"plan","value":"team"}}}"#);
        let GoalMatch::Event { name, property: Some(condition) } = &event.target else { panic!("{event:?}") };
        assert_eq!((name.as_str(), condition.key.as_str(), &condition.value), ("signup", "plan", &Scalar::Str("team".into())));
        assert_eq!(goal(&serde_json::to_string(&event).unwrap()), event);
        for bad in [
            r#"{"goal_id":"g","name":"n","match":{"kind":"click","pattern":"/"}}"#,
            r#"{"goal_id":"g","name":"n","match":{"kind":"page","pattern":"/","extra":1}}"#,
            r#"{"goal_id":"g","name":"n","match":{"kind":"event","name":"x","property":{"key":"k","value":{"nested":1}}}}"#,
            r#"{"goal_id":"g","name":"n"}"#,
        ] {
            assert!(serde_json::from_str::<Goal>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_compare_by_type() {
        assert!(same_value(&Scalar::Int(5), &Scalar::Float(5.0)));
        assert!(same_value(&Scalar::Str("team".into()), &Scalar::Str("team".into())));
        assert!(!same_value(&Scalar::Str("5".into()), &Scalar::Int(5)), "a string is not a number");
        assert!(!same_value(&Scalar::Str("true".into()), &Scalar::Bool(true)));
        assert!(!same_value(&Scalar::Int(1), &Scalar::Bool(true)));
        assert!(same_value(&Scalar::Bool(false), &Scalar::Bool(false)));
    }

    #[test]
    fn check_names_every_bad_goal_field() {
        let ok = goal(r#"{"goal_id":"thanks","name":"Thanks","match":{"kind":"page","pattern":"/thanks"}}"#);
        assert!(check_goals(&[ok.clone()]).is_empty());
        let bad = vec![
            ok.clone(),
            Goal { goal_id: "thanks".into(), ..ok.clone() },
            Goal { goal_id: "b c".into(), name: " ".into(), target: GoalMatch::Page { pattern: "thanks".into() } },
            Goal {
                goal_id: "e".into(),
                name: "E".into(),
                target: GoalMatch::Event { name: String::new(), property: Some(PropertyCondition { key: String::new(), value: Scalar::Float(f64::NAN) }) },
            },
        ];
        let fields: Vec<String> = check_goals(&bad).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["goals[1].goal_id", "goals[2].goal_id", "goals[2].name", "goals[2].match.pattern", "goals[3].match.name", "goals[3].match.property.key", "goals[3].match.property.value"]);
        let many: Vec<Goal> = (0..=MAX_GOALS).map(|i| Goal { goal_id: format!("g{i}"), ..ok.clone() }).collect();
        assert_eq!(check_goals(&many)[0].field, "goals");
    }
}
