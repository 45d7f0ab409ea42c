//! The stream processor: consumes the event log in batches and turns collected beacons into
//! enriched events, sessions and scored visitor profiles in the store.
//!
//! Per event: geo (mmdb), user agent (woothee, cached), bot flag, anonymised IP, URL facts (path,
//! UTM); then sessionisation and the profile update with engagement and intent scores. A batch
//! is written to the store in one call and only then committed on the log, and events already
//! stored are skipped by `event_id`, so a crash anywhere replays without double counting.

mod alerts;
mod cache;
pub mod commits;
mod enrich;
mod geo;
mod insights;
mod metrics;
mod processor;
mod profile;
pub mod scoring;
mod urls;
mod useragent;

pub use alerts::{signature as alert_signature, AlertDispatcher, DispatcherConfig};
pub use enrich::{Enricher, IpStorage};
pub use insights::{prompt as insight_prompt, AiConfig, InsightWorker};
pub use geo::{GeoError, GeoLookup};
pub use metrics::{ProcessorMetrics, WebhookMetrics};
pub use processor::{BatchOutcome, Processor, ProcessorConfig, ProcessorError, ProcessorStatus};
pub use profile::{apply_event, SiteRules, SESSION_IDLE_MS};
pub use urls::{url_facts, UrlFacts};
pub use useragent::{UaInfo, UserAgentParser};
