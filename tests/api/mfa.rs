//! Two-factor login (TOTP, RFC 6238, and recovery codes): enrolment, confirmation, login with a
//! one-time code, replay and drift, throttling, disabling, the secret at rest, the `amr` claim
//! and the audit events. Codes are computed here from the secret and the service's clock.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use restful_auth::auth::vault::MasterKey;
use restful_auth::domain::audit::AuditQuery;
use restful_auth::domain::clock::Clock as _;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TestApp, TestResponse, TestUser, Tokens, spawn_app, spawn_app_with, tokens_of,
};

const ENROL: &str = "/api/me/mfa/totp/";
const CONFIRM: &str = "/api/me/mfa/totp/confirm/";
const STATUS: &str = "/api/me/mfa/";

/// The code an authenticator app shows for `secret` (base32) at `time`.
fn code_at(secret: &str, time: i64) -> String {
    let bytes = base32_decode(secret);
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes)
        .expect("a valid TOTP secret")
        .generate(u64::try_from(time).expect("a time after 1970"))
}

fn base32_decode(secret: &str) -> Vec<u8> {
    totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("base32")
}

/// The code of the service's current time step.
fn code_now(app: &TestApp, secret: &str) -> String {
    code_at(secret, app.clock.now())
}

/// Moves the service's clock to the next 30-second step: a code of the step just used would
/// be a replay.
fn next_step(app: &TestApp) {
    app.clock.advance(Duration::from_secs(30));
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> TestResponse {
    let body = body.map(|body| ("application/json", body.to_string().into_bytes()));
    app.request(method, path, Some(token), body).await
}

async fn enrol(app: &TestApp, access: &str) -> TestResponse {
    call(app, Method::POST, ENROL, access, None).await
}

/// Starts an enrolment; its secret.
async fn enrolled_secret(app: &TestApp, access: &str) -> String {
    let response = enrol(app, access).await;
    assert_eq!(response.status, StatusCode::CREATED, "{response:?}");
    response.body["secret"].as_str().unwrap().to_owned()
}

async fn confirm(app: &TestApp, access: &str, code: &str) -> TestResponse {
    call(
        app,
        Method::POST,
        CONFIRM,
        access,
        Some(json!({"code": code})),
    )
    .await
}

async fn status(app: &TestApp, access: &str) -> TestResponse {
    call(app, Method::GET, STATUS, access, None).await
}

/// A 204 has no body, so no media type.
async fn disable(app: &TestApp, access: &str, body: Value) -> TestResponse {
    let request = Request::builder()
        .method(Method::DELETE)
        .uri(ENROL)
        .header(header::AUTHORIZATION, format!("Bearer {access}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send_raw(request).await
}

/// Ann, logged in, with TOTP on: her fresh tokens, the secret and her recovery codes. The
/// clock is on the step after the one the confirmation used.
struct Enrolled {
    user: TestUser,
    tokens: Tokens,
    secret: String,
    recovery_codes: Vec<String>,
}

async fn enrolled(app: &TestApp) -> Enrolled {
    let (user, tokens) = app.register_and_login().await;
    let secret = enrolled_secret(app, &tokens.access).await;
    let confirmed = confirm(app, &tokens.access, &code_now(app, &secret)).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    let recovery_codes = confirmed.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    next_step(app);
    // Access tokens live 30 seconds: the step is as long.
    let tokens = app.refresh_ok(&tokens.refresh).await;
    Enrolled {
        user,
        tokens,
        secret,
        recovery_codes,
    }
}

async fn login_with(app: &TestApp, user: &TestUser, second: Value) -> TestResponse {
    let mut body = json!({"email": user.email, "password": user.password});
    body.as_object_mut()
        .unwrap()
        .extend(second.as_object().unwrap().clone());
    app.post_json("/api/login/", &body).await
}

/// A login as if it came over a connection from `peer`.
async fn login_from(app: &TestApp, peer: &str, body: Value) -> TestResponse {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/login/")
        .header(header::CONTENT_TYPE, "application/json")
        .extension(ConnectInfo(
            format!("{peer}:40000").parse::<SocketAddr>().unwrap(),
        ))
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send(request).await
}

#[track_caller]
fn assert_mfa_required(response: &TestResponse) {
    response.assert_unauthorized(json!({
        "detail": "A one-time code is required.",
        "code": "mfa_required",
    }));
}

#[track_caller]
fn assert_mfa_invalid(response: &TestResponse) {
    response.assert_unauthorized(json!({
        "detail": "Invalid one-time code.",
        "code": "mfa_invalid",
    }));
}

async fn event_names(app: &TestApp, user_id: i64) -> Vec<(String, Value)> {
    let mut rows = app
        .admin
        .audit(AuditQuery {
            user_id: Some(user_id),
            limit: 100,
            ..AuditQuery::default()
        })
        .await;
    rows.reverse();
    rows.into_iter()
        .map(|row| (row.event, row.detail))
        .collect()
}

#[tokio::test]
async fn enrolment_answers_the_secret_its_otpauth_url_and_a_qr_code() {
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;

    let response = enrol(&app, &tokens.access).await;

    assert_eq!(response.status, StatusCode::CREATED, "{response:?}");
    let secret = response.body["secret"].as_str().unwrap();
    assert_eq!(
        base32_decode(secret).len(),
        20,
        "160 bits, as RFC 4226 advises"
    );
    assert_eq!(
        response.body["otpauth_url"],
        format!(
            "otpauth://totp/restful-auth:{}?secret={secret}&issuer=restful-auth\
             &algorithm=SHA1&digits=6&period=30",
            user.email
        )
    );
    let svg = response.body["qr_svg"].as_str().unwrap();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
}

#[tokio::test]
async fn a_pending_factor_changes_nothing_at_login_and_a_second_enrolment_replaces_it() {
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let first = enrolled_secret(&app, &tokens.access).await;

    let login = app.login(&user.email, PASSWORD).await;
    let second = enrolled_secret(&app, &tokens.access).await;
    let with_first = confirm(&app, &tokens.access, &code_now(&app, &first)).await;
    let with_second = confirm(&app, &tokens.access, &code_now(&app, &second)).await;

    assert_eq!(login.status, StatusCode::OK, "{login:?}");
    assert_ne!(first, second);
    with_first.assert(StatusCode::BAD_REQUEST, json!({"code": ["Invalid code."]}));
    assert_eq!(with_second.status, StatusCode::OK, "{with_second:?}");
}

#[tokio::test]
async fn a_wrong_code_confirms_nothing() {
    let app = spawn_app().await;
    let (user, tokens) = app.register_and_login().await;
    let secret = enrolled_secret(&app, &tokens.access).await;
    let wrong = if code_now(&app, &secret) == "000000" {
        "111111"
    } else {
        "000000"
    };

    let response = confirm(&app, &tokens.access, wrong).await;

    response.assert(StatusCode::BAD_REQUEST, json!({"code": ["Invalid code."]}));
    status(&app, &tokens.access).await.assert(
        StatusCode::OK,
        json!({"totp": false, "recovery_codes_left": 0}),
    );
    let login = app.login(&user.email, PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK);
}

#[tokio::test]
async fn confirming_answers_ten_recovery_codes_and_the_status_counts_them() {
    let app = spawn_app().await;
    let (_, tokens) = app.register_and_login().await;
    let before = status(&app, &tokens.access).await;
    let secret = enrolled_secret(&app, &tokens.access).await;

    let confirmed = confirm(&app, &tokens.access, &code_now(&app, &secret)).await;

    before.assert(
        StatusCode::OK,
        json!({"totp": false, "recovery_codes_left": 0}),
    );
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    let codes = confirmed.body["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    status(&app, &tokens.access).await.assert(
        StatusCode::OK,
        json!({"totp": true, "recovery_codes_left": 10}),
    );
    let stored = app.database_files();
    for code in codes {
        let code = code.as_str().unwrap();
        assert!(
            !contains(&stored, code.as_bytes()),
            "recovery code {code} stored as it is"
        );
    }
}

#[tokio::test]
async fn with_totp_on_a_login_needs_the_current_code() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;
    let code = code_now(&app, &ann.secret);

    let without = app.login(&ann.user.email, PASSWORD).await;
    let wrong_password = app
        .post_json(
            "/api/login/",
            &json!({"email": ann.user.email, "password": "not the password", "otp": code}),
        )
        .await;
    let wrong_code = login_with(&app, &ann.user, json!({"otp": "not a code"})).await;
    let with_code = login_with(&app, &ann.user, json!({"otp": code})).await;

    assert_mfa_required(&without);
    wrong_password.assert_invalid_credentials();
    assert_mfa_invalid(&wrong_code);
    tokens_of(&with_code);
}

#[tokio::test]
async fn a_code_is_accepted_once_on_any_instance() {
    let app = spawn_app().await;
    let other = app.another_instance().await;
    let ann = enrolled(&app).await;
    let code = code_now(&app, &ann.secret);

    let first = login_with(&app, &ann.user, json!({"otp": code})).await;
    let again = login_with(&app, &ann.user, json!({"otp": code})).await;
    let elsewhere = login_with(&other, &ann.user, json!({"otp": code})).await;

    tokens_of(&first);
    assert_mfa_invalid(&again);
    assert_mfa_invalid(&elsewhere);
}

#[tokio::test]
async fn codes_one_step_off_are_accepted_and_two_steps_off_refused() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;
    next_step(&app);
    next_step(&app);
    let now = app.clock.now();
    let at = |steps: i64| code_at(&ann.secret, now + 30 * steps);

    // Steps in increasing order: a step earlier than one accepted is a replay.
    let two_behind = login_with(&app, &ann.user, json!({"otp": at(-2)})).await;
    let one_behind = login_with(&app, &ann.user, json!({"otp": at(-1)})).await;
    let two_ahead = login_with(&app, &ann.user, json!({"otp": at(2)})).await;
    let one_ahead = login_with(&app, &ann.user, json!({"otp": at(1)})).await;

    assert_mfa_invalid(&two_behind);
    tokens_of(&one_behind);
    assert_mfa_invalid(&two_ahead);
    tokens_of(&one_ahead);
}

#[tokio::test]
async fn of_concurrent_logins_with_one_code_exactly_one_wins() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;
    let body = json!({
        "email": ann.user.email, "password": PASSWORD, "otp": code_now(&app, &ann.secret)
    });

    // Four: within the account's five attempts in flight.
    let answers = app.post_json_concurrently("/api/login/", &body, 4).await;

    let won = answers
        .iter()
        .filter(|answer| answer.status == StatusCode::OK)
        .count();
    assert_eq!(won, 1, "{answers:?}");
    for answer in answers
        .iter()
        .filter(|answer| answer.status != StatusCode::OK)
    {
        assert_mfa_invalid(answer);
    }
}

#[tokio::test]
async fn a_recovery_code_logs_in_once() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;
    let code = &ann.recovery_codes[3];

    let first = login_with(&app, &ann.user, json!({"recovery_code": code})).await;
    let again = login_with(&app, &ann.user, json!({"recovery_code": code})).await;
    let made_up = login_with(
        &app,
        &ann.user,
        json!({"recovery_code": "aaaa-bbbb-cccc-dddd"}),
    )
    .await;

    let tokens = tokens_of(&first);
    assert_eq!(app.claims_of(&tokens.access)["amr"], json!(["pwd", "otp"]));
    assert_mfa_invalid(&again);
    assert_mfa_invalid(&made_up);
    status(&app, &tokens.access).await.assert(
        StatusCode::OK,
        json!({"totp": true, "recovery_codes_left": 9}),
    );
}

#[tokio::test]
async fn disabling_with_the_code_or_the_password_ends_every_other_session() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;
    let phone =
        tokens_of(&login_with(&app, &ann.user, json!({"otp": code_now(&app, &ann.secret)})).await);
    next_step(&app);
    let laptop = app.refresh_ok(&ann.tokens.refresh).await;
    let phone = app.refresh_ok(&phone.refresh).await;

    let wrong_code = disable(&app, &laptop.access, json!({"code": "000000x"})).await;
    let wrong_password = disable(&app, &laptop.access, json!({"password": "nope nope"})).await;
    let neither = disable(&app, &laptop.access, json!({})).await;
    let with_code = disable(
        &app,
        &laptop.access,
        json!({"code": code_now(&app, &ann.secret)}),
    )
    .await;

    wrong_code.assert(StatusCode::BAD_REQUEST, json!({"code": ["Invalid code."]}));
    wrong_password.assert(
        StatusCode::BAD_REQUEST,
        json!({"password": ["Your password was entered incorrectly. Please enter it again."]}),
    );
    neither.assert(
        StatusCode::BAD_REQUEST,
        json!({"non_field_errors": ["Send the current one-time code or the password."]}),
    );
    assert_eq!(with_code.status, StatusCode::NO_CONTENT, "{with_code:?}");
    app.get_me(&phone.access)
        .await
        .assert_access_token_refused();
    assert_eq!(app.get_me(&laptop.access).await.status, StatusCode::OK);
    tokens_of(&app.login(&ann.user.email, PASSWORD).await);
    status(&app, &laptop.access).await.assert(
        StatusCode::OK,
        json!({"totp": false, "recovery_codes_left": 0}),
    );

    // On again, then off with the password.
    let secret = enrolled_secret(&app, &laptop.access).await;
    let confirmed = confirm(&app, &laptop.access, &code_now(&app, &secret)).await;
    assert_eq!(confirmed.status, StatusCode::OK);
    let tablet = tokens_of(
        &login_with(
            &app,
            &ann.user,
            json!({"recovery_code": confirmed.body["recovery_codes"][0]}),
        )
        .await,
    );
    let with_password = disable(&app, &laptop.access, json!({"password": PASSWORD})).await;
    let again = disable(&app, &laptop.access, json!({"password": PASSWORD})).await;

    assert_eq!(
        with_password.status,
        StatusCode::NO_CONTENT,
        "{with_password:?}"
    );
    app.get_me(&tablet.access)
        .await
        .assert_access_token_refused();
    again.assert(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn code_failures_are_throttled_per_account_and_strangers_cannot_lock_the_owner_out() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;
    let owners = "203.0.113.1";
    let login = |code: String| json!({"email": ann.user.email, "password": PASSWORD, "otp": code});
    let first = login_from(&app, owners, login(code_now(&app, &ann.secret))).await;
    tokens_of(&first);
    next_step(&app);

    // A stranger who knows the password guesses codes: five failures fill the account's
    // bucket for addresses it does not know, then every stranger waits.
    for _ in 0..5 {
        let guess = login_from(&app, "198.51.100.1", login("000000x".into())).await;
        assert_mfa_invalid(&guess);
    }
    let sixth = login_from(&app, "198.51.100.1", login(code_now(&app, &ann.secret))).await;
    let another_stranger =
        login_from(&app, "198.51.100.2", login(code_now(&app, &ann.secret))).await;
    let owner = login_from(&app, owners, login(code_now(&app, &ann.secret))).await;

    for throttled in [&sixth, &another_stranger] {
        assert_eq!(
            throttled.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{throttled:?}"
        );
        assert!(throttled.headers.contains_key(header::RETRY_AFTER));
    }
    tokens_of(&owner);
    let events = event_names(&app, ann.user.id).await;
    assert!(
        events.iter().any(|(name, _)| name == "login.throttled"),
        "{events:?}"
    );
}

#[tokio::test]
async fn code_failures_can_be_switched_off_like_the_other_limits() {
    let app = spawn_app_with(|config| {
        config.throttle_mfa_account = restful_auth::config::Limit(None);
    })
    .await;
    let ann = enrolled(&app).await;

    for _ in 0..8 {
        let guess = login_with(&app, &ann.user, json!({"otp": "000000x"})).await;
        assert_mfa_invalid(&guess);
    }
    let right = login_with(&app, &ann.user, json!({"otp": code_now(&app, &ann.secret)})).await;

    tokens_of(&right);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

#[tokio::test]
async fn the_totp_secret_is_stored_only_sealed_under_the_master_key() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;

    let stored = app.database_files();
    let sealed = app.query("SELECT secret FROM totp_factors");

    assert!(
        !contains(&stored, ann.secret.as_bytes()),
        "the base32 secret"
    );
    assert!(
        !contains(&stored, &base32_decode(&ann.secret)),
        "the raw secret"
    );
    let sealed = String::from_utf8(sealed[0][0].clone().unwrap()).unwrap();
    assert!(sealed.starts_with("enc:v1:"), "{sealed}");
}

#[tokio::test]
async fn after_a_rewrap_the_new_master_key_opens_the_totp_secret() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;
    let new_key = MasterKey::generate();

    app.admin.rewrap(&new_key).await;
    let rewrapped = app
        .another_instance_with(|config| config.master_key = Some(new_key))
        .await;
    let login = login_with(
        &rewrapped,
        &ann.user,
        json!({"otp": code_now(&app, &ann.secret)}),
    )
    .await;

    tokens_of(&login);
}

#[tokio::test]
async fn the_access_token_and_the_session_list_say_how_the_session_began() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;

    let with_code =
        tokens_of(&login_with(&app, &ann.user, json!({"otp": code_now(&app, &ann.secret)})).await);
    let refreshed = app.refresh_ok(&with_code.refresh).await;
    let sessions = call(&app, Method::GET, "/api/sessions/", &refreshed.access, None).await;

    assert_eq!(app.claims_of(&ann.tokens.access)["amr"], json!(["pwd"]));
    assert_eq!(
        app.claims_of(&with_code.access)["amr"],
        json!(["pwd", "otp"])
    );
    assert_eq!(
        app.claims_of(&refreshed.access)["amr"],
        json!(["pwd", "otp"])
    );
    let sessions = sessions.body.as_array().unwrap().clone();
    let amr_of = |current: bool| {
        sessions
            .iter()
            .find(|session| session["current"] == json!(current))
            .map(|session| session["amr"].clone())
    };
    assert_eq!(amr_of(true), Some(json!(["pwd", "otp"])));
    assert_eq!(amr_of(false), Some(json!(["pwd"])));
}

#[tokio::test]
async fn enabling_failing_recovering_and_disabling_are_audited() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;

    app.login(&ann.user.email, PASSWORD).await;
    login_with(&app, &ann.user, json!({"otp": "000000x"})).await;
    login_with(
        &app,
        &ann.user,
        json!({"recovery_code": ann.recovery_codes[0]}),
    )
    .await;
    disable(&app, &ann.tokens.access, json!({"password": PASSWORD})).await;

    let events = event_names(&app, ann.user.id).await;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let reasons: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "login.failed")
        .map(|(_, detail)| &detail["reason"])
        .collect();
    assert_eq!(
        names,
        [
            "user.registered",
            "login.succeeded",
            "mfa.enabled",
            "login.failed",
            "login.failed",
            "mfa.recovery_code_used",
            "login.succeeded",
            "mfa.disabled",
            "session.ended",
        ]
    );
    assert_eq!(reasons, [&json!("mfa_required"), &json!("mfa_invalid")]);
    let stored = app.database_files();
    assert!(!contains(&stored, ann.recovery_codes[0].as_bytes()));
}

#[tokio::test]
async fn the_two_factor_endpoints_need_an_access_token() {
    let app = spawn_app().await;

    for (method, path) in [
        (Method::GET, STATUS),
        (Method::POST, ENROL),
        (Method::DELETE, ENROL),
        (Method::POST, CONFIRM),
    ] {
        let response = app.request(method, path, None, None).await;
        response.assert_not_authenticated();
    }
}

#[tokio::test]
async fn enrolling_again_while_totp_is_on_is_refused() {
    let app = spawn_app().await;
    let ann = enrolled(&app).await;

    let again = enrol(&app, &ann.tokens.access).await;

    again.assert(
        StatusCode::BAD_REQUEST,
        json!({"non_field_errors": ["Two-factor login is already on: turn it off first."]}),
    );
}
