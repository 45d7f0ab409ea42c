//! ClickHouse authentication tables: `refresh_tokens` (versioned by hash; revocation writes a
//! newer version) and `auth_audit` (append-only, newest-first by time and id).

use clickhouse::Row;
use crm_schemas::{AuthAuditEntry, RefreshToken};
use crm_store::{Page, Result};
use serde::Serialize;

use super::{encode, now_nanos, ClickHouseStore, NewestFirst};

pub(crate) const MIGRATION: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS refresh_tokens (key String, username String, family_id String, version UInt64, body String)
     ENGINE = ReplacingMergeTree(version) ORDER BY key",
    "CREATE TABLE IF NOT EXISTS auth_audit (at DateTime64(3, 'UTC'), id String, username String, body String)
     ENGINE = MergeTree ORDER BY (at, id)",
];

#[derive(Row, Serialize)]
struct TokenRow {
    key: String,
    username: String,
    family_id: String,
    version: u64,
    body: String,
}

#[derive(Row, Serialize)]
struct AuditRow {
    at: i64,
    id: String,
    username: String,
    body: String,
}

fn token_row(token: &RefreshToken) -> Result<TokenRow> {
    Ok(TokenRow {
        key: token.token_hash.clone(),
        username: token.username.clone(),
        family_id: token.family_id.clone(),
        version: now_nanos(),
        body: encode(token)?,
    })
}

impl ClickHouseStore {
    pub(super) async fn save_refresh_token(&self, token: &RefreshToken) -> Result<()> {
        self.insert_rows("refresh_tokens", &[token_row(token)?]).await
    }

    pub(super) async fn get_refresh_token(&self, hash: &str) -> Result<Option<RefreshToken>> {
        let query = self.client.query("SELECT body FROM refresh_tokens FINAL WHERE key = ?").bind(hash);
        Ok(self.bodies(query).await?.into_iter().next())
    }

    pub(super) async fn revoke_tokens(&self, username: &str, family: Option<&str>, at_ms: i64) -> Result<usize> {
        let query = match family {
            Some(family) => self.client.query("SELECT body FROM refresh_tokens FINAL WHERE username = ? AND family_id = ?").bind(username).bind(family),
            None => self.client.query("SELECT body FROM refresh_tokens FINAL WHERE username = ?").bind(username),
        };
        let tokens: Vec<RefreshToken> = self.bodies(query).await?;
        let rows = tokens
            .into_iter()
            .filter(|t| t.revoked_at_ms.is_none())
            .map(|mut t| {
                t.revoked_at_ms = Some(at_ms);
                token_row(&t)
            })
            .collect::<Result<Vec<_>>>()?;
        if !rows.is_empty() {
            self.insert_rows("refresh_tokens", &rows).await?;
        }
        Ok(rows.len())
    }

    pub(super) async fn insert_auth_audit(&self, entry: &AuthAuditEntry) -> Result<()> {
        let row = AuditRow { at: entry.at_ms, id: entry.id.as_u128().to_string(), username: entry.username.clone(), body: encode(entry)? };
        self.insert_rows("auth_audit", &[row]).await.map_err(|e| {
            tracing::warn!(error = %e, "auth audit insert failed");
            e
        })
    }

    pub(super) async fn get_auth_audit(&self, username: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<AuthAuditEntry>> {
        match username {
            Some(name) => self.newest_first(&NewestFirst { table: "auth_audit", time: "at", id: "id", filter: "username = ?" }, &[name], limit, cursor).await,
            None => self.newest_first(&NewestFirst { table: "auth_audit", time: "at", id: "id", filter: "1 = 1" }, &[], limit, cursor).await,
        }
    }
}
