//! ClickHouse knowledge-base tables: articles (versioned rows), their history, passage
//! embeddings as `Array(Float32)`, conversations, messages (stored once per id) and the KB
//! counters in a SummingMergeTree that reads always re-sum (merges are never trusted).

use clickhouse::Row;
use crm_schemas::{Article, ArticleEmbedding, ArticleVersion, Conversation, ConversationMessage, KbCounter};
use crm_store::{Page, Result};
use serde::{Deserialize, Serialize};

use super::{ch_err, encode, now_nanos, ClickHouseStore, NewestFirst};

pub(crate) const MIGRATION: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kb_articles (site_id LowCardinality(String), article_id String, version UInt64,
        body String CODEC(ZSTD(3)))
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, article_id)",
    "CREATE TABLE IF NOT EXISTS kb_article_versions (site_id LowCardinality(String), article_id String, version UInt32,
        body String CODEC(ZSTD(3)))
     ENGINE = ReplacingMergeTree ORDER BY (site_id, article_id, version)",
    "CREATE TABLE IF NOT EXISTS kb_embeddings (site_id LowCardinality(String), article_id String, version UInt64,
        model String, content_hash String, dimensions UInt32, vectors Array(Float32))
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, article_id)",
    "CREATE TABLE IF NOT EXISTS kb_conversations (site_id LowCardinality(String), conversation_id String, version UInt64,
        started DateTime64(3, 'UTC'), body String)
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, conversation_id)",
    // `version` falls with time, so should two writers race on one id the first write wins.
    "CREATE TABLE IF NOT EXISTS kb_messages (site_id LowCardinality(String), conversation_id String, message_id String,
        version UInt64, at Int64, body String CODEC(ZSTD(3)))
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, conversation_id, message_id)",
    "CREATE TABLE IF NOT EXISTS kb_counters (site_id LowCardinality(String), day Int64, article_id String, query String,
        views UInt64, helpful_yes UInt64, helpful_no UInt64, searches UInt64, no_result_searches UInt64,
        deflections UInt64, handoffs UInt64)
     ENGINE = SummingMergeTree ORDER BY (site_id, day, article_id, query)",
];

#[derive(Row, Serialize)]
struct ArticleRow {
    site_id: String,
    article_id: String,
    version: u64,
    body: String,
}

#[derive(Row, Serialize)]
struct VersionRow {
    site_id: String,
    article_id: String,
    version: u32,
    body: String,
}

#[derive(Row, Serialize, Deserialize)]
struct EmbeddingRow {
    site_id: String,
    article_id: String,
    version: u64,
    model: String,
    content_hash: String,
    dimensions: u32,
    vectors: Vec<f32>,
}

#[derive(Row, Serialize)]
struct ConversationRow {
    site_id: String,
    conversation_id: String,
    version: u64,
    started: i64,
    body: String,
}

#[derive(Row, Serialize)]
struct MessageRow {
    site_id: String,
    conversation_id: String,
    message_id: String,
    version: u64,
    at: i64,
    body: String,
}

#[derive(Row, Serialize, Deserialize)]
struct CounterRow {
    site_id: String,
    day: i64,
    article_id: String,
    query: String,
    views: u64,
    helpful_yes: u64,
    helpful_no: u64,
    searches: u64,
    no_result_searches: u64,
    deflections: u64,
    handoffs: u64,
}

impl CounterRow {
    fn of(c: &KbCounter) -> CounterRow {
        let [views, helpful_yes, helpful_no, searches, no_result_searches, deflections, handoffs] = c.counts();
        CounterRow {
            site_id: c.site_id.clone(),
            day: c.day,
            article_id: c.article_id.clone(),
            query: c.query.clone(),
            views,
            helpful_yes,
            helpful_no,
            searches,
            no_result_searches,
            deflections,
            handoffs,
        }
    }

    fn counter(self) -> KbCounter {
        let mut c = KbCounter::key(&self.site_id, self.day, &self.article_id, &self.query);
        c.set_counts([self.views, self.helpful_yes, self.helpful_no, self.searches, self.no_result_searches, self.deflections, self.handoffs]);
        c
    }
}

#[derive(Row, Deserialize)]
struct IdRow {
    id: String,
}

impl ClickHouseStore {
    /// The history row goes first: a crash between the two inserts leaves a version without its
    /// article, which the retried write rewrites under the same key.
    pub(super) async fn insert_article(&self, article: &Article, version: &ArticleVersion) -> Result<()> {
        let history = VersionRow { site_id: version.site_id.clone(), article_id: version.article_id.clone(), version: version.version, body: encode(version)? };
        self.insert_rows("kb_article_versions", &[history]).await?;
        let row = ArticleRow { site_id: article.site_id.clone(), article_id: article.article_id.clone(), version: now_nanos(), body: encode(article)? };
        self.insert_rows("kb_articles", &[row]).await
    }

    pub(super) async fn get_article(&self, site_id: &str, article_id: &str) -> Result<Option<Article>> {
        let query = self.client.query("SELECT body FROM kb_articles FINAL WHERE site_id = ? AND article_id = ?").bind(site_id).bind(article_id);
        Ok(self.bodies(query).await?.pop())
    }

    pub(super) async fn get_articles(&self, site_id: &str) -> Result<Vec<Article>> {
        let query = self.client.query("SELECT body FROM kb_articles FINAL WHERE site_id = ? ORDER BY article_id").bind(site_id);
        self.bodies(query).await
    }

    pub(super) async fn get_article_versions(&self, site_id: &str, article_id: &str, limit: usize) -> Result<Vec<ArticleVersion>> {
        let query = self
            .client
            .query("SELECT body FROM kb_article_versions FINAL WHERE site_id = ? AND article_id = ? ORDER BY version DESC LIMIT ?")
            .bind(site_id)
            .bind(article_id)
            .bind(limit as u64);
        self.bodies(query).await
    }

    pub(super) async fn insert_embedding(&self, e: &ArticleEmbedding) -> Result<()> {
        let row = EmbeddingRow {
            site_id: e.site_id.clone(),
            article_id: e.article_id.clone(),
            version: now_nanos(),
            model: e.model.clone(),
            content_hash: e.content_hash.clone(),
            dimensions: e.dimensions,
            vectors: e.vectors.clone(),
        };
        self.insert_rows("kb_embeddings", &[row]).await
    }

    pub(super) async fn get_embeddings(&self, site_id: &str) -> Result<Vec<ArticleEmbedding>> {
        let rows: Vec<EmbeddingRow> = self
            .client
            .query("SELECT ?fields FROM kb_embeddings FINAL WHERE site_id = ? ORDER BY article_id")
            .bind(site_id)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        Ok(rows
            .into_iter()
            .map(|r| ArticleEmbedding {
                site_id: r.site_id,
                article_id: r.article_id,
                model: r.model,
                content_hash: r.content_hash,
                dimensions: r.dimensions,
                vectors: r.vectors,
            })
            .collect())
    }

    pub(super) async fn insert_conversation(&self, c: &Conversation) -> Result<()> {
        let row = ConversationRow {
            site_id: c.site_id.clone(),
            conversation_id: c.conversation_id.clone(),
            version: now_nanos(),
            started: c.started_at_ms,
            body: encode(c)?,
        };
        self.insert_rows("kb_conversations", &[row]).await
    }

    pub(super) async fn get_conversation(&self, site_id: &str, id: &str) -> Result<Option<Conversation>> {
        let query = self.client.query("SELECT body FROM kb_conversations FINAL WHERE site_id = ? AND conversation_id = ?").bind(site_id).bind(id);
        Ok(self.bodies(query).await?.pop())
    }

    pub(super) async fn get_conversations(&self, site_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<Conversation>> {
        let source = NewestFirst { table: "kb_conversations FINAL", time: "started", id: "conversation_id", filter: "site_id = ?" };
        self.newest_first(&source, &[site_id], limit, cursor).await
    }

    /// Inserts the messages whose ids are not stored yet.
    pub(super) async fn insert_messages(&self, messages: &[ConversationMessage]) -> Result<()> {
        let mut rows = Vec::new();
        let mut by_conversation: std::collections::BTreeMap<(&str, &str), Vec<&ConversationMessage>> = Default::default();
        for m in messages {
            by_conversation.entry((m.site_id.as_str(), m.conversation_id.as_str())).or_default().push(m);
        }
        let version = u64::MAX - now_nanos();
        for ((site, conversation), batch) in by_conversation {
            let ids: Vec<&str> = batch.iter().map(|m| m.message_id.as_str()).collect();
            let stored: Vec<IdRow> = self
                .client
                .query("SELECT message_id AS id FROM kb_messages WHERE site_id = ? AND conversation_id = ? AND message_id IN ?")
                .bind(site)
                .bind(conversation)
                .bind(&ids)
                .fetch_all()
                .await
                .map_err(ch_err)?;
            let mut seen: std::collections::HashSet<String> = stored.into_iter().map(|r| r.id).collect();
            for m in batch {
                if seen.insert(m.message_id.clone()) {
                    rows.push(MessageRow {
                        site_id: m.site_id.clone(),
                        conversation_id: m.conversation_id.clone(),
                        message_id: m.message_id.clone(),
                        version,
                        at: m.at_ms,
                        body: encode(m)?,
                    });
                }
            }
        }
        self.insert_rows("kb_messages", &rows).await
    }

    pub(super) async fn get_messages(&self, site_id: &str, conversation_id: &str, limit: usize) -> Result<Vec<ConversationMessage>> {
        let query = self
            .client
            .query("SELECT body FROM kb_messages FINAL WHERE site_id = ? AND conversation_id = ? ORDER BY at, message_id LIMIT ?")
            .bind(site_id)
            .bind(conversation_id)
            .bind(limit as u64);
        self.bodies(query).await
    }

    pub(super) async fn insert_counters(&self, deltas: &[KbCounter]) -> Result<()> {
        let rows: Vec<CounterRow> = deltas.iter().filter(|d| !d.is_zero()).map(CounterRow::of).collect();
        self.insert_rows("kb_counters", &rows).await
    }

    pub(super) async fn get_counters(&self, site_id: &str, from_day: i64, to_day: i64) -> Result<Vec<KbCounter>> {
        let rows: Vec<CounterRow> = self
            .client
            .query(
                "SELECT site_id, day, article_id, query, sum(views) AS views, sum(helpful_yes) AS helpful_yes,
                    sum(helpful_no) AS helpful_no, sum(searches) AS searches, sum(no_result_searches) AS no_result_searches,
                    sum(deflections) AS deflections, sum(handoffs) AS handoffs
                 FROM kb_counters WHERE site_id = ? AND day >= ? AND day < ?
                 GROUP BY site_id, day, article_id, query ORDER BY day, article_id, query",
            )
            .bind(site_id)
            .bind(from_day)
            .bind(to_day)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        Ok(rows.into_iter().map(CounterRow::counter).collect())
    }
}
