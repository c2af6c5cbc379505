//! SQLite: the zero-set-up default. One file in WAL mode, read through a pool of read-only
//! connections and written by one writer thread that owns the only writable connection.
//!
//! Reads run on the calling task's thread: each is an indexed lookup in SQLite's page cache,
//! a few microseconds, less than a hand-off to the blocking pool and back costs (that hand-off
//! was a third of the service's CPU time on `GET /api/me/`).
//!
//! Writes queue for the writer thread, which commits everything queued in one transaction
//! (group commit), each write in a savepoint of its own so that a failed one changes nothing.
//! A write is answered only after its transaction has committed. Writers queue on the channel
//! rather than on SQLite's busy handler, which sleeps and polls.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, mpsc};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::profile_cache::{ProfileCache, Table};
use super::{
    Account, AccountChange, AccountOverview, AccountQuery, Accounts, Admin, AuditLog, ConfirmTotp,
    Credentials, Factors, LinkOwner, MfaStatus, NewLink, NewSession, NewUser, PasswordReplacement,
    PoolState, Purge, Purged, Recovery, Redeem, RedeemWrite, Redeemed, SecretRow, SessionInfo,
    SessionScope, Sessions, Settings, Store, StoreError, StoredKey, StoredSecret, Throttle,
    TotpFactor, migrations, where_all,
};
use crate::domain::RefreshDigest;
use crate::domain::audit::{AuditQuery, Event, EventName, FOLD_WINDOW, Origin, Recorded};
use crate::domain::links::{LinkDigest, Purpose, Recipient};
use crate::domain::mfa::{Amr, RecoveryDigest};
use crate::domain::sessions::{EndReason, PresentedToken, Redemption};
use crate::domain::throttle::{AccountBuckets, Bucket};
use crate::domain::{Profile, SessionId, UserId};

/// Every connection: enforce foreign keys, and wait (rather than fail) when another process
/// holds the write lock. `synchronous=NORMAL` in WAL mode keeps every commit across a killed
/// process (only an OS crash may lose the last ones).
const CONNECTION_PRAGMAS: &str =
    "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;";

/// Writes one transaction commits at most, so that the first of them is not kept waiting long.
const MAX_WRITES_PER_COMMIT: usize = 256;

/// The connections of a store, before its threads start.
struct Opened {
    readers: r2d2::Pool<SqliteConnectionManager>,
    writer: Connection,
    checkpointer: Connection,
    data_version: i64,
}

#[derive(Clone)]
pub struct SqliteStore {
    readers: r2d2::Pool<SqliteConnectionManager>,
    writes: mpsc::Sender<Write>,
    /// None when `--session-cache-size` is 0.
    profiles: Option<Arc<ProfileCache>>,
    /// The writer connection's `PRAGMA data_version` when last looked at: it moves when
    /// another connection, another process's, has committed.
    data_version: Arc<AtomicI64>,
}

/// How the SQLite store keeps what it reads.
#[derive(Debug, Clone, Copy)]
pub struct SqliteSettings {
    /// Sessions whose profile is kept in memory (0: read on every request).
    pub session_cache_size: usize,
}

/// A write for the writer thread; given the connection inside the open transaction, or the
/// error that prevented one.
type Job = Box<dyn FnOnce(Result<&Connection, StoreError>) -> Option<Ran> + Send>;

enum Write {
    /// Runs with others in one transaction.
    Batched(Job),
    /// Runs outside any transaction (a checkpoint cannot run inside one).
    Alone(Job),
}

/// A write that ran; its answer waits for the commit.
struct Ran {
    succeeded: bool,
    answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH`) and migrates it.
    pub async fn open(url: &str, settings: SqliteSettings) -> Result<SqliteStore, StoreError> {
        Self::open_with_log_limit(url, settings, LogLimit::SERVICE).await
    }

    /// [`open`](Self::open), with the log kept to `log_limit`.
    async fn open_with_log_limit(
        url: &str,
        settings: SqliteSettings,
        log_limit: LogLimit,
    ) -> Result<SqliteStore, StoreError> {
        let path = path_of(url)?.to_owned();
        // A read holds its connection without awaiting, so no more are in use at once than
        // threads run tasks.
        let readers = tokio::runtime::Handle::current().metrics().num_workers();
        let opened =
            tokio::task::spawn_blocking(move || Self::open_blocking(Path::new(&path), readers))
                .await
                .map_err(|error| StoreError::Database(error.to_string()))??;
        // Threads are started here, not on the blocking pool: a thread inherits its creator's
        // priority, and the pool's threads that hashed passwords run at a lower one.
        let Opened {
            readers,
            writer,
            checkpointer,
            data_version,
        } = opened;
        let profiles = (settings.session_cache_size > 0)
            .then(|| Arc::new(ProfileCache::new(settings.session_cache_size)));
        if let Some(profiles) = &profiles {
            let noted = profiles.clone();
            writer
                .update_hook(Some(move |_, _: &str, table: &str, row| {
                    if let Some(table) = Table::named(table) {
                        noted.note_change(table, row);
                    }
                }))
                .map_err(database_error)?;
        }
        // Set by the checkpointer when the log is long: the writer finishes a checkpoint then.
        let log_is_long = Arc::new(AtomicBool::new(false));
        let (checkpoint_due, checkpoint_requests) = mpsc::sync_channel(1);
        spawn_thread("sqlite-checkpointer", {
            let log_is_long = log_is_long.clone();
            move || run_checkpointer(checkpointer, checkpoint_requests, &log_is_long, log_limit)
        })?;
        let (writes, queue) = mpsc::channel();
        spawn_thread("sqlite-writer", {
            let profiles = profiles.clone();
            move || {
                let writer = Writer {
                    conn: writer,
                    profiles,
                };
                run_writer(writer, queue, checkpoint_due, &log_is_long)
            }
        })?;
        Ok(SqliteStore {
            readers,
            writes,
            profiles,
            data_version: Arc::new(AtomicI64::new(data_version)),
        })
    }

    fn open_blocking(path: &Path, readers: usize) -> Result<Opened, StoreError> {
        // Created readable by the owner only before SQLite opens it: SQLite gives the log and
        // the shared memory the database file's mode.
        crate::private_files::create_private(path).map_err(|error| {
            StoreError::Database(format!("cannot create {}: {error}", path.display()))
        })?;
        let mut writer = Connection::open(path).map_err(database_error)?;
        // A new file gets 1 KiB pages (an existing one keeps its size). Rows here are small and
        // found by random keys (token digests, session ids): a refresh changes a few rows on
        // different pages, and each commit copies every page it changed into the log, so
        // smaller pages write a quarter of the bytes of SQLite's default 4 KiB.
        writer
            .pragma_update(None, "page_size", 1024)
            .map_err(database_error)?;
        writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(database_error)?;
        writer
            .execute_batch(CONNECTION_PRAGMAS)
            .map_err(database_error)?;
        migrate(&mut writer)?;

        let manager = SqliteConnectionManager::file(path).with_init(|conn| {
            conn.execute_batch(CONNECTION_PRAGMAS)?;
            // Requests read a few rows each, by key: a small page cache serves them (SQLite's
            // default of 2 MiB per connection is most of the service's memory besides hashing).
            // A read waits for a lock on the request's thread: briefly, then it is a 503.
            conn.execute_batch(
                "PRAGMA query_only = ON; PRAGMA cache_size = -512; PRAGMA busy_timeout = 250;",
            )
        });
        let readers = r2d2::Pool::builder()
            .max_size(u32::try_from(readers.max(1)).unwrap_or(u32::MAX))
            // Connections live as long as the store: no reconnect (and cold cache) mid-request.
            .idle_timeout(None)
            .max_lifetime(None)
            .connection_timeout(std::time::Duration::from_secs(1))
            // A checkout costs no query: a broken file shows up as the request's own error.
            .test_on_check_out(false)
            .build(manager)
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        // The writer only appends to the log; the checkpointer copies it into the file.
        writer
            .execute_batch(WRITER_PRAGMAS)
            .map_err(database_error)?;
        let checkpointer = Connection::open(path).map_err(database_error)?;
        checkpointer
            .execute_batch(CONNECTION_PRAGMAS)
            .map_err(database_error)?;
        let data_version = data_version(&writer)?;
        Ok(Opened {
            readers,
            writer,
            checkpointer,
            data_version,
        })
    }

    fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self
            .readers
            .get()
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        query(&conn).map_err(database_error)
    }

    /// The profile of a live session of an active account, and the session's row id.
    fn read_profile(
        &self,
        user_id: UserId,
        session_id: SessionId,
    ) -> Result<Option<(Profile, i64)>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT u.id, u.username, u.email, s.rowid
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.id = ?1 AND s.user_id = ?2 AND s.ended_at IS NULL AND u.is_active = 1",
            )?
            .query_row(params![session_id.as_bytes(), user_id], |row| {
                Ok((profile_row(row)?, row.get(3)?))
            })
            .optional()
        })
    }

    /// Runs `work` in the writer's next transaction; answers once that has committed.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(work, Write::Batched).await
    }

    async fn write_alone<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(work, Write::Alone).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        kind: fn(Job) -> Write,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let outcome = match conn {
                Ok(conn) => work(conn),
                Err(error) => {
                    // The receiver is gone only if the request was abandoned.
                    let _ = reply.send(Err(error));
                    return None;
                }
            };
            Some(Ran {
                succeeded: outcome.is_ok(),
                answer: Box::new(move |committed| {
                    let _ = reply.send(committed.and(outcome));
                }),
            })
        });
        self.writes
            .send(kind(job))
            .map_err(|_| StoreError::Database("the SQLite writer has stopped".into()))?;
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Database(
                "a SQLite write failed before it answered".into(),
            ))
        })
    }
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map(drop)
        .map_err(|error| StoreError::Database(error.to_string()))
}

/// The writer never checkpoints by itself (the checkpointer does), and a log that grew in a
/// burst is cut back to 32 MiB once it starts over. Its page cache is 1 MiB, not SQLite's 2:
/// what it writes is found at random (token digests) beyond any cache, and the pages it comes
/// back to (a session's newest tokens, the trees' upper levels) fit; under the refresh
/// benchmark 1 MiB answers as many rotations and keeps 2 MiB less resident.
const WRITER_PRAGMAS: &str = "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 33554432;
    PRAGMA cache_size = -1024;";

/// How often, at most, the write-ahead log is copied into the database file. Between two
/// checkpoints a page written many times is copied once.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// How the write-ahead log is kept short: the service's constants, or a test's smaller ones.
#[derive(Debug, Clone, Copy)]
struct LogLimit {
    bytes_before_restart: i64,
    checkpoint_interval: std::time::Duration,
}

impl LogLimit {
    const SERVICE: LogLimit = LogLimit {
        bytes_before_restart: LOG_BYTES_BEFORE_RESTART,
        checkpoint_interval: CHECKPOINT_INTERVAL,
    };
}

/// Log length beyond which the log should start over, which needs a checkpoint that copies all
/// of it, and so holds the writer up for two syncs: the 32 MiB a log is cut back to. Under the
/// refresh benchmark (2-core VM) 8 MiB made p99 28 ms (p99.9 40 ms); 32 MiB makes it 8-12 ms,
/// but p99.9 55-95 ms: fewer stalls, each longer.
const LOG_BYTES_BEFORE_RESTART: i64 = 32 * 1024 * 1024;

/// Checkpoints after commits, off the writer thread: a checkpoint copies pages and syncs the
/// file, which in the writer's turn (SQLite's automatic checkpoint) held every write up.
/// PASSIVE never waits for readers or the writer; what it cannot copy now, the next one does.
/// Ends with the writer thread, which holds the other end of `requests`.
fn run_checkpointer(
    conn: Connection,
    requests: mpsc::Receiver<()>,
    log_is_long: &AtomicBool,
    log_limit: LogLimit,
) {
    // A file keeps the page size it was made with (4 KiB before this build chose 1 KiB).
    let page_size = conn
        .pragma_query_value(None, "page_size", |row| row.get::<_, i64>(0))
        .unwrap_or(4096);
    let long_log_frames = log_limit.bytes_before_restart / page_size.max(512);
    while requests.recv().is_ok() {
        match checkpoint(&conn) {
            Ok(log_frames) if log_frames >= long_log_frames => {
                log_is_long.store(true, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "checkpointing the write-ahead log failed; will retry");
            }
        }
        std::thread::sleep(log_limit.checkpoint_interval);
    }
}

/// Moves when another connection has committed since this one last looked.
fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "data_version", |row| row.get(0))
        .map_err(database_error)
}

/// A PASSIVE checkpoint; how many frames the log holds.
fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}

/// The writable connection, and the memory of profiles its commits expire.
struct Writer {
    conn: Connection,
    profiles: Option<Arc<ProfileCache>>,
}

impl Writer {
    /// After a transaction (or a statement outside one) has ended, before it is answered.
    fn ended(&self) {
        if let Some(profiles) = &self.profiles {
            profiles.transaction_ended();
        }
    }
}

/// The writer thread: takes what is queued, commits it together, answers; until every handle
/// to the store is gone. After each commit a checkpoint is due (a request already pending
/// covers it). The log starts over only once a checkpoint has copied all of it, which one
/// running beside a busy writer never does; so when it has grown long, the writer finishes
/// the checkpoint itself between two commits (the checkpointer has copied most of it).
fn run_writer(
    writer: Writer,
    queue: mpsc::Receiver<Write>,
    checkpoint_due: mpsc::SyncSender<()>,
    log_is_long: &AtomicBool,
) {
    let mut batch = Vec::with_capacity(MAX_WRITES_PER_COMMIT);
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(write) = next.take() {
            match write {
                Write::Batched(job) => batch.push(job),
                Write::Alone(job) => {
                    commit_batch(&writer, &mut batch);
                    let ran = run_job(&writer.conn, job);
                    writer.ended();
                    if let Some(ran) = ran {
                        (ran.answer)(Ok(()));
                    }
                }
            }
            if batch.len() < MAX_WRITES_PER_COMMIT {
                next = queue.try_recv().ok();
            }
        }
        commit_batch(&writer, &mut batch);
        if log_is_long.swap(false, Ordering::Relaxed)
            && let Err(error) = checkpoint(&writer.conn)
        {
            tracing::warn!(%error, "checkpointing the write-ahead log failed; will retry");
        }
        let _ = checkpoint_due.try_send(());
    }
}

fn commit_batch(writer: &Writer, batch: &mut Vec<Job>) {
    if batch.is_empty() {
        return;
    }
    let conn = &writer.conn;
    // IMMEDIATE takes the write lock first, so what a write reads cannot go stale.
    let mut sound = execute_cached(conn, "BEGIN IMMEDIATE");
    let began = sound.is_ok();
    let mut ran = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        sound = match sound {
            Ok(()) => in_savepoint(conn, job, &mut ran),
            Err(error) => {
                job(Err(error.clone()));
                Err(error)
            }
        };
    }
    let committed = sound.and_then(|()| execute_cached(conn, "COMMIT"));
    if began && committed.is_err() {
        // Nothing of the batch is kept; each write's caller gets the error.
        let _ = execute_cached(conn, "ROLLBACK");
    }
    writer.ended();
    for ran in ran {
        (ran.answer)(committed.clone());
    }
}

/// Runs one write of the batch in a savepoint, so that a write that fails (or panics) is undone
/// alone. An error means the transaction is no longer what its writes left: none may commit.
fn in_savepoint(conn: &Connection, job: Job, ran: &mut Vec<Ran>) -> Result<(), StoreError> {
    let execute = |sql| execute_cached(conn, sql);
    if let Err(error) = execute("SAVEPOINT write") {
        job(Err(error.clone()));
        return Err(error);
    }
    let done = run_job(conn, job);
    let undone = match &done {
        Some(done) if done.succeeded => Ok(()),
        _ => execute("ROLLBACK TO write"),
    };
    ran.extend(done);
    undone.and_then(|()| execute("RELEASE write"))
}

/// Runs a statement without parameters, parsed once per connection: the writer runs the same
/// few (transactions, savepoints) for every batch.
fn execute_cached(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(database_error)
}

/// A panicking write drops its answer (its caller sees an error) and leaves the thread running.
fn run_job(conn: &Connection, job: Job) -> Option<Ran> {
    catch_unwind(AssertUnwindSafe(|| job(Ok(conn))))
        .ok()
        .flatten()
}

/// `sqlite://restful_auth.sqlite3` (relative) or `sqlite:///var/lib/app.db` (absolute).
pub fn path_of(url: &str) -> Result<&str, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Database(format!("not a sqlite:// URL: {url}")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Database(
            "a SQLite database needs a file path (sqlite://PATH)".into(),
        ));
    }
    Ok(path)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(database_error)?;
    let applied = tx
        .pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
        .map_err(database_error)?;
    for (version, script) in migrations::pending(migrations::SQLITE, applied)? {
        tx.execute_batch(script).map_err(database_error)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(database_error)?;
    }
    tx.commit().map_err(database_error)
}

fn database_error(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Database(error.to_string()),
    }
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, _)
        if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn session_id(blob: [u8; 16]) -> SessionId {
    Uuid::from_bytes(blob)
}

fn profile_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Profile> {
    Ok(Profile {
        id: row.get(0)?,
        username: row.get(1)?,
        email: row.get(2)?,
    })
}

impl Accounts for SqliteStore {
    async fn create_user(&self, user: NewUser) -> Result<UserId, StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO users
                     (email, email_key, username, password_hash, is_active, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING id",
            )
            .and_then(|mut insert| {
                insert.query_row(
                    params![
                        user.email,
                        user.email_key,
                        user.username,
                        user.password_hash,
                        user.is_active,
                        user.now
                    ],
                    |row| row.get(0),
                )
            })
            .map_err(|error| {
                if is_unique_violation(&error) {
                    StoreError::EmailTaken
                } else {
                    database_error(error)
                }
            })
            .and_then(|user_id| {
                let registered = Event::about(EventName::UserRegistered, user_id);
                record(conn, &user.origin, user.now, &registered).map(|()| user_id)
            })
        })
        .await
    }

    async fn email_registered(&self, email_key: String) -> Result<bool, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE email_key = ?1)")?
                .query_row([email_key], |row| row.get(0))
        })
    }

    async fn credentials(&self, email_key: String) -> Result<Option<Credentials>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, password_hash, is_active FROM users WHERE email_key = ?1",
            )?
            .query_row([email_key], |row| {
                Ok(Credentials {
                    user_id: row.get(0)?,
                    password_hash: row.get(1)?,
                    is_active: row.get(2)?,
                })
            })
            .optional()
        })
    }

    async fn account(&self, email_key: String) -> Result<Option<Account>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&format!("{ACCOUNT_COLUMNS} WHERE u.email_key = ?1"))?
                .query_row([email_key], account_row)
                .optional()
        })
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!("{ACCOUNT_COLUMNS} ORDER BY u.id"))?
                .query_map([], account_row)?
                .collect()
        })
    }

    async fn set_active(
        &self,
        user_id: UserId,
        active: bool,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let was_active: Option<bool> = conn
                .query_row(
                    "SELECT is_active FROM users WHERE id = ?1",
                    [user_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(database_error)?;
            let Some(was_active) = was_active else {
                return Ok(false);
            };
            conn.execute(
                "UPDATE users SET is_active = ?2, updated_at = ?3 WHERE id = ?1",
                params![user_id, active, now],
            )
            .map_err(database_error)?;
            if was_active != active {
                record(conn, &origin, now, &Event::activation(user_id, active))?;
            }
            if !active {
                let reason = EndReason::Deactivated;
                end_user_sessions(conn, user_id, SessionScope::All, reason, &origin, now)?;
            }
            Ok(true)
        })
        .await
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
        self.write(move |conn| {
            let replaced = conn
                .prepare_cached(
                    "UPDATE users SET password_hash = ?2, updated_at = ?3
                     WHERE id = ?1 AND (?4 IS NULL OR password_hash = ?4)",
                )
                .and_then(|mut update| {
                    update.execute(params![user_id, password_hash, now, expected])
                })
                .map_err(database_error)?
                == 1;
            if let (true, Some((event, scope))) = (replaced, replacement.recorded()) {
                record(conn, &origin, now, &Event::about(event, user_id))?;
                let reason = EndReason::PasswordChanged;
                end_user_sessions(conn, user_id, scope, reason, &origin, now)?;
            }
            Ok(replaced)
        })
        .await
    }

    async fn password_hash(&self, user_id: UserId) -> Result<Option<String>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT password_hash FROM users WHERE id = ?1 AND is_active = 1")?
                .query_row([user_id], |row| row.get(0))
                .optional()
        })
    }

    async fn profile(
        &self,
        user_id: UserId,
        session_id: SessionId,
    ) -> Result<Option<Profile>, StoreError> {
        let Some(profiles) = &self.profiles else {
            return Ok(self
                .read_profile(user_id, session_id)?
                .map(|(profile, _)| profile));
        };
        if let Some(profile) = profiles.get(&session_id, user_id) {
            return Ok(Some(profile));
        }
        let before = profiles.before_read();
        let found = self.read_profile(user_id, session_id)?;
        Ok(found.map(|(profile, session_row)| {
            profiles.fill(before, session_id, session_row, &profile);
            profile
        }))
    }

    async fn rename(
        &self,
        user_id: UserId,
        session_id: SessionId,
        username: String,
        origin: Origin,
        now: i64,
    ) -> Result<Option<Profile>, StoreError> {
        self.write(move |conn| {
            let renamed = conn
                .prepare_cached(
                    "UPDATE users SET username = ?3, updated_at = ?4
                 WHERE id = ?2 AND is_active = 1 AND EXISTS (
                     SELECT 1 FROM sessions WHERE id = ?1 AND user_id = ?2 AND ended_at IS NULL)
                 RETURNING id, username, email",
                )
                .and_then(|mut update| {
                    update
                        .query_row(
                            params![session_id.as_bytes(), user_id, username, now],
                            profile_row,
                        )
                        .optional()
                })
                .map_err(database_error)?;
            if renamed.is_some() {
                let updated = Event::profile_updated(user_id, &["username"]).in_session(session_id);
                record(conn, &origin, now, &updated)?;
            }
            Ok(renamed)
        })
        .await
    }
}

impl Sessions for SqliteStore {
    async fn start_session(&self, session: NewSession) -> Result<bool, StoreError> {
        self.write(move |conn| {
            // The writer runs one write at a time: the check and the insert are one step.
            let started = conn
                .prepare_cached(
                    "INSERT INTO sessions
                         (id, user_id, created_at, last_seen_at, user_agent, client_ip, amr)
                     SELECT ?1, id, ?3, ?3, ?4, ?5, ?7 FROM users
                     WHERE id = ?2 AND password_hash = ?6 AND is_active = 1",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        session.id.as_bytes(),
                        session.user_id,
                        session.now,
                        session.origin.user_agent,
                        session.origin.ip,
                        session.verified_hash,
                        session.amr.as_str(),
                    ])
                })
                .map_err(database_error)?
                == 1;
            if !started {
                return Ok(false);
            }
            let first = TokenPlace {
                session_id: session.id,
                seq: 0,
            };
            insert_refresh_token(
                conn,
                &session.refresh,
                &first,
                session.now,
                session.refresh_expires_at,
            )?;
            if let Some(address) = &session.address {
                conn.prepare_cached(
                    "INSERT INTO known_addresses (user_id, address, last_login_at)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, address)
                     DO UPDATE SET last_login_at = excluded.last_login_at",
                )
                .and_then(|mut upsert| {
                    upsert.execute(params![session.user_id, address, session.now])
                })
                .map_err(database_error)?;
            }
            let succeeded = Event::login_succeeded(session.user_id, session.id);
            record(conn, &session.origin, session.now, &succeeded)?;
            Ok(true)
        })
        .await
    }

    async fn redeem_refresh_token(&self, redeem: Redeem) -> Result<Redeemed, StoreError> {
        self.write(move |conn| {
            let outcome = redeem_judged(conn, &redeem)?;
            if let (Some(bucket), Redeemed::Rejected | Redeemed::ReuseDetected) =
                (&redeem.throttle, outcome)
            {
                bucket_hit(conn, bucket, redeem.now)?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn sessions(&self, user_id: UserId) -> Result<Vec<SessionInfo>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, created_at, last_seen_at, user_agent, client_ip, amr FROM sessions
                 WHERE user_id = ?1 AND ended_at IS NULL ORDER BY last_seen_at DESC, created_at DESC",
            )?
            .query_map([user_id], session_info_row)?
            .collect()
        })
    }

    async fn end_sessions(
        &self,
        user_id: UserId,
        scope: SessionScope,
        reason: EndReason,
        origin: Origin,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.write(move |conn| end_user_sessions(conn, user_id, scope, reason, &origin, now))
            .await
    }
}

impl Throttle for SqliteStore {
    async fn throttle_take(
        &self,
        take: Vec<Bucket>,
        check: Vec<Bucket>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.write(move |conn| {
            let execute = |sql: &str| execute_cached(conn, sql);
            execute("SAVEPOINT throttle")?;
            let mut wait = None;
            for bucket in &check {
                wait = wait.max(bucket_wait(conn, bucket, 1, now)?);
            }
            for bucket in &take {
                wait = wait.max(bucket_hit(conn, bucket, now)?);
            }
            if wait.is_some() {
                execute("ROLLBACK TO throttle")?;
            }
            execute("RELEASE throttle")?;
            Ok(wait)
        })
        .await
    }

    async fn throttle_settle(
        &self,
        reset: Vec<String>,
        give_back: Vec<String>,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let run = |sql: &str, keys: &[String]| {
                let mut statement = conn.prepare_cached(sql).map_err(database_error)?;
                for key in keys {
                    statement.execute([key]).map_err(database_error)?;
                }
                Ok::<_, StoreError>(())
            };
            run("DELETE FROM throttle_buckets WHERE key = ?1", &reset)?;
            run(
                "UPDATE throttle_buckets SET hits = hits - 1 WHERE key = ?1 AND hits > 0",
                &give_back,
            )
        })
        .await
    }

    async fn is_known_address(
        &self,
        email_key: String,
        address: String,
        since: i64,
    ) -> Result<bool, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT EXISTS (
                     SELECT 1 FROM users u JOIN known_addresses k ON k.user_id = u.id
                     WHERE u.email_key = ?1 AND k.address = ?2 AND k.last_login_at >= ?3)",
            )?
            .query_row(params![email_key, address, since], |row| row.get(0))
        })
    }
}

impl Settings for SqliteStore {
    async fn settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT key, value FROM settings ORDER BY key")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
    }

    async fn put_setting(&self, name: String, value: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [name, value],
            )
            .map(drop)
            .map_err(database_error)
        })
        .await
    }

    async fn delete_setting(&self, name: String) -> Result<bool, StoreError> {
        self.write(move |conn| {
            conn.execute("DELETE FROM settings WHERE key = ?1", [name])
                .map(|deleted| deleted > 0)
                .map_err(database_error)
        })
        .await
    }

    async fn signing_keys(
        &self,
        generated: Option<StoredKey>,
        now: i64,
    ) -> Result<Vec<StoredKey>, StoreError> {
        // Every reload reads; only a first start (or one after every key was retired) writes.
        let keys = self.read(select_signing_keys)?;
        let Some(generated) = generated else {
            return Ok(keys);
        };
        if keys.iter().any(|key| key.schedule().in_force(now)) {
            return Ok(keys);
        }
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO signing_keys (kid, algorithm, secret, created_at, activates_at)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM signing_keys
                     WHERE activates_at <= ?6 AND (retired_at IS NULL OR retired_at > ?6))",
                params![
                    generated.kid,
                    generated.algorithm,
                    generated.secret,
                    generated.created_at,
                    generated.activates_at,
                    now
                ],
            )
            .and_then(|_| select_signing_keys(conn))
            .map_err(database_error)
        })
        .await
    }

    async fn add_signing_key(&self, key: StoredKey, origin: Origin) -> Result<(), StoreError> {
        self.write(move |conn| {
            let rotated = Event::key(EventName::KeyRotated, &key.kid, &key.algorithm);
            record(conn, &origin, key.created_at, &rotated)?;
            conn.execute(
                "INSERT INTO signing_keys (kid, algorithm, secret, created_at, activates_at)
                 VALUES (?1, ?2, ?3,
                     max(?4, (SELECT coalesce(max(created_at), 0) + 1 FROM signing_keys)), ?5)",
                params![
                    key.kid,
                    key.algorithm,
                    key.secret,
                    key.created_at,
                    key.activates_at
                ],
            )
            .map(drop)
            .map_err(database_error)
        })
        .await
    }

    async fn retire_signing_key(
        &self,
        kid: String,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let algorithm: Option<String> = conn
                .query_row(
                    "UPDATE signing_keys SET retired_at = ?2 WHERE kid = ?1 AND retired_at IS NULL
                     RETURNING algorithm",
                    params![kid, now],
                    |row| row.get(0),
                )
                .optional()
                .map_err(database_error)?;
            let Some(algorithm) = algorithm else {
                return Ok(false);
            };
            record(
                conn,
                &origin,
                now,
                &Event::key(EventName::KeyRetired, &kid, &algorithm),
            )?;
            Ok(true)
        })
        .await
    }

    async fn secrets(&self, settings: Vec<String>) -> Result<Vec<StoredSecret>, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let mut secrets: Vec<StoredSecret> = tx
                .prepare_cached("SELECT kid, secret FROM signing_keys ORDER BY kid")?
                .query_map([], |row| {
                    Ok(StoredSecret {
                        row: SecretRow::SigningKey(row.get(0)?),
                        value: row.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let totp_secrets = tx
                .prepare_cached("SELECT user_id, secret FROM totp_factors ORDER BY user_id")?
                .query_map([], |row| {
                    Ok(StoredSecret {
                        row: SecretRow::TotpSecret(row.get(0)?),
                        value: row.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            secrets.extend(totp_secrets);
            for name in settings {
                let value: Option<String> = tx
                    .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                    .query_row([&name], |row| row.get(0))
                    .optional()?;
                secrets.extend(value.map(|value| StoredSecret {
                    row: SecretRow::Setting(name),
                    value,
                }));
            }
            Ok(secrets)
        })
    }

    async fn replace_secrets(&self, secrets: Vec<StoredSecret>) -> Result<(), StoreError> {
        self.write_alone(move |conn| overwrite_secrets(conn, &secrets))
            .await
    }
}

/// The log's columns, in the order [`Recorded`] is read from.
const SELECT_AUDIT_EVENTS: &str =
    "SELECT id, time, event, user_id, session_id, actor, ip, user_agent,
                    request_id, detail FROM audit_events";

impl AuditLog for SqliteStore {
    async fn record(&self, event: Event, origin: Origin, now: i64) -> Result<(), StoreError> {
        self.write(move |conn| record(conn, &origin, now, &event))
            .await
    }

    async fn audit_events(&self, query: AuditQuery) -> Result<Vec<Recorded>, StoreError> {
        let mut conditions = Vec::new();
        let mut values: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        for (filter, value) in query.filters() {
            values.push(Box::new(value));
            conditions.push(format!("{} ?{}", filter.condition(), values.len()));
        }
        if let Some(event) = query.event {
            values.push(Box::new(event.as_str()));
            conditions.push(format!("event = ?{}", values.len()));
        }
        values.push(Box::new(query.limit));
        let sql = format!(
            "{} {} ORDER BY id DESC LIMIT ?{}",
            SELECT_AUDIT_EVENTS,
            where_all(&conditions),
            values.len()
        );
        self.read(move |conn| {
            conn.prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(&values), |row| {
                    let detail: String = row.get(9)?;
                    Ok(Recorded {
                        id: row.get(0)?,
                        time: row.get(1)?,
                        event: row.get(2)?,
                        user_id: row.get(3)?,
                        session_id: row.get::<_, Option<[u8; 16]>>(4)?.map(session_id),
                        actor: row.get(5)?,
                        ip: row.get(6)?,
                        user_agent: row.get(7)?,
                        request_id: row.get(8)?,
                        detail: serde_json::from_str(&detail).unwrap_or_default(),
                    })
                })?
                .collect()
        })
    }
}

impl Store for SqliteStore {
    async fn purge(&self, purge: Purge) -> Result<Purged, StoreError> {
        self.write(move |conn| {
            let run = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<u64, StoreError> {
                conn.execute(sql, params)
                    .map(|rows| rows as u64)
                    .map_err(database_error)
            };
            let over: [&dyn rusqlite::ToSql; 3] =
                [&purge.before, &purge.idle_before, &purge.started_before];
            let purged = Purged {
                refresh_tokens: run(PURGE_TOKENS, &over)?,
                sessions: run(PURGE_SESSIONS, &over)?,
                signing_keys: run(PURGE_KEYS, &[&purge.keys_superseded_before])?,
                throttle_buckets: run(PURGE_THROTTLE, &[&purge.throttle_before])?,
                known_addresses: run(PURGE_KNOWN_ADDRESSES, &[&purge.known_before])?,
                audit_events: run(PURGE_AUDIT, &[&purge.audit_before])?,
            };
            Ok(purged)
        })
        .await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let found = self.read(|conn| {
            conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
        })?;
        migrations::expect_current(migrations::SQLITE, found)
    }

    async fn notice_outside_writes(&self) -> Result<(), StoreError> {
        let Some(profiles) = self.profiles.clone() else {
            return Ok(());
        };
        // Asked of the writer's own connection: its commits do not move it, others' do. When
        // it cannot be asked, another process may have written: nothing kept can be trusted.
        let version = match self.write_alone(data_version).await {
            Ok(version) => version,
            Err(error) => {
                profiles.invalidate_all();
                return Err(error);
            }
        };
        if self.data_version.swap(version, Ordering::Relaxed) != version {
            profiles.invalidate_all();
        }
        Ok(())
    }

    fn pool_state(&self) -> PoolState {
        let state = self.readers.state();
        PoolState {
            in_use: state.connections - state.idle_connections,
            idle: state.idle_connections,
            max: self.readers.max_size(),
        }
    }

    async fn close(&self) {
        let checkpoint = self.write_alone(empty_log).await;
        if let Err(error) = checkpoint {
            tracing::warn!(%error, "the write-ahead log was not checkpointed at shutdown");
        }
    }
}

/// Copies the whole write-ahead log into the database file and truncates it.
fn empty_log(conn: &Connection) -> Result<(), StoreError> {
    // The checkpointer may be in the middle of one: then this one is "busy" at once (no busy
    // handler for that lock), and is tried again.
    for _ in 0..50 {
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(database_error)?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(StoreError::Unavailable(
        "the log stayed busy for a second".into(),
    ))
}

/// Replaces the values in one transaction, zeroing the space the old ones held in their pages
/// (`secure_delete`), then empties the log, which still holds the pages as they were.
fn overwrite_secrets(conn: &Connection, secrets: &[StoredSecret]) -> Result<(), StoreError> {
    let secure_delete: i64 = conn
        .pragma_query_value(None, "secure_delete", |row| row.get(0))
        .map_err(database_error)?;
    conn.pragma_update(None, "secure_delete", true)
        .map_err(database_error)?;
    let replaced = (|| {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        for secret in secrets {
            match &secret.row {
                SecretRow::SigningKey(kid) => tx.execute(
                    "UPDATE signing_keys SET secret = ?2 WHERE kid = ?1",
                    [kid, &secret.value],
                )?,
                SecretRow::Setting(name) => tx.execute(
                    "UPDATE settings SET value = ?2 WHERE key = ?1",
                    [name, &secret.value],
                )?,
                SecretRow::TotpSecret(user_id) => tx.execute(
                    "UPDATE totp_factors SET secret = ?2 WHERE user_id = ?1",
                    params![user_id, &secret.value],
                )?,
            };
        }
        tx.commit()
    })()
    .map_err(database_error);
    conn.pragma_update(None, "secure_delete", secure_delete)
        .map_err(database_error)?;
    replaced?;
    empty_log(conn)
}

/// Reads the presented token, lets [`judge`](crate::domain::sessions::judge) decide, and carries
/// out the verdict, inside the writer's transaction.
///
/// The address's bucket of invalid tokens is read by the same statement as the token: on the
/// writer thread, which every refresh waits for, a statement of its own cost about 7% of the
/// refresh throughput: 13.6-14.4k against 15.1-15.3k req/s without the throttle (`loadtest`).
fn redeem_judged(conn: &Connection, redeem: &Redeem) -> Result<Redeemed, StoreError> {
    let bucket = redeem.throttle.as_ref();
    let found = conn
        .prepare_cached(
            "SELECT t.session_id, s.user_id, t.expires_at, t.consumed_at, s.created_at,
                    s.ended_at IS NOT NULL, u.is_active,
                    -- Only for a consumed token (the retry grace): CASE skips the lookup.
                    CASE WHEN t.consumed_at IS NOT NULL THEN
                        EXISTS (SELECT 1 FROM refresh_tokens n
                                WHERE n.token_hash = ?2 AND n.session_id = t.session_id
                                  AND n.consumed_at IS NULL)
                    ELSE FALSE END,
                    EXISTS (SELECT 1 FROM throttle_buckets b
                            WHERE b.key = ?3 AND b.window_start + ?4 > ?6 AND b.hits >= ?5),
                    s.amr, t.seq, s.last_seen_at = ?6
             FROM refresh_tokens t
             JOIN sessions s ON s.id = t.session_id
             JOIN users u ON u.id = s.user_id
             WHERE t.token_hash = ?1",
        )
        .and_then(|mut select| {
            select
                .query_row(
                    params![
                        &redeem.presented[..],
                        &redeem.successor[..],
                        bucket.map(|bucket| &bucket.key),
                        bucket.map(|bucket| bucket.limit.window),
                        bucket.map(|bucket| bucket.limit.hits),
                        redeem.now,
                    ],
                    |row| {
                        let token = PresentedToken {
                            expires_at: row.get(2)?,
                            consumed_at: row.get(3)?,
                            session_created_at: row.get(4)?,
                            session_ended: row.get(5)?,
                            user_active: row.get(6)?,
                            successor_is_live: row.get(7)?,
                        };
                        let bucket_full: bool = row.get(8)?;
                        Ok((
                            TokenPlace {
                                session_id: session_id(row.get(0)?),
                                seq: row.get(10)?,
                            },
                            row.get::<_, UserId>(1)?,
                            token,
                            bucket_full,
                            Amr::from_stored(&row.get::<_, String>(9)?),
                            row.get::<_, bool>(11)?,
                        ))
                    },
                )
                .optional()
        })
        .map_err(database_error)?;

    // A full bucket answers before the token is looked at; an unknown token asks it too.
    let Some((place, user_id, token, bucket_full, amr, seen_now)) = found else {
        return Ok(throttled(conn, redeem)?.unwrap_or(Redeemed::Rejected));
    };
    if bucket_full && let Some(throttled) = throttled(conn, redeem)? {
        return Ok(throttled);
    }
    let now = redeem.now;
    let session_id = place.session_id;
    let decision = redeem.decide(&token, user_id, session_id, amr);
    match decision.write {
        RedeemWrite::Nothing => {}
        RedeemWrite::Consume(redemption) => {
            consume(conn, &place, now)?;
            match redemption {
                Redemption::Rotate { expires_at } => {
                    let successor = TokenPlace {
                        session_id,
                        seq: place.seq + 1,
                    };
                    insert_refresh_token(conn, &redeem.successor, &successor, now, expires_at)?;
                    // Within the same second there is nothing to write, and no statement to run:
                    // the session is seen once a second at most, and refreshed far more often
                    // under load.
                    if !seen_now {
                        conn.prepare_cached("UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1")
                            .and_then(|mut touch| {
                                touch.execute(params![session_id.as_bytes(), now])
                            })
                            .map_err(database_error)?;
                    }
                }
                Redemption::EndSession => {
                    end_session(conn, &session_id, EndReason::Logout, now)?;
                    let ended = Event::session_ended(user_id, session_id, EndReason::Logout);
                    record(conn, &redeem.origin, now, &ended)?;
                }
            }
        }
        RedeemWrite::EndSession(reason) => {
            end_session(conn, &session_id, reason, now)?;
            let ended = Event::redeem_ended(user_id, session_id, reason);
            record(conn, &redeem.origin, now, &ended)?;
        }
    }
    Ok(decision.outcome)
}

/// [`Redeemed::Throttled`] when the redeem's bucket of invalid tokens is full.
fn throttled(conn: &Connection, redeem: &Redeem) -> Result<Option<Redeemed>, StoreError> {
    let Some(bucket) = &redeem.throttle else {
        return Ok(None);
    };
    let wait = bucket_wait(conn, bucket, 1, redeem.now)?;
    Ok(wait.map(|retry_after| Redeemed::Throttled { retry_after }))
}

/// One hit in a fixed window of `?3` seconds: a window that has passed starts again at `?2`.
const THROTTLE_HIT: &str =
    "INSERT INTO throttle_buckets (key, window_start, hits) VALUES (?1, ?2, 1)
    ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN window_start + ?3 <= ?2 THEN 1 ELSE hits + 1 END,
        window_start = CASE WHEN window_start + ?3 <= ?2 THEN ?2 ELSE window_start END
    RETURNING window_start, hits";

/// Sessions that are over: ended before `?1`, unused since `?2` (their tokens have all
/// expired), or started before `?3` (past their absolute lifetime, when one is set). Until
/// then a session keeps the digests of all its consumed tokens, so that a replay of any of
/// them is recognised and ends it.
macro_rules! sessions_over {
    () => {
        "(ended_at IS NOT NULL AND ended_at < ?1) OR last_seen_at < ?2
         OR (?3 IS NOT NULL AND created_at < ?3)"
    };
}

const PURGE_TOKENS: &str = concat!(
    "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE ",
    sessions_over!(),
    ")"
);

const PURGE_SESSIONS: &str = concat!("DELETE FROM sessions WHERE ", sessions_over!());

const PURGE_KNOWN_ADDRESSES: &str = "DELETE FROM known_addresses WHERE last_login_at < ?1";

/// Keys other than the newest, once the newest has signed for longer than an access token lives.
/// Keys retired, or superseded by a key in force, before `?1`: their tokens have expired.
const PURGE_KEYS: &str = "DELETE FROM signing_keys
    WHERE retired_at < ?1
       OR (retired_at IS NULL AND activates_at < (SELECT max(activates_at) FROM signing_keys
               WHERE retired_at IS NULL AND activates_at < ?1))";

const PURGE_AUDIT: &str = "DELETE FROM audit_events WHERE time < ?1";

const PURGE_THROTTLE: &str = "DELETE FROM throttle_buckets WHERE window_start < ?1";

/// How long an attempt must wait because `bucket` would hold `more` attempts past its limit
/// (`None`: there is room).
fn bucket_wait(
    conn: &Connection,
    bucket: &Bucket,
    more: i64,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let counted = conn
        .prepare_cached(
            "SELECT window_start, hits FROM throttle_buckets
             WHERE key = ?1 AND window_start + ?2 > ?3",
        )
        .and_then(|mut select| {
            select
                .query_row(params![bucket.key, bucket.limit.window, now], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
        })
        .map_err(database_error)?;
    let (window_start, hits) = counted.unwrap_or((now, 0));
    Ok(bucket.limit.wait_after(window_start, hits + more, now))
}

/// Counts one attempt in `bucket`; how long it must wait if that took the bucket past its limit.
fn bucket_hit(conn: &Connection, bucket: &Bucket, now: i64) -> Result<Option<i64>, StoreError> {
    let (window_start, hits) = conn
        .prepare_cached(THROTTLE_HIT)
        .and_then(|mut hit| {
            hit.query_row(params![bucket.key, now, bucket.limit.window], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
        })
        .map_err(database_error)?;
    Ok(bucket.limit.wait_after(window_start, hits, now))
}

fn select_signing_keys(conn: &Connection) -> rusqlite::Result<Vec<StoredKey>> {
    conn.prepare_cached(super::SELECT_SIGNING_KEYS)?
        .query_map([], |row| {
            Ok(StoredKey {
                kid: row.get(0)?,
                algorithm: row.get(1)?,
                secret: row.get(2)?,
                created_at: row.get(3)?,
                activates_at: row.get(4)?,
                retired_at: row.get(5)?,
            })
        })?
        .collect()
}

const ACCOUNT_COLUMNS: &str = "SELECT u.id, u.email, u.username, u.is_active, u.created_at,
        (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.ended_at IS NULL)
     FROM users u";

fn account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        email: row.get(1)?,
        username: row.get(2)?,
        is_active: row.get(3)?,
        created_at: row.get(4)?,
        active_sessions: row.get(5)?,
    })
}

/// Where a refresh token's row is: its session's tokens are kept together, in order.
struct TokenPlace {
    session_id: SessionId,
    seq: i64,
}

fn insert_refresh_token(
    conn: &Connection,
    digest: &RefreshDigest,
    place: &TokenPlace,
    now: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (session_id, seq, token_hash, issued_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            place.session_id.as_bytes(),
            place.seq,
            &digest[..],
            now,
            expires_at
        ])
    })
    .map(drop)
    .map_err(database_error)
}

fn consume(conn: &Connection, place: &TokenPlace, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE refresh_tokens SET consumed_at = ?3
         WHERE session_id = ?1 AND seq = ?2 AND consumed_at IS NULL",
    )
    .and_then(|mut update| update.execute(params![place.session_id.as_bytes(), place.seq, now]))
    .map(drop)
    .map_err(database_error)
}

/// Ends the user's live sessions that `scope` selects, recording each; how many ended.
fn end_user_sessions(
    conn: &Connection,
    user_id: UserId,
    scope: SessionScope,
    reason: EndReason,
    origin: &Origin,
    now: i64,
) -> Result<u64, StoreError> {
    let (filter, session) = match &scope {
        SessionScope::All => ("", None),
        SessionScope::Only(id) => (" AND id = ?4", Some(id.as_bytes())),
        SessionScope::AllBut(id) => (" AND id <> ?4", Some(id.as_bytes())),
    };
    let sql = format!(
        "UPDATE sessions SET ended_at = ?2, end_reason = ?3
         WHERE user_id = ?1 AND ended_at IS NULL{filter} RETURNING id"
    );
    let ended: Vec<SessionId> = conn
        .prepare_cached(&sql)
        .and_then(|mut update| {
            let reason = reason.as_str();
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![&user_id, &now, &reason];
            values.extend(session.as_ref().map(|id| id as &dyn rusqlite::ToSql));
            update
                .query_map(values.as_slice(), |row| row.get(0).map(session_id))?
                .collect()
        })
        .map_err(database_error)?;
    for id in &ended {
        record(
            conn,
            origin,
            now,
            &Event::session_ended(user_id, *id, reason),
        )?;
    }
    Ok(ended.len() as u64)
}

/// Writes `event` in the open transaction; an event with a fold key adds to the count of the
/// latest row of its key instead, if that row is less than [`FOLD_WINDOW`] old.
fn record(conn: &Connection, origin: &Origin, now: i64, event: &Event) -> Result<(), StoreError> {
    if let Some(fold) = &event.fold {
        let folded = conn
            .prepare_cached(
                "UPDATE audit_events
                 SET detail = json_set(detail, '$.count', json_extract(detail, '$.count') + 1)
                 WHERE id = (SELECT max(id) FROM audit_events WHERE fold_key = ?1 AND time > ?2)",
            )
            .and_then(|mut update| update.execute(params![fold, now - FOLD_WINDOW]))
            .map_err(database_error)?;
        if folded > 0 {
            return Ok(());
        }
    }
    conn.prepare_cached(
        "INSERT INTO audit_events (time, event, user_id, session_id, actor, ip, user_agent,
                                   request_id, detail, fold_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            now,
            event.name.as_str(),
            event.user_id,
            event.session_id.as_ref().map(|id| id.as_bytes()),
            origin.actor.as_str(),
            origin.ip,
            origin.user_agent,
            origin.request_id,
            event.detail.to_string(),
            event.fold,
        ])
    })
    .map(drop)
    .map_err(database_error)
}

/// Ends the session if it is still live.
fn end_session(
    conn: &Connection,
    session_id: &SessionId,
    reason: EndReason,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE sessions SET ended_at = ?2, end_reason = ?3, last_seen_at = ?2
         WHERE id = ?1 AND ended_at IS NULL",
    )
    .and_then(|mut update| update.execute(params![session_id.as_bytes(), now, reason.as_str()]))
    .map(drop)
    .map_err(database_error)
}

/// The admin API's columns: an account, its live sessions and its latest login.
const OVERVIEW_COLUMNS: &str = "SELECT u.id, u.email, u.username, u.is_active, u.created_at,
        (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.ended_at IS NULL),
        (SELECT max(s.created_at) FROM sessions s WHERE s.user_id = u.id)
     FROM users u";

fn session_info_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionInfo> {
    Ok(SessionInfo {
        id: session_id(row.get(0)?),
        created_at: row.get(1)?,
        last_seen_at: row.get(2)?,
        user_agent: row.get(3)?,
        client_ip: row.get(4)?,
        amr: Amr::from_stored(&row.get::<_, String>(5)?),
    })
}

fn overview_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccountOverview> {
    Ok(AccountOverview {
        account: account_row(row)?,
        last_login: row.get(6)?,
    })
}

/// Deletes the throttle buckets of `buckets`; how many there were.
fn delete_buckets(conn: &Connection, buckets: &AccountBuckets) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for key in &buckets.keys {
        deleted += conn
            .prepare_cached("DELETE FROM throttle_buckets WHERE key = ?1")
            .and_then(|mut delete| delete.execute([key]))
            .map_err(database_error)?;
    }
    for prefix in &buckets.prefixes {
        // A prefix compared as text: no LIKE, whose wildcards an email may hold.
        deleted += conn
            .prepare_cached("DELETE FROM throttle_buckets WHERE substr(key, 1, length(?1)) = ?1")
            .and_then(|mut delete| delete.execute([prefix]))
            .map_err(database_error)?;
    }
    Ok(deleted as u64)
}

impl Admin for SqliteStore {
    async fn find_accounts(&self, query: AccountQuery) -> Result<Vec<AccountOverview>, StoreError> {
        let pattern = query.search.as_deref().map(super::containing);
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "{OVERVIEW_COLUMNS}
                 WHERE (?1 IS NULL OR u.id > ?1)
                   AND (?2 IS NULL OR u.email_key LIKE ?2 ESCAPE '\\'
                        OR lower(u.username) LIKE ?2 ESCAPE '\\')
                 ORDER BY u.id LIMIT ?3"
            ))?
            .query_map(params![query.after, pattern, query.limit], overview_row)?
            .collect()
        })
    }

    async fn account_by_id(&self, user_id: UserId) -> Result<Option<AccountOverview>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&format!("{OVERVIEW_COLUMNS} WHERE u.id = ?1"))?
                .query_row([user_id], overview_row)
                .optional()
        })
    }

    async fn account_sessions(
        &self,
        user_id: UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, created_at, last_seen_at, user_agent, client_ip, amr FROM sessions
                 WHERE user_id = ?1 AND ended_at IS NULL
                   AND (?2 IS NULL OR (created_at, id) < (
                       SELECT created_at, id FROM sessions WHERE id = ?2))
                 ORDER BY created_at DESC, id DESC LIMIT ?3",
            )?
            .query_map(
                params![user_id, after.as_ref().map(|id| id.as_bytes()), limit],
                session_info_row,
            )?
            .collect()
        })
    }

    async fn update_account(
        &self,
        user_id: UserId,
        change: AccountChange,
        origin: Origin,
    ) -> Result<Option<Vec<&'static str>>, StoreError> {
        self.write(move |conn| {
            let current = conn
                .prepare_cached("SELECT email, username, is_active FROM users WHERE id = ?1")
                .and_then(|mut select| {
                    select
                        .query_row([user_id], |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, bool>(2)?,
                            ))
                        })
                        .optional()
                })
                .map_err(database_error)?;
            let Some((email, username, is_active)) = current else {
                return Ok(None);
            };
            let new_email = change.email.filter(|(address, _)| *address != email);
            let new_username = change.username.filter(|name| *name != username);
            let new_activation = change.is_active.filter(|active| *active != is_active);
            let now = change.now;
            if let Some((address, key)) = &new_email {
                conn.prepare_cached(
                    // Another address is not verified (and the links sent to the old one stop working).
                    "UPDATE users SET email = ?2, email_key = ?3, updated_at = ?4,
                         email_verified_at = CASE WHEN email_key = ?3 THEN email_verified_at END
                     WHERE id = ?1",
                )
                .and_then(|mut update| update.execute(params![user_id, address, key, now]))
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        StoreError::EmailTaken
                    } else {
                        database_error(error)
                    }
                })?;
            }
            if let Some(name) = &new_username {
                conn.prepare_cached(
                    "UPDATE users SET username = ?2, updated_at = ?3 WHERE id = ?1",
                )
                .and_then(|mut update| update.execute(params![user_id, name, now]))
                .map_err(database_error)?;
            }
            if let Some(active) = new_activation {
                conn.prepare_cached(
                    "UPDATE users SET is_active = ?2, updated_at = ?3 WHERE id = ?1",
                )
                .and_then(|mut update| update.execute(params![user_id, active, now]))
                .map_err(database_error)?;
                record(conn, &origin, now, &Event::activation(user_id, active))?;
                if !active {
                    let (scope, reason) = (SessionScope::All, EndReason::Deactivated);
                    end_user_sessions(conn, user_id, scope, reason, &origin, now)?;
                }
            }
            let changed = super::changed_fields(
                new_email.is_some(),
                new_username.is_some(),
                new_activation.is_some(),
            );
            if let Some(updated) = super::profile_updated(user_id, &changed) {
                record(conn, &origin, now, &updated)?;
            }
            Ok(Some(changed))
        })
        .await
    }

    async fn delete_account(
        &self,
        user_id: UserId,
        buckets: AccountBuckets,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            // Sessions (and with them their tokens) and known addresses go by their foreign
            // keys' ON DELETE CASCADE.
            let deleted = conn
                .prepare_cached("DELETE FROM users WHERE id = ?1")
                .and_then(|mut delete| delete.execute([user_id]))
                .map_err(database_error)?
                == 1;
            if !deleted {
                return Ok(false);
            }
            delete_buckets(conn, &buckets)?;
            let event = Event::about(EventName::UserDeleted, user_id);
            record(conn, &origin, now, &event)?;
            // The log outlives the account: its rows keep the id, marked erased.
            conn.prepare_cached(
                "UPDATE audit_events SET detail = CASE json_type(detail)
                     WHEN 'object' THEN json_set(detail, '$.erased', json('true'))
                     ELSE json_object('erased', json('true')) END
                 WHERE user_id = ?1",
            )
            .and_then(|mut update| update.execute([user_id]))
            .map_err(database_error)?;
            Ok(true)
        })
        .await
    }

    async fn end_any_session(
        &self,
        session_id: SessionId,
        origin: Origin,
        now: i64,
    ) -> Result<Option<UserId>, StoreError> {
        self.write(move |conn| {
            let ended: Option<UserId> = conn
                .prepare_cached(
                    "UPDATE sessions SET ended_at = ?2, end_reason = ?3
                     WHERE id = ?1 AND ended_at IS NULL RETURNING user_id",
                )
                .and_then(|mut update| {
                    update
                        .query_row(
                            params![session_id.as_bytes(), now, EndReason::Admin.as_str()],
                            |row| row.get(0),
                        )
                        .optional()
                })
                .map_err(database_error)?;
            if let Some(user_id) = ended {
                let event = Event::session_ended(user_id, session_id, EndReason::Admin);
                record(conn, &origin, now, &event)?;
            }
            Ok(ended)
        })
        .await
    }

    async fn clear_throttle(
        &self,
        user_id: UserId,
        buckets: AccountBuckets,
        origin: Origin,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let cleared = delete_buckets(conn, &buckets)?;
            record(
                conn,
                &origin,
                now,
                &super::throttle_cleared(user_id, cleared),
            )?;
            Ok(cleared)
        })
        .await
    }
}

impl Recovery for SqliteStore {
    async fn issue_link(&self, link: NewLink) -> Result<Option<Recipient>, StoreError> {
        self.write(move |conn| {
            // A verification is for an address not verified yet; a reset for any active account.
            let verification = link.purpose == Purpose::EmailVerification;
            let (filter, key): (&str, &dyn rusqlite::ToSql) = match &link.owner {
                LinkOwner::Email(email_key) => ("email_key = ?1", email_key),
                LinkOwner::Id(user_id) => ("id = ?1", user_id),
            };
            let owner: Option<(UserId, String, String)> = conn
                .prepare_cached(&format!(
                    "SELECT id, email, email_key FROM users
                     WHERE {filter} AND is_active = 1 AND (?2 = 0 OR email_verified_at IS NULL)"
                ))
                .and_then(|mut select| {
                    select
                        .query_row(params![key, verification], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })
                        .optional()
                })
                .map_err(database_error)?;
            let Some((user_id, email, email_key)) = owner else {
                return Ok(None);
            };
            conn.prepare_cached("DELETE FROM one_time_tokens WHERE user_id = ?1 AND purpose = ?2")
                .and_then(|mut delete| delete.execute(params![user_id, link.purpose.as_str()]))
                .map_err(database_error)?;
            conn.prepare_cached(
                "INSERT INTO one_time_tokens
                     (token_hash, user_id, purpose, email_key, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    &link.digest[..],
                    user_id,
                    link.purpose.as_str(),
                    email_key,
                    link.now,
                    link.expires_at
                ])
            })
            .map_err(database_error)?;
            let requested = Event::about(link.purpose.requested_event(), user_id);
            record(conn, &link.origin, link.now, &requested)?;
            Ok(Some(Recipient { user_id, email }))
        })
        .await
    }

    async fn link_owner(
        &self,
        digest: LinkDigest,
        purpose: Purpose,
        now: i64,
    ) -> Result<Option<Recipient>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT u.id, u.email FROM one_time_tokens t JOIN users u ON u.id = t.user_id
                 WHERE {LIVE_LINK}"
            ))?
            .query_row(params![&digest[..], purpose.as_str(), now], |row| {
                Ok(Recipient {
                    user_id: row.get(0)?,
                    email: row.get(1)?,
                })
            })
            .optional()
        })
    }

    async fn reset_password(
        &self,
        digest: LinkDigest,
        password_hash: String,
        origin: Origin,
        now: i64,
    ) -> Result<Option<UserId>, StoreError> {
        self.write(move |conn| {
            let Some(user_id) = consume_link(conn, &digest, Purpose::PasswordReset, now)? else {
                return Ok(None);
            };
            conn.prepare_cached(
                "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
            )
            .and_then(|mut update| update.execute(params![user_id, password_hash, now]))
            .map_err(database_error)?;
            record(
                conn,
                &origin,
                now,
                &Event::about(EventName::PasswordReset, user_id),
            )?;
            mark_verified(conn, user_id, &origin, now)?;
            let reason = EndReason::PasswordReset;
            end_user_sessions(conn, user_id, SessionScope::All, reason, &origin, now)?;
            Ok(Some(user_id))
        })
        .await
    }

    async fn verify_email(
        &self,
        digest: LinkDigest,
        origin: Origin,
        now: i64,
    ) -> Result<Option<UserId>, StoreError> {
        self.write(move |conn| {
            let consumed = consume_link(conn, &digest, Purpose::EmailVerification, now)?;
            if let Some(user_id) = consumed {
                mark_verified(conn, user_id, &origin, now)?;
            }
            Ok(consumed)
        })
        .await
    }

    async fn email_verified(&self, user_id: UserId) -> Result<bool, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1 AND email_verified_at IS NOT NULL)",
            )?
            .query_row([user_id], |row| row.get(0))
        })
    }
}

/// The link `?1` of purpose `?2`, unexpired at `?3`, of an active account that still has the
/// address it was sent to (`t` the link, `u` its account).
const LIVE_LINK: &str = "t.token_hash = ?1 AND t.purpose = ?2 AND t.expires_at > ?3
    AND u.is_active = 1 AND u.email_key = t.email_key";

/// Deletes the live link `digest` of `purpose`: its account, if it was live. The one write
/// that decides which of concurrent uses wins.
fn consume_link(
    conn: &Connection,
    digest: &LinkDigest,
    purpose: Purpose,
    now: i64,
) -> Result<Option<UserId>, StoreError> {
    conn.prepare_cached(&format!(
        "DELETE FROM one_time_tokens AS t WHERE t.token_hash = ?1 AND EXISTS (
             SELECT 1 FROM users u WHERE u.id = t.user_id AND {LIVE_LINK})
         RETURNING user_id"
    ))
    .and_then(|mut delete| {
        delete
            .query_row(params![&digest[..], purpose.as_str(), now], |row| {
                row.get(0)
            })
            .optional()
    })
    .map_err(database_error)
}

/// Marks the account's address verified, if it was not, and records it.
fn mark_verified(
    conn: &Connection,
    user_id: UserId,
    origin: &Origin,
    now: i64,
) -> Result<(), StoreError> {
    let marked = conn
        .prepare_cached(
            "UPDATE users SET email_verified_at = ?2 WHERE id = ?1 AND email_verified_at IS NULL",
        )
        .and_then(|mut update| update.execute(params![user_id, now]))
        .map_err(database_error)?;
    if marked > 0 {
        record(
            conn,
            origin,
            now,
            &Event::about(EventName::EmailVerified, user_id),
        )?;
    }
    Ok(())
}

impl Factors for SqliteStore {
    async fn totp_factor(&self, user_id: UserId) -> Result<Option<TotpFactor>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT secret, confirmed_at IS NOT NULL, last_step FROM totp_factors
                 WHERE user_id = ?1",
            )?
            .query_row([user_id], |row| {
                Ok(TotpFactor {
                    secret: row.get(0)?,
                    confirmed: row.get(1)?,
                    last_step: row.get(2)?,
                })
            })
            .optional()
        })
    }

    async fn put_pending_totp(
        &self,
        user_id: UserId,
        secret: String,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO totp_factors (user_id, secret, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET
                     secret = excluded.secret, created_at = excluded.created_at, last_step = NULL
                 WHERE totp_factors.confirmed_at IS NULL",
            )
            .and_then(|mut upsert| upsert.execute(params![user_id, secret, now]))
            .map(|stored| stored == 1)
            .map_err(database_error)
        })
        .await
    }

    async fn confirm_totp(&self, confirm: ConfirmTotp) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let confirmed = conn
                .prepare_cached(
                    "UPDATE totp_factors SET confirmed_at = ?3, last_step = ?4
                     WHERE user_id = ?1 AND secret = ?2 AND confirmed_at IS NULL",
                )
                .and_then(|mut update| {
                    update.execute(params![
                        confirm.user_id,
                        confirm.secret,
                        confirm.now,
                        confirm.step
                    ])
                })
                .map_err(database_error)?
                == 1;
            if !confirmed {
                return Ok(false);
            }
            replace_recovery_codes(conn, confirm.user_id, &confirm.recovery_codes)?;
            let enabled =
                Event::about(EventName::MfaEnabled, confirm.user_id).in_session(confirm.session_id);
            record(conn, &confirm.origin, confirm.now, &enabled)?;
            Ok(true)
        })
        .await
    }

    async fn use_totp_step(&self, user_id: UserId, step: i64) -> Result<bool, StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE totp_factors SET last_step = ?2
                 WHERE user_id = ?1 AND confirmed_at IS NOT NULL
                   AND (last_step IS NULL OR last_step < ?2)",
            )
            .and_then(|mut update| update.execute(params![user_id, step]))
            .map(|used| used == 1)
            .map_err(database_error)
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        user_id: UserId,
        code: RecoveryDigest,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let used = conn
                .prepare_cached(
                    "UPDATE recovery_codes SET used_at = ?3
                     WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL
                       AND EXISTS (SELECT 1 FROM totp_factors
                                   WHERE user_id = ?1 AND confirmed_at IS NOT NULL)",
                )
                .and_then(|mut update| update.execute(params![user_id, &code[..], now]))
                .map_err(database_error)?
                == 1;
            if used {
                let event = Event::about(EventName::MfaRecoveryCodeUsed, user_id);
                record(conn, &origin, now, &event)?;
            }
            Ok(used)
        })
        .await
    }

    async fn remove_totp(
        &self,
        user_id: UserId,
        end: SessionScope,
        origin: Origin,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let removed = conn
                .prepare_cached(
                    "DELETE FROM totp_factors WHERE user_id = ?1 AND confirmed_at IS NOT NULL",
                )
                .and_then(|mut delete| delete.execute([user_id]))
                .map_err(database_error)?
                == 1;
            if !removed {
                return Ok(false);
            }
            replace_recovery_codes(conn, user_id, &[])?;
            record(
                conn,
                &origin,
                now,
                &Event::about(EventName::MfaDisabled, user_id),
            )?;
            end_user_sessions(conn, user_id, end, EndReason::MfaDisabled, &origin, now)?;
            Ok(true)
        })
        .await
    }

    async fn mfa_status(&self, user_id: UserId) -> Result<MfaStatus, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM totp_factors
                                WHERE user_id = ?1 AND confirmed_at IS NOT NULL),
                        (SELECT count(*) FROM recovery_codes
                         WHERE user_id = ?1 AND used_at IS NULL)",
            )?
            .query_row([user_id], |row| {
                Ok(MfaStatus {
                    totp: row.get(0)?,
                    recovery_codes_left: row.get(1)?,
                })
            })
        })
    }
}

/// Deletes the user's recovery codes and stores `codes` instead.
fn replace_recovery_codes(
    conn: &Connection,
    user_id: UserId,
    codes: &[RecoveryDigest],
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")
        .and_then(|mut delete| delete.execute([user_id]))
        .map_err(database_error)?;
    for code in codes {
        conn.prepare_cached("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)")
            .and_then(|mut insert| insert.execute(params![user_id, &code[..]]))
            .map_err(database_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::Actor;

    async fn open_temporary() -> (tempfile::TempDir, SqliteStore) {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", directory.path().join("db.sqlite3").display());
        let store = SqliteStore::open(
            &url,
            SqliteSettings {
                session_cache_size: 0,
            },
        )
        .await
        .unwrap();
        (directory, store)
    }

    fn new_user(email: &str) -> NewUser {
        NewUser {
            email: email.into(),
            email_key: email.into(),
            username: email.into(),
            password_hash: "not a real hash".into(),
            is_active: true,
            origin: Origin::of(Actor::Cli),
            now: 1,
        }
    }

    /// A database of the layout before 0008 (tokens keyed by digest) keeps its sessions: the
    /// live token rotates, the one before it is a retry within the grace, an older one is reuse.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refresh_tokens_keyed_by_digest_are_kept_in_order_by_session() {
        use crate::domain::sessions::{Redemption, SessionPolicy};

        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("db.sqlite3");
        let session = Uuid::new_v4();
        // Three generations: two consumed (in the same second), the last one live.
        let digests: [RefreshDigest; 4] = std::array::from_fn(|generation| [generation as u8; 32]);
        {
            let conn = Connection::open(&path).unwrap();
            for script in &migrations::SQLITE[..7] {
                conn.execute_batch(script).unwrap();
            }
            conn.pragma_update(None, "user_version", 7).unwrap();
            conn.execute_batch(
                "INSERT INTO users (email, email_key, username, password_hash, created_at, updated_at)
                 VALUES ('ann@example.org', 'ann@example.org', 'ann', 'not a real hash', 1, 1);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO sessions (id, user_id, created_at, last_seen_at) VALUES (?1, 1, 1, 5)",
                [session.as_bytes()],
            )
            .unwrap();
            // Digests in the opposite order of the chain: the order has to come from the times.
            for (generation, consumed_at) in [(0, Some(5)), (1, Some(5)), (2, None)] {
                conn.execute(
                    "INSERT INTO refresh_tokens
                         (token_hash, session_id, issued_at, expires_at, consumed_at)
                     VALUES (?1, ?2, ?3, 1000, ?4)",
                    params![
                        &[9 - generation as u8; 32][..],
                        session.as_bytes(),
                        if generation == 0 { 1 } else { 5 },
                        consumed_at
                    ],
                )
                .unwrap();
            }
        }
        let settings = SqliteSettings {
            session_cache_size: 0,
        };
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()), settings)
            .await
            .unwrap();
        let redeem = |presented: u8, successor: RefreshDigest| Redeem {
            presented: [presented; 32],
            successor,
            redemption: Redemption::Rotate { expires_at: 2000 },
            policy: SessionPolicy {
                retry_grace: 10,
                ..SessionPolicy::default()
            },
            throttle: None,
            origin: Origin::of(Actor::Cli),
            now: 6,
        };
        let live = store
            .redeem_refresh_token(redeem(7, digests[3]))
            .await
            .unwrap();
        assert!(matches!(live, Redeemed::Accepted { .. }), "{live:?}");
        // The token just rotated, presented again with its own successor: a retry.
        let retried = store
            .redeem_refresh_token(redeem(7, digests[3]))
            .await
            .unwrap();
        assert!(matches!(retried, Redeemed::Repeated { .. }), "{retried:?}");
        let reused = store
            .redeem_refresh_token(redeem(8, digests[2]))
            .await
            .unwrap();
        assert_eq!(reused, Redeemed::ReuseDetected);
        let ended = store
            .redeem_refresh_token(redeem(3, digests[0]))
            .await
            .unwrap();
        assert_eq!(ended, Redeemed::Rejected, "the session ended");
    }

    /// Writes queued together commit together; one that fails, or panics, is undone alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_in_a_group_commit_changes_nothing_of_the_others() {
        let (_directory, store) = open_temporary().await;
        store
            .create_user(new_user("taken@example.org"))
            .await
            .unwrap();
        // The writer waits on this write until all the others are queued: they then commit as one.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holding = tokio::spawn({
            let store = store.clone();
            async move { store.write(move |_| Ok(held.recv().ok())).await }
        });

        let writes: Vec<_> = (0..60)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    match n % 3 {
                        0 if n % 2 == 0 => store
                            .create_user(new_user("taken@example.org"))
                            .await
                            .map(drop),
                        0 => {
                            store
                                .write(move |conn| {
                                    conn.execute(
                                        "INSERT INTO settings (key, value) VALUES (?1, 'x')",
                                        [format!("refused {n}")],
                                    )
                                    .map_err(database_error)?;
                                    Err(StoreError::EmailTaken)
                                })
                                .await
                        }
                        1 => {
                            store
                                .write(move |conn| {
                                    conn.execute(
                                        "INSERT INTO settings (key, value) VALUES (?1, 'x')",
                                        [format!("half-done {n}")],
                                    )
                                    .map_err(database_error)?;
                                    panic!("a write that fails half-way");
                                })
                                .await
                        }
                        _ => store
                            .create_user(new_user(&format!("user{n}@example.org")))
                            .await
                            .map(drop),
                    }
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        release.send(()).unwrap();
        holding.await.unwrap().unwrap();
        let mut outcomes = Vec::new();
        for write in writes {
            outcomes.push(write.await.unwrap());
        }

        for (n, outcome) in outcomes.iter().enumerate() {
            match n % 3 {
                0 => assert!(
                    matches!(outcome, Err(StoreError::EmailTaken)),
                    "{outcome:?}"
                ),
                1 => assert!(
                    matches!(outcome, Err(StoreError::Database(_))),
                    "{outcome:?}"
                ),
                _ => assert!(outcome.is_ok(), "{outcome:?}"),
            }
        }
        let accounts = store.accounts().await.unwrap();
        assert_eq!(accounts.len(), 1 + 20);
        assert!(store.settings().await.unwrap().is_empty());
        // The writer thread outlived the panics.
        store.put_setting("after".into(), "1".into()).await.unwrap();
    }

    /// Under a steady stream of writes a checkpoint beside the writer never copies the whole
    /// log, and a log starts over only after one that did: the writer finishes one itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_ahead_log_starts_over_under_a_steady_stream_of_writes() {
        // The service's 32 MiB take seconds to write; the rule is the same at 1 MiB, with the
        // checkpointer's rounds as much shorter, so that as many run per length written.
        const LOG_BYTES_BEFORE_RESTART: i64 = 1024 * 1024;
        const LENGTHS_WRITTEN: i64 = 16;
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", directory.path().join("db.sqlite3").display());
        let limit = LogLimit {
            bytes_before_restart: LOG_BYTES_BEFORE_RESTART,
            checkpoint_interval: std::time::Duration::from_millis(3),
        };
        let store = SqliteStore::open_with_log_limit(
            &url,
            SqliteSettings {
                session_cache_size: 16,
            },
            limit,
        )
        .await
        .unwrap();
        let own_writes_unseen = store.data_version.load(Ordering::Relaxed);
        let value = "x".repeat(900);
        let mut in_flight = tokio::task::JoinSet::<Result<(), StoreError>>::new();
        // Each write changes a page or two of 1 KiB: several times the length that restarts.
        // A new file: 1 KiB pages.
        let restart_frames = LOG_BYTES_BEFORE_RESTART / 1024;
        for n in 0..(LENGTHS_WRITTEN * restart_frames) {
            if in_flight.len() >= 64 {
                in_flight.join_next().await.unwrap().unwrap().unwrap();
            }
            let store = store.clone();
            let value = value.clone();
            in_flight.spawn(async move { store.put_setting(format!("key {n}"), value).await });
        }
        while let Some(written) = in_flight.join_next().await {
            written.unwrap().unwrap();
        }

        let log = std::fs::metadata(directory.path().join("db.sqlite3-wal")).unwrap();
        let written = (LENGTHS_WRITTEN * LOG_BYTES_BEFORE_RESTART) as u64;
        assert!(
            log.len() < written / 2,
            "the log holds {} bytes of the {written} written",
            log.len()
        );
        assert_eq!(
            store.settings().await.unwrap().len(),
            (LENGTHS_WRITTEN * restart_frames) as usize
        );
        // Neither the store's own commits nor its checkpoints and restarts of the log look
        // like another process's write (which would empty its memory of sessions); one does.
        store.notice_outside_writes().await.unwrap();
        assert_eq!(
            store.data_version.load(Ordering::Relaxed),
            own_writes_unseen
        );
        Connection::open(directory.path().join("db.sqlite3"))
            .unwrap()
            .execute(
                "INSERT INTO settings (key, value) VALUES ('outside', '1')",
                [],
            )
            .unwrap();
        store.notice_outside_writes().await.unwrap();
        assert_ne!(
            store.data_version.load(Ordering::Relaxed),
            own_writes_unseen
        );
    }

    /// The pages a refresh-token rotation writes to the log (1 KiB each, plus a 24-byte
    /// frame header): committed alone, and committed 32 at once (the writer's group commit).
    /// A session's tokens share a leaf, so a rotation touches that one (the consumed token and
    /// its successor) and a leaf of the digest index, found at random. Keyed by digest (before
    /// migration 0008) it touched three at random: 10.2 frames alone, 6.1 in groups; now 8.0
    /// and 4.0.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rotation_writes_a_few_pages_to_the_log() {
        use crate::domain::mfa::Amr;
        use crate::domain::sessions::{Redemption, SessionPolicy};

        const SESSIONS: usize = 32;
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("db.sqlite3");
        let url = format!("sqlite://{}", path.display());
        // No checkpoint after the first: the log only grows, so its length counts the frames.
        let limit = LogLimit {
            bytes_before_restart: LOG_BYTES_BEFORE_RESTART,
            checkpoint_interval: std::time::Duration::from_secs(3600),
        };
        let uncached = SqliteSettings {
            session_cache_size: 0,
        };
        let store = SqliteStore::open_with_log_limit(&url, uncached, limit)
            .await
            .unwrap();
        let user_id = store
            .create_user(new_user("ann@example.org"))
            .await
            .unwrap();
        // Thousands of sessions, so that the tables are deeper than one page.
        let digest = |session: usize, generation: usize| -> RefreshDigest {
            let mut digest = [0; 32];
            digest[..16].copy_from_slice(&Uuid::new_v4().into_bytes());
            digest[16..24].copy_from_slice(&(session as u64).to_le_bytes());
            digest[24..].copy_from_slice(&(generation as u64).to_le_bytes());
            digest
        };
        let mut chains = Vec::new();
        for session in 0..2000 {
            let first = digest(session, 0);
            let started = store
                .start_session(NewSession {
                    id: Uuid::new_v4(),
                    user_id,
                    verified_hash: "not a real hash".into(),
                    address: None,
                    refresh: first,
                    refresh_expires_at: 1_000_000,
                    amr: Amr::Password,
                    origin: Origin::of(Actor::Cli),
                    now: 1,
                })
                .await
                .unwrap();
            assert!(started);
            chains.push(first);
        }
        let rotate = |store: SqliteStore, presented: RefreshDigest, successor: RefreshDigest| async move {
            let redeemed = store
                .redeem_refresh_token(Redeem {
                    presented,
                    successor,
                    redemption: Redemption::Rotate {
                        expires_at: 1_000_000,
                    },
                    policy: SessionPolicy::default(),
                    throttle: None,
                    origin: Origin::of(Actor::Cli),
                    now: 2,
                })
                .await
                .unwrap();
            assert!(
                matches!(redeemed, Redeemed::Accepted { .. }),
                "{redeemed:?}"
            );
        };
        let log_length = || {
            std::fs::metadata(path.with_extension("sqlite3-wal"))
                .unwrap()
                .len()
        };
        let frames = |bytes: u64| bytes as f64 / (1024.0 + 24.0);

        let before = log_length();
        for (session, chain) in chains.iter_mut().enumerate().take(200) {
            let next = digest(session, 1);
            rotate(store.clone(), *chain, next).await;
            *chain = next;
        }
        let alone = frames(log_length() - before) / 200.0;

        // Sessions with a history of rotations (each keeps its consumed tokens), as under load.
        const ROUNDS: usize = 20;
        let mut together = 0.0;
        for round in 0..2 * ROUNDS {
            let before = log_length();
            let mut rotations = tokio::task::JoinSet::new();
            for (session, chain) in chains.iter_mut().enumerate().skip(200).take(SESSIONS) {
                let next = digest(session, round + 2);
                rotations.spawn(rotate(store.clone(), *chain, next));
                *chain = next;
            }
            rotations.join_all().await;
            if round >= ROUNDS {
                together += frames(log_length() - before) / (ROUNDS * SESSIONS) as f64;
            }
        }

        println!(
            "log frames per rotation: {alone:.1} committed alone, {together:.1} in group commits of up to {SESSIONS}"
        );
        assert!(
            alone <= 9.0,
            "{alone:.1} frames per rotation committed alone"
        );
        assert!(
            together <= 5.0,
            "{together:.1} frames per rotation in group commits"
        );
    }
}
