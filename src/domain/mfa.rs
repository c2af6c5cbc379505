//! The second factor's rules: time-based one-time codes (TOTP, RFC 6238: HMAC-SHA1, 6 digits,
//! 30-second steps, one step of drift either way, each step accepted at most once), recovery
//! codes (single use, stored as digests), and how a session was authenticated (`amr`,
//! RFC 8176). Nothing here stores or sends anything.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// Seconds of one time step.
pub const STEP_SECONDS: i64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;
/// Steps of clock drift accepted either way: a code typed as it changes still works.
pub const DRIFT_STEPS: i64 = 1;
/// Recovery codes handed out at confirmation.
pub const RECOVERY_CODES: usize = 10;
/// The issuer an authenticator app shows beside the code.
pub const ISSUER: &str = "restful-auth";

/// The step a Unix time falls in.
pub fn step_of(now: i64) -> i64 {
    now.div_euclid(STEP_SECONDS)
}

/// A TOTP shared secret: 160 random bits (RFC 4226 §4 recommends the length of the HMAC's
/// output). Its `Debug` never shows it.
#[derive(Clone)]
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    pub fn generate() -> TotpSecret {
        TotpSecret(super::random_bytes::<20>().to_vec())
    }

    /// A secret as [`as_bytes`](Self::as_bytes) gave it; `None` if too short for RFC 4226.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<TotpSecret> {
        (bytes.len() >= 16).then_some(TotpSecret(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret as authenticator apps take it typed in: base32 (RFC 4648) without padding.
    pub fn base32(&self) -> String {
        self.totp().get_secret_base32()
    }

    /// The Key URI an authenticator app reads from a QR code (Google Authenticator's format):
    /// `otpauth://totp/<issuer>:<account>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
    pub fn otpauth_url(&self, account: &str) -> String {
        format!(
            "otpauth://totp/{ISSUER}:{}?secret={}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}\
             &period={STEP_SECONDS}",
            percent_encode(account),
            self.base32(),
        )
    }

    /// The code of `step`.
    pub fn code_at_step(&self, step: i64) -> String {
        let time = u64::try_from(step.saturating_mul(STEP_SECONDS)).unwrap_or_default();
        self.totp().generate(time)
    }

    /// The step whose code `code` is, among those within the drift of `now`, if it is later
    /// than `last_used` (a step is accepted at most once, and an earlier one after it would be
    /// an old code replayed). Every candidate is compared, in constant time, so the answer's
    /// timing tells nothing of which one matched or how much of it.
    pub fn accepted_step(&self, code: &str, now: i64, last_used: Option<i64>) -> Option<i64> {
        let current = step_of(now);
        let mut accepted = None;
        for step in current - DRIFT_STEPS..=current + DRIFT_STEPS {
            let expected = self.code_at_step(step);
            let matches: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
            if matches && last_used.is_none_or(|last| step > last) {
                accepted = Some(step);
            }
        }
        accepted
    }

    fn totp(&self) -> totp_rs::TOTP {
        // `new_unchecked`: the length was checked when the secret was made or read back.
        totp_rs::TOTP::new_unchecked(
            totp_rs::Algorithm::SHA1,
            DIGITS,
            0,
            STEP_SECONDS as u64,
            self.0.clone(),
        )
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// An account name in a Key URI's label: unreserved characters and `@` as they are, the rest
/// percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The SHA-256 of a recovery code's canonical form: the only form in which one is stored.
pub type RecoveryDigest = [u8; 32];

/// The alphabet of recovery codes: base32's, lower-case, with no 0/1/8/9 to mistake for O/I/L/B.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A recovery code: 80 random bits as `xxxx-xxxx-xxxx-xxxx`. As many bits as a refresh token
/// has would be hard to type; 80 keep a stolen digest beyond guessing all the same.
pub struct RecoveryCode(String);

impl RecoveryCode {
    pub fn generate() -> RecoveryCode {
        let bytes: [u8; 16] = super::random_bytes();
        let characters: Vec<char> = bytes
            .iter()
            .map(|byte| char::from(RECOVERY_ALPHABET[usize::from(byte % 32)]))
            .collect();
        let groups: Vec<String> = characters
            .chunks(4)
            .map(|group| group.iter().collect())
            .collect();
        RecoveryCode(groups.join("-"))
    }

    /// The code as handed to its owner, once.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> RecoveryDigest {
        recovery_digest(&self.0)
    }
}

/// The digest of a recovery code as typed: case, spaces and dashes do not matter.
pub fn recovery_digest(typed: &str) -> RecoveryDigest {
    let canonical: String = typed
        .chars()
        .filter(|character| !character.is_whitespace() && *character != '-')
        .flat_map(char::to_lowercase)
        .collect();
    Sha256::digest(canonical.as_bytes()).into()
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

/// How a session's login was authenticated: its access tokens' `amr` claim (RFC 8176).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Amr {
    /// The password alone.
    #[default]
    Password,
    /// The password and a one-time code (of the authenticator, or a recovery code).
    PasswordAndOtp,
}

impl Amr {
    /// The claim's values.
    pub fn methods(self) -> &'static [&'static str] {
        match self {
            Amr::Password => &["pwd"],
            Amr::PasswordAndOtp => &["pwd", "otp"],
        }
    }

    /// As a session row stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Amr::Password => "pwd",
            Amr::PasswordAndOtp => "pwd otp",
        }
    }

    /// A session row's value; anything unknown is the weakest.
    pub fn from_stored(stored: &str) -> Amr {
        match stored {
            "pwd otp" => Amr::PasswordAndOtp,
            _ => Amr::Password,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1: the test key is the ASCII of "12345678901234567890".
    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        // 8-digit vectors, of which a 6-digit code is the last six.
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(secret.code_at_step(step_of(time)), code[2..], "{time}");
        }
    }

    #[test]
    fn a_code_is_accepted_within_one_step_and_only_after_the_last_used() {
        let secret = TotpSecret::generate();
        let now = 1_000_000_000;
        let step = step_of(now);
        let code = |offset: i64| secret.code_at_step(step + offset);
        assert_eq!(secret.accepted_step(&code(0), now, None), Some(step));
        assert_eq!(secret.accepted_step(&code(-1), now, None), Some(step - 1));
        assert_eq!(secret.accepted_step(&code(1), now, None), Some(step + 1));
        assert_eq!(secret.accepted_step(&code(2), now, None), None);
        assert_eq!(secret.accepted_step(&code(-2), now, None), None);
        assert_eq!(secret.accepted_step(&code(0), now, Some(step)), None);
        assert_eq!(secret.accepted_step(&code(-1), now, Some(step)), None);
        assert_eq!(secret.accepted_step("12345", now, None), None);
    }

    #[test]
    fn a_recovery_code_reads_back_whatever_its_case_and_dashes() {
        let code = RecoveryCode::generate();
        assert_eq!(code.reveal().len(), 19);
        let squeezed = code.reveal().replace('-', "").to_uppercase();
        assert_eq!(recovery_digest(&squeezed), code.digest());
        assert_ne!(RecoveryCode::generate().digest(), code.digest());
        assert!(!format!("{code:?}").contains(code.reveal()));
    }

    #[test]
    fn the_key_uri_names_the_issuer_and_the_account() {
        let secret = TotpSecret::from_bytes(vec![0; 20]).unwrap();
        assert_eq!(
            secret.otpauth_url("ann+x@example.org"),
            "otpauth://totp/restful-auth:ann%2Bx@example.org?secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\
             &issuer=restful-auth&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            Amr::from_stored(Amr::PasswordAndOtp.as_str()),
            Amr::PasswordAndOtp
        );
    }
}
