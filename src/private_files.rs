//! Files only their owner may read: the SQLite database and the master key. A copy of either
//! in another account's hands is half of what forging tokens takes.

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
