//! The second factor: TOTP (RFC 6238 over RFC 4226: HMAC-SHA1, 30-second steps, 6 digits, what
//! every authenticator app speaks) with ten one-time recovery codes.
//!
//! * A user enrols for themself (`POST /auth/totp/enroll`: a new secret and its `otpauth://`
//!   URI) and confirms with a first code (`POST /auth/totp/confirm`), which turns the factor on
//!   and answers the recovery codes once. Only their SHA-256 is kept.
//! * With the factor on, a correct password answers a challenge instead of tokens
//!   (`{"second_factor":"totp","challenge":…}`); `POST /auth/login/totp` with the challenge and a
//!   code (or a recovery code) finishes the login. A challenge is stateless (HMAC under a key
//!   derived from the token secret, so any API process sharing the store accepts it), lasts
//!   five minutes and stops working when the user's token version moves.
//! * Codes of the previous, current and next step are accepted (clock skew of ±30 s); a code
//!   of a step at or before the last one accepted is refused (a replayed code). Wrong codes count
//!   towards the same lockout as wrong passwords.
//! * An admin may require the factor (`PUT /auth/policy`): a user without it then gets an
//!   enrolment challenge at login and can only enrol (with the challenge) before signing in.
//!   An admin resets a lost factor with `PATCH /users/{name}` `{"reset_totp": true}`.
//! * The secret is sealed with the secrets key when one is configured.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use crm_schemas::{Totp, User};
use rand::RngCore;
use ring::hmac;
use sha2::{Digest, Sha256};

use crate::ApiError;

pub const STEP_SECS: u64 = 30;
pub const CHALLENGE_TTL_SECS: u64 = 300;
const RECOVERY_CODES: usize = 10;
const SECRET_BYTES: usize = 20;

/// The 6-digit code of `secret` for time step `step` (RFC 4226 dynamic truncation).
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let digest = hmac::sign(&key, &step.to_be_bytes());
    let bytes = digest.as_ref();
    let offset = usize::from(bytes[bytes.len() - 1] & 0x0f);
    let value = u32::from_be_bytes([bytes[offset] & 0x7f, bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]]);
    value % 1_000_000
}

/// RFC 4648 base32 without padding (what `otpauth://` URIs carry).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes RFC 4648 base32 (upper case, no padding; spaces ignored), as authenticator apps read
/// the key; `None` on any other character.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes().filter(|c| *c != b' ') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

/// The step a code is accepted for at `now_secs`, if it matches one of the three steps around
/// now and is newer than `last_step`.
pub fn accepted_step(secret: &[u8], code: &str, now_secs: u64, last_step: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = code.parse().ok()?;
    let now = now_secs / STEP_SECS;
    [now.saturating_sub(1), now, now + 1].into_iter().find(|&step| step > last_step && code_at(secret, step) == wanted)
}

/// A new factor for `user` (not confirmed yet) and the secret in base32 for the app.
pub fn enrol(user: &User, secrets: Option<&crm_service::SecretKeys>, now_ms: i64) -> (Totp, String) {
    let mut secret = [0u8; SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut secret);
    let stored = match secrets {
        Some(keys) => keys.seal(&secret, &context(&user.username)),
        None => STANDARD.encode(secret),
    };
    (Totp { secret: stored, confirmed: false, last_step: 0, recovery_hashes: Vec::new(), enrolled_at_ms: now_ms }, base32(&secret))
}

pub(crate) fn context(username: &str) -> String {
    format!("totp:{username}")
}

/// The raw secret of a stored factor.
pub fn secret_of(username: &str, totp: &Totp, secrets: Option<&crm_service::SecretKeys>) -> Result<Vec<u8>, ApiError> {
    if crm_service::SecretKeys::is_sealed(totp.secret.as_bytes()) {
        let keys = secrets.ok_or_else(|| ApiError::Internal("a second factor is sealed and no secrets key is configured".into()))?;
        return keys.open(totp.secret.as_bytes(), &context(username)).map(|o| o.plaintext).map_err(|e| ApiError::Internal(format!("the second factor of {username}: {e}")));
    }
    STANDARD.decode(&totp.secret).map_err(|_| ApiError::Internal(format!("the second factor of {username} is damaged")))
}

/// `otpauth://totp/crm:{user}?secret=…&issuer=crm` for authenticator apps.
pub fn uri(username: &str, secret_base32: &str) -> String {
    let label: String = form_urlencoded::byte_serialize(format!("crm:{username}").as_bytes()).collect();
    format!("otpauth://totp/{label}?secret={secret_base32}&issuer=crm&algorithm=SHA1&digits=6&period={STEP_SECS}")
}

/// Ten fresh recovery codes (`xxxxx-xxxxx`, base32) and the hashes to keep.
pub fn recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 7];
            rand::thread_rng().fill_bytes(&mut bytes);
            let text = base32(&bytes).to_lowercase();
            format!("{}-{}", &text[..5], &text[5..10])
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

/// The hash a recovery code is kept as (case, spaces and dashes ignored).
pub fn recovery_hash(code: &str) -> String {
    let normal: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    Sha256::digest(normal.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// What a challenge lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    /// Finish a login with a code.
    Code,
    /// Enrol (the policy requires a factor the user does not have yet), then finish the login.
    Enrol,
}

impl ChallengeKind {
    fn tag(self) -> &'static str {
        match self {
            ChallengeKind::Code => "code",
            ChallengeKind::Enrol => "enrol",
        }
    }
}

/// Signs and checks challenges with a key derived from the token secret.
pub struct Challenges {
    key: hmac::Key,
}

impl Challenges {
    pub fn from_secret(secret: &[u8]) -> Challenges {
        let mut material = b"crm totp challenge v1:".to_vec();
        material.extend_from_slice(secret);
        Challenges { key: hmac::Key::new(hmac::HMAC_SHA256, &material) }
    }

    pub fn issue(&self, user: &User, kind: ChallengeKind, now_secs: u64) -> String {
        let payload = format!("v1|{}|{}|{}|{}", kind.tag(), now_secs + CHALLENGE_TTL_SECS, user.token_version, user.username);
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// (username, token version) of a valid, unexpired challenge of `kind`.
    pub fn check(&self, challenge: &str, kind: ChallengeKind, now_secs: u64) -> Result<(String, u64), ApiError> {
        let invalid = ApiError::InvalidToken("the sign-in challenge is not valid; sign in again");
        if challenge.len() > 1024 {
            return Err(invalid);
        }
        let (payload, tag) = challenge.split_once('.').ok_or(ApiError::InvalidToken("the sign-in challenge is not valid; sign in again"))?;
        let (Ok(payload), Ok(tag)) = (URL_SAFE_NO_PAD.decode(payload), URL_SAFE_NO_PAD.decode(tag)) else { return Err(invalid) };
        if hmac::verify(&self.key, &payload, &tag).is_err() {
            return Err(invalid);
        }
        let text = String::from_utf8(payload).map_err(|_| ApiError::InvalidToken("the sign-in challenge is not valid; sign in again"))?;
        let mut parts = text.splitn(5, '|');
        let (Some("v1"), Some(tag), Some(expires), Some(version), Some(username)) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) else { return Err(invalid) };
        if tag != kind.tag() {
            return Err(invalid);
        }
        let (Ok(expires), Ok(version)) = (expires.parse::<u64>(), version.parse::<u64>()) else { return Err(invalid) };
        if expires <= now_secs {
            return Err(ApiError::InvalidToken("the sign-in challenge expired; sign in again"));
        }
        Ok((username.to_owned(), version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_rfc_6238_vectors() {
        // RFC 6238 appendix B, SHA-1 seed "12345678901234567890", 8 digits; the 6-digit code is
        // the last six of each.
        let seed = b"12345678901234567890";
        for (time, eight) in [(59u64, 94_287_082u32), (1_111_111_109, 7_081_804), (1_111_111_111, 14_050_471), (1_234_567_890, 89_005_924), (2_000_000_000, 69_279_037)] {
            assert_eq!(code_at(seed, time / STEP_SECS), eight % 1_000_000, "t={time}");
        }
        assert_eq!(base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32_decode("GEZD GNBV GY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(), b"12345678901234567890");
        assert_eq!(base32_decode(&base32(b"any bytes \x00\xff")).unwrap(), b"any bytes \x00\xff");
        assert_eq!(base32_decode("ab"), None, "lower case is not what the server hands out");
    }

    #[test]
    fn skew_replay_and_malformed_codes() {
        let secret = b"0123456789abcdefghij";
        let now = 1_800_000_015;
        let step = now / STEP_SECS;
        let code = |s: u64| format!("{:06}", code_at(secret, s));
        assert_eq!(accepted_step(secret, &code(step), now, 0), Some(step));
        assert_eq!(accepted_step(secret, &code(step - 1), now, 0), Some(step - 1), "30 s behind");
        assert_eq!(accepted_step(secret, &code(step + 1), now, 0), Some(step + 1), "30 s ahead");
        assert_eq!(accepted_step(secret, &code(step - 2), now, 0), None, "60 s behind");
        assert_eq!(accepted_step(secret, &code(step + 2), now, 0), None);
        assert_eq!(accepted_step(secret, &code(step), now, step), None, "the same code again");
        assert_eq!(accepted_step(secret, &code(step - 1), now, step), None, "an older code after a newer one");
        for bad in ["", "12345", "1234567", "12a456", "١٢٣٤٥٦", "123 456", &"9".repeat(10_000)] {
            assert_eq!(accepted_step(secret, bad, now, 0), None, "{bad:?}");
        }
        assert_eq!(accepted_step(secret, &format!(" {} ", code(step)), now, 0), Some(step), "spaces around are fine");
    }

    #[test]
    fn challenges_expire_are_bound_to_their_kind_and_cannot_be_forged() {
        let challenges = Challenges::from_secret(b"secret");
        let user = User { username: "ada".into(), password_hash: String::new(), role: crm_schemas::Role::Admin, created_at_ms: 0, disabled: false, token_version: 4, totp: None };
        let issued = challenges.issue(&user, ChallengeKind::Code, 1_000);
        assert_eq!(challenges.check(&issued, ChallengeKind::Code, 1_100).unwrap(), ("ada".to_owned(), 4));
        assert!(challenges.check(&issued, ChallengeKind::Code, 1_000 + CHALLENGE_TTL_SECS).is_err(), "expired");
        assert!(challenges.check(&issued, ChallengeKind::Enrol, 1_100).is_err(), "another kind");
        assert!(Challenges::from_secret(b"other").check(&issued, ChallengeKind::Code, 1_100).is_err(), "another server's secret");
        let (payload, tag) = issued.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap().replace("|ada", "|admin"));
        assert!(challenges.check(&format!("{forged}.{tag}"), ChallengeKind::Code, 1_100).is_err(), "a changed user name");
        for junk in ["", ".", "a.b", "%%%.%%%", &"a".repeat(5_000)] {
            assert!(challenges.check(junk, ChallengeKind::Code, 1_100).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalised() {
        let (codes, hashes) = recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(hashes.iter().collect::<std::collections::HashSet<_>>().len(), 10);
        assert_eq!(recovery_hash(&codes[0].to_uppercase().replace('-', " ")), hashes[0]);
        assert!(uri("ada@x", "ABC").starts_with("otpauth://totp/crm%3Aada%40x?secret=ABC&issuer=crm"));
    }
}
