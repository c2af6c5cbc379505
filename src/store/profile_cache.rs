//! The SQLite store's memory of live sessions and their profiles: what an authenticated request
//! (`GET /api/me/` above all) would otherwise read from the database every time.
//!
//! An entry is filled by a read that missed, and stays valid until a row it was read from
//! changes. The writer connection's update hook notes every `users` and `sessions` row a write
//! changes; once the write has committed, and before it is answered, the counter of each changed
//! row's stripe moves on, and entries stamped with an older count no longer answer. So a write
//! of this process (a logout, a password change, a deactivation, a rename, a reuse detection,
//! an erasure, a purge) takes effect on the next request, as with a read of the database.
//! Another process's commit (the command line) is seen by [`ProfileCache::invalidate_all`],
//! which the store calls when the writer connection's `PRAGMA data_version` has moved: within
//! `--reload-interval`.
//!
//! Entries are kept for at most `capacity` sessions (the least used go first), so memory stays
//! bounded however many sessions exist: an entry costs about 230 bytes with its strings (README).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::domain::{Profile, SessionId, UserId};

/// Counters per stripe of rows: a change to one row also expires the entries of rows that share
/// its stripe, which costs a read, never a stale answer.
const STRIPES: usize = 4096;

/// The tables whose rows an entry is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Users,
    Sessions,
}

impl Table {
    /// The table of an update hook's name, if an entry is read from it.
    pub fn named(name: &str) -> Option<Table> {
        match name {
            "users" => Some(Table::Users),
            "sessions" => Some(Table::Sessions),
            _ => None,
        }
    }
}

/// A session's profile as read, with the counters its rows had before the read.
#[derive(Clone)]
struct Cached {
    profile: Arc<Profile>,
    session_row: i64,
    stamp: Stamp,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    everything: u64,
    user: u64,
    session: u64,
}

/// What a read must note before it looks at the database, to fill an entry after it.
#[derive(Clone, Copy)]
pub struct BeforeRead {
    commits: u64,
}

pub struct ProfileCache {
    entries: quick_cache::sync::Cache<SessionId, Cached>,
    users: Box<[AtomicU64]>,
    sessions: Box<[AtomicU64]>,
    /// Moved on by a change this process cannot see row by row (another process's commit).
    everything: AtomicU64,
    /// Moved on by every commit that changed a row, before the stripes are: a read that saw it
    /// unchanged before and after may have read nothing a commit changed under it.
    commits: AtomicU64,
    /// Rows changed by the writer's open transaction, noted by its update hook.
    pending: Mutex<Vec<(Table, i64)>>,
}

impl ProfileCache {
    pub fn new(capacity: usize) -> ProfileCache {
        let counters = || (0..STRIPES).map(|_| AtomicU64::new(0)).collect();
        ProfileCache {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
            users: counters(),
            sessions: counters(),
            everything: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// The profile of `session_id` if an entry holds it, for a token of `user_id`, and no row it
    /// was read from has changed since.
    pub fn get(&self, session_id: &SessionId, user_id: UserId) -> Option<Profile> {
        let cached = self.entries.get(session_id)?;
        (cached.profile.id == user_id && self.stamp(user_id, cached.session_row) == cached.stamp)
            .then(|| Profile::clone(&cached.profile))
    }

    /// Call before reading a session's profile from the database.
    pub fn before_read(&self) -> BeforeRead {
        BeforeRead {
            commits: self.commits.load(SeqCst),
        }
    }

    /// Remembers what a read begun at `before` found, unless a commit may have changed it
    /// meanwhile (then the next request reads again).
    pub fn fill(
        &self,
        before: BeforeRead,
        session_id: SessionId,
        session_row: i64,
        profile: &Profile,
    ) {
        let stamp = self.stamp(profile.id, session_row);
        if self.commits.load(SeqCst) != before.commits {
            return;
        }
        let cached = Cached {
            profile: Arc::new(profile.clone()),
            session_row,
            stamp,
        };
        self.entries.insert(session_id, cached);
    }

    /// Notes a row changed by the writer's open transaction (from its update hook).
    pub fn note_change(&self, table: Table, row: i64) {
        self.pending_rows().push((table, row));
    }

    /// After the writer's transaction has ended (committed or not) and before it is answered:
    /// entries read from the rows it changed no longer answer.
    pub fn transaction_ended(&self) {
        let mut pending = self.pending_rows();
        if pending.is_empty() {
            return;
        }
        self.commits.fetch_add(1, SeqCst);
        for (table, row) in pending.drain(..) {
            let stripes = match table {
                Table::Users => &self.users,
                Table::Sessions => &self.sessions,
            };
            stripes[stripe(row)].fetch_add(1, SeqCst);
        }
    }

    /// Every entry no longer answers: another process wrote to the database.
    pub fn invalidate_all(&self) {
        self.commits.fetch_add(1, SeqCst);
        self.everything.fetch_add(1, SeqCst);
    }

    fn stamp(&self, user_id: UserId, session_row: i64) -> Stamp {
        Stamp {
            everything: self.everything.load(SeqCst),
            user: self.users[stripe(user_id)].load(SeqCst),
            session: self.sessions[stripe(session_row)].load(SeqCst),
        }
    }

    fn pending_rows(&self) -> std::sync::MutexGuard<'_, Vec<(Table, i64)>> {
        // Only the writer thread takes it; a panic there leaves a list still worth applying.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn stripe(row: i64) -> usize {
    // Row ids are handed out in order, so consecutive ones fall in different stripes.
    row.rem_euclid(STRIPES as i64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(id: UserId) -> Profile {
        Profile {
            id,
            username: format!("user{id}"),
            email: format!("user{id}@example.com"),
        }
    }

    fn filled(cache: &ProfileCache, session: SessionId, row: i64, user: UserId) {
        let before = cache.before_read();
        cache.fill(before, session, row, &profile(user));
    }

    #[test]
    fn an_entry_answers_for_its_own_user_until_one_of_its_rows_changes() {
        let cache = ProfileCache::new(16);
        let session = SessionId::from_u128(1);
        filled(&cache, session, 7, 3);
        assert_eq!(cache.get(&session, 3), Some(profile(3)));
        assert_eq!(cache.get(&session, 4), None, "a token of another user");

        cache.note_change(Table::Sessions, 8);
        cache.transaction_ended();
        assert_eq!(cache.get(&session, 3), Some(profile(3)), "another row");

        cache.note_change(Table::Sessions, 7);
        assert_eq!(
            cache.get(&session, 3),
            Some(profile(3)),
            "not committed yet"
        );
        cache.transaction_ended();
        assert_eq!(cache.get(&session, 3), None);

        filled(&cache, session, 7, 3);
        cache.note_change(Table::Users, 3);
        cache.transaction_ended();
        assert_eq!(cache.get(&session, 3), None);

        filled(&cache, session, 7, 3);
        cache.invalidate_all();
        assert_eq!(cache.get(&session, 3), None);
    }

    #[test]
    fn a_read_overtaken_by_a_commit_is_not_remembered() {
        let cache = ProfileCache::new(16);
        let session = SessionId::from_u128(1);
        let before = cache.before_read();
        // The read saw the row as it was; the logout commits before the read is kept.
        cache.note_change(Table::Sessions, 7);
        cache.transaction_ended();
        cache.fill(before, session, 7, &profile(3));
        assert_eq!(cache.get(&session, 3), None);
    }
}
