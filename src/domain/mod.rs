//! The domain core: the identifiers, the profile, and the rules that need no storage and no
//! HTTP — refresh-token rotation, throttling limits, run-time settings, and the clock. It
//! depends on nothing else in the crate; every other layer may use it.

use serde::Serialize;
use uuid::Uuid;

pub mod audit;
pub mod clock;
pub mod keys;
pub mod links;
pub mod mfa;
pub mod sessions;
pub mod settings;
pub mod throttle;
pub mod vault;

pub type UserId = i64;

/// `N` bytes from the operating system's secure random source: every key, token, nonce and
/// code the service makes. Without one the service cannot be secure, so it stops.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    bytes
}
pub type SessionId = Uuid;

/// The SHA-256 of a refresh token: the only form in which one is stored, so a stolen database
/// yields no usable token.
pub type RefreshDigest = [u8; 32];

/// What `/api/me/` shows of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": 1, "username": "Ann Lee", "email": "ann@example.org"}))]
pub struct Profile {
    #[schema(value_type = i64)]
    pub id: UserId,
    pub username: String,
    pub email: String,
}
