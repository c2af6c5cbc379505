//! PostgreSQL: for running several stateless instances against one shared database. Refresh
//! tokens are consumed by a conditional write under a row lock, so of concurrent refreshes on
//! any number of instances exactly one wins.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use super::{
    Account, AccountChange, AccountOverview, AccountQuery, Accounts, Admin, AuditLog, ConfirmTotp,
    Credentials, Factors, LinkOwner, MfaStatus, NewLink, NewSession, NewUser, PasswordReplacement,
    PoolState, Purge, Purged, Recovery, Redeem, RedeemWrite, Redeemed, SecretRow, SessionInfo,
    SessionScope, Sessions, Settings, Store, StoreError, StoredKey, StoredSecret, Throttle,
    TotpFactor, migrations, where_all,
};
use crate::domain::audit::{AuditQuery, Event, EventName, FOLD_WINDOW, Origin, Recorded};
use crate::domain::links::{LinkDigest, Purpose, Recipient};
use crate::domain::mfa::{Amr, RecoveryDigest};
use crate::domain::sessions::{EndReason, PresentedToken, Redemption};
use crate::domain::throttle::{AccountBuckets, Bucket};
use crate::domain::{Profile, SessionId, UserId};

/// Serialises migrations of instances that start at once (an arbitrary, fixed key).
const MIGRATION_LOCK: i64 = 0x7265_7374_6175_7468;

/// Sessions that are over: ended before `$1`, unused since `$2` (their tokens have all
/// expired), or started before `$3` (past their absolute lifetime, when one is set). Until
/// then a session keeps the digests of all its consumed tokens, so that a replay of any of
/// them is recognised and ends it.
macro_rules! sessions_over {
    () => {
        "(ended_at IS NOT NULL AND ended_at < $1) OR last_seen_at < $2
         OR ($3::bigint IS NOT NULL AND created_at < $3)"
    };
}

/// How the pool reaches the database.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
}

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and brings the schema up to date.
    pub async fn open(url: &str, settings: &PoolSettings) -> Result<PostgresStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Database(error.to_string()))?
            .options([(
                "statement_timeout",
                settings.statement_timeout.as_millis().to_string(),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            // No ping per checkout: a connection that broke fails its request with a 503 and is
            // dropped, and the pool opens a fresh one for the next.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(database_error)?;
        migrate(&pool).await?;
        Ok(PostgresStore { pool })
    }

    /// The common refresh in one round trip: one statement consumes the presented token if
    /// [`judge`](crate::domain::sessions::judge) would accept it (the same conditions, in SQL),
    /// stores its successor and touches the session. `None`: nothing was consumed, and the
    /// caller judges the token in a transaction (a retry, reuse, or a refusal). The consuming
    /// update's row lock lets one of concurrent redeemers win; the others find it consumed.
    async fn rotate_live_token(
        &self,
        redeem: &Redeem,
        expires_at: i64,
    ) -> Result<Option<Redeemed>, StoreError> {
        let rotated = sqlx::query(
            "WITH consumed AS (
                 UPDATE refresh_tokens t SET consumed_at = $3
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE t.token_hash = $1 AND t.consumed_at IS NULL AND t.expires_at > $3
                   AND s.id = t.session_id AND s.ended_at IS NULL AND u.is_active
                   AND ($5::bigint IS NULL OR s.created_at + $5 > $3)
                   -- A full bucket of invalid tokens: the judging path answers it.
                   AND NOT EXISTS (SELECT 1 FROM throttle_buckets b
                                   WHERE b.key = $6 AND b.window_start + $7 > $3 AND b.hits >= $8)
                 RETURNING t.session_id, s.user_id, s.amr),
             successor AS (
                 INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at)
                 SELECT $2, session_id, $3, $4 FROM consumed),
             touched AS (
                 UPDATE sessions SET last_seen_at = $3
                 FROM consumed WHERE sessions.id = consumed.session_id
                   AND sessions.last_seen_at <> $3)
             SELECT session_id::text, user_id, amr FROM consumed",
        )
        .bind(&redeem.presented[..])
        .bind(&redeem.successor[..])
        .bind(redeem.now)
        .bind(expires_at)
        .bind(redeem.policy.max_session_lifetime)
        .bind(redeem.throttle.as_ref().map(|bucket| bucket.key.as_str()))
        .bind(redeem.throttle.as_ref().map(|bucket| bucket.limit.window))
        .bind(redeem.throttle.as_ref().map(|bucket| bucket.limit.hits))
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        let Some(row) = rotated else {
            return Ok(None);
        };
        let session_text: String = row.try_get(0).map_err(database_error)?;
        let amr: String = row.try_get(2).map_err(database_error)?;
        Ok(Some(Redeemed::Accepted {
            user_id: row.try_get(1).map_err(database_error)?,
            session_id: session_id_of(&session_text)?,
            amr: Amr::from_stored(&amr),
        }))
    }
}

async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(database_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(database_error)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await
    .map_err(database_error)?;
    let applied: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(database_error)?;
    for (version, script) in migrations::pending(migrations::POSTGRES, applied)? {
        sqlx::raw_sql(script)
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
    }
    tx.commit().await.map_err(database_error)
}

/// Lost connections, timeouts and server shutdowns are "try again" (503); the rest are bugs.
fn database_error(error: sqlx::Error) -> StoreError {
    let transient = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        // Class 08: connection exception; 57: operator intervention (shutdown, terminated
        // backend, statement timeout); 53: insufficient resources; and what a new connection
        // meets while the database is down or closed to connections: 28 (authorization),
        // 3D000 (no such database), 55000 (connections not allowed).
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            ["08", "57", "53", "28", "3D000", "55000"]
                .iter()
                .any(|prefix| code.starts_with(prefix))
        }),
        _ => false,
    };
    if transient {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Database(error.to_string())
    }
}

fn profile_row(row: &sqlx::postgres::PgRow) -> Result<Profile, sqlx::Error> {
    Ok(Profile {
        id: row.try_get(0)?,
        username: row.try_get(1)?,
        email: row.try_get(2)?,
    })
}

const ACCOUNT_COLUMNS: &str = "SELECT u.id, u.email, u.username, u.is_active, u.created_at,
        (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.ended_at IS NULL)
     FROM users u";

fn account_row(row: &sqlx::postgres::PgRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        username: row.try_get(2)?,
        is_active: row.try_get(3)?,
        created_at: row.try_get(4)?,
        active_sessions: row.try_get(5)?,
    })
}

async fn select_signing_keys(
    executor: impl sqlx::PgExecutor<'_>,
) -> Result<Vec<StoredKey>, StoreError> {
    type Row = (String, String, String, i64, i64, Option<i64>);
    let keys: Vec<Row> = sqlx::query_as(super::SELECT_SIGNING_KEYS)
        .fetch_all(executor)
        .await
        .map_err(database_error)?;
    Ok(keys
        .into_iter()
        .map(
            |(kid, algorithm, secret, created_at, activates_at, retired_at)| StoredKey {
                kid,
                algorithm,
                secret,
                created_at,
                activates_at,
                retired_at,
            },
        )
        .collect())
}

/// A session as listed: `id::text, created_at, last_seen_at, user_agent, client_ip, amr`.
fn session_info_row(row: &sqlx::postgres::PgRow) -> Result<SessionInfo, sqlx::Error> {
    let id: String = row.try_get(0)?;
    Ok(SessionInfo {
        id: Uuid::parse_str(&id).map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
        created_at: row.try_get(1)?,
        last_seen_at: row.try_get(2)?,
        user_agent: row.try_get(3)?,
        client_ip: row.try_get(4)?,
        amr: Amr::from_stored(row.try_get(5)?),
    })
}

fn uuid_text(id: &SessionId) -> String {
    id.hyphenated().to_string()
}

/// A session id the database gave back as text (`id::text`).
fn session_id_of(text: &str) -> Result<SessionId, StoreError> {
    Uuid::parse_str(text).map_err(|error| StoreError::Database(error.to_string()))
}

impl Accounts for PostgresStore {
    async fn create_user(&self, user: NewUser) -> Result<UserId, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let user_id = sqlx::query_scalar(
            "INSERT INTO users
                 (email, email_key, username, password_hash, is_active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(user.email)
        .bind(user.email_key)
        .bind(user.username)
        .bind(user.password_hash)
        .bind(user.is_active)
        .bind(user.now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(database) if database.is_unique_violation() => {
                StoreError::EmailTaken
            }
            _ => database_error(error),
        })?;
        let registered = Event::about(EventName::UserRegistered, user_id);
        record(&mut *tx, &user.origin, user.now, &registered).await?;
        tx.commit().await.map_err(database_error)?;
        Ok(user_id)
    }

    async fn email_registered(&self, email_key: String) -> Result<bool, StoreError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email_key = $1)")
            .bind(email_key)
            .fetch_one(&self.pool)
            .await
            .map_err(database_error)
    }

    async fn credentials(&self, email_key: String) -> Result<Option<Credentials>, StoreError> {
        let row =
            sqlx::query("SELECT id, password_hash, is_active FROM users WHERE email_key = $1")
                .bind(email_key)
                .fetch_optional(&self.pool)
                .await
                .map_err(database_error)?;
        row.map(|row| {
            Ok(Credentials {
                user_id: row.try_get(0)?,
                password_hash: row.try_get(1)?,
                is_active: row.try_get(2)?,
            })
        })
        .transpose()
        .map_err(database_error)
    }

    async fn account(&self, email_key: String) -> Result<Option<Account>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ACCOUNT_COLUMNS} WHERE u.email_key = $1"
        )))
        .bind(email_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?
        .as_ref()
        .map(account_row)
        .transpose()
        .map_err(database_error)
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ACCOUNT_COLUMNS} ORDER BY u.id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?
        .iter()
        .map(account_row)
        .collect::<Result<_, _>>()
        .map_err(database_error)
    }

    async fn set_active(
        &self,
        user_id: UserId,
        active: bool,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        // The old state, read under the update's row lock.
        let was_active: Option<bool> = sqlx::query_scalar(
            "UPDATE users u SET is_active = $2, updated_at = $3
             FROM (SELECT id, is_active FROM users WHERE id = $1 FOR UPDATE) old
             WHERE u.id = old.id RETURNING old.is_active",
        )
        .bind(user_id)
        .bind(active)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(database_error)?;
        let Some(was_active) = was_active else {
            return Ok(false);
        };
        if was_active != active {
            record(&mut *tx, &origin, now, &Event::activation(user_id, active)).await?;
        }
        if !active {
            let reason = EndReason::Deactivated;
            end_user_sessions(&mut *tx, user_id, SessionScope::All, reason, &origin, now).await?;
        }
        tx.commit().await.map_err(database_error)?;
        Ok(true)
    }

    async fn set_password_hash(
        &self,
        user_id: UserId,
        password_hash: String,
        expected: Option<String>,
        replacement: PasswordReplacement,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        // The update locks the user's row first: a login's session insert (which holds a share
        // lock on it) is either over, and its session is ended below, or waits and sees the new
        // hash.
        let replaced = sqlx::query(
            "UPDATE users SET password_hash = $2, updated_at = $3
             WHERE id = $1 AND ($4::text IS NULL OR password_hash = $4)",
        )
        .bind(user_id)
        .bind(password_hash)
        .bind(now)
        .bind(expected)
        .execute(&mut *tx)
        .await
        .map_err(database_error)?
        .rows_affected()
            == 1;
        if let (true, Some((event, scope))) = (replaced, replacement.recorded()) {
            let changed = Event::about(event, user_id);
            record(&mut *tx, &origin, now, &changed).await?;
            let reason = EndReason::PasswordChanged;
            end_user_sessions(&mut *tx, user_id, scope, reason, &origin, now).await?;
        }
        tx.commit().await.map_err(database_error)?;
        Ok(replaced)
    }

    async fn password_hash(&self, user_id: UserId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1 AND is_active")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(database_error)
    }

    async fn profile(
        &self,
        user_id: UserId,
        session_id: SessionId,
    ) -> Result<Option<Profile>, StoreError> {
        sqlx::query(
            "SELECT u.id, u.username, u.email
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id = $1::uuid AND s.user_id = $2 AND s.ended_at IS NULL AND u.is_active",
        )
        .bind(uuid_text(&session_id))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?
        .as_ref()
        .map(profile_row)
        .transpose()
        .map_err(database_error)
    }

    async fn rename(
        &self,
        user_id: UserId,
        session_id: SessionId,
        username: String,
        origin: Origin,
        now: i64,
    ) -> Result<Option<Profile>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let renamed = sqlx::query(
            "UPDATE users SET username = $3, updated_at = $4
             WHERE id = $2 AND is_active AND EXISTS (
                 SELECT 1 FROM sessions WHERE id = $1::uuid AND user_id = $2 AND ended_at IS NULL)
             RETURNING id, username, email",
        )
        .bind(uuid_text(&session_id))
        .bind(user_id)
        .bind(username)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(database_error)?
        .as_ref()
        .map(profile_row)
        .transpose()
        .map_err(database_error)?;
        if renamed.is_some() {
            let updated = Event::profile_updated(user_id, &["username"]).in_session(session_id);
            record(&mut *tx, &origin, now, &updated).await?;
        }
        tx.commit().await.map_err(database_error)?;
        Ok(renamed)
    }
}

impl Sessions for PostgresStore {
    async fn start_session(&self, session: NewSession) -> Result<bool, StoreError> {
        // One statement, so the session, its first token and the known address appear
        // together or not at all. `FOR SHARE` orders it with a password change or a
        // deactivation (which update the user's row first): one waits for the other, and
        // after a change the re-read row no longer matches the verified hash.
        let started = sqlx::query(
            "WITH verified AS (
                 SELECT id FROM users
                 WHERE id = $2 AND password_hash = $8 AND is_active
                 FOR SHARE),
             session AS (
                 INSERT INTO sessions
                     (id, user_id, created_at, last_seen_at, user_agent, client_ip, amr)
                 SELECT $1::uuid, id, $3, $3, $4, $5, $13 FROM verified RETURNING id, user_id),
             token AS (
                 INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at)
                 SELECT $6, id, $3, $7 FROM session),
             known AS (
                 INSERT INTO known_addresses (user_id, address, last_login_at)
                 SELECT user_id, $9, $3 FROM session WHERE $9::text IS NOT NULL
                 ON CONFLICT (user_id, address) DO UPDATE SET last_login_at = excluded.last_login_at),
             logged AS (
                 INSERT INTO audit_events
                     (time, event, user_id, session_id, actor, ip, user_agent, request_id, detail)
                 SELECT $3, $10, user_id, id, $11, $5, $4, $12, 'null' FROM session)
             SELECT count(*) FROM session",
        )
        .bind(uuid_text(&session.id))
        .bind(session.user_id)
        .bind(session.now)
        .bind(&session.origin.user_agent)
        .bind(&session.origin.ip)
        .bind(&session.refresh[..])
        .bind(session.refresh_expires_at)
        .bind(session.verified_hash)
        .bind(session.address)
        .bind(EventName::LoginSucceeded.as_str())
        .bind(session.origin.actor.as_str())
        .bind(&session.origin.request_id)
        .bind(session.amr.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(database_error)?;
        let started: i64 = started.try_get(0).map_err(database_error)?;
        Ok(started == 1)
    }

    async fn redeem_refresh_token(&self, redeem: Redeem) -> Result<Redeemed, StoreError> {
        if let Redemption::Rotate { expires_at } = redeem.redemption
            && let Some(rotated) = self.rotate_live_token(&redeem, expires_at).await?
        {
            return Ok(rotated);
        }
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        if let Some(bucket) = &redeem.throttle
            && let Some(retry_after) = bucket_wait(&mut *tx, bucket, 1, redeem.now).await?
        {
            return Ok(Redeemed::Throttled { retry_after });
        }
        let outcome = redeem_judged(&mut tx, &redeem).await?;
        if let (Some(bucket), Redeemed::Rejected | Redeemed::ReuseDetected) =
            (&redeem.throttle, outcome)
        {
            bucket_hit(&mut *tx, bucket, redeem.now).await?;
        }
        tx.commit().await.map_err(database_error)?;
        Ok(outcome)
    }

    async fn sessions(&self, user_id: UserId) -> Result<Vec<SessionInfo>, StoreError> {
        sqlx::query(
            "SELECT id::text, created_at, last_seen_at, user_agent, client_ip, amr FROM sessions
             WHERE user_id = $1 AND ended_at IS NULL ORDER BY last_seen_at DESC, created_at DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?
        .iter()
        .map(session_info_row)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(database_error)
    }

    async fn end_sessions(
        &self,
        user_id: UserId,
        scope: SessionScope,
        reason: EndReason,
        origin: Origin,
        now: i64,
    ) -> Result<u64, StoreError> {
        end_user_sessions(&self.pool, user_id, scope, reason, &origin, now).await
    }
}

impl Throttle for PostgresStore {
    async fn throttle_take(
        &self,
        take: Vec<Bucket>,
        check: Vec<Bucket>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let mut wait = None;
        for bucket in &check {
            wait = wait.max(bucket_wait(&mut *tx, bucket, 1, now).await?);
        }
        for bucket in &take {
            wait = wait.max(bucket_hit(&mut *tx, bucket, now).await?);
        }
        if wait.is_some() {
            tx.rollback().await.map_err(database_error)?;
        } else {
            tx.commit().await.map_err(database_error)?;
        }
        Ok(wait)
    }

    async fn throttle_settle(
        &self,
        reset: Vec<String>,
        give_back: Vec<String>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        sqlx::query("DELETE FROM throttle_buckets WHERE key = ANY($1)")
            .bind(reset)
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
        sqlx::query("UPDATE throttle_buckets SET hits = hits - 1 WHERE key = ANY($1) AND hits > 0")
            .bind(give_back)
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
        tx.commit().await.map_err(database_error)
    }

    async fn is_known_address(
        &self,
        email_key: String,
        address: String,
        since: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (
                 SELECT 1 FROM users u JOIN known_addresses k ON k.user_id = u.id
                 WHERE u.email_key = $1 AND k.address = $2 AND k.last_login_at >= $3)",
        )
        .bind(email_key)
        .bind(address)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(database_error)
    }
}

impl Settings for PostgresStore {
    async fn settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as("SELECT key, value FROM settings ORDER BY key")
            .fetch_all(&self.pool)
            .await
            .map_err(database_error)
    }

    async fn put_setting(&self, name: String, value: String) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(database_error)
    }

    async fn delete_setting(&self, name: String) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected() > 0)
            .map_err(database_error)
    }

    async fn signing_keys(
        &self,
        generated: Option<StoredKey>,
        now: i64,
    ) -> Result<Vec<StoredKey>, StoreError> {
        // Every reload reads; only a first start (or one after every key was retired) writes,
        // under a lock so that concurrent starts agree on one key.
        let keys = select_signing_keys(&self.pool).await?;
        let Some(generated) = generated else {
            return Ok(keys);
        };
        if keys.iter().any(|key| key.schedule().in_force(now)) {
            return Ok(keys);
        }
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, secret, created_at, activates_at)
             SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM signing_keys
                 WHERE activates_at <= $6 AND (retired_at IS NULL OR retired_at > $6))",
        )
        .bind(generated.kid)
        .bind(generated.algorithm)
        .bind(generated.secret)
        .bind(generated.created_at)
        .bind(generated.activates_at)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(database_error)?;
        let keys = select_signing_keys(&mut *tx).await?;
        tx.commit().await.map_err(database_error)?;
        Ok(keys)
    }

    async fn add_signing_key(&self, key: StoredKey, origin: Origin) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let rotated = Event::key(EventName::KeyRotated, &key.kid, &key.algorithm);
        record(&mut *tx, &origin, key.created_at, &rotated).await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, secret, created_at, activates_at)
             VALUES ($1, $2, $3,
                 GREATEST($4, (SELECT COALESCE(MAX(created_at), 0) + 1 FROM signing_keys)), $5)",
        )
        .bind(key.kid)
        .bind(key.algorithm)
        .bind(key.secret)
        .bind(key.created_at)
        .bind(key.activates_at)
        .execute(&mut *tx)
        .await
        .map_err(database_error)?;
        tx.commit().await.map_err(database_error)
    }

    async fn retire_signing_key(
        &self,
        kid: String,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let algorithm: Option<String> = sqlx::query_scalar(
            "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL
             RETURNING algorithm",
        )
        .bind(&kid)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(database_error)?;
        let Some(algorithm) = algorithm else {
            return Ok(false);
        };
        let retired = Event::key(EventName::KeyRetired, &kid, &algorithm);
        record(&mut *tx, &origin, now, &retired).await?;
        tx.commit().await.map_err(database_error)?;
        Ok(true)
    }

    async fn secrets(&self, settings: Vec<String>) -> Result<Vec<StoredSecret>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let keys: Vec<(String, String)> =
            sqlx::query_as("SELECT kid, secret FROM signing_keys ORDER BY kid")
                .fetch_all(&mut *tx)
                .await
                .map_err(database_error)?;
        let values: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM settings WHERE key = ANY($1) ORDER BY key")
                .bind(settings)
                .fetch_all(&mut *tx)
                .await
                .map_err(database_error)?;
        let totp_secrets: Vec<(UserId, String)> =
            sqlx::query_as("SELECT user_id, secret FROM totp_factors ORDER BY user_id")
                .fetch_all(&mut *tx)
                .await
                .map_err(database_error)?;
        tx.commit().await.map_err(database_error)?;
        let keys = keys.into_iter().map(|(kid, value)| StoredSecret {
            row: SecretRow::SigningKey(kid),
            value,
        });
        let totp_secrets = totp_secrets
            .into_iter()
            .map(|(user_id, value)| StoredSecret {
                row: SecretRow::TotpSecret(user_id),
                value,
            });
        let values = values.into_iter().map(|(name, value)| StoredSecret {
            row: SecretRow::Setting(name),
            value,
        });
        Ok(keys.chain(totp_secrets).chain(values).collect())
    }

    async fn replace_secrets(&self, secrets: Vec<StoredSecret>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        for secret in secrets {
            let update = match secret.row {
                SecretRow::SigningKey(kid) => {
                    sqlx::query("UPDATE signing_keys SET secret = $2 WHERE kid = $1").bind(kid)
                }
                SecretRow::Setting(name) => {
                    sqlx::query("UPDATE settings SET value = $2 WHERE key = $1").bind(name)
                }
                SecretRow::TotpSecret(user_id) => {
                    sqlx::query("UPDATE totp_factors SET secret = $2 WHERE user_id = $1")
                        .bind(user_id)
                }
            };
            update
                .bind(secret.value)
                .execute(&mut *tx)
                .await
                .map_err(database_error)?;
        }
        tx.commit().await.map_err(database_error)
    }
}

/// The log's columns, in the order [`Recorded`] is read from.
const SELECT_AUDIT_EVENTS: &str =
    "SELECT id, time, event, user_id, session_id::text, actor, ip, user_agent,
                    request_id, detail::text FROM audit_events";

impl AuditLog for PostgresStore {
    async fn record(&self, event: Event, origin: Origin, now: i64) -> Result<(), StoreError> {
        record(&self.pool, &origin, now, &event).await
    }

    async fn audit_events(&self, query: AuditQuery) -> Result<Vec<Recorded>, StoreError> {
        let mut conditions = Vec::new();
        for (filter, _) in query.filters() {
            conditions.push(format!("{} ${}", filter.condition(), conditions.len() + 1));
        }
        if query.event.is_some() {
            conditions.push(format!("event = ${}", conditions.len() + 1));
        }
        let sql = format!(
            "{SELECT_AUDIT_EVENTS} {} ORDER BY id DESC LIMIT ${}",
            where_all(&conditions),
            conditions.len() + 1
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (_, value) in query.filters() {
            select = select.bind(value);
        }
        if let Some(event) = query.event {
            select = select.bind(event.as_str());
        }
        let rows = select
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(database_error)?;
        rows.iter()
            .map(|row| {
                let session: Option<String> = row.try_get(4).map_err(database_error)?;
                let detail: String = row.try_get(9).map_err(database_error)?;
                Ok(Recorded {
                    id: row.try_get(0).map_err(database_error)?,
                    time: row.try_get(1).map_err(database_error)?,
                    event: row.try_get(2).map_err(database_error)?,
                    user_id: row.try_get(3).map_err(database_error)?,
                    session_id: session.as_deref().map(session_id_of).transpose()?,
                    actor: row.try_get(5).map_err(database_error)?,
                    ip: row.try_get(6).map_err(database_error)?,
                    user_agent: row.try_get(7).map_err(database_error)?,
                    request_id: row.try_get(8).map_err(database_error)?,
                    detail: serde_json::from_str(&detail).unwrap_or_default(),
                })
            })
            .collect()
    }
}

impl Store for PostgresStore {
    async fn purge(&self, purge: Purge) -> Result<Purged, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let over = [
            Some(purge.before),
            Some(purge.idle_before),
            purge.started_before,
        ];
        let mut run = async |sql: &'static str, binds: &[Option<i64>]| {
            let mut query = sqlx::query(sql);
            for bind in binds {
                query = query.bind(*bind);
            }
            query
                .execute(&mut *tx)
                .await
                .map(|done| done.rows_affected())
                .map_err(database_error)
        };
        let purged = Purged {
            refresh_tokens: run(
                concat!(
                    "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE ",
                    sessions_over!(),
                    ")"
                ),
                &over,
            )
            .await?,
            sessions: run(concat!("DELETE FROM sessions WHERE ", sessions_over!()), &over).await?,
            signing_keys: run(
                // Retired, or superseded by a key in force, before $1: their tokens expired.
                "DELETE FROM signing_keys
                 WHERE retired_at < $1
                    OR (retired_at IS NULL AND activates_at < (SELECT max(activates_at)
                            FROM signing_keys WHERE retired_at IS NULL AND activates_at < $1))",
                &[Some(purge.keys_superseded_before)],
            )
            .await?,
            throttle_buckets: run(
                "DELETE FROM throttle_buckets WHERE window_start < $1",
                &[Some(purge.throttle_before)],
            )
            .await?,
            known_addresses: run(
                "DELETE FROM known_addresses WHERE last_login_at < $1",
                &[Some(purge.known_before)],
            )
            .await?,
            audit_events: run(
                "DELETE FROM audit_events WHERE time < $1",
                &[Some(purge.audit_before)],
            )
            .await?,
        };
        tx.commit().await.map_err(database_error)?;
        Ok(purged)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let found: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&self.pool)
                .await
                .map_err(database_error)?;
        migrations::expect_current(migrations::POSTGRES, found)
    }

    fn pool_state(&self) -> PoolState {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolState {
            in_use: self.pool.size().saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Judges the presented token in `tx` and carries out the verdict (the path of everything but
/// an ordinary rotation).
async fn redeem_judged(
    tx: &mut Transaction<'_, Postgres>,
    redeem: &Redeem,
) -> Result<Redeemed, StoreError> {
    // Lock the token row first: concurrent redeemers of one token wait here. The judging
    // read below is a statement of its own, so its snapshot shows what the winner
    // committed (its successor, an ended session), not only the re-read locked row.
    sqlx::query("SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE")
        .bind(&redeem.presented[..])
        .execute(&mut **tx)
        .await
        .map_err(database_error)?;
    let found = sqlx::query(
        "SELECT t.session_id::text, s.user_id, t.expires_at, t.consumed_at, s.created_at,
                s.ended_at IS NOT NULL, u.is_active,
                -- Only for a consumed token (the retry grace): CASE skips the lookup.
                CASE WHEN t.consumed_at IS NOT NULL THEN
                    EXISTS (SELECT 1 FROM refresh_tokens n
                            WHERE n.token_hash = $2 AND n.session_id = t.session_id
                              AND n.consumed_at IS NULL)
                ELSE FALSE END,
                s.amr
         FROM refresh_tokens t
         JOIN sessions s ON s.id = t.session_id
         JOIN users u ON u.id = s.user_id
         WHERE t.token_hash = $1",
    )
    .bind(&redeem.presented[..])
    .bind(&redeem.successor[..])
    .fetch_optional(&mut **tx)
    .await
    .map_err(database_error)?
    .map(|row| -> Result<_, sqlx::Error> {
        let token = PresentedToken {
            expires_at: row.try_get(2)?,
            consumed_at: row.try_get(3)?,
            session_created_at: row.try_get(4)?,
            session_ended: row.try_get(5)?,
            user_active: row.try_get(6)?,
            successor_is_live: row.try_get(7)?,
        };
        Ok((
            row.try_get::<String, _>(0)?,
            row.try_get::<UserId, _>(1)?,
            token,
            Amr::from_stored(row.try_get(8)?),
        ))
    })
    .transpose()
    .map_err(database_error)?;

    let Some((session_text, user_id, token, amr)) = found else {
        return Ok(Redeemed::Rejected);
    };
    let session_id = session_id_of(&session_text)?;
    let now = redeem.now;
    let decision = redeem.decide(&token, user_id, session_id, amr);
    match decision.write {
        RedeemWrite::Nothing => {}
        RedeemWrite::Consume(redemption) => {
            let consumed = sqlx::query(
                "UPDATE refresh_tokens SET consumed_at = $2
                 WHERE token_hash = $1 AND consumed_at IS NULL",
            )
            .bind(&redeem.presented[..])
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(database_error)?;
            if consumed.rows_affected() != 1 {
                return Ok(Redeemed::Rejected);
            }
            match redemption {
                Redemption::Rotate { expires_at } => {
                    sqlx::query(
                        "WITH next AS (
                             INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at)
                             VALUES ($1, $2::uuid, $3, $4))
                         UPDATE sessions SET last_seen_at = $3
                         WHERE id = $2::uuid AND last_seen_at <> $3",
                    )
                    .bind(&redeem.successor[..])
                    .bind(&session_text)
                    .bind(now)
                    .bind(expires_at)
                    .execute(&mut **tx)
                    .await
                    .map_err(database_error)?;
                }
                Redemption::EndSession => {
                    end_one_session(tx, &session_text, EndReason::Logout, now).await?;
                    let ended = Event::session_ended(user_id, session_id, EndReason::Logout);
                    record(&mut **tx, &redeem.origin, now, &ended).await?;
                }
            }
        }
        RedeemWrite::EndSession(reason) => {
            end_one_session(tx, &session_text, reason, now).await?;
            let ended = Event::redeem_ended(user_id, session_id, reason);
            record(&mut **tx, &redeem.origin, now, &ended).await?;
        }
    }
    Ok(decision.outcome)
}

/// How long an attempt must wait because `bucket` would hold `more` attempts past its limit
/// (`None`: there is room).
async fn bucket_wait(
    executor: impl sqlx::PgExecutor<'_>,
    bucket: &Bucket,
    more: i64,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let counted: Option<(i64, i64)> = sqlx::query_as(
        "SELECT window_start, hits FROM throttle_buckets
         WHERE key = $1 AND window_start + $2 > $3",
    )
    .bind(&bucket.key)
    .bind(bucket.limit.window)
    .bind(now)
    .fetch_optional(executor)
    .await
    .map_err(database_error)?;
    let (window_start, hits) = counted.unwrap_or((now, 0));
    Ok(bucket.limit.wait_after(window_start, hits + more, now))
}

/// Counts one attempt in `bucket`; how long it must wait if that took the bucket past its
/// limit. The upsert locks the row: concurrent attempts on one bucket count one by one.
async fn bucket_hit(
    executor: impl sqlx::PgExecutor<'_>,
    bucket: &Bucket,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let (window_start, hits): (i64, i64) = sqlx::query_as(
        "INSERT INTO throttle_buckets AS b (key, window_start, hits) VALUES ($1, $2, 1)
         ON CONFLICT (key) DO UPDATE SET
             hits = CASE WHEN b.window_start + $3 <= $2 THEN 1 ELSE b.hits + 1 END,
             window_start = CASE WHEN b.window_start + $3 <= $2 THEN $2 ELSE b.window_start END
         RETURNING window_start, hits",
    )
    .bind(&bucket.key)
    .bind(now)
    .bind(bucket.limit.window)
    .fetch_one(executor)
    .await
    .map_err(database_error)?;
    Ok(bucket.limit.wait_after(window_start, hits, now))
}

async fn end_one_session(
    tx: &mut Transaction<'_, Postgres>,
    session_id: &str,
    reason: EndReason,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sessions SET ended_at = $2, end_reason = $3, last_seen_at = $2
         WHERE id = $1::uuid AND ended_at IS NULL",
    )
    .bind(session_id)
    .bind(now)
    .bind(reason.as_str())
    .execute(&mut **tx)
    .await
    .map(drop)
    .map_err(database_error)
}

/// Ends the user's live sessions that `scope` selects, recording each in the same statement;
/// how many ended.
async fn end_user_sessions(
    executor: impl sqlx::PgExecutor<'_>,
    user_id: UserId,
    scope: SessionScope,
    reason: EndReason,
    origin: &Origin,
    now: i64,
) -> Result<u64, StoreError> {
    let (filter, session) = match scope {
        SessionScope::All => ("", None),
        SessionScope::Only(id) => (" AND id = $10::uuid", Some(uuid_text(&id))),
        SessionScope::AllBut(id) => (" AND id <> $10::uuid", Some(uuid_text(&id))),
    };
    let sql = format!(
        "WITH ended AS (
             UPDATE sessions SET ended_at = $2, end_reason = $3
             WHERE user_id = $1 AND ended_at IS NULL{filter} RETURNING id)
         INSERT INTO audit_events
             (time, event, user_id, session_id, actor, ip, user_agent, request_id, detail)
         SELECT $2, $4, $1, id, $5, $6, $7, $8, $9::jsonb FROM ended"
    );
    let mut update = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(now)
        .bind(reason.as_str())
        .bind(EventName::SessionEnded.as_str())
        .bind(origin.actor.as_str())
        .bind(&origin.ip)
        .bind(&origin.user_agent)
        .bind(&origin.request_id)
        .bind(Event::end_detail(reason).to_string());
    if let Some(session) = session {
        update = update.bind(session);
    }
    Ok(update
        .execute(executor)
        .await
        .map_err(database_error)?
        .rows_affected())
}

/// Writes `event`; an event with a fold key adds to the count of the latest row of its key
/// instead, if that row is less than [`FOLD_WINDOW`] old. One statement, so it is atomic on
/// its own and part of the transaction it runs in.
async fn record(
    executor: impl sqlx::PgExecutor<'_>,
    origin: &Origin,
    now: i64,
    event: &Event,
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH folded AS (
             UPDATE audit_events
             SET detail = jsonb_set(detail, '{count}', to_jsonb((detail->>'count')::bigint + 1))
             WHERE id = (SELECT max(id) FROM audit_events WHERE fold_key = $10 AND time > $11)
             RETURNING id)
         INSERT INTO audit_events (time, event, user_id, session_id, actor, ip, user_agent,
                                   request_id, detail, fold_key)
         SELECT $1, $2, $3, $4::uuid, $5, $6, $7, $8, $9::jsonb, $10
         WHERE NOT EXISTS (SELECT 1 FROM folded)",
    )
    .bind(now)
    .bind(event.name.as_str())
    .bind(event.user_id)
    .bind(event.session_id.as_ref().map(uuid_text))
    .bind(origin.actor.as_str())
    .bind(&origin.ip)
    .bind(&origin.user_agent)
    .bind(&origin.request_id)
    .bind(event.detail.to_string())
    .bind(&event.fold)
    .bind(now - FOLD_WINDOW)
    .execute(executor)
    .await
    .map(drop)
    .map_err(database_error)
}

/// The admin API's columns: an account, its live sessions and its latest login.
const OVERVIEW_COLUMNS: &str = "SELECT u.id, u.email, u.username, u.is_active, u.created_at,
        (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.ended_at IS NULL),
        (SELECT max(s.created_at) FROM sessions s WHERE s.user_id = u.id)
     FROM users u";

fn overview_row(row: &sqlx::postgres::PgRow) -> Result<AccountOverview, sqlx::Error> {
    Ok(AccountOverview {
        account: account_row(row)?,
        last_login: row.try_get(6)?,
    })
}

/// Deletes the throttle buckets of `buckets`; how many there were.
async fn delete_buckets(
    tx: &mut Transaction<'_, Postgres>,
    buckets: AccountBuckets,
) -> Result<u64, StoreError> {
    // Prefixes compared as text: no LIKE, whose wildcards an email may hold.
    sqlx::query(
        "DELETE FROM throttle_buckets
         WHERE key = ANY($1) OR EXISTS (SELECT 1 FROM unnest($2::text[]) p WHERE starts_with(key, p))",
    )
    .bind(buckets.keys)
    .bind(buckets.prefixes)
    .execute(&mut **tx)
    .await
    .map(|done| done.rows_affected())
    .map_err(database_error)
}

impl Admin for PostgresStore {
    async fn find_accounts(&self, query: AccountQuery) -> Result<Vec<AccountOverview>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{OVERVIEW_COLUMNS}
             WHERE ($1::bigint IS NULL OR u.id > $1)
               AND ($2::text IS NULL OR u.email_key LIKE $2 ESCAPE '\\'
                    OR lower(u.username) LIKE $2 ESCAPE '\\')
             ORDER BY u.id LIMIT $3"
        )))
        .bind(query.after)
        .bind(query.search.as_deref().map(super::containing))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?
        .iter()
        .map(overview_row)
        .collect::<Result<_, _>>()
        .map_err(database_error)
    }

    async fn account_by_id(&self, user_id: UserId) -> Result<Option<AccountOverview>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{OVERVIEW_COLUMNS} WHERE u.id = $1"
        )))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?
        .as_ref()
        .map(overview_row)
        .transpose()
        .map_err(database_error)
    }

    async fn account_sessions(
        &self,
        user_id: UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        sqlx::query(
            "SELECT id::text, created_at, last_seen_at, user_agent, client_ip, amr FROM sessions
             WHERE user_id = $1 AND ended_at IS NULL
               AND ($2::uuid IS NULL OR (created_at, id) < (
                   SELECT created_at, id FROM sessions WHERE id = $2::uuid))
             ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(after.as_ref().map(uuid_text))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?
        .iter()
        .map(session_info_row)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(database_error)
    }

    async fn update_account(
        &self,
        user_id: UserId,
        change: AccountChange,
        origin: Origin,
    ) -> Result<Option<Vec<&'static str>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        // The row lock orders this change with a login's session insert (`FOR SHARE`), as a
        // deactivation by `set_active` is.
        let current: Option<(String, String, bool)> =
            sqlx::query_as("SELECT email, username, is_active FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(database_error)?;
        let Some((email, username, is_active)) = current else {
            return Ok(None);
        };
        let new_email = change.email.filter(|(address, _)| *address != email);
        let new_username = change.username.filter(|name| *name != username);
        let new_activation = change.is_active.filter(|active| *active != is_active);
        let now = change.now;
        sqlx::query(
            "UPDATE users SET email = coalesce($2, email), email_key = coalesce($3, email_key),
                 username = coalesce($4, username), is_active = coalesce($5, is_active),
                 updated_at = $6,
                 -- Another address is not verified (and links sent to the old one stop working).
                 email_verified_at = CASE WHEN $3::text IS NULL OR email_key = $3
                                          THEN email_verified_at END
             WHERE id = $1",
        )
        .bind(user_id)
        .bind(new_email.as_ref().map(|(address, _)| address))
        .bind(new_email.as_ref().map(|(_, key)| key))
        .bind(&new_username)
        .bind(new_activation)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(database) if database.is_unique_violation() => {
                StoreError::EmailTaken
            }
            _ => database_error(error),
        })?;
        if let Some(active) = new_activation {
            record(&mut *tx, &origin, now, &Event::activation(user_id, active)).await?;
            if !active {
                let (scope, reason) = (SessionScope::All, EndReason::Deactivated);
                end_user_sessions(&mut *tx, user_id, scope, reason, &origin, now).await?;
            }
        }
        let changed = super::changed_fields(
            new_email.is_some(),
            new_username.is_some(),
            new_activation.is_some(),
        );
        if let Some(updated) = super::profile_updated(user_id, &changed) {
            record(&mut *tx, &origin, now, &updated).await?;
        }
        tx.commit().await.map_err(database_error)?;
        Ok(Some(changed))
    }

    async fn delete_account(
        &self,
        user_id: UserId,
        buckets: AccountBuckets,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        // Sessions (and with them their tokens) and known addresses go by their foreign keys'
        // ON DELETE CASCADE.
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(database_error)?
            .rows_affected()
            == 1;
        if !deleted {
            return Ok(false);
        }
        delete_buckets(&mut tx, buckets).await?;
        let event = Event::about(EventName::UserDeleted, user_id);
        record(&mut *tx, &origin, now, &event).await?;
        // The log outlives the account: its rows keep the id, marked erased.
        sqlx::query(
            "UPDATE audit_events SET detail = CASE jsonb_typeof(detail)
                 WHEN 'object' THEN detail || '{\"erased\": true}'::jsonb
                 ELSE '{\"erased\": true}'::jsonb END
             WHERE user_id = $1",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(database_error)?;
        tx.commit().await.map_err(database_error)?;
        Ok(true)
    }

    async fn end_any_session(
        &self,
        session_id: SessionId,
        origin: Origin,
        now: i64,
    ) -> Result<Option<UserId>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let ended: Option<UserId> = sqlx::query_scalar(
            "UPDATE sessions SET ended_at = $2, end_reason = $3
             WHERE id = $1::uuid AND ended_at IS NULL RETURNING user_id",
        )
        .bind(uuid_text(&session_id))
        .bind(now)
        .bind(EndReason::Admin.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(database_error)?;
        if let Some(user_id) = ended {
            let event = Event::session_ended(user_id, session_id, EndReason::Admin);
            record(&mut *tx, &origin, now, &event).await?;
        }
        tx.commit().await.map_err(database_error)?;
        Ok(ended)
    }

    async fn clear_throttle(
        &self,
        user_id: UserId,
        buckets: AccountBuckets,
        origin: Origin,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let cleared = delete_buckets(&mut tx, buckets).await?;
        let event = super::throttle_cleared(user_id, cleared);
        record(&mut *tx, &origin, now, &event).await?;
        tx.commit().await.map_err(database_error)?;
        Ok(cleared)
    }
}

impl Recovery for PostgresStore {
    async fn issue_link(&self, link: NewLink) -> Result<Option<Recipient>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let (email_key, user_id) = match &link.owner {
            LinkOwner::Email(email_key) => (Some(email_key.clone()), None),
            LinkOwner::Id(user_id) => (None, Some(*user_id)),
        };
        // The account's row lock orders concurrent requests for it: each replaces the link of
        // the one before.
        let owner: Option<(UserId, String, String)> = sqlx::query_as(
            "SELECT id, email, email_key FROM users
             WHERE ($1::text IS NULL OR email_key = $1) AND ($2::bigint IS NULL OR id = $2)
               AND is_active AND (NOT $3 OR email_verified_at IS NULL)
             FOR UPDATE",
        )
        .bind(email_key)
        .bind(user_id)
        .bind(link.purpose == Purpose::EmailVerification)
        .fetch_optional(&mut *tx)
        .await
        .map_err(database_error)?;
        let Some((user_id, email, email_key)) = owner else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO one_time_tokens
                 (token_hash, user_id, purpose, email_key, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, purpose) DO UPDATE SET
                 token_hash = excluded.token_hash, email_key = excluded.email_key,
                 created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(&link.digest[..])
        .bind(user_id)
        .bind(link.purpose.as_str())
        .bind(email_key)
        .bind(link.now)
        .bind(link.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(database_error)?;
        let requested = Event::about(link.purpose.requested_event(), user_id);
        record(&mut *tx, &link.origin, link.now, &requested).await?;
        tx.commit().await.map_err(database_error)?;
        Ok(Some(Recipient { user_id, email }))
    }

    async fn link_owner(
        &self,
        digest: LinkDigest,
        purpose: Purpose,
        now: i64,
    ) -> Result<Option<Recipient>, StoreError> {
        let owner: Option<(UserId, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT u.id, u.email FROM one_time_tokens t JOIN users u ON u.id = t.user_id
             WHERE {LIVE_LINK}"
        )))
        .bind(&digest[..])
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        Ok(owner.map(|(user_id, email)| Recipient { user_id, email }))
    }

    async fn reset_password(
        &self,
        digest: LinkDigest,
        password_hash: String,
        origin: Origin,
        now: i64,
    ) -> Result<Option<UserId>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let Some(user_id) = consume_link(&mut tx, &digest, Purpose::PasswordReset, now).await?
        else {
            return Ok(None);
        };
        // The user's row is locked first, as a password change locks it: a login's session
        // insert is either over (and ended below) or waits and sees the new hash.
        sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
        let reset = Event::about(EventName::PasswordReset, user_id);
        record(&mut *tx, &origin, now, &reset).await?;
        mark_verified(&mut tx, user_id, &origin, now).await?;
        let reason = EndReason::PasswordReset;
        end_user_sessions(&mut *tx, user_id, SessionScope::All, reason, &origin, now).await?;
        tx.commit().await.map_err(database_error)?;
        Ok(Some(user_id))
    }

    async fn verify_email(
        &self,
        digest: LinkDigest,
        origin: Origin,
        now: i64,
    ) -> Result<Option<UserId>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let consumed = consume_link(&mut tx, &digest, Purpose::EmailVerification, now).await?;
        if let Some(user_id) = consumed {
            mark_verified(&mut tx, user_id, &origin, now).await?;
        }
        tx.commit().await.map_err(database_error)?;
        Ok(consumed)
    }

    async fn email_verified(&self, user_id: UserId) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND email_verified_at IS NOT NULL)",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .map_err(database_error)
    }
}

/// The link `$1` of purpose `$2`, unexpired at `$3`, of an active account that still has the
/// address it was sent to (`t` the link, `u` its account).
const LIVE_LINK: &str = "t.token_hash = $1 AND t.purpose = $2 AND t.expires_at > $3
    AND u.is_active AND u.email_key = t.email_key";

/// Deletes the live link `digest` of `purpose`: its account, if it was live. The delete's row
/// lock makes concurrent uses wait for the first, which finds the row and wins; the others
/// then find it gone.
async fn consume_link(
    tx: &mut Transaction<'_, Postgres>,
    digest: &LinkDigest,
    purpose: Purpose,
    now: i64,
) -> Result<Option<UserId>, StoreError> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "DELETE FROM one_time_tokens t USING users u
         WHERE u.id = t.user_id AND {LIVE_LINK}
         RETURNING t.user_id"
    )))
    .bind(&digest[..])
    .bind(purpose.as_str())
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .map_err(database_error)
}

/// Marks the account's address verified, if it was not, and records it.
async fn mark_verified(
    tx: &mut Transaction<'_, Postgres>,
    user_id: UserId,
    origin: &Origin,
    now: i64,
) -> Result<(), StoreError> {
    let marked = sqlx::query(
        "UPDATE users SET email_verified_at = $2 WHERE id = $1 AND email_verified_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(database_error)?
    .rows_affected();
    if marked > 0 {
        let verified = Event::about(EventName::EmailVerified, user_id);
        record(&mut **tx, origin, now, &verified).await?;
    }
    Ok(())
}

impl Factors for PostgresStore {
    async fn totp_factor(&self, user_id: UserId) -> Result<Option<TotpFactor>, StoreError> {
        let row: Option<(String, bool, Option<i64>)> = sqlx::query_as(
            "SELECT secret, confirmed_at IS NOT NULL, last_step FROM totp_factors
             WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        Ok(row.map(|(secret, confirmed, last_step)| TotpFactor {
            secret,
            confirmed,
            last_step,
        }))
    }

    async fn put_pending_totp(
        &self,
        user_id: UserId,
        secret: String,
        now: i64,
    ) -> Result<bool, StoreError> {
        let stored = sqlx::query(
            "INSERT INTO totp_factors AS f (user_id, secret, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET
                 secret = excluded.secret, created_at = excluded.created_at, last_step = NULL
             WHERE f.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(secret)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(database_error)?;
        Ok(stored.rows_affected() == 1)
    }

    async fn confirm_totp(&self, confirm: ConfirmTotp) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let confirmed = sqlx::query(
            "UPDATE totp_factors SET confirmed_at = $3, last_step = $4
             WHERE user_id = $1 AND secret = $2 AND confirmed_at IS NULL",
        )
        .bind(confirm.user_id)
        .bind(&confirm.secret)
        .bind(confirm.now)
        .bind(confirm.step)
        .execute(&mut *tx)
        .await
        .map_err(database_error)?
        .rows_affected()
            == 1;
        if !confirmed {
            return Ok(false);
        }
        replace_recovery_codes(&mut tx, confirm.user_id, &confirm.recovery_codes).await?;
        let enabled =
            Event::about(EventName::MfaEnabled, confirm.user_id).in_session(confirm.session_id);
        record(&mut *tx, &confirm.origin, confirm.now, &enabled).await?;
        tx.commit().await.map_err(database_error)?;
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: UserId, step: i64) -> Result<bool, StoreError> {
        // The update's row lock orders concurrent uses: the later one re-reads `last_step`
        // and no longer matches.
        let used = sqlx::query(
            "UPDATE totp_factors SET last_step = $2
             WHERE user_id = $1 AND confirmed_at IS NOT NULL
               AND (last_step IS NULL OR last_step < $2)",
        )
        .bind(user_id)
        .bind(step)
        .execute(&self.pool)
        .await
        .map_err(database_error)?;
        Ok(used.rows_affected() == 1)
    }

    async fn use_recovery_code(
        &self,
        user_id: UserId,
        code: RecoveryDigest,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let used = sqlx::query(
            "UPDATE recovery_codes SET used_at = $3
             WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL
               AND EXISTS (SELECT 1 FROM totp_factors
                           WHERE user_id = $1 AND confirmed_at IS NOT NULL)",
        )
        .bind(user_id)
        .bind(&code[..])
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(database_error)?
        .rows_affected()
            == 1;
        if used {
            let event = Event::about(EventName::MfaRecoveryCodeUsed, user_id);
            record(&mut *tx, &origin, now, &event).await?;
        }
        tx.commit().await.map_err(database_error)?;
        Ok(used)
    }

    async fn remove_totp(
        &self,
        user_id: UserId,
        end: SessionScope,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        let removed =
            sqlx::query("DELETE FROM totp_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL")
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(database_error)?
                .rows_affected()
                == 1;
        if !removed {
            return Ok(false);
        }
        replace_recovery_codes(&mut tx, user_id, &[]).await?;
        let disabled = Event::about(EventName::MfaDisabled, user_id);
        record(&mut *tx, &origin, now, &disabled).await?;
        end_user_sessions(&mut *tx, user_id, end, EndReason::MfaDisabled, &origin, now).await?;
        tx.commit().await.map_err(database_error)?;
        Ok(true)
    }

    async fn mfa_status(&self, user_id: UserId) -> Result<MfaStatus, StoreError> {
        let (totp, recovery_codes_left): (bool, i64) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM totp_factors
                            WHERE user_id = $1 AND confirmed_at IS NOT NULL),
                    (SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL)",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .map_err(database_error)?;
        Ok(MfaStatus {
            totp,
            recovery_codes_left,
        })
    }
}

/// Deletes the user's recovery codes and stores `codes` instead.
async fn replace_recovery_codes(
    tx: &mut Transaction<'_, Postgres>,
    user_id: UserId,
    codes: &[RecoveryDigest],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .map_err(database_error)?;
    let codes: Vec<Vec<u8>> = codes.iter().map(|code| code.to_vec()).collect();
    sqlx::query(
        "INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, code FROM unnest($2::bytea[]) code",
    )
    .bind(user_id)
    .bind(codes)
    .execute(&mut **tx)
    .await
    .map(drop)
    .map_err(database_error)
}
