//! The store seam on ClickHouse, through the official `clickhouse` crate (HTTP, RowBinary).
//!
//! Writes: one [`WriteBatch`] becomes inserts into `visitors`, `sessions`, `dead_letters` and,
//! last, `events` (one atomic insert). Profiles and sessions are versioned upserts; the processor
//! records in each profile the log offset it has applied, so a crash between these inserts
//! replays without double counting (see ARCHITECTURE.md). Reads use FINAL on the
//! ReplacingMergeTree tables so results are exact before background merges.

mod rows;
mod schema;
mod store;

pub use store::{ClickHouseConfig, ClickHouseStore};
