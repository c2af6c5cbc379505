//! The browsable API: a page for every API endpoint at the endpoint's own URL (for a browser,
//! whose `Accept` prefers HTML), the index at `/`, the reference at `/api/docs/`, the OpenAPI
//! document at `/api/schema/`, the pages mailed links open (`/reset/`, `/verify/`), and the
//! stylesheet and scripts they load, all compiled into the binary.
//!
//! The pages are read from the OpenAPI document, so they show exactly what the API does. They
//! are the same for everyone: no token or password is ever rendered by the server or put into
//! a URL. The scripts send the requests with `fetch` and keep the tokens of a login in the
//! tab's `sessionStorage`.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::server::Server;

use crate::http::openapi::GeneralAnswers;
use crate::http::{ApiError, AppState, Reply, with_and_without_slash};
use crate::store::Store;

mod assets;
mod catalogue;
mod negotiation;
mod pages;

use catalogue::Catalogue;

/// `/`, the reference and the document (with and without their slashes), and the assets. The
/// document names `public_url` (`--public-url`) as its server.
pub fn routes<S: Store>(public_url: Option<&str>) -> Router<AppState<S>> {
    let router = Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset));
    let router = with_and_without_slash(router, "/reset", get(reset));
    let router = with_and_without_slash(router, "/verify", get(verify));
    let router = with_and_without_slash(router, "/api/docs", get(docs));
    let schema_routes = with_and_without_slash(Router::new(), "/api/schema", get(schema))
        .with_state(Arc::new(served(public_url)));
    router.merge(schema_routes)
}

/// The whole document: the API's part and the pages', built once (it depends on the code only).
pub fn document() -> &'static Document {
    static DOCUMENT: LazyLock<Document> = LazyLock::new(|| {
        let mut document = crate::http::openapi::api_document();
        document.merge(PagesDoc::openapi());
        document
    });
    &DOCUMENT
}

/// The document as `/api/schema/` serves it: with the URL clients reach the service at, so that
/// a client generated from it knows where to send its requests.
fn served(public_url: Option<&str>) -> Document {
    let mut document = document().clone();
    // Without `--public-url` the service does not know its own address (the bind address, e.g.
    // `0.0.0.0:8000`, is no client's URL): a relative server resolves against the URL the
    // document was fetched from (OpenAPI 3.1, "Server Object"), which is right behind any
    // proxy. It is what an absent `servers` means too, written out for clients that want one.
    let url = public_url.unwrap_or("/");
    document.servers = Some(vec![Server::new(url)]);
    document
}

/// The pages' part of the document, which follows the API's: the index and the navigation list
/// endpoints in the document's order. The pages and their assets are for browsers, not for
/// programs: they carry `x-internal`, which documentation tools and client generators that
/// know it leave out (the document itself stays in, as the one program-readable page).
#[derive(OpenApi)]
#[openapi(paths(schema, docs, index, reset, verify, asset), modifiers(&GeneralAnswers))]
struct PagesDoc;

/// The OpenAPI 3.1 document of this service
///
/// Every endpoint, request body, answer and error shape, generated from the code. `/api/docs/`
/// renders it for people.
#[utoipa::path(
    get,
    path = "/api/schema/",
    tag = "documentation",
    responses((status = 200, description = "The OpenAPI document.", body = serde_json::Value)),
)]
async fn schema(State(document): State<Arc<Document>>) -> Response {
    Reply(StatusCode::OK, &*document).into_response()
}

/// A browser visiting an API endpoint's URL gets the endpoint's page whatever the method, as
/// DRF's browsable API does; an unknown URL gets a page that says so. Every other request,
/// and every client that does not prefer HTML, goes on to the endpoint untouched.
pub async fn browsable(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>();
    // Answers that differ by `Accept` say so, so that no cache serves a page to a JSON client.
    let negotiated = route.is_none_or(|route| catalogue().browsable(route.as_str()).is_some());
    let mut response = if !negotiation::prefers_html(request.headers()) {
        next.run(request).await
    } else {
        match route.map(|route| catalogue().browsable(route.as_str())) {
            None => pages::not_found(catalogue()),
            Some(Some(endpoint)) => pages::endpoint(catalogue(), endpoint, &request),
            Some(None) => next.run(request).await,
        }
    };
    if negotiated {
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("Accept"));
    }
    response
}

/// The endpoints, with a form for each
///
/// The browsable API's index: every endpoint, in the order a newcomer calls them.
#[utoipa::path(
    get,
    path = "/",
    tag = "documentation",
    extensions(("x-internal" = json!(true))),
    responses((status = 200, description = "The index page.", content_type = "text/html")),
)]
async fn index() -> Response {
    pages::index(catalogue())
}

/// The API reference
///
/// This document, rendered for people.
#[utoipa::path(
    get,
    path = "/api/docs/",
    tag = "documentation",
    extensions(("x-internal" = json!(true))),
    responses((status = 200, description = "The reference page.", content_type = "text/html")),
)]
async fn docs() -> Response {
    pages::docs(catalogue())
}

/// Set a new password with a mailed link
///
/// The page a password-reset link opens: `/reset/#token=…`. Its script reads the token from
/// the fragment (which no request carries) and posts it with the new password to
/// `/api/password/reset/confirm/`.
#[utoipa::path(
    get,
    path = "/reset/",
    tag = "documentation",
    extensions(("x-internal" = json!(true))),
    responses((status = 200, description = "The page.", content_type = "text/html")),
)]
async fn reset() -> Response {
    pages::reset(catalogue())
}

/// Confirm an address with a mailed link
///
/// The page a verification link opens: `/verify/#token=…`. Its script posts the token from
/// the fragment to `/api/email/verify/confirm/`.
#[utoipa::path(
    get,
    path = "/verify/",
    tag = "documentation",
    extensions(("x-internal" = json!(true))),
    responses((status = 200, description = "The page.", content_type = "text/html")),
)]
async fn verify() -> Response {
    pages::verify(catalogue())
}

/// A stylesheet, script or icon of the pages
#[utoipa::path(
    get,
    path = "/assets/{name}",
    tag = "documentation",
    extensions(("x-internal" = json!(true))),
    params(("name" = String, Path, description = "The file name, e.g. `site.css`.")),
    responses(
        (status = 200, description = "The file."),
        (status = 404, description = "There is no such file.",
            body = crate::http::openapi::Detail),
    ),
)]
async fn asset(Path(name): Path<String>) -> Response {
    match assets::find(&name) {
        Some(asset) => asset.into_response(),
        None => ApiError::NotFound.into_response(),
    }
}

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
        let document = serde_json::to_value(document()).expect("the OpenAPI document serializes");
        Catalogue::from_document(&document)
    });
    &CATALOGUE
}
