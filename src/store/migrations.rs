//! The schema's versions, one runner's rules for both backends: the same numbered scripts in
//! `migrations/<backend>/`, applied in order inside the backend's own transaction, each
//! recorded as the version it brings the database to (SQLite: `PRAGMA user_version`;
//! PostgreSQL: the `schema_migrations` table). Each backend only reads and records versions.

use super::StoreError;

/// The scripts of `$backend` (a directory of `migrations/`), in version order: version `n` is
/// the `n`th. A new migration is one more line here, and one file in each directory.
macro_rules! scripts {
    ($backend:literal) => {
        &[
            include_str!(concat!("../../migrations/", $backend, "/0001_initial.sql")),
            include_str!(concat!("../../migrations/", $backend, "/0002_security.sql")),
            include_str!(concat!(
                "../../migrations/",
                $backend,
                "/0003_known_addresses.sql"
            )),
            include_str!(concat!(
                "../../migrations/",
                $backend,
                "/0004_published_keys.sql"
            )),
            include_str!(concat!(
                "../../migrations/",
                $backend,
                "/0005_audit_events.sql"
            )),
            include_str!(concat!(
                "../../migrations/",
                $backend,
                "/0006_mailed_links.sql"
            )),
            include_str!(concat!("../../migrations/", $backend, "/0007_totp.sql")),
            include_str!(concat!(
                "../../migrations/",
                $backend,
                "/0008_refresh_tokens_by_session.sql"
            )),
        ]
    };
}

pub(super) const SQLITE: &[&str] = scripts!("sqlite");
pub(super) const POSTGRES: &[&str] = scripts!("postgres");

/// The scripts a database at version `applied` still needs, each with the version it brings
/// the database to; a database newer than this build is refused, as its schema is unknown.
pub(super) fn pending(
    scripts: &'static [&'static str],
    applied: i64,
) -> Result<impl Iterator<Item = (i64, &'static str)>, StoreError> {
    let known = scripts.len();
    match usize::try_from(applied) {
        Ok(applied) if applied <= known => Ok(scripts
            .iter()
            .enumerate()
            .skip(applied)
            .map(|(index, script)| (index as i64 + 1, *script))),
        _ => Err(StoreError::Database(format!(
            "the database is at schema version {applied}, newer than this build knows ({known})"
        ))),
    }
}

/// Readiness needs exactly the schema this build migrates to.
pub(super) fn expect_current(scripts: &[&str], found: i64) -> Result<(), StoreError> {
    if usize::try_from(found) == Ok(scripts.len()) {
        Ok(())
    } else {
        Err(StoreError::SchemaMismatch {
            found,
            expected: scripts.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script in either directory is listed, and both backends have the same versions.
    #[test]
    fn every_migration_file_is_listed_for_both_backends() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for (backend, scripts) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let files = std::fs::read_dir(root.join(backend)).unwrap().count();
            assert_eq!(files, scripts.len(), "{backend}");
        }
    }

    #[test]
    fn only_the_missing_versions_run_and_a_newer_database_is_refused() {
        let scripts: &'static [&'static str] = &["a", "b", "c"];
        let versions = |applied| -> Vec<i64> {
            pending(scripts, applied)
                .unwrap()
                .map(|(version, _)| version)
                .collect()
        };
        assert_eq!(versions(0), [1, 2, 3]);
        assert_eq!(versions(2), [3]);
        assert!(versions(3).is_empty());
        assert!(pending(scripts, 4).is_err());
        assert!(pending(scripts, -1).is_err());
        assert!(expect_current(scripts, 3).is_ok());
        assert!(expect_current(scripts, 2).is_err());
    }
}
