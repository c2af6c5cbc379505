//! Storage: one trait that the domain speaks to, one implementation per database. No SQL lives
//! outside this module; every method is one round trip (one transaction) to the database.

use std::future::Future;

use crate::auth::sessions::{PresentedToken, Redemption, Verdict};
use crate::auth::tokens::RefreshDigest;
use crate::auth::{Profile, SessionId, UserId};

pub mod django;
pub mod postgres;
pub mod sqlite;

pub use postgres::{PoolSettings, PostgresStore};
pub use sqlite::SqliteStore;

/// A user about to be created.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub email_key: String,
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
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
    pub refresh: RefreshDigest,
    pub refresh_expires_at: i64,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
    pub now: i64,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeemed {
    /// Accepted: the token is consumed and the redemption carried out.
    Accepted {
        user_id: UserId,
        session_id: SessionId,
    },
    /// Unknown, expired, ended, or of an inactive user: nothing changed.
    Rejected,
    /// A consumed token came back: its session has been ended.
    ReuseDetected,
}

/// Connections of a store's pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolState {
    pub in_use: u32,
    pub idle: u32,
}

#[derive(Debug, thiserror::Error)]
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

/// The persistence the service needs. Implementations are cheap to clone (a pool handle).
pub trait Store: Clone + Send + Sync + 'static {
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
    /// transaction. `false` if there is no such account.
    fn set_active(
        &self,
        user_id: UserId,
        active: bool,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Replaces the user's password hash.
    fn set_password_hash(
        &self,
        user_id: UserId,
        password_hash: String,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn start_session(
        &self,
        session: NewSession,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// In one transaction: reads the token, lets [`judge`](crate::auth::sessions::judge) decide,
    /// and carries out the verdict — consuming the token and performing `redemption`, or ending
    /// the session on reuse. Of concurrent calls with one token, at most one is accepted.
    fn redeem_refresh_token(
        &self,
        presented: RefreshDigest,
        redemption: Redemption,
        now: i64,
    ) -> impl Future<Output = Result<Redeemed, StoreError>> + Send;

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
        now: i64,
    ) -> impl Future<Output = Result<Option<Profile>, StoreError>> + Send;

    /// `Ok` when the database answers and its schema is the one this build migrates to.
    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many pooled connections are in use and idle, for metrics.
    fn pool_state(&self) -> PoolState;

    /// Closes the connections cleanly (on SQLite: checkpoints the write-ahead log into the
    /// database file, so it is complete on its own).
    fn close(&self) -> impl Future<Output = ()> + Send;

    /// The stored signing secret; `generated` is stored first if there is none yet. Concurrent
    /// first starts all end up with the one secret that won.
    fn signing_secret(
        &self,
        generated: String,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;
}

/// Shared by every implementation: readiness needs exactly the schema this build knows.
fn expect_schema(found: i64, expected: usize) -> Result<(), StoreError> {
    if usize::try_from(found) == Ok(expected) {
        Ok(())
    } else {
        Err(StoreError::SchemaMismatch { found, expected })
    }
}

/// Shared by every implementation: the verdict on a presented token, given what was read.
fn verdict(token: Option<PresentedToken>, now: i64) -> Verdict {
    token.map_or(Verdict::Reject, |token| {
        crate::auth::sessions::judge(&token, now)
    })
}
