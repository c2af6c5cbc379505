//! Throttling of login and registration (OWASP ASVS V2.2.1): fixed-window counters kept in the
//! database, so every instance sees every attempt.

use std::fmt;
use std::str::FromStr;

/// At most `hits` per `window` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub hits: i64,
    pub window: i64,
}

impl FromStr for RateLimit {
    type Err = String;

    /// `5/5m`: five per five minutes.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (hits, window) = value
            .split_once('/')
            .ok_or_else(|| format!("{value:?} is not a limit like 5/5m or off"))?;
        let hits = hits
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|hits| *hits > 0)
            .ok_or_else(|| format!("{value:?}: the count must be a positive number"))?;
        let window = humantime::parse_duration(window.trim())
            .map_err(|error| format!("{value:?}: {error}"))?
            .as_secs();
        if window == 0 {
            return Err(format!("{value:?}: the window must be at least a second"));
        }
        Ok(RateLimit {
            hits,
            window: i64::try_from(window).unwrap_or(i64::MAX / 2),
        })
    }
}

impl RateLimit {
    /// An attempt took a bucket to `hits` in the window that started at `window_start`: if
    /// that is past the limit, the seconds until the window ends (at least one).
    pub fn wait_after(&self, window_start: i64, hits: i64, now: i64) -> Option<i64> {
        (hits > self.hits).then(|| (window_start + self.window - now).max(1))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.hits, self.window)
    }
}

/// The limits in force; `None` switches one off.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThrottlePolicy {
    /// Failed logins per account: slows guessing one account's password.
    pub login_failures_per_account: Option<RateLimit>,
    /// Failed logins per client address: slows guessing across accounts.
    pub login_failures_per_ip: Option<RateLimit>,
    /// Registrations per client address: slows mass account creation.
    pub registrations_per_ip: Option<RateLimit>,
}

/// A bucket to check, and the limit that applies to it.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub key: String,
    pub limit: RateLimit,
}

impl Bucket {
    pub fn new(kind: &str, subject: &str, limit: Option<RateLimit>) -> Option<Bucket> {
        limit.map(|limit| Bucket {
            key: format!("{kind}:{subject}"),
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_count_per_duration() {
        assert_eq!(
            "5/5m".parse::<RateLimit>(),
            Ok(RateLimit {
                hits: 5,
                window: 300
            })
        );
        assert_eq!("30 / 1h".parse::<RateLimit>().unwrap().window, 3600);
        for bad in ["5", "0/1m", "-1/1m", "5/0s", "x/1m", "5/soon"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_attempt_past_the_limit_waits_for_the_end_of_its_window() {
        let limit = RateLimit {
            hits: 3,
            window: 60,
        };
        let now = 1_000;
        assert_eq!(
            limit.wait_after(now - 10, 3, now),
            None,
            "the third of three"
        );
        assert_eq!(limit.wait_after(now - 10, 4, now), Some(50));
        assert_eq!(
            limit.wait_after(now - 60, 4, now),
            Some(1),
            "a window ending now still makes the client wait a second"
        );
        assert!(Bucket::new("c", "z", None).is_none());
    }
}
