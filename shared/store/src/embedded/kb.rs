//! The embedded store's knowledge base: articles with their version history (written in one
//! transaction), passage embeddings as raw little-endian floats, conversations with a
//! newest-first index, messages stored once per id, and additive daily KB counters.

use crm_schemas::{Article, ArticleEmbedding, ArticleVersion, Conversation, ConversationMessage, KbCounter};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::{db_err, decode, encode, newest_first, site_rows, EventKey};
use crate::{Page, Result, StoreError};

/// (site, article id) → the article now.
const ARTICLES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kb_articles");
/// (site, article id, version) → that version.
const VERSIONS: TableDefinition<(&str, &str, u32), &[u8]> = TableDefinition::new("kb_article_versions");
/// (site, article id) → `[u32 LE meta length][meta JSON][f32 LE …]`: 9 216 floats per article
/// are too many to spell out as JSON.
const EMBEDDINGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kb_embeddings");
/// (site, started at, conversation uuid) → the conversation.
pub(super) const CONVERSATIONS: TableDefinition<EventKey, &[u8]> = TableDefinition::new("kb_conversations");
/// (site, conversation id) → started at (to find a conversation's row by id).
pub(super) const CONVERSATION_START: TableDefinition<(&str, &str), i64> = TableDefinition::new("kb_conversation_start");
/// (site, conversation, at, message id) → the message.
pub(super) const MESSAGES: TableDefinition<(&str, &str, i64, &str), &[u8]> = TableDefinition::new("kb_messages");
/// (site, conversation, message id) → () : which message ids are stored.
pub(super) const MESSAGE_IDS: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("kb_message_ids");
/// (site, day, article, query) → seven u64 LE counts.
const COUNTERS: TableDefinition<(&str, i64, &str, &str), &[u8]> = TableDefinition::new("kb_counters");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(ARTICLES).map_err(db_err)?;
    txn.open_table(EMBEDDINGS).map_err(db_err)?;
    txn.open_table(VERSIONS).map_err(db_err)?;
    txn.open_table(CONVERSATIONS).map_err(db_err)?;
    txn.open_table(CONVERSATION_START).map_err(db_err)?;
    txn.open_table(MESSAGES).map_err(db_err)?;
    txn.open_table(MESSAGE_IDS).map_err(db_err)?;
    txn.open_table(COUNTERS).map_err(db_err)?;
    Ok(())
}

pub(super) fn put_article(db: &Database, article: &Article, version: &ArticleVersion) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut articles = txn.open_table(ARTICLES).map_err(db_err)?;
        articles.insert((article.site_id.as_str(), article.article_id.as_str()), encode(article)?.as_slice()).map_err(db_err)?;
        let mut versions = txn.open_table(VERSIONS).map_err(db_err)?;
        versions
            .insert((version.site_id.as_str(), version.article_id.as_str(), version.version), encode(version)?.as_slice())
            .map_err(db_err)?;
    }
    txn.commit().map_err(db_err)
}

pub(super) fn article(db: &Database, site: &str, id: &str) -> Result<Option<Article>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(ARTICLES).map_err(db_err)?;
    table.get((site, id)).map_err(db_err)?.map(|v| decode(v.value())).transpose()
}

pub(super) fn articles(db: &Database, site: &str) -> Result<Vec<Article>> {
    site_rows(db, ARTICLES, site)
}

pub(super) fn versions(db: &Database, site: &str, id: &str, limit: usize) -> Result<Vec<ArticleVersion>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(VERSIONS).map_err(db_err)?;
    let mut out = Vec::new();
    for row in table.range((site, id, 0)..=(site, id, u32::MAX)).map_err(db_err)?.rev().take(limit) {
        out.push(decode(row.map_err(db_err)?.1.value())?);
    }
    Ok(out)
}

/// The embedding's fields but its floats.
#[derive(serde::Serialize, serde::Deserialize)]
struct EmbeddingMeta {
    site_id: String,
    article_id: String,
    model: String,
    content_hash: String,
    dimensions: u32,
}

fn encode_embedding(e: &ArticleEmbedding) -> Result<Vec<u8>> {
    let meta = encode(&EmbeddingMeta {
        site_id: e.site_id.clone(),
        article_id: e.article_id.clone(),
        model: e.model.clone(),
        content_hash: e.content_hash.clone(),
        dimensions: e.dimensions,
    })?;
    let mut out = Vec::with_capacity(4 + meta.len() + e.vectors.len() * 4);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    for v in &e.vectors {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

fn decode_embedding(bytes: &[u8]) -> Result<ArticleEmbedding> {
    let corrupt = || StoreError::Corrupt("kb embedding row is truncated".into());
    let len = u32::from_le_bytes(bytes.get(..4).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?) as usize;
    let meta: EmbeddingMeta = decode(bytes.get(4..4 + len).ok_or_else(corrupt)?)?;
    let floats = &bytes[4 + len..];
    if !floats.len().is_multiple_of(4) {
        return Err(corrupt());
    }
    let vectors = floats.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(ArticleEmbedding {
        site_id: meta.site_id,
        article_id: meta.article_id,
        model: meta.model,
        content_hash: meta.content_hash,
        dimensions: meta.dimensions,
        vectors,
    })
}

pub(super) fn put_embedding(db: &Database, e: &ArticleEmbedding) -> Result<()> {
    let bytes = encode_embedding(e)?;
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(EMBEDDINGS).map_err(db_err)?.insert((e.site_id.as_str(), e.article_id.as_str()), bytes.as_slice()).map_err(db_err)?;
    txn.commit().map_err(db_err)
}

pub(super) fn embeddings(db: &Database, site: &str) -> Result<Vec<ArticleEmbedding>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(EMBEDDINGS).map_err(db_err)?;
    let mut out = Vec::new();
    for row in table.range::<(&str, &str)>((site, "")..).map_err(db_err)? {
        let (key, value) = row.map_err(db_err)?;
        if key.value().0 != site {
            break;
        }
        out.push(decode_embedding(value.value())?);
    }
    Ok(out)
}

fn conversation_uuid(id: &str) -> Result<u128> {
    Uuid::parse_str(id)
        .map(|u| u.as_u128())
        .map_err(|_| StoreError::Backend { message: format!("conversation id {id:?} is not a uuid"), retryable: false })
}

pub(super) fn put_conversation(db: &Database, c: &Conversation) -> Result<()> {
    let uuid = conversation_uuid(&c.conversation_id)?;
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut starts = txn.open_table(CONVERSATION_START).map_err(db_err)?;
        let mut rows = txn.open_table(CONVERSATIONS).map_err(db_err)?;
        let key = (c.site_id.as_str(), c.conversation_id.as_str());
        // A replace that changes the start time moves the row rather than duplicating it.
        let previous = starts.insert(key, c.started_at_ms).map_err(db_err)?.map(|v| v.value());
        if let Some(previous) = previous.filter(|&p| p != c.started_at_ms) {
            rows.remove((c.site_id.as_str(), previous, uuid)).map_err(db_err)?;
        }
        rows.insert((c.site_id.as_str(), c.started_at_ms, uuid), encode(c)?.as_slice()).map_err(db_err)?;
    }
    txn.commit().map_err(db_err)
}

pub(super) fn conversation(db: &Database, site: &str, id: &str) -> Result<Option<Conversation>> {
    let Ok(uuid) = conversation_uuid(id) else { return Ok(None) };
    let txn = db.begin_read().map_err(db_err)?;
    let Some(start) = txn.open_table(CONVERSATION_START).map_err(db_err)?.get((site, id)).map_err(db_err)?.map(|v| v.value()) else {
        return Ok(None);
    };
    let rows = txn.open_table(CONVERSATIONS).map_err(db_err)?;
    rows.get((site, start, uuid)).map_err(db_err)?.map(|v| decode(v.value())).transpose()
}

pub(super) fn conversations(db: &Database, site: &str, limit: usize, cursor: Option<&str>) -> Result<Page<Conversation>> {
    newest_first(db, CONVERSATIONS, site, limit, cursor, |c: &Conversation| {
        format!("{}:{}", c.started_at_ms, conversation_uuid(&c.conversation_id).unwrap_or(0))
    })
}

pub(super) fn add_messages(db: &Database, messages: &[ConversationMessage]) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut ids = txn.open_table(MESSAGE_IDS).map_err(db_err)?;
        let mut rows = txn.open_table(MESSAGES).map_err(db_err)?;
        for m in messages {
            let id_key = (m.site_id.as_str(), m.conversation_id.as_str(), m.message_id.as_str());
            if ids.insert(id_key, ()).map_err(db_err)?.is_some() {
                continue;
            }
            rows.insert((m.site_id.as_str(), m.conversation_id.as_str(), m.at_ms, m.message_id.as_str()), encode(m)?.as_slice())
                .map_err(db_err)?;
        }
    }
    txn.commit().map_err(db_err)
}

pub(super) fn messages(db: &Database, site: &str, conversation: &str, limit: usize) -> Result<Vec<ConversationMessage>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(MESSAGES).map_err(db_err)?;
    let mut out = Vec::new();
    for row in table.range((site, conversation, i64::MIN, "")..).map_err(db_err)? {
        let (key, value) = row.map_err(db_err)?;
        let (s, c, _, _) = key.value();
        if s != site || c != conversation || out.len() == limit {
            break;
        }
        out.push(decode(value.value())?);
    }
    Ok(out)
}

fn counts_bytes(c: [u64; 7]) -> [u8; 56] {
    let mut out = [0u8; 56];
    for (chunk, v) in out.chunks_exact_mut(8).zip(c) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    out
}

fn bytes_counts(bytes: &[u8]) -> Result<[u64; 7]> {
    if bytes.len() != 56 {
        return Err(StoreError::Corrupt(format!("kb counter row of {} bytes", bytes.len())));
    }
    let mut out = [0u64; 7];
    for (v, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        *v = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    Ok(out)
}

pub(super) fn add_counters(db: &Database, deltas: &[KbCounter]) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut table = txn.open_table(COUNTERS).map_err(db_err)?;
        for d in deltas.iter().filter(|d| !d.is_zero()) {
            let key = (d.site_id.as_str(), d.day, d.article_id.as_str(), d.query.as_str());
            let mut sum = KbCounter::default();
            if let Some(old) = table.get(key).map_err(db_err)? {
                sum.set_counts(bytes_counts(old.value())?);
            }
            sum.add(d);
            table.insert(key, counts_bytes(sum.counts()).as_slice()).map_err(db_err)?;
        }
    }
    txn.commit().map_err(db_err)
}

pub(super) fn counters(db: &Database, site: &str, from_day: i64, to_day: i64) -> Result<Vec<KbCounter>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(COUNTERS).map_err(db_err)?;
    let mut out = Vec::new();
    if from_day >= to_day {
        return Ok(out);
    }
    for row in table.range((site, from_day, "", "")..(site, to_day, "", "")).map_err(db_err)? {
        let (key, value) = row.map_err(db_err)?;
        let (_, day, article, query) = key.value();
        let mut counter = KbCounter::key(site, day, article, query);
        counter.set_counts(bytes_counts(value.value())?);
        out.push(counter);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_rows_round_trip_and_reject_truncation() {
        let e = ArticleEmbedding {
            site_id: "s".into(),
            article_id: "a".into(),
            model: "m".into(),
            content_hash: "h".into(),
            dimensions: 2,
            vectors: vec![-0.0, f32::MIN_POSITIVE / 2.0, 1.5, f32::MAX],
        };
        let bytes = encode_embedding(&e).unwrap();
        let back = decode_embedding(&bytes).unwrap();
        assert_eq!(back.vectors.iter().map(|f| f.to_bits()).collect::<Vec<_>>(), e.vectors.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
        assert!(decode_embedding(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_embedding(&bytes[..3]).is_err());
        assert!(bytes_counts(&[0; 55]).is_err());
    }
}
