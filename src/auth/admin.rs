//! The administrator's use cases: any account, found by id, listed, changed, erased; its
//! sessions ended; its throttle cleared. The admin API and the command line both call these,
//! each with the [`Origin`] it records.
//!
//! Also the admin API's token: the one secret that guards it, read from a file.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::email::Email;
use super::username::Username;
use super::{Auth, AuthError, Refusal};
use crate::domain::audit::{AuditQuery, Origin, Recorded};
use crate::domain::sessions::EndReason;
use crate::domain::throttle::AccountBuckets;
use crate::domain::{SessionId, UserId};
use crate::private_files::{self, SecretFileError};
use crate::store::{
    AccountChange, AccountOverview, AccountQuery, SessionInfo, SessionScope, Store, StoreError,
};

/// Accounts a page holds unless the caller asks for fewer or more.
pub const DEFAULT_PAGE: u32 = 20;

/// The most accounts a page holds, as the audit log's pages.
pub const MAX_PAGE: u32 = crate::domain::audit::MAX_PAGE;

/// Which page of a list: the `limit` items after the cursor `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<C> {
    pub after: Option<C>,
    /// Within `1..=MAX_PAGE`.
    limit: u32,
}

impl<C> Page<C> {
    /// `limit` items (within `1..=MAX_PAGE`; [`DEFAULT_PAGE`] when not given) after `after`.
    pub fn new(limit: Option<u32>, after: Option<C>) -> Page<C> {
        Page {
            after,
            limit: limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }
}

/// One page of a list, and the cursor of the next (`None`: this is the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

impl<T, C> Listed<T, C> {
    /// `fetched` holds up to one item more than `limit`: that one only tells that a next page
    /// exists, which starts after the last item kept.
    fn of(mut fetched: Vec<T>, limit: u32, cursor: impl Fn(&T) -> C) -> Listed<T, C> {
        let more = fetched.len() > limit as usize;
        fetched.truncate(limit as usize);
        let next = more.then(|| fetched.last().map(&cursor)).flatten();
        Listed {
            items: fetched,
            next,
        }
    }
}

/// An administrator's change to an account: fields left `None` stay as they are.
#[derive(Debug, Default)]
pub struct AccountUpdate {
    pub email: Option<Email>,
    pub username: Option<Username>,
    pub is_active: Option<bool>,
}

impl<S: Store> Auth<S> {
    /// The audit log's rows that `filters` select, newest first, a page at a time: `after` is
    /// the id of the last row of the page before.
    pub async fn audit_page(
        &self,
        filters: AuditQuery,
        page: Page<i64>,
    ) -> Result<Listed<Recorded, i64>, StoreError> {
        let fetched = self
            .audit(AuditQuery {
                before: page.after,
                limit: page.limit + 1,
                ..filters
            })
            .await?;
        Ok(Listed::of(fetched, page.limit, |row| row.id))
    }

    /// The accounts whose email or username holds `search` (whatever its case), oldest first.
    pub async fn find_accounts(
        &self,
        search: Option<&str>,
        page: Page<UserId>,
    ) -> Result<Listed<AccountOverview, UserId>, StoreError> {
        let fetched = self
            .store
            .find_accounts(AccountQuery {
                search: search.map(str::to_lowercase),
                after: page.after,
                limit: page.limit + 1,
            })
            .await?;
        Ok(Listed::of(fetched, page.limit, |found| found.account.id))
    }

    pub async fn account_by_id(
        &self,
        user_id: UserId,
    ) -> Result<Option<AccountOverview>, StoreError> {
        self.store.account_by_id(user_id).await
    }

    /// Changes the account `user_id`; the account as it is then, or `None` if there is none.
    /// An email that is another account's, whatever its case, is refused as registration
    /// refuses it; deactivation ends every session of the account.
    pub async fn update_account(
        &self,
        user_id: UserId,
        update: AccountUpdate,
        origin: Origin,
    ) -> Result<Option<AccountOverview>, AuthError> {
        let change = AccountChange {
            email: update
                .email
                .map(|email| (email.as_str().to_owned(), email.key().to_owned())),
            username: update.username.map(Username::into_string),
            is_active: update.is_active,
            now: self.clock.now(),
        };
        let updated = self
            .store
            .update_account(user_id, change, origin)
            .await
            .map_err(|error| match error {
                StoreError::EmailTaken => AuthError::Refused(Refusal::email_taken()),
                other => other.into(),
            })?;
        if updated.is_none() {
            return Ok(None);
        }
        Ok(self.store.account_by_id(user_id).await?)
    }

    /// Erases the account `user_id` with its sessions, their tokens, the addresses known to
    /// it and its throttle counters (which name its email); whether there was one.
    pub async fn delete_account(
        &self,
        user_id: UserId,
        origin: Origin,
    ) -> Result<bool, StoreError> {
        let Some(found) = self.store.account_by_id(user_id).await? else {
            return Ok(false);
        };
        let buckets = self.account_buckets(&found);
        self.store
            .delete_account(user_id, buckets, origin, self.clock.now())
            .await
    }

    /// The live sessions of the account `user_id`, newest first; `None` if there is no such
    /// account.
    pub async fn account_sessions(
        &self,
        user_id: UserId,
        page: Page<SessionId>,
    ) -> Result<Option<Listed<SessionInfo, SessionId>>, StoreError> {
        if self.store.account_by_id(user_id).await?.is_none() {
            return Ok(None);
        }
        let fetched = self
            .store
            .account_sessions(user_id, page.after, page.limit + 1)
            .await?;
        Ok(Some(Listed::of(fetched, page.limit, |session| session.id)))
    }

    /// Ends every session of the account `user_id`; how many, or `None` if there is no such
    /// account.
    pub async fn end_account_sessions(
        &self,
        user_id: UserId,
        origin: Origin,
    ) -> Result<Option<u64>, StoreError> {
        if self.store.account_by_id(user_id).await?.is_none() {
            return Ok(None);
        }
        let ended = self
            .store
            .end_sessions(
                user_id,
                SessionScope::All,
                EndReason::Admin,
                origin,
                self.clock.now(),
            )
            .await?;
        Ok(Some(ended))
    }

    /// Ends the live session `session_id`, whoever's it is; whether there was one.
    pub async fn end_any_session(
        &self,
        session_id: SessionId,
        origin: Origin,
    ) -> Result<bool, StoreError> {
        let ended = self
            .store
            .end_any_session(session_id, origin, self.clock.now())
            .await?;
        Ok(ended.is_some())
    }

    /// Clears the throttle counters that hold the account `user_id` back from every address,
    /// so that an owner locked out by failed logins (theirs or a guesser's) logs in at once;
    /// how many there were, or `None` if there is no such account.
    pub async fn unlock(&self, user_id: UserId, origin: Origin) -> Result<Option<u64>, StoreError> {
        let Some(found) = self.store.account_by_id(user_id).await? else {
            return Ok(None);
        };
        let buckets = self.account_buckets(&found);
        let cleared = self
            .store
            .clear_throttle(user_id, buckets, origin, self.clock.now())
            .await?;
        Ok(Some(cleared))
    }

    /// The throttle buckets of `found`, under the key its logins are counted by (see
    /// `login_buckets`).
    fn account_buckets(&self, found: &AccountOverview) -> AccountBuckets {
        AccountBuckets::of(&Email::lookup_key(&found.account.email), found.account.id)
    }
}

/// The admin API's bearer token. Only its digest is kept, and a presented token is compared
/// with it in constant time (by digest, so that the comparison says nothing of its length).
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl AdminToken {
    /// `token` without the white space around it (a file's trailing newline); `None` if
    /// nothing is left.
    pub fn new(token: &str) -> Option<AdminToken> {
        let token = token.trim();
        (!token.is_empty()).then(|| AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// The token in a file, which only its owner may read unless `allow_exposed`.
    pub fn read_file(path: &Path, allow_exposed: bool) -> Result<AdminToken, AdminTokenError> {
        let text = private_files::read_secret("the admin token file", path, allow_exposed)?;
        AdminToken::new(&text).ok_or_else(|| AdminTokenError::Empty {
            path: path.to_owned(),
        })
    }

    /// Whether `presented` is the token.
    pub fn admits(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Why the admin API cannot be served as configured.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error(
        "--admin-bind {address} is not a loopback address: anyone who reaches it could \
         administer every account. Set --admin-token-file (RESTFUL_AUTH_ADMIN_TOKEN_FILE) to a \
         file holding a long random token (e.g. `openssl rand -hex 32`), or bind to 127.0.0.1"
    )]
    Unprotected { address: std::net::SocketAddr },
    #[error("the admin token file {path} holds no token", path = path.display())]
    Empty { path: PathBuf },
    #[error(transparent)]
    File(#[from] SecretFileError),
}

/// The token that guards an admin API on `address`: the file's, if one is configured; none on
/// a loopback address without one, where only this machine's users reach it.
pub fn admin_token(
    address: std::net::SocketAddr,
    token_file: Option<&Path>,
    allow_exposed: bool,
) -> Result<Option<AdminToken>, AdminTokenError> {
    match token_file {
        Some(path) => AdminToken::read_file(path, allow_exposed).map(Some),
        None if address.ip().is_loopback() => Ok(None),
        None => Err(AdminTokenError::Unprotected { address }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_trimmed_and_compared_whole() {
        let token = AdminToken::new("  s3cret-token\n").unwrap();
        assert!(token.admits("s3cret-token"));
        for wrong in [
            "",
            "s3cret",
            "s3cret-token ",
            "S3CRET-TOKEN",
            "s3cret-token2",
        ] {
            assert!(!token.admits(wrong), "{wrong:?}");
        }
        assert!(AdminToken::new(" \n\t").is_none());
        assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn only_a_loopback_address_may_go_without_a_token() {
        let loopback = "127.0.0.1:8081".parse().unwrap();
        let everywhere = "0.0.0.0:8081".parse().unwrap();
        assert!(admin_token(loopback, None, false).unwrap().is_none());
        assert!(
            admin_token("[::1]:8081".parse().unwrap(), None, false)
                .unwrap()
                .is_none()
        );
        let refused = admin_token(everywhere, None, false).unwrap_err();
        assert!(
            refused.to_string().contains("--admin-token-file"),
            "{refused}"
        );
    }

    #[test]
    fn pages_hold_one_to_a_hundred_items_and_know_whether_more_follow() {
        assert_eq!(Page::<i64>::new(None, None).limit(), DEFAULT_PAGE);
        assert_eq!(Page::<i64>::new(Some(0), None).limit(), 1);
        assert_eq!(Page::<i64>::new(Some(1000), None).limit(), MAX_PAGE);
        let full = Listed::of(vec![1, 2, 3], 2, |n| *n);
        assert_eq!((full.items, full.next), (vec![1, 2], Some(2)));
        let last = Listed::of(vec![1, 2], 2, |n| *n);
        assert_eq!((last.items, last.next), (vec![1, 2], None));
    }
}
