//! Lead forms: the stored [`FormDefinition`] (what `/api/v1/forms` accepts), the checks that keep
//! a definition renderable, and the server-side validation of a submission, which mirrors the
//! rules `widgets/forms-embed.js` applies in the browser (same rules, same error codes).
//!
//! Field error codes (stable): `required`, `invalid_email`, `company_email_required`,
//! `too_short`, `too_long`, `invalid_option`, `wrong_type`, `unknown_field`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Scalar;

/// Longest accepted string value of any field (the trait value limit of the event contract).
pub const MAX_VALUE_LEN: usize = 256;
/// At most this many fields per form (traits are limited to 50 keys).
pub const MAX_FIELDS: usize = 40;

/// Free-mail providers refused by "company email only" fields. The public form definition
/// carries this list, so the browser applies exactly the server's rule.
pub const FREE_EMAIL_DOMAINS: &[&str] = &[
    "aol.com", "gmail.com", "googlemail.com", "gmx.com", "gmx.de", "gmx.net", "hey.com", "hotmail.co.uk",
    "hotmail.com", "hotmail.fr", "icloud.com", "live.com", "mac.com", "mail.com", "mail.ru", "me.com",
    "msn.com", "outlook.com", "proton.me", "protonmail.com", "qq.com", "web.de", "yahoo.co.uk", "yahoo.com",
    "yahoo.fr", "yandex.com", "yandex.ru", "zoho.com",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Email,
    Select,
    Radio,
    Checkbox,
    Textarea,
    Hidden,
}

/// Show a field only while another field's current value equals `equals` (checkboxes compare as
/// `"true"` / `"false"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowIf {
    pub field: String,
    pub equals: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    /// The trait key the value is stored under (`email`, `company`, …).
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// Choices of `select` / `radio` fields.
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub min_length: Option<u32>,
    #[serde(default)]
    pub max_length: Option<u32>,
    /// Refuse addresses at free-mail providers ([`FREE_EMAIL_DOMAINS`]).
    #[serde(default)]
    pub company_email: bool,
    #[serde(default)]
    pub show_if: Option<ShowIf>,
    /// Progressive profiling: skip the field when the visitor's profile already has the trait.
    #[serde(default)]
    pub progressive: bool,
    /// The fixed value of a `hidden` field (e.g. the campaign a landing page belongs to).
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FormDefinition {
    pub site_id: String,
    pub form_id: String,
    pub name: String,
    pub fields: Vec<FormField>,
    pub submit_label: String,
    pub success_message: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One problem with one field, of a definition or of a submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: &str, code: &'static str, message: impl Into<String>) -> FieldError {
        FieldError { field: field.to_owned(), code, message: message.into() }
    }
}

/// Ids of sites, forms and field names: 1–64 of `[A-Za-z0-9_.-]`.
pub fn valid_key(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The rule the event contract applies to `traits.email`: `local@domain.tld`, no whitespace.
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && value.len() <= 254 && !value.contains(char::is_whitespace)
}

pub fn is_free_email(value: &str) -> bool {
    let domain = value.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
    FREE_EMAIL_DOMAINS.contains(&domain.as_str())
}

impl FormDefinition {
    /// Everything wrong with the definition; empty when it can be stored and rendered.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !valid_key(&self.site_id) {
            errors.push(FieldError::new("site_id", "invalid_id", "site_id must be 1–64 of [A-Za-z0-9_.-]"));
        }
        if !valid_key(&self.form_id) {
            errors.push(FieldError::new("form_id", "invalid_id", "form_id must be 1–64 of [A-Za-z0-9_.-]"));
        }
        for (field, text, max) in [("name", &self.name, 200), ("submit_label", &self.submit_label, 100), ("success_message", &self.success_message, 1000)] {
            if text.trim().is_empty() || text.chars().count() > max {
                errors.push(FieldError::new(field, "invalid_value", format!("{field} must be 1–{max} characters")));
            }
        }
        if self.fields.is_empty() || self.fields.len() > MAX_FIELDS {
            errors.push(FieldError::new("fields", "invalid_value", format!("a form has 1–{MAX_FIELDS} fields")));
        }
        let mut seen = BTreeSet::new();
        for (index, field) in self.fields.iter().enumerate() {
            let at = format!("fields[{index}]");
            if !valid_key(&field.name) {
                errors.push(FieldError::new(&format!("{at}.name"), "invalid_id", "field names are 1–64 of [A-Za-z0-9_.-]"));
            } else if !seen.insert(field.name.as_str()) {
                errors.push(FieldError::new(&format!("{at}.name"), "duplicate", format!("field `{}` appears twice", field.name)));
            }
            if field.name == "website" {
                errors.push(FieldError::new(&format!("{at}.name"), "reserved", "`website` is the honeypot's name"));
            }
            if field.label.chars().count() > 200 || (field.label.trim().is_empty() && field.kind != FieldKind::Hidden) {
                errors.push(FieldError::new(&format!("{at}.label"), "invalid_value", "visible fields need a label of 1–200 characters"));
            }
            let choices = matches!(field.kind, FieldKind::Select | FieldKind::Radio);
            if choices != !field.options.is_empty() {
                errors.push(FieldError::new(&format!("{at}.options"), "invalid_value", "select and radio fields (only) have options"));
            }
            if field.options.iter().any(|o| o.is_empty() || o.chars().count() > MAX_VALUE_LEN) || field.options.len() > 100 {
                errors.push(FieldError::new(&format!("{at}.options"), "invalid_value", "at most 100 options of 1–256 characters"));
            }
            if let (Some(min), Some(max)) = (field.min_length, field.max_length) {
                if min > max {
                    errors.push(FieldError::new(&format!("{at}.min_length"), "invalid_value", "min_length exceeds max_length"));
                }
            }
            if field.max_length.is_some_and(|m| m as usize > MAX_VALUE_LEN) {
                errors.push(FieldError::new(&format!("{at}.max_length"), "invalid_value", format!("max_length is at most {MAX_VALUE_LEN}")));
            }
            if field.company_email && field.kind != FieldKind::Email {
                errors.push(FieldError::new(&format!("{at}.company_email"), "invalid_value", "company_email applies to email fields"));
            }
            if field.kind == FieldKind::Hidden && (field.value.is_none() || field.required) {
                errors.push(FieldError::new(&format!("{at}.value"), "invalid_value", "hidden fields carry a value and are not required"));
            }
            if let Some(condition) = &field.show_if {
                // Only earlier fields may control visibility: no cycles, renders top to bottom.
                if !self.fields[..index].iter().any(|f| f.name == condition.field) {
                    errors.push(FieldError::new(&format!("{at}.show_if"), "invalid_value", "show_if must name an earlier field"));
                }
            }
        }
        errors
    }

    /// Field names a visitor with these known trait keys skips (progressive profiling).
    pub fn known_fields(&self, known_traits: &BTreeSet<String>) -> Vec<String> {
        self.fields.iter().filter(|f| f.progressive && known_traits.contains(&f.name)).map(|f| f.name.clone()).collect()
    }

    /// Validates submitted `values` (from the form's inputs) for a visitor whose profile already
    /// has `known_traits`, and returns the traits to record: visible fields' values plus hidden
    /// fields' fixed values. Every problem is reported, not just the first.
    pub fn validate_submission(&self, values: &BTreeMap<String, Value>, known_traits: &BTreeSet<String>) -> Result<BTreeMap<String, Scalar>, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut traits = BTreeMap::new();
        for name in values.keys() {
            if !self.fields.iter().any(|f| &f.name == name) {
                errors.push(FieldError::new(name, "unknown_field", "this form has no such field"));
            }
        }
        let text_of = |value: Option<&Value>| -> String {
            match value {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                _ => String::new(),
            }
        };
        for field in &self.fields {
            let name = field.name.as_str();
            if let Some(condition) = &field.show_if {
                if text_of(values.get(&condition.field)) != condition.equals {
                    continue; // hidden by its condition: neither validated nor recorded
                }
            }
            if field.kind == FieldKind::Hidden {
                if let Some(value) = &field.value {
                    traits.insert(field.name.clone(), Scalar::Str(value.clone()));
                }
                continue;
            }
            let skipped = field.progressive && known_traits.contains(name);
            match (field.kind, values.get(name)) {
                (FieldKind::Checkbox, None | Some(Value::Bool(false))) if field.required && !skipped => {
                    errors.push(FieldError::new(name, "required", "please tick this box"));
                }
                (FieldKind::Checkbox, None) => {}
                (FieldKind::Checkbox, Some(Value::Bool(b))) => {
                    traits.insert(field.name.clone(), Scalar::Bool(*b));
                }
                (FieldKind::Checkbox, Some(_)) => errors.push(FieldError::new(name, "wrong_type", "expected true or false")),
                (_, Some(Value::String(text))) if !text.trim().is_empty() => match check_text(field, text.trim()) {
                    Ok(()) => {
                        traits.insert(field.name.clone(), Scalar::Str(text.trim().to_owned()));
                    }
                    Err(error) => errors.push(error),
                },
                (_, None | Some(Value::Null)) | (_, Some(Value::String(_))) => {
                    if field.required && !skipped {
                        errors.push(FieldError::new(name, "required", "this field is required"));
                    }
                }
                (_, Some(_)) => errors.push(FieldError::new(name, "wrong_type", "expected text")),
            }
        }
        if errors.is_empty() {
            Ok(traits)
        } else {
            Err(errors)
        }
    }
}

fn check_text(field: &FormField, text: &str) -> Result<(), FieldError> {
    let name = field.name.as_str();
    let chars = text.chars().count();
    if let Some(min) = field.min_length {
        if chars < min as usize {
            return Err(FieldError::new(name, "too_short", format!("use at least {min} characters")));
        }
    }
    let max = field.max_length.map_or(MAX_VALUE_LEN, |m| m as usize);
    if chars > max || text.len() > MAX_VALUE_LEN {
        return Err(FieldError::new(name, "too_long", format!("use at most {max} characters")));
    }
    match field.kind {
        FieldKind::Email if !is_email(text) => Err(FieldError::new(name, "invalid_email", "enter a valid email address")),
        FieldKind::Email if field.company_email && is_free_email(text) => {
            Err(FieldError::new(name, "company_email_required", "please use your company email address"))
        }
        FieldKind::Select | FieldKind::Radio if !field.options.iter().any(|o| o == text) => {
            Err(FieldError::new(name, "invalid_option", "choose one of the options"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "forms_tests.rs"]
mod tests;
