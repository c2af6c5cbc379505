//! Tokens other services verify (CONTRACT.md, "Access tokens and their keys"): EdDSA keys by
//! default, published at `/.well-known/jwks.json` with a discovery document; issuer and
//! audience; rotation that publishes a key before it signs; retirement at once; and none of
//! the ways to make a key accept a token it did not sign.

use std::time::Duration;

use axum::http::{StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use restful_auth::config::Config;
use restful_auth::domain::keys::SigningAlgorithm;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, forge, refused_start, spawn_app_with};

/// Keys kept in the database, of `algorithm` (unset: the default).
fn stored_keys(algorithm: Option<SigningAlgorithm>) -> impl FnOnce(&mut Config) {
    move |config| {
        config.secret_key = None;
        config.jwt_algorithm = algorithm;
    }
}

async fn logged_in(app: &TestApp) -> Tokens {
    let user = app.register_user("ann@example.org").await;
    app.login_user(&user).await
}

/// The published key set, checked for what every answer of it must be.
async fn key_set(app: &TestApp) -> Vec<Value> {
    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    assert_eq!(
        response.headers.get(header::CACHE_CONTROL).unwrap(),
        "public, max-age=300"
    );
    let keys = response.body["keys"]
        .as_array()
        .expect("a key list")
        .clone();
    for key in &keys {
        // RFC 7517 / 8037 names, public parts only.
        for private in ["d", "k", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{key} publishes {private}");
        }
        assert_eq!(key["use"], "sig");
        assert!(key["kid"].is_string());
    }
    keys
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// What a service downstream does: find the token's key in the published set by its `kid`,
/// and verify with that key's algorithm, issuer and audience.
fn verify_downstream(
    keys: &[Value],
    token: &str,
    issuer: &str,
    audience: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let kid = kid_of(token);
    let jwk: Jwk = serde_json::from_value(
        keys.iter()
            .find(|key| key["kid"] == kid.as_str())
            .expect("the token's key is published")
            .clone(),
    )
    .unwrap();
    let algorithm: Algorithm = jwk
        .common
        .key_algorithm
        .unwrap()
        .to_string()
        .parse()
        .unwrap();
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
        .map(|token| token.claims)
}

#[tokio::test]
async fn a_new_installation_signs_with_eddsa_and_publishes_the_key_that_verifies() {
    // Arrange
    let app = spawn_app_with(stored_keys(None)).await;

    // Act
    let tokens = logged_in(&app).await;
    let keys = key_set(&app).await;

    // Assert
    let header = jsonwebtoken::decode_header(&tokens.access).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(keys[0]["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let claims = verify_downstream(
        &keys,
        &tokens.access,
        &app.config.public_url(),
        "restful-auth",
    )
    .expect("the token verifies from the published key alone");
    assert_eq!(claims["iss"], app.config.public_url());
    assert_eq!(claims["aud"], "restful-auth");
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn es256_keys_publish_both_coordinates_and_verify_downstream() {
    // Arrange
    let app = spawn_app_with(stored_keys(Some(SigningAlgorithm::ES256))).await;

    // Act
    let tokens = logged_in(&app).await;
    let keys = key_set(&app).await;

    // Assert
    assert_eq!(
        jsonwebtoken::decode_header(&tokens.access).unwrap().alg,
        Algorithm::ES256
    );
    assert_eq!(
        (&keys[0]["kty"], &keys[0]["crv"]),
        (&json!("EC"), &json!("P-256"))
    );
    assert!(keys[0]["y"].is_string());
    verify_downstream(
        &keys,
        &tokens.access,
        &app.config.public_url(),
        "restful-auth",
    )
    .expect("an ES256 token verifies from the published key");
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_hs256_secret_is_never_published() {
    // Arrange: the suite's default, a configured --secret-key.
    let app = spawn_app_with(|_| {}).await;
    let tokens = logged_in(&app).await;

    // Act
    let keys = key_set(&app).await;

    // Assert
    assert_eq!(
        jsonwebtoken::decode_header(&tokens.access).unwrap().alg,
        Algorithm::HS256
    );
    assert!(keys.is_empty());
}

#[tokio::test]
async fn the_discovery_document_names_the_issuer_the_key_set_and_the_login() {
    // Arrange
    let app = spawn_app_with(|config| {
        stored_keys(None)(config);
        config.public_url = Some("https://auth.example.org".into());
    })
    .await;

    // Act
    let response = app.get("/.well-known/openid-configuration").await;

    // Assert
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.headers.get(header::CACHE_CONTROL).unwrap(),
        "public, max-age=300"
    );
    assert_eq!(response.body["issuer"], "https://auth.example.org");
    assert_eq!(
        response.body["jwks_uri"],
        "https://auth.example.org/.well-known/jwks.json"
    );
    assert_eq!(
        response.body["token_endpoint"],
        "https://auth.example.org/api/login/"
    );
    assert_eq!(
        response.body["id_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
    let tokens = logged_in(&app).await;
    assert_eq!(
        app.claims_of_unverified(&tokens.access)["iss"],
        "https://auth.example.org"
    );
}

#[tokio::test]
async fn a_token_made_with_the_public_key_as_an_hmac_secret_or_unsigned_is_refused() {
    // Arrange
    let app = spawn_app_with(stored_keys(None)).await;
    let tokens = logged_in(&app).await;
    let keys = key_set(&app).await;
    let kid = kid_of(&tokens.access);
    let claims = app.claims_of_unverified(&tokens.access);
    let x = keys[0]["x"].as_str().unwrap();
    let public_key_spellings = [
        x.as_bytes().to_vec(),
        URL_SAFE_NO_PAD.decode(x).unwrap(),
        keys[0].to_string().into_bytes(),
    ];
    let mut forgeries: Vec<String> = public_key_spellings
        .iter()
        .flat_map(|secret| {
            [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512].map(|algorithm| {
                let mut header = Header::new(algorithm);
                header.kid = Some(kid.clone());
                forge(&header, &claims, secret)
            })
        })
        .collect();
    // `alg: none`, naming our key.
    let unsigned_header = json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string();
    let payload = tokens.access.split('.').nth(1).unwrap();
    forgeries.push(format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(unsigned_header)
    ));

    // Act and assert
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);
    for forged in forgeries {
        app.get_me(&forged).await.assert_access_token_refused();
    }
}

#[tokio::test]
async fn a_token_of_an_unknown_key_another_issuer_or_another_audience_is_refused() {
    // Arrange: a foreign Ed25519 key naming our key's id, and instances on the same keys that
    // issue for another audience and as another issuer.
    let app = spawn_app_with(stored_keys(None)).await;
    let tokens = logged_in(&app).await;
    let other_audience = app
        .another_instance_with(|config| config.audience = vec!["billing".into()])
        .await;
    let other_issuer = app
        .another_instance_with(|config| config.issuer = Some("https://elsewhere.example".into()))
        .await;
    let foreign_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&foreign_key).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid_of(&tokens.access));
    let foreign = jsonwebtoken::encode(
        &header,
        &app.claims_of_unverified(&tokens.access),
        &EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();

    // Act
    let for_billing = other_audience.login("ann@example.org", PASSWORD).await;
    let from_elsewhere = other_issuer.login("ann@example.org", PASSWORD).await;

    // Assert: each is refused here, and accepted where it was meant for.
    let for_billing = for_billing.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let from_elsewhere = from_elsewhere.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        other_audience.get_me(&for_billing).await.status,
        StatusCode::OK
    );
    assert_eq!(
        other_issuer.get_me(&from_elsewhere).await.status,
        StatusCode::OK
    );
    for refused in [foreign, for_billing, from_elsewhere] {
        app.get_me(&refused).await.assert_access_token_refused();
    }
}

#[tokio::test]
async fn a_rotated_key_is_published_first_and_signs_after_the_activation_delay() {
    // Arrange
    let app = spawn_app_with(stored_keys(None)).await;
    let other = app.another_instance().await;
    let user = app.register_user("ann@example.org").await;
    let before = app.login_user(&user).await;

    // Act: rotate; both instances reload within their interval.
    let next = app
        .admin
        .rotate_signing_key(false)
        .await
        .expect("a stored key");
    for instance in [&app, &other] {
        instance.admin.reload().await;
    }
    let published = key_set(&other).await;
    let still_old = other.login_user(&user).await;
    app.clock
        .advance(app.config.key_activation_delay - Duration::from_secs(1));
    let last_of_the_old_key = other.login_user(&user).await;
    app.clock.advance(Duration::from_secs(1));
    for instance in [&app, &other] {
        instance.admin.reload().await;
    }
    let after = other.login_user(&user).await;

    // Assert
    let published: Vec<&str> = published
        .iter()
        .map(|key| key["kid"].as_str().unwrap())
        .collect();
    assert!(published.contains(&next.as_str()), "{published:?}");
    assert!(published.contains(&kid_of(&before.access).as_str()));
    assert_eq!(kid_of(&still_old.access), kid_of(&before.access));
    assert_eq!(kid_of(&last_of_the_old_key.access), kid_of(&before.access));
    assert_eq!(kid_of(&after.access), next);
    for instance in [&app, &other] {
        for tokens in [&last_of_the_old_key, &after] {
            assert_eq!(instance.get_me(&tokens.access).await.status, StatusCode::OK);
        }
    }
    let listed = app.admin.signing_key_states().await;
    assert_eq!(
        listed,
        [
            (next.clone(), "current".to_owned()),
            (kid_of(&before.access), "retiring".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_retired_key_is_refused_at_once_even_for_a_token_verified_before() {
    // Arrange: a token verified (and remembered as verified) by two instances.
    let app = spawn_app_with(stored_keys(None)).await;
    let other = app.another_instance().await;
    let tokens = logged_in(&app).await;
    for instance in [&app, &other] {
        assert_eq!(instance.get_me(&tokens.access).await.status, StatusCode::OK);
    }
    let retired = kid_of(&tokens.access);

    // Act
    assert!(app.admin.retire_signing_key(&retired).await);
    other.admin.reload().await;
    let replacement = app.login("ann@example.org", PASSWORD).await;

    // Assert
    for instance in [&app, &other] {
        instance
            .get_me(&tokens.access)
            .await
            .assert_access_token_refused();
        let published = key_set(instance).await;
        assert!(published.iter().all(|key| key["kid"] != retired.as_str()));
    }
    let replacement = replacement.body["access_token"].as_str().unwrap();
    assert_ne!(kid_of(replacement), retired);
    assert_eq!(
        jsonwebtoken::decode_header(replacement).unwrap().alg,
        Algorithm::EdDSA
    );
    assert_eq!(other.get_me(replacement).await.status, StatusCode::OK);
    assert!(
        !app.admin.retire_signing_key(&retired).await,
        "retired once"
    );
}

#[tokio::test]
async fn a_database_of_hs256_keys_keeps_hs256_until_the_flag_says_otherwise() {
    // Arrange: keys of an earlier build (HS256), kept in the database.
    let app = spawn_app_with(stored_keys(Some(SigningAlgorithm::HS256))).await;
    let user = app.register_user("ann@example.org").await;
    let earlier = app.login_user(&user).await;

    // Act
    let by_default = app
        .another_instance_with(|config| config.jwt_algorithm = None)
        .await;
    let kept = by_default.login_user(&user).await;
    let switched = app
        .another_instance_with(|config| config.jwt_algorithm = Some(SigningAlgorithm::EdDSA))
        .await;
    let new = switched.login_user(&user).await;

    // Assert
    let alg = |tokens: &Tokens| jsonwebtoken::decode_header(&tokens.access).unwrap().alg;
    assert_eq!(alg(&kept), Algorithm::HS256);
    assert!(key_set(&by_default).await.is_empty());
    assert_eq!(alg(&new), Algorithm::EdDSA);
    assert_eq!(key_set(&switched).await.len(), 1);
    for tokens in [&earlier, &kept, &new] {
        assert_eq!(switched.get_me(&tokens.access).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_new_algorithm_replacing_a_published_key_is_published_before_it_signs() {
    // Arrange: EdDSA keys, whose public part services downstream hold.
    let app = spawn_app_with(stored_keys(None)).await;
    let user = app.register_user("ann@example.org").await;
    let eddsa = app.login_user(&user).await;
    let es256 = |config: &mut Config| config.jwt_algorithm = Some(SigningAlgorithm::ES256);

    // Act: instances start with --jwt-algorithm ES256, twice; later, the delay has passed.
    let switched = app.another_instance_with(es256).await;
    let restarted = app.another_instance_with(es256).await;
    let during = restarted.login_user(&user).await;
    let discovery = restarted.get("/.well-known/openid-configuration").await;
    let published = key_set(&restarted).await;
    let verified_during = [
        switched.get_me(&eddsa.access).await.status,
        switched.get_me(&during.access).await.status,
    ];
    app.clock.advance(app.config.key_activation_delay);
    restarted.admin.reload().await;
    let after = restarted.login_user(&user).await;

    // Assert
    let alg = |tokens: &Tokens| jsonwebtoken::decode_header(&tokens.access).unwrap().alg;
    assert_eq!(alg(&during), Algorithm::EdDSA);
    assert_eq!(
        published.len(),
        2,
        "one ES256 key published, not one per start"
    );
    assert_eq!(
        discovery.body["id_token_signing_alg_values_supported"],
        json!(["EdDSA", "ES256"])
    );
    assert_eq!(alg(&after), Algorithm::ES256);
    assert_eq!(verified_during, [StatusCode::OK; 2]);
    // Verified by an instance that has not reloaded since it published the key.
    assert_eq!(switched.get_me(&after.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_token_type_header_can_be_at_jwt() {
    let app = spawn_app_with(|config| {
        stored_keys(None)(config);
        config.token_typ = "at+jwt".into();
    })
    .await;

    let tokens = logged_in(&app).await;

    let header = jsonwebtoken::decode_header(&tokens.access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_hs256_secret_key_with_another_algorithm_is_refused_at_start() {
    let app = spawn_app_with(|_| {}).await;
    let mut config = app.config.clone();
    config.jwt_algorithm = Some(SigningAlgorithm::EdDSA);

    let message = refused_start(&config).await;

    assert!(
        message.contains("--secret-key is an HS256 secret"),
        "{message}"
    );
}

#[tokio::test]
async fn an_expired_token_is_refused_even_after_it_was_verified() {
    let app = spawn_app_with(stored_keys(None)).await;
    let tokens = logged_in(&app).await;
    assert_eq!(app.get_me(&tokens.access).await.status, StatusCode::OK);

    app.clock.advance(app.config.access_token_lifetime);

    app.get_me(&tokens.access)
        .await
        .assert_access_token_refused();
}

#[tokio::test]
async fn a_retired_signing_key_is_replaced_by_a_key_of_its_algorithm_without_the_flag() {
    // Arrange: ES256 keys, retired from a command line that does not repeat the flag.
    let app = spawn_app_with(stored_keys(Some(SigningAlgorithm::ES256))).await;
    let tokens = logged_in(&app).await;
    let without_flag = app
        .another_instance_with(|config| config.jwt_algorithm = None)
        .await;

    // Act
    assert!(
        without_flag
            .admin
            .retire_signing_key(&kid_of(&tokens.access))
            .await
    );
    app.admin.reload().await;
    let replacement = app.login("ann@example.org", PASSWORD).await;

    // Assert
    let replacement = replacement.body["access_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(replacement).unwrap().alg,
        Algorithm::ES256
    );
}

#[tokio::test]
async fn a_stored_key_of_an_unknown_algorithm_stops_the_start_with_its_kid() {
    // Arrange
    let app = spawn_app_with(stored_keys(None)).await;
    let tokens = logged_in(&app).await;
    let kid = kid_of(&tokens.access);
    app.query(&format!(
        "UPDATE signing_keys SET algorithm = 'RS256' WHERE kid = '{kid}'"
    ));

    // Act
    let message = refused_start(&app.config).await;

    // Assert
    assert!(message.contains(&kid), "{message}");
    assert!(message.contains("damaged"), "{message}");
}
