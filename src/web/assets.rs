//! The stylesheet, scripts and icon of the pages, compiled into the binary: the pages load
//! nothing from anywhere else, which is what lets their `Content-Security-Policy` say `'self'`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

pub struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        name: "site.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/site.css"),
    },
    Asset {
        name: "session.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("assets/session.js"),
    },
    Asset {
        name: "render.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("assets/render.js"),
    },
    Asset {
        name: "endpoint.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("assets/endpoint.js"),
    },
    Asset {
        name: "form-errors.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("assets/form-errors.js"),
    },
    Asset {
        name: "link.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("assets/link.js"),
    },
    Asset {
        name: "docs.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("assets/docs.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

impl IntoResponse for &'static Asset {
    fn into_response(self) -> Response {
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(self.content_type),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                // Revalidated on every load: a new build must never run an old script.
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            self.body,
        )
            .into_response()
    }
}
