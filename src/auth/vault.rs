//! The master key's files and the start-up errors about it; the key and its sealing are the
//! domain's ([`crate::domain::vault`]).

use std::path::{Path, PathBuf};

pub use crate::domain::vault::{MasterKey, Unopenable, is_sealed};
use crate::private_files::{self, SecretFileError};

/// Why the master key is not at hand.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("the master key in {origin} is not 32 bytes in base64 or hex")]
    Malformed { origin: String },
    #[error(
        "the database holds secrets sealed under a master key, but the key file {path} does not \
         exist: restore it from a backup, or point --master-key-file at it (without it the \
         stored signing keys cannot be used)",
        path = path.display()
    )]
    Missing { path: PathBuf },
    #[error(
        "PostgreSQL needs a master key that every instance shares: set --master-key-file \
         (RESTFUL_AUTH_MASTER_KEY_FILE) or RESTFUL_AUTH_MASTER_KEY to 32 random bytes in base64 \
         (e.g. `openssl rand -base64 32`)"
    )]
    NotConfigured,
    #[error(
        "the master key does not decrypt the stored secret {row}: start with the master key the \
         database was sealed with (--master-key-file, RESTFUL_AUTH_MASTER_KEY, or the file \
         beside the SQLite database)"
    )]
    WrongKey { row: String },
    #[error("cannot create the master key file {path}: {reason}", path = path.display())]
    Uncreatable { path: PathBuf, reason: String },
}

impl MasterKey {
    /// The key in a file (base64 or hex, surrounding whitespace ignored), which only its owner
    /// may read unless `allow_exposed`.
    pub fn read_file(path: &Path, allow_exposed: bool) -> Result<MasterKey, VaultError> {
        let text = private_files::read_secret("the master key file", path, allow_exposed)?;
        text.parse().map_err(|_| VaultError::Malformed {
            origin: path.display().to_string(),
        })
    }

    /// Writes this key, base64-encoded, to a new file that only its owner may read.
    pub fn write_file(&self, path: &Path) -> Result<(), VaultError> {
        private_files::write_private(path, format!("{}\n", self.encoded()).as_bytes()).map_err(
            |error| VaultError::Uncreatable {
                path: path.to_owned(),
                reason: error.to_string(),
            },
        )
    }
}
