//! Shared pieces of the benchmarks: a realistic beacon mix (pageview/engagement/click, batches
//! and single events, gzip and text/plain, browser and bot user agents, many visitors) and
//! latency summaries.

use std::io::Write;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

pub const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
];

const PAGES: &[&str] = &["/", "/pricing", "/demo", "/docs/api", "/blog/lead-scoring", "/features", "/contact", "/case-studies/acme"];

/// Which request shapes to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mix {
    /// One pageview per request (the common tracker case).
    Single,
    /// 10-event batches.
    Batch,
    /// 70 % single events, 20 % batches of 2–10, 10 % gzip batches; text/plain and JSON.
    Realistic,
}

/// One prepared request.
#[derive(Clone, Debug)]
pub struct Beacon {
    pub body: Bytes,
    pub events: usize,
    pub gzip: bool,
    pub content_type: &'static str,
    pub user_agent: &'static str,
}

/// Generates beacons for `site` from a seeded RNG (reproducible runs).
pub struct BeaconGen {
    rng: StdRng,
    site: String,
    visitors: u32,
}

impl BeaconGen {
    pub fn new(site: &str, visitors: u32, seed: u64) -> BeaconGen {
        BeaconGen { rng: StdRng::seed_from_u64(seed), site: site.to_owned(), visitors: visitors.max(1) }
    }

    pub fn event(&mut self, now_ms: i64) -> serde_json::Value {
        let visitor = format!("bench-{}", self.rng.gen_range(0..self.visitors));
        let url = format!("https://bench.example{}", PAGES.choose(&mut self.rng).expect("pages"));
        let base = json!({"v": 1, "site_id": self.site, "event_id": uuid::Uuid::new_v4().to_string(), "visitor_id": visitor,
                          "ts": now_ms, "url": url, "title": "Bench page", "viewport": {"w": 1280, "h": 800}, "lang": "en-US"});
        let mut event = base;
        match self.rng.gen_range(0..10) {
            0..=5 => {
                event["type"] = json!("pageview");
                event["referrer"] = json!("https://www.google.com/");
            }
            6..=8 => {
                event["type"] = json!("engagement");
                event["scroll_depth"] = json!(self.rng.gen_range(0..=100));
                event["engaged_ms"] = json!(self.rng.gen_range(0..120_000));
            }
            _ => {
                event["type"] = json!("click");
                event["target"] = json!({"text": "Book a demo", "href": "https://bench.example/demo", "selector": "a.cta", "outbound": false});
            }
        }
        event
    }

    pub fn beacon(&mut self, mix: Mix, now_ms: i64) -> Beacon {
        let user_agent = *USER_AGENTS.choose(&mut self.rng).expect("agents");
        let (count, gzip) = match mix {
            Mix::Single => (1, false),
            Mix::Batch => (10, false),
            Mix::Realistic => match self.rng.gen_range(0..10) {
                0..=6 => (1, false),
                7..=8 => (self.rng.gen_range(2..=10), false),
                _ => (self.rng.gen_range(5..=20), true),
            },
        };
        let body = if count == 1 {
            self.event(now_ms).to_string()
        } else {
            let events: Vec<_> = (0..count).map(|_| self.event(now_ms)).collect();
            json!({ "events": events }).to_string()
        };
        let content_type = if self.rng.gen_bool(0.7) { "text/plain;charset=UTF-8" } else { "application/json" };
        let body = if gzip {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(body.as_bytes()).expect("gzip in memory");
            Bytes::from(encoder.finish().expect("gzip in memory"))
        } else {
            Bytes::from(body)
        };
        Beacon { body, events: count, gzip, content_type, user_agent }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn from_histogram(histogram: &hdrhistogram::Histogram<u64>) -> Latency {
        Latency {
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_mix_has_every_shape() {
        let mut generator = BeaconGen::new("bench", 1000, 1);
        let beacons: Vec<Beacon> = (0..500).map(|_| generator.beacon(Mix::Realistic, 1_700_000_000_000)).collect();
        assert!(beacons.iter().any(|b| b.gzip));
        assert!(beacons.iter().any(|b| b.events == 1));
        assert!(beacons.iter().any(|b| b.events > 1 && !b.gzip));
        assert!(beacons.iter().any(|b| b.user_agent.contains("bot")));
        let single = beacons.iter().find(|b| b.events == 1).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&single.body).unwrap();
        assert_eq!(value["v"], 1);
    }
}
