//! Throttling of login and registration (OWASP ASVS V2.2.1): fixed-window counters kept in the
//! database, so every instance sees every attempt.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::UserId;

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
///
/// Logins follow OWASP's "device cookie" idea, with the client's address as the device: an
/// address that has logged into an account is held only by its own failures on that account,
/// so strangers guessing an account's password cannot lock its owner out.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThrottlePolicy {
    /// Failed logins per account from one address: slows guessing one account's password, and
    /// is all that holds an address the account knows.
    pub login_failures_per_account_address: Option<RateLimit>,
    /// Failed logins per account from addresses it does not know, all together: slows a
    /// guesser who changes address, without touching the owner's known addresses.
    pub login_failures_per_account: Option<RateLimit>,
    /// Failed logins per client address across accounts: slows credential stuffing.
    pub login_failures_per_ip: Option<RateLimit>,
    /// Wrong one-time codes after the right password, per account from one address and per
    /// account from the addresses it does not know: slows guessing a code (a million of
    /// them, three valid at a time) once the password is known, with the same shelter for
    /// the owner's known addresses as the login limits.
    pub otp_failures_per_account: Option<RateLimit>,
    /// Registrations per client address: slows mass account creation.
    pub registrations_per_ip: Option<RateLimit>,
    /// Invalid or replayed refresh tokens per client address (refresh and logout).
    pub invalid_refresh_tokens_per_ip: Option<RateLimit>,
    /// Seconds an address stays known to an account after its last successful login there.
    pub known_address_lifetime: i64,
    pub prefixes: AddressPrefixes,
}

/// How many leading bits of a client address make one throttled "address": an IPv6 host is
/// handed a whole /64, so counting its single addresses would give it 2^64 buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPrefixes {
    pub v4: u8,
    pub v6: u8,
}

impl Default for AddressPrefixes {
    fn default() -> Self {
        AddressPrefixes { v4: 32, v6: 64 }
    }
}

impl AddressPrefixes {
    /// The network `ip` is counted under, e.g. `2001:db8:1:2::/64` or `203.0.113.7/32`; text
    /// that is not an address is counted as itself.
    pub fn network_of(&self, ip: &str) -> String {
        match ip.parse::<IpAddr>() {
            Ok(address) => self.network_of_address(address),
            Err(_) => ip.to_owned(),
        }
    }

    /// [`network_of`](Self::network_of) for an address already parsed.
    pub fn network_of_address(&self, address: IpAddr) -> String {
        let network = match address {
            IpAddr::V4(v4) => Ipv4Net::new(v4, self.v4.min(32)).map(IpNet::from),
            IpAddr::V6(v6) => Ipv6Net::new(v6, self.v6.min(128)).map(IpNet::from),
        };
        network.map_or_else(
            |_| address.to_string(),
            |network| network.trunc().to_string(),
        )
    }
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
            key: key(kind, subject),
            limit,
        })
    }
}

fn key(kind: &str, subject: &str) -> String {
    format!("{kind}:{subject}")
}

/// Failed logins into one account from one address.
pub const LOGIN_ACCOUNT_ADDRESS: &str = "login-account-ip";
/// Failed logins into one account from the addresses it does not know.
pub const LOGIN_ACCOUNT: &str = "login-account";
/// Wrong old passwords given to one account's password change.
pub const PASSWORD_CHANGE: &str = "password-change";

/// What [`LOGIN_ACCOUNT_ADDRESS`] counts under: the account's email key and the address.
pub fn account_address(email_key: &str, address: Option<&str>) -> String {
    format!("{email_key} {}", address.unwrap_or("-"))
}

/// Every bucket that holds one account back, from any address: the keys of its own buckets,
/// and the prefixes of those it has one of per address. An administrator clears them to let
/// a locked-out owner in at once; the address's own count across accounts is not the
/// account's, and stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBuckets {
    pub keys: Vec<String>,
    pub prefixes: Vec<String>,
}

impl AccountBuckets {
    pub fn of(email_key: &str, user_id: UserId) -> AccountBuckets {
        AccountBuckets {
            keys: vec![
                key(LOGIN_ACCOUNT, email_key),
                key(PASSWORD_CHANGE, &user_id.to_string()),
            ],
            // The email key ends at the space: `ann@x.org ` is no prefix of `ann@x.org.evil …`.
            prefixes: vec![key(LOGIN_ACCOUNT_ADDRESS, &format!("{email_key} "))],
        }
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

    #[test]
    fn an_account_s_buckets_are_its_own_from_every_address_and_no_other_account_s() {
        let limit = Some(RateLimit {
            hits: 5,
            window: 60,
        });
        let buckets = AccountBuckets::of("ann@x.org", 7);
        let held = |key: &str| {
            buckets.keys.iter().any(|own| own == key)
                || buckets
                    .prefixes
                    .iter()
                    .any(|prefix| key.starts_with(prefix.as_str()))
        };
        for (kind, subject) in [
            (LOGIN_ACCOUNT, "ann@x.org".to_owned()),
            (
                LOGIN_ACCOUNT_ADDRESS,
                account_address("ann@x.org", Some("203.0.113.7/32")),
            ),
            (LOGIN_ACCOUNT_ADDRESS, account_address("ann@x.org", None)),
            (PASSWORD_CHANGE, "7".to_owned()),
        ] {
            assert!(
                held(&Bucket::new(kind, &subject, limit).unwrap().key),
                "{kind} {subject}"
            );
        }
        for (kind, subject) in [
            (LOGIN_ACCOUNT, "ann@x.org.evil".to_owned()),
            (
                LOGIN_ACCOUNT_ADDRESS,
                account_address("ann@x.org.evil", Some("203.0.113.7/32")),
            ),
            (PASSWORD_CHANGE, "70".to_owned()),
            ("login-ip", "203.0.113.7/32".to_owned()),
        ] {
            assert!(
                !held(&Bucket::new(kind, &subject, limit).unwrap().key),
                "{kind} {subject}"
            );
        }
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_slash_64_and_an_ipv4_host_alone() {
        let prefixes = AddressPrefixes::default();
        assert_eq!(
            prefixes.network_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            prefixes.network_of("2001:db8:1:2::1"),
            prefixes.network_of("2001:db8:1:2:ffff::9")
        );
        assert_ne!(
            prefixes.network_of("2001:db8:1:2::1"),
            prefixes.network_of("2001:db8:1:3::1")
        );
        assert_eq!(prefixes.network_of("203.0.113.7"), "203.0.113.7/32");
        let wide = AddressPrefixes { v4: 24, v6: 48 };
        assert_eq!(wide.network_of("203.0.113.7"), "203.0.113.0/24");
        assert_eq!(wide.network_of("2001:db8:1:2::1"), "2001:db8:1::/48");
        assert_eq!(prefixes.network_of("not an address"), "not an address");
    }
}
