//! PostgreSQL for tests: each test gets a database of its own, created from
//! `TEST_DATABASE_URL` and dropped when the test ends, so tests stay parallel.

use std::sync::OnceLock;

use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

/// The server to test against, if `TEST_DATABASE_URL` names one. With
/// `RESTFUL_AUTH_REQUIRE_POSTGRES` set (as CI does when a server answers), its absence fails
/// the test instead of quietly testing SQLite again.
pub fn server_url() -> Option<&'static str> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    let url = URL
        .get_or_init(|| {
            std::env::var("TEST_DATABASE_URL")
                .ok()
                .filter(|url| !url.is_empty())
        })
        .as_deref();
    if url.is_none() && std::env::var_os("RESTFUL_AUTH_REQUIRE_POSTGRES").is_some() {
        panic!("RESTFUL_AUTH_REQUIRE_POSTGRES is set but TEST_DATABASE_URL is not");
    }
    url
}

/// Runs `sql` on the database at `url` from a thread of its own (the checks that call it are
/// synchronous); every cell as text bytes, raw bytes, or `None` for NULL.
pub fn query(url: &str, sql: &str) -> Vec<Vec<Option<Vec<u8>>>> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the query");
        runtime.block_on(async {
            let mut connection = PgConnection::connect(&url)
                .await
                .expect("the database answers");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut connection)
                .await
                .expect("the statement runs");
            rows.iter()
                .map(|row| (0..row.len()).map(|column| cell(row, column)).collect())
                .collect()
        })
    })
    .join()
    .expect("the query thread finishes")
}

fn cell(row: &PgRow, column: usize) -> Option<Vec<u8>> {
    if let Ok(text) = row.try_get::<Option<String>, _>(column) {
        return text.map(String::into_bytes);
    }
    if let Ok(bytes) = row.try_get::<Option<Vec<u8>>, _>(column) {
        return bytes;
    }
    if let Ok(number) = row.try_get::<Option<i64>, _>(column) {
        return number.map(|number| number.to_string().into_bytes());
    }
    if let Ok(flag) = row.try_get::<Option<bool>, _>(column) {
        return flag.map(|flag| flag.to_string().into_bytes());
    }
    // Other types (UUIDs, timestamps) as the server prints them.
    None
}

/// A database that exists for as long as this value does.
pub struct FreshDatabase {
    pub url: String,
    name: String,
    server: String,
}

impl FreshDatabase {
    pub async fn create(server: &str) -> FreshDatabase {
        let name = format!("restful_auth_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server)
            .await
            .expect("TEST_DATABASE_URL accepts connections");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("the test role may create databases");
        FreshDatabase {
            url: with_database(server, &name),
            name,
            server: server.to_owned(),
        }
    }
}

impl Drop for FreshDatabase {
    /// Dropped on a thread of its own: `Drop` cannot await, and the test's runtime may be gone.
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the clean-up");
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&server).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                        .execute(&mut admin)
                        .await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// `postgres://u@h:5432/postgres?x=y` with its database replaced by `name`.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}

#[test]
fn a_test_database_url_keeps_the_server_and_its_options() {
    assert_eq!(
        with_database(
            "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
            "t1"
        ),
        "postgres://postgres@127.0.0.1:5432/t1?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://localhost", "t2"),
        "postgres://localhost/t2"
    );
}
