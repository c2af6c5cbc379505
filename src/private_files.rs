//! Files only their owner may read: the SQLite database, the master key, and every secret given
//! as a file (`--database-url-file`, `--secret-key-file`, `--admin-token-file`, …). A copy of
//! one in another account's hands is half of what forging tokens takes.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

/// A file that group or others may read or write, refused unless the operator allowed it.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{path} is open to users other than its owner (mode {mode:03o}): run `chmod 600 {path}`, \
     or start with --allow-insecure-permissions (RESTFUL_AUTH_ALLOW_INSECURE_PERMISSIONS=true) \
     to accept it",
    path = path.display()
)]
pub struct ExposedFile {
    pub path: PathBuf,
    pub mode: u32,
}

/// Refuses `path` if it exists and group or others may read or write it, unless `allowed`.
pub fn refuse_exposed(path: &Path, allowed: bool) -> Result<(), ExposedFile> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 && !allowed {
                return Err(ExposedFile {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, allowed);
    Ok(())
}

/// A secret file that cannot be used. Its message names the file, never what it holds.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretFileError {
    #[error(transparent)]
    Exposed(#[from] ExposedFile),
    #[error("cannot read {what} {path}: {reason}", path = path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path} is empty", path = path.display())]
    Empty { what: &'static str, path: PathBuf },
}

/// The secret that `path` (`what`, for the messages: "the master key file") holds, less one
/// trailing line ending, which `echo secret > file` and editors add. Refused, like the
/// database file, if group or others may read or write it, unless `allowed`: a secret kept in
/// a file is kept from the process environment, where any process of its user can read it.
pub fn read_secret(
    what: &'static str,
    path: &Path,
    allowed: bool,
) -> Result<String, SecretFileError> {
    refuse_exposed(path, allowed)?;
    let mut text = std::fs::read_to_string(path).map_err(|error| SecretFileError::Unreadable {
        what,
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(SecretFileError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    Ok(text)
}

/// Creates `path` empty with mode 0600 unless it exists (then it is left as it is).
pub fn create_private(path: &Path) -> io::Result<()> {
    match private_options().open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Writes `contents` to a new file at `path`, readable by its owner only; fails if it exists.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut file = private_options().open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}
