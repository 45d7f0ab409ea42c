//! The embedded store's second design (shared/store/DESIGN-v2.md), built beside the redb store
//! and exercised by tests until it replaces it.
//!
//! This crate owns the on-disk layout under `<data-dir>/columnar/`:
//! * [`manifest`]: which part files are live, as a snapshot plus an fsynced edit log; one edit
//!   is the commit point of a flush or a compaction;
//! * [`part`]: immutable Parquet files of enriched events sorted by `(visitor_hash, ts, id)`,
//!   so a visitor's timeline reads a few pages instead of scanning;
//! * [`session_part`]: session parts, versioned rows deduplicated at query time;
//! * [`query`]: the analytics (overview, timeseries, form funnels, scans) with DataFusion over
//!   part files plus the rows still in memory;
//! * [`convert`]: the one-time move of a redb store's events, sessions and profiles into this
//!   layout when it opens a data directory the previous design wrote;
//! * [`events`]: the write path, commit point and timelines tying these together;
//! * [`profiles`]: visitor profiles and ranked lists in memory, made durable as profile runs in
//!   the same commit points as the events;
//! * [`rollup`]: per closed (site, day) overview figures, so an overview over weeks reads a file
//!   per day instead of scanning the day's parts;
//! * [`sidecar`]: each event part's `.idx` file (the sorted event ids and two bloom filters), which
//!   answers "is this event id stored?" without opening the part.

pub mod convert;
pub mod events;
pub mod manifest;
pub mod part;
pub mod profiles;
pub mod query;
pub mod rollup;
pub mod session_part;
pub mod sidecar;
pub mod sql;
pub mod store;

pub use store::ColumnarStore;

/// Errors of the columnar store. `Io` is worth retrying (disk full, a transient failure);
/// `Corrupt` is not: a file failed its checksum or does not decode.
#[derive(Debug, thiserror::Error)]
pub enum ColumnarError {
    #[error("columnar store i/o error at {path}: {message}")]
    Io { path: String, message: String },
    #[error("columnar store file is corrupt ({path}): {message}")]
    Corrupt { path: String, message: String },
}

impl ColumnarError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ColumnarError::Io { .. })
    }

    pub(crate) fn io(path: &std::path::Path, err: impl std::fmt::Display) -> ColumnarError {
        ColumnarError::Io { path: path.display().to_string(), message: err.to_string() }
    }

    pub(crate) fn corrupt(path: &std::path::Path, err: impl std::fmt::Display) -> ColumnarError {
        ColumnarError::Corrupt { path: path.display().to_string(), message: err.to_string() }
    }
}

impl From<ColumnarError> for crm_store::StoreError {
    fn from(err: ColumnarError) -> Self {
        match err {
            ColumnarError::Io { .. } => crm_store::StoreError::Io(err.to_string()),
            ColumnarError::Corrupt { .. } => crm_store::StoreError::Corrupt(err.to_string()),
        }
    }
}

pub type Result<T, E = ColumnarError> = std::result::Result<T, E>;

/// Writes `bytes` to `path` through a temporary sibling, fsyncing the file and then the
/// directory, so the file is either absent or complete after a crash.
pub(crate) fn write_durably(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| ColumnarError::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| ColumnarError::io(&tmp, e))?;
    file.sync_all().map_err(|e| ColumnarError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ColumnarError::io(path, e))?;
    sync_dir(path.parent().unwrap_or(std::path::Path::new(".")))
}

/// Deletes a file whose owner is gone (a removed part, a folded run, a replaced rollup). A file
/// that cannot be deleted is only logged: the next open's orphan sweep, or the next rebuild,
/// takes care of it.
pub(crate) fn remove_unused(path: &std::path::Path, what: &str) {
    if let Err(err) = std::fs::remove_file(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %err, what, "could not delete an unused file");
        }
    }
}

pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ColumnarError::io(dir, e))
}
