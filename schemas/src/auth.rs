//! Authentication records: refresh tokens (stored by hash, grouped in rotation families) and the
//! authentication audit log (logins, refreshes, logouts, lockouts, user changes).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A refresh token as stored: only its SHA-256 is kept. Every use rotates it (the old one gets
/// `rotated_at_ms`, a new one joins the same family); presenting a rotated token again means it
/// leaked, and the whole family is revoked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub family_id: String,
    pub username: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    #[serde(default)]
    pub rotated_at_ms: Option<i64>,
    #[serde(default)]
    pub revoked_at_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthEvent {
    LoginSucceeded,
    LoginFailed,
    /// A login refused because the account or address is locked out after failures.
    LoginLocked,
    Refreshed,
    /// An unknown, expired or revoked refresh token was presented.
    RefreshRejected,
    /// A rotated refresh token was presented again: its family was revoked.
    RefreshReused,
    Logout,
    UserCreated,
    UserUpdated,
    /// A data subject erased (`detail`: site and erasure id).
    SubjectErased,
    /// A subject access export made (`detail`: site and visitors).
    SubjectExported,
    /// A second factor enrolled (confirmed with a first code), or reset by an admin.
    TotpEnrolled,
    TotpReset,
    /// A wrong, replayed or expired second-factor code, or an invalid challenge.
    TotpFailed,
    /// A login finished with a recovery code instead of a TOTP code (`detail`: codes left).
    TotpRecoveryUsed,
    /// The policy requiring a second factor changed (`detail`: on or off).
    PolicyChanged,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuthAuditEntry {
    pub id: Uuid,
    pub at_ms: i64,
    pub event: AuthEvent,
    /// The account concerned (as typed, for failed logins).
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Who did it, when not the user themself (user administration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
