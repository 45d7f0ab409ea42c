//! The embedded store's authentication tables: refresh tokens by hash, and the authentication
//! audit log, written twice — under the empty key (everyone) and under the username — so both
//! listings are a newest-first range scan.

use crm_schemas::{AuthAuditEntry, RefreshToken};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::{db_err, decode, encode, newest_first, EventKey};
use crate::{Page, Result};

const REFRESH_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("refresh_tokens");
const AUTH_AUDIT: TableDefinition<EventKey, &[u8]> = TableDefinition::new("auth_audit");
/// Tokens expired this long ago are deleted when tokens are revoked.
const EXPIRED_KEPT_MS: i64 = 7 * 86_400_000;

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(REFRESH_TOKENS).map_err(db_err)?;
    txn.open_table(AUTH_AUDIT).map_err(db_err)?;
    Ok(())
}

pub(super) fn put_token(db: &Database, token: &RefreshToken) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(REFRESH_TOKENS).map_err(db_err)?.insert(token.token_hash.as_str(), encode(token)?.as_slice()).map_err(db_err)?;
    txn.commit().map_err(db_err)
}

pub(super) fn token(db: &Database, hash: &str) -> Result<Option<RefreshToken>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(REFRESH_TOKENS).map_err(db_err)?;
    let found = table.get(hash).map_err(db_err)?;
    found.map(|v| decode(v.value())).transpose()
}

pub(super) fn revoke(db: &Database, username: &str, family: Option<&str>, at_ms: i64) -> Result<usize> {
    let txn = db.begin_write().map_err(db_err)?;
    let revoked = {
        let mut table = txn.open_table(REFRESH_TOKENS).map_err(db_err)?;
        let mut changed = Vec::new();
        let mut expired = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (key, value) = row.map_err(db_err)?;
            let mut token: RefreshToken = decode(value.value())?;
            if token.expires_at_ms < at_ms - EXPIRED_KEPT_MS {
                expired.push(key.value().to_owned());
            } else if token.username == username && token.revoked_at_ms.is_none() && family.is_none_or(|f| f == token.family_id) {
                token.revoked_at_ms = Some(at_ms);
                changed.push(token);
            }
        }
        for key in expired {
            table.remove(key.as_str()).map_err(db_err)?;
        }
        for token in &changed {
            table.insert(token.token_hash.as_str(), encode(token)?.as_slice()).map_err(db_err)?;
        }
        changed.len()
    };
    txn.commit().map_err(db_err)?;
    Ok(revoked)
}

pub(super) fn append_audit(db: &Database, entry: &AuthAuditEntry) -> Result<()> {
    let bytes = encode(entry)?;
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut table = txn.open_table(AUTH_AUDIT).map_err(db_err)?;
        let id = entry.id.as_u128();
        table.insert(("", entry.at_ms, id), bytes.as_slice()).map_err(db_err)?;
        table.insert((entry.username.as_str(), entry.at_ms, id), bytes.as_slice()).map_err(db_err)?;
    }
    txn.commit().map_err(db_err)
}

pub(super) fn audit(db: &Database, username: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<AuthAuditEntry>> {
    newest_first(db, AUTH_AUDIT, username.unwrap_or(""), limit, cursor, |e: &AuthAuditEntry| format!("{}:{}", e.at_ms, e.id.as_u128()))
}
