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

/// Seconds until every full bucket has a free slot again, if any is full. `counts` are the
/// stored `(key, window_start, hits)`.
pub fn wait(buckets: &[Bucket], counts: &[(String, i64, i64)], now: i64) -> Option<i64> {
    buckets
        .iter()
        .filter_map(|bucket| {
            let (_, window_start, hits) = counts.iter().find(|(key, _, _)| *key == bucket.key)?;
            let window_end = window_start + bucket.limit.window;
            (window_end > now && *hits >= bucket.limit.hits).then_some(window_end - now)
        })
        .max()
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
    fn a_full_bucket_waits_for_the_end_of_its_window() {
        let limit = RateLimit {
            hits: 3,
            window: 60,
        };
        let buckets = [
            Bucket::new("a", "x", Some(limit)).unwrap(),
            Bucket::new("b", "y", Some(limit)).unwrap(),
        ];
        let now = 1_000;
        let counts = |hits_a, start_a| {
            vec![
                ("a:x".to_owned(), start_a, hits_a),
                ("b:y".to_owned(), now - 50, 1),
            ]
        };
        assert_eq!(wait(&buckets, &counts(2, now - 10), now), None);
        assert_eq!(wait(&buckets, &counts(3, now - 10), now), Some(50));
        assert_eq!(
            wait(&buckets, &counts(9, now - 60), now),
            None,
            "the window has passed"
        );
        assert!(Bucket::new("c", "z", None).is_none());
    }
}
