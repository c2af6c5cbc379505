//! Access-token signing keys: the keyring of the keys in force, and rotating, retiring and
//! listing them. Keys live in the database (sealed under the master key) unless `--secret-key`
//! configures an HS256 secret.

use crate::domain::audit::{Actor, Origin};
use std::sync::Arc;

use super::tokens::{KeySet, Keyring, SigningKey, TokenRules};
use super::{Auth, LoadError, SecretRow, associated_data, open};
use crate::domain::keys::{self, KeyState, SigningAlgorithm};
use crate::domain::vault::MasterKey;
use crate::store::{Store, StoreError, StoredKey};

/// How keys are made and what the tokens they sign say.
pub(super) struct KeyPolicy {
    /// `--jwt-algorithm`; unset, new keys take the algorithm of the key in force.
    pub algorithm: Option<SigningAlgorithm>,
    /// Seconds a rotated key is published before it signs.
    pub activation_delay: i64,
    pub rules: TokenRules,
    /// Entries of the verified-token cache.
    pub verified_capacity: usize,
}

/// A new key, as `keys rotate` made it.
#[derive(Debug)]
pub struct Rotated {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub activates_at: i64,
}

/// A key as `keys list` shows it.
#[derive(Debug)]
pub struct KeyInfo {
    pub kid: String,
    pub algorithm: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub state: KeyState,
}

/// The keyring of the keys in force at `now`: the configured ones, or the stored ones (the
/// first generated if there is none in force).
pub(super) async fn load_keyring<S: Store>(
    store: &S,
    configured: Option<&[SigningKey]>,
    master_key: &MasterKey,
    policy: &KeyPolicy,
    now: i64,
) -> Result<Keyring, LoadError> {
    let (signer, verifiers) = match configured {
        Some(keys) => (keys[0].clone(), keys.to_vec()),
        None => {
            let mut stored = store.signing_keys(None, now).await?;
            if !stored.iter().any(|key| key.schedule().in_force(now)) {
                // The first key, or the replacement of a retired one: of the configured
                // algorithm, else of the key that signed last, as a rotation's.
                let last = stored
                    .iter()
                    .filter(|key| key.activates_at <= now)
                    .max_by_key(|key| (key.activates_at, key.created_at))
                    .and_then(|key| key.algorithm.parse().ok());
                let algorithm = policy.algorithm.or(last).unwrap_or(SigningAlgorithm::EdDSA);
                let first = SigningKey::generate(algorithm);
                stored = store
                    .signing_keys(Some(sealed(master_key, &first, now, now)), now)
                    .await?;
            }
            let schedules: Vec<_> = stored.iter().map(StoredKey::schedule).collect();
            let mut signer = None;
            let mut verifiers = Vec::new();
            for (key, state) in stored.iter().zip(keys::states(&schedules, now)) {
                if !state.verifies() {
                    continue;
                }
                let opened = open_key(master_key, key)?;
                if state == KeyState::Current {
                    signer = Some(opened.clone());
                }
                verifiers.push(opened);
            }
            (signer.ok_or(LoadError::NoKeyInForce)?, verifiers)
        }
    };
    Ok(Keyring::new(&signer, &verifiers, policy.rules.clone())?)
}

fn open_key(master_key: &MasterKey, key: &StoredKey) -> Result<SigningKey, LoadError> {
    let algorithm = key
        .algorithm
        .parse()
        .map_err(|_| LoadError::Key(key.kid.clone()))?;
    let text = open(
        master_key,
        &SecretRow::SigningKey(key.kid.clone()),
        &key.secret,
    )?;
    SigningKey::from_stored(key.kid.clone(), algorithm, text)
        .map_err(|_| LoadError::Key(key.kid.clone()))
}

/// `key` sealed for storage, created at `now`, signing from `activates_at`.
fn sealed(master_key: &MasterKey, key: &SigningKey, now: i64, activates_at: i64) -> StoredKey {
    let row = SecretRow::SigningKey(key.kid.clone());
    StoredKey {
        kid: key.kid.clone(),
        algorithm: key.algorithm.name().to_owned(),
        secret: master_key.seal(&associated_data(&row), key.stored_text().as_bytes()),
        created_at: now,
        activates_at,
        retired_at: None,
    }
}

impl<S: Store> Auth<S> {
    /// The published key set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> Arc<KeySet> {
        self.live.load().keyring.jwks()
    }

    /// The algorithm new access tokens are signed with.
    pub fn signing_algorithm(&self) -> SigningAlgorithm {
        self.live.load().keyring.algorithm()
    }

    /// The algorithms of the keys that verify now, the signing one first.
    pub fn verifying_algorithms(&self) -> Vec<SigningAlgorithm> {
        self.live.load().keyring.verifying_algorithms()
    }

    /// Where clients reach the service: the base of the URLs it publishes.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// What access tokens say of their issuer and audience.
    pub fn token_rules(&self) -> &TokenRules {
        &self.keys.rules
    }

    /// Makes the stored keys sign with `--jwt-algorithm` when it differs from the key in force,
    /// and says so when an HS256 database keeps HS256 by default. A key of the new algorithm
    /// is published first, as a rotation's, when it replaces a published key (services
    /// downstream verify those); it signs at once when it replaces an HS256 secret, which
    /// nobody else could verify anyway.
    pub(super) async fn settle_algorithm(&self) -> Result<(), LoadError> {
        let signing = self.signing_algorithm();
        let Some(wanted) = self.keys.algorithm.filter(|wanted| *wanted != signing) else {
            if signing == SigningAlgorithm::HS256 && self.keys.algorithm.is_none() {
                tracing::warn!(
                    "access tokens stay HS256, the algorithm of this database's keys: only this \
                     service can verify them. Set --jwt-algorithm EdDSA \
                     (RESTFUL_AUTH_JWT_ALGORITHM) to sign with keys that other services verify \
                     from /.well-known/jwks.json"
                );
            }
            return Ok(());
        };
        let already_next = self.signing_key_list().await?.is_some_and(|keys| {
            keys.iter()
                .any(|key| key.state == KeyState::Next && key.algorithm == wanted.name())
        });
        if already_next {
            return Ok(());
        }
        let now = self.clock.now();
        let activates_at = if signing.is_public() {
            now + self.keys.activation_delay
        } else {
            now
        };
        self.add_key(wanted, activates_at, Origin::of(Actor::System))
            .await?;
        self.reload().await?;
        tracing::info!(
            activates_at,
            "access tokens are signed with {wanted} (set by --jwt-algorithm) from the time \
             given, its key published now; the {signing} keys verify the tokens they signed \
             until those expire"
        );
        Ok(())
    }

    /// Adds a signing key of the configured algorithm (else the one in force), published at
    /// once and signing after `--key-activation-delay`, or at once if `immediately`; `None`
    /// when keys come from the configuration. Every instance picks it up at its next reload.
    pub async fn rotate_signing_key(
        &self,
        immediately: bool,
        origin: Origin,
    ) -> Result<Option<Rotated>, StoreError> {
        if self.configured_keys.is_some() {
            return Ok(None);
        }
        let algorithm = self.keys.algorithm.unwrap_or(self.signing_algorithm());
        let now = self.clock.now();
        let activates_at = if immediately {
            now
        } else {
            now + self.keys.activation_delay
        };
        let kid = self.add_key(algorithm, activates_at, origin).await?;
        Ok(Some(Rotated {
            kid,
            algorithm,
            activates_at,
        }))
    }

    async fn add_key(
        &self,
        algorithm: SigningAlgorithm,
        activates_at: i64,
        origin: Origin,
    ) -> Result<String, StoreError> {
        let key = SigningKey::generate(algorithm);
        let stored = sealed(&self.master_key, &key, self.clock.now(), activates_at);
        self.store.add_signing_key(stored, origin).await?;
        Ok(key.kid)
    }

    /// Retires the key `kid` now: every instance refuses its tokens from its next reload,
    /// and if it was signing, a new key of its algorithm signs instead. `None` when keys come
    /// from the configuration; `Some(false)` when no such key is in use.
    pub async fn retire_signing_key(
        &self,
        kid: &str,
        origin: Origin,
    ) -> Result<Option<bool>, LoadError> {
        if self.configured_keys.is_some() {
            return Ok(None);
        }
        let retired = self
            .store
            .retire_signing_key(kid.to_owned(), origin, self.clock.now())
            .await?;
        // Loading makes the replacement key when the retired one was the only one in force.
        self.reload().await?;
        Ok(Some(retired))
    }

    /// Every stored key and its state now; `None` when keys come from the configuration.
    pub async fn signing_key_list(&self) -> Result<Option<Vec<KeyInfo>>, StoreError> {
        if self.configured_keys.is_some() {
            return Ok(None);
        }
        let now = self.clock.now();
        let stored = self.store.signing_keys(None, now).await?;
        let schedules: Vec<_> = stored.iter().map(StoredKey::schedule).collect();
        Ok(Some(
            stored
                .into_iter()
                .zip(keys::states(&schedules, now))
                .map(|(key, state)| KeyInfo {
                    kid: key.kid,
                    algorithm: key.algorithm,
                    created_at: key.created_at,
                    activates_at: key.activates_at,
                    state,
                })
                .collect(),
        ))
    }
}
