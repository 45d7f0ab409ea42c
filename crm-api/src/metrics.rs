//! The API's request metrics: requests by route template (never the raw path, so ids do not
//! become label values), method and status, and their latency per route. Requests that match
//! no route count under `route="unmatched"`.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use crm_service::MetricsRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

type Histograms = Family<RouteLabel, Histogram, fn() -> Histogram>;

pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Histograms,
}

impl ApiMetrics {
    pub fn new(registry: &MetricsRegistry) -> ApiMetrics {
        let metrics = ApiMetrics { requests: Family::default(), seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) };
        registry.register(|r| {
            r.register("api_requests", "API, dashboard, knowledge-base and help-centre requests by route template, method and status", metrics.requests.clone());
            r.register("api_request_duration_seconds", "Time from a request's arrival to its response head, by route template", metrics.seconds.clone());
        });
        metrics
    }

    pub(crate) fn observe(&self, route: Option<&str>, method: &Method, status: StatusCode, took: Duration) {
        let route = route.unwrap_or("unmatched").to_owned();
        let method = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        self.requests.get_or_create(&RequestLabels { route: route.clone(), method, status: status.as_u16() }).inc();
        self.seconds.get_or_create(&RouteLabel { route }).observe(took.as_secs_f64());
    }
}
