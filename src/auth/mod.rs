//! The domain: accounts, credentials, tokens and sessions. It speaks to storage through the
//! [`Store`] trait and knows nothing of HTTP.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use uuid::Uuid;

use crate::config::Config;
use crate::store::{Account, NewSession, NewUser, Redeemed, Store, StoreError};

pub mod email;
pub mod password;
pub mod sessions;
pub mod tokens;
pub mod username;

use email::Email;
use password::{Hasher, Password, PasswordPolicy, Verification};
use sessions::Redemption;
use tokens::{AccessClaims, AccessTokenKeys, InvalidAccessToken, RefreshToken};
use username::Username;

pub type UserId = i64;
pub type SessionId = Uuid;

/// What `/api/me/` shows of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub id: UserId,
    pub username: String,
    pub email: String,
}

/// A new access token and the refresh token that replaces the one presented.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: RefreshToken,
    pub expires_in: i64,
}

/// Where a login came from, recorded with its session.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no active account found with the given credentials")]
    InvalidCredentials,
    #[error("refresh token is invalid or expired")]
    InvalidRefreshToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The service's operations; cheap to share behind an `Arc`.
pub struct Auth<S> {
    store: S,
    hasher: Hasher,
    keys: AccessTokenKeys,
    policy: PasswordPolicy,
    access_lifetime: i64,
    refresh_lifetime: i64,
}

impl<S: Store> Auth<S> {
    /// Prepares the service on `store`, taking the signing secret from `config` or, when none
    /// is configured, from the store (generating it at first start).
    pub async fn new(store: S, config: &Config) -> Result<Auth<S>, StoreError> {
        let secret = match &config.secret_key {
            Some(secret) => secret.expose().to_vec(),
            None => store.signing_secret(generate_secret()).await?.into_bytes(),
        };
        Ok(Auth {
            store,
            hasher: Hasher::new(config.hash_concurrency()),
            keys: AccessTokenKeys::hs256(&secret),
            policy: PasswordPolicy {
                min_length: config.password_min_length,
            },
            access_lifetime: seconds(config.access_token_lifetime),
            refresh_lifetime: seconds(config.refresh_token_lifetime),
        })
    }

    pub fn password_policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    pub async fn is_registered(&self, email: &Email) -> Result<bool, StoreError> {
        self.store.email_registered(email.key().to_owned()).await
    }

    /// Creates an account whose username is its email; the password must already satisfy the
    /// [policy](Self::password_policy).
    pub async fn register(&self, email: Email, password: Password) -> Result<UserId, StoreError> {
        let password_hash = self.hasher.hash(password).await;
        self.store
            .create_user(NewUser {
                email: email.as_str().to_owned(),
                email_key: email.key().to_owned(),
                username: email.as_str().to_owned(),
                password_hash,
                is_active: true,
                now: now(),
            })
            .await
    }

    /// Adds an account with a hash made elsewhere (the Django original's); it verifies at login
    /// and is replaced by our Argon2id then.
    pub async fn import_account(
        &self,
        email: Email,
        username: Username,
        password_hash: String,
        is_active: bool,
    ) -> Result<UserId, StoreError> {
        self.store
            .create_user(NewUser {
                email: email.as_str().to_owned(),
                email_key: email.key().to_owned(),
                username: username.into_string(),
                password_hash,
                is_active,
                now: now(),
            })
            .await
    }

    /// The account registered with `email` (in any case).
    pub async fn account(&self, email: &str) -> Result<Option<Account>, StoreError> {
        self.store.account(Email::lookup_key(email)).await
    }

    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.store.accounts().await
    }

    /// Deactivation ends every session of the account at once.
    pub async fn set_active(&self, user_id: UserId, active: bool) -> Result<bool, StoreError> {
        self.store.set_active(user_id, active, now()).await
    }

    /// Replaces the password; the caller has checked it against the policy.
    pub async fn set_password(
        &self,
        user_id: UserId,
        password: Password,
    ) -> Result<(), StoreError> {
        let password_hash = self.hasher.hash(password).await;
        self.store
            .set_password_hash(user_id, password_hash, now())
            .await
    }

    /// Checks the credentials and starts a new session. Unknown email, wrong password and
    /// inactive account fail alike and cost the same hash verification.
    pub async fn login(
        &self,
        email: &str,
        password: Password,
        client: Client,
    ) -> Result<TokenPair, AuthError> {
        let credentials = self.store.credentials(Email::lookup_key(email)).await?;
        let (stored_hash, account) = match credentials {
            Some(found) => (
                Some(found.password_hash),
                Some((found.user_id, found.is_active)),
            ),
            None => (None, None),
        };
        let verification = self.hasher.verify(password.clone(), stored_hash).await;
        let Some((user_id, true)) = account.filter(|_| verification.matched()) else {
            metrics::counter!("logins_total", "outcome" => "failure").increment(1);
            return Err(AuthError::InvalidCredentials);
        };
        metrics::counter!("logins_total", "outcome" => "success").increment(1);
        if verification == (Verification::Match { rehash: true }) {
            // The one moment the plain password is at hand: replace an imported or outdated
            // hash with our Argon2id, so nobody is asked to reset a password.
            let password_hash = self.hasher.hash(password).await;
            self.store
                .set_password_hash(user_id, password_hash, now())
                .await?;
        }

        let session_id = Uuid::new_v4();
        let refresh_token = RefreshToken::generate();
        let now = now();
        self.store
            .start_session(NewSession {
                id: session_id,
                user_id,
                refresh: refresh_token.digest(),
                refresh_expires_at: now + self.refresh_lifetime,
                user_agent: client.user_agent,
                client_ip: client.ip,
                now,
            })
            .await?;
        Ok(self.pair(user_id, session_id, refresh_token, now))
    }

    /// Consumes `presented` and returns its successor; a consumed token ends its session.
    pub async fn refresh(&self, presented: RefreshToken) -> Result<TokenPair, AuthError> {
        let next = RefreshToken::generate();
        let now = now();
        let rotation = Redemption::Rotate {
            next: next.digest(),
            expires_at: now + self.refresh_lifetime,
        };
        let (user_id, session_id) = self.redeem(presented, rotation, now).await?;
        Ok(self.pair(user_id, session_id, next, now))
    }

    /// Ends the session of `presented`: its refresh and access tokens stop working at once.
    pub async fn logout(&self, presented: RefreshToken) -> Result<(), AuthError> {
        self.redeem(presented, Redemption::EndSession, now())
            .await
            .map(drop)
    }

    async fn redeem(
        &self,
        presented: RefreshToken,
        redemption: Redemption,
        now: i64,
    ) -> Result<(UserId, SessionId), AuthError> {
        match self
            .store
            .redeem_refresh_token(presented.digest(), redemption, now)
            .await?
        {
            Redeemed::Accepted {
                user_id,
                session_id,
            } => Ok((user_id, session_id)),
            Redeemed::ReuseDetected => {
                metrics::counter!("refresh_token_reuse_detected_total").increment(1);
                tracing::warn!("a consumed refresh token was presented again; its session ended");
                Err(AuthError::InvalidRefreshToken)
            }
            Redeemed::Rejected => Err(AuthError::InvalidRefreshToken),
        }
    }

    /// Whether the store answers with the expected schema.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.ready().await
    }

    pub fn pool_state(&self) -> crate::store::PoolState {
        self.store.pool_state()
    }

    /// Checks an access token's signature, algorithm, type and expiry; no database involved.
    pub fn verify_access_token(&self, token: &str) -> Result<AccessClaims, InvalidAccessToken> {
        self.keys.verify(token)
    }

    /// The caller's profile, if its session is live and its account active.
    pub async fn profile(&self, caller: &AccessClaims) -> Result<Option<Profile>, StoreError> {
        self.store.profile(caller.user_id, caller.sid).await
    }

    pub async fn rename(
        &self,
        caller: &AccessClaims,
        username: Username,
    ) -> Result<Option<Profile>, StoreError> {
        self.store
            .rename(caller.user_id, caller.sid, username.into_string(), now())
            .await
    }

    fn pair(
        &self,
        user_id: UserId,
        session_id: SessionId,
        refresh_token: RefreshToken,
        now: i64,
    ) -> TokenPair {
        TokenPair {
            access_token: self
                .keys
                .issue(user_id, session_id, now, self.access_lifetime),
            refresh_token,
            expires_in: self.access_lifetime,
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

fn seconds(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2)
}

/// 256 random bits, hex-encoded: as strong as HS256's own key size.
fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    hex::encode(bytes)
}
