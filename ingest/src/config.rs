//! Collector limits and policies (mapped from CLI flags by the binary).

use std::num::NonZeroU32;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Largest request body accepted, compressed or not (and after decompression).
    pub max_body_bytes: usize,
    /// Largest single event inside a body.
    pub max_event_bytes: usize,
    pub max_batch_events: usize,
    /// Requests per second per client IP (burst = 2×); `None` disables the limit.
    pub per_ip_rate: Option<NonZeroU32>,
    /// Events per second per site (burst = 2×); `None` disables the limit.
    pub per_site_rate: Option<NonZeroU32>,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Longest time a request body may take to arrive in full (then 408 `body_timeout`).
    pub body_timeout: Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            max_body_bytes: 512 * 1024,
            max_event_bytes: 32 * 1024,
            max_batch_events: 500,
            per_ip_rate: NonZeroU32::new(200),
            per_site_rate: NonZeroU32::new(20_000),
            trust_forwarded_for: false,
            body_timeout: Duration::from_secs(60),
        }
    }
}
