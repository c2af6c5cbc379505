//! Extractors of a request's head: the authenticated caller, and where a request came from.
//! The body's extractor is [`Body`](super::body::Body).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};

use super::error::ApiError;
use crate::auth::Auth;
use crate::auth::tokens::AccessClaims;
use crate::domain::audit::{Actor, MAX_PAGE, Origin};
use crate::domain::{Profile, SessionId, UserId};
use crate::store::Store;

/// The caller of an authenticated endpoint: a valid access token of a live session whose
/// account is active, checked in the one query that loads the profile.
#[derive(Debug)]
pub struct AuthUser {
    pub claims: Arc<AccessClaims>,
    pub profile: Profile,
}

impl<S: Store> FromRequestParts<Arc<Auth<S>>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, auth: &Arc<Auth<S>>) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?;
        let claims = auth
            .verify_access_token(token)
            .map_err(|_| ApiError::InvalidAccessToken)?;
        let profile = auth
            .profile(&claims)
            .await?
            .ok_or(ApiError::InvalidAccessToken)?;
        if let Some(requester) = parts.extensions.get::<Arc<Requester>>() {
            requester.authenticated_as(claims.user_id, claims.sid);
        }
        Ok(AuthUser { claims, profile })
    }
}

/// SimpleJWT's reading of `Authorization`: another scheme means "no credentials" (another
/// authenticator might own it); `Bearer` must be followed by exactly one token.
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    parse_bearer(&parts.headers)
}

/// The token of the `Authorization` header in `headers`, read as [`AuthUser`] reads it.
/// Public as the fuzzing entry point.
pub fn parse_bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::NotAuthenticated)?;
    let mut words = header
        .as_bytes()
        .split(u8::is_ascii_whitespace)
        .filter(|word| !word.is_empty());
    match words.next() {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer") => {}
        _ => return Err(ApiError::NotAuthenticated),
    }
    match (words.next(), words.next()) {
        (Some(token), None) => std::str::from_utf8(token).map_err(|_| ApiError::InvalidAccessToken),
        _ => Err(ApiError::BadAuthorizationHeader),
    }
}

/// Where a request came from, as its owner acts: recorded with the session it starts and with
/// the audit events it causes.
impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(origin_of(parts, Actor::User))
    }
}

/// The client of `parts` acting as `actor`: its address (after trusted proxies), user agent
/// and request id.
pub fn origin_of(parts: &Parts, actor: Actor) -> Origin {
    // Bounded: the header is the client's to fill, the tables are ours to keep small.
    const MAX_USER_AGENT: usize = 512;
    let user_agent = parts.headers.get(header::USER_AGENT).map(|value| {
        String::from_utf8_lossy(value.as_bytes())
            .chars()
            .take(MAX_USER_AGENT)
            .collect()
    });
    let ip = parts
        .extensions
        .get::<Arc<Requester>>()
        .and_then(|requester| requester.address)
        .map(|address| address.to_string());
    // Printable ASCII of at most 128 bytes (see `forget_unusable_request_id`).
    let request_id = parts
        .headers
        .get(super::REQUEST_ID)
        .and_then(|id| id.to_str().ok())
        .map(str::to_owned);
    Origin {
        actor,
        ip,
        user_agent,
        request_id,
    }
}

/// Who sent a request, as far as it is known: the client's address, and the account and
/// session once [`AuthUser`] has accepted the request's token. The log middleware puts it in
/// the request's extensions before the request is routed, so the address is worked out once,
/// and writes it on the request's line after the answer.
#[derive(Debug)]
pub struct Requester {
    /// The client address (see `client_ip`); none for a request that came over no socket
    /// (a router driven in-process).
    pub address: Option<IpAddr>,
    caller: OnceLock<(UserId, SessionId)>,
}

impl Requester {
    /// The requester of `request` as it arrives, before anyone has authenticated it.
    pub fn of(request: &Request, trusted: &TrustedProxies) -> Requester {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
        let forwarded = request.headers().get_all(X_FORWARDED_FOR);
        let address = peer.map(|ConnectInfo(peer)| client_ip(peer.ip(), forwarded, trusted));
        Requester {
            address,
            caller: OnceLock::new(),
        }
    }

    /// The account and session whose access token the request carried, if it was accepted.
    pub fn caller(&self) -> Option<(UserId, SessionId)> {
        self.caller.get().copied()
    }

    fn authenticated_as(&self, user_id: UserId, session_id: SessionId) {
        // A second `AuthUser` of the same request saw the same token: nothing new to keep.
        let _ = self.caller.set((user_id, session_id));
    }
}

const X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");

/// Proxies whose `X-Forwarded-For` is believed, set by the router from the configuration.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Arc<Vec<ipnet::IpNet>>);

impl TrustedProxies {
    fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }
}

/// The socket's peer, unless it is a trusted proxy: then the nearest address in
/// `X-Forwarded-For` that is not a trusted proxy itself. Entries left of it were written by
/// the client and prove nothing.
fn client_ip(
    peer: IpAddr,
    forwarded: header::GetAll<'_, HeaderValue>,
    trusted: &TrustedProxies,
) -> IpAddr {
    if !trusted.contains(&peer) {
        if forwarded.iter().next().is_some() {
            warn_of_untrusted_forwarding(peer);
        }
        return peer;
    }
    // From the right, each hop was written by the proxy after it; the first one that is not
    // a trusted proxy (or not an address at all: then the last trusted one) is the client.
    let hops: Vec<&str> = forwarded
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(hop) if trusted.contains(&hop) => client = hop,
            Ok(hop) => return hop,
            Err(_) => return client,
        }
    }
    client
}

/// A proxy left out of `--trusted-proxies` makes every client look like the proxy, which
/// throttles them all together: say so, once per process (such a proxy forwards every request).
/// The header's value is the client's to write, so it is not logged.
fn warn_of_untrusted_forwarding(peer: IpAddr) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.load(Ordering::Relaxed) && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "X-Forwarded-For from {peer} ignored: that peer is not in --trusted-proxies; \
             behind a proxy, set --trusted-proxies (RESTFUL_AUTH_TRUSTED_PROXIES) to its address"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_with_authorization(value: &[u8]) -> Parts {
        let request = axum::http::Request::builder()
            .header(header::AUTHORIZATION, value)
            .body(())
            .unwrap();
        request.into_parts().0
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = TrustedProxies(Arc::new(vec!["10.0.0.0/8".parse().unwrap()]));
        let headers = |value: &str| {
            let mut map = axum::http::HeaderMap::new();
            map.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            map
        };
        let ip = |peer: IpAddr, value: &str, trusted: &TrustedProxies| {
            let map = headers(value);
            client_ip(peer, map.get_all("x-forwarded-for"), trusted).to_string()
        };
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(ip(stranger, "198.51.100.7", &trusted), "203.0.113.9");
        assert_eq!(
            ip(proxy, "198.51.100.7", &TrustedProxies::default()),
            "10.0.0.1"
        );
        assert_eq!(ip(proxy, "1.2.3.4, 198.51.100.7", &trusted), "198.51.100.7");
        assert_eq!(
            ip(proxy, "198.51.100.7, 10.0.0.2", &trusted),
            "198.51.100.7"
        );
        assert_eq!(ip(proxy, "garbage", &trusted), "10.0.0.1");
        // A client cannot hide behind junk of its own: the proxy's hop is read first.
        assert_eq!(
            ip(proxy, "6.6.6.6, junk, 198.51.100.7", &trusted),
            "198.51.100.7"
        );
        assert_eq!(ip(proxy, "6.6.6.6, junk", &trusted), "10.0.0.1");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_exactly_one_token() {
        let token = |raw: &[u8]| bearer_token(&parts_with_authorization(raw)).map(str::to_owned);
        assert_eq!(token(b"Bearer abc").unwrap(), "abc");
        assert_eq!(token(b"bearer   abc ").unwrap(), "abc");
        assert!(matches!(
            token(b"Basic abc"),
            Err(ApiError::NotAuthenticated)
        ));
        assert!(matches!(
            token(b"Bearer"),
            Err(ApiError::BadAuthorizationHeader)
        ));
        assert!(matches!(
            token(b"Bearer a b"),
            Err(ApiError::BadAuthorizationHeader)
        ));
        assert!(matches!(
            token(b"Bearer \xff\xfe"),
            Err(ApiError::InvalidAccessToken)
        ));
    }
}

/// Which page of a list: `?limit=` items (1 to 100, 20 when left out) older than the item
/// `?before=` (an id from the page before). Other parameters are ignored, as DRF does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many, at most 100.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: u32,
    /// Only items older than this id.
    pub before: Option<i64>,
}

impl Page {
    const DEFAULT_LIMIT: u32 = 20;

    /// Reads the page from a URL's query, with DRF's messages for what is out of range.
    pub fn parse(query: &str) -> Result<Page, ApiError> {
        let mut page = Page {
            limit: Page::DEFAULT_LIMIT,
            before: None,
        };
        let mut errors = super::error::FieldErrors::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "limit" => {
                    if let Some(limit) = read_limit(&value, &mut errors) {
                        page.limit = limit;
                    }
                }
                "before" => match value.trim().parse::<i64>() {
                    Ok(before) => page.before = Some(before),
                    Err(_) => errors.add("before", "A valid integer is required."),
                },
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(page)
        } else {
            Err(ApiError::Fields(errors))
        }
    }
}

/// A list's `?limit=`: 1 to 100, else DRF's message for what is out of range, under `limit`.
pub(crate) fn read_limit(value: &str, errors: &mut super::error::FieldErrors) -> Option<u32> {
    match value.trim().parse::<i64>() {
        Ok(limit) if limit < 1 => {
            errors.add("limit", "Ensure this value is greater than or equal to 1.");
            None
        }
        Ok(limit) if limit > i64::from(MAX_PAGE) => {
            errors.add(
                "limit",
                format!("Ensure this value is less than or equal to {MAX_PAGE}."),
            );
            None
        }
        Ok(limit) => u32::try_from(limit).ok(),
        Err(_) => {
            errors.add("limit", "A valid integer is required.");
            None
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Page::parse(parts.uri.query().unwrap_or_default())
    }
}
