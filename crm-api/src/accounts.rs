//! Accounts: companies, grouping a site's leads by their business email domain and its still
//! anonymous visitors by IP organisation (when an ASN database is configured). Free-mail domains
//! never form accounts (leads carry no company domain for them) and organisations that are
//! ISPs, carriers or hosting providers are left out: their visitors are not that company's staff.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use crm_schemas::{is_network_provider, Scalar};
use crm_store::{LeadQuery, LeadRecord, OrgVisitors};
use serde::Serialize;
use serde_json::json;

use crate::auth::AuthUser;
use crate::params::{self, rfc3339};
use crate::{reply, ApiError, ApiState};

#[derive(Clone, Debug, Serialize)]
pub struct Account {
    /// The company domain, or `org:<name>` for an organisation known only from IP addresses.
    pub account_id: String,
    pub name: String,
    pub domain: Option<String>,
    pub leads: u64,
    pub top_score: u8,
    pub visits: u64,
    pub pageviews: u64,
    pub signals: BTreeMap<String, u32>,
    pub anonymous_visitors: u64,
    pub last_activity: String,
    #[serde(skip)]
    last_activity_ms: i64,
    #[serde(skip)]
    lead_ids: Vec<String>,
    #[serde(skip)]
    sample_visitors: Vec<String>,
}

/// Builds the accounts from leads and organisations, best first (top score, then recency).
pub fn build_accounts(leads: &[LeadRecord], orgs: &[OrgVisitors]) -> Vec<Account> {
    let mut accounts: BTreeMap<String, Account> = BTreeMap::new();
    let mut names: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for record in leads {
        let lead = &record.lead;
        // A business email names the company; failing that, where the lead browses from.
        let Some(domain) = lead.company_domain.clone().or_else(|| lead.ip_org.as_ref().map(|o| format!("org:{o}"))) else { continue };
        let account = accounts.entry(domain.clone()).or_insert_with(|| Account {
            account_id: domain.clone(),
            name: domain.strip_prefix("org:").unwrap_or(&domain).to_owned(),
            domain: (!domain.starts_with("org:")).then(|| domain.clone()),
            leads: 0,
            top_score: 0,
            visits: 0,
            pageviews: 0,
            signals: BTreeMap::new(),
            anonymous_visitors: 0,
            last_activity: String::new(),
            last_activity_ms: i64::MIN,
            lead_ids: Vec::new(),
            sample_visitors: Vec::new(),
        });
        account.leads += 1;
        account.top_score = account.top_score.max(lead.score);
        account.visits += u64::from(lead.activity.visits);
        account.pageviews += lead.activity.pageviews;
        for (signal, count) in &lead.activity.signals {
            *account.signals.entry(signal.clone()).or_default() += count;
        }
        account.last_activity_ms = account.last_activity_ms.max(lead.last_activity_ms);
        account.lead_ids.push(lead.lead_id.clone());
        if let Some(Scalar::Str(company)) = lead.traits.get("company") {
            *names.entry(domain).or_default().entry(company.trim().to_owned()).or_default() += 1;
        }
    }
    for (domain, counts) in names {
        if let (Some(account), Some((name, _))) = (accounts.get_mut(&domain), counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))) {
            account.name = name;
        }
    }
    for org in orgs.iter().filter(|o| !is_network_provider(&o.org)) {
        // An organisation named like a known account's company is that account.
        let existing = accounts.values_mut().find(|a| a.name.eq_ignore_ascii_case(&org.org));
        let account = match existing {
            Some(account) => account,
            None => accounts.entry(format!("org:{}", org.org)).or_insert_with(|| Account {
                account_id: format!("org:{}", org.org),
                name: org.org.clone(),
                domain: None,
                leads: 0,
                top_score: 0,
                visits: 0,
                pageviews: 0,
                signals: BTreeMap::new(),
                anonymous_visitors: 0,
                last_activity: String::new(),
                last_activity_ms: i64::MIN,
                lead_ids: Vec::new(),
                sample_visitors: Vec::new(),
            }),
        };
        account.anonymous_visitors += org.visitors;
        account.last_activity_ms = account.last_activity_ms.max(org.last_seen_ms);
        account.sample_visitors.extend(org.sample_visitor_ids.iter().cloned());
    }
    let mut all: Vec<Account> = accounts
        .into_values()
        .map(|mut a| {
            a.last_activity = rfc3339(a.last_activity_ms.max(0));
            a
        })
        .collect();
    all.sort_by(|a, b| b.top_score.cmp(&a.top_score).then(b.last_activity_ms.cmp(&a.last_activity_ms)).then_with(|| a.account_id.cmp(&b.account_id)));
    all
}

async fn load(state: &ApiState, site_id: &str) -> Result<(Vec<LeadRecord>, Vec<Account>), ApiError> {
    let mut leads = Vec::new();
    let mut query = LeadQuery { site_id: site_id.to_owned(), limit: 1000, ..LeadQuery::default() };
    loop {
        let page = state.store.list_leads(&query).await?;
        leads.extend(page.items);
        match page.next_cursor {
            Some(cursor) if leads.len() < 100_000 => query.cursor = Some(cursor),
            _ => break,
        }
    }
    let orgs = state.store.visitor_orgs(site_id, 10_000).await?;
    let accounts = build_accounts(&leads, &orgs);
    Ok((leads, accounts))
}

pub async fn list(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AccountsRead)?;
    let site_id = params::required(&query, "site_id")?;
    let limit = params::limit(&query, 50, 500)?;
    let (_, mut accounts) = load(&state, site_id).await?;
    accounts.truncate(limit);
    Ok(reply::ok(accounts))
}

pub async fn get_one(State(state): State<ApiState>, user: AuthUser, Path(account_id): Path<String>, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AccountsRead)?;
    let site_id = params::required(&query, "site_id")?;
    let (leads, accounts) = load(&state, site_id).await?;
    let account = accounts.into_iter().find(|a| a.account_id == account_id).ok_or_else(|| ApiError::NotFound(format!("account {account_id}")))?;
    let members: Vec<_> = leads.iter().filter(|r| account.lead_ids.contains(&r.lead.lead_id)).map(crate::leads::view).collect();
    let mut body = serde_json::to_value(&account).map_err(|e| ApiError::Internal(e.to_string()))?;
    body["lead_list"] = json!(members);
    body["anonymous_visitor_sample"] = json!(account.sample_visitors);
    Ok(reply::ok(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_store::conformance::sample_lead;

    fn record(email: &str, score: u8, company: Option<&str>) -> LeadRecord {
        let mut lead = sample_lead("s1", email, score, 1_000);
        if let Some(company) = company {
            lead.traits.insert("company".into(), Scalar::Str(company.into()));
        }
        LeadRecord { lead, crm: None }
    }

    fn org(name: &str, visitors: u64) -> OrgVisitors {
        OrgVisitors { org: name.into(), visitors, last_seen_ms: 2_000, max_intent: 10, sample_visitor_ids: vec!["v".into()] }
    }

    #[test]
    fn leads_group_by_domain_and_orgs_join_by_name() {
        let leads = vec![
            record("ada@acme.example", 80, Some("Acme")),
            record("bo@acme.example", 60, Some("Acme")),
            record("cy@gmail.com", 99, None),
            record("di@globex.example", 40, None),
        ];
        let orgs = vec![org("ACME", 3), org("Initech LLC", 2), org("Comcast Cable Communications", 50), org("Hetzner Online GmbH", 9)];
        let accounts = build_accounts(&leads, &orgs);
        let ids: Vec<&str> = accounts.iter().map(|a| a.account_id.as_str()).collect();
        assert_eq!(ids, vec!["acme.example", "globex.example", "org:Initech LLC"], "free mail and network providers form no account");
        let acme = &accounts[0];
        assert_eq!((acme.name.as_str(), acme.leads, acme.top_score, acme.anonymous_visitors), ("Acme", 2, 80, 3));
        assert_eq!(accounts[2].anonymous_visitors, 2);
    }

    #[test]
    fn leads_without_business_email_group_by_their_organisation() {
        let mut lead = record("cy@gmail.com", 50, None);
        lead.lead.ip_org = Some("Initech LLC".into());
        let accounts = build_accounts(&[lead], &[org("Initech LLC", 2)]);
        assert_eq!(accounts.len(), 1);
        assert_eq!((accounts[0].account_id.as_str(), accounts[0].leads, accounts[0].anonymous_visitors), ("org:Initech LLC", 1, 2));
    }

    #[test]
    fn provider_words_are_matched_case_insensitively() {
        assert!(is_network_provider("AMAZON-02"));
        assert!(is_network_provider("DigitalOcean, LLC"));
        assert!(!is_network_provider("Acme Robotics"));
    }
}
