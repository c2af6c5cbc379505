//! Tokens: short-lived access JWTs that any service verifies from the published key set (EdDSA
//! or ES256; HS256 for deployments that keep a shared secret), and opaque UUIDv4 refresh tokens
//! that the store keeps only as SHA-256 digests.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::keys::SigningAlgorithm;
use crate::domain::mfa::Amr;
use crate::domain::{RefreshDigest, SessionId, UserId};

/// The only `token_type` an access token carries; a refresh-typed JWT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TokenType {
    Access,
}

/// The claims of an access token: SimpleJWT's, `sid` for the session, the issuer and
/// audience (RFC 7519) that a service verifying it checks, and how its session's login was
/// authenticated (`amr`, RFC 8176).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    token_type: TokenType,
    pub user_id: UserId,
    pub sid: SessionId,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: Audience,
    /// `["pwd"]`, or `["pwd", "otp"]` after a one-time code; absent from the tokens of
    /// earlier builds (read as empty).
    #[serde(default)]
    pub amr: Vec<String>,
}

/// One audience as a string, several as a list (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
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
    #[error("access token longer than any we issue")]
    TooLong,
}

/// Longer than any token we issue (a few hundred bytes, more with many audiences): a longer
/// one is refused before it is hashed, parsed or checked.
pub const MAX_ACCESS_TOKEN_LEN: usize = 4096;

/// What every access token says of its issuer, and how it is typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// `iss`: the service's public URL unless configured.
    pub issuer: String,
    /// `aud`: who the tokens are for; a token must name one of them.
    pub audience: Vec<String>,
    /// The header's `typ`: `JWT`, or `at+jwt` (RFC 9068).
    pub typ: String,
}

/// A signing key and its id (`kid`), which the tokens it signs name.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    /// HS256: the shared secret; EdDSA and ES256: the 32-byte private key.
    pub secret: Vec<u8>,
}

impl SigningKey {
    /// An HS256 key whose id is derived from the secret, so every instance configured with the
    /// same secret names it alike without sharing anything else.
    pub fn from_secret(secret: &[u8]) -> SigningKey {
        let kid = hex::encode(&Sha256::digest(secret)[..8]);
        SigningKey {
            kid,
            algorithm: SigningAlgorithm::HS256,
            secret: secret.to_vec(),
        }
    }

    /// A new key of `algorithm`, with a random id.
    pub fn generate(algorithm: SigningAlgorithm) -> SigningKey {
        let kid: [u8; 8] = crate::domain::random_bytes();
        let secret = loop {
            let secret: [u8; 32] = crate::domain::random_bytes();
            // About one P-256 scalar in 2^32 is out of range: draw again.
            if algorithm != SigningAlgorithm::ES256 || p256::SecretKey::from_slice(&secret).is_ok()
            {
                break secret;
            }
        };
        SigningKey {
            kid: hex::encode(kid),
            algorithm,
            // An HS256 secret is used as its hex text, as the keys of earlier builds were.
            secret: match algorithm {
                SigningAlgorithm::HS256 => hex::encode(secret).into_bytes(),
                _ => secret.to_vec(),
            },
        }
    }

    /// The key from its stored text (as [`stored_text`](Self::stored_text) wrote it).
    pub fn from_stored(
        kid: String,
        algorithm: SigningAlgorithm,
        text: Vec<u8>,
    ) -> Result<SigningKey, InvalidKey> {
        let secret = match algorithm {
            SigningAlgorithm::HS256 => text,
            _ => hex::decode(text).map_err(|_| InvalidKey)?,
        };
        let key = SigningKey {
            kid,
            algorithm,
            secret,
        };
        // Checked now, so that a damaged row stops the start, not a login.
        key.signer()?;
        Ok(key)
    }

    /// The text a key is stored (sealed) as: an HS256 secret as it is used, a private key in
    /// hex.
    pub fn stored_text(&self) -> String {
        match self.algorithm {
            SigningAlgorithm::HS256 => String::from_utf8_lossy(&self.secret).into_owned(),
            _ => hex::encode(&self.secret),
        }
    }

    fn signer(&self) -> Result<Signer, InvalidKey> {
        Ok(match self.algorithm {
            SigningAlgorithm::HS256 => {
                Signer::Hs256(Hmac::new_from_slice(&self.secret).map_err(|_| InvalidKey)?)
            }
            SigningAlgorithm::EdDSA => Signer::EdDSA(Box::new(self.ed25519()?)),
            SigningAlgorithm::ES256 => {
                Signer::ES256(Box::new(p256::ecdsa::SigningKey::from(self.p256()?)))
            }
        })
    }

    fn decoding_key(&self) -> Result<DecodingKey, InvalidKey> {
        let key = match self.public_jwk()? {
            None => return Ok(DecodingKey::from_secret(&self.secret)),
            Some(PublicJwk { y: Some(y), x, .. }) => DecodingKey::from_ec_components(&x, &y),
            Some(PublicJwk { x, .. }) => DecodingKey::from_ed_components(&x),
        };
        key.map_err(|_| InvalidKey)
    }

    /// The public key as a JWK (RFC 7517; RFC 8037 for Ed25519); none for an HS256 secret.
    pub fn public_jwk(&self) -> Result<Option<PublicJwk>, InvalidKey> {
        let jwk = |kty: &'static str, crv: &'static str, x: &[u8], y: Option<&[u8]>| PublicJwk {
            kty,
            key_use: "sig",
            alg: self.algorithm.name(),
            kid: self.kid.clone(),
            crv,
            x: URL_SAFE_NO_PAD.encode(x),
            y: y.map(|y| URL_SAFE_NO_PAD.encode(y)),
        };
        Ok(match self.algorithm {
            SigningAlgorithm::HS256 => None,
            SigningAlgorithm::EdDSA => {
                let public = self.ed25519()?.verifying_key().to_bytes();
                Some(jwk("OKP", "Ed25519", &public, None))
            }
            SigningAlgorithm::ES256 => {
                let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                    &self.p256()?.public_key(),
                    false,
                );
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(InvalidKey);
                };
                Some(jwk("EC", "P-256", x, Some(y)))
            }
        })
    }

    fn ed25519(&self) -> Result<ed25519_dalek::SigningKey, InvalidKey> {
        let seed: &[u8; 32] = self.secret.as_slice().try_into().map_err(|_| InvalidKey)?;
        Ok(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    fn p256(&self) -> Result<p256::SecretKey, InvalidKey> {
        p256::SecretKey::from_slice(&self.secret).map_err(|_| InvalidKey)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({}, {}, <redacted>)",
            self.kid, self.algorithm
        )
    }
}

/// A public signing key as JOSE publishes it (RFC 7517, RFC 7518 §6.2, RFC 8037 §2): only the
/// public parts, never `d` or `k`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "kty": "OKP", "use": "sig", "alg": "EdDSA", "kid": "3f1c2a4e5b6d7c8e",
    "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
}))]
pub struct PublicJwk {
    /// `OKP` (Ed25519) or `EC` (P-256).
    #[schema(value_type = String)]
    pub kty: &'static str,
    /// Always `sig`: the key verifies signatures.
    #[serde(rename = "use")]
    #[schema(value_type = String, rename = "use")]
    pub key_use: &'static str,
    /// `EdDSA` or `ES256`: the only algorithm tokens of this key may name.
    #[schema(value_type = String)]
    pub alg: &'static str,
    /// The id tokens signed with the key carry in their header.
    pub kid: String,
    /// `Ed25519` or `P-256`.
    #[schema(value_type = String)]
    pub crv: &'static str,
    /// The public key (Ed25519), or its x coordinate (P-256), base64url.
    pub x: String,
    /// P-256 only: the y coordinate, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

/// The published key set: every key that verifies access tokens now, the next one included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeySet {
    pub keys: Vec<PublicJwk>,
}

/// A stored key's material does not make a key of its algorithm.
#[derive(Debug, thiserror::Error)]
#[error("a signing key's material does not fit its algorithm")]
pub struct InvalidKey;

fn jwt_algorithm(algorithm: SigningAlgorithm) -> Algorithm {
    match algorithm {
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::HS256 => Algorithm::HS256,
    }
}

/// A signing key prepared once. jsonwebtoken's `encode` would parse the key again for every
/// token (for Ed25519, a PKCS#8 parse and the public key's derivation: more than the signature
/// itself), on the path of every login and refresh.
enum Signer {
    Hs256(Hmac<Sha256>),
    EdDSA(Box<ed25519_dalek::SigningKey>),
    ES256(Box<p256::ecdsa::SigningKey>),
}

impl Signer {
    /// The JWS signature of `message` (RFC 7515; for ES256 the 64-byte `r || s` of RFC 7518).
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Signer::Hs256(mac) => {
                let mut mac = mac.clone();
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            Signer::EdDSA(key) => ed25519_dalek::Signer::sign(key.as_ref(), message)
                .to_bytes()
                .to_vec(),
            Signer::ES256(key) => {
                let signature: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(key.as_ref(), message);
                signature.to_bytes().to_vec()
            }
        }
    }
}

/// A key that verifies, with the only algorithm its tokens may name: the key's own, never the
/// token header's choice.
struct Verifier {
    kid: String,
    algorithm: SigningAlgorithm,
    key: DecodingKey,
    validation: Validation,
}

/// The keys in force: one signs; every one verifies, so tokens signed before a rotation stay
/// valid until they expire, and a key published before it signs verifies from its first token.
pub struct Keyring {
    algorithm: SigningAlgorithm,
    /// The header of every token it signs, encoded once.
    encoded_header: String,
    signer: Signer,
    verifiers: Vec<Verifier>,
    rules: TokenRules,
    /// The public keys, as served at `/.well-known/jwks.json`.
    jwks: Arc<KeySet>,
}

impl Keyring {
    /// `signer` signs; `verifiers` (the signer among them) verify, and those of them with a
    /// public key are published.
    pub fn new(
        signer: &SigningKey,
        verifiers: &[SigningKey],
        rules: TokenRules,
    ) -> Result<Keyring, InvalidKey> {
        let mut header = Header::new(jwt_algorithm(signer.algorithm));
        header.kid = Some(signer.kid.clone());
        header.typ = Some(rules.typ.clone());
        let mut published = Vec::new();
        let mut verifying = Vec::with_capacity(verifiers.len());
        for key in verifiers {
            published.extend(key.public_jwk()?);
            let mut validation = Validation::new(jwt_algorithm(key.algorithm));
            // Expiry is checked against the service's clock (below), not the library's reading
            // of the system time; the claims must still be there.
            validation.validate_exp = false;
            validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
            validation.set_issuer(&[&rules.issuer]);
            validation.set_audience(&rules.audience);
            verifying.push(Verifier {
                kid: key.kid.clone(),
                algorithm: key.algorithm,
                key: key.decoding_key()?,
                validation,
            });
        }
        let header = serde_json::to_vec(&header).map_err(|_| InvalidKey)?;
        Ok(Keyring {
            algorithm: signer.algorithm,
            encoded_header: URL_SAFE_NO_PAD.encode(header),
            signer: signer.signer()?,
            verifiers: verifying,
            rules,
            jwks: Arc::new(KeySet { keys: published }),
        })
    }

    /// The published key set (RFC 7517): the public keys that verify; empty with HS256.
    pub fn jwks(&self) -> Arc<KeySet> {
        self.jwks.clone()
    }

    /// The algorithm new tokens are signed with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The algorithms of the keys that verify, the signing one first: what a verifier must
    /// accept while keys of two algorithms are in use.
    pub fn verifying_algorithms(&self) -> Vec<SigningAlgorithm> {
        let mut algorithms = vec![self.algorithm];
        for verifier in &self.verifiers {
            if !algorithms.contains(&verifier.algorithm) {
                algorithms.push(verifier.algorithm);
            }
        }
        algorithms
    }

    /// The ids of the keys that verify, in order: two keyrings with the same verify alike.
    pub fn verifying_kids(&self) -> impl Iterator<Item = &str> {
        self.verifiers.iter().map(|verifier| verifier.kid.as_str())
    }

    /// A signed access token for `user_id`'s session `sid` of a password login, valid from
    /// `now` for `lifetime_secs`.
    pub fn issue(&self, user_id: UserId, sid: SessionId, now: i64, lifetime_secs: i64) -> String {
        self.issue_for(user_id, sid, Amr::Password, now, lifetime_secs)
    }

    /// [`issue`](Self::issue) for a session whose login was authenticated as `amr` says.
    pub fn issue_for(
        &self,
        user_id: UserId,
        sid: SessionId,
        amr: Amr,
        now: i64,
        lifetime_secs: i64,
    ) -> String {
        let aud = match self.rules.audience.as_slice() {
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        };
        let claims = AccessClaims {
            token_type: TokenType::Access,
            user_id,
            sid,
            jti: Uuid::new_v4().simple().to_string(),
            iat: now,
            exp: now + lifetime_secs,
            iss: self.rules.issuer.clone(),
            aud,
            amr: amr
                .methods()
                .iter()
                .map(|&method| method.to_owned())
                .collect(),
        };
        let claims = serde_json::to_vec(&claims).expect("plain claims serialize");
        let mut token = format!("{}.{}", self.encoded_header, URL_SAFE_NO_PAD.encode(claims));
        let signature = self.signer.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        token
    }

    /// The claims of `token` if it is an access token signed by one of our keys, named by its
    /// `kid`, with that key's algorithm, for our issuer and audience, and unexpired at `now`.
    /// No leeway: a token lives 30 s by default, and the usual 60 s would triple its life.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, InvalidAccessToken> {
        let claims = self.verify_signed(token)?;
        if claims.exp <= now {
            return Err(InvalidAccessToken::Expired);
        }
        Ok(claims)
    }

    fn verify_signed(&self, token: &str) -> Result<AccessClaims, InvalidAccessToken> {
        // With one key (no rotation under way), decoding reads the header once, not twice.
        if let [verifier] = self.verifiers.as_slice() {
            let token =
                jsonwebtoken::decode::<AccessClaims>(token, &verifier.key, &verifier.validation)?;
            return match token.header.kid {
                Some(named) if named == verifier.kid => Ok(token.claims),
                _ => Err(InvalidAccessToken::UnknownKey),
            };
        }
        let kid = jsonwebtoken::decode_header(token)?
            .kid
            .ok_or(InvalidAccessToken::UnknownKey)?;
        let verifier = self
            .verifiers
            .iter()
            .find(|verifier| verifier.kid == kid)
            .ok_or(InvalidAccessToken::UnknownKey)?;
        Ok(
            jsonwebtoken::decode::<AccessClaims>(token, &verifier.key, &verifier.validation)?
                .claims,
        )
    }
}

/// Access tokens already verified, by the SHA-256 of their text, with their claims: a client
/// calling again with the same token costs a digest and a lookup, not a signature check. An
/// entry serves only until the token's `exp`; the least used go first when the cache is full.
/// A keyring whose verifying keys change (a retirement) gets a new, empty cache.
pub struct VerifiedTokens(quick_cache::sync::Cache<[u8; 32], Arc<AccessClaims>>);

impl VerifiedTokens {
    pub fn new(capacity: usize) -> VerifiedTokens {
        VerifiedTokens(quick_cache::sync::Cache::new(capacity.max(1)))
    }

    /// [`Keyring::verify`], remembered.
    pub fn verify(
        &self,
        keyring: &Keyring,
        token: &str,
        now: i64,
    ) -> Result<Arc<AccessClaims>, InvalidAccessToken> {
        if token.len() > MAX_ACCESS_TOKEN_LEN {
            return Err(InvalidAccessToken::TooLong);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.0.get(&digest) {
            return if claims.exp > now {
                Ok(claims)
            } else {
                self.0.remove(&digest);
                Err(InvalidAccessToken::Expired)
            };
        }
        let claims = Arc::new(keyring.verify(token, now)?);
        self.0.insert(digest, claims.clone());
        Ok(claims)
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
    const ISSUER: &str = "https://auth.example.org";

    fn rules() -> TokenRules {
        TokenRules {
            issuer: ISSUER.into(),
            audience: vec!["restful-auth".into()],
            typ: "JWT".into(),
        }
    }

    /// `keys` verify, the first signs.
    fn hs256(keys: &[SigningKey]) -> Keyring {
        Keyring::new(&keys[0], keys, rules()).unwrap()
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let keys = hs256(&[SigningKey::from_secret(SECRET)]);
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
        let keys = hs256(&[SigningKey::from_secret(SECRET)]);
        let token = forge(Header::default(), claims("access", now() + 30), SECRET);
        assert!(keys.verify(&token, now()).is_ok());
    }

    #[test]
    fn tokens_of_a_previous_key_verify_and_new_ones_use_the_newest() {
        let old = SigningKey::from_secret(b"the previous key, long enough......");
        let new = SigningKey::from_secret(SECRET);
        let before = hs256(std::slice::from_ref(&old));
        let after = hs256(&[new.clone(), old]);
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
               "jti": "x", "iat": now(), "exp": exp, "iss": ISSUER, "aud": "restful-auth"})
    }

    #[test]
    fn expired_refresh_typed_foreign_and_other_algorithm_tokens_are_refused() {
        let keys = hs256(&[SigningKey::from_secret(SECRET)]);
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
        let keys = hs256(&[SigningKey::from_secret(SECRET)]);
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
        let keys = hs256(&[SigningKey::from_secret(SECRET)]);
        let signed = keys.issue(1, Uuid::new_v4(), now(), 30);
        let payload = signed.split('.').nth(1).unwrap();
        // base64url of {"alg":"none","typ":"JWT"}
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert!(keys.verify(&unsigned, now()).is_err());
    }

    #[test]
    fn a_token_longer_than_any_we_issue_is_refused_unread_even_if_well_signed() {
        let keys = hs256(&[SigningKey::from_secret(SECRET)]);
        let verified = VerifiedTokens::new(8);
        let mut long = claims("access", now() + 30);
        long["jti"] = json!("x".repeat(MAX_ACCESS_TOKEN_LEN));
        let token = forge(Header::default(), long, SECRET);
        assert!(keys.verify(&token, now()).is_ok(), "well signed");
        assert!(matches!(
            verified.verify(&keys, &token, now()),
            Err(InvalidAccessToken::TooLong)
        ));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let keys = hs256(&[SigningKey::from_secret(SECRET)]);
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
