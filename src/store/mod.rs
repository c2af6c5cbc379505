//! Storage: the traits the use cases speak to, one per role ([`Accounts`], [`Sessions`],
//! [`Throttle`], [`Settings`], [`AuditLog`], [`Admin`], [`Recovery`], and [`Store`] for all of
//! them with housekeeping), and one
//! implementation per database. No SQL lives outside this module; every method is one round
//! trip (one transaction) to the database. Second factors ([`Factors`]) are a role of their own.

use std::future::Future;

use crate::domain::RefreshDigest;
use crate::domain::audit::{AuditQuery, Event, EventName, Origin, Recorded};
use crate::domain::keys::KeySchedule;
use crate::domain::links::{LinkDigest, Purpose, Recipient};
use crate::domain::mfa::{Amr, RecoveryDigest};
use crate::domain::sessions::{EndReason, PresentedToken, Redemption, SessionPolicy, Verdict};
use crate::domain::throttle::{AccountBuckets, Bucket};
use crate::domain::{Profile, SessionId, UserId};

pub mod django;
mod migrations;
pub mod postgres;
mod profile_cache;
pub mod sqlite;

pub use postgres::{PoolSettings, PostgresStore};
pub use sqlite::{SqliteSettings, SqliteStore};

/// A user about to be created.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub email_key: String,
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
    /// Who created it: recorded with `user.registered`.
    pub origin: Origin,
    pub now: i64,
}

/// An account as the administration commands show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: UserId,
    pub email: String,
    pub username: String,
    pub is_active: bool,
    pub created_at: i64,
    pub active_sessions: i64,
}

/// What a login checks.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user_id: UserId,
    pub password_hash: String,
    pub is_active: bool,
}

/// A session about to start, with its first refresh token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    /// The password hash the login verified: the session starts only if it is still the
    /// account's (and the account still active), so a password change or a deactivation that
    /// commits while the login is being checked cannot leave it a live session.
    pub verified_hash: String,
    /// Where the login came from, as throttling counts addresses: it becomes an address known
    /// to the account.
    pub address: Option<String>,
    pub refresh: RefreshDigest,
    pub refresh_expires_at: i64,
    /// How the login was authenticated: the `amr` of every access token of the session.
    pub amr: Amr,
    /// The client: its address and user agent are recorded with the session and its
    /// `login.succeeded`.
    pub origin: Origin,
    pub now: i64,
}

/// A presented refresh token and what to do with it.
#[derive(Debug, Clone)]
pub struct Redeem {
    pub presented: RefreshDigest,
    /// The digest of the token that rotation derives from the presented one.
    pub successor: RefreshDigest,
    pub redemption: Redemption,
    pub policy: SessionPolicy,
    /// The client address's bucket of invalid tokens: checked before the token is, and
    /// counted when the token is refused or replayed.
    pub throttle: Option<Bucket>,
    /// Recorded with the events a logout or a replay causes.
    pub origin: Origin,
    pub now: i64,
}

/// A live session, as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
    pub amr: Amr,
}

/// Which of a user's sessions an operation concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionScope {
    All,
    Only(SessionId),
    AllBut(SessionId),
}

/// Why a password hash is replaced: what the change records, and which sessions end with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordReplacement {
    /// A login replacing an outdated hash of the same password: nothing ends, nothing is
    /// recorded.
    Rehash,
    /// The owner changed it, knowing the old one: a `password.changed`, and the sessions
    /// `end` selects end (a changed password must not leave a thief's session alive).
    Changed { end: SessionScope },
    /// An operator set it: a `password.reset`, and every session ends.
    Reset,
}

impl PasswordReplacement {
    /// The event a replacement records and the sessions it ends; none for a rehash.
    fn recorded(self) -> Option<(EventName, SessionScope)> {
        match self {
            PasswordReplacement::Rehash => None,
            PasswordReplacement::Changed { end } => Some((EventName::PasswordChanged, end)),
            PasswordReplacement::Reset => Some((EventName::PasswordReset, SessionScope::All)),
        }
    }
}

/// Housekeeping: what may go. A session that can still be refreshed stays whole, with the
/// digests of its consumed tokens: a replay of any of them must end it however old it is.
#[derive(Debug, Clone, Copy)]
pub struct Purge {
    /// Sessions that ended before this time go, with their tokens.
    pub before: i64,
    /// Sessions not used since this time hold only expired tokens: they go too.
    pub idle_before: i64,
    /// Sessions started before this time are past their absolute lifetime (if one is set).
    pub started_before: Option<i64>,
    /// Addresses whose last login into an account is older than this are no longer known to it.
    pub known_before: i64,
    /// Signing keys superseded before this time verify no unexpired token any more.
    pub keys_superseded_before: i64,
    /// Throttle windows that started before this time are over.
    pub throttle_before: i64,
    /// Audit events recorded before this time are past their retention.
    pub audit_before: i64,
}

/// How many rows housekeeping deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub refresh_tokens: u64,
    pub sessions: u64,
    pub signing_keys: u64,
    pub throttle_buckets: u64,
    pub known_addresses: u64,
    pub audit_events: u64,
}

/// A signing key as stored.
#[derive(Clone)]
pub struct StoredKey {
    pub kid: String,
    /// As JOSE names it (`EdDSA`, `ES256`, `HS256`).
    pub algorithm: String,
    /// Sealed under the master key.
    pub secret: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
}

impl StoredKey {
    pub fn schedule(&self) -> KeySchedule {
        KeySchedule {
            created_at: self.created_at,
            activates_at: self.activates_at,
            retired_at: self.retired_at,
        }
    }
}

/// `WHERE` and the conditions, joined; nothing when there are none.
fn where_all(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

/// Both backends read the keys alike, newest first.
const SELECT_SIGNING_KEYS: &str =
    "SELECT kid, algorithm, secret, created_at, activates_at, retired_at FROM signing_keys
     ORDER BY activates_at DESC, created_at DESC, kid";

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredKey({}, <redacted>)", self.kid)
    }
}

/// The row a secret is stored in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRow {
    /// `signing_keys.secret` of the key with this id.
    SigningKey(String),
    /// `settings.value` of the setting with this name.
    Setting(String),
    /// `totp_factors.secret` of the user with this id.
    TotpSecret(UserId),
}

/// A secret as stored: sealed by the domain, or in plaintext as an earlier build wrote it.
#[derive(Clone)]
pub struct StoredSecret {
    pub row: SecretRow,
    pub value: String,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredSecret({:?}, <redacted>)", self.row)
    }
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeemed {
    /// Accepted: the token is consumed and the redemption carried out.
    Accepted {
        user_id: UserId,
        session_id: SessionId,
        amr: Amr,
    },
    /// A retry within the grace: nothing changed; the successor is the live token.
    Repeated {
        user_id: UserId,
        session_id: SessionId,
        amr: Amr,
    },
    /// Unknown, expired, ended, or of an inactive user: nothing changed.
    Rejected,
    /// A consumed token came back: its session has been ended.
    ReuseDetected,
    /// The client's address presented too many invalid tokens: nothing was looked at.
    Throttled { retry_after: i64 },
}

/// Connections of a store's pool (on SQLite, its pool of readers).
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolState {
    pub in_use: u32,
    pub idle: u32,
    /// The most it opens.
    pub max: u32,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("the database schema is at version {found}; this build expects {expected}")]
    SchemaMismatch { found: i64, expected: usize },
}

/// Accounts: who exists, their credentials and profile.
pub trait Accounts: Send + Sync {
    /// Creates the user; [`StoreError::EmailTaken`] if its email key exists.
    fn create_user(&self, user: NewUser)
    -> impl Future<Output = Result<UserId, StoreError>> + Send;

    fn email_registered(
        &self,
        email_key: String,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn credentials(
        &self,
        email_key: String,
    ) -> impl Future<Output = Result<Option<Credentials>, StoreError>> + Send;

    /// The account whose email key is `email_key`.
    fn account(
        &self,
        email_key: String,
    ) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;

    /// Every account, oldest first.
    fn accounts(&self) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send;

    /// Activates or deactivates the account; deactivation ends all of its sessions in the same
    /// transaction. `false` if there is no such account. A change of state is recorded.
    fn set_active(
        &self,
        user_id: UserId,
        active: bool,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Replaces the user's password hash and, in the same transaction, records the
    /// `replacement` and ends the sessions it ends. With `expected`, only if that is still the
    /// stored hash (compare-and-set: a hash computed from a password checked against it must
    /// not undo a change made meanwhile). Whether it was replaced.
    fn set_password_hash(
        &self,
        user_id: UserId,
        password_hash: String,
        expected: Option<String>,
        replacement: PasswordReplacement,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The password hash of an active user.
    fn password_hash(
        &self,
        user_id: UserId,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The profile of `user_id` if it is active and its session `session_id` has not ended.
    fn profile(
        &self,
        user_id: UserId,
        session_id: SessionId,
    ) -> impl Future<Output = Result<Option<Profile>, StoreError>> + Send;

    /// Renames the user under the same conditions as [`profile`](Self::profile).
    fn rename(
        &self,
        user_id: UserId,
        session_id: SessionId,
        username: String,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<Option<Profile>, StoreError>> + Send;
}

/// Sessions and their refresh tokens.
pub trait Sessions: Send + Sync {
    /// Starts the session, with its first refresh token, if the account is active and its
    /// password hash is still the one verified (see [`NewSession::verified_hash`]), and
    /// records the login's address as known to the account; one transaction that a concurrent
    /// password change or deactivation is ordered with. Whether it started.
    fn start_session(
        &self,
        session: NewSession,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// In one transaction: reads the token, lets [`judge`](crate::domain::sessions::judge) decide,
    /// and carries out the verdict — consuming the token and performing the redemption, or
    /// ending the session on reuse. Of concurrent calls with one token, at most one is accepted.
    /// With a [throttle](Redeem::throttle) bucket that is full, nothing is looked at; a refused
    /// or replayed token counts in it.
    fn redeem_refresh_token(
        &self,
        redeem: Redeem,
    ) -> impl Future<Output = Result<Redeemed, StoreError>> + Send;

    /// The user's sessions that have not ended, most recently used first.
    fn sessions(
        &self,
        user_id: UserId,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send;

    /// Ends the user's sessions that `scope` selects, each recorded; how many ended.
    fn end_sessions(
        &self,
        user_id: UserId,
        scope: SessionScope,
        reason: EndReason,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Throttle counters, and the addresses known to accounts.
pub trait Throttle: Send + Sync {
    /// Counts one attempt in each `take` bucket, opening a new window where the last one has
    /// passed, unless that takes a bucket past its limit, or one more attempt would take a
    /// `check` bucket (not counted) past its own: then nothing is counted, and the answer is
    /// the seconds until each such bucket has room again. One transaction, so that of
    /// concurrent attempts no more pass than a `take` bucket's limit allows.
    fn throttle_take(
        &self,
        take: Vec<Bucket>,
        check: Vec<Bucket>,
        now: i64,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Forgets the `reset` buckets, and gives back one attempt counted in each `give_back`
    /// bucket.
    fn throttle_settle(
        &self,
        reset: Vec<String>,
        give_back: Vec<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether `address` logged into the account of `email_key` at or after `since`.
    fn is_known_address(
        &self,
        email_key: String,
        address: String,
        since: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Run-time settings, signing keys and the other sealed secrets.
pub trait Settings: Send + Sync {
    /// The run-time settings stored, as `(name, value)`.
    fn settings(&self) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;

    fn put_setting(
        &self,
        name: String,
        value: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn delete_setting(&self, name: String)
    -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every stored signing key, retired ones included. With `generated`, that key is stored
    /// first when no key is in force at `now` (none yet, or every one retired): concurrent
    /// starts all end up with the one key that won.
    fn signing_keys(
        &self,
        generated: Option<StoredKey>,
        now: i64,
    ) -> impl Future<Output = Result<Vec<StoredKey>, StoreError>> + Send;

    /// Adds a key. Its `created_at` is made later than every other key's, so that of keys
    /// activating at once the added one signs.
    fn add_signing_key(
        &self,
        key: StoredKey,
        origin: Origin,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Retires the key `kid` at `now`; whether it was in force.
    fn retire_signing_key(
        &self,
        kid: String,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every stored signing key's secret and the values of the `settings` named, in one read.
    fn secrets(
        &self,
        settings: Vec<String>,
    ) -> impl Future<Output = Result<Vec<StoredSecret>, StoreError>> + Send;

    /// Replaces the values of the rows named, all in one transaction: every one or none. A
    /// row that no longer exists is skipped. On SQLite the log is then emptied into the file,
    /// so that no copy of a replaced value stays behind in it.
    fn replace_secrets(
        &self,
        secrets: Vec<StoredSecret>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// An account as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOverview {
    pub account: Account,
    /// When its newest session started (ended or not, until housekeeping deletes it).
    pub last_login: Option<i64>,
}

/// A page of accounts, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountQuery {
    /// Only accounts whose email or username holds this text, whatever its case.
    pub search: Option<String>,
    /// Only accounts after this id (the cursor of the page before).
    pub after: Option<UserId>,
    pub limit: u32,
}

/// An administrator's change to an account; a field left `None` stays as it is.
#[derive(Debug, Clone)]
pub struct AccountChange {
    /// The address as stored and its key ([`NewUser::email`], [`NewUser::email_key`]).
    pub email: Option<(String, String)>,
    pub username: Option<String>,
    pub is_active: Option<bool>,
    pub now: i64,
}

/// The fields an [`AccountChange`] can name, as the API and the audit log name them.
pub const CHANGEABLE_FIELDS: [&str; 3] = ["email", "username", "is_active"];

/// The names of the fields a change changed, of [`CHANGEABLE_FIELDS`], in their order.
fn changed_fields(email: bool, username: bool, is_active: bool) -> Vec<&'static str> {
    CHANGEABLE_FIELDS
        .into_iter()
        .zip([email, username, is_active])
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect()
}

/// The `profile.updated` of a change, if it changed the profile (a change of activation is
/// an event of its own).
fn profile_updated(user_id: UserId, changed: &[&'static str]) -> Option<Event> {
    let profile: Vec<&str> = changed
        .iter()
        .copied()
        .filter(|field| *field != "is_active")
        .collect();
    (!profile.is_empty()).then(|| Event::profile_updated(user_id, &profile))
}

/// The `throttle.cleared` of an unlock, with how many buckets it cleared.
fn throttle_cleared(user_id: UserId, cleared: u64) -> Event {
    Event::about(EventName::ThrottleCleared, user_id)
        .with_detail(serde_json::json!({"buckets": cleared}))
}

/// The admin API's side of the store: any account, whoever owns it, found by id. Each write
/// is one transaction, as every store write is.
pub trait Admin: Send + Sync {
    /// The accounts `query` selects, oldest first, at most `query.limit`.
    fn find_accounts(
        &self,
        query: AccountQuery,
    ) -> impl Future<Output = Result<Vec<AccountOverview>, StoreError>> + Send;

    fn account_by_id(
        &self,
        user_id: UserId,
    ) -> impl Future<Output = Result<Option<AccountOverview>, StoreError>> + Send;

    /// The live sessions of the account, newest first, at most `limit`; after the session
    /// `after` (the cursor of the page before) when given.
    fn account_sessions(
        &self,
        user_id: UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send;

    /// Applies `change`; the names of the fields whose value it changed (of
    /// [`CHANGEABLE_FIELDS`]), or `None` if there is no such account. An email whose key is
    /// another account's is [`StoreError::EmailTaken`], and nothing changes. Deactivation ends
    /// every session of the account, as [`Accounts::set_active`] does.
    fn update_account(
        &self,
        user_id: UserId,
        change: AccountChange,
        origin: Origin,
    ) -> impl Future<Output = Result<Option<Vec<&'static str>>, StoreError>> + Send;

    /// Erases the account with its sessions, their tokens, its known addresses and its
    /// `buckets`; whether there was one.
    fn delete_account(
        &self,
        user_id: UserId,
        buckets: AccountBuckets,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Ends the session `session_id` if it is live, whoever's it is; whose it was.
    fn end_any_session(
        &self,
        session_id: SessionId,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<Option<UserId>, StoreError>> + Send;

    /// Forgets the throttle buckets of the account `user_id` (`buckets`); how many there were.
    fn clear_throttle(
        &self,
        user_id: UserId,
        buckets: AccountBuckets,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// `text` as a `LIKE` pattern matching any value that holds it (escape character `\`): a
/// `%` or `_` searched for is itself, not a wildcard.
fn containing(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The audit log. Changes record their events in their own transactions; this is for the
/// events that change nothing else (a refused login) and for reading.
pub trait AuditLog: Send + Sync {
    /// Records `event`, folded into the latest row of its [fold](Event::fold) key when that is
    /// recent (see [`FOLD_WINDOW`](crate::domain::audit::FOLD_WINDOW)).
    fn record(
        &self,
        event: Event,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The rows `query` selects, newest first.
    fn audit_events(
        &self,
        query: AuditQuery,
    ) -> impl Future<Output = Result<Vec<Recorded>, StoreError>> + Send;
}

/// Which account a new link is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOwner {
    /// The account registered with this email key (a password reset asked for by anyone).
    Email(String),
    /// This account (a verification its owner asked for).
    Id(UserId),
}

/// A link about to be mailed.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub owner: LinkOwner,
    pub purpose: Purpose,
    pub digest: LinkDigest,
    pub expires_at: i64,
    /// Who asked: recorded with the request's event.
    pub origin: Origin,
    pub now: i64,
}

/// Links mailed to accounts' addresses: password resets and email verification. A link opens
/// only while its account is active and still has the address the link was sent to.
pub trait Recovery: Send + Sync {
    /// Stores the link for its owner, if that is an active account (for a verification: one
    /// whose address is not verified yet), replacing the owner's earlier link of the purpose,
    /// and records the request; one transaction. Whom to mail it to, or `None`.
    fn issue_link(
        &self,
        link: NewLink,
    ) -> impl Future<Output = Result<Option<Recipient>, StoreError>> + Send;

    /// The account a live link of `purpose` would open, without consuming it.
    fn link_owner(
        &self,
        digest: LinkDigest,
        purpose: Purpose,
        now: i64,
    ) -> impl Future<Output = Result<Option<Recipient>, StoreError>> + Send;

    /// In one transaction: consumes the live reset link `digest` (a conditional delete, so of
    /// concurrent uses, on any number of instances, one wins), sets the password hash, marks
    /// the address verified (the link reached it), ends every session of the account, and
    /// records it all. The account, or `None` when the link opened nothing.
    fn reset_password(
        &self,
        digest: LinkDigest,
        password_hash: String,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<Option<UserId>, StoreError>> + Send;

    /// In one transaction: consumes the live verification link `digest` and marks the
    /// account's address verified, recorded. The account, or `None`.
    fn verify_email(
        &self,
        digest: LinkDigest,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<Option<UserId>, StoreError>> + Send;

    /// Whether the account's address has been verified.
    fn email_verified(
        &self,
        user_id: UserId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// An account's authenticator (TOTP), as stored.
#[derive(Clone)]
pub struct TotpFactor {
    /// Sealed under the master key (see [`SecretRow::TotpSecret`]).
    pub secret: String,
    /// Confirmed by a code: login needs one. Until then the factor changes nothing.
    pub confirmed: bool,
    /// The last time step whose code was accepted.
    pub last_step: Option<i64>,
}

impl std::fmt::Debug for TotpFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TotpFactor(<redacted>, confirmed: {}, last_step: {:?})",
            self.confirmed, self.last_step
        )
    }
}

/// A pending authenticator confirmed, with the recovery codes that come with it.
#[derive(Debug, Clone)]
pub struct ConfirmTotp {
    pub user_id: UserId,
    /// The sealed secret the code was checked against: only that one is confirmed, not one
    /// that a concurrent enrolment put in its place.
    pub secret: String,
    /// The step of the code that confirmed it: used, like a login's.
    pub step: i64,
    /// Replace any the account had.
    pub recovery_codes: Vec<RecoveryDigest>,
    /// Recorded with `mfa.enabled`.
    pub session_id: SessionId,
    pub origin: Origin,
    pub now: i64,
}

/// Whether an account has a second factor, and what is left of its recovery codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MfaStatus {
    pub totp: bool,
    pub recovery_codes_left: i64,
}

/// Second factors: the authenticator (TOTP) and the recovery codes. Every use of a code is a
/// conditional write, so that of concurrent uses of one code (on any instance) one wins.
pub trait Factors: Send + Sync {
    /// The account's authenticator, pending or confirmed.
    fn totp_factor(
        &self,
        user_id: UserId,
    ) -> impl Future<Output = Result<Option<TotpFactor>, StoreError>> + Send;

    /// Stores a pending authenticator with the `secret` (sealed), replacing a pending one;
    /// `false`, changing nothing, if a confirmed one is in place.
    fn put_pending_totp(
        &self,
        user_id: UserId,
        secret: String,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Confirms the pending authenticator, if it is still the one checked, replaces the
    /// account's recovery codes and records `mfa.enabled`, in one transaction; whether it did.
    fn confirm_totp(
        &self,
        confirm: ConfirmTotp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks `step` used on the confirmed authenticator if no step at or after it was:
    /// whether this call did (of concurrent calls with one step, exactly one).
    fn use_totp_step(
        &self,
        user_id: UserId,
        step: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks the unused recovery code used and records `mfa.recovery_code_used`: whether this
    /// call did (of concurrent calls with one code, exactly one).
    fn use_recovery_code(
        &self,
        user_id: UserId,
        code: RecoveryDigest,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes the confirmed authenticator and the recovery codes, records `mfa.disabled` and
    /// ends the sessions `end` selects, in one transaction; `false` if there was none.
    fn remove_totp(
        &self,
        user_id: UserId,
        end: SessionScope,
        origin: Origin,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn mfa_status(
        &self,
        user_id: UserId,
    ) -> impl Future<Output = Result<MfaStatus, StoreError>> + Send;
}

/// The persistence the service needs, by role; implementations are cheap to clone (a pool
/// handle). Housekeeping and the connection's life are the store's as a whole.
pub trait Store:
    Accounts
    + Sessions
    + Throttle
    + Settings
    + AuditLog
    + Admin
    + Recovery
    + Factors
    + Clone
    + Send
    + Sync
    + 'static
{
    /// Deletes what is no longer needed; see [`Purge`].
    fn purge(&self, purge: Purge) -> impl Future<Output = Result<Purged, StoreError>> + Send;

    /// `Ok` when the database answers and its schema is the one this build migrates to.
    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Picks up what another process (the command line) wrote, where this store keeps
    /// something in memory that such a write changes. Called every `--reload-interval`.
    fn notice_outside_writes(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// How many pooled connections are in use and idle, and the most there may be, for metrics.
    fn pool_state(&self) -> PoolState;

    /// Closes the connections cleanly (on SQLite: checkpoints the write-ahead log into the
    /// database file, so it is complete on its own).
    fn close(&self) -> impl Future<Output = ()> + Send;
}

impl Redeem {
    /// The verdict on the presented token, given what the transaction read of it (the token of
    /// `session_id`, a session of `user_id`), and the writes that carry it out: decided here
    /// once, and written by each store in its own SQL.
    fn decide(
        &self,
        token: &PresentedToken,
        user_id: UserId,
        session_id: SessionId,
        amr: Amr,
    ) -> Decision {
        let verdict = match crate::domain::sessions::judge(token, &self.policy, self.now) {
            // The grace repeats a rotation; a logout with a consumed token is a replay like
            // any other, and its session ends.
            Verdict::Repeat if matches!(self.redemption, Redemption::EndSession) => {
                Verdict::EndSessionForReuse
            }
            verdict => verdict,
        };
        let (write, outcome) = match verdict {
            Verdict::Accept => (
                RedeemWrite::Consume(self.redemption),
                Redeemed::Accepted {
                    user_id,
                    session_id,
                    amr,
                },
            ),
            Verdict::Repeat => (
                RedeemWrite::Nothing,
                Redeemed::Repeated {
                    user_id,
                    session_id,
                    amr,
                },
            ),
            Verdict::EndSessionForReuse => (
                RedeemWrite::EndSession(EndReason::RefreshTokenReused),
                Redeemed::ReuseDetected,
            ),
            Verdict::EndSessionPastLifetime => (
                RedeemWrite::EndSession(EndReason::MaxAge),
                Redeemed::Rejected,
            ),
            Verdict::Reject => (RedeemWrite::Nothing, Redeemed::Rejected),
        };
        Decision { write, outcome }
    }
}

/// What a redeemed token's transaction writes, and answers once that has committed.
struct Decision {
    write: RedeemWrite,
    outcome: Redeemed,
}

enum RedeemWrite {
    Nothing,
    /// Consume the token, then rotate it or end its session (logout).
    Consume(Redemption),
    /// End the token's session (a replay).
    EndSession(EndReason),
}

#[cfg(test)]
mod tests {
    use super::containing;

    #[test]
    fn a_searched_text_is_matched_as_itself_never_as_wildcards() {
        assert_eq!(containing("ann"), "%ann%");
        assert_eq!(containing("100%_off\\"), "%100\\%\\_off\\\\%");
    }
}
