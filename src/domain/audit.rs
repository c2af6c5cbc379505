//! The audit log's vocabulary: who acted ([`Actor`], [`Origin`]), what happened ([`EventName`])
//! and the row that records it ([`Event`]). Stores write an event in the transaction of the
//! change it records; nothing here holds a secret, a token or a password.

use serde::Serialize;
use serde_json::{Value, json};

use super::sessions::EndReason;
use super::{SessionId, UserId};

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    /// The account's owner, or someone presenting its credentials or tokens.
    User,
    /// The admin API.
    Admin,
    /// The service on its own (housekeeping, start-up).
    System,
    /// An operator's command line.
    Cli,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::User => "user",
            Actor::Admin => "admin",
            Actor::System => "system",
            Actor::Cli => "cli",
        }
    }
}

/// Where a request came from: recorded with the session it starts and the events it causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub actor: Actor,
    pub ip: Option<String>,
    /// Bounded by whoever builds the origin (the client fills it).
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Origin {
    /// A change with no request behind it.
    pub const fn of(actor: Actor) -> Origin {
        Origin {
            actor,
            ip: None,
            user_agent: None,
            request_id: None,
        }
    }
}

macro_rules! event_names {
    ($($variant:ident = $name:literal,)*) => {
        /// What an audit event records; each has exactly one name in the log.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventName {
            $($variant,)*
        }

        impl EventName {
            pub const ALL: &[EventName] = &[$(EventName::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventName::$variant => $name,)*
                }
            }
        }
    };
}

event_names! {
    UserRegistered = "user.registered",
    LoginSucceeded = "login.succeeded",
    LoginFailed = "login.failed",
    LoginThrottled = "login.throttled",
    RefreshReused = "refresh.reused",
    SessionEnded = "session.ended",
    PasswordChanged = "password.changed",
    // Set by an operator, or through a mailed link; the owner's own change is
    // `password.changed`.
    PasswordReset = "password.reset",
    ProfileUpdated = "profile.updated",
    UserDeactivated = "user.deactivated",
    UserActivated = "user.activated",
    UserDeleted = "user.deleted",
    ThrottleCleared = "throttle.cleared",
    KeyRotated = "key.rotated",
    KeyRetired = "key.retired",
    PasswordResetRequested = "password.reset_requested",
    EmailVerificationRequested = "email.verification_requested",
    EmailVerified = "email.verified",
    MfaEnabled = "mfa.enabled",
    MfaDisabled = "mfa.disabled",
    MfaRecoveryCodeUsed = "mfa.recovery_code_used",
}

impl std::str::FromStr for EventName {
    type Err = String;

    fn from_str(name: &str) -> Result<EventName, String> {
        EventName::ALL
            .iter()
            .copied()
            .find(|event| event.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = EventName::ALL.iter().map(|event| event.as_str()).collect();
                format!(
                    "no event is named {name:?}; the names are {}",
                    known.join(", ")
                )
            })
    }
}

impl Serialize for EventName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a login failed, as the log says it (the client is told only that it failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// Unknown email or wrong password.
    BadCredentials,
    Inactive,
    /// The password changed, or the account was deactivated, while the login was checked.
    Superseded,
    /// The password was right, but `--require-verified-email` holds an unverified address.
    EmailNotVerified,
    /// The password was right, but the account needs a one-time code and none was sent.
    MfaRequired,
    /// The password was right, the one-time code wrong, used before, or out of its window.
    MfaInvalid,
}

impl LoginFailure {
    fn as_str(self) -> &'static str {
        match self {
            LoginFailure::BadCredentials => "bad_credentials",
            LoginFailure::Inactive => "inactive",
            LoginFailure::Superseded => "superseded",
            LoginFailure::EmailNotVerified => "email_not_verified",
            LoginFailure::MfaRequired => "mfa_required",
            LoginFailure::MfaInvalid => "mfa_invalid",
        }
    }
}

/// Events recorded within this many seconds of a row with the same [`Event::fold`] key add
/// to its count instead of adding a row: a flood of failures is a few rows a minute.
pub const FOLD_WINDOW: i64 = 60;

/// One row of the audit log, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: EventName,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    /// A small JSON object, or `null`.
    pub detail: Value,
    /// Events with the same key within [`FOLD_WINDOW`] are one row with a `count` in its
    /// detail.
    pub fold: Option<String>,
}

impl Event {
    fn new(name: EventName, user_id: Option<UserId>) -> Event {
        Event {
            name,
            user_id,
            session_id: None,
            detail: Value::Null,
            fold: None,
        }
    }

    pub fn in_session(mut self, session_id: SessionId) -> Event {
        self.session_id = Some(session_id);
        self
    }

    pub fn with_detail(mut self, detail: Value) -> Event {
        self.detail = detail;
        self
    }

    pub fn about(name: EventName, user_id: UserId) -> Event {
        Event::new(name, Some(user_id))
    }

    pub fn login_succeeded(user_id: UserId, session_id: SessionId) -> Event {
        Event::about(EventName::LoginSucceeded, user_id).in_session(session_id)
    }

    /// A failed login from `address` (the network throttling counts), against the account of
    /// `user_id` if there is one. Failures against unknown emails from one address fold
    /// together: the email is not recorded, as a password typed into its field would be.
    pub fn login_failed(
        user_id: Option<UserId>,
        address: Option<&str>,
        why: LoginFailure,
    ) -> Event {
        let mut event = Event::login_refused(EventName::LoginFailed, user_id, address)
            .with_detail(json!({"reason": why.as_str(), "count": 1}));
        // Failures for different reasons stay apart, so each row's reason holds for its count.
        if let Some(fold) = &mut event.fold {
            fold.push(' ');
            fold.push_str(why.as_str());
        }
        event
    }

    /// A login refused by the throttle before its password was looked at. Throttled logins
    /// fold by account alone (unknown emails all together), whatever their address: the
    /// throttle refuses a guesser at every address they turn to, and addresses are theirs to
    /// multiply (an IPv6 /48 holds 65536 networks), so with the address in the key every
    /// refused guess, which costs the service no hash, would add a row. The row keeps the
    /// address of the first.
    pub fn login_throttled(user_id: Option<UserId>) -> Event {
        Event::login_refused(EventName::LoginThrottled, user_id, None)
            .with_detail(json!({"count": 1}))
    }

    fn login_refused(name: EventName, user_id: Option<UserId>, address: Option<&str>) -> Event {
        let account = user_id.map_or_else(|| "-".to_owned(), |id| id.to_string());
        let mut event = Event::new(name, user_id);
        event.fold = Some(format!(
            "{} {account} {}",
            name.as_str(),
            address.unwrap_or("-")
        ));
        event
    }

    /// A consumed refresh token came back, and its session ended.
    fn refresh_reused(user_id: UserId, session_id: SessionId) -> Event {
        Event::about(EventName::RefreshReused, user_id)
            .in_session(session_id)
            .with_detail(json!({"session_ended": true}))
    }

    /// A presented refresh token ended its session: a replay (`refresh.reused`), or a session
    /// past its absolute lifetime (`session.ended`).
    pub fn redeem_ended(user_id: UserId, session_id: SessionId, reason: EndReason) -> Event {
        match reason {
            EndReason::RefreshTokenReused => Event::refresh_reused(user_id, session_id),
            reason => Event::session_ended(user_id, session_id, reason),
        }
    }

    pub fn session_ended(user_id: UserId, session_id: SessionId, reason: EndReason) -> Event {
        Event::about(EventName::SessionEnded, user_id)
            .in_session(session_id)
            .with_detail(Event::end_detail(reason))
    }

    /// The detail of a `session.ended`.
    pub fn end_detail(reason: EndReason) -> Value {
        json!({"reason": reason.as_str()})
    }

    /// An account's activation changed.
    pub fn activation(user_id: UserId, active: bool) -> Event {
        let name = if active {
            EventName::UserActivated
        } else {
            EventName::UserDeactivated
        };
        Event::about(name, user_id)
    }

    /// Fields of the profile changed: named, their values are not recorded.
    pub fn profile_updated(user_id: UserId, fields: &[&str]) -> Event {
        Event::about(EventName::ProfileUpdated, user_id).with_detail(json!({"fields": fields}))
    }

    pub fn key(name: EventName, kid: &str, algorithm: &str) -> Event {
        Event::new(name, None).with_detail(json!({"kid": kid, "algorithm": algorithm}))
    }
}

/// A row of the audit log as stored, and as the admin API and the command line show it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = AuditEvent, example = json!({
    "id": 412,
    "time": "2026-05-04T09:12:44Z",
    "event": "session.ended",
    "user_id": 7,
    "session_id": "0b6f9a54-5d43-4b6e-a1c9-3f0e7d2a8b11",
    "actor": "admin",
    "ip": "203.0.113.7",
    "user_agent": "backoffice/2.1",
    "request_id": "6c1f0c9e-3f4b-4a51-9d7e-0b8f2f3c1a22",
    "detail": {"reason": "admin"}
}))]
pub struct Recorded {
    /// Increasing: `?after=` a row's id pages to older rows.
    pub id: i64,
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub time: i64,
    pub event: String,
    #[schema(value_type = Option<i64>)]
    pub user_id: Option<UserId>,
    #[schema(value_type = Option<String>, format = "uuid")]
    pub session_id: Option<SessionId>,
    /// `user`, `admin`, `system` or `cli`.
    pub actor: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// A small JSON object, or `null`.
    #[schema(value_type = Object)]
    pub detail: Value,
}

fn as_rfc3339<S: serde::Serializer>(time: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&super::clock::rfc3339(*time))
}

/// Which rows of the log to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub user_id: Option<UserId>,
    pub event: Option<EventName>,
    /// Only rows at or after this time.
    pub since: Option<i64>,
    /// Only rows older than this id (the cursor of the page before).
    pub before: Option<i64>,
    pub limit: u32,
}

/// The most rows one read of the log returns.
pub const MAX_PAGE: u32 = 100;

impl AuditQuery {
    /// The conditions of the query, each with its value, for a store to put in its own SQL:
    /// only those asked for, so the database uses the index that fits.
    pub fn filters(&self) -> Vec<(AuditFilter, i64)> {
        [
            self.user_id.map(|id| (AuditFilter::User, id)),
            self.since.map(|since| (AuditFilter::Since, since)),
            self.before.map(|id| (AuditFilter::Before, id)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// A condition on the log's integer columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFilter {
    User,
    Since,
    Before,
}

impl AuditFilter {
    /// The column and comparison, as both backends write it.
    pub fn condition(self) -> &'static str {
        match self {
            AuditFilter::User => "user_id =",
            AuditFilter::Since => "time >=",
            AuditFilter::Before => "id <",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_name_reads_back_as_itself() {
        for event in EventName::ALL {
            assert_eq!(event.as_str().parse::<EventName>(), Ok(*event));
        }
        assert!("login.maybe".parse::<EventName>().is_err());
    }

    #[test]
    fn failed_logins_fold_by_account_and_address_and_never_by_the_email_typed() {
        let known = Event::login_failed(Some(7), Some("203.0.113.0"), LoginFailure::BadCredentials);
        let other_address =
            Event::login_failed(Some(7), Some("198.51.100.0"), LoginFailure::Inactive);
        let unknown = Event::login_failed(None, Some("203.0.113.0"), LoginFailure::BadCredentials);
        assert_ne!(known.fold, other_address.fold);
        assert_ne!(known.fold, unknown.fold);
        assert_eq!(known.detail["reason"], "bad_credentials");
        let throttled = Event::login_throttled(Some(7));
        assert_ne!(throttled.fold, known.fold);
        assert_ne!(throttled.fold, Event::login_throttled(None).fold);
    }
}
