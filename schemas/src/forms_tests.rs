use serde_json::json;

use super::*;

fn demo_form() -> FormDefinition {
    serde_json::from_value(json!({
        "site_id": "demo", "form_id": "demo-request", "name": "Request a demo",
        "submit_label": "Send", "success_message": "Thanks!", "created_at_ms": 0, "updated_at_ms": 0,
        "fields": [
            {"name": "email", "label": "Work email", "type": "email", "required": true, "company_email": true},
            {"name": "company", "label": "Company", "type": "text", "required": true, "progressive": true, "min_length": 2},
            {"name": "role", "label": "Role", "type": "select", "options": ["Engineering", "Other"]},
            {"name": "role_other", "label": "Which?", "type": "text", "required": true, "show_if": {"field": "role", "equals": "Other"}},
            {"name": "terms", "label": "I agree", "type": "checkbox", "required": true},
            {"name": "source", "type": "hidden", "value": "contact-page"}
        ]
    }))
    .unwrap()
}

fn values(v: serde_json::Value) -> BTreeMap<String, Value> {
    serde_json::from_value(v).unwrap()
}

fn codes(result: Result<BTreeMap<String, Scalar>, Vec<FieldError>>) -> Vec<(String, &'static str)> {
    result.unwrap_err().into_iter().map(|e| (e.field, e.code)).collect()
}

#[test]
fn demo_definition_is_valid() {
    assert_eq!(demo_form().check(), vec![]);
}

#[test]
fn valid_submission_yields_traits_with_hidden_values() {
    let traits = demo_form()
        .validate_submission(&values(json!({"email": " ada@acme.example ", "company": "Acme", "role": "Engineering", "terms": true})), &BTreeSet::new())
        .unwrap();
    assert_eq!(traits["email"], Scalar::Str("ada@acme.example".into()));
    assert_eq!(traits["terms"], Scalar::Bool(true));
    assert_eq!(traits["source"], Scalar::Str("contact-page".into()));
    assert!(!traits.contains_key("role_other"), "hidden by show_if");
}

#[test]
fn every_problem_is_reported_with_its_code() {
    let result = demo_form().validate_submission(&values(json!({"email": "not-an-email", "company": "A", "role": "CEO", "extra": "x"})), &BTreeSet::new());
    assert_eq!(
        codes(result),
        vec![
            ("extra".into(), "unknown_field"),
            ("email".into(), "invalid_email"),
            ("company".into(), "too_short"),
            ("role".into(), "invalid_option"),
            ("terms".into(), "required"),
        ]
    );
}

#[test]
fn free_mail_is_refused_by_company_email_fields() {
    let result = demo_form().validate_submission(&values(json!({"email": "ada@GMAIL.com", "company": "Acme", "terms": true})), &BTreeSet::new());
    assert_eq!(codes(result), vec![("email".into(), "company_email_required")]);
}

#[test]
fn conditional_fields_are_required_only_when_shown() {
    let form = demo_form();
    let base = json!({"email": "ada@acme.example", "company": "Acme", "terms": true, "role": "Other"});
    assert_eq!(codes(form.validate_submission(&values(base), &BTreeSet::new())), vec![("role_other".into(), "required")]);
}

#[test]
fn progressive_fields_known_for_the_visitor_may_be_skipped() {
    let form = demo_form();
    let known: BTreeSet<String> = ["company".to_owned(), "email".to_owned()].into();
    assert_eq!(form.known_fields(&known), vec!["company".to_owned()], "email is not progressive");
    let traits = form.validate_submission(&values(json!({"email": "ada@acme.example", "terms": true})), &known).unwrap();
    assert!(!traits.contains_key("company"));
}

#[test]
fn hostile_and_wrong_typed_values_are_refused() {
    let form = demo_form();
    let long = "x".repeat(300);
    let result = form.validate_submission(&values(json!({"email": {"$gt": ""}, "company": long, "terms": "yes"})), &BTreeSet::new());
    assert_eq!(
        codes(result),
        vec![("email".into(), "wrong_type"), ("company".into(), "too_long"), ("terms".into(), "wrong_type")]
    );
}

#[test]
fn broken_definitions_are_refused() {
    let mut form = demo_form();
    form.form_id = "bad id!".into();
    form.fields[2].options.clear();
    form.fields[3].show_if = Some(ShowIf { field: "later".into(), equals: "x".into() });
    form.fields.push(form.fields[0].clone());
    form.fields.push(FormField { name: "website".into(), ..form.fields[1].clone() });
    let fields: Vec<String> = form.check().into_iter().map(|e| format!("{}:{}", e.field, e.code)).collect();
    assert_eq!(
        fields,
        vec![
            "form_id:invalid_id",
            "fields[2].options:invalid_value",
            "fields[3].show_if:invalid_value",
            "fields[6].name:duplicate",
            "fields[7].name:reserved",
        ]
    );
}

#[test]
fn email_rule_matches_the_event_contract() {
    for ok in ["a@b.co", "first.last+tag@sub.example.org"] {
        assert!(is_email(ok), "{ok}");
    }
    for bad in ["", "@b.co", "a@b", "a b@c.de", "plain"] {
        assert!(!is_email(bad), "{bad}");
    }
}
