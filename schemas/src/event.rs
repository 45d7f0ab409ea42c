//! The wire event (`v: 1`) as the widgets send it, its validation into a typed [`Event`], and the
//! [`CollectedEvent`] envelope the collector appends to the event log.
//!
//! Validation is deterministic and total: every input either becomes an `Event` or a
//! [`ValidationError`] with a stable machine code, the offending field and a human message.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Scalar;

/// The only wire version this build understands.
pub const SCHEMA_VERSION: u32 = 1;

/// Size limits applied during validation. The defaults are the documented contract.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_id_len: usize,
    pub max_url_len: usize,
    pub max_title_len: usize,
    pub max_props: usize,
    pub max_key_len: usize,
    pub max_string_value_len: usize,
    pub max_name_len: usize,
    pub max_engaged_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_id_len: 64,
            max_url_len: 2048,
            max_title_len: 300,
            max_props: 50,
            max_key_len: 64,
            max_string_value_len: 256,
            max_name_len: 100,
            max_engaged_ms: 86_400_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Pageview,
    Engagement,
    Click,
    Identify,
    FormSubmit,
    FormView,
    FormStart,
    Custom,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Pageview => "pageview",
            EventKind::Engagement => "engagement",
            EventKind::Click => "click",
            EventKind::Identify => "identify",
            EventKind::FormSubmit => "form_submit",
            EventKind::FormView => "form_view",
            EventKind::FormStart => "form_start",
            EventKind::Custom => "custom",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewport {
    pub w: u32,
    pub h: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClickTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default)]
    pub outbound: bool,
}

/// The event exactly as it travels on the wire (and in the event log). Everything but `v`, `type`
/// and `site_id` is optional here; [`WireEvent::validate`] enforces the per-type requirements.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: Option<EventKind>,
    pub site_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewport: Option<Viewport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub props: Option<BTreeMap<String, Scalar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scroll_depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engaged_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ClickTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traits: Option<BTreeMap<String, Scalar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Per-type payload of a validated event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    Pageview,
    Engagement { scroll_depth: u8, engaged_ms: u64 },
    Click { target: ClickTarget },
    Identify { traits: BTreeMap<String, Scalar> },
    FormSubmit { form_id: String, traits: BTreeMap<String, Scalar> },
    /// A lead form was rendered (forms-embed.js).
    FormView { form_id: String },
    /// First interaction with a rendered lead form.
    FormStart { form_id: String },
    Custom { name: String },
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::Pageview => EventKind::Pageview,
            EventBody::Engagement { .. } => EventKind::Engagement,
            EventBody::Click { .. } => EventKind::Click,
            EventBody::Identify { .. } => EventKind::Identify,
            EventBody::FormSubmit { .. } => EventKind::FormSubmit,
            EventBody::FormView { .. } => EventKind::FormView,
            EventBody::FormStart { .. } => EventKind::FormStart,
            EventBody::Custom { .. } => EventKind::Custom,
        }
    }
}

/// A validated event: ids are parsed, limits enforced, the type-specific fields present.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub site_id: String,
    pub event_id: Uuid,
    pub visitor_id: Option<String>,
    pub session_id: Option<String>,
    pub ts_ms: Option<i64>,
    pub url: Option<String>,
    pub referrer: Option<String>,
    pub title: Option<String>,
    pub viewport: Option<Viewport>,
    pub lang: Option<String>,
    pub props: BTreeMap<String, Scalar>,
    pub body: EventBody,
}

/// Why an event was refused. `code` is stable and documented; `field` names the culprit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct ValidationError {
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl ValidationError {
    pub fn new(code: &'static str, field: Option<&str>, message: impl Into<String>) -> Self {
        ValidationError { code, field: field.map(str::to_owned), message: message.into() }
    }
}

/// Maps a serde_json error on a single event object to a stable code.
pub fn classify_serde_error(err: &serde_json::Error) -> ValidationError {
    let text = err.to_string();
    let field = text.split('`').nth(1).map(str::to_owned);
    let code = if text.starts_with("missing field") {
        "missing_field"
    } else if text.starts_with("unknown variant") {
        "invalid_value"
    } else if text.starts_with("recursion limit exceeded") {
        "too_deeply_nested"
    } else if err.is_syntax() || err.is_eof() {
        "malformed_json"
    } else {
        "wrong_type"
    };
    let field = if code == "missing_field" { field } else { None };
    ValidationError { code, field, message: text }
}

/// Deepest nesting of arrays and objects an event may have (events are flat: a few levels of
/// `target`/`traits`/`props` are all a tracker sends).
pub const MAX_NESTING: usize = 32;

/// Whether `json` nests arrays/objects deeper than `max` (brackets inside strings don't count).
/// One pass over the bytes; used to name the problem of an oversized or unparsable event.
pub fn nests_deeper_than(json: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in json.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses and validates one event from its JSON text.
pub fn parse_event(json: &str, limits: &Limits) -> Result<Event, ValidationError> {
    let wire: WireEvent = serde_json::from_str(json).map_err(|e| classify_serde_error(&e))?;
    wire.validate(limits)
}

fn check_id(value: &Option<String>, field: &str, limits: &Limits) -> Result<(), ValidationError> {
    if let Some(id) = value {
        if id.is_empty() || id.len() > limits.max_id_len {
            return Err(ValidationError::new(
                "invalid_id",
                Some(field),
                format!("{field} must be 1..={} bytes", limits.max_id_len),
            ));
        }
        if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ValidationError::new(
                "invalid_id",
                Some(field),
                format!("{field} must not contain whitespace or control characters"),
            ));
        }
    }
    Ok(())
}

fn check_url(value: &Option<String>, field: &str, limits: &Limits) -> Result<(), ValidationError> {
    if let Some(url) = value {
        if url.len() > limits.max_url_len {
            return Err(ValidationError::new(
                "field_too_long",
                Some(field),
                format!("{field} exceeds {} bytes", limits.max_url_len),
            ));
        }
        // A browser's URL has control characters percent-encoded; a raw NUL, CR or LF is a
        // forged beacon (and a hazard for every system the URL is shown or exported to).
        if url.chars().any(char::is_control) {
            return Err(ValidationError::new("invalid_url", Some(field), format!("{field} must not contain control characters")));
        }
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if !url.is_empty() && !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(ValidationError::new(
                "invalid_url",
                Some(field),
                format!("{field} must be an http(s) URL"),
            ));
        }
    }
    Ok(())
}

fn truncate_owned(value: Option<String>, max: usize) -> Option<String> {
    value.map(|mut s| {
        if s.len() > max {
            let mut cut = max;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        s
    })
}

fn check_map(
    map: &BTreeMap<String, Scalar>,
    field: &str,
    limits: &Limits,
) -> Result<(), ValidationError> {
    if map.len() > limits.max_props {
        return Err(ValidationError::new(
            "too_many_properties",
            Some(field),
            format!("{field} has {} keys, the limit is {}", map.len(), limits.max_props),
        ));
    }
    for (key, value) in map {
        if key.is_empty() || key.len() > limits.max_key_len {
            return Err(ValidationError::new(
                "invalid_property",
                Some(field),
                format!("{field} keys must be 1..={} bytes", limits.max_key_len),
            ));
        }
        if let Scalar::Str(s) = value {
            if s.len() > limits.max_string_value_len {
                return Err(ValidationError::new(
                    "invalid_property",
                    Some(field),
                    format!(
                        "{field}.{key} exceeds {} bytes",
                        limits.max_string_value_len
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn required<T>(value: Option<T>, field: &str, kind: EventKind) -> Result<T, ValidationError> {
    value.ok_or_else(|| {
        ValidationError::new(
            "missing_field",
            Some(field),
            format!("{field} is required for {} events", kind.as_str()),
        )
    })
}

fn check_email(traits: &BTreeMap<String, Scalar>) -> Result<(), ValidationError> {
    if let Some(email) = traits.get("email") {
        let ok = email.as_str().is_some_and(crate::is_email);
        if !ok {
            return Err(ValidationError::new(
                "invalid_email",
                Some("traits.email"),
                "traits.email is not a valid email address",
            ));
        }
    }
    Ok(())
}

impl WireEvent {
    /// Checks every rule of the v1 contract and produces the typed event. Over-long free text
    /// (title, referrer, click text) is truncated rather than refused; identifiers, URLs and
    /// property maps over their limits are refused.
    pub fn validate(self, limits: &Limits) -> Result<Event, ValidationError> {
        if self.v != SCHEMA_VERSION {
            return Err(ValidationError::new(
                "unsupported_version",
                Some("v"),
                format!("event version {} is not supported (expected {SCHEMA_VERSION})", self.v),
            ));
        }
        let kind = self.kind.ok_or_else(|| {
            ValidationError::new("missing_field", Some("type"), "type is required")
        })?;
        if self.site_id.is_empty()
            || self.site_id.len() > limits.max_id_len
            || !self.site_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ValidationError::new(
                "invalid_site_id",
                Some("site_id"),
                "site_id must be 1..=64 characters of [A-Za-z0-9._-]",
            ));
        }
        let event_id = match &self.event_id {
            Some(raw) => Uuid::parse_str(raw).map_err(|_| {
                ValidationError::new("invalid_id", Some("event_id"), "event_id must be a UUID")
            })?,
            None => Uuid::now_v7(),
        };
        check_id(&self.visitor_id, "visitor_id", limits)?;
        check_id(&self.session_id, "session_id", limits)?;
        check_url(&self.url, "url", limits)?;
        // Referrers may use other schemes (android-app://…) but never raw control characters.
        if self.referrer.as_deref().is_some_and(|r| r.chars().any(char::is_control)) {
            return Err(ValidationError::new("invalid_url", Some("referrer"), "referrer must not contain control characters"));
        }
        if let Some(ts) = self.ts {
            if ts <= 0 {
                return Err(ValidationError::new("invalid_value", Some("ts"), "ts must be positive epoch milliseconds"));
            }
        }
        let props = self.props.unwrap_or_default();
        check_map(&props, "props", limits)?;
        let body = match kind {
            EventKind::Pageview => {
                let url = self.url.as_deref().unwrap_or("");
                if url.is_empty() {
                    return Err(ValidationError::new(
                        "missing_field",
                        Some("url"),
                        "url is required for pageview events",
                    ));
                }
                EventBody::Pageview
            }
            EventKind::Engagement => {
                let scroll = required(self.scroll_depth, "scroll_depth", kind)?;
                let engaged_ms = required(self.engaged_ms, "engaged_ms", kind)?;
                if scroll > 100 {
                    return Err(ValidationError::new("invalid_value", Some("scroll_depth"), "scroll_depth must be 0..=100"));
                }
                if engaged_ms > limits.max_engaged_ms {
                    return Err(ValidationError::new("invalid_value", Some("engaged_ms"), "engaged_ms exceeds 24 hours"));
                }
                EventBody::Engagement { scroll_depth: scroll as u8, engaged_ms }
            }
            EventKind::Click => {
                let mut target = required(self.target, "target", kind)?;
                target.text = truncate_owned(target.text, 200);
                target.selector = truncate_owned(target.selector, 300);
                if target.href.as_ref().is_some_and(|h| h.len() > limits.max_url_len) {
                    return Err(ValidationError::new("field_too_long", Some("target.href"), "target.href is too long"));
                }
                EventBody::Click { target }
            }
            EventKind::Identify | EventKind::FormSubmit => {
                let traits = required(self.traits, "traits", kind)?;
                if traits.is_empty() {
                    return Err(ValidationError::new("missing_field", Some("traits"), "traits must not be empty"));
                }
                check_map(&traits, "traits", limits)?;
                check_email(&traits)?;
                if kind == EventKind::FormSubmit {
                    let form_id = required(self.form_id, "form_id", kind)?;
                    check_id(&Some(form_id.clone()), "form_id", limits)?;
                    EventBody::FormSubmit { form_id, traits }
                } else {
                    EventBody::Identify { traits }
                }
            }
            EventKind::FormView | EventKind::FormStart => {
                let form_id = required(self.form_id, "form_id", kind)?;
                check_id(&Some(form_id.clone()), "form_id", limits)?;
                if kind == EventKind::FormView {
                    EventBody::FormView { form_id }
                } else {
                    EventBody::FormStart { form_id }
                }
            }
            EventKind::Custom => {
                let name = required(self.name, "name", kind)?;
                if name.is_empty() || name.len() > limits.max_name_len {
                    return Err(ValidationError::new("invalid_value", Some("name"), "name must be 1..=100 bytes"));
                }
                EventBody::Custom { name }
            }
        };
        Ok(Event {
            site_id: self.site_id,
            event_id,
            visitor_id: self.visitor_id,
            session_id: self.session_id,
            ts_ms: self.ts,
            url: self.url.filter(|u| !u.is_empty()),
            referrer: truncate_owned(self.referrer.filter(|r| !r.is_empty()), limits.max_url_len),
            title: truncate_owned(self.title, limits.max_title_len),
            viewport: self.viewport,
            lang: truncate_owned(self.lang, 35),
            props,
            body,
        })
    }
}

impl From<&Event> for WireEvent {
    fn from(event: &Event) -> WireEvent {
        let mut wire = WireEvent {
            v: SCHEMA_VERSION,
            kind: Some(event.body.kind()),
            site_id: event.site_id.clone(),
            event_id: Some(event.event_id.to_string()),
            visitor_id: event.visitor_id.clone(),
            session_id: event.session_id.clone(),
            ts: event.ts_ms,
            url: event.url.clone(),
            referrer: event.referrer.clone(),
            title: event.title.clone(),
            viewport: event.viewport,
            lang: event.lang.clone(),
            props: (!event.props.is_empty()).then(|| event.props.clone()),
            ..WireEvent::default()
        };
        match &event.body {
            EventBody::Pageview => {}
            EventBody::Engagement { scroll_depth, engaged_ms } => {
                wire.scroll_depth = Some(u32::from(*scroll_depth));
                wire.engaged_ms = Some(*engaged_ms);
            }
            EventBody::Click { target } => wire.target = Some(target.clone()),
            EventBody::Identify { traits } => wire.traits = Some(traits.clone()),
            EventBody::FormSubmit { form_id, traits } => {
                wire.form_id = Some(form_id.clone());
                wire.traits = Some(traits.clone());
            }
            EventBody::FormView { form_id } | EventBody::FormStart { form_id } => wire.form_id = Some(form_id.clone()),
            EventBody::Custom { name } => wire.name = Some(name.clone()),
        }
        wire
    }
}

/// What the collector appends to the event log for every accepted event: the normalised wire
/// event plus what only the server knows. The client IP travels in full so the processor can
/// geolocate it; the processor stores it truncated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectedEvent {
    pub event: WireEvent,
    pub received_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Event, ValidationError> {
        parse_event(json, &Limits::default())
    }

    #[test]
    fn pageview_round_trips_through_the_wire_shape() {
        let event = parse(r#"{"v":1,"type":"pageview","site_id":"s1","visitor_id":"v1","url":"https://a.example/pricing","ts":1700000000000,"props":{"utm_source":"li","n":3}}"#).unwrap();
        assert_eq!(event.body, EventBody::Pageview);
        let wire = WireEvent::from(&event);
        let again = wire.validate(&Limits::default()).unwrap();
        assert_eq!(again, event);
    }

    #[test]
    fn server_assigns_event_id_when_absent() {
        let a = parse(r#"{"v":1,"type":"custom","site_id":"s","name":"x"}"#).unwrap();
        let b = parse(r#"{"v":1,"type":"custom","site_id":"s","name":"x"}"#).unwrap();
        assert_ne!(a.event_id, b.event_id);
    }

    #[test]
    fn each_rule_has_a_stable_code() {
        let cases = [
            (r#"{"v":2,"type":"pageview","site_id":"s","url":"https://x"}"#, "unsupported_version"),
            (r#"{"v":1,"site_id":"s","url":"https://x"}"#, "missing_field"),
            (r#"{"v":1,"type":"pageview","url":"https://x"}"#, "missing_field"),
            (r#"{"v":1,"type":"pageview","site_id":"s"}"#, "missing_field"),
            (r#"{"v":1,"type":"bogus","site_id":"s"}"#, "invalid_value"),
            (r#"{"v":"1","type":"pageview","site_id":"s","url":"https://x"}"#, "wrong_type"),
            (r#"{"v":1,"type":"pageview","site_id":"s","url":"https://x","ts":"now"}"#, "wrong_type"),
            (r#"{"v":1,"type":"pageview","site_id":"s p","url":"https://x"}"#, "invalid_site_id"),
            (r#"{"v":1,"type":"pageview","site_id":"s","url":"javascript:alert(1)"}"#, "invalid_url"),
            (r#"{"v":1,"type":"pageview","site_id":"s","url":"https://x/a\u0000b"}"#, "invalid_url"),
            (r#"{"v":1,"type":"pageview","site_id":"s","url":"https://x/","referrer":"https://r/\r\nSet-Cookie: a"}"#, "invalid_url"),
            (r#"{"v":1,"type":"pageview","site_id":"s","url":"https://x","event_id":"nope"}"#, "invalid_id"),
            (r#"{"v":1,"type":"engagement","site_id":"s","scroll_depth":101,"engaged_ms":5}"#, "invalid_value"),
            (r#"{"v":1,"type":"engagement","site_id":"s","scroll_depth":50}"#, "missing_field"),
            (r#"{"v":1,"type":"click","site_id":"s"}"#, "missing_field"),
            (r#"{"v":1,"type":"identify","site_id":"s","traits":{"email":"not-an-email"}}"#, "invalid_email"),
            (r#"{"v":1,"type":"identify","site_id":"s","traits":{"deep":{"x":1}}}"#, "wrong_type"),
            (r#"{"v":1,"type":"form_submit","site_id":"s","traits":{"email":"a@b.co"}}"#, "missing_field"),
            (r#"{"v":1,"type":"custom","site_id":"s","name":""}"#, "invalid_value"),
            (r#"{"v":1,"type":"pageview","site_id":"s","url":"https://x","visitor_id":"a b"}"#, "invalid_id"),
            (r#"{"v":1,"type":"pageview""#, "malformed_json"),
        ];
        for (json, code) in cases {
            let err = parse(json).expect_err(json);
            assert_eq!(err.code, code, "{json}: {err:?}");
        }
    }

    #[test]
    fn oversized_fields_are_refused_or_truncated() {
        let long = "x".repeat(5000);
        let url = format!(r#"{{"v":1,"type":"pageview","site_id":"s","url":"https://{long}"}}"#);
        assert_eq!(parse(&url).unwrap_err().code, "field_too_long");
        let title = format!(r#"{{"v":1,"type":"pageview","site_id":"s","url":"https://x","title":"{long}"}}"#);
        assert_eq!(parse(&title).unwrap().title.unwrap().len(), 300);
        let props: Vec<String> = (0..51).map(|i| format!(r#""k{i}":1"#)).collect();
        let many = format!(r#"{{"v":1,"type":"pageview","site_id":"s","url":"https://x","props":{{{}}}}}"#, props.join(","));
        assert_eq!(parse(&many).unwrap_err().code, "too_many_properties");
        let big_value = format!(r#"{{"v":1,"type":"pageview","site_id":"s","url":"https://x","props":{{"k":"{long}"}}}}"#);
        assert_eq!(parse(&big_value).unwrap_err().code, "invalid_property");
    }

    #[test]
    fn nesting_depth_is_measured_outside_strings() {
        assert!(!nests_deeper_than(r#"{"a":{"b":[1,2,{"c":3}]}}"#, 4));
        assert!(nests_deeper_than(r#"{"a":{"b":[1,2,{"c":3}]}}"#, 3));
        assert!(!nests_deeper_than(r#"{"a":"[[[[[[\"[[[[","b":1}"#, 1), "brackets in strings and escaped quotes");
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(nests_deeper_than(&deep, MAX_NESTING));
    }

    #[test]
    fn truncation_respects_utf8_boundaries() {
        let title = "é".repeat(400);
        let json = format!(r#"{{"v":1,"type":"pageview","site_id":"s","url":"https://x","title":"{title}"}}"#);
        let event = parse(&json).unwrap();
        assert!(event.title.unwrap().len() <= 300);
    }
}
