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

mod on_a_store {
    //! The churn job on the site's own history, on both stores: simulated accounts are loaded
    //! into the store, the health job scores them, the churn job trains on cancellations and
    //! writes probabilities; accounts the simulation is about to churn must look riskier.

    use crm_batch_jobs::churn_job::run_churn;
    use crm_batch_jobs::health_job::run_health;
    use crm_batch_jobs::simulator::load_simulated_accounts;
    use crm_batch_jobs::usage::UsageSource;
    use crm_schemas::{AlertCondition, AlertRule, ImportBatch, Invoice, InvoiceKind, InvoiceStatus, Site, DAY_MS};
    use crm_store::{EmbeddedStore, Store};
    use crm_store_clickhouse::{ClickHouseConfig, ClickHouseStore};

    fn now_ms() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    }

    async fn scenario<'a>(store: &'a dyn Store, source: impl Fn() -> UsageSource<'a>) {
        let now = now_ms();
        store.put_site(&Site::new("s1", "Site", 0)).await.unwrap();
        // Too little history: no probabilities, and the run says why.
        let early = run_churn(store, source(), "s1", now).await.unwrap();
        assert_eq!(early.status, "insufficient_history", "{early:?}");
        assert!(early.detail.unwrap().contains("cancellation"));

        let rule = AlertRule {
            site_id: "s1".into(),
            rule_id: "r-playbook".into(),
            name: "CS channel".into(),
            condition: AlertCondition::Playbook { rules: vec!["high_risk".into()] },
            webhook_url: "http://127.0.0.1:9/hook".into(),
            secret: "k".into(),
            window_hours: 24,
            enabled: true,
            created_at_ms: now,
        };
        store.put_alert_rule(&rule).await.unwrap();

        let summary = load_simulated_accounts(store, "s1", 240, 365, now, 5).await.unwrap();
        assert!(summary.churned > 20 && summary.churning_soon > 5, "{summary:?}");
        let health = run_health(store, source(), "s1", now).await.unwrap();
        assert_eq!(health.len(), 240 - summary.churned, "former customers are not scored");

        let run = run_churn(store, source(), "s1", now).await.unwrap();
        println!("{}", serde_json::to_string_pretty(&run).unwrap());
        assert_eq!(run.status, "scored");
        assert_eq!(run.scored, health.len());
        let evaluation = run.evaluation.as_ref().expect("a year of history allows a hold-out");
        assert!(evaluation.auc > 0.6, "{evaluation:?}");

        let latest = store.latest_health("s1").await.unwrap();
        let probabilities: Vec<f64> = latest.iter().filter_map(|h| h.churn_probability).collect();
        assert_eq!(probabilities.len(), health.len());
        assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
        assert!(latest.iter().all(|h| h.churn_drivers.iter().all(|d| d.contribution > 0.0)));
        let spread = probabilities.iter().copied().fold(f64::MIN, f64::max) - probabilities.iter().copied().fold(f64::MAX, f64::min);
        assert!(spread > 0.3, "the model separates accounts: {spread}");

        // Every account above 0.7 has exactly one high-risk task, announced once to the rule.
        let risky = latest.iter().filter(|h| h.churn_probability.is_some_and(|p| p > 0.7)).count();
        let tasks = store.tasks("s1").await.unwrap();
        let high_risk = tasks.iter().filter(|t| t.rule == "high_risk").count();
        assert!(high_risk >= risky, "{high_risk} tasks for {risky} risky accounts");
        let queued = store.alerts("s1", 10_000).await.unwrap();
        assert_eq!(queued.len(), high_risk, "one webhook per new high-risk task");
        assert!(queued.iter().all(|a| a.task.as_ref().is_some_and(|t| t.rule == "high_risk")));
        run_churn(store, source(), "s1", now + 1000).await.unwrap();
        assert_eq!(store.tasks("s1").await.unwrap().len(), tasks.len(), "idempotent within the window");
        assert_eq!(store.alerts("s1", 10_000).await.unwrap().len(), queued.len(), "no second notification");

        // A cancellation today removes the account from scoring and clears its probability.
        let victim = latest.iter().find(|h| h.churn_probability.is_some()).unwrap().account_id.clone();
        let cancel = Invoice {
            site_id: "s1".into(),
            account_id: victim.clone(),
            invoice_id: "cancel-now".into(),
            issued_ms: now - DAY_MS / 2,
            amount: 0.0,
            mrr: Some(0.0),
            status: InvoiceStatus::Paid,
            kind: InvoiceKind::Cancellation,
        };
        store.import("s1", &ImportBatch::Invoices(vec![cancel])).await.unwrap();
        run_churn(store, source(), "s1", now + 2000).await.unwrap();
        let cleared = store.latest_health("s1").await.unwrap().into_iter().find(|h| h.account_id == victim).unwrap();
        assert_eq!(cleared.churn_probability, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn churn_on_the_embedded_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        scenario(&store, || UsageSource::Scan(&store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn churn_on_the_columnar_store_reads_its_parts() {
        let dir = tempfile::tempdir().unwrap();
        let store = crm_store_embedded::ColumnarStore::open(dir.path()).unwrap();
        // With its maintenance running, as in `crm up`: the simulated history goes into parts.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let maintenance = store.spawn_maintenance(crm_store_embedded::store::Maintenance::default(), async move {
            let _ = stopped.await;
        });
        scenario(&store, || UsageSource::Parts(&store)).await;
        let _ = stop.send(());
        maintenance.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn churn_on_clickhouse_reads_a_parquet_export() {
        let url = std::env::var("CRM_TEST_CLICKHOUSE_URL")
            .expect("CRM_TEST_CLICKHOUSE_URL is not set: start a server with scripts/clickhouse.sh (scripts/test.sh does)");
        let config = ClickHouseConfig::new(url, format!("crm_churn_{}", uuid::Uuid::new_v4().simple()));
        let clickhouse = ClickHouseStore::connect(&config).await.unwrap();
        scenario(&clickhouse, || UsageSource::ClickHouse(&clickhouse)).await;
    }
}
