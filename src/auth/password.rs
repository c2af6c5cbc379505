//! Passwords: Django's four validators with their exact messages, and Argon2id hashing run off
//! the async runtime through a bounded pool, so a login flood cannot starve cheap requests.
//! Hashes imported from the Django original (`pbkdf2_sha256$…`, `argon2$…`) verify as well and
//! are flagged for replacement by our Argon2id.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::config::Argon2Cost;

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

/// A password being chosen, within the length bound. The [policy](PasswordPolicy) is the use
/// case's to check: it needs the account's email.
#[derive(Debug)]
pub struct NewPassword(Password);

impl NewPassword {
    pub fn new(password: Password) -> Result<NewPassword, String> {
        if password.expose().chars().count() > MAX_LEN {
            return Err(format!(
                "Ensure this field has no more than {MAX_LEN} characters."
            ));
        }
        Ok(NewPassword(password))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl From<NewPassword> for Password {
    fn from(new: NewPassword) -> Password {
        new.0
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

/// The Argon2id parameters new hashes get, and the dummy hash an unknown account costs.
pub struct HashCost {
    params: Params,
    /// Verified in place of a missing or unusable hash: as costly as a real one.
    dummy: OnceLock<String>,
}

impl HashCost {
    /// OWASP's Argon2id parameters: 19 MiB, two passes, one lane. The service's only cost.
    pub fn owasp() -> HashCost {
        HashCost::new(Argon2Cost::OWASP)
    }

    /// Other parameters, for a test suite that hashes thousands of passwords (see
    /// [`Argon2Cost`]); no flag sets them.
    pub fn new(cost: Argon2Cost) -> HashCost {
        HashCost {
            params: Params::new(cost.memory_kib, cost.passes, 1, None)
                .expect("valid Argon2 parameters"),
            dummy: OnceLock::new(),
        }
    }

    /// Hashes with these parameters; verifies with the parameters recorded in each hash.
    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn dummy_hash(&self) -> &str {
        self.dummy
            .get_or_init(|| hash_blocking(self, "an account that does not exist"))
    }
}

impl fmt::Debug for HashCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HashCost(m={}, t={})",
            self.params.m_cost(),
            self.params.t_cost()
        )
    }
}

/// Hashes and verifies passwords on the blocking pool, at most `concurrency` at a time; other
/// callers wait for a permit without holding a thread. At most `max_waiting` wait: beyond that a
/// flood of logins is shed at once, so the queue (and the memory it holds) stays bounded and
/// the requests already waiting are answered in time.
#[derive(Clone)]
pub struct Hasher {
    cost: Arc<HashCost>,
    permits: Arc<Semaphore>,
    /// Requests holding or waiting for a permit.
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

/// The hashing pool is full; the client should retry shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks in progress")]
pub struct Overloaded;

impl Hasher {
    pub fn new(concurrency: usize, max_waiting: usize, cost: HashCost) -> Hasher {
        let concurrency = concurrency.max(1);
        Hasher {
            cost: Arc::new(cost),
            permits: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: concurrency + max_waiting,
        }
    }

    /// An Argon2id PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: Password) -> Result<String, Overloaded> {
        let cost = self.cost.clone();
        self.run(move || hash_blocking(&cost, password.expose()))
            .await
    }

    /// Whether `password` matches `stored`. With no stored hash (unknown account) a dummy hash
    /// is verified all the same, so the answer takes as long and tells nobody who is registered.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<Verification, Overloaded> {
        let cost = self.cost.clone();
        self.run(move || match stored {
            Some(stored) => verify_blocking(&cost, password.expose(), &stored),
            None => {
                verify_blocking(&cost, password.expose(), cost.dummy_hash());
                Verification::Mismatch
            }
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Overloaded> {
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            metrics::counter!("password_hash_shed_total").increment(1);
            return Err(Overloaded);
        }
        // Hashes waiting or running: the pool's saturation, for operators.
        let depth = metrics::gauge!("password_hash_queue_depth");
        depth.increment(1.0);
        // Released when the hash is done, or when a request cancelled while waiting drops it.
        let admitted = self.admitted.clone();
        let leaving = scopeguard::guard((), move |()| {
            depth.decrement(1.0);
            admitted.fetch_sub(1, Ordering::SeqCst);
        });
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the hashing semaphore is never closed");
        // The permit and the admission travel with the work: a client that hangs up while its
        // hash runs cannot free a slot for another hash before this one is done.
        Ok(tokio::task::spawn_blocking(move || {
            yield_to_requests();
            let result = work();
            drop((permit, leaving));
            result
        })
        .await
        .expect("password hashing does not panic"))
    }
}

/// Hashing threads run at a lower priority (nice 10) than the threads that serve requests:
/// while logins keep every core busy with Argon2, cheap requests still get a core at once, and
/// hashes take whatever is left. Lowered once per thread, for good (raising it back needs
/// privileges); the blocking pool's other work is start-up and imports, which may wait too.
fn yield_to_requests() {
    thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if LOWERED.replace(true) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority reads only its integer arguments. On Linux the nice value belongs
        // to a thread, named here by its id.
        let lowered =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
        if lowered != 0 {
            tracing::debug!("password hashing keeps the normal priority: setpriority failed");
        }
    }
}

fn hash_blocking(cost: &HashCost, password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let params = &cost.params;
    let hash = argon2_output(
        &cost.argon2(),
        params,
        password,
        salt.as_salt(),
        Params::DEFAULT_OUTPUT_LEN,
    )
    .expect("Argon2id accepts any password of bounded length");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).expect("our parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(hash),
    }
    .to_string()
}

/// Argon2 into working memory taken from [`WORKING_MEMORY`] rather than allocated per hash.
fn argon2_output(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: Salt<'_>,
    output_len: usize,
) -> Result<Output, password_hash::Error> {
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    Output::init_with(output_len, |out| {
        with_working_memory(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, blocks)
        })
        .map_err(password_hash::Error::from)
    })
}

/// Argon2's 19 MiB of working memory, kept between hashes. Freed after each hash, it stayed
/// in the process anyway: glibc raised its mmap threshold past 19 MiB after the first free,
/// so each later buffer came from a heap and fragmented them (3 GiB resident after 500
/// logins). At most as many buffers exist as hashes ever ran at once.
static WORKING_MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

fn with_working_memory<T>(blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
    let reused = WORKING_MEMORY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop()
        .filter(|buffer| buffer.len() >= blocks);
    let mut buffer = reused.unwrap_or_else(|| vec![Block::default(); blocks]);
    let result = work(&mut buffer[..blocks]);
    // Only buffers of the service's size are kept (one block per KiB): an imported hash of
    // another cost is rare.
    if buffer.len() == Argon2Cost::OWASP.memory_kib as usize {
        WORKING_MEMORY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
    }
    result
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Mismatch,
    /// The password is right; `rehash` when the stored hash is not our current Argon2id (an
    /// imported Django hash, or older parameters), so the caller replaces it now that it can.
    Match {
        rehash: bool,
    },
    /// The stored hash is malformed, of an unknown algorithm, or costs more than the
    /// [bounds](check_stored_hash) allow: nothing was computed from it (the dummy hash was, so
    /// the answer takes as long as any other), and the caller should tell the operator.
    Refused,
}

impl Verification {
    pub fn matched(self) -> bool {
        matches!(self, Verification::Match { .. })
    }
}

/// The most work a stored hash may ask of a login. A hash is data: an imported row (or a
/// tampered database) must not be able to make one login allocate gigabytes (Argon2's memory
/// cost is in KiB, up to 2^32) or pin a hashing thread for hours (its passes, PBKDF2's
/// iterations). Generous for any real deployment: OWASP asks for 19 MiB and 2 passes, Django
/// for 1,000,000 PBKDF2 iterations.
const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
const MAX_ARGON2_PASSES: u32 = 10;
const MAX_ARGON2_LANES: u32 = 8;
const MAX_PBKDF2_ITERATIONS: u32 = 2_000_000;

/// A stored hash, parsed and checked against the bounds before any work is done on it.
enum StoredHash<'a> {
    /// Ours (`$argon2id$…`), or Django's (`argon2$argon2id$…`) when `django`.
    Argon2 {
        // Boxed: a parsed PHC string is ten times the size of the other variants.
        phc: Box<PasswordHash<'a>>,
        params: Params,
        django: bool,
    },
    /// Django's `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`.
    Pbkdf2 {
        iterations: u32,
        salt: &'a str,
        expected: Vec<u8>,
    },
    /// Django's unusable password (`!…`): nothing verifies against it.
    Unusable,
}

/// Whether `stored` is a hash this service can verify within its bounds: the check an import
/// makes of every row, and every verification of whatever is stored. The error says why not.
pub fn check_stored_hash(stored: &str) -> Result<(), String> {
    parse_stored_hash(stored).map(drop)
}

fn parse_stored_hash(stored: &str) -> Result<StoredHash<'_>, String> {
    if stored.starts_with('!') {
        return Ok(StoredHash::Unusable);
    }
    if let Some(django) = stored.strip_prefix("pbkdf2_sha256$") {
        return parse_django_pbkdf2(django);
    }
    // Django writes `argon2` before a PHC string: `argon2$argon2id$v=19$m=…`.
    let (phc, django) = match stored.strip_prefix("argon2") {
        Some(phc) if phc.starts_with('$') => (phc, true),
        _ => (stored, false),
    };
    if !phc.starts_with("$argon2") {
        let algorithm = stored.split('$').next().unwrap_or_default();
        return Err(format!("unsupported hash algorithm {algorithm:?}"));
    }
    let phc =
        PasswordHash::new(phc).map_err(|error| format!("not a valid Argon2 hash: {error}"))?;
    let params =
        Params::try_from(&phc).map_err(|error| format!("not valid Argon2 parameters: {error}"))?;
    let (memory, passes, lanes) = (params.m_cost(), params.t_cost(), params.p_cost());
    if memory > MAX_ARGON2_MEMORY_KIB || passes > MAX_ARGON2_PASSES || lanes > MAX_ARGON2_LANES {
        return Err(format!(
            "Argon2 cost m={memory} KiB, t={passes}, p={lanes} exceeds the limits \
             m={MAX_ARGON2_MEMORY_KIB}, t={MAX_ARGON2_PASSES}, p={MAX_ARGON2_LANES}"
        ));
    }
    let well_formed = Algorithm::try_from(phc.algorithm).is_ok()
        && phc
            .version
            .map_or(Ok(Version::V0x13), Version::try_from)
            .is_ok()
        && phc.salt.is_some()
        && phc.hash.is_some();
    if !well_formed {
        return Err("not a complete Argon2 hash".into());
    }
    Ok(StoredHash::Argon2 {
        phc: Box::new(phc),
        params,
        django,
    })
}

fn parse_django_pbkdf2(encoded: &str) -> Result<StoredHash<'_>, String> {
    use base64::Engine as _;

    let mut parts = encoded.splitn(3, '$');
    let (Some(iterations), Some(salt), Some(expected)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("not a complete pbkdf2_sha256 hash".into());
    };
    let iterations = iterations
        .parse::<u32>()
        .map_err(|_| "pbkdf2_sha256: the iteration count is not a number".to_owned())?;
    if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
        return Err(format!(
            "pbkdf2_sha256: {iterations} iterations, outside 1 to {MAX_PBKDF2_ITERATIONS}"
        ));
    }
    let expected = base64::engine::general_purpose::STANDARD
        .decode(expected)
        .ok()
        .filter(|expected| expected.len() == 32)
        .ok_or_else(|| "pbkdf2_sha256: the hash is not 32 bytes of base64".to_owned())?;
    Ok(StoredHash::Pbkdf2 {
        iterations,
        salt,
        expected,
    })
}

fn verify_blocking(cost: &HashCost, password: &str, stored: &str) -> Verification {
    let parsed = match parse_stored_hash(stored) {
        Ok(StoredHash::Unusable) => {
            verify_blocking(cost, password, cost.dummy_hash());
            return Verification::Mismatch;
        }
        Ok(parsed) => parsed,
        Err(_) => {
            verify_blocking(cost, password, cost.dummy_hash());
            return Verification::Refused;
        }
    };
    let (matched, current) = match parsed {
        StoredHash::Argon2 {
            phc,
            params,
            django,
        } => {
            let ours = &cost.params;
            let current = !django
                && phc.algorithm == Algorithm::Argon2id.ident()
                && (params.m_cost(), params.t_cost(), params.p_cost())
                    == (ours.m_cost(), ours.t_cost(), ours.p_cost());
            (argon2_matches(password, &phc, params), current)
        }
        StoredHash::Pbkdf2 {
            iterations,
            salt,
            expected,
        } => (pbkdf2_matches(password, iterations, salt, &expected), false),
        StoredHash::Unusable => unreachable!("answered above"),
    };
    if matched {
        Verification::Match { rehash: !current }
    } else {
        Verification::Mismatch
    }
}

/// Recomputes `parsed` with its own algorithm, version and parameters; compares in constant
/// time (`Output`'s equality).
fn argon2_matches(password: &str, parsed: &PasswordHash<'_>, params: Params) -> bool {
    let (Ok(algorithm), Ok(version), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        parsed.version.map_or(Ok(Version::V0x13), Version::try_from),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    argon2_output(&argon2, &params, password, salt, expected.len())
        .is_ok_and(|computed| computed == expected)
}

fn pbkdf2_matches(password: &str, iterations: u32, salt: &str, expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;

    let mut derived = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
        password.as_bytes(),
        salt.as_bytes(),
        iterations,
        &mut derived,
    );
    derived.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service's cost, made once for the whole module's tests.
    fn owasp() -> &'static HashCost {
        static COST: OnceLock<HashCost> = OnceLock::new();
        COST.get_or_init(HashCost::owasp)
    }

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
        let hasher = Hasher::new(2, 8, HashCost::owasp());
        let phc = hasher
            .hash(Password::new("s3cret-enough".into()))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let verify = |password: &str, stored: Option<String>| {
            let verification = hasher.verify(Password::new(password.into()), stored);
            async { verification.await.unwrap() }
        };
        assert_eq!(
            verify("s3cret-enough", Some(phc.clone())).await,
            Verification::Match { rehash: false }
        );
        assert_eq!(
            verify("s3cret-enougH", Some(phc)).await,
            Verification::Mismatch
        );
        assert_eq!(verify("anything", None).await, Verification::Mismatch);
    }

    #[test]
    fn django_pbkdf2_hashes_verify_and_ask_to_be_replaced() {
        // Django's own test vector (tests/auth_tests/test_hashers.py).
        let stored = "pbkdf2_sha256$10000$seasalt$CWWFdHOWwPnki7HvkcqN9iA2T3KLW1cf2uZ5kvArtVY=";
        assert_eq!(
            verify_blocking(owasp(), "lètmein", stored),
            Verification::Match { rehash: true }
        );
        assert_eq!(
            verify_blocking(owasp(), "letmein", stored),
            Verification::Mismatch
        );
    }

    #[test]
    fn a_stored_hash_beyond_the_bounds_is_refused_before_any_work() {
        // A real 32-byte pbkdf2 hash, so only the cost is wrong.
        let pbkdf2 = |iterations: u32| {
            format!(
                "pbkdf2_sha256${iterations}$seasalt$CWWFdHOWwPnki7HvkcqN9iA2T3KLW1cf2uZ5kvArtVY="
            )
        };
        let phc = hash_blocking(owasp(), "s3cret-enough");
        let argon2 = |params: &str| phc.replace("m=19456,t=2,p=1", params);
        // Each would allocate 4 TiB or 4 GiB, or run for days, if it were computed.
        let refused = [
            argon2("m=4294967295,t=1,p=1"),
            argon2("m=4194304,t=1,p=1"),
            argon2("m=19456,t=4294967295,p=1"),
            argon2("m=19456,t=11,p=1"),
            argon2("m=19456,t=2,p=9"),
            format!("argon2{}", argon2("m=4294967295,t=1,p=1")),
            pbkdf2(0),
            pbkdf2(2_000_001),
            pbkdf2(10_000_000),
            "pbkdf2_sha256$1000$salt$AAAA".to_owned(),
            "bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuv".to_owned(),
            "md5$$whatever".to_owned(),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA".to_owned(),
            String::new(),
        ];
        for stored in refused {
            assert!(check_stored_hash(&stored).is_err(), "{stored}");
            assert_eq!(
                verify_blocking(owasp(), "s3cret-enough", &stored),
                Verification::Refused,
                "{stored}"
            );
        }
        for within in [
            phc.clone(),
            argon2("m=262144,t=10,p=8"),
            pbkdf2(2_000_000),
            "!unusable".into(),
        ] {
            assert_eq!(check_stored_hash(&within), Ok(()), "{within}");
        }
        assert_eq!(
            check_stored_hash(&argon2("m=4194304,t=1,p=1")).unwrap_err(),
            "Argon2 cost m=4194304 KiB, t=1, p=1 exceeds the limits m=262144, t=10, p=8"
        );
    }

    #[test]
    fn an_unusable_django_password_verifies_nothing() {
        assert_eq!(
            verify_blocking(owasp(), "", "!Vs8cQ2ErUZnQbEYMxYqD2Em4c3N0HUAOqvfNCzcP"),
            Verification::Mismatch
        );
    }

    #[test]
    fn django_argon2_hashes_verify_and_ask_to_be_replaced() {
        let phc = hash_blocking(owasp(), "s3cret-enough");
        let django = format!("argon2{phc}");
        assert_eq!(
            verify_blocking(owasp(), "s3cret-enough", &django),
            Verification::Match { rehash: true }
        );
        assert_eq!(
            verify_blocking(owasp(), "wrong", &django),
            Verification::Mismatch
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_queue_bound_hashes_are_shed_at_once() {
        let hasher = Hasher::new(1, 2, HashCost::owasp());
        let flood: Vec<_> = (0..12)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(Password::new("x".repeat(12))).await })
            })
            .collect();
        let mut shed = 0;
        for outcome in flood {
            shed += usize::from(outcome.await.unwrap().is_err());
        }
        assert!(
            shed >= 9,
            "at most 1 running + 2 waiting were admitted; shed {shed}"
        );
        assert!(
            hasher.hash(Password::new("x".repeat(12))).await.is_ok(),
            "the pool recovers"
        );
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        assert!(!format!("{:?}", Password::new("hunter22".into())).contains("hunter22"));
    }
}
