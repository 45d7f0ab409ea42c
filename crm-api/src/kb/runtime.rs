//! The knowledge base at run time: the search index over every site's live articles, the catalog
//! the help centre lists from (no bodies), the buffer of KB counters, and the background work —
//! embedding articles whose stored embeddings are missing or stale, flushing counters, and
//! reloading a site another process changed.
//!
//! Start-up never embeds: an article whose stored embedding matches the model and its text is
//! indexed with it at once; any other is indexed by keywords at once and queued for the
//! background embedder (about 0.1 s per article on one core), which stores what it computes so
//! the next start finds it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_schemas::{utc_day, Article, ArticleEmbedding, KbCounter, Site};
use crm_search::{passage_hash, Doc, Embedder, Hit, SearchIndex};
use crm_service::Shutdown;
use crm_store::Store;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, Semaphore};

use super::markdown;
use crate::ApiError;

/// Store meta key whose value changes whenever a site's articles do (`kb_revision/{site}`).
fn revision_key(site_id: &str) -> String {
    format!("kb_revision/{site_id}")
}

/// Most distinct counter keys buffered between flushes (new content-gap keys beyond it are dropped).
pub const MAX_BUFFERED_COUNTERS: usize = 100_000;

/// How long a site's settings (its allowed origins) are trusted by the public endpoints.
const SITE_CACHE_TTL: Duration = Duration::from_secs(30);

/// What the help centre lists of a live article.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CatalogEntry {
    pub article_id: String,
    pub slug: String,
    pub title: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    /// The first ~160 characters of the text, for meta descriptions and listings.
    pub description: String,
    pub updated_at_ms: i64,
    pub published_at_ms: i64,
}

/// A site's live articles by slug.
pub type SiteCatalog = BTreeMap<String, Arc<CatalogEntry>>;

/// How many articles were indexed at start and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub indexed: usize,
    /// Indexed with embeddings read from the store.
    pub from_store: usize,
    /// Queued for the background embedder.
    pub queued: usize,
}

pub struct KbRuntime {
    index: SearchIndex,
    catalog: RwLock<HashMap<String, SiteCatalog>>,
    counters: Mutex<HashMap<(String, i64, String, String), KbCounter>>,
    embed_tx: mpsc::UnboundedSender<(String, String)>,
    embed_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, String)>>>,
    /// Articles waiting in the embed queue (a second write before the embedder gets there adds nothing).
    queued: Mutex<HashSet<(String, String)>>,
    /// Held across every change of the index and catalog, so the embedder's "is it still
    /// current?" check and its upsert cannot interleave with a write that removes the article.
    index_lock: Mutex<()>,
    revisions: Mutex<HashMap<String, Vec<u8>>>,
    sites: Mutex<HashMap<String, (Instant, Option<Site>)>>,
    /// Searches running at once (each embeds its query on a blocking thread).
    pub(crate) search_permits: Semaphore,
}

/// The first sentence-ish 160 characters of `text`, on one line.
pub fn describe(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(160) {
        None => flat,
        Some((at, _)) => {
            let head = &flat[..at];
            let cut = head.rfind(' ').filter(|&i| i > 80).unwrap_or(at);
            format!("{}…", &flat[..cut])
        }
    }
}

/// The help-centre path of an article.
pub fn article_path(site_id: &str, slug: &str) -> String {
    format!("/help/{site_id}/a/{slug}")
}

fn doc_of(article: &Article, text: String) -> Doc {
    Doc { site_id: article.site_id.clone(), id: article.article_id.clone(), title: article.title.clone(), body: text, url: article_path(&article.site_id, &article.slug) }
}

fn entry_of(article: &Article, text: &str) -> CatalogEntry {
    CatalogEntry {
        article_id: article.article_id.clone(),
        slug: article.slug.clone(),
        title: article.title.clone(),
        category: article.category.clone(),
        tags: article.tags.clone(),
        description: describe(text),
        updated_at_ms: article.updated_at_ms,
        published_at_ms: article.published_at_ms.unwrap_or(article.updated_at_ms),
    }
}

fn search_error(e: crm_search::SearchError) -> ApiError {
    match e {
        crm_search::SearchError::QueryTooLong { max, .. } => ApiError::InvalidParameter { name: "q".into(), message: format!("must be at most {max} bytes") },
        other => ApiError::Internal(other.to_string()),
    }
}

impl KbRuntime {
    /// An empty runtime (no articles); keyword search only without an embedder.
    pub fn empty(embedder: Option<Arc<Embedder>>) -> Arc<KbRuntime> {
        let (embed_tx, embed_rx) = mpsc::unbounded_channel();
        let permits = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        Arc::new(KbRuntime {
            index: SearchIndex::new(embedder).expect("an in-memory index opens"),
            catalog: RwLock::default(),
            counters: Mutex::default(),
            embed_tx,
            embed_rx: Mutex::new(Some(embed_rx)),
            queued: Mutex::default(),
            index_lock: Mutex::default(),
            revisions: Mutex::default(),
            sites: Mutex::default(),
            search_permits: Semaphore::new(permits),
        })
    }

    /// Indexes every site's live articles, with stored embeddings where they are current.
    pub async fn load(store: &Arc<dyn Store>, embedder: Option<Arc<Embedder>>) -> crm_store::Result<(Arc<KbRuntime>, LoadStats)> {
        let runtime = KbRuntime::empty(embedder);
        let mut stats = LoadStats::default();
        for site in store.sites().await? {
            let site_stats = runtime.load_site(store, &site.site_id).await?;
            stats.indexed += site_stats.indexed;
            stats.from_store += site_stats.from_store;
            stats.queued += site_stats.queued;
        }
        tracing::info!(indexed = stats.indexed, from_store = stats.from_store, queued = stats.queued, semantic = runtime.semantic(), "knowledge base loaded");
        Ok((runtime, stats))
    }

    /// (Re)builds one site's index and catalog from the store.
    pub async fn load_site(&self, store: &Arc<dyn Store>, site_id: &str) -> crm_store::Result<LoadStats> {
        let revision = store.meta(&revision_key(site_id)).await?.unwrap_or_default();
        let articles = store.articles(site_id).await?;
        let embeddings: HashMap<String, ArticleEmbedding> = match self.index.embedder() {
            Some(_) => store.article_embeddings(site_id).await?.into_iter().map(|e| (e.article_id.clone(), e)).collect(),
            None => HashMap::new(),
        };
        let mut stats = LoadStats::default();
        let mut catalog = SiteCatalog::new();
        let (mut docs, mut vectors) = (Vec::new(), Vec::new());
        for article in articles.iter().filter(|a| a.is_live()) {
            let text = markdown::render(&article.body_md).text;
            catalog.insert(article.slug.clone(), Arc::new(entry_of(article, &text)));
            let doc = doc_of(article, text);
            let stored = self.index.embedder().and_then(|embedder| {
                let e = embeddings.get(&article.article_id)?;
                let current = e.model == embedder.model_id() && e.dimensions as usize == embedder.dimensions() && e.content_hash == passage_hash(&doc);
                current.then(|| e.vectors.clone())
            });
            match &stored {
                Some(_) => stats.from_store += 1,
                None if self.semantic() => {
                    stats.queued += 1;
                    self.queue(site_id, &article.article_id);
                }
                None => {}
            }
            docs.push(doc);
            vectors.push(stored);
        }
        stats.indexed = docs.len();
        let _index = self.index_lock.lock();
        // Articles gone from the live set leave the index.
        let old: Vec<String> = self.catalog.read().get(site_id).map(|c| c.values().map(|e| e.article_id.clone()).collect()).unwrap_or_default();
        for id in old {
            if !docs.iter().any(|d| d.id == id) {
                self.index.remove(site_id, &id).map_err(index_err)?;
            }
        }
        self.index.upsert_embedded(&docs, vectors).map_err(index_err)?;
        self.catalog.write().insert(site_id.to_owned(), catalog);
        self.revisions.lock().insert(site_id.to_owned(), revision);
        Ok(stats)
    }

    fn queue(&self, site_id: &str, article_id: &str) {
        if self.queued.lock().insert((site_id.to_owned(), article_id.to_owned())) {
            let _ = self.embed_tx.send((site_id.to_owned(), article_id.to_owned()));
        }
    }

    pub fn semantic(&self) -> bool {
        self.index.semantic()
    }

    /// What `/readyz` says about search.
    pub fn mode(&self) -> String {
        match self.index.embedder() {
            Some(e) => format!("hybrid keyword and semantic search ({})", e.model_id()),
            None => "keyword search only: no --embedding-model (run scripts/fetch-model.sh)".into(),
        }
    }

    /// Brings the index and catalog up to date after `article` was written by this process, and
    /// tells other processes through the site's revision.
    pub async fn article_written(&self, store: &Arc<dyn Store>, article: &Article) -> crm_store::Result<()> {
        let site = &article.site_id;
        let index = self.index_lock.lock();
        {
            let mut catalog = self.catalog.write();
            let entries = catalog.entry(site.clone()).or_default();
            entries.retain(|_, e| e.article_id != article.article_id);
        }
        if article.is_live() {
            let text = markdown::render(&article.body_md).text;
            self.catalog.write().entry(site.clone()).or_default().insert(article.slug.clone(), Arc::new(entry_of(article, &text)));
            self.index.upsert_embedded(&[doc_of(article, text)], vec![None]).map_err(index_err)?;
            if self.semantic() {
                self.queue(site, &article.article_id);
            }
        } else {
            self.index.remove(site, &article.article_id).map_err(index_err)?;
        }
        drop(index);
        let revision = uuid::Uuid::new_v4().as_bytes().to_vec();
        store.put_meta(&revision_key(site), &revision).await?;
        self.revisions.lock().insert(site.clone(), revision);
        Ok(())
    }

    /// The `limit` best live articles of a site for `query` (runs the model on a blocking thread).
    pub async fn search(self: &Arc<Self>, site_id: &str, query: &str, limit: usize) -> Result<Vec<Hit>, ApiError> {
        let _permit = self.search_permits.acquire().await.map_err(|_| ApiError::Unavailable("search is shutting down".into()))?;
        let runtime = self.clone();
        let (site, query) = (site_id.to_owned(), query.to_owned());
        tokio::task::spawn_blocking(move || runtime.index.search(&site, &query, limit))
            .await
            .map_err(|e| ApiError::Internal(format!("search task failed: {e}")))?
            .map_err(search_error)
    }

    pub fn catalog(&self, site_id: &str) -> SiteCatalog {
        self.catalog.read().get(site_id).cloned().unwrap_or_default()
    }

    pub fn entry_by_slug(&self, site_id: &str, slug: &str) -> Option<Arc<CatalogEntry>> {
        self.catalog.read().get(site_id)?.get(slug).cloned()
    }

    pub fn entry_by_id(&self, site_id: &str, article_id: &str) -> Option<Arc<CatalogEntry>> {
        self.catalog.read().get(site_id)?.values().find(|e| e.article_id == article_id).cloned()
    }

    /// A site's settings, cached for [`SITE_CACHE_TTL`] (the public endpoints ask on every request).
    pub async fn site(&self, store: &Arc<dyn Store>, site_id: &str) -> Result<Option<Site>, ApiError> {
        if let Some((at, site)) = self.sites.lock().get(site_id) {
            if at.elapsed() < SITE_CACHE_TTL {
                return Ok(site.clone());
            }
        }
        let site = store.site(site_id).await?;
        let mut sites = self.sites.lock();
        if sites.len() > 10_000 {
            // Unknown ids from a scan must not grow it without bound, nor evict the real sites.
            sites.retain(|_, (at, site)| site.is_some() && at.elapsed() < SITE_CACHE_TTL);
            if sites.len() > 10_000 {
                sites.clear();
            }
        }
        sites.insert(site_id.to_owned(), (Instant::now(), site.clone()));
        Ok(site)
    }

    /// A site from the cache only (no store read), if cached and fresh.
    pub fn cached_site(&self, site_id: &str) -> Option<Site> {
        self.sites.lock().get(site_id).filter(|(at, _)| at.elapsed() < SITE_CACHE_TTL).and_then(|(_, site)| site.clone())
    }

    /// Forgets a cached site (its settings changed in this process).
    pub fn site_changed(&self, site_id: &str) {
        self.sites.lock().remove(site_id);
    }

    /// Adds to the buffered counters of (site, day of `at_ms`, article, query).
    pub fn count(&self, site_id: &str, at_ms: i64, article_id: &str, query: &str, add: impl FnOnce(&mut KbCounter)) {
        let day = utc_day(at_ms);
        let key = (site_id.to_owned(), day, article_id.to_owned(), query.to_owned());
        let mut counters = self.counters.lock();
        // While the store refuses the flush, distinct public queries (gap rows) must not grow the
        // buffer without bound; the site and article rows are few and always kept.
        if counters.len() >= MAX_BUFFERED_COUNTERS && !query.is_empty() && !counters.contains_key(&key) {
            return;
        }
        let counter = counters.entry(key).or_insert_with(|| KbCounter::key(site_id, day, article_id, query));
        add(counter);
    }

    /// Writes the buffered counters; on failure they go back into the buffer.
    pub async fn flush_counters(&self, store: &Arc<dyn Store>) -> crm_store::Result<usize> {
        let taken: Vec<KbCounter> = std::mem::take(&mut *self.counters.lock()).into_values().collect();
        if taken.is_empty() {
            return Ok(0);
        }
        if let Err(e) = store.add_kb_counters(&taken).await {
            let mut counters = self.counters.lock();
            for c in taken {
                let key = (c.site_id.clone(), c.day, c.article_id.clone(), c.query.clone());
                counters.entry(key).or_insert_with(|| KbCounter::key(&c.site_id, c.day, &c.article_id, &c.query)).add(&c);
            }
            return Err(e);
        }
        Ok(taken.len())
    }

    /// Starts the embedder, the counter flush (every 5 s and at shutdown) and the reload of
    /// sites another process changed (every 10 s). Call once.
    pub fn spawn_background(self: &Arc<Self>, store: Arc<dyn Store>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        if let Some(rx) = self.embed_rx.lock().take() {
            tokio::spawn(self.clone().embed_loop(store.clone(), rx, shutdown.clone()));
        }
        let runtime = self.clone();
        tokio::spawn(async move {
            let mut flush = tokio::time::interval(Duration::from_secs(5));
            let mut refresh = tokio::time::interval(Duration::from_secs(10));
            let stop = shutdown.clone();
            loop {
                tokio::select! {
                    _ = flush.tick() => {
                        if let Err(e) = runtime.flush_counters(&store).await {
                            tracing::warn!(error = %e, "kb counters not written; kept for the next try");
                        }
                    }
                    _ = refresh.tick() => runtime.refresh_changed(&store).await,
                    _ = stop.wait() => break,
                }
            }
            if let Err(e) = runtime.flush_counters(&store).await {
                tracing::error!(error = %e, "kb counters lost at shutdown");
            }
        })
    }

    /// Embeds and stores every article queued so far, then returns how many (for one-shot
    /// commands such as `crm import kb`, which run no background embedder).
    pub async fn embed_queued(&self, store: &Arc<dyn Store>) -> Result<usize, ApiError> {
        let Some(embedder) = self.index.embedder().cloned() else { return Ok(0) };
        let Some(mut rx) = self.embed_rx.lock().take() else { return Ok(0) };
        let mut done = 0;
        let mut result = Ok(());
        while let Ok((site_id, article_id)) = rx.try_recv() {
            self.queued.lock().remove(&(site_id.clone(), article_id.clone()));
            if let Err(e) = self.embed_one(store, &embedder, &site_id, &article_id).await {
                result = Err(e);
                break;
            }
            done += 1;
        }
        *self.embed_rx.lock() = Some(rx);
        result.map(|()| done)
    }

    async fn refresh_changed(&self, store: &Arc<dyn Store>) {
        let Ok(sites) = store.sites().await else { return };
        for site in sites {
            let Ok(revision) = store.meta(&revision_key(&site.site_id)).await else { continue };
            let known = self.revisions.lock().get(&site.site_id).cloned();
            if revision.unwrap_or_default() != known.unwrap_or_default() {
                match self.load_site(store, &site.site_id).await {
                    Ok(stats) => tracing::info!(site_id = %site.site_id, indexed = stats.indexed, "kb site reloaded after a change elsewhere"),
                    Err(e) => tracing::warn!(site_id = %site.site_id, error = %e, "kb site reload failed"),
                }
            }
        }
    }

    async fn embed_loop(self: Arc<Self>, store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<(String, String)>, shutdown: Shutdown) {
        let Some(embedder) = self.index.embedder().cloned() else { return };
        loop {
            let (site_id, article_id) = tokio::select! {
                next = rx.recv() => match next { Some(next) => next, None => return },
                _ = shutdown.wait() => return,
            };
            self.queued.lock().remove(&(site_id.clone(), article_id.clone()));
            if let Err(e) = self.embed_one(&store, &embedder, &site_id, &article_id).await {
                tracing::warn!(%site_id, %article_id, error = %e, "article embedding failed; it stays keyword-indexed");
            }
        }
    }

    async fn embed_one(&self, store: &Arc<dyn Store>, embedder: &Arc<Embedder>, site_id: &str, article_id: &str) -> Result<(), ApiError> {
        let Some(article) = store.article(site_id, article_id).await?.filter(Article::is_live) else { return Ok(()) };
        let doc = doc_of(&article, markdown::render(&article.body_md).text);
        let hash = passage_hash(&doc);
        // Queued articles are new, changed or without a current stored embedding: embed them
        // (one article's store read, never the site's whole embedding set).
        let (model, job) = (embedder.clone(), doc.clone());
        let vectors = tokio::task::spawn_blocking(move || SearchIndex::embed_article(&model, &job))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(search_error)?;
        let embedding = ArticleEmbedding {
            site_id: site_id.to_owned(),
            article_id: article_id.to_owned(),
            model: embedder_id(&self.index),
            content_hash: hash,
            dimensions: self.index.embedder().map_or(0, |e| e.dimensions()) as u32,
            vectors: vectors.clone(),
        };
        store.put_article_embedding(&embedding).await?;
        // Only if the article is still live and unchanged since it was read (checked and
        // upserted under the index lock, so a delete cannot slip in between).
        let _index = self.index_lock.lock();
        let current = self.entry_by_id(site_id, article_id).is_some_and(|e| e.slug == article.slug && e.updated_at_ms == article.updated_at_ms);
        if current {
            self.index.upsert_embedded(&[doc], vec![Some(vectors)]).map_err(|e| ApiError::Internal(e.to_string()))?;
        }
        Ok(())
    }
}

fn embedder_id(index: &SearchIndex) -> String {
    index.embedder().map(|e| e.model_id().to_owned()).unwrap_or_default()
}

fn index_err(e: crm_search::SearchError) -> crm_store::StoreError {
    crm_store::StoreError::Backend { message: e.to_string(), retryable: e.is_retryable() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_cut_at_a_word() {
        assert_eq!(describe("  short\n text "), "short text");
        let long = "word ".repeat(60);
        let d = describe(&long);
        assert!(d.ends_with('…') && d.chars().count() <= 161 && !d.contains("  "), "{d}");
    }
}
