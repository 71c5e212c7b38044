//! Defences against hostile web pages and guessing clients: the `Host` check (DNS rebinding), the
//! `Origin` check (cross-site requests), the bearer token compared in constant time, and the security
//! headers of every answer.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::set_header::SetResponseHeaderLayer;

use super::{Api, ApiConfig, ApiError};

/// The UI's only script and style sheet are files of this server; the favicon is an empty `data:` URL.
/// Nothing inline, no framing by other pages.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to every answer of `router` (UI, API and errors alike).
pub(crate) fn with_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    let headers = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    headers.into_iter().fold(router, |router, (name, value)| {
        router.layer(SetResponseHeaderLayer::overriding(name, value))
    })
}

/// Splits `host[:port]` (a `Host` header, an authority, an `allowed-hosts` entry): the lower-case
/// name without a trailing dot (an IPv6 address without its brackets) and the port. `None` when it is
/// not of that shape.
pub(crate) fn split_authority(text: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (inside, None),
            _ => (inside, Some(after.strip_prefix(':')?)),
        }
    } else {
        let (name, port) = match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return None;
        }
        (name, port)
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((name.to_ascii_lowercase(), port))
}

/// Whether `host` (a `Host` header) names this server.
fn host_allowed(host: &str, config: &ApiConfig) -> bool {
    let Some((name, port)) = split_authority(host) else {
        return false;
    };
    if matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1") {
        return true;
    }
    if name.parse::<IpAddr>().ok() == Some(config.listen.ip()) {
        return true;
    }
    config.allowed_hosts.iter().any(|entry| {
        split_authority(entry).is_some_and(|(allowed, allowed_port)| {
            allowed == name && allowed_port.is_none_or(|p| Some(p) == port)
        })
    })
}

/// Without a token, refuses (421) a request whose `Host` is not one of this server's names: a web page
/// that rebinds its own name to 127.0.0.1 could otherwise read the API. A request without `Host`
/// (HTTP/1.0) is let through: browsers always send one.
pub(crate) async fn check_host(State(api): State<Api>, request: Request, next: Next) -> Response {
    let config = &api.state.config;
    if api.state.config.token.is_none() {
        if let Some(host) = request.headers().get(header::HOST) {
            let text = String::from_utf8_lossy(host.as_bytes());
            if !host_allowed(&text, config) {
                return ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    format!(
                        "Host {text:?} is not a name of this server: use localhost, 127.0.0.1 or the listen \
                         address, or add the name to api.allowed-hosts"
                    ),
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// Whether the `Origin` header `origin` is the origin of a request to `host`: same name, same port
/// (the scheme's default when absent), scheme `http` or `https` (behind a TLS proxy).
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let (Some((origin_name, origin_port)), Some((host_name, host_port))) =
        (split_authority(authority), host.and_then(split_authority))
    else {
        return false;
    };
    origin_name == host_name
        && origin_port.unwrap_or(default_port) == host_port.unwrap_or(default_port)
}

/// Refuses (403) a request whose `Origin` header is present and is not this server's own origin:
/// another web site's page (or a sandboxed one, `Origin: null`) cannot make the browser call the API.
pub(crate) async fn check_origin(request: Request, next: Next) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !same_origin(&origin, host) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Origin {origin:?} is not this server's own origin: cross-origin requests are refused"),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether `given` is the token, compared in constant time (of the SHA-256 digests, so that not even
/// the token's length shows in the timing).
fn token_matches(token: &str, given: &str) -> bool {
    let (expected, given) = (Sha256::digest(token), Sha256::digest(given));
    expected.ct_eq(&given).into()
}

/// With `api.token`, requires `Authorization: Bearer <token>` (401 otherwise).
pub(crate) async fn auth(State(api): State<Api>, request: Request, next: Next) -> Response {
    if let Some(token) = &api.state.config.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| token_matches(token, given)) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
                .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_into_name_and_port() {
        let s = |t: &str| split_authority(t);
        assert_eq!(s("LocalHost:8080"), Some(("localhost".into(), Some(8080))));
        assert_eq!(s("example.org."), Some(("example.org".into(), None)));
        assert_eq!(s("[::1]:80"), Some(("::1".into(), Some(80))));
        assert_eq!(s("[::1]"), Some(("::1".into(), None)));
        assert_eq!(s("[::1]x"), None);
        assert_eq!(s("[nope]:80"), None);
        assert_eq!(s("host:port"), None);
        assert_eq!(s("a b"), None);
        assert_eq!(s(""), None);
        assert_eq!(s(":80"), None);
        assert_eq!(s("localhost:80:1"), None);
        assert_eq!(s("::1"), None);
    }

    #[test]
    fn origins_match_their_host_with_default_ports() {
        assert!(same_origin("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(same_origin("http://alarms.lan", Some("alarms.lan:80")));
        assert!(same_origin("https://alarms.lan", Some("alarms.lan")));
        assert!(!same_origin("https://alarms.lan", Some("alarms.lan:80")));
        assert!(!same_origin("http://evil.example", Some("127.0.0.1:8080")));
        assert!(!same_origin("null", Some("127.0.0.1:8080")));
        assert!(!same_origin("file://", Some("127.0.0.1:8080")));
        assert!(!same_origin("http://127.0.0.1:8080", None));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cret", "s3cre"));
        assert!(!token_matches("s3cret", "s3cret "));
        assert!(!token_matches("s3cret", ""));
    }
}
