//! A Prometheus registry passed explicitly (no global recorder) plus scrape-time refreshers for
//! gauges that mirror other components' state (log depth, lag).

use http::{Response, StatusCode};
use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use crate::{text_response, Body};

type Refresher = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct MetricsRegistry {
    registry: Mutex<Registry>,
    refreshers: Mutex<Vec<Refresher>>,
}

impl MetricsRegistry {
    pub fn new() -> MetricsRegistry {
        MetricsRegistry { registry: Mutex::new(Registry::with_prefix("crm")), refreshers: Mutex::default() }
    }

    /// Runs `register` with the underlying registry (to add metric families).
    pub fn register(&self, register: impl FnOnce(&mut Registry)) {
        register(&mut self.registry.lock());
    }

    /// Adds a callback run before every scrape, to update mirrored gauges.
    pub fn on_scrape(&self, refresh: impl Fn() + Send + Sync + 'static) {
        self.refreshers.lock().push(Box::new(refresh));
    }

    pub fn render(&self) -> String {
        for refresh in self.refreshers.lock().iter() {
            refresh();
        }
        let mut text = String::new();
        if encode(&mut text, &self.registry.lock()).is_err() {
            text.clear();
        }
        text
    }

    pub fn response(&self) -> Response<Body> {
        text_response(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", self.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn renders_registered_metrics_after_refresh() {
        let metrics = MetricsRegistry::new();
        let counter: Counter = Counter::default();
        metrics.register(|r| r.register("things", "Things seen", counter.clone()));
        let mirrored = counter.clone();
        metrics.on_scrape(move || {
            mirrored.inc();
        });
        let text = metrics.render();
        assert!(text.contains("crm_things_total 1"), "{text}");
    }
}
