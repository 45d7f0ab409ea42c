//! `crm batch churn`: the churn model on a site's own history. DataFusion turns the events of
//! identified account users into daily counts per account (logins, feature use, API calls) over
//! the last [`HISTORY_DAYS`]; imported cancellations are the labels and contract starts the
//! tenure. Observations every [`STEP_DAYS`] whose 90-day outcome is already known train a
//! logistic regression; it is first judged on a time-based hold-out (trained only on what was
//! known 90 days before the hold-out day) next to the days-since-last-login baseline, then
//! retrained on everything and applied to today's active accounts. The probability and its top
//! drivers are written into each account's latest health result; a probability above 0.7 runs
//! the `high_risk` playbook.
//!
//! A site without enough churn history (fewer than [`MIN_CLASS_ROWS`] churning or staying
//! observations) gets no probabilities — the run says so instead of guessing.

use std::collections::{BTreeSet, HashMap};

use crm_schemas::{utc_day, ChurnDriver, InvoiceKind, DAY_MS};
use crm_store::Store;
use serde::Serialize;

use crate::churn::{evaluate_rows, observe, AccountSeries, ChurnEvaluation, ChurnModel, FEATURES, HORIZON_DAYS};
use crate::usage::{collect, events_context, int, text, UsageSource, FEATURE_EVENT};
use crate::BatchError;

/// Days of history read for training.
pub const HISTORY_DAYS: usize = 400;
/// Days between two training observations of an account.
pub const STEP_DAYS: usize = 7;
/// Fewest rows of each class (churned / stayed) needed to train or evaluate.
pub const MIN_CLASS_ROWS: usize = 10;

#[derive(Clone, Debug, Serialize)]
pub struct ChurnRun {
    pub site_id: String,
    /// `scored`, or `insufficient_history` (no probabilities written).
    pub status: String,
    pub detail: Option<String>,
    pub accounts: usize,
    pub labelled_rows: usize,
    pub churned_rows: usize,
    /// Accounts that received a probability.
    pub scored: usize,
    /// The hold-out evaluation, when the history is long enough for one.
    pub evaluation: Option<ChurnEvaluation>,
    pub coefficients: Vec<(String, f64)>,
    pub tasks_added: usize,
}

/// Daily activity per account, indexed from `first_day` (a UTC day number).
async fn daily_series(source: &UsageSource<'_>, site_id: &str, first_day: i64, days: usize) -> Result<HashMap<String, [Vec<u32>; 3]>, BatchError> {
    let from_ms = first_day * DAY_MS;
    let to_ms = from_ms + days as i64 * DAY_MS;
    let ctx = events_context(source.batches(site_id, from_ms, to_ms).await?)?;
    let sql = format!(
        "SELECT account_id, CAST(ts_ms / {DAY_MS} AS BIGINT) - {first_day} AS day,
            SUM(CASE WHEN kind = 'custom' AND name = 'login' THEN 1 ELSE 0 END) AS logins,
            SUM(CASE WHEN {FEATURE_EVENT} THEN 1 ELSE 0 END) AS features,
            SUM(CASE WHEN kind = 'custom' AND name = 'api_call' THEN 1 ELSE 0 END) AS api_calls
         FROM events WHERE ts_ms >= {from_ms} AND ts_ms < {to_ms} GROUP BY 1, 2"
    );
    let mut out: HashMap<String, [Vec<u32>; 3]> = HashMap::new();
    for batch in collect(&ctx, &sql).await? {
        for row in 0..batch.num_rows() {
            let day = int(&batch, "day", row)?;
            if !(0..days as i64).contains(&day) {
                continue;
            }
            let series = out.entry(text(&batch, "account_id", row)?).or_insert_with(|| [vec![0; days], vec![0; days], vec![0; days]]);
            for (i, column) in ["logins", "features", "api_calls"].iter().enumerate() {
                series[i][day as usize] = int(&batch, column, row)?.clamp(0, i64::from(u32::MAX)) as u32;
            }
        }
    }
    Ok(out)
}

/// Trains on the site's history as of `now_ms`, stores probabilities and returns the report.
pub async fn run_churn(store: &dyn Store, source: UsageSource<'_>, site_id: &str, now_ms: i64) -> Result<ChurnRun, BatchError> {
    let data = store.business_data(site_id).await?;
    let today = utc_day(now_ms);
    let first_day = today - HISTORY_DAYS as i64;
    let today_index = HISTORY_DAYS;
    let mut activity = daily_series(&source, site_id, first_day, HISTORY_DAYS).await?;
    let index = |ms: i64| utc_day(ms) - first_day;

    let mut churned_at: HashMap<&str, i64> = HashMap::new();
    let mut first_invoice: HashMap<&str, i64> = HashMap::new();
    let mut latest_mrr: HashMap<&str, (i64, f64)> = HashMap::new();
    for invoice in &data.invoices {
        let id = invoice.account_id.as_str();
        if invoice.kind == InvoiceKind::Cancellation {
            let at = churned_at.entry(id).or_insert(invoice.issued_ms);
            *at = (*at).min(invoice.issued_ms);
        }
        let first = first_invoice.entry(id).or_insert(invoice.issued_ms);
        *first = (*first).min(invoice.issued_ms);
        if let Some(mrr) = invoice.mrr.filter(|m| *m > 0.0) {
            if latest_mrr.get(id).is_none_or(|(at, _)| invoice.issued_ms > *at) {
                latest_mrr.insert(id, (invoice.issued_ms, mrr));
            }
        }
    }
    let records: HashMap<&str, &crm_schemas::CustomerAccount> = data.accounts.iter().map(|a| (a.account_id.as_str(), a)).collect();
    let ids: BTreeSet<String> = records.keys().map(|k| k.to_string()).chain(activity.keys().cloned()).collect();
    let mut accounts: Vec<(String, AccountSeries)> = Vec::new();
    for id in ids {
        let [logins, features, api_calls] = activity.remove(&id).unwrap_or_else(|| [vec![0; HISTORY_DAYS], vec![0; HISTORY_DAYS], vec![0; HISTORY_DAYS]]);
        let first_active = logins.iter().zip(&features).zip(&api_calls).position(|((a, b), c)| a + b + c > 0).map(|d| d as i64);
        let start = records
            .get(id.as_str())
            .and_then(|r| r.contract_start_ms)
            .or_else(|| first_invoice.get(id.as_str()).copied())
            .map(index)
            .or(first_active);
        let Some(start_day) = start else { continue };
        let churn_day = match churned_at.get(id.as_str()).map(|&ms| index(ms)) {
            Some(day) if day < 0 => continue, // gone before the history begins
            Some(day) => Some(day as usize),
            None => None,
        };
        // Prefer the invoice MRR in force before a cancellation; an account record may say 0 after it.
        let mrr = latest_mrr.get(id.as_str()).map(|(_, m)| *m).or_else(|| records.get(id.as_str()).map(|r| r.mrr)).unwrap_or(0.0);
        accounts.push((id, AccountSeries { start_day, churn_day, mrr, logins, features, api_calls }));
    }

    // Observations whose outcome is known: days up to today − horizon.
    let last_labelled = today_index.saturating_sub(HORIZON_DAYS);
    let observations = |days: &mut dyn Iterator<Item = usize>| -> (Vec<[f64; 7]>, Vec<bool>) {
        let days: Vec<usize> = days.collect();
        accounts.iter().flat_map(|(_, a)| days.iter().filter_map(|&d| observe(a, d))).unzip()
    };
    let (all_x, all_y) = observations(&mut (56..=last_labelled).rev().step_by(STEP_DAYS));
    let churned_rows = all_y.iter().filter(|&&y| y).count();
    let mut run = ChurnRun {
        site_id: site_id.to_owned(),
        status: "insufficient_history".into(),
        detail: None,
        accounts: accounts.len(),
        labelled_rows: all_y.len(),
        churned_rows,
        scored: 0,
        evaluation: None,
        coefficients: Vec::new(),
        tasks_added: 0,
    };
    if churned_rows < MIN_CLASS_ROWS || all_y.len() - churned_rows < MIN_CLASS_ROWS {
        run.detail = Some(format!(
            "training needs at least {MIN_CLASS_ROWS} churned and {MIN_CLASS_ROWS} retained account observations with a known 90-day outcome \
             (cancellation invoices are the labels); found {churned_rows} and {}",
            all_y.len() - churned_rows
        ));
        tracing::info!(site_id, labelled = all_y.len(), churned = churned_rows, "churn model not trained: not enough history");
        return Ok(run);
    }

    // Hold-out: observe at the last labelled day, train only on what was known by then.
    if let Some(train_last) = last_labelled.checked_sub(HORIZON_DAYS).filter(|d| *d >= 56) {
        let (train_x, train_y) = observations(&mut (56..=train_last).rev().step_by(STEP_DAYS));
        let (test_x, test_y) = observations(&mut std::iter::once(last_labelled));
        let enough = |y: &[bool]| y.iter().filter(|&&v| v).count() >= MIN_CLASS_ROWS.min(3) && y.iter().filter(|&&v| !v).count() >= MIN_CLASS_ROWS.min(3);
        if enough(&train_y) && enough(&test_y) {
            run.evaluation = evaluate_rows(&train_x, &train_y, &test_x, &test_y).ok();
        }
    }
    let model = ChurnModel::train(&all_x, &all_y).map_err(BatchError::Engine)?;
    run.coefficients = model.coefficients();

    let mut latest: HashMap<String, crm_schemas::AccountHealth> = store.latest_health(site_id).await?.into_iter().map(|h| (h.account_id.clone(), h)).collect();
    let mut updated = Vec::new();
    let mut tasks = Vec::new();
    for (id, series) in &accounts {
        let Some((row, _)) = observe(series, today_index) else { continue };
        let Some(mut health) = latest.remove(id) else { continue };
        let p = model.predict(&[row])[0];
        health.churn_probability = Some((p * 1000.0).round() / 1000.0);
        health.churn_drivers = model
            .top_contributors(&row, 3)
            .into_iter()
            .filter(|(_, c)| *c > 0.0)
            .map(|(feature, contribution)| ChurnDriver {
                feature: feature.to_owned(),
                value: row[FEATURES.iter().position(|f| *f == feature).unwrap_or(0)],
                contribution: (contribution * 1000.0).round() / 1000.0,
            })
            .collect();
        tasks.extend(crate::playbooks::playbook_tasks(&health, None, None, 0, now_ms).into_iter().filter(|t| t.rule == "high_risk"));
        updated.push(health);
    }
    // Accounts that churned or went quiet keep no stale probability.
    for (_, mut health) in latest {
        if health.churn_probability.take().is_some() {
            health.churn_drivers.clear();
            updated.push(health);
        }
    }
    run.scored = updated.iter().filter(|h| h.churn_probability.is_some()).count();
    store.put_health(&updated).await?;
    run.tasks_added = crate::playbooks::store_tasks(store, site_id, &tasks, now_ms).await?;
    run.status = "scored".into();
    tracing::info!(site_id, scored = run.scored, auc = run.evaluation.as_ref().map(|e| e.auc), tasks_added = run.tasks_added, "churn probabilities computed");
    Ok(run)
}
