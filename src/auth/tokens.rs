//! Tokens: short-lived HS256 access JWTs that any holder of the key verifies without a database,
//! and opaque UUIDv4 refresh tokens that the store keeps only as SHA-256 digests.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{SessionId, UserId};

/// The only `token_type` an access token carries; a refresh-typed JWT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TokenType {
    Access,
}

/// The claims of an access token (SimpleJWT's, plus `sid` for the session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    token_type: TokenType,
    pub user_id: UserId,
    pub sid: SessionId,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

/// Why an access token was refused; the client is told only that it is not valid.
#[derive(Debug, thiserror::Error)]
#[error("access token refused: {0}")]
pub struct InvalidAccessToken(#[from] jsonwebtoken::errors::Error);

/// The signing key in both of its forms, and the rules a token must pass.
pub struct AccessTokenKeys {
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl AccessTokenKeys {
    pub fn hs256(secret: &[u8]) -> AccessTokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        // A token lives 30 s by default: the library's 60 s of leeway would triple its life.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat"]);
        AccessTokenKeys {
            header: Header::new(Algorithm::HS256),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A signed access token for `user_id`'s session `sid`, valid from `now` for `lifetime_secs`.
    pub fn issue(&self, user_id: UserId, sid: SessionId, now: i64, lifetime_secs: i64) -> String {
        let claims = AccessClaims {
            token_type: TokenType::Access,
            user_id,
            sid,
            jti: Uuid::new_v4().simple().to_string(),
            iat: now,
            exp: now + lifetime_secs,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// The claims of `token` if it is an unexpired access token signed by this key with HS256.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, InvalidAccessToken> {
        Ok(jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)?.claims)
    }
}

/// An opaque refresh token. Only its holder knows it; the store keeps its [`digest`](Self::digest).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RefreshToken(Uuid);

/// The SHA-256 of a refresh token: a stolen database yields no usable token.
pub type RefreshDigest = [u8; 32];

impl RefreshToken {
    pub fn generate() -> RefreshToken {
        RefreshToken(Uuid::new_v4())
    }

    /// Any spelling of a UUID that Python's `uuid.UUID` (and so the original) accepts.
    pub fn parse(raw: &str) -> Option<RefreshToken> {
        Uuid::try_parse(raw).ok().map(RefreshToken)
    }

    /// Digest of the canonical form, so every spelling of one token is the same token.
    pub fn digest(&self) -> RefreshDigest {
        Sha256::digest(self.0.hyphenated().encode_lower(&mut Uuid::encode_buffer())).into()
    }

    /// The token as handed to its owner; nothing else should ever print it.
    pub fn reveal(&self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let keys = AccessTokenKeys::hs256(SECRET);
        let sid = Uuid::new_v4();
        let claims = keys.verify(&keys.issue(7, sid, now(), 30)).unwrap();
        assert_eq!((claims.user_id, claims.sid), (7, sid));
        assert_eq!(claims.exp - claims.iat, 30);
    }

    fn forge(header: Header, claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn claims(token_type: &str, exp: i64) -> serde_json::Value {
        json!({"token_type": token_type, "user_id": 1, "sid": Uuid::new_v4(),
               "jti": "x", "iat": now(), "exp": exp})
    }

    #[test]
    fn expired_refresh_typed_foreign_and_other_algorithm_tokens_are_refused() {
        let keys = AccessTokenKeys::hs256(SECRET);
        let later = now() + 30;
        let refused = [
            forge(Header::default(), claims("access", now() - 1), SECRET),
            forge(Header::default(), claims("refresh", later), SECRET),
            forge(
                Header::default(),
                claims("access", later),
                b"another key, just as long......",
            ),
            forge(
                Header::new(Algorithm::HS512),
                claims("access", later),
                SECRET,
            ),
        ];
        for token in refused {
            assert!(keys.verify(&token).is_err(), "{token}");
        }
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let keys = AccessTokenKeys::hs256(SECRET);
        let signed = keys.issue(1, Uuid::new_v4(), now(), 30);
        let payload = signed.split('.').nth(1).unwrap();
        // base64url of {"alg":"none","typ":"JWT"}
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert!(keys.verify(&unsigned).is_err());
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let keys = AccessTokenKeys::hs256(SECRET);
        let token = keys.issue(1, Uuid::new_v4(), now(), 30);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged_claims = claims("access", now() + 3600).to_string();
        parts[1] = base64_url(forged_claims.as_bytes());
        assert!(keys.verify(&parts.join(".")).is_err());
    }

    fn base64_url(bytes: &[u8]) -> String {
        // Encoding through a token of our own keeps the test free of a base64 dependency.
        let token = forge(
            Header::default(),
            serde_json::from_slice(bytes).unwrap(),
            SECRET,
        );
        token.split('.').nth(1).unwrap().to_owned()
    }

    #[test]
    fn every_spelling_of_a_refresh_token_has_one_digest() {
        let token = RefreshToken::generate();
        let canonical = token.reveal();
        let upper = canonical.to_uppercase();
        let simple = canonical.replace('-', "");
        let braced = format!("{{{canonical}}}");
        for spelling in [upper, simple, braced] {
            assert_eq!(
                RefreshToken::parse(&spelling).unwrap().digest(),
                token.digest()
            );
        }
        assert!(RefreshToken::parse("not-a-uuid").is_none());
    }

    #[test]
    fn a_refresh_token_never_shows_in_debug_output() {
        let token = RefreshToken::generate();
        assert!(!format!("{token:?}").contains(&token.reveal()));
    }
}
