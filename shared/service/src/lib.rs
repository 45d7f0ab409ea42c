//! Service plumbing shared by every server in the workspace: the serve loop with graceful
//! shutdown, health/readiness state, the Prometheus registry, the JSON envelopes and tracing.
//!
//! Servers are libraries: each exposes a request handler, and binaries or tests call [`serve`]
//! with a listener they bound (port 0 in tests) and a [`Shutdown`] they control.

mod connection;
mod deadline_body;
mod envelope;
mod health;
mod metrics;
mod secrets;
mod serve;
mod shutdown;
mod telemetry;
mod tls;

pub use connection::{ConnectionLimits, ConnectionStats};
pub use deadline_body::{BodyTimedOut, DeadlineBody};
pub use envelope::{empty_response, error_response, json_response, text_response, ApiErrorBody, Body, BoxError};
pub use health::Health;
pub use metrics::MetricsRegistry;
pub use secrets::{Opened, SecretError, SecretKeys};
pub use serve::{client_ip, serve, RemoteAddr, ServeOptions};
pub use shutdown::{wait_for_signal, Shutdown};
pub use telemetry::{init_tracing, LogFormat};
pub use tls::{Tls, TlsError, TlsFiles};
