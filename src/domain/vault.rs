//! Secrets at rest: every secret the database holds is sealed (AES-256-GCM) under a master key
//! that the database does not hold, so a copy of the database alone forges nothing. Where the
//! key is kept, and what fails without it, is the service's business (`auth::vault`).
//!
//! Each value is bound to its row by associated data (`signing_keys:<kid>`), so that sealed
//! values cannot be swapped between rows. Stored values are text, `enc:v1:<base64url(nonce ||
//! ciphertext)>`; anything without the prefix is a plaintext value of an earlier build.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;

/// The key-encryption key: 32 random bytes. Its `Debug` never shows them.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

/// Why a sealed value did not open: another key sealed it, or it was altered or moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value does not open with this master key")]
pub struct Unopenable;

impl MasterKey {
    /// A new key from the operating system's randomness.
    pub fn generate() -> MasterKey {
        MasterKey(super::random_bytes())
    }

    /// The key as its file holds it: base64.
    pub(crate) fn encoded(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Seals `plaintext` for the row that `associated_data` names.
    pub fn seal(&self, associated_data: &str, plaintext: &[u8]) -> String {
        // Random 96-bit nonces: a key seals a handful of values, far from the 2^32 limit.
        let nonce: [u8; NONCE_LEN] = super::random_bytes();
        let ciphertext = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: associated_data.as_bytes(),
                },
            )
            .expect("AES-GCM seals any message of this size");
        let mut sealed = nonce.to_vec();
        sealed.extend(ciphertext);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens a value [sealed](Self::seal) for the row that `associated_data` names.
    pub fn open(&self, associated_data: &str, sealed: &str) -> Result<Vec<u8>, Unopenable> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|encoded| URL_SAFE_NO_PAD.decode(encoded).ok())
            .filter(|bytes| bytes.len() > NONCE_LEN)
            .ok_or(Unopenable)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Unopenable)?;
        self.cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated_data.as_bytes(),
                },
            )
            .map_err(|_| Unopenable)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

/// Whether `stored` is a sealed value, rather than the plaintext an earlier build stored.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with("enc:")
}

impl FromStr for MasterKey {
    type Err = String;

    /// 32 bytes as hex or base64 (standard or URL-safe, padded or not).
    fn from_str(encoded: &str) -> Result<Self, Self::Err> {
        let encoded = encoded.trim();
        let decoded = hex::decode(encoded)
            .ok()
            .or_else(|| STANDARD.decode(encoded).ok())
            .or_else(|| URL_SAFE.decode(encoded).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(encoded).ok())
            .or_else(|| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(encoded)
                    .ok()
            });
        decoded
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(MasterKey)
            .ok_or_else(|| "a master key is 32 bytes in base64 or hex".to_owned())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_and_row_only() {
        let key = MasterKey::generate();
        let sealed = key.seal("signing_keys:a", b"secret");

        assert!(is_sealed(&sealed));
        assert_eq!(key.open("signing_keys:a", &sealed), Ok(b"secret".to_vec()));
        assert_eq!(key.open("signing_keys:b", &sealed), Err(Unopenable));
        assert_eq!(
            MasterKey::generate().open("signing_keys:a", &sealed),
            Err(Unopenable)
        );
        assert!(!String::from_utf8_lossy(sealed.as_bytes()).contains("secret"));
    }

    #[test]
    fn sealing_twice_gives_two_different_values() {
        let key = MasterKey::generate();

        assert_ne!(
            key.seal("settings:x", b"same"),
            key.seal("settings:x", b"same")
        );
    }

    #[test]
    fn an_altered_or_foreign_value_does_not_open() {
        let key = MasterKey::generate();
        let sealed = key.seal("settings:x", b"value");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };

        for value in [
            String::from_utf8(altered).unwrap(),
            "plaintext".to_owned(),
            "enc:v1:".to_owned(),
            "enc:v1:!!".to_owned(),
        ] {
            assert_eq!(key.open("settings:x", &value), Err(Unopenable), "{value}");
        }
    }

    #[test]
    fn a_master_key_parses_from_hex_or_base64_and_nothing_shorter() {
        let bytes = [7u8; 32];

        for encoded in [
            hex::encode(bytes),
            format!("  {}\n", STANDARD.encode(bytes)),
            URL_SAFE_NO_PAD.encode(bytes),
        ] {
            let key: MasterKey = encoded.parse().unwrap();
            assert_eq!(key.0, bytes);
        }
        assert!("abcd".parse::<MasterKey>().is_err());
        assert!(STANDARD.encode([1u8; 31]).parse::<MasterKey>().is_err());
        assert_eq!(format!("{:?}", MasterKey(bytes)), "MasterKey(<redacted>)");
    }
}
