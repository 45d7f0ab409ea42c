//! What an operator does to a running `crm`, end to end against the real binary: HTTPS with
//! certificate reloads, metrics and the Grafana dashboard over them, secrets sealed at rest with
//! key rotation. One test binary (each links the whole workspace).

#[path = "../common/mod.rs"]
mod common;

mod observability;
mod secrets;
mod tls;
