//! The churn model on simulated accounts with a known churn propensity, judged on a time-based
//! hold-out: it must beat the days-since-last-login baseline. Prints the figures (recorded in
//! bench/RESULTS.md).

use crm_batch_jobs::churn::{evaluate, observe, simulate, ChurnModel};

#[test]
fn the_model_beats_the_baseline_on_a_later_hold_out() {
    let accounts = simulate(3000, 240, 7);
    let evaluation = evaluate(&accounts, 120, 150).expect("trains");
    println!("{}", serde_json::to_string_pretty(&evaluation).unwrap());
    assert!(evaluation.train_rows > 1000 && evaluation.test_rows > 1000);
    assert!(evaluation.test_churn_rate > 0.05 && evaluation.test_churn_rate < 0.8);
    assert!(evaluation.auc > evaluation.baseline_auc, "model {} vs baseline {}", evaluation.auc, evaluation.baseline_auc);
    assert!(evaluation.auc > 0.7, "{evaluation:?}");
    assert!(evaluation.lift_top_decile > 1.5, "{evaluation:?}");
    assert!(evaluation.calibration_error < 0.1, "{evaluation:?}");
}

#[test]
fn predictions_explain_themselves() {
    let accounts = simulate(1500, 240, 11);
    let (x, y): (Vec<[f64; 7]>, Vec<bool>) = accounts.iter().filter_map(|a| observe(a, 120)).unzip();
    let model = ChurnModel::train(&x, &y).unwrap();
    let p = model.predict(&x[..5]);
    assert!(p.iter().all(|p| (0.0..=1.0).contains(p)));
    let top = model.top_contributors(&x[0], 3);
    assert_eq!(top.len(), 3);
    assert!(top[0].1 >= top[1].1 && top[1].1 >= top[2].1);
}
