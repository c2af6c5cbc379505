//! Settings that change while the service runs: token lifetimes and session rules. They are
//! kept in the database, so one `restful-auth settings set …` reaches every instance, each of
//! which reloads them every few seconds; a flag gives each one's value until it is set.

use std::fmt;
use std::str::FromStr;

use super::sessions::SessionPolicy;

/// The values in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Seconds an access token lives.
    pub access: i64,
    /// Seconds a refresh token lives from its issue.
    pub refresh: i64,
    pub session: SessionPolicy,
}

/// A setting that can be changed at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    AccessTokenLifetime,
    RefreshTokenLifetime,
    RefreshRetryGrace,
    SessionMaxLifetime,
}

const DAY: i64 = 24 * 3600;

impl Setting {
    pub const ALL: [Setting; 4] = [
        Setting::AccessTokenLifetime,
        Setting::RefreshTokenLifetime,
        Setting::RefreshRetryGrace,
        Setting::SessionMaxLifetime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Setting::AccessTokenLifetime => "access-token-lifetime",
            Setting::RefreshTokenLifetime => "refresh-token-lifetime",
            Setting::RefreshRetryGrace => "refresh-retry-grace",
            Setting::SessionMaxLifetime => "session-max-lifetime",
        }
    }

    /// The accepted range in seconds, and whether `off` (no limit) is accepted.
    fn bounds(self) -> (i64, i64, bool) {
        match self {
            Setting::AccessTokenLifetime => (1, DAY, false),
            Setting::RefreshTokenLifetime => (60, 365 * DAY, false),
            // RFC 9700 asks for a short window: a long one lets a stolen token be replayed.
            Setting::RefreshRetryGrace => (0, 60, false),
            Setting::SessionMaxLifetime => (60, 10 * 365 * DAY, true),
        }
    }

    /// Checks a value as a person writes it (`60s`, `30days`, `off`) and gives the form the
    /// database keeps: whole seconds, or `off`.
    pub fn parse(self, value: &str) -> Result<String, String> {
        let (min, max, off_allowed) = self.bounds();
        let value = value.trim();
        if value.eq_ignore_ascii_case("off") {
            return if off_allowed {
                Ok("off".into())
            } else {
                Err(format!("{} cannot be off", self.name()))
            };
        }
        let seconds = if value == "0" {
            0
        } else {
            let duration = humantime::parse_duration(value).map_err(|error| {
                format!("{}: {value:?} is not a duration ({error})", self.name())
            })?;
            i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
        };
        if seconds < min || seconds > max {
            return Err(format!(
                "{} must be between {} and {}",
                self.name(),
                humantime::format_duration(std::time::Duration::from_secs(min as u64)),
                humantime::format_duration(std::time::Duration::from_secs(max as u64)),
            ));
        }
        Ok(seconds.to_string())
    }

    fn apply(self, stored: &str, lifetimes: &mut Lifetimes) {
        let seconds = stored.parse::<i64>().ok();
        match (self, seconds) {
            (Setting::AccessTokenLifetime, Some(seconds)) => lifetimes.access = seconds,
            (Setting::RefreshTokenLifetime, Some(seconds)) => lifetimes.refresh = seconds,
            (Setting::RefreshRetryGrace, Some(seconds)) => lifetimes.session.retry_grace = seconds,
            (Setting::SessionMaxLifetime, seconds) => {
                lifetimes.session.max_session_lifetime = seconds
            }
            (_, None) => {
                tracing::warn!(setting = self.name(), "ignoring an unreadable stored value")
            }
        }
    }
}

impl FromStr for Setting {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Setting::ALL
            .into_iter()
            .find(|setting| setting.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Setting::ALL.iter().map(|setting| setting.name()).collect();
                format!(
                    "unknown setting {name:?}; the settings are {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Lifetimes {
    /// `defaults` with every stored setting applied; unknown names are ignored.
    pub fn with_stored(mut self, stored: &[(String, String)]) -> Lifetimes {
        for (name, value) in stored {
            if let Ok(setting) = name.parse::<Setting>() {
                setting.apply(value, &mut self);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Lifetimes {
        Lifetimes {
            access: 30,
            refresh: 30 * DAY,
            session: SessionPolicy::default(),
        }
    }

    #[test]
    fn values_are_checked_and_kept_as_seconds() {
        assert_eq!(Setting::AccessTokenLifetime.parse("1m").unwrap(), "60");
        assert_eq!(Setting::RefreshRetryGrace.parse("0").unwrap(), "0");
        assert_eq!(Setting::SessionMaxLifetime.parse("off").unwrap(), "off");
        assert!(Setting::AccessTokenLifetime.parse("0s").is_err());
        assert!(Setting::AccessTokenLifetime.parse("2days").is_err());
        assert!(Setting::RefreshRetryGrace.parse("61s").is_err());
        assert!(Setting::RefreshTokenLifetime.parse("off").is_err());
        assert!(Setting::AccessTokenLifetime.parse("soon").is_err());
        assert!("no-such-setting".parse::<Setting>().is_err());
    }

    #[test]
    fn stored_values_override_the_defaults() {
        let stored = [
            ("access-token-lifetime".to_owned(), "60".to_owned()),
            ("refresh-retry-grace".to_owned(), "5".to_owned()),
            ("session-max-lifetime".to_owned(), "3600".to_owned()),
            ("something-else".to_owned(), "1".to_owned()),
        ];
        let lifetimes = defaults().with_stored(&stored);
        assert_eq!(lifetimes.access, 60);
        assert_eq!(lifetimes.refresh, 30 * DAY);
        assert_eq!(lifetimes.session.retry_grace, 5);
        assert_eq!(lifetimes.session.max_session_lifetime, Some(3600));
        let off = [("session-max-lifetime".to_owned(), "off".to_owned())];
        assert_eq!(
            lifetimes.with_stored(&off).session.max_session_lifetime,
            None
        );
    }
}
