//! The HTML pages, from the templates under `templates/` (compiled in by askama).

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::catalogue::{Catalogue, Endpoint, Operation};
use crate::http::ApiError;

/// Only the service's own scripts, styles and connections; no inline code, no frames, no
/// forms posted elsewhere: an injected tag could neither run nor send a token away.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; \
    base-uri 'none'; frame-ancestors 'none'";

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    site: &'a Catalogue,
    /// The path the navigation marks as this page.
    current: &'a str,
}

#[derive(Template)]
#[template(path = "endpoint.html")]
struct EndpointPage<'a> {
    site: &'a Catalogue,
    current: &'a str,
    endpoint: &'a Endpoint,
    /// Where this service answers, for the curl examples.
    origin: String,
}

#[derive(Template)]
#[template(path = "docs.html")]
struct DocsPage<'a> {
    site: &'a Catalogue,
    current: &'a str,
}

/// The page a mailed link opens: `/reset/` or `/verify/`.
#[derive(Template)]
#[template(path = "link.html")]
struct LinkPage<'a> {
    site: &'a Catalogue,
    current: &'a str,
    eyebrow: &'a str,
    title: &'a str,
    lead: &'a str,
    action: &'a str,
    /// The endpoint the token is posted to.
    api_path: &'a str,
    asks_password: bool,
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage<'a> {
    site: &'a Catalogue,
    current: &'a str,
}

pub fn index(site: &Catalogue) -> Response {
    html(StatusCode::OK, IndexPage { site, current: "/" })
}

pub fn docs(site: &Catalogue) -> Response {
    html(
        StatusCode::OK,
        DocsPage {
            site,
            current: "/api/docs/",
        },
    )
}

pub fn endpoint(site: &Catalogue, endpoint: &Endpoint, request: &Request) -> Response {
    let host = request
        .uri()
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "localhost:8000".to_owned());
    html(
        StatusCode::OK,
        EndpointPage {
            site,
            current: &endpoint.path,
            endpoint,
            // The scheme a proxy in front may have terminated is unknown here: an example only.
            origin: format!("http://{host}"),
        },
    )
}

/// `/reset/`: a new password with the token of a reset link.
pub fn reset(site: &Catalogue) -> Response {
    html(
        StatusCode::OK,
        LinkPage {
            site,
            current: "/reset/",
            eyebrow: "password reset",
            title: "Choose a new password",
            lead: "This page comes from the link in a password-reset mail. The link works once \
                   and for a short time only; a newer link replaces it.",
            action: "Set the new password",
            api_path: "/api/password/reset/confirm/",
            asks_password: true,
        },
    )
}

/// `/verify/`: the token of a verification link.
pub fn verify(site: &Catalogue) -> Response {
    html(
        StatusCode::OK,
        LinkPage {
            site,
            current: "/verify/",
            eyebrow: "email verification",
            title: "Confirm your address",
            lead: "This page comes from the link in a verification mail: confirming proves that \
                   the address is yours. The link works once.",
            action: "Confirm my address",
            api_path: "/api/email/verify/confirm/",
            asks_password: false,
        },
    )
}

pub fn not_found(site: &Catalogue) -> Response {
    html(StatusCode::NOT_FOUND, NotFoundPage { site, current: "" })
}

fn html(status: StatusCode, page: impl Template) -> Response {
    let body = match page.render() {
        Ok(body) => body,
        Err(error) => return ApiError::Internal(error.to_string()).into_response(),
    };
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // The URL also answers JSON: no cache may hand this page to an API client.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

impl EndpointPage<'_> {
    /// The same request from a terminal; `path` is the endpoint's, or a linked operation's.
    fn curl(&self, path: &str, operation: &Operation) -> String {
        let mut command = String::from("curl");
        if operation.method != "GET" {
            command += &format!(" -X {}", operation.method);
        }
        // `{id}` would be a glob to curl; `<id>` reads as a blank to fill in.
        let path = path.replace('{', "<").replace('}', ">");
        command += &format!(" {}", shell_quote(&format!("{}{path}", self.origin)));
        if operation.bearer {
            command += " \\\n     -H \"Authorization: Bearer $ACCESS_TOKEN\"";
        }
        if let Some(example) = &operation.example {
            command += " \\\n     -H 'Content-Type: application/json'";
            command += &format!(" \\\n     -d {}", shell_quote(example));
        }
        command
    }
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn a_quoted_word_survives_single_quotes_inside_it() {
        assert_eq!(shell_quote(r#"{"a":"b"}"#), r#"'{"a":"b"}'"#);
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
