//! Reading the users of a Django database (the original design's), for `import-django`.

use rusqlite::OpenFlags;
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;

use super::{PoolSettings, StoreError};

/// One row of Django's user table.
#[derive(Debug, Clone)]
pub struct DjangoUser {
    pub email: String,
    pub username: String,
    /// Django's encoded hash: `pbkdf2_sha256$…`, `argon2$…`, or an unusable `!…`.
    pub password: String,
    pub is_active: bool,
}

/// Every user of `table` in the database at `from` (a SQLite path or a `postgres://` URL).
pub async fn read_users(
    from: &str,
    table: &str,
    settings: &PoolSettings,
) -> Result<Vec<DjangoUser>, StoreError> {
    // The table name goes into SQL text: only a plain identifier is accepted.
    if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Database(format!("not a table name: {table:?}")));
    }
    let query = format!(
        "SELECT COALESCE(email, ''), COALESCE(username, ''), password, is_active FROM {table} ORDER BY id"
    );
    if from.starts_with("postgres://") || from.starts_with("postgresql://") {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.connect_timeout)
            .connect(from)
            .await
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(query))
            .fetch_all(&pool)
            .await
            .map_err(|error| StoreError::Database(error.to_string()))?;
        rows.iter()
            .map(|row| {
                Ok(DjangoUser {
                    email: row.try_get(0)?,
                    username: row.try_get(1)?,
                    password: row.try_get(2)?,
                    is_active: row.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|error| StoreError::Database(error.to_string()))
    } else {
        let path = from.strip_prefix("sqlite://").unwrap_or(from).to_owned();
        tokio::task::spawn_blocking(move || {
            let conn =
                rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let mut select = conn.prepare(&query)?;
            select
                .query_map([], |row| {
                    Ok(DjangoUser {
                        email: row.get(0)?,
                        username: row.get(1)?,
                        password: row.get(2)?,
                        is_active: row.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await
        .map_err(|error| StoreError::Database(error.to_string()))?
        .map_err(|error| StoreError::Database(error.to_string()))
    }
}
