//! The rules of refresh-token rotation (RFC 9700 §4.14): a token is used once; a consumed token
//! presented again means two parties hold the session, so the whole session ends.

/// What the store knows of a presented refresh token, read in the transaction that acts on it.
#[derive(Debug, Clone, Copy)]
pub struct PresentedToken {
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
    /// Whether the token that rotation derives from this one is its session's live token: the
    /// presented token is then the one consumed last. Only [`judge`] of a consumed token reads
    /// it, and stores need not look it up for any other.
    pub successor_is_live: bool,
    pub session_created_at: i64,
    pub session_ended: bool,
    pub user_active: bool,
}

/// The session rules that can be changed while the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionPolicy {
    /// Seconds during which the token consumed last may be presented again (0: never).
    pub retry_grace: i64,
    /// Seconds after its start when a session can no longer be refreshed (`None`: no limit).
    pub max_session_lifetime: Option<i64>,
}

/// What the store must do with a presented token, decided by [`judge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: consume it and carry out the request (rotate, or end the session on logout).
    Accept,
    /// A retry of the rotation that just consumed it (a lost answer, two tabs): answer again
    /// with the session's live token, change nothing.
    Repeat,
    /// Not usable; nothing changes.
    Reject,
    /// Already consumed: someone replays it, so its session ends.
    EndSessionForReuse,
    /// Its session is past its absolute lifetime: refused, and the session ends (so it is
    /// recorded when it did, and no longer listed as live).
    EndSessionPastLifetime,
}

/// The verdict on a presented refresh token.
///
/// The PostgreSQL store also states the `Accept` conditions in SQL, to rotate in one round trip:
/// a change here belongs there too (`PostgresStore::rotate_live_token`).
pub fn judge(token: &PresentedToken, policy: &SessionPolicy, now: i64) -> Verdict {
    let session_too_old = policy
        .max_session_lifetime
        .is_some_and(|max| token.session_created_at + max <= now);
    if token.session_ended || !token.user_active {
        return Verdict::Reject;
    }
    if session_too_old {
        return Verdict::EndSessionPastLifetime;
    }
    match token.consumed_at {
        Some(consumed_at) if token.successor_is_live && now - consumed_at < policy.retry_grace => {
            Verdict::Repeat
        }
        Some(_) => Verdict::EndSessionForReuse,
        None if token.expires_at <= now => Verdict::Reject,
        None => Verdict::Accept,
    }
}

/// What a request does with an accepted refresh token.
#[derive(Debug, Clone, Copy)]
pub enum Redemption {
    /// Refresh: the token is replaced by its successor, valid until `expires_at`.
    Rotate { expires_at: i64 },
    /// Logout: the session ends.
    EndSession,
}

/// Why a session ended, as recorded in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    LogoutAll,
    Revoked,
    PasswordChanged,
    /// The password was set anew through a link mailed to the account's address.
    PasswordReset,
    RefreshTokenReused,
    Deactivated,
    /// Two-factor login was turned off: the other sessions may be a thief's.
    MfaDisabled,
    /// Ended through the admin API or an operator's command.
    Admin,
    /// Presented past `--session-max-lifetime`.
    MaxAge,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::LogoutAll => "logout_all",
            EndReason::Revoked => "revoked",
            EndReason::PasswordChanged => "password_changed",
            EndReason::PasswordReset => "password_reset",
            EndReason::RefreshTokenReused => "refresh_token_reused",
            EndReason::Deactivated => "deactivated",
            EndReason::MfaDisabled => "mfa_disabled",
            EndReason::Admin => "admin",
            EndReason::MaxAge => "max_age",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000;

    fn live() -> PresentedToken {
        PresentedToken {
            expires_at: NOW + 60,
            consumed_at: None,
            successor_is_live: false,
            session_created_at: NOW - 100,
            session_ended: false,
            user_active: true,
        }
    }

    fn consumed_just_now() -> PresentedToken {
        PresentedToken {
            consumed_at: Some(NOW - 2),
            successor_is_live: true,
            ..live()
        }
    }

    const NO_GRACE: SessionPolicy = SessionPolicy {
        retry_grace: 0,
        max_session_lifetime: None,
    };

    #[test]
    fn a_live_token_is_accepted() {
        assert_eq!(judge(&live(), &NO_GRACE, NOW), Verdict::Accept);
    }

    #[test]
    fn a_consumed_token_ends_its_session_even_when_expired() {
        let replayed = PresentedToken {
            expires_at: NOW - 1,
            ..consumed_just_now()
        };
        assert_eq!(
            judge(&replayed, &NO_GRACE, NOW),
            Verdict::EndSessionForReuse
        );
    }

    #[test]
    fn within_the_grace_the_token_consumed_last_is_answered_again() {
        let grace = SessionPolicy {
            retry_grace: 10,
            ..NO_GRACE
        };
        assert_eq!(judge(&consumed_just_now(), &grace, NOW), Verdict::Repeat);
        let late = PresentedToken {
            consumed_at: Some(NOW - 10),
            ..consumed_just_now()
        };
        assert_eq!(judge(&late, &grace, NOW), Verdict::EndSessionForReuse);
        let older = PresentedToken {
            successor_is_live: false,
            ..consumed_just_now()
        };
        assert_eq!(judge(&older, &grace, NOW), Verdict::EndSessionForReuse);
    }

    #[test]
    fn expired_ended_and_inactive_sessions_are_rejected_and_too_old_ones_end() {
        let policy = SessionPolicy {
            retry_grace: 0,
            max_session_lifetime: Some(100),
        };
        let cases = [
            PresentedToken {
                expires_at: NOW,
                ..live()
            },
            PresentedToken {
                session_ended: true,
                ..consumed_just_now()
            },
            PresentedToken {
                user_active: false,
                ..live()
            },
        ];
        let young_enough = SessionPolicy {
            max_session_lifetime: Some(1_000),
            ..policy
        };
        for token in cases {
            assert_eq!(
                judge(&token, &young_enough, NOW),
                Verdict::Reject,
                "{token:?}"
            );
        }
        let too_old = PresentedToken {
            session_created_at: NOW - 100,
            ..live()
        };
        assert_eq!(
            judge(&too_old, &policy, NOW),
            Verdict::EndSessionPastLifetime
        );
        assert_eq!(
            judge(
                &PresentedToken {
                    session_created_at: NOW - 99,
                    ..live()
                },
                &policy,
                NOW
            ),
            Verdict::Accept
        );
    }
}
