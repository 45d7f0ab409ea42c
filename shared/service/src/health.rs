//! Liveness and readiness: `/healthz` answers while the process runs; `/readyz` answers 503 while
//! draining or while any registered dependency check reports a problem.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Response, StatusCode};
use parking_lot::Mutex;
use serde_json::json;

use crate::{json_response, Body};

type Check = Box<dyn Fn() -> Option<String> + Send + Sync>;

#[derive(Default)]
pub struct Health {
    draining: AtomicBool,
    checks: Mutex<Vec<(String, Check)>>,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Registers a dependency check returning `Some(reason)` while the dependency is unusable.
    pub fn add_check(&self, name: &str, check: impl Fn() -> Option<String> + Send + Sync + 'static) {
        self.checks.lock().push((name.to_owned(), Box::new(check)));
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
        if problems.is_empty() {
            json_response(StatusCode::OK, &json!({"status": "ready"}))
        } else {
            let reasons: serde_json::Map<String, serde_json::Value> =
                problems.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "not_ready", "problems": reasons}))
        }
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
}
