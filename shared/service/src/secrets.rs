//! Secrets at rest: values the store keeps that would let someone act as us (alert-webhook
//! signing secrets, the generated token secret) are sealed with ChaCha20-Poly1305 under a
//! 256-bit key the store never holds.
//!
//! A sealed value is text: `crm-sealed:v1:{key id}:{base64url(nonce ‖ ciphertext ‖ tag)}`. The
//! key id is the first 8 bytes of SHA-256 of the key, in hex, so a value names the key that
//! opens it without revealing it. The caller passes a context (which record the value belongs
//! to) as associated data, so a sealed value copied into another record does not open.
//!
//! Rotation: seal with a new current key while the old ones stay configured as previous keys
//! (they only open), re-seal everything (`crm secrets rotate`), then drop the old keys. A value
//! written before sealing existed (no prefix) opens as itself and is reported as not sealed, so
//! the caller can re-seal it.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "crm-sealed:v1:";
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{what} is not a secrets key: {reason} (expected {KEY_LEN} random bytes in base64, e.g. from `openssl rand -base64 32`)")]
    BadKey { what: String, reason: String },
    #[error("cannot read or write the secrets key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error("a secret was sealed with key {key_id}, which is not configured (set it as the current or a previous secrets key)")]
    UnknownKey { key_id: String },
    #[error("a sealed secret does not open: {0}")]
    Corrupt(String),
}

impl SecretError {
    /// Only a key file may become readable later; the rest needs an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SecretError::KeyFile { .. })
    }
}

struct Key {
    id: String,
    key: LessSafeKey,
}

impl Key {
    fn new(bytes: &[u8], what: &str) -> Result<Key, SecretError> {
        if bytes.len() != KEY_LEN {
            return Err(SecretError::BadKey { what: what.to_owned(), reason: format!("{} bytes", bytes.len()) });
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let id = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| SecretError::BadKey { what: what.to_owned(), reason: "rejected by the cipher".into() })?);
        Ok(Key { id, key })
    }
}

/// What [`SecretKeys::open`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub plaintext: Vec<u8>,
    /// Sealed with the current key; false for plaintext written before sealing or a value
    /// under a previous key: both should be sealed again.
    pub current: bool,
}

/// The current key (seals and opens) and previous keys (only open).
pub struct SecretKeys {
    current: Key,
    previous: Vec<Key>,
    random: SystemRandom,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let previous: Vec<&str> = self.previous.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("SecretKeys").field("current", &self.current.id).field("previous", &previous).finish()
    }
}

impl SecretKeys {
    pub fn new(current: &[u8], previous: &[Vec<u8>]) -> Result<SecretKeys, SecretError> {
        let current = Key::new(current, "the current secrets key")?;
        let previous = previous.iter().enumerate().map(|(i, k)| Key::new(k, &format!("previous secrets key {}", i + 1))).collect::<Result<_, _>>()?;
        Ok(SecretKeys { current, previous, random: SystemRandom::new() })
    }

    /// A key as written in a flag, variable or file: base64 of 32 bytes, surrounding
    /// whitespace ignored.
    pub fn parse_key(text: &str, what: &str) -> Result<Vec<u8>, SecretError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|e| SecretError::BadKey { what: what.to_owned(), reason: format!("not base64 ({e})") })?;
        if bytes.len() != KEY_LEN {
            return Err(SecretError::BadKey { what: what.to_owned(), reason: format!("{} bytes", bytes.len()) });
        }
        Ok(bytes)
    }

    /// Reads the key in `path`, or creates it with a fresh random key (mode 0600) when the
    /// file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Vec<u8>, SecretError> {
        let io = |e: std::io::Error| SecretError::KeyFile { path: path.display().to_string(), message: e.to_string() };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse_key(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; KEY_LEN];
                SystemRandom::new().fill(&mut key).map_err(|_| SecretError::KeyFile { path: path.display().to_string(), message: "no randomness".into() })?;
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                // Written whole under a name of this process's, then linked in only if no other
                // process (sharing the data directory) created the key first: then theirs is used.
                let tmp = path.with_extension(format!("key.{}.tmp", std::process::id()));
                let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
                file.write_all(format!("{}\n", STANDARD.encode(&key)).as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                let linked = std::fs::hard_link(&tmp, path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        if let Some(dir) = path.parent() {
                            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                        }
                        Ok(key)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(path),
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    pub fn is_sealed(stored: &[u8]) -> bool {
        stored.starts_with(PREFIX.as_bytes())
    }

    /// Seals `plaintext` for the record named by `context`.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).expect("the system random source works");
        let mut sealed = plaintext.to_vec();
        self.current.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut sealed).expect("a secret fits the cipher's limits");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.current.id, URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a stored value sealed for `context`; a value without the prefix is plaintext from
    /// before sealing and comes back as it is (`current: false`).
    pub fn open(&self, stored: &[u8], context: &str) -> Result<Opened, SecretError> {
        let Some(rest) = stored.strip_prefix(PREFIX.as_bytes()) else {
            return Ok(Opened { plaintext: stored.to_vec(), current: false });
        };
        let rest = std::str::from_utf8(rest).map_err(|_| SecretError::Corrupt("not text".into()))?;
        let (key_id, body) = rest.split_once(':').ok_or_else(|| SecretError::Corrupt("no key id".into()))?;
        let (key, current) = if key_id == self.current.id {
            (&self.current, true)
        } else {
            let key = self.previous.iter().find(|k| k.id == key_id).ok_or_else(|| SecretError::UnknownKey { key_id: key_id.chars().take(16).collect() })?;
            (key, false)
        };
        let mut bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| SecretError::Corrupt("not base64".into()))?;
        if bytes.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(SecretError::Corrupt("too short".into()));
        }
        let mut sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SecretError::Corrupt("bad nonce".into()))?;
        let plaintext = key.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed).map_err(|_| SecretError::Corrupt("authentication failed (altered, or sealed for another record)".into()))?;
        Ok(Opened { plaintext: plaintext.to_vec(), current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Vec<u8> {
        vec![byte; KEY_LEN]
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let keys = SecretKeys::new(&key(1), &[]).unwrap();
        let sealed = keys.seal(b"whsec-123", "alert_rule:demo/hot");
        assert!(sealed.starts_with("crm-sealed:v1:") && !sealed.contains("whsec"), "{sealed}");
        assert_ne!(sealed, keys.seal(b"whsec-123", "alert_rule:demo/hot"), "a fresh nonce per seal");
        assert_eq!(keys.open(sealed.as_bytes(), "alert_rule:demo/hot").unwrap(), Opened { plaintext: b"whsec-123".to_vec(), current: true });
        assert!(matches!(keys.open(sealed.as_bytes(), "alert_rule:demo/cold"), Err(SecretError::Corrupt(_))), "moved to another record");
        let other = SecretKeys::new(&key(2), &[]).unwrap();
        assert!(matches!(other.open(sealed.as_bytes(), "alert_rule:demo/hot"), Err(SecretError::UnknownKey { .. })));
        // Hostile stored values: flipped bits, truncation, junk after the prefix.
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(keys.open(&flipped, "alert_rule:demo/hot").is_err());
        assert!(matches!(keys.open(&sealed.as_bytes()[..30], "alert_rule:demo/hot"), Err(SecretError::Corrupt(_))));
        let id = keys.current_key_id().to_owned();
        for junk in [format!("crm-sealed:v1:{id}:!!!"), format!("crm-sealed:v1:{id}:AAAA"), "crm-sealed:v1:".to_owned(), "crm-sealed:v1:\u{0}:x".to_owned()] {
            assert!(keys.open(junk.as_bytes(), "c").is_err(), "{junk}");
        }
        assert!(matches!(keys.open(b"crm-sealed:v1:\xff\xfe", "c"), Err(SecretError::Corrupt(_))));
    }

    #[test]
    fn previous_keys_open_and_plaintext_from_before_passes_through() {
        let old = SecretKeys::new(&key(1), &[]).unwrap();
        let sealed = old.seal(b"s", "ctx");
        let rotated = SecretKeys::new(&key(2), &[key(1)]).unwrap();
        assert_eq!(rotated.open(sealed.as_bytes(), "ctx").unwrap(), Opened { plaintext: b"s".to_vec(), current: false });
        let resealed = rotated.seal(b"s", "ctx");
        assert!(rotated.open(resealed.as_bytes(), "ctx").unwrap().current);
        assert!(old.open(resealed.as_bytes(), "ctx").is_err(), "the old key alone no longer opens it");
        assert_eq!(rotated.open(b"legacy-plaintext", "ctx").unwrap(), Opened { plaintext: b"legacy-plaintext".to_vec(), current: false });
        assert!(!format!("{rotated:?}").contains("\\u{2}"), "Debug shows key ids only");
    }

    #[test]
    fn keys_are_checked_and_a_key_file_is_made_once() {
        assert!(matches!(SecretKeys::parse_key("c2hvcnQ=", "--secrets-key"), Err(SecretError::BadKey { .. })));
        assert!(matches!(SecretKeys::parse_key("not base64!", "--secrets-key"), Err(SecretError::BadKey { .. })));
        assert!(SecretKeys::new(&[0u8; 31], &[]).is_err());
        let good = STANDARD.encode(key(7));
        assert_eq!(SecretKeys::parse_key(&format!("  {good}\n"), "x").unwrap(), key(7));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let made = SecretKeys::load_or_create(&path).unwrap();
        assert_eq!(made.len(), KEY_LEN);
        assert_eq!(SecretKeys::load_or_create(&path).unwrap(), made, "read back, not replaced");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(SecretKeys::load_or_create(&path), Err(SecretError::BadKey { .. })), "a damaged key file is an error, never replaced");
    }
}
