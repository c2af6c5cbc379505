//! The rules of refresh-token rotation (RFC 9700 §4.14): a token is used once; a consumed token
//! presented again means two parties hold the session, so the whole session ends.

use super::tokens::RefreshDigest;

/// What the store knows of a presented refresh token, read in the transaction that acts on it.
#[derive(Debug, Clone, Copy)]
pub struct PresentedToken {
    pub expires_at: i64,
    pub consumed: bool,
    pub session_ended: bool,
    pub user_active: bool,
}

/// What the store must do with a presented token, decided by [`judge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: consume it and carry out the request (rotate, or end the session on logout).
    Accept,
    /// Not usable; nothing changes.
    Reject,
    /// Already consumed: someone replays it, so its session ends.
    EndSessionForReuse,
}

pub fn judge(token: &PresentedToken, now: i64) -> Verdict {
    if token.session_ended {
        Verdict::Reject
    } else if token.consumed {
        Verdict::EndSessionForReuse
    } else if token.expires_at <= now || !token.user_active {
        Verdict::Reject
    } else {
        Verdict::Accept
    }
}

/// What a request does with an accepted refresh token.
#[derive(Debug, Clone, Copy)]
pub enum Redemption {
    /// Refresh: the token is replaced by `next`, valid until `expires_at`.
    Rotate {
        next: RefreshDigest,
        expires_at: i64,
    },
    /// Logout: the session ends.
    EndSession,
}

/// Why a session ended, as recorded in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    RefreshTokenReused,
    Deactivated,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::RefreshTokenReused => "refresh_token_reused",
            EndReason::Deactivated => "deactivated",
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
            consumed: false,
            session_ended: false,
            user_active: true,
        }
    }

    #[test]
    fn a_live_token_is_accepted() {
        assert_eq!(judge(&live(), NOW), Verdict::Accept);
    }

    #[test]
    fn a_consumed_token_ends_its_session_even_when_expired() {
        let replayed = PresentedToken {
            consumed: true,
            expires_at: NOW - 1,
            ..live()
        };
        assert_eq!(judge(&replayed, NOW), Verdict::EndSessionForReuse);
    }

    #[test]
    fn expired_ended_and_inactive_tokens_are_rejected() {
        let cases = [
            PresentedToken {
                expires_at: NOW,
                ..live()
            },
            PresentedToken {
                session_ended: true,
                consumed: true,
                ..live()
            },
            PresentedToken {
                user_active: false,
                ..live()
            },
        ];
        for token in cases {
            assert_eq!(judge(&token, NOW), Verdict::Reject, "{token:?}");
        }
    }
}
