//! Hybrid search: keyword (BM25) and semantic (embedding) rankings fused by reciprocal rank.
//!
//! The semantic ranking compares the query with each article's passages (its title followed by
//! one sentence of the body) and takes the best: a long article about several things is found
//! by the sentence that answers the question, which one embedding of the whole text blurs.
//!
//! Each ranking contributes `1 / (60 + rank)` for every article in its top [`CANDIDATES`], so an
//! article both rankings like beats one only a single ranking likes, and neither ranking's score
//! scale matters (BM25 scores are unbounded, cosines lie in [-1, 1]). Semantic candidates below
//! [`MIN_SIMILARITY`] are dropped: with few articles every article is "nearest" to anything.
//! A hit's snippet is its best keyword passage with the query's terms marked, or the start of
//! the article when only the meaning matched.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::embed::Embedder;
use crate::keyword::{KeywordIndex, SNIPPET_CHARS};
use crate::vectors::SiteVectors;
use crate::{Doc, Result, SearchError, MAX_QUERY_BYTES};

/// Articles each ranking proposes.
pub const CANDIDATES: usize = 50;
/// The constant of reciprocal-rank fusion (the value of the original paper, Cormack et al. 2009).
pub const RRF_K: f64 = 60.0;
/// Cosine below which an article is not semantically related to the query (all-MiniLM-L6-v2
/// puts unrelated English texts at about -0.1 to 0.15, paraphrases above 0.35).
pub const MIN_SIMILARITY: f32 = 0.2;

/// One search result.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Hit {
    pub id: String,
    pub title: String,
    pub url: String,
    /// HTML: escaped text with the query's terms in `<mark>`.
    pub snippet_html: String,
    /// Fused score (higher is better).
    pub score: f64,
    /// 1-based rank in the keyword ranking, if it was there.
    pub keyword_rank: Option<usize>,
    /// Cosine similarity to the query, if the semantic ranking proposed it.
    pub similarity: Option<f32>,
}

pub struct SearchIndex {
    keyword: KeywordIndex,
    embedder: Option<Arc<Embedder>>,
    vectors: RwLock<HashMap<String, SiteVectors>>,
    docs: RwLock<HashMap<(String, String), Arc<Doc>>>,
}

impl SearchIndex {
    /// An empty index; without an embedder it ranks by keywords alone.
    pub fn new(embedder: Option<Arc<Embedder>>) -> Result<SearchIndex> {
        Ok(SearchIndex { keyword: KeywordIndex::new()?, embedder, vectors: RwLock::default(), docs: RwLock::default() })
    }

    /// Whether the semantic half is on (a model was loaded).
    pub fn semantic(&self) -> bool {
        self.embedder.is_some()
    }

    pub fn embedder(&self) -> Option<&Arc<Embedder>> {
        self.embedder.as_ref()
    }

    /// The passages' embeddings of an article, back to back (see [`passages`]).
    pub fn embed_article(embedder: &Embedder, doc: &Doc) -> Result<Vec<f32>> {
        let mut rows = Vec::new();
        for passage in passages(doc) {
            rows.extend(embedder.embed(&passage)?);
        }
        Ok(rows)
    }

    /// Adds or replaces articles, embedding their passages (CPU-bound: call it from a blocking
    /// thread).
    pub fn upsert(&self, docs: &[Doc]) -> Result<()> {
        let vectors = match &self.embedder {
            Some(embedder) => docs.iter().map(|doc| Self::embed_article(embedder, doc).map(Some)).collect::<Result<Vec<_>>>()?,
            None => vec![None; docs.len()],
        };
        self.upsert_embedded(docs, vectors)
    }

    /// Adds or replaces articles whose passage embeddings the caller already has, back to back
    /// (`None`: keywords only).
    pub fn upsert_embedded(&self, docs: &[Doc], vectors: Vec<Option<Vec<f32>>>) -> Result<()> {
        let dimensions = self.embedder.as_ref().map_or(0, |e| e.dimensions());
        self.keyword.upsert(docs)?;
        let mut sites = self.vectors.write().unwrap_or_else(|p| p.into_inner());
        let mut known = self.docs.write().unwrap_or_else(|p| p.into_inner());
        for (doc, vector) in docs.iter().zip(vectors) {
            let site = sites.entry(doc.site_id.clone()).or_default();
            let dimensions = if dimensions > 0 { dimensions } else { vector.as_ref().map_or(0, |v| v.len()) };
            let stored = match vector {
                Some(rows) => site.upsert(&doc.id, dimensions, rows),
                None => false,
            };
            if !stored {
                site.remove(&doc.id);
            }
            known.insert((doc.site_id.clone(), doc.id.clone()), Arc::new(doc.clone()));
        }
        Ok(())
    }

    pub fn remove(&self, site_id: &str, id: &str) -> Result<()> {
        self.keyword.remove(site_id, id)?;
        if let Some(site) = self.vectors.write().unwrap_or_else(|p| p.into_inner()).get_mut(site_id) {
            site.remove(id);
        }
        self.docs.write().unwrap_or_else(|p| p.into_inner()).remove(&(site_id.to_owned(), id.to_owned()));
        Ok(())
    }

    /// Articles indexed, all sites.
    pub fn len(&self) -> usize {
        self.docs.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `limit` best articles of `site_id` for `query`, embedding the query if a model is
    /// loaded (CPU-bound: call it from a blocking thread).
    pub fn search(&self, site_id: &str, query: &str, limit: usize) -> Result<Vec<Hit>> {
        check_query(query)?;
        let vector = match (&self.embedder, query.trim().is_empty()) {
            (Some(embedder), false) => Some(embedder.embed(query.trim())?),
            _ => None,
        };
        self.search_embedded(site_id, query, vector.as_deref(), limit)
    }

    /// [`SearchIndex::search`] with the query's embedding given (`None`: keywords only).
    pub fn search_embedded(&self, site_id: &str, query: &str, vector: Option<&[f32]>, limit: usize) -> Result<Vec<Hit>> {
        check_query(query)?;
        if query.trim().is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let keyword = self.keyword.search(site_id, query, CANDIDATES)?;
        let semantic: Vec<(String, f32)> = match vector {
            Some(vector) => {
                let sites = self.vectors.read().unwrap_or_else(|p| p.into_inner());
                let nearest = sites.get(site_id).map(|site| site.nearest(vector, CANDIDATES)).unwrap_or_default();
                nearest.into_iter().filter(|(_, similarity)| *similarity >= MIN_SIMILARITY).map(|(id, similarity)| (id.to_owned(), similarity)).collect()
            }
            None => Vec::new(),
        };
        // id → (fused score, keyword rank, similarity)
        let mut fused: HashMap<&str, Fused> = HashMap::new();
        for (rank, (id, _)) in keyword.hits.iter().enumerate() {
            let entry = fused.entry(id).or_default();
            entry.0 += 1.0 / (RRF_K + rank as f64 + 1.0);
            entry.1 = Some(rank + 1);
        }
        for (rank, (id, similarity)) in semantic.iter().enumerate() {
            let entry = fused.entry(id).or_default();
            entry.0 += 1.0 / (RRF_K + rank as f64 + 1.0);
            entry.2 = Some(*similarity);
        }
        let mut ranked: Vec<(&str, Fused)> = fused.into_iter().collect();
        // Equal fused scores: the better keyword rank, then the id (stable pages).
        ranked.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0).then_with(|| a.1 .1.unwrap_or(usize::MAX).cmp(&b.1 .1.unwrap_or(usize::MAX))).then_with(|| a.0.cmp(b.0)));
        let docs = self.docs.read().unwrap_or_else(|p| p.into_inner());
        let mut hits = Vec::with_capacity(limit.min(ranked.len()));
        for (id, (score, keyword_rank, similarity)) in ranked {
            if hits.len() == limit {
                break;
            }
            let Some(doc) = docs.get(&(site_id.to_owned(), id.to_owned())) else { continue };
            let snippet_html = keyword.snippet_html(&doc.body).unwrap_or_else(|| lead_html(&doc.body));
            hits.push(Hit { id: doc.id.clone(), title: doc.title.clone(), url: doc.url.clone(), snippet_html, score, keyword_rank, similarity });
        }
        Ok(hits)
    }
}

/// Most passages embedded per article; a longer article's sentences are grouped evenly.
pub const MAX_PASSAGES: usize = 24;
/// A sentence shorter than this many words joins the next one.
const MIN_PASSAGE_WORDS: usize = 6;

/// What an article is embedded as: its title followed by each sentence of the body (short
/// sentences joined to the next, at most [`MAX_PASSAGES`]); the title alone for an empty body.
pub fn passages(doc: &Doc) -> Vec<String> {
    let mut sentences: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut chars = doc.body.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        let ends = matches!(c, '.' | '?' | '!') && chars.peek().is_none_or(|next| next.is_whitespace()) || c == '\n';
        if ends && current.split_whitespace().count() >= MIN_PASSAGE_WORDS {
            sentences.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        match sentences.last_mut() {
            Some(last) if current.split_whitespace().count() < MIN_PASSAGE_WORDS => last.push_str(&current),
            _ => sentences.push(current),
        }
    }
    let group = sentences.len().div_ceil(MAX_PASSAGES).max(1);
    let title = doc.title.trim();
    let mut out: Vec<String> = sentences.chunks(group).map(|chunk| format!("{title}\n{}", chunk.iter().map(|s| s.trim()).collect::<Vec<_>>().join(" "))).collect();
    if out.is_empty() {
        out.push(title.to_owned());
    }
    out
}

/// A fingerprint of what [`passages`] makes of `doc`: stored embeddings are reused only while it
/// (and the model) are unchanged.
pub fn passage_hash(doc: &Doc) -> String {
    let mut hash = crate::FNV_OFFSET;
    for passage in passages(doc) {
        hash = crate::fnv1a(passage.as_bytes(), hash);
        hash = crate::fnv1a(&[0], hash);
    }
    format!("{hash:016x}")
}

/// (fused score, keyword rank, similarity) of a candidate.
type Fused = (f64, Option<usize>, Option<f32>);

fn check_query(query: &str) -> Result<()> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(SearchError::QueryTooLong { len: query.len(), max: MAX_QUERY_BYTES });
    }
    Ok(())
}

/// The start of `text`, cut at a word boundary near [`SNIPPET_CHARS`], HTML-escaped.
pub fn lead_html(text: &str) -> String {
    let text = text.trim();
    let cut = match text.char_indices().nth(SNIPPET_CHARS) {
        Some((at, _)) => {
            let head = &text[..at];
            let at_space = head.rfind(char::is_whitespace).filter(|&i| i > SNIPPET_CHARS / 2).unwrap_or(at);
            format!("{}…", text[..at_space].trim_end())
        }
        None => text.to_owned(),
    };
    escape_html(&cut)
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::normalised;

    fn doc(id: &str, title: &str, body: &str) -> Doc {
        Doc { site_id: "s1".into(), id: id.into(), title: title.into(), body: body.into(), url: format!("/help/s1/{id}") }
    }

    /// Hand-made 3-d "embeddings" (axis 0 = billing, 1 = login, 2 = exports): the fusion is
    /// tested here; tests/model.rs tests it with the real model.
    fn index() -> SearchIndex {
        let index = SearchIndex::new(None).unwrap();
        let docs = [
            doc("pricing", "Pricing and plans", "Plans are billed per seat."),
            doc("sso", "Single sign-on", "Connect your identity provider."),
            doc("export", "Exporting leads", "Download leads as CSV, including each lead's plan."),
        ];
        let vectors = vec![Some(normalised(vec![1.0, 0.1, 0.0])), Some(normalised(vec![0.0, 1.0, 0.1])), Some(normalised(vec![0.2, 0.0, 1.0]))];
        index.upsert_embedded(&docs, vectors).unwrap();
        index
    }

    fn ids(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.id.as_str()).collect()
    }

    #[test]
    fn a_meaning_match_without_shared_words_is_found_and_agreement_ranks_first() {
        let index = index();
        let login = normalised(vec![0.05, 1.0, 0.0]);
        let hits = index.search_embedded("s1", "how do we log in with okta", Some(&login), 10).unwrap();
        assert_eq!(ids(&hits), ["sso"], "no keyword in common; the others are below the similarity floor");
        assert_eq!((hits[0].keyword_rank, hits[0].snippet_html.as_str()), (None, "Connect your identity provider."));
        // "plan" is in two articles' text; the semantic ranking agrees only with pricing.
        let billing = normalised(vec![1.0, 0.0, 0.1]);
        let hits = index.search_embedded("s1", "plan", Some(&billing), 10).unwrap();
        assert_eq!(ids(&hits)[0], "pricing");
        assert!(hits[0].keyword_rank.is_some() && hits[0].similarity.unwrap() > 0.9);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        // Keywords alone when no query vector is given.
        let hits = index.search_embedded("s1", "csv", None, 10).unwrap();
        assert_eq!(ids(&hits), ["export"]);
        assert!(hits[0].snippet_html.contains("<mark>CSV</mark>"), "{}", hits[0].snippet_html);
        assert_eq!(index.search_embedded("s1", "csv", None, 0).unwrap(), Vec::new());
    }

    #[test]
    fn limits_removal_and_oversized_queries() {
        let index = index();
        let everything = normalised(vec![1.0, 1.0, 1.0]);
        assert_eq!(index.search_embedded("s1", "leads plans sign", Some(&everything), 2).unwrap().len(), 2);
        index.remove("s1", "sso").unwrap();
        assert!(!ids(&index.search_embedded("s1", "sign on", Some(&everything), 10).unwrap()).contains(&"sso"));
        assert_eq!(index.len(), 2);
        let long = "a".repeat(MAX_QUERY_BYTES + 1);
        assert!(matches!(index.search("s1", &long, 10), Err(SearchError::QueryTooLong { .. })));
        assert!(index.search("s1", "   ", 10).unwrap().is_empty());
        assert!(!index.semantic());
    }

    #[test]
    fn passage_hash_follows_the_embedded_text() {
        let a = doc("a", "Title", "One sentence with enough words in it. Another sentence with enough words too.");
        let mut b = a.clone();
        b.url = "/elsewhere".into();
        assert_eq!(passage_hash(&a), passage_hash(&b), "the url is not embedded");
        b.body.push_str(" A third sentence changes the passages.");
        assert_ne!(passage_hash(&a), passage_hash(&b));
        b.title = "Other".into();
        assert_ne!(passage_hash(&a), passage_hash(&b));
        assert_eq!(passage_hash(&a).len(), 16);
    }

    #[test]
    fn passages_pair_the_title_with_each_sentence() {
        let d = doc("sso", "Single sign-on", "Log in through Okta or Entra ID today. Short one. Upload the metadata file from your provider!\nThen test it in a private window, e.g. v1.2 works");
        assert_eq!(
            passages(&d),
            [
                "Single sign-on\nLog in through Okta or Entra ID today.",
                "Single sign-on\nShort one. Upload the metadata file from your provider!",
                "Single sign-on\nThen test it in a private window, e.g. v1.2 works",
            ]
        );
        assert_eq!(passages(&doc("empty", "Only a title", "  ")), ["Only a title"]);
        let long = doc("long", "Long", &"This sentence has exactly seven words in it. ".repeat(100));
        let parts = passages(&long);
        assert!(parts.len() <= MAX_PASSAGES && parts.len() >= MAX_PASSAGES / 2, "{}", parts.len());
        assert!(parts.iter().all(|p| p.starts_with("Long\n")));
    }

    #[test]
    fn leads_are_cut_at_a_word_and_escaped() {
        let long = format!("<b>{}</b>", "word ".repeat(100));
        let lead = lead_html(&long);
        assert!(lead.starts_with("&lt;b&gt;word") && lead.ends_with("word…"), "{lead}");
        assert!(lead.chars().count() < SNIPPET_CHARS + 10);
        assert_eq!(lead_html("short & sweet"), "short &amp; sweet");
    }
}
