//! Passwords: Django's four validators with their exact messages, and Argon2id hashing run off
//! the async runtime through a bounded pool, so a login flood cannot starve cheap requests.

use std::fmt;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Longest password accepted: hashing cost grows with length, so it is bounded.
pub const MAX_LEN: usize = 1024;

/// A password as typed; its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(password: String) -> Password {
        Password(password)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Django's default `AUTH_PASSWORD_VALIDATORS`, in Django's order.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_length: usize,
}

/// Django's `UserAttributeSimilarityValidator` default.
const MAX_SIMILARITY: f64 = 0.7;

impl PasswordPolicy {
    /// Every rule the password breaks, as the messages the client is shown.
    pub fn violations(&self, password: &str, email: &str) -> Vec<String> {
        let mut violations = Vec::new();
        if too_similar(password, email) {
            violations.push("The password is too similar to the email.".to_owned());
        }
        if password.chars().count() < self.min_length {
            violations.push(format!(
                "This password is too short. It must contain at least {} characters.",
                self.min_length
            ));
        }
        if is_common(password) {
            violations.push("This password is too common.".to_owned());
        }
        if password.chars().all(|c| c.is_numeric()) {
            violations.push("This password is entirely numeric.".to_owned());
        }
        violations
    }
}

/// Django compares the lower-cased password with the whole lower-cased attribute and with each
/// of its `\W+`-separated parts, by `difflib.SequenceMatcher.quick_ratio`.
fn too_similar(password: &str, attribute: &str) -> bool {
    let password: Vec<char> = password.to_lowercase().chars().collect();
    let attribute = attribute.to_lowercase();
    attribute
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .chain(std::iter::once(attribute.as_str()))
        .any(|part| {
            let part: Vec<char> = part.chars().collect();
            !exceeds_length_ratio(password.len(), part.len())
                && quick_ratio(&password, &part) >= MAX_SIMILARITY
        })
}

/// Django skips parts so much shorter than the password that they cannot make it guessable.
fn exceeds_length_ratio(password_len: usize, part_len: usize) -> bool {
    let bound = MAX_SIMILARITY / 2.0 * password_len as f64;
    password_len >= 10 * part_len && (part_len as f64) < bound
}

/// `2 * |a ∩ b| / (|a| + |b|)` over character multisets, as `SequenceMatcher.quick_ratio`.
fn quick_ratio(a: &[char], b: &[char]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut remaining = std::collections::HashMap::<char, usize>::new();
    for &c in b {
        *remaining.entry(c).or_default() += 1;
    }
    let matches = a
        .iter()
        .filter(|c| match remaining.get_mut(c) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count();
    2.0 * matches as f64 / (a.len() + b.len()) as f64
}

/// Django lower-cases and strips before looking the password up in its list; the list shipped
/// in `passwords` keeps case, so both spellings are checked.
fn is_common(password: &str) -> bool {
    let folded = password.trim().to_lowercase();
    passwords::analyzer::is_common_password(password)
        || passwords::analyzer::is_common_password(&folded)
}

/// OWASP's Argon2id parameters: 19 MiB, two passes, one lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes and verifies passwords on the blocking pool, at most `concurrency` at a time; other
/// callers wait for a permit without holding a thread.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Hasher {
        Hasher {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// An Argon2id PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: Password) -> String {
        self.run(move || hash_blocking(password.expose())).await
    }

    /// Whether `password` matches `phc`. With no stored hash (unknown account) a dummy hash is
    /// verified all the same, so the answer takes as long and tells nobody who is registered.
    pub async fn verify(&self, password: Password, phc: Option<String>) -> bool {
        self.run(move || match phc {
            Some(phc) => verify_blocking(password.expose(), &phc),
            None => {
                verify_blocking(password.expose(), dummy_hash());
                false
            }
        })
        .await
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the hashing semaphore is never closed");
        tokio::task::spawn_blocking(work)
            .await
            .expect("password hashing does not panic")
    }
}

fn hash_blocking(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id accepts any password of bounded length")
        .to_string()
}

/// A stored hash that does not parse verifies nothing rather than failing the request.
fn verify_blocking(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("an account that does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy { min_length: 8 }
    }

    #[test]
    fn a_strong_password_breaks_no_rule() {
        assert!(
            policy()
                .violations("correct horse battery", "ann@example.org")
                .is_empty()
        );
    }

    #[test]
    fn each_rule_has_djangos_message() {
        assert_eq!(
            policy().violations("12345", "ann@example.org"),
            [
                "This password is too short. It must contain at least 8 characters.",
                "This password is too common.",
                "This password is entirely numeric.",
            ]
        );
        assert_eq!(
            policy().violations("annlee.example", "annlee@example.org"),
            ["The password is too similar to the email."]
        );
    }

    #[test]
    fn the_minimum_length_is_configurable() {
        let strict = PasswordPolicy { min_length: 30 };
        assert_eq!(
            strict.violations("correct horse battery", "ann@example.org"),
            ["This password is too short. It must contain at least 30 characters."]
        );
    }

    #[test]
    fn common_passwords_are_found_whatever_their_case() {
        assert!(is_common("password"));
        assert!(is_common("PassWord"));
        assert!(!is_common("tangerine-lighthouse-42"));
    }

    #[test]
    fn quick_ratio_matches_difflib() {
        // difflib.SequenceMatcher(a="abcd", b="bcde").quick_ratio() == 0.75
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(quick_ratio(&chars("abcd"), &chars("bcde")), 0.75);
        assert_eq!(quick_ratio(&chars("abc"), &chars("xyz")), 0.0);
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = Hasher::new(2);
        let phc = hasher.hash(Password::new("s3cret-enough".into())).await;
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            hasher
                .verify(Password::new("s3cret-enough".into()), Some(phc.clone()))
                .await
        );
        assert!(
            !hasher
                .verify(Password::new("s3cret-enougH".into()), Some(phc))
                .await
        );
        assert!(!hasher.verify(Password::new("anything".into()), None).await);
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        assert!(!format!("{:?}", Password::new("hunter22".into())).contains("hunter22"));
    }
}
