//! Revocation of live access tokens. An access token names the user's token version (`ver`) and
//! the refresh token it was granted with (`rth`, a SHA-256 hash). Every request checks both against
//! the store: the user must exist, be enabled and still be at that version (disable, role change,
//! password change and "log out everywhere" bump it), and the refresh token must not be revoked
//! (logout of one sign-in and refresh-token reuse revoke its family). The role a request acts with
//! is the stored one, never the token's.
//!
//! Store reads are cached for `ttl` (default 1 s) so a busy API does not read the user table per
//! request. A change made through this process empties its cache at once; another `crm api`
//! process sharing the store sees it within `ttl`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crm_schemas::{Role, User};
use crm_store::Store;
use parking_lot::Mutex;

use crate::ApiError;

/// How long a cached user or refresh-token answer is trusted.
pub const DEFAULT_REVOCATION_TTL: Duration = Duration::from_secs(1);
/// Entries kept before the cache is emptied (bounds memory under a flood of distinct tokens).
const MAX_ENTRIES: usize = 50_000;

#[derive(Clone)]
struct UserEntry {
    /// `None`: no such user.
    state: Option<(u64, Role, bool)>,
    at: Instant,
}

#[derive(Clone, Copy)]
struct TokenEntry {
    live: bool,
    at: Instant,
}

/// The per-process cache of what revocation checks read.
pub struct TokenGate {
    ttl: Duration,
    users: Mutex<HashMap<String, UserEntry>>,
    tokens: Mutex<HashMap<String, TokenEntry>>,
}

impl Default for TokenGate {
    fn default() -> TokenGate {
        TokenGate::new(DEFAULT_REVOCATION_TTL)
    }
}

impl TokenGate {
    pub fn new(ttl: Duration) -> TokenGate {
        TokenGate { ttl, users: Mutex::default(), tokens: Mutex::default() }
    }

    /// The role `username` acts with now, if a token of version `version` granted with the
    /// refresh token `refresh_hash` is still live.
    pub async fn check(&self, store: &dyn Store, username: &str, version: u64, refresh_hash: &str) -> Result<Role, ApiError> {
        let (current, role, disabled) = self.user_state(store, username).await?.ok_or(ApiError::InvalidToken("token was revoked"))?;
        if disabled || current != version {
            return Err(ApiError::InvalidToken("token was revoked"));
        }
        if !self.refresh_live(store, username, refresh_hash).await? {
            return Err(ApiError::InvalidToken("token was revoked"));
        }
        Ok(role)
    }

    async fn user_state(&self, store: &dyn Store, username: &str) -> Result<Option<(u64, Role, bool)>, ApiError> {
        let now = Instant::now();
        if let Some(entry) = self.users.lock().get(username).filter(|e| now.duration_since(e.at) < self.ttl) {
            return Ok(entry.state);
        }
        let state = store.user(username).await?.map(|u: User| (u.token_version, u.role, u.disabled));
        let mut users = self.users.lock();
        if users.len() >= MAX_ENTRIES {
            users.clear();
        }
        users.insert(username.to_owned(), UserEntry { state, at: now });
        Ok(state)
    }

    async fn refresh_live(&self, store: &dyn Store, username: &str, hash: &str) -> Result<bool, ApiError> {
        let now = Instant::now();
        if let Some(entry) = self.tokens.lock().get(hash).filter(|e| now.duration_since(e.at) < self.ttl) {
            return Ok(entry.live);
        }
        let live = store.refresh_token(hash).await?.is_some_and(|t| t.username == username && t.revoked_at_ms.is_none());
        let mut tokens = self.tokens.lock();
        if tokens.len() >= MAX_ENTRIES {
            tokens.clear();
        }
        tokens.insert(hash.to_owned(), TokenEntry { live, at: now });
        Ok(live)
    }

    /// Forgets what this process read about `username` (after changing the user record).
    pub fn forget_user(&self, username: &str) {
        self.users.lock().remove(username);
    }

    /// Forgets every cached refresh-token answer (after revoking tokens).
    pub fn forget_tokens(&self) {
        self.tokens.lock().clear();
    }
}
