//! What an operator does to a running `crm`, end to end against the real binary: HTTPS with
//! certificate reloads, metrics and the Grafana dashboard over them, secrets sealed at rest with
//! key rotation, and the break-glass reset of a lost second factor. One test binary (each links the whole workspace).

#[path = "../common/mod.rs"]
mod common;

mod observability;
mod secrets;
mod tls;
mod users;
