//! Tokens: short-lived HS256 access JWTs that any holder of the key verifies without a database,
//! and opaque UUIDv4 refresh tokens that the store keeps only as SHA-256 digests.

use std::fmt;

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{RefreshDigest, SessionId, UserId};

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
pub enum InvalidAccessToken {
    #[error("access token refused: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("access token signed by no key we hold")]
    UnknownKey,
    #[error("access token expired")]
    Expired,
}

/// One HS256 key and the id (`kid`) that access tokens signed with it carry.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub secret: Vec<u8>,
}

impl SigningKey {
    /// A key whose id is derived from the secret, so every instance configured with the same
    /// secret names it alike without sharing anything else.
    pub fn from_secret(secret: &[u8]) -> SigningKey {
        let kid = hex::encode(&Sha256::digest(secret)[..8]);
        SigningKey {
            kid,
            secret: secret.to_vec(),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <redacted>)", self.kid)
    }
}

/// The keys in force: the newest signs; every one verifies, so tokens signed before a rotation
/// stay valid until they expire.
pub struct Keyring {
    header: Header,
    encoding: EncodingKey,
    decoding: Vec<(String, DecodingKey)>,
    validation: Validation,
}

impl Keyring {
    /// `keys` newest first; there must be at least one.
    pub fn hs256(keys: &[SigningKey]) -> Keyring {
        let newest = keys.first().expect("a keyring holds at least one key");
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the service's clock (below), not the library's reading of
        // the system time; the claims must still be there.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iat"]);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(newest.kid.clone());
        Keyring {
            header,
            encoding: EncodingKey::from_secret(&newest.secret),
            decoding: keys
                .iter()
                .map(|key| (key.kid.clone(), DecodingKey::from_secret(&key.secret)))
                .collect(),
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

    /// The claims of `token` if it is an access token signed with HS256 by one of our keys,
    /// named by its `kid`, and unexpired at `now`. No leeway: a token lives 30 s by default,
    /// and the usual 60 s would triple its life.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, InvalidAccessToken> {
        let claims = self.verify_signed(token)?;
        if claims.exp <= now {
            return Err(InvalidAccessToken::Expired);
        }
        Ok(claims)
    }

    fn verify_signed(&self, token: &str) -> Result<AccessClaims, InvalidAccessToken> {
        // With one key (no rotation under way), decoding reads the header once, not twice.
        if let [(kid, key)] = self.decoding.as_slice() {
            let token = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)?;
            return match token.header.kid {
                Some(named) if named == *kid => Ok(token.claims),
                _ => Err(InvalidAccessToken::UnknownKey),
            };
        }
        let kid = jsonwebtoken::decode_header(token)?
            .kid
            .ok_or(InvalidAccessToken::UnknownKey)?;
        let (_, key) = self
            .decoding
            .iter()
            .find(|(known, _)| *known == kid)
            .ok_or(InvalidAccessToken::UnknownKey)?;
        Ok(jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)?.claims)
    }
}

/// An opaque refresh token. Only its holder knows it; the store keeps its [`digest`](Self::digest).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RefreshToken(Uuid);

impl RefreshToken {
    pub fn generate() -> RefreshToken {
        RefreshToken(Uuid::new_v4())
    }

    /// Any spelling of a UUID that Python's `uuid.UUID` (and so the original) accepts.
    pub fn parse(raw: &str) -> Option<RefreshToken> {
        Uuid::try_parse(raw).ok().map(RefreshToken)
    }

    /// The token that replaces this one at rotation. Derived, not drawn: a retry of the same
    /// rotation (see the retry grace) finds the same successor, which the store only knows by
    /// its digest. `key` is a secret of this service alone (never an access-token key, which
    /// other services may hold): with it and one token, the whole chain would follow.
    pub fn successor(&self, key: &[u8]) -> RefreshToken {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(b"refresh-token-successor:");
        mac.update(self.0.as_bytes());
        let bytes: [u8; 16] = mac.finalize().into_bytes()[..16]
            .try_into()
            .expect("SHA-256 is longer than 16 bytes");
        RefreshToken(uuid::Builder::from_random_bytes(bytes).into_uuid())
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
        let keys = Keyring::hs256(&[SigningKey::from_secret(SECRET)]);
        let sid = Uuid::new_v4();
        let claims = keys.verify(&keys.issue(7, sid, now(), 30), now()).unwrap();
        assert_eq!((claims.user_id, claims.sid), (7, sid));
        assert_eq!(claims.exp - claims.iat, 30);
    }

    /// A token that names our key's id, whatever it is signed with: only the signature,
    /// algorithm or claims can make it fail.
    fn forge(mut header: Header, claims: serde_json::Value, secret: &[u8]) -> String {
        header.kid = Some(SigningKey::from_secret(SECRET).kid);
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn a_well_forged_token_passes_so_the_refusals_below_mean_something() {
        let keys = Keyring::hs256(&[SigningKey::from_secret(SECRET)]);
        let token = forge(Header::default(), claims("access", now() + 30), SECRET);
        assert!(keys.verify(&token, now()).is_ok());
    }

    #[test]
    fn tokens_of_a_previous_key_verify_and_new_ones_use_the_newest() {
        let old = SigningKey::from_secret(b"the previous key, long enough......");
        let new = SigningKey::from_secret(SECRET);
        let before = Keyring::hs256(std::slice::from_ref(&old));
        let after = Keyring::hs256(&[new.clone(), old]);
        let old_token = before.issue(1, Uuid::new_v4(), now(), 30);
        let new_token = after.issue(1, Uuid::new_v4(), now(), 30);
        assert!(after.verify(&old_token, now()).is_ok());
        assert_eq!(
            jsonwebtoken::decode_header(&new_token).unwrap().kid,
            Some(new.kid)
        );
        assert!(
            before.verify(&new_token, now()).is_err(),
            "an unknown kid is refused"
        );
    }

    #[test]
    fn a_successor_is_derived_the_same_way_twice_and_differs_per_token() {
        let (a, b) = (RefreshToken::generate(), RefreshToken::generate());
        assert_eq!(a.successor(SECRET).digest(), a.successor(SECRET).digest());
        assert_ne!(a.successor(SECRET).digest(), b.successor(SECRET).digest());
        assert_ne!(
            a.successor(SECRET).digest(),
            a.successor(b"another key").digest()
        );
        assert_ne!(a.successor(SECRET).digest(), a.digest());
        assert_eq!(a.successor(SECRET).0.get_version_num(), 4);
    }

    fn claims(token_type: &str, exp: i64) -> serde_json::Value {
        json!({"token_type": token_type, "user_id": 1, "sid": Uuid::new_v4(),
               "jti": "x", "iat": now(), "exp": exp})
    }

    #[test]
    fn expired_refresh_typed_foreign_and_other_algorithm_tokens_are_refused() {
        let keys = Keyring::hs256(&[SigningKey::from_secret(SECRET)]);
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
            assert!(keys.verify(&token, now()).is_err(), "{token}");
        }
    }

    #[test]
    fn a_token_signed_with_our_key_but_naming_another_or_none_is_refused() {
        let keys = Keyring::hs256(&[SigningKey::from_secret(SECRET)]);
        for kid in [None, Some("another".to_owned())] {
            let header = Header {
                kid: kid.clone(),
                ..Header::default()
            };
            let token = jsonwebtoken::encode(
                &header,
                &claims("access", now() + 30),
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap();
            assert!(keys.verify(&token, now()).is_err(), "{kid:?}");
        }
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let keys = Keyring::hs256(&[SigningKey::from_secret(SECRET)]);
        let signed = keys.issue(1, Uuid::new_v4(), now(), 30);
        let payload = signed.split('.').nth(1).unwrap();
        // base64url of {"alg":"none","typ":"JWT"}
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert!(keys.verify(&unsigned, now()).is_err());
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let keys = Keyring::hs256(&[SigningKey::from_secret(SECRET)]);
        let token = keys.issue(1, Uuid::new_v4(), now(), 30);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged_claims = claims("access", now() + 3600).to_string();
        parts[1] = base64_url(forged_claims.as_bytes());
        assert!(keys.verify(&parts.join("."), now()).is_err());
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
