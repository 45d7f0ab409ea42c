//! Authentication: argon2id password hashes, HS256 JWT access tokens (15 minutes) with issuer and
//! audience checks, the `AuthUser` extractor every protected handler takes, and the first-start
//! bootstrap (token secret and the initial admin with a random or operator-given password).

use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use crm_schemas::{Role, User};
use crm_store::Store;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::{ApiError, ApiState};

pub const ACCESS_TOKEN_TTL_SECS: u64 = 15 * 60;
const ISSUER: &str = "crm";
const AUDIENCE: &str = "crm-api";

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Second-factor challenges, under a key derived from the same secret.
    pub(crate) challenges: crate::totp::Challenges,
}

impl JwtKeys {
    pub fn from_secret(secret: &[u8]) -> JwtKeys {
        JwtKeys { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), challenges: crate::totp::Challenges::from_secret(secret) }
    }

    /// An access token for `user` at its current token version, granted with the refresh token
    /// whose hash is `refresh_hash`.
    pub fn issue(&self, user: &User, refresh_hash: &str, now_secs: u64) -> Result<String, ApiError> {
        let claims = Claims {
            sub: user.username.clone(),
            role: user.role,
            ver: user.token_version,
            rth: refresh_hash.to_owned(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now_secs,
            exp: now_secs + ACCESS_TOKEN_TTL_SECS,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| ApiError::Internal(e.to_string()))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        decode::<Claims>(token, &self.decoding, &validation).map(|data| data.claims).map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            ApiError::InvalidToken(match err.kind() {
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => "token was not issued for this API",
                ErrorKind::InvalidSignature => "token signature is invalid",
                ErrorKind::InvalidAlgorithm => "token algorithm is not accepted",
                _ => "token is malformed",
            })
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// The role at issue time (informational: requests act with the stored role).
    pub role: Role,
    /// The user's token version at issue time (`User::token_version`).
    pub ver: u64,
    /// SHA-256 (hex) of the refresh token this access token was granted with.
    pub rth: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

/// The authenticated caller, extracted from `Authorization: Bearer <jwt>`.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub username: String,
    pub role: Role,
}

impl FromRequestParts<ApiState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<AuthUser, ApiError> {
        let user = bearer_user(&parts.headers, state).await?;
        state.limits.check_user(&user.username)?;
        Ok(user)
    }
}

/// The caller of a `Authorization: Bearer <jwt>` header: a valid signature, and a token that
/// has not been revoked since (see [`crate::revocation`]), acting with the stored role.
pub async fn bearer_user(headers: &axum::http::HeaderMap, state: &ApiState) -> Result<AuthUser, ApiError> {
    let header = headers.get(axum::http::header::AUTHORIZATION).ok_or(ApiError::Unauthorized)?;
    let text = header.to_str().map_err(|_| ApiError::InvalidToken("authorization header is not text"))?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or(ApiError::InvalidToken("use the Bearer scheme"))?;
    let claims = state.keys.verify(token.trim())?;
    let role = state.token_gate.check(state.store.as_ref(), &claims.sub, claims.ver, &claims.rth).await?;
    Ok(AuthUser { username: claims.sub, role })
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()).unwrap_or(false)
}

/// An argon2id hash of a random string, used to equalise timing for unknown users.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J7ELo5bUKoJJmG/ly2Rq0ZsLS5jiKtB4fYMjUo4HVKY";

/// What the first start created, for the binary to report once.
pub struct Bootstrap {
    pub keys: JwtKeys,
    /// `Some((username, password))` when the admin was created with a generated password.
    pub generated_admin: Option<(String, String)>,
}

/// Loads (or creates) the token secret and makes sure an admin user exists.
pub async fn bootstrap(store: &dyn Store, jwt_secret: Option<&str>, admin_password: Option<&str>, secrets: Option<&crm_service::SecretKeys>) -> Result<Bootstrap, ApiError> {
    let secret = match jwt_secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => match crate::secrets::stored_jwt_secret(store, secrets).await? {
            Some(secret) => secret,
            None => {
                let mut secret = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut secret);
                crate::secrets::put_jwt_secret(store, &secret, secrets).await?;
                secret
            }
        },
    };
    let mut generated_admin = None;
    if store.users().await?.is_empty() {
        let (password, generated) = match admin_password {
            Some(password) => (password.to_owned(), false),
            None => (rand::thread_rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect::<String>(), true),
        };
        let user = User { username: "admin".into(), password_hash: hash_password(&password)?, role: Role::Admin, created_at_ms: now_ms(), disabled: false, token_version: 0, totp: None };
        store.put_user(&user).await?;
        if generated {
            generated_admin = Some(("admin".to_owned(), password));
        }
    }
    Ok(Bootstrap { keys: JwtKeys::from_secret(&secret), generated_admin })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    #[test]
    fn tokens_verify_and_hostile_tokens_are_refused() {
        let keys = JwtKeys::from_secret(b"secret-one");
        let now = now_secs();
        let ada = User { username: "ada".into(), password_hash: String::new(), role: Role::Admin, created_at_ms: 0, disabled: false, token_version: 3, totp: None };
        let token = keys.issue(&ada, "feed", now).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role, claims.ver, claims.rth.as_str()), ("ada", Role::Admin, 3, "feed"));

        let expired = keys.issue(&ada, "feed", now - 3600).unwrap();
        assert!(matches!(keys.verify(&expired), Err(ApiError::InvalidToken("token expired"))));

        let other = JwtKeys::from_secret(b"secret-two");
        assert!(matches!(other.verify(&token), Err(ApiError::InvalidToken("token signature is invalid"))));

        let mut parts: Vec<&str> = token.split('.').collect();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        parts[0] = &none_header;
        let alg_none = format!("{}.{}.", parts[0], parts[1]);
        assert!(keys.verify(&alg_none).is_err(), "alg none must be refused");

        let payload = URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap();
        let tampered_claims = String::from_utf8(payload).unwrap().replace("\"admin\"", "\"sales_rep\"");
        let segments: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", segments[0], URL_SAFE_NO_PAD.encode(tampered_claims), segments[2]);
        assert!(keys.verify(&tampered).is_err(), "tampered payload must be refused");

        let foreign = encode(
            &Header::new(Algorithm::HS256),
            &Claims { sub: "x".into(), role: Role::Admin, ver: 0, rth: String::new(), iss: "someone-else".into(), aud: AUDIENCE.into(), iat: now, exp: now + 60, jti: "j".into() },
            &EncodingKey::from_secret(b"secret-one"),
        )
        .unwrap();
        assert!(matches!(keys.verify(&foreign), Err(ApiError::InvalidToken("token was not issued for this API"))));
        assert!(keys.verify("not.a.jwt").is_err());
    }

    #[test]
    fn password_hashes_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("anything", DUMMY_HASH));
        assert!(!verify_password("x", "not a hash"));
    }
}
