//! Churn: fight-churn style features per account and observation day, a logistic-regression
//! model (linfa) predicting churn within 90 days, and an honest evaluation on a time-based
//! hold-out — AUC, lift in the top decile, calibration — next to a one-feature baseline (days
//! since the last login). The simulator produces accounts with a known churn propensity, so the
//! model can be trained and judged in seconds.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Feature names, in column order.
pub const FEATURES: [&str; 7] =
    ["logins_28d", "logins_change_pct", "days_since_last_login", "features_28d", "api_calls_28d", "tenure_days", "mrr"];

/// Predict churn within this many days of the observation.
pub const HORIZON_DAYS: usize = 90;

/// One account's daily activity and when (if ever) it churned. Days are indexes into the
/// series; `start_day` (the first day as a customer) may lie before the series began.
#[derive(Clone, Debug)]
pub struct AccountSeries {
    pub start_day: i64,
    pub churn_day: Option<usize>,
    pub mrr: f64,
    pub logins: Vec<u32>,
    pub features: Vec<u32>,
    pub api_calls: Vec<u32>,
}

fn poisson(rng: &mut StdRng, lambda: f64) -> u32 {
    // Knuth's method: fine for the small rates simulated here.
    let limit = (-lambda.max(0.0)).exp();
    let (mut k, mut p) = (0u32, 1.0f64);
    loop {
        p *= rng.gen::<f64>();
        if p <= limit || k > 1000 {
            return k;
        }
        k += 1;
    }
}

/// `count` accounts over `days` days. Each has a latent engagement e ∈ (0, 1); the probability
/// of churning is a logistic function of it, and a churner's activity fades over the 60 days
/// before it leaves. Deterministic for a seed.
pub fn simulate(count: usize, days: usize, seed: u64) -> Vec<AccountSeries> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let engagement: f64 = rng.gen_range(0.05f64..1.0);
            let propensity = 1.0 / (1.0 + (-(2.0 - 6.0 * engagement)).exp());
            let start_day = rng.gen_range(0..days / 3);
            let churn_day = rng.gen_bool(propensity.clamp(0.0, 1.0)).then(|| rng.gen_range(start_day + 30..days + HORIZON_DAYS));
            let mrr = (50.0 + 950.0 * engagement * rng.gen_range(0.5..1.5)).round();
            let (mut logins, mut features, mut api_calls) = (vec![0; days], vec![0; days], vec![0; days]);
            for day in start_day..days {
                if churn_day.is_some_and(|c| day >= c) {
                    break;
                }
                let fade = match churn_day {
                    Some(c) if c.saturating_sub(day) < 60 => (c - day) as f64 / 60.0,
                    _ => 1.0,
                };
                let rate = engagement * fade;
                logins[day] = poisson(&mut rng, 2.0 * rate);
                features[day] = poisson(&mut rng, 1.0 * rate);
                let burst: f64 = rng.gen_range(0.0..1.0);
                api_calls[day] = poisson(&mut rng, 5.0 * rate * burst);
            }
            AccountSeries { start_day: start_day as i64, churn_day, mrr, logins, features, api_calls }
        })
        .collect()
}

/// The feature row of an account observed at the end of `day`, with its label (churned within
/// the horizon); `None` when the account is not a customer then.
pub fn observe(account: &AccountSeries, day: usize) -> Option<([f64; 7], bool)> {
    if (day as i64) < account.start_day + 28 || day < 56 || day > account.logins.len() || account.churn_day.is_some_and(|c| c <= day) {
        return None;
    }
    let window = |series: &[u32], from: usize, to: usize| series[from..to].iter().map(|&x| f64::from(x)).sum::<f64>();
    let logins = window(&account.logins, day - 28, day);
    let previous = window(&account.logins, day - 56, day - 28);
    let last_login = account.logins[..day].iter().rposition(|&x| x > 0);
    let since_last = last_login.map_or(90.0, |d| ((day - 1 - d) as f64).min(90.0));
    let row = [
        logins,
        (logins - previous) / (previous + 1.0),
        since_last,
        window(&account.features, day - 28, day),
        window(&account.api_calls, day - 28, day),
        (day as i64 - account.start_day) as f64,
        account.mrr,
    ];
    let churned = account.churn_day.is_some_and(|c| c <= day + HORIZON_DAYS);
    Some((row, churned))
}

/// Area under the ROC curve (Mann–Whitney), ties counted half.
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut positives) = (0.0, 0.0);
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let average_rank = (i + j + 1) as f64 / 2.0; // ranks are 1-based
        for pair in &pairs[i..j] {
            if pair.1 {
                rank_sum += average_rank;
                positives += 1.0;
            }
        }
        i = j;
    }
    let negatives = pairs.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Churn rate among the top-scored tenth divided by the overall churn rate.
pub fn lift_top_decile(scores: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let top = (scores.len() / 10).max(1);
    let rate = |idx: &[usize]| idx.iter().filter(|&&i| labels[i]).count() as f64 / idx.len().max(1) as f64;
    let overall = rate(&order);
    if overall == 0.0 {
        0.0
    } else {
        rate(&order[..top]) / overall
    }
}

/// Expected calibration error over ten equal-count bins of the predicted probability.
pub fn calibration_error(probabilities: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let bins = order.chunks(order.len().div_ceil(10).max(1));
    let total = probabilities.len() as f64;
    bins.map(|bin| {
        let predicted = bin.iter().map(|&i| probabilities[i]).sum::<f64>() / bin.len() as f64;
        let observed = bin.iter().filter(|&&i| labels[i]).count() as f64 / bin.len() as f64;
        (predicted - observed).abs() * bin.len() as f64 / total
    })
    .sum()
}

#[derive(Clone, Debug, Serialize)]
pub struct ChurnEvaluation {
    pub train_rows: usize,
    pub test_rows: usize,
    pub test_churn_rate: f64,
    pub auc: f64,
    pub baseline_auc: f64,
    pub lift_top_decile: f64,
    pub baseline_lift_top_decile: f64,
    pub calibration_error: f64,
    /// Standardised coefficients, by feature: the direction and weight of each.
    pub coefficients: Vec<(String, f64)>,
}

/// A trained model: standardisation plus logistic-regression weights.
pub struct ChurnModel {
    means: [f64; 7],
    scales: [f64; 7],
    model: linfa_logistic::FittedLogisticRegression<f64, bool>,
    /// Whether the fitted model's probability is for `false` (linfa orders the two classes
    /// itself); then probabilities are complemented and weights negated.
    inverted: bool,
}

impl ChurnModel {
    pub fn train(rows: &[[f64; 7]], labels: &[bool]) -> Result<ChurnModel, String> {
        let n = rows.len().max(1) as f64;
        let mut means = [0.0; 7];
        let mut scales = [1.0; 7];
        for c in 0..7 {
            means[c] = rows.iter().map(|r| r[c]).sum::<f64>() / n;
            let variance = rows.iter().map(|r| (r[c] - means[c]).powi(2)).sum::<f64>() / n;
            scales[c] = variance.sqrt().max(1e-9);
        }
        let x = Self::matrix(rows, &means, &scales);
        let dataset = Dataset::new(x, Array1::from(labels.to_vec()));
        let model = LogisticRegression::default().max_iterations(300).fit(&dataset).map_err(|e| e.to_string())?;
        let raw = model.predict_probabilities(&dataset.records().to_owned());
        let mean = |want: bool| {
            let picked: Vec<f64> = raw.iter().zip(labels).filter(|(_, &l)| l == want).map(|(p, _)| *p).collect();
            picked.iter().sum::<f64>() / picked.len().max(1) as f64
        };
        let inverted = mean(true) < mean(false);
        Ok(ChurnModel { means, scales, model, inverted })
    }

    fn matrix(rows: &[[f64; 7]], means: &[f64; 7], scales: &[f64; 7]) -> Array2<f64> {
        Array2::from_shape_fn((rows.len(), 7), |(i, c)| (rows[i][c] - means[c]) / scales[c])
    }

    /// Probability of churn within the horizon, per row.
    pub fn predict(&self, rows: &[[f64; 7]]) -> Vec<f64> {
        let x = Self::matrix(rows, &self.means, &self.scales);
        self.model.predict_probabilities(&x).iter().map(|p| if self.inverted { 1.0 - p } else { *p }).collect()
    }

    /// Weight of feature `c` towards churning.
    fn weight(&self, c: usize) -> f64 {
        let w = self.model.params()[c];
        if self.inverted {
            -w
        } else {
            w
        }
    }

    /// The features pushing one row's churn probability up most (coefficient × standardised value).
    pub fn top_contributors(&self, row: &[f64; 7], n: usize) -> Vec<(&'static str, f64)> {
        let mut parts: Vec<(&'static str, f64)> =
            (0..7).map(|c| (FEATURES[c], self.weight(c) * (row[c] - self.means[c]) / self.scales[c])).collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        parts.truncate(n);
        parts
    }

    pub fn coefficients(&self) -> Vec<(String, f64)> {
        (0..7).map(|c| (FEATURES[c].to_owned(), (self.weight(c) * 1000.0).round() / 1000.0)).collect()
    }
}

/// Trains on observations at `train_day` and evaluates on the same accounts observed at
/// `test_day` (a later time: the hold-out is in the future of the training data).
pub fn evaluate(accounts: &[AccountSeries], train_day: usize, test_day: usize) -> Result<ChurnEvaluation, String> {
    let split = |day: usize| -> (Vec<[f64; 7]>, Vec<bool>) { accounts.iter().filter_map(|a| observe(a, day)).unzip() };
    let (train_x, train_y) = split(train_day);
    let (test_x, test_y) = split(test_day);
    evaluate_rows(&train_x, &train_y, &test_x, &test_y)
}

/// Trains on one set of labelled rows and judges the model on another, next to the
/// days-since-last-login baseline.
pub fn evaluate_rows(train_x: &[[f64; 7]], train_y: &[bool], test_x: &[[f64; 7]], test_y: &[bool]) -> Result<ChurnEvaluation, String> {
    if train_y.iter().all(|&y| y) || train_y.iter().all(|&y| !y) {
        return Err("the training window needs churners and non-churners".into());
    }
    let model = ChurnModel::train(train_x, train_y)?;
    let probabilities = model.predict(test_x);
    let baseline: Vec<f64> = test_x.iter().map(|r| r[2]).collect(); // days since the last login
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(ChurnEvaluation {
        train_rows: train_x.len(),
        test_rows: test_x.len(),
        test_churn_rate: round(test_y.iter().filter(|&&y| y).count() as f64 / test_y.len().max(1) as f64),
        auc: round(auc(&probabilities, test_y)),
        baseline_auc: round(auc(&baseline, test_y)),
        lift_top_decile: round(lift_top_decile(&probabilities, test_y)),
        baseline_lift_top_decile: round(lift_top_decile(&baseline, test_y)),
        calibration_error: round(calibration_error(&probabilities, test_y)),
        coefficients: model.coefficients(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_lift_and_calibration_on_hand_made_cases() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), 0.0);
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true]), 0.5, "ties count half");
        // 20 rows, 4 churners, the top 2 scores both churn: rate 1.0 vs 0.2 → lift 5.
        let scores: Vec<f64> = (0..20).map(f64::from).collect();
        let labels: Vec<bool> = (0..20).map(|i| i >= 18 || i == 3 || i == 7).collect();
        assert_eq!(lift_top_decile(&scores, &labels), 5.0);
        assert_eq!(calibration_error(&[0.0, 0.0, 1.0, 1.0], &[false, false, true, true]), 0.0);
        assert!((calibration_error(&[0.5; 4], &[true, true, true, true]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn features_follow_the_fight_churn_definitions() {
        let mut account = AccountSeries { start_day: 0, churn_day: None, mrr: 100.0, logins: vec![0; 100], features: vec![0; 100], api_calls: vec![0; 100] };
        account.logins[40] = 3; // previous window
        account.logins[80] = 2; // current window, last login 9 days before day 90
        let (row, churned) = observe(&account, 90).unwrap();
        assert_eq!(row[0], 2.0);
        assert_eq!(row[1], (2.0 - 3.0) / 4.0);
        assert_eq!(row[2], 9.0);
        assert_eq!(row[5], 90.0);
        assert!(!churned);
        account.churn_day = Some(150);
        assert!(observe(&account, 90).unwrap().1, "churns within 90 days");
        assert!(observe(&account, 150).is_none(), "gone by then");
    }
}
