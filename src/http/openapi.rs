//! The API's part of the OpenAPI 3.1 document, which `crate::web` completes with the pages'
//! part and serves at `/api/schema/`.
//!
//! It is generated from the `#[utoipa::path]` annotations on the handlers and from the types
//! they read and answer (request bodies: `request_body!` in [`super::body`]), so
//! that it changes with them; the browsable pages (`crate::web`) are built from it too.

use serde_json::json;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse};

/// The API's part of the document; the pages add theirs (`crate::web::document`).
pub fn api_document() -> Document {
    ApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "restful-auth",
        description = "A user-authentication REST service: register with an email and a password, \
            log in for a short-lived JWT access token and an opaque rotating refresh token, refresh, \
            log out, and read or change your profile.\n\n\
            Request bodies are `application/json` or `application/x-www-form-urlencoded`. Every \
            path answers with and without its trailing slash. Errors are `{\"detail\": \"…\"}` \
            (with `code` where there is one), or `{\"<field>\": [\"…\"]}` for invalid fields; an \
            unknown path answers 404 `{\"detail\": \"Not found.\"}`.\n\n\
            A browser (an `Accept` header that prefers `text/html`) gets an HTML page for every \
            endpoint, with a form to call it; `/` lists them.",
    ),
    paths(
        // In the order a newcomer calls them: the index and the navigation follow it.
        super::accounts::register,
        super::tokens::login,
        super::me::show,
        super::me::replace,
        super::me::update,
        super::sessions::list,
        super::sessions::end_one,
        super::activity::list,
        super::sessions::change_password,
        super::email::request,
        super::email::confirm,
        super::password_reset::request,
        super::password_reset::confirm,
        super::mfa::status,
        super::mfa::enrol,
        super::mfa::confirm,
        super::mfa::disable,
        super::tokens::refresh,
        super::tokens::logout,
        super::sessions::logout_all,
        super::well_known::jwks,
        super::well_known::discovery,
    ),
    components(
        schemas(Detail),
        responses(
            MethodNotAllowed,
            NotAuthenticated,
            PayloadTooLarge,
            UnsupportedMediaType,
            ServiceUnavailable,
            Throttled,
        ),
    ),
    modifiers(&BearerToken, &GeneralAnswers, &OperationsEndpoints),
    tags(
        (name = "accounts", description = "Creating an account: its email is what it logs in \
            with, and its username until it is changed."),
        (name = "sessions", description = "A login starts a session with an access token (a JWT, \
            valid for seconds) and a refresh token (valid for days, single use). Refreshing trades \
            the refresh token for new ones; logging out ends the session. The bearer of an \
            access token can list their sessions and end any or all of them."),
        (name = "tokens", description = "Access tokens are JWTs that any service verifies on \
            its own: signed with EdDSA (or ES256) keys published here, naming this service as \
            `iss` and the configured audience as `aud`. JWT middleware configures itself from \
            the discovery document."),
        (name = "profile", description = "The caller's own profile and password, for the bearer \
            of an access token, and the proof that their email address is theirs."),
        (name = "password reset", description = "A forgotten password is reset through a link \
            mailed to the account's address (`<public-url>/reset/#token=…`): single use, \
            short-lived, stored only as a digest."),
        (name = "two-factor", description = "Two-factor login: an authenticator app's one-time \
            codes (TOTP, RFC 6238) and single-use recovery codes. Set up an app, confirm it with \
            a code, and from then on a login needs `otp` (or `recovery_code`) besides the \
            password."),
        (name = "documentation", description = "This document, and the pages for people."),
        (name = "operations", description = "For load balancers, orchestrators and monitoring."),
    ),
)]
struct ApiDoc;

pub(crate) use shapes::{BadRequest, Detail, Throttled};
use shapes::{
    MethodNotAllowed, NotAuthenticated, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType,
};

/// The error answers many endpoints share, described for the document. Nothing constructs
/// these types (`ApiError` writes the bodies): they exist for their derives.
#[expect(dead_code, reason = "these types only describe bodies")]
mod shapes {
    use utoipa::{ToResponse, ToSchema};

    /// Every error but invalid fields.
    #[derive(ToSchema)]
    #[schema(example = json!({"detail": "Token is invalid or expired", "code": "token_not_valid"}))]
    pub(crate) struct Detail {
        /// What went wrong, for a person.
        detail: String,
        /// For a program, where SimpleJWT has one (`token_not_valid`,
        /// `bad_authorization_header`).
        #[schema(required = false)]
        code: String,
    }

    /// Invalid fields (every one at once), or a body that is not JSON.
    #[derive(ToSchema)]
    #[serde(untagged)]
    pub(crate) enum BadRequest {
        Fields(crate::http::error::FieldErrors),
        MalformedBody(Detail),
    }

    /// The endpoint does not answer this method.
    #[derive(ToResponse)]
    #[response(
        headers(("Allow" = String, description = "The methods the endpoint answers.")),
        example = json!({"detail": "Method \"DELETE\" not allowed."}),
    )]
    pub(crate) struct MethodNotAllowed(Detail);

    /// No `Authorization: Bearer …` header (`Authentication credentials were not provided.`),
    /// or an access token that is malformed, expired, of an ended session or of an inactive
    /// account (`token_not_valid`).
    #[derive(ToResponse)]
    #[response(
        headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"api\"`.")),
        example = json!({
            "detail": "Given token not valid for any token type",
            "code": "token_not_valid"
        }),
    )]
    pub(crate) struct NotAuthenticated(Detail);

    /// The body is over 64 KiB.
    #[derive(ToResponse)]
    #[response(example = json!({"detail": "Request body too large."}))]
    pub(crate) struct PayloadTooLarge(Detail);

    /// The body is neither JSON nor a form.
    #[derive(ToResponse)]
    #[response(example = json!({"detail": "Unsupported media type \"text/plain\" in request."}))]
    pub(crate) struct UnsupportedMediaType(Detail);

    /// The database cannot be reached, or too many password checks are waiting: try again.
    #[derive(ToResponse)]
    #[response(
        headers(("Retry-After" = String, description = "Seconds to wait: `1`.")),
        example = json!({"detail": "Service temporarily unavailable, try again later."}),
    )]
    pub(crate) struct ServiceUnavailable(Detail);

    /// Too many attempts from this address or on this account.
    #[derive(ToResponse)]
    #[response(
        headers(("Retry-After" = String, description = "Seconds to wait.")),
        example = json!({"detail": "Request was throttled. Expected available in 60 seconds."}),
    )]
    pub(crate) struct Throttled(Detail);
}

/// The caller's own endpoints (profile, password, sessions) need an access token.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, document: &mut Document) {
        document
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "The `access_token` of a login or refresh, sent as \
                             `Authorization: Bearer <access_token>`.",
                        ))
                        .build(),
                ),
            );
    }
}

/// The contract's "General" rules, which hold for every endpoint: written once here rather
/// than on every handler. The pages' part of the document applies it too.
pub struct GeneralAnswers;

impl Modify for GeneralAnswers {
    fn modify(&self, document: &mut Document) {
        for (path, item) in &mut document.paths.paths {
            if !path.starts_with("/api/") {
                continue;
            }
            for operation in operations_mut(item) {
                let is_contract = !is_tagged(operation, "documentation");
                let responses = &mut operation.responses.responses;
                responses.insert("405".into(), shared::<MethodNotAllowed>());
                if operation.security.is_some() {
                    responses.insert("401".into(), shared::<NotAuthenticated>());
                }
                if let Some(RefOr::T(body)) = &mut operation.request_body {
                    // DRF's parsers: whatever a JSON body may hold, a form may too.
                    if let Some(json) = body.content.get("application/json").cloned() {
                        body.content
                            .insert("application/x-www-form-urlencoded".into(), json);
                    }
                    responses.insert("413".into(), shared::<PayloadTooLarge>());
                    responses.insert("415".into(), shared::<UnsupportedMediaType>());
                }
                if is_contract {
                    responses.insert("503".into(), shared::<ServiceUnavailable>());
                }
            }
        }
    }
}

/// A reference to the shared answer `R`, which the document lists under `components`.
fn shared<'r, R: ToResponse<'r>>() -> RefOr<Response> {
    RefOr::Ref(Ref::new(format!(
        "#/components/responses/{}",
        R::response().0
    )))
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

fn is_tagged(operation: &Operation, tag: &str) -> bool {
    operation
        .tags
        .iter()
        .flatten()
        .any(|operation_tag| operation_tag == tag)
}

/// `/healthz`, `/readyz` and `/metrics` belong to the operations module, whose handlers carry
/// no annotation: they are described here so that the document lists every route.
struct OperationsEndpoints;

impl Modify for OperationsEndpoints {
    fn modify(&self, document: &mut Document) {
        let json = |example: serde_json::Value| {
            ContentBuilder::new()
                .schema(Some(serde_json::Value::schema()))
                .example(Some(example))
                .build()
        };
        let get = |id: &str, summary: &str, description: &str, responses: Vec<(&str, Response)>| {
            let operation = responses.into_iter().fold(
                OperationBuilder::new()
                    .operation_id(Some(id))
                    .tag("operations")
                    .summary(Some(summary))
                    .description(Some(description)),
                |operation, (status, response)| operation.response(status, response),
            );
            (HttpMethod::Get, operation.build())
        };
        let endpoints = [
            (
                "/healthz",
                get(
                    "health",
                    "Whether the process answers",
                    "Needs no database: for liveness probes.",
                    vec![(
                        "200",
                        ResponseBuilder::new()
                            .description("The process answers.")
                            .content("application/json", json(json!({"status": "ok"})))
                            .build(),
                    )],
                ),
            ),
            (
                "/readyz",
                get(
                    "readiness",
                    "Whether the service can serve",
                    "The database answers and carries the schema this build expects: for \
                     readiness probes and load balancers.",
                    vec![
                        (
                            "200",
                            ResponseBuilder::new()
                                .description("Ready.")
                                .content("application/json", json(json!({"status": "ready"})))
                                .build(),
                        ),
                        (
                            "503",
                            ResponseBuilder::new()
                                .description("The database is not ready.")
                                .content(
                                    "application/json",
                                    json(json!({
                                        "status": "unavailable",
                                        "detail": "The database is not ready."
                                    })),
                                )
                                .build(),
                        ),
                    ],
                ),
            ),
            (
                "/metrics",
                get(
                    "metrics",
                    "Prometheus metrics",
                    "Requests by method, route and status; latencies; logins; refresh-token \
                     reuse; database connections. Served on its own address when one is \
                     configured.",
                    vec![(
                        "200",
                        ResponseBuilder::new()
                            .description("The Prometheus text format.")
                            .content(
                                "text/plain; version=0.0.4",
                                ContentBuilder::new().schema(Some(String::schema())).build(),
                            )
                            .build(),
                    )],
                ),
            ),
        ];
        for (path, (method, operation)) in endpoints {
            document
                .paths
                .paths
                .insert(path.to_owned(), PathItem::new(method, operation));
        }
    }
}
