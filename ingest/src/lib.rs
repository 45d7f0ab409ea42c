//! The beacon collector. Accepts tracking events over HTTP (`POST /v1/events`, the `GET
//! /v1/p.gif` pixel and CORS preflights), validates them against the v1 schema and the site
//! directory, and appends accepted events and dead letters to the event log. It answers 202 only
//! after the log made the events durable.

mod body;
mod collector;
mod config;
mod error;
mod identity;
mod metrics;
mod sites;
mod widgets;

pub use collector::Collector;
pub use config::CollectorConfig;
pub use error::IngestError;
pub use identity::CookielessIds;
pub use metrics::IngestMetrics;
pub use sites::SiteDirectory;
