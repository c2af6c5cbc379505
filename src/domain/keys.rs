//! Signing keys' life: a key is published before it signs, signs while it is the newest key
//! in force, verifies the tokens it signed until they expire, and is refused at once once
//! retired. Decided here from each key's schedule and the time, for every store and instance.

use std::fmt;
use std::str::FromStr;

/// The algorithms an access token may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum SigningAlgorithm {
    /// Ed25519 (RFC 8037): small keys and signatures, any JOSE library verifies it.
    #[value(name = "EdDSA")]
    EdDSA,
    /// ECDSA with P-256 and SHA-256.
    #[value(name = "ES256")]
    ES256,
    /// HMAC with SHA-256: a shared secret, so only this service can verify its tokens.
    #[value(name = "HS256")]
    HS256,
}

impl SigningAlgorithm {
    /// The name JOSE gives it (`alg`), also how it is stored.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::HS256 => "HS256",
        }
    }

    /// Whether its verifying key may be published: only the asymmetric ones.
    pub fn is_public(self) -> bool {
        self != SigningAlgorithm::HS256
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        [
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::ES256,
            SigningAlgorithm::HS256,
        ]
        .into_iter()
        .find(|algorithm| algorithm.name() == name)
        .ok_or_else(|| format!("unknown signing algorithm {name:?}"))
    }
}

/// When a key signs and until when it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySchedule {
    pub created_at: i64,
    /// From when it signs (if it is then the newest key in force); published before.
    pub activates_at: i64,
    /// From when nothing it signed verifies.
    pub retired_at: Option<i64>,
}

/// Where a key is in its life at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet: downstream caches learn it before its first token.
    Next,
    /// Signs new tokens.
    Current,
    /// Superseded: verifies the tokens it signed until housekeeping deletes it.
    Retiring,
    /// Refused: nothing it signed verifies, and it is no longer published.
    Retired,
}

impl KeyState {
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Current => "current",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }

    /// Whether tokens signed with the key verify (and the key is published).
    pub fn verifies(self) -> bool {
        self != KeyState::Retired
    }
}

impl KeySchedule {
    /// Whether the key may sign at `now`: activated and not retired.
    pub fn in_force(&self, now: i64) -> bool {
        self.retired_at.is_none_or(|retired| retired > now) && self.activates_at <= now
    }
}

/// The state of each key at `now`: the current one is the key in force that activated last
/// (the later created on a tie).
pub fn states(keys: &[KeySchedule], now: i64) -> Vec<KeyState> {
    let current = keys
        .iter()
        .enumerate()
        .filter(|(_, key)| key.in_force(now))
        .max_by_key(|(_, key)| (key.activates_at, key.created_at))
        .map(|(index, _)| index);
    keys.iter()
        .enumerate()
        .map(|(index, key)| match key.retired_at {
            Some(retired) if retired <= now => KeyState::Retired,
            _ if Some(index) == current => KeyState::Current,
            _ if key.activates_at > now => KeyState::Next,
            _ => KeyState::Retiring,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(created_at: i64, activates_at: i64, retired_at: Option<i64>) -> KeySchedule {
        KeySchedule {
            created_at,
            activates_at,
            retired_at,
        }
    }

    #[test]
    fn a_rotated_key_is_next_until_it_activates_then_current() {
        let keys = [key(0, 0, None), key(100, 700, None)];
        use KeyState::*;
        assert_eq!(states(&keys, 100), [Current, Next]);
        assert_eq!(states(&keys, 699), [Current, Next]);
        assert_eq!(states(&keys, 700), [Retiring, Current]);
    }

    #[test]
    fn a_retired_key_never_signs_and_the_newest_in_force_does() {
        use KeyState::*;
        let keys = [key(0, 0, None), key(100, 100, Some(200))];
        assert_eq!(states(&keys, 150), [Retiring, Current]);
        assert_eq!(states(&keys, 200), [Current, Retired]);
        // Activated in the same second: the later created signs.
        let keys = [key(5, 10, None), key(6, 10, None)];
        assert_eq!(states(&keys, 10), [Retiring, Current]);
    }

    #[test]
    fn algorithms_read_back_from_their_names() {
        for algorithm in [
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::ES256,
            SigningAlgorithm::HS256,
        ] {
            assert_eq!(algorithm.name().parse(), Ok(algorithm));
        }
        assert!("none".parse::<SigningAlgorithm>().is_err());
    }
}
