//! Liveness and readiness: `/healthz` answers while the process runs; `/readyz` answers 503 while
//! draining or while any registered dependency check reports a problem.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Response, StatusCode};
use parking_lot::Mutex;
use serde_json::json;

use crate::{json_response, Body};

type Check = Box<dyn Fn() -> Option<String> + Send + Sync>;
type Detail = Box<dyn Fn() -> String + Send + Sync>;

#[derive(Default)]
pub struct Health {
    draining: AtomicBool,
    checks: Mutex<Vec<(String, Check)>>,
    details: Mutex<Vec<(String, Detail)>>,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Registers a dependency check returning `Some(reason)` while the dependency is unusable.
    pub fn add_check(&self, name: &str, check: impl Fn() -> Option<String> + Send + Sync + 'static) {
        self.checks.lock().push((name.to_owned(), Box::new(check)));
    }

    /// Registers a fact `/readyz` reports without it affecting readiness (a degraded but
    /// working mode, such as search without its model).
    pub fn add_detail(&self, name: &str, detail: impl Fn() -> String + Send + Sync + 'static) {
        self.details.lock().push((name.to_owned(), Box::new(detail)));
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Problems that make the service not ready, empty when ready.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.is_draining() {
            problems.push(("shutdown".to_owned(), "draining".to_owned()));
        }
        for (name, check) in self.checks.lock().iter() {
            if let Some(reason) = check() {
                problems.push((name.clone(), reason));
            }
        }
        problems
    }

    pub fn healthz(&self) -> Response<Body> {
        json_response(StatusCode::OK, &json!({"status": "ok"}))
    }

    pub fn readyz(&self) -> Response<Body> {
        let problems = self.problems();
        let details: serde_json::Map<String, serde_json::Value> =
            self.details.lock().iter().map(|(k, d)| (k.clone(), serde_json::Value::String(d()))).collect();
        let mut body = if problems.is_empty() {
            json!({"status": "ready"})
        } else {
            let reasons: serde_json::Map<String, serde_json::Value> =
                problems.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            json!({"status": "not_ready", "problems": reasons})
        };
        if !details.is_empty() {
            body["details"] = serde_json::Value::Object(details);
        }
        let status = if body["status"] == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        json_response(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn readiness_follows_checks_and_draining() {
        let health = Health::new();
        let broken = Arc::new(AtomicBool::new(false));
        let flag = broken.clone();
        health.add_check("log", move || flag.load(Ordering::Relaxed).then(|| "disk full".to_owned()));
        assert_eq!(health.readyz().status(), StatusCode::OK);
        broken.store(true, Ordering::Relaxed);
        assert_eq!(health.readyz().status(), StatusCode::SERVICE_UNAVAILABLE);
        broken.store(false, Ordering::Relaxed);
        health.set_draining();
        assert_eq!(health.readyz().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(health.healthz().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn details_are_reported_without_changing_readiness() {
        use http_body_util::BodyExt;
        let health = Health::new();
        health.add_detail("knowledge_base", || "keyword search only".to_owned());
        let response = health.readyz();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["details"]["knowledge_base"], "keyword search only");
        assert_eq!(json["status"], "ready");
    }
}
