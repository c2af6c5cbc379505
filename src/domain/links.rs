//! One-time links mailed to an account's address: a password reset, or the proof that the
//! address is the owner's. The token a link carries is stored only as its SHA-256, is used
//! once, expires, and is replaced by the account's next link of the same purpose.

use super::audit::EventName;

/// The SHA-256 of a link's token: the only form in which one is stored.
pub type LinkDigest = [u8; 32];

/// What a link is for. An account has at most one live link of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    PasswordReset,
    EmailVerification,
}

impl Purpose {
    /// As stored (`one_time_tokens.purpose`).
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "password-reset",
            Purpose::EmailVerification => "email-verification",
        }
    }

    /// The event a link of this purpose being sent records.
    pub fn requested_event(self) -> EventName {
        match self {
            Purpose::PasswordReset => EventName::PasswordResetRequested,
            Purpose::EmailVerification => EventName::EmailVerificationRequested,
        }
    }

    /// The page of the service that reads the link's token from its fragment.
    pub fn page(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "/reset/",
            Purpose::EmailVerification => "/verify/",
        }
    }
}

/// Whom a link goes to: the account, and the address it was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: super::UserId,
    pub email: String,
}
