//! Knowledge-base search: the engine behind the help centre's search box, the public and staff
//! search APIs and the chat widget's answers.
//!
//! Hybrid ranking, in-process:
//! - [`keyword`]: BM25 over title and body with English stemming and stop words, plus typo
//!   tolerance (edit distance on unstemmed words), on a tantivy index in memory;
//! - [`embed`]: sentence embeddings from all-MiniLM-L6-v2 run on candle (`scripts/fetch-model.sh`
//!   installs it), compared by cosine similarity in [`vectors`];
//! - [`hybrid`]: both rankings fused by reciprocal rank, with highlighted snippets.
//!
//! Without a model the index still answers, by keywords alone ([`SearchIndex::semantic`] says
//! which). Articles live in the stores; this crate only indexes what it is given.

pub mod embed;
pub mod hybrid;
pub mod keyword;
pub mod vectors;

pub use embed::Embedder;
pub use hybrid::{passage_hash, Hit, SearchIndex};

/// FNV-1a, 64 bit: a stable hash for content and model fingerprints (not for security).
pub fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The FNV-1a offset basis, the starting value of [`fnv1a`].
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Longest query accepted, in bytes (a search box sends a few words; a longer one is an error,
/// not something to truncate silently).
pub const MAX_QUERY_BYTES: usize = 512;

/// An article as the index sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    pub site_id: String,
    /// Unique within the site (the article's slug or id).
    pub id: String,
    pub title: String,
    /// Plain text (markdown already rendered and stripped by the caller).
    pub body: String,
    /// Where a hit links to.
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The embedding model's files are missing or unreadable.
    #[error("embedding model at {path}: {message}")]
    Model { path: String, message: String },
    #[error("embedding failed: {0}")]
    Embed(String),
    /// The keyword index failed (i/o or a writer error).
    #[error("search index error: {0}")]
    Index(String),
    #[error("query is {len} bytes long; at most {max} are accepted")]
    QueryTooLong { len: usize, max: usize },
}

impl SearchError {
    /// Whether trying again may succeed: index errors (i/o) may; a bad model or query won't.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SearchError::Index(_))
    }
}

impl From<tantivy::TantivyError> for SearchError {
    fn from(err: tantivy::TantivyError) -> Self {
        SearchError::Index(err.to_string())
    }
}

pub type Result<T, E = SearchError> = std::result::Result<T, E>;
