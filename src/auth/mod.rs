//! The domain: accounts, credentials, tokens and sessions. It speaks to storage through the
//! [`Store`] trait and knows nothing of HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::audit::{Actor, AuditQuery, Event, LoginFailure, Origin, Recorded};
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::{Profile, SessionId, UserId};
use crate::store::{
    Account, NewSession, NewUser, PasswordReplacement, Purge, Purged, Redeem, Redeemed, SecretRow,
    SessionInfo, SessionScope, Store, StoreError, StoredSecret,
};

pub mod admin;
pub mod email;
pub mod keys;
pub mod mail;
pub mod mfa;
pub mod password;
pub mod recovery;
pub mod tokens;
pub mod username;
pub mod vault;

use crate::domain::keys::SigningAlgorithm;
use crate::domain::mfa::Amr;
use crate::domain::sessions::{EndReason, Redemption, SessionPolicy};
use crate::domain::settings::{Lifetimes, Setting};
use crate::domain::throttle::{self, Bucket, ThrottlePolicy};
use email::Email;
use keys::KeyPolicy;
use mail::{MailSetupError, Mailer};
use mfa::{MfaRefusal, SecondFactor};
use password::{HashCost, Hasher, NewPassword, Password, PasswordPolicy, Verification};
use recovery::LinkPolicy;
use tokens::{
    AccessClaims, InvalidAccessToken, Keyring, RefreshToken, SigningKey, TokenRules, VerifiedTokens,
};
use username::Username;
use vault::{MasterKey, VaultError};

/// A new access token and the refresh token that replaces the one presented.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: RefreshToken,
    pub expires_in: i64,
}

/// The throttle buckets one login counts in.
struct LoginBuckets {
    /// This account's failures from this address: taken before the check.
    account_address: Option<Bucket>,
    /// This account's failures from addresses it does not know: taken before the check.
    account: Option<Bucket>,
    /// This address's failures across accounts: checked before, counted after a failure.
    ip: Option<Bucket>,
    /// The address logged into the account lately: only its own buckets hold it.
    known: bool,
}

impl LoginBuckets {
    fn taken(&self) -> Vec<Bucket> {
        self.account_address
            .iter()
            .chain(&self.account)
            .cloned()
            .collect()
    }

    fn taken_keys(&self) -> Vec<String> {
        self.taken().into_iter().map(|bucket| bucket.key).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no active account found with the given credentials")]
    InvalidCredentials,
    #[error("refresh token is invalid or expired")]
    InvalidRefreshToken,
    /// A consumed refresh token came back: its session has been ended.
    #[error("a consumed refresh token was presented again; its session ended")]
    RefreshTokenReused,
    #[error("the old password is wrong")]
    WrongPassword,
    /// The password was right; the account needs a one-time code too.
    #[error("a one-time code is required")]
    MfaRequired,
    /// The password was right; the one-time code is wrong, used, or out of its window.
    #[error("the one-time code is invalid")]
    MfaInvalid,
    #[error("refused: {0}")]
    Mfa(MfaRefusal),
    /// The inputs break rules of the service: every one is listed.
    #[error("refused: {0}")]
    Refused(Refusal),
    #[error("throttled for {retry_after} s")]
    Throttled { retry_after: i64 },
    /// A mailed link's token that opens nothing: unknown, used, expired or replaced.
    #[error("the link is invalid or expired")]
    InvalidLink,
    /// The password was right, but the account's address must be verified first.
    #[error("the account's email address is not verified")]
    EmailNotVerified,
    #[error(transparent)]
    Overloaded(#[from] password::Overloaded),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The rules an email or a new password breaks, as the messages the user is shown.
#[derive(Debug, Default)]
pub struct Refusal {
    pub email: Vec<String>,
    pub password: Vec<String>,
}

impl Refusal {
    fn is_empty(&self) -> bool {
        self.email.is_empty() && self.password.is_empty()
    }

    fn email_taken() -> Refusal {
        Refusal {
            email: vec![email::TAKEN.to_owned()],
            password: Vec::new(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let messages: Vec<&str> = self
            .email
            .iter()
            .chain(&self.password)
            .map(String::as_str)
            .collect();
        f.write_str(&messages.join(" "))
    }
}

/// Why the service cannot load its keys and settings.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("the stored signing key {0} is damaged: its material does not fit its algorithm")]
    Key(String),
    #[error(transparent)]
    InvalidKey(#[from] tokens::InvalidKey),
    #[error("no signing key is in force")]
    NoKeyInForce,
    #[error(transparent)]
    Mail(#[from] MailSetupError),
    #[error(
        "--secret-key is an HS256 secret: drop it to sign with keys kept in the database, or \
         set --jwt-algorithm HS256"
    )]
    SecretKeyIsHs256,
}

/// What may change while the service runs, swapped whole on reload so a request never sees
/// half of an update.
struct Live {
    keyring: Keyring,
    /// Access tokens this keyring verified; carried over by reloads that keep its keys.
    verified: Arc<VerifiedTokens>,
    lifetimes: Lifetimes,
    /// The secret refresh-token successors are derived from.
    successor_key: Vec<u8>,
}

/// Where the successor key is kept: in the database only, shared by the instances.
const SUCCESSOR_KEY: &str = "internal:refresh-successor-key";

/// The settings that hold secrets, sealed like the signing keys.
const SECRET_SETTINGS: [&str; 1] = [SUCCESSOR_KEY];

/// The service's operations; cheap to share behind an `Arc`.
pub struct Auth<S> {
    store: S,
    hasher: Hasher,
    policy: PasswordPolicy,
    throttle: ThrottlePolicy,
    /// Keys from the configuration; `None` when the keys live in the database.
    configured_keys: Option<Vec<SigningKey>>,
    keys: KeyPolicy,
    /// Where clients reach the service (`--public-url`).
    public_url: String,
    /// How long audit events are kept.
    audit_retention: std::time::Duration,
    /// The flags' lifetimes, which stored settings override.
    default_lifetimes: Lifetimes,
    live: ArcSwap<Live>,
    clock: Arc<dyn Clock>,
    /// Seals the secrets stored in the database; never stored there itself.
    master_key: MasterKey,
    /// Mailed links' lifetimes, throttles and the login rule on unverified addresses.
    links: LinkPolicy,
    /// Outgoing mail, sent off the request path.
    mailer: Mailer,
}

impl<S: Store> Auth<S> {
    /// Prepares the service on `store`, taking the signing keys from `config` or, when none
    /// is configured, from the store (generating the first at first start). Secrets stored
    /// in plaintext by an earlier build are sealed under the master key first.
    pub async fn new(store: S, config: &Config) -> Result<Auth<S>, LoadError> {
        Self::with_clock(store, config, Arc::new(SystemClock)).await
    }

    /// [`new`](Self::new), reading the time from `clock`.
    pub async fn with_clock(
        store: S,
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Auth<S>, LoadError> {
        let stored = store.secrets(secret_settings()).await?;
        let master_key = unlock(config, &stored)?;
        seal_plaintext_secrets(&store, &master_key, stored).await?;
        let configured_keys = config.secret_key.as_ref().map(|newest| {
            std::iter::once(newest)
                .chain(&config.previous_secret_keys)
                .map(|secret| SigningKey::from_secret(secret.expose()))
                .collect()
        });
        let default_lifetimes = Lifetimes {
            access: seconds(config.access_token_lifetime),
            refresh: seconds(config.refresh_token_lifetime),
            session: SessionPolicy {
                retry_grace: seconds(config.refresh_retry_grace),
                max_session_lifetime: config.session_max_lifetime.map(seconds),
            },
        };
        if configured_keys.is_some()
            && config
                .jwt_algorithm
                .is_some_and(|algorithm| algorithm != SigningAlgorithm::HS256)
        {
            return Err(LoadError::SecretKeyIsHs256);
        }
        let public_url = config.public_url();
        let keys = KeyPolicy {
            algorithm: config.jwt_algorithm,
            activation_delay: seconds(config.key_activation_delay),
            rules: TokenRules {
                issuer: config.issuer.clone().unwrap_or_else(|| public_url.clone()),
                audience: config.audience.clone(),
                typ: config.token_typ.clone(),
            },
            verified_capacity: config.verified_token_cache,
        };
        let live = Self::load_live(
            &store,
            configured_keys.as_deref(),
            &keys,
            default_lifetimes,
            &master_key,
            clock.now(),
            None,
        )
        .await?;
        let auth = Auth {
            store,
            hasher: Hasher::new(
                config.hash_concurrency(),
                config.hash_queue_limit,
                HashCost::new(config.argon2_cost),
            ),
            policy: PasswordPolicy {
                min_length: config.password_min_length,
            },
            throttle: config.throttle_policy(),
            configured_keys,
            keys,
            public_url,
            audit_retention: config.audit_retention,
            default_lifetimes,
            live: ArcSwap::from_pointee(live),
            clock,
            master_key,
            links: LinkPolicy::from_config(config),
            mailer: Mailer::from_config(config)?,
        };
        if auth.configured_keys.is_none() {
            auth.settle_algorithm().await?;
        }
        Ok(auth)
    }

    async fn load_live(
        store: &S,
        configured_keys: Option<&[SigningKey]>,
        keys: &KeyPolicy,
        defaults: Lifetimes,
        master_key: &MasterKey,
        now: i64,
        previous: Option<&Live>,
    ) -> Result<Live, LoadError> {
        let keyring = keys::load_keyring(store, configured_keys, master_key, keys, now).await?;
        // A token verified by the same keys still verifies: only a change of keys (a
        // retirement above all) forgets what was verified.
        let verified = match previous {
            Some(previous)
                if previous
                    .keyring
                    .verifying_kids()
                    .eq(keyring.verifying_kids()) =>
            {
                previous.verified.clone()
            }
            _ => Arc::new(VerifiedTokens::new(keys.verified_capacity)),
        };
        let successor_row = SecretRow::Setting(SUCCESSOR_KEY.to_owned());
        let mut stored = store.settings().await?;
        let successor_key = match stored.iter().find(|(name, _)| name == SUCCESSOR_KEY) {
            Some((_, key)) => key.clone(),
            None => {
                // First start. Several instances starting at once may each store one; the
                // last stands, and all use it from their next reload on.
                let key = random_hex_key();
                let sealed = master_key.seal(&associated_data(&successor_row), key.as_bytes());
                store
                    .put_setting(SUCCESSOR_KEY.to_owned(), sealed.clone())
                    .await?;
                stored = store.settings().await?;
                stored
                    .iter()
                    .find(|(name, _)| name == SUCCESSOR_KEY)
                    .map_or(sealed, |(_, key)| key.clone())
            }
        };
        Ok(Live {
            keyring,
            verified,
            lifetimes: defaults.with_stored(&stored),
            successor_key: open(master_key, &successor_row, &successor_key)?,
        })
    }

    /// Picks up keys, settings and (where the store keeps them in memory) sessions and
    /// profiles changed by another instance or by the command line.
    pub async fn reload(&self) -> Result<(), LoadError> {
        self.store.notice_outside_writes().await?;
        let live = Self::load_live(
            &self.store,
            self.configured_keys.as_deref(),
            &self.keys,
            self.default_lifetimes,
            &self.master_key,
            self.clock.now(),
            Some(&self.live.load()),
        )
        .await?;
        self.live.store(Arc::new(live));
        Ok(())
    }

    /// The token lifetimes and session rules in force.
    pub fn lifetimes(&self) -> Lifetimes {
        self.live.load().lifetimes
    }

    /// Validates and stores a run-time setting; every instance applies it at its next reload.
    pub async fn set_setting(&self, setting: Setting, value: &str) -> Result<String, String> {
        let stored = setting.parse(value)?;
        self.store
            .put_setting(setting.name().to_owned(), stored.clone())
            .await
            .map_err(|error| error.to_string())?;
        Ok(stored)
    }

    /// Removes a stored setting: the flag's value applies again.
    pub async fn unset_setting(&self, setting: Setting) -> Result<bool, StoreError> {
        self.store.delete_setting(setting.name().to_owned()).await
    }

    /// Seals every stored secret under `new_key` instead of the current master key, in one
    /// transaction; how many there are. Instances must then start with `new_key`.
    pub async fn rewrap(&self, new_key: &MasterKey) -> Result<usize, LoadError> {
        let resealed = self
            .store
            .secrets(secret_settings())
            .await?
            .into_iter()
            .map(|secret| {
                let plaintext = open(&self.master_key, &secret.row, &secret.value)?;
                Ok(StoredSecret {
                    value: new_key.seal(&associated_data(&secret.row), &plaintext),
                    row: secret.row,
                })
            })
            .collect::<Result<Vec<_>, VaultError>>()?;
        let count = resealed.len();
        self.store.replace_secrets(resealed).await?;
        Ok(count)
    }

    /// Deletes the sessions that are over (with all their tokens), retired keys, finished
    /// throttle windows and addresses no longer known to an account. A session that can still
    /// be refreshed stays whole, consumed tokens included, so a replay of any of them ends it.
    pub async fn housekeeping(&self, retention: std::time::Duration) -> Result<Purged, StoreError> {
        let now = self.clock.now();
        let lifetimes = self.lifetimes();
        let before = now - seconds(retention);
        // A key signs for at most a reload interval after it is superseded, and its tokens
        // live an access lifetime: a minute covers the reload.
        let keys_superseded_before = now - lifetimes.access - 60;
        self.store
            .purge(Purge {
                before,
                idle_before: before - lifetimes.refresh,
                started_before: lifetimes
                    .session
                    .max_session_lifetime
                    .map(|max| before - max),
                keys_superseded_before,
                throttle_before: now - 31 * 24 * 3600,
                audit_before: now - seconds(self.audit_retention),
                known_before: now - self.throttle.known_address_lifetime,
            })
            .await
    }

    /// Every rule of the policy `password` breaks, for the account of `email`.
    fn password_refusal(&self, password: &NewPassword, email: &str) -> Result<(), AuthError> {
        let violations = self.policy.violations(password.expose(), email);
        if violations.is_empty() {
            return Ok(());
        }
        Err(AuthError::Refused(Refusal {
            email: Vec::new(),
            password: violations,
        }))
    }

    /// Counts a registration attempt from `client` and refuses it when its address has made
    /// too many.
    pub async fn throttle_registration(&self, client: &Origin) -> Result<(), AuthError> {
        let Some(address) = self.address_of(client) else {
            return Ok(());
        };
        let Some(bucket) = Bucket::new("register-ip", &address, self.throttle.registrations_per_ip)
        else {
            return Ok(());
        };
        self.take_throttle(vec![bucket], Vec::new(), "registration")
            .await
    }

    /// Counts the attempt in each `take` bucket before it is made, so that concurrent attempts
    /// cannot all pass a check that none of them has counted in yet; refuses it when a bucket
    /// is full, or when one more would fill a `check` bucket.
    async fn take_throttle(
        &self,
        take: Vec<Bucket>,
        check: Vec<Bucket>,
        limit: &'static str,
    ) -> Result<(), AuthError> {
        if take.is_empty() && check.is_empty() {
            return Ok(());
        }
        match self
            .store
            .throttle_take(take, check, self.clock.now())
            .await?
        {
            Some(retry_after) => {
                metrics::counter!("throttled_requests_total", "limit" => limit).increment(1);
                Err(AuthError::Throttled { retry_after })
            }
            None => Ok(()),
        }
    }

    async fn settle_throttle(
        &self,
        reset: Option<String>,
        give_back: Vec<String>,
    ) -> Result<(), AuthError> {
        if reset.is_some() || !give_back.is_empty() {
            self.store
                .throttle_settle(reset.into_iter().collect(), give_back)
                .await?;
        }
        Ok(())
    }

    /// Checks `password` against `stored`; when the hashing pool sheds the check, no password
    /// was tried, so the attempts counted in the `counted` buckets are given back.
    async fn verify_counted(
        &self,
        password: Password,
        stored: Option<String>,
        counted: Vec<String>,
    ) -> Result<Verification, AuthError> {
        match self.hasher.verify(password, stored).await {
            Ok(verification) => Ok(verification),
            Err(overloaded) => {
                self.settle_throttle(None, counted).await?;
                Err(overloaded.into())
            }
        }
    }

    /// Creates an account whose username is its email, if the email is free and the password
    /// follows the policy; otherwise refuses with every rule broken.
    pub async fn register(
        &self,
        email: Email,
        password: NewPassword,
        origin: Origin,
    ) -> Result<UserId, AuthError> {
        let mut refusal = Refusal {
            email: Vec::new(),
            password: self.policy.violations(password.expose(), email.as_str()),
        };
        if self.store.email_registered(email.key().to_owned()).await? {
            refusal.email.push(email::TAKEN.to_owned());
        }
        if !refusal.is_empty() {
            return Err(AuthError::Refused(refusal));
        }
        let password_hash = self.hasher.hash(password.into()).await?;
        self.store
            .create_user(NewUser {
                email: email.as_str().to_owned(),
                email_key: email.key().to_owned(),
                username: email.as_str().to_owned(),
                password_hash,
                is_active: true,
                origin,
                now: self.clock.now(),
            })
            .await
            .map_err(|error| match error {
                // Lost a race with another registration of the same address.
                StoreError::EmailTaken => AuthError::Refused(Refusal::email_taken()),
                other => other.into(),
            })
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
                origin: Origin::of(Actor::Cli),
                now: self.clock.now(),
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
    pub async fn set_active(
        &self,
        user_id: UserId,
        active: bool,
        origin: Origin,
    ) -> Result<bool, StoreError> {
        self.store
            .set_active(user_id, active, origin, self.clock.now())
            .await
    }

    /// Replaces the password of `account` (an administrator's reset), if it follows the
    /// policy, and ends every session of the account.
    pub async fn set_password(
        &self,
        account: &Account,
        password: NewPassword,
        origin: Origin,
    ) -> Result<(), AuthError> {
        self.password_refusal(&password, &account.email)?;
        let password_hash = self.hasher.hash(password.into()).await?;
        self.store
            .set_password_hash(
                account.id,
                password_hash,
                None,
                PasswordReplacement::Reset,
                origin,
                self.clock.now(),
            )
            .await?;
        Ok(())
    }

    /// Checks the credentials and starts a new session. Unknown email, wrong password and
    /// inactive account fail alike and cost the same hash verification. An account with
    /// two-factor login on needs the `second` factor too, looked at only once the password is
    /// right (see [`mfa`]).
    pub async fn login(
        &self,
        email: &str,
        password: Password,
        second: SecondFactor,
        origin: Origin,
    ) -> Result<TokenPair, AuthError> {
        // Longer than any account's email or password: refused without a hash or a bucket.
        if email.chars().count() > email::MAX_LEN
            || password.expose().chars().count() > password::MAX_LEN
        {
            return Err(AuthError::InvalidCredentials);
        }
        let email_key = Email::lookup_key(email);
        let address = self.address_of(&origin);
        let buckets = self.login_buckets(&email_key, address.as_deref()).await?;
        // Attempts are counted in the account's buckets now, so concurrent guesses get no
        // more tries than the limits (and at most that many logins of one account are in
        // flight at once). The address's own bucket counts failures only: it is checked now
        // and counted after a failure, so many people behind one address never throttle
        // each other by logging in.
        let throttled = self
            .take_throttle(
                buckets.taken(),
                buckets.ip.iter().cloned().collect(),
                "login",
            )
            .await;
        if let Err(error) = throttled {
            if let AuthError::Throttled { .. } = error {
                // The owner sees attempts on their account, throttled ones too.
                let account = self.store.credentials(email_key).await?;
                let user_id = account.map(|found| found.user_id);
                let event = Event::login_throttled(user_id);
                self.store.record(event, origin, self.clock.now()).await?;
            }
            return Err(error);
        }

        let credentials = self.store.credentials(email_key).await?;
        let stored_hash = credentials
            .as_ref()
            .map(|found| found.password_hash.clone());
        let verification = self
            .verify_counted(password.clone(), stored_hash, buckets.taken_keys())
            .await?;
        if verification == Verification::Refused
            && let Some(found) = &credentials
        {
            tracing::warn!(
                user_id = found.user_id,
                "the stored password hash is malformed or beyond the cost limits; no login \
                 can succeed until the password is set again"
            );
        }
        let user_id = credentials.as_ref().map(|found| found.user_id);
        let failure = match &credentials {
            Some(found) if verification.matched() && !found.is_active => {
                Some(LoginFailure::Inactive)
            }
            Some(_) if verification.matched() => None,
            _ => Some(LoginFailure::BadCredentials),
        };
        let (Some(account), None) = (credentials, failure) else {
            metrics::counter!("logins_total", "outcome" => "failure").increment(1);
            if let Some(ip_bucket) = buckets.ip {
                // Past the limit already, it need not count any further.
                self.store
                    .throttle_take(vec![ip_bucket], Vec::new(), self.clock.now())
                    .await?;
            }
            let failure = failure.unwrap_or(LoginFailure::BadCredentials);
            let event = Event::login_failed(user_id, address.as_deref(), failure);
            self.store.record(event, origin, self.clock.now()).await?;
            return Err(AuthError::InvalidCredentials);
        };
        // A success forgives the failures from its own address; the account's count of
        // strangers' failures stays (it only gives back this attempt), as does the address's
        // count across accounts (a success proves nothing about other accounts).
        self.settle_throttle(
            buckets.account_address.map(|bucket| bucket.key),
            buckets
                .account
                .map(|bucket| bucket.key)
                .into_iter()
                .collect(),
        )
        .await?;
        if self.links.require_verified_email && !self.store.email_verified(account.user_id).await? {
            // Said only after the right password: it tells nothing to who does not have it.
            metrics::counter!("logins_total", "outcome" => "failure").increment(1);
            let failure = LoginFailure::EmailNotVerified;
            let event = Event::login_failed(user_id, address.as_deref(), failure);
            self.store.record(event, origin, self.clock.now()).await?;
            return Err(AuthError::EmailNotVerified);
        }
        let amr = self
            .second_factor(
                account.user_id,
                second,
                buckets.known,
                &origin,
                address.as_deref(),
            )
            .await?;

        let mut verified_hash = account.password_hash;
        if verification == (Verification::Match { rehash: true }) {
            // The one moment the plain password is at hand: replace an imported or outdated
            // hash with our Argon2id, so nobody is asked to reset a password. Only over the
            // hash just verified: a password set meanwhile (an administrator's reset) stands,
            // and this login then fails like any login with an old password.
            let password_hash = self.hasher.hash(password).await?;
            let replaced = self
                .store
                .set_password_hash(
                    account.user_id,
                    password_hash.clone(),
                    Some(verified_hash),
                    PasswordReplacement::Rehash,
                    origin.clone(),
                    self.clock.now(),
                )
                .await?;
            if !replaced {
                return Err(AuthError::InvalidCredentials);
            }
            verified_hash = password_hash;
        }

        let session_id = Uuid::new_v4();
        let refresh_token = RefreshToken::generate();
        let now = self.clock.now();
        let started = self
            .store
            .start_session(NewSession {
                id: session_id,
                user_id: account.user_id,
                verified_hash,
                address: address.clone(),
                refresh: refresh_token.digest(),
                refresh_expires_at: now + self.lifetimes().refresh,
                amr,
                origin: origin.clone(),
                now,
            })
            .await?;
        if !started {
            // The password changed, or the account was deactivated, while it was checked.
            metrics::counter!("logins_total", "outcome" => "failure").increment(1);
            let superseded = LoginFailure::Superseded;
            let event = Event::login_failed(user_id, address.as_deref(), superseded);
            self.store.record(event, origin, now).await?;
            return Err(AuthError::InvalidCredentials);
        }
        metrics::counter!("logins_total", "outcome" => "success").increment(1);
        Ok(self.pair(account.user_id, session_id, amr, refresh_token, now))
    }

    /// The network a client's address is counted under.
    fn address_of(&self, client: &Origin) -> Option<String> {
        client
            .ip
            .as_deref()
            .map(|ip| self.throttle.prefixes.network_of(ip))
    }

    /// The buckets a login of `email_key` from `address` counts in. An address that logged
    /// into the account lately is held by its own bucket alone; any other is also held by the
    /// account's bucket for strangers and by its own count across accounts.
    async fn login_buckets(
        &self,
        email_key: &str,
        address: Option<&str>,
    ) -> Result<LoginBuckets, StoreError> {
        let policy = &self.throttle;
        let account_address = Bucket::new(
            throttle::LOGIN_ACCOUNT_ADDRESS,
            &throttle::account_address(email_key, address),
            policy.login_failures_per_account_address,
        );
        let known = match address {
            Some(address) => {
                let since = self.clock.now() - policy.known_address_lifetime;
                self.store
                    .is_known_address(email_key.to_owned(), address.to_owned(), since)
                    .await?
            }
            None => false,
        };
        if known {
            return Ok(LoginBuckets {
                account_address,
                account: None,
                ip: None,
                known,
            });
        }
        Ok(LoginBuckets {
            account_address,
            account: Bucket::new(
                throttle::LOGIN_ACCOUNT,
                email_key,
                policy.login_failures_per_account,
            ),
            ip: address
                .and_then(|address| Bucket::new("login-ip", address, policy.login_failures_per_ip)),
            known,
        })
    }

    /// Consumes `presented` and returns its successor; a consumed token ends its session
    /// (unless it is a retry within the grace, which is answered with the same successor).
    pub async fn refresh(
        &self,
        presented: RefreshToken,
        origin: Origin,
    ) -> Result<TokenPair, AuthError> {
        let now = self.clock.now();
        let rotation = Redemption::Rotate {
            expires_at: now + self.lifetimes().refresh,
        };
        let (user_id, session_id, amr, successor) =
            self.redeem(presented, rotation, origin, now).await?;
        Ok(self.pair(user_id, session_id, amr, successor, now))
    }

    /// Ends the session of `presented`: its refresh and access tokens stop working at once.
    pub async fn logout(&self, presented: RefreshToken, origin: Origin) -> Result<(), AuthError> {
        self.redeem(presented, Redemption::EndSession, origin, self.clock.now())
            .await
            .map(drop)
    }

    async fn redeem(
        &self,
        presented: RefreshToken,
        redemption: Redemption,
        origin: Origin,
        now: i64,
    ) -> Result<(UserId, SessionId, Amr, RefreshToken), AuthError> {
        let (successor, policy) = {
            let live = self.live.load();
            (
                presented.successor(&live.successor_key),
                live.lifetimes.session,
            )
        };
        let redeem = Redeem {
            presented: presented.digest(),
            successor: successor.digest(),
            redemption,
            policy,
            throttle: self.address_of(&origin).and_then(|address| {
                Bucket::new(
                    "refresh-ip",
                    &address,
                    self.throttle.invalid_refresh_tokens_per_ip,
                )
            }),
            origin,
            now,
        };
        match self.store.redeem_refresh_token(redeem).await? {
            Redeemed::Accepted {
                user_id,
                session_id,
                amr,
            }
            | Redeemed::Repeated {
                user_id,
                session_id,
                amr,
            } => Ok((user_id, session_id, amr, successor)),
            Redeemed::ReuseDetected => {
                metrics::counter!("refresh_token_reuse_detected_total").increment(1);
                Err(AuthError::RefreshTokenReused)
            }
            Redeemed::Rejected => Err(AuthError::InvalidRefreshToken),
            Redeemed::Throttled { retry_after } => {
                metrics::counter!("throttled_requests_total", "limit" => "refresh").increment(1);
                Err(AuthError::Throttled { retry_after })
            }
        }
    }

    /// The audit log's rows that `query` selects, newest first.
    pub async fn audit(&self, query: AuditQuery) -> Result<Vec<Recorded>, StoreError> {
        self.store.audit_events(query).await
    }

    /// The service's clock's time.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The caller's own events, newest first: their changes and the attempts on their account.
    pub async fn activity(
        &self,
        caller: &AccessClaims,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Recorded>, StoreError> {
        self.audit(AuditQuery {
            user_id: Some(caller.user_id),
            before,
            limit,
            ..AuditQuery::default()
        })
        .await
    }

    /// The caller's live sessions.
    pub async fn sessions(&self, caller: &AccessClaims) -> Result<Vec<SessionInfo>, StoreError> {
        self.store.sessions(caller.user_id).await
    }

    /// Ends one of the caller's sessions; `false` if it has none by that id.
    pub async fn end_session(
        &self,
        caller: &AccessClaims,
        session_id: SessionId,
        origin: Origin,
    ) -> Result<bool, StoreError> {
        let ended = self
            .store
            .end_sessions(
                caller.user_id,
                SessionScope::Only(session_id),
                EndReason::Revoked,
                origin,
                self.clock.now(),
            )
            .await?;
        Ok(ended > 0)
    }

    /// Ends every session of the caller, its own included.
    pub async fn end_all_sessions(
        &self,
        caller: &AccessClaims,
        origin: Origin,
    ) -> Result<u64, StoreError> {
        self.store
            .end_sessions(
                caller.user_id,
                SessionScope::All,
                EndReason::LogoutAll,
                origin,
                self.clock.now(),
            )
            .await
    }

    /// Replaces the caller's password after checking the old one; every other session ends.
    /// The new password must follow the policy for the caller's `email`; that is checked
    /// first, so a weak new password costs no guess at the old one.
    pub async fn change_password(
        &self,
        caller: &AccessClaims,
        email: &str,
        old: Password,
        new: NewPassword,
        origin: Origin,
    ) -> Result<(), AuthError> {
        self.password_refusal(&new, email)?;
        // Guessing the old password with a stolen access token is throttled like logins.
        let bucket = Bucket::new(
            throttle::PASSWORD_CHANGE,
            &caller.user_id.to_string(),
            self.throttle.login_failures_per_account_address,
        );
        let key = bucket.as_ref().map(|bucket| bucket.key.clone());
        self.take_throttle(bucket.into_iter().collect(), Vec::new(), "password-change")
            .await?;
        let stored = self.store.password_hash(caller.user_id).await?;
        if stored.is_none() {
            return Err(AuthError::InvalidCredentials);
        }
        let verification = self
            .verify_counted(old, stored.clone(), key.iter().cloned().collect())
            .await?;
        if !verification.matched() {
            return Err(AuthError::WrongPassword);
        }
        self.settle_throttle(key, Vec::new()).await?;
        let password_hash = self.hasher.hash(new.into()).await?;
        // Only over the hash the old password was checked against: if another change won
        // meanwhile, the old password is no longer this one.
        let replaced = self
            .store
            .set_password_hash(
                caller.user_id,
                password_hash,
                stored,
                PasswordReplacement::Changed {
                    end: SessionScope::AllBut(caller.sid),
                },
                origin,
                self.clock.now(),
            )
            .await?;
        if replaced {
            Ok(())
        } else {
            Err(AuthError::WrongPassword)
        }
    }

    /// Whether the store answers with the expected schema.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.ready().await
    }

    pub fn pool_state(&self) -> crate::store::PoolState {
        self.store.pool_state()
    }

    /// Checks an access token's signature, algorithm, issuer, audience, type and expiry (or
    /// finds it verified before); no database involved.
    pub fn verify_access_token(
        &self,
        token: &str,
    ) -> Result<Arc<AccessClaims>, InvalidAccessToken> {
        let live = self.live.load();
        live.verified.verify(&live.keyring, token, self.clock.now())
    }

    /// The caller's profile, if its session is live and its account active.
    pub async fn profile(&self, caller: &AccessClaims) -> Result<Option<Profile>, StoreError> {
        self.store.profile(caller.user_id, caller.sid).await
    }

    pub async fn rename(
        &self,
        caller: &AccessClaims,
        username: Username,
        origin: Origin,
    ) -> Result<Option<Profile>, StoreError> {
        self.store
            .rename(
                caller.user_id,
                caller.sid,
                username.into_string(),
                origin,
                self.clock.now(),
            )
            .await
    }

    fn pair(
        &self,
        user_id: UserId,
        session_id: SessionId,
        amr: Amr,
        refresh_token: RefreshToken,
        now: i64,
    ) -> TokenPair {
        let live = self.live.load();
        let lifetime = live.lifetimes.access;
        TokenPair {
            access_token: live
                .keyring
                .issue_for(user_id, session_id, amr, now, lifetime),
            refresh_token,
            expires_in: lifetime,
        }
    }
}

fn seconds(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2)
}

/// 256 random bits, hex-encoded: the secrets the service generates are used as this text.
fn random_hex_key() -> String {
    hex::encode(crate::domain::random_bytes::<32>())
}

fn secret_settings() -> Vec<String> {
    SECRET_SETTINGS
        .iter()
        .map(|name| (*name).to_owned())
        .collect()
}

/// What binds a sealed value to its row, so that values cannot be swapped between rows.
fn associated_data(row: &SecretRow) -> String {
    match row {
        SecretRow::SigningKey(kid) => format!("signing_keys:{kid}"),
        SecretRow::Setting(name) => format!("settings:{name}"),
        SecretRow::TotpSecret(user_id) => format!("totp_factors:{user_id}"),
    }
}

fn open(master_key: &MasterKey, row: &SecretRow, sealed: &str) -> Result<Vec<u8>, VaultError> {
    let row = associated_data(row);
    master_key
        .open(&row, sealed)
        .map_err(|_| VaultError::WrongKey { row })
}

/// The master key: the configured file, else the configured value, else (SQLite only) the
/// file beside the database, generated at first start. A missing file is never replaced
/// while the database holds values sealed under the lost key.
fn unlock(config: &Config, stored: &[StoredSecret]) -> Result<MasterKey, VaultError> {
    let allow_exposed = config.allow_insecure_permissions;
    if let Some(path) = &config.master_key_file {
        return MasterKey::read_file(path, allow_exposed);
    }
    if let Some(key) = &config.master_key {
        return Ok(key.clone());
    }
    let path = default_master_key_file(config).ok_or(VaultError::NotConfigured)?;
    if std::fs::symlink_metadata(&path).is_ok() {
        return MasterKey::read_file(&path, allow_exposed);
    }
    if stored.iter().any(|secret| vault::is_sealed(&secret.value)) {
        return Err(VaultError::Missing { path });
    }
    let key = MasterKey::generate();
    key.write_file(&path)?;
    tracing::warn!(
        path = %path.display(),
        "generated the master key that seals the secrets in the database; back it up with the \
         database: without it they cannot be read"
    );
    Ok(key)
}

/// `<database file>.master-key` for a SQLite database; none for PostgreSQL, whose instances
/// must share one configured key.
pub fn default_master_key_file(config: &Config) -> Option<PathBuf> {
    let mut path = config.sqlite_path()?.into_os_string();
    path.push(".master-key");
    Some(path.into())
}

/// Seals what an earlier build stored in plaintext, in one transaction, after checking that
/// every sealed value opens (so that a wrong key changes nothing).
async fn seal_plaintext_secrets<S: Store>(
    store: &S,
    master_key: &MasterKey,
    stored: Vec<StoredSecret>,
) -> Result<(), LoadError> {
    let mut sealed = Vec::new();
    for secret in stored {
        if vault::is_sealed(&secret.value) {
            open(master_key, &secret.row, &secret.value)?;
        } else {
            sealed.push(StoredSecret {
                value: master_key.seal(&associated_data(&secret.row), secret.value.as_bytes()),
                row: secret.row,
            });
        }
    }
    if !sealed.is_empty() {
        let count = sealed.len();
        store.replace_secrets(sealed).await?;
        tracing::info!(
            count,
            "sealed the secrets stored in plaintext under the master key"
        );
    }
    Ok(())
}
