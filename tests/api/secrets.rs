//! Secrets at rest: a copy of the database (its files, or every stored value on PostgreSQL)
//! gives away no signing key and no successor key, and no token can be forged from it.

use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, Header};
use serde_json::json;

use restful_auth::auth::vault::MasterKey;
use restful_auth::config::Config;
use restful_auth::domain::keys::SigningAlgorithm;

use crate::helpers::{TestApp, forge, now, refused_start, spawn_app_with};
use crate::pg;

/// A key as the previous build generated and stored them: 32 random bytes, hex-encoded.
const LEGACY_SIGNING_KEY: &str = "5f1c0e9a7b3d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e";
const LEGACY_SUCCESSOR_KEY: &str =
    "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// The claims of an access token of `app`'s for `user_id`'s session.
fn claims_for(app: &TestApp, user_id: i64, session_id: &str) -> serde_json::Value {
    json!({
        "token_type": "access",
        "exp": now() + 300,
        "iat": now(),
        "jti": "forged",
        "user_id": user_id,
        "sid": session_id,
        "iss": app.config.public_url(),
        "aud": app.config.audience[0],
    })
}

/// Keys kept in the database, HS256: a stolen key forges tokens with plain HMAC.
fn hs256_keys_in_the_database(config: &mut Config) {
    config.secret_key = None;
    config.jwt_algorithm = Some(SigningAlgorithm::HS256);
}

fn header_naming(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    header
}

/// The `(kid, secret)` cells of every stored signing key, as a copy of the database shows them.
fn stored_signing_keys(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    app.query("SELECT kid, secret FROM signing_keys")
        .into_iter()
        .map(|row| {
            let kid = String::from_utf8(row[0].clone().expect("a kid")).expect("a text kid");
            (kid, row[1].clone().expect("a secret cell"))
        })
        .collect()
}

fn session_id_of(access_token: &str) -> String {
    use base64::Engine as _;
    let payload = access_token.split('.').nth(1).expect("a JWT payload");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("JSON claims");
    claims["sid"].as_str().expect("a session id").to_owned()
}

/// Whether `haystack` holds `needle` anywhere.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// A key in every encoding a copy of the database could give it away in.
fn encodings_of(hex_key: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let raw = hex::decode(hex_key).expect("a hex key");
    vec![
        hex_key.as_bytes().to_vec(),
        hex_key.to_ascii_uppercase().into_bytes(),
        raw.clone(),
        base64::engine::general_purpose::STANDARD
            .encode(&raw)
            .into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(&raw)
            .into_bytes(),
    ]
}

#[tokio::test]
async fn a_token_forged_with_any_value_read_from_a_copied_database_is_refused() {
    // Arrange: keys live in the database.
    let app = spawn_app_with(hs256_keys_in_the_database).await;
    let user = app.register_user("ann@example.org").await;
    let tokens = app.login_user(&user).await;
    let session_id = session_id_of(&tokens.access);
    let stored = stored_signing_keys(&app);
    assert!(!stored.is_empty(), "the generated key is stored");

    for (kid, secret) in stored {
        let mut candidates = vec![secret.clone()];
        if let Ok(decoded) = hex::decode(&secret) {
            candidates.push(decoded);
        }
        for candidate in candidates {
            // Act
            let forged = forge(
                &header_naming(&kid),
                &claims_for(&app, user.id, &session_id),
                &candidate,
            );
            let response = app.get_me(&forged).await;

            // Assert
            response.assert_access_token_refused();
        }
    }
    let own = app.get_me(&tokens.access).await;
    assert_eq!(own.status, StatusCode::OK, "{own:?}");
}

/// The master key the app's service uses: configured, or generated beside its SQLite file.
fn master_key_of(app: &TestApp) -> MasterKey {
    app.config.master_key.clone().unwrap_or_else(|| {
        let database = app.config.sqlite_path().expect("a SQLite database");
        let mut path = database.into_os_string();
        path.push(".master-key");
        MasterKey::read_file(path.as_ref(), false).expect("the generated master key")
    })
}

#[tokio::test]
async fn the_generated_keys_appear_in_no_encoding_in_a_copy_of_the_database() {
    // Arrange: keys generated and kept in the database, then used.
    let app = spawn_app_with(hs256_keys_in_the_database).await;
    let user = app.register_user("ann@example.org").await;
    let tokens = app.login_user(&user).await;
    app.refresh_ok(&tokens.refresh).await;
    let master_key = master_key_of(&app);

    // Act: what a thief holding the master key as well would read.
    let signing_keys: Vec<(String, String)> = stored_signing_keys(&app)
        .into_iter()
        .map(|(kid, sealed)| {
            let sealed = String::from_utf8(sealed).expect("sealed text");
            let key = master_key
                .open(&format!("signing_keys:{kid}"), &sealed)
                .expect("the key opens with the master key");
            (kid, String::from_utf8(key).expect("a hex key"))
        })
        .collect();
    let successor = app
        .query("SELECT value FROM settings WHERE key = 'internal:refresh-successor-key'")[0][0]
        .clone()
        .expect("a successor key");
    let successor = master_key
        .open(
            "settings:internal:refresh-successor-key",
            &String::from_utf8(successor).expect("sealed text"),
        )
        .expect("the successor key opens with the master key");
    let successor = String::from_utf8(successor).expect("a hex key");

    // Assert: the opened key is the one that signs, and no copy of the database shows it.
    let (kid, signing_key) = &signing_keys[0];
    let forged = forge(
        &header_naming(kid),
        &claims_for(&app, user.id, &session_id_of(&tokens.access)),
        signing_key.as_bytes(),
    );
    let response = app.get_me(&forged).await;
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    let files = app.database_files();
    for secret in [signing_key, &successor] {
        for encoding in encodings_of(secret) {
            assert!(
                !contains(&files, &encoding),
                "a copy of the database gives away {encoding:?}"
            );
        }
    }
}

#[tokio::test]
async fn plaintext_secrets_of_the_previous_build_are_encrypted_at_start_and_its_tokens_still_verify()
 {
    // Arrange: a database as the previous build left it, secrets in plaintext.
    let app = spawn_app_with(hs256_keys_in_the_database).await;
    let user = app.register_user("ann@example.org").await;
    let tokens = app.login_user(&user).await;
    let session_id = session_id_of(&tokens.access);
    app.query("DELETE FROM signing_keys");
    app.query(&format!(
        "INSERT INTO signing_keys (kid, secret, created_at) VALUES ('legacy', '{LEGACY_SIGNING_KEY}', {})",
        now()
    ));
    app.query(&format!(
        "UPDATE settings SET value = '{LEGACY_SUCCESSOR_KEY}' \
         WHERE key = 'internal:refresh-successor-key'"
    ));
    // Signed with the previous build's key (tokens of that build carried no `iss` and `aud`:
    // they are refused once, and their clients refresh).
    let issued_by_the_previous_build = forge(
        &header_naming("legacy"),
        &claims_for(&app, user.id, &session_id),
        LEGACY_SIGNING_KEY.as_bytes(),
    );

    // Act: the new build starts on it.
    let upgraded = app.another_instance().await;

    // Assert
    let files = upgraded.database_files();
    for secret in [LEGACY_SIGNING_KEY, LEGACY_SUCCESSOR_KEY] {
        for encoding in encodings_of(secret) {
            assert!(
                !contains(&files, &encoding),
                "a copy of the database gives away {secret} as {encoding:?}"
            );
        }
    }
    let response = upgraded.get_me(&issued_by_the_previous_build).await;
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    let renewed = upgraded.refresh_ok(&tokens.refresh).await;
    let response = upgraded.get_me(&renewed.access).await;
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_its_log_and_its_generated_master_key_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;

    // Arrange
    let app = spawn_app_with(|config| config.secret_key = None).await;
    let Some(path) = app.config.database_url.strip_prefix("sqlite://") else {
        eprintln!("SKIPPED: PostgreSQL's files are the server's");
        return;
    };

    // Act: a write, so the log and the shared memory exist.
    app.register_user("ann@example.org").await;

    // Assert
    for file in ["", "-wal", "-shm", ".master-key"] {
        let file = format!("{path}{file}");
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|error| panic!("{file}: {error}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} has mode {:o}", mode & 0o777);
    }
}

#[tokio::test]
async fn a_wrong_master_key_stops_the_start_and_changes_nothing() {
    // Arrange
    let app = spawn_app_with(|config| config.secret_key = None).await;
    let user = app.register_user("ann@example.org").await;
    app.login_user(&user).await;
    let before = app.every_stored_value();
    let mut wrong = app.config.clone();
    wrong.master_key = Some(MasterKey::generate());

    // Act
    let error = refused_start(&wrong).await;

    // Assert
    assert!(
        error.starts_with("the master key does not decrypt the stored secret"),
        "{error}"
    );
    assert_eq!(app.every_stored_value(), before);
}

#[tokio::test]
async fn postgresql_without_a_configured_master_key_does_not_start() {
    let Some(server) = pg::server_url() else {
        eprintln!("SKIPPED: SQLite has a default master key file beside the database");
        return;
    };
    // Arrange
    let fresh = pg::FreshDatabase::create(server).await;
    let config = Config::with_database(&fresh.url);

    // Act
    let error = refused_start(&config).await;

    // Assert
    assert!(
        error.starts_with("PostgreSQL needs a master key that every instance shares"),
        "{error}"
    );
    assert!(
        pg::query(&fresh.url, "SELECT kid FROM signing_keys").is_empty(),
        "no key is stored unsealed"
    );
}

#[tokio::test]
async fn after_a_rewrap_the_new_master_key_opens_every_secret_and_the_old_one_none() {
    // Arrange
    let app = spawn_app_with(|config| config.secret_key = None).await;
    let user = app.register_user("ann@example.org").await;
    let tokens = app.login_user(&user).await;
    let new_key = MasterKey::generate();

    // Act
    app.admin.rewrap(&new_key).await;
    let old_key_error = refused_start(&app.config).await;
    let rewrapped = app
        .another_instance_with(|config| config.master_key = Some(new_key))
        .await;

    // Assert
    assert!(
        old_key_error.starts_with("the master key does not decrypt"),
        "{old_key_error}"
    );
    let response = rewrapped.get_me(&tokens.access).await;
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    let renewed = rewrapped.refresh_ok(&tokens.refresh).await;
    let response = rewrapped.get_me(&renewed.access).await;
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
}
