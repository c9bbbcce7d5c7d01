//! Checks every request passes before its handler: header caps, body framing, a loopback
//! `Host` (DNS rebinding), an allowed `Origin`, the target's length and the bearer token;
//! and CORS.

use subtle::ConstantTimeEq;

use super::conn::body::check_framing;
use super::error::ApiError;
use super::http::{ApiResponse, header, header_values};
use super::router::Route;
use crate::config::ServerConfig;

/// Host, Origin, length and token checks that every route passes before its handler.
pub fn screen(
    cfg: &ServerConfig,
    headers: &[(String, String)],
    target: &str,
    route: Result<Route, ApiError>,
) -> Result<Route, ApiError> {
    let header = |name: &str| header(headers, name);
    check_header_size(headers, cfg)?;
    check_framing(headers)?;
    if header_values(headers, "Host").count() > 1 {
        // Which one would a proxy have routed by? The loopback check below reads the first.
        return Err(ApiError::invalid_request(
            "more than one Host header; send exactly one",
        ));
    }
    if cfg.bind.is_loopback()
        && let Some(host) = header("Host")
        && !is_loopback_host(host)
    {
        return Err(ApiError::forbidden(format!(
            "Host {host:?} is not a loopback name; this server only answers requests for localhost"
        )));
    }
    if let Some(origin) = header("Origin")
        && !origin_allowed(origin, &cfg.allowed_origins)
    {
        return Err(ApiError::forbidden(format!(
            "Origin {origin:?} is not allowed; add it to server.allowed_origins to permit it"
        )));
    }
    if target.len() > cfg.max_query_bytes {
        return Err(ApiError::invalid_request(format!(
            "request target is longer than server.max_query_bytes ({} bytes)",
            cfg.max_query_bytes
        )));
    }
    let route = route?;
    if !cfg.auth_token.is_empty() && !route.is_public() {
        let given = header("Authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.trim().as_bytes().ct_eq(cfg.auth_token.as_bytes())) {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(route)
}

/// Caps the header lines (`server.max_headers`, `server.max_header_bytes`). tiny_http has
/// read them all into memory by now (it has no limit of its own), so this bounds what the
/// rest of the server copies, logs and answers, not tiny_http's read.
fn check_header_size(headers: &[(String, String)], cfg: &ServerConfig) -> Result<(), ApiError> {
    let bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    if headers.len() > cfg.max_headers || bytes > cfg.max_header_bytes {
        return Err(ApiError::request_header_too_large(format!(
            "the request has {} header lines of {bytes} bytes; the limits are \
             server.max_headers ({}) and server.max_header_bytes ({})",
            headers.len(),
            cfg.max_headers,
            cfg.max_header_bytes
        )));
    }
    Ok(())
}

pub fn preflight() -> ApiResponse {
    ApiResponse::empty(204)
        .with_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
        .with_header(
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, Last-Event-ID, X-Session-Id",
        )
        .with_header("Access-Control-Max-Age", "600")
}

/// The origin to echo in `Access-Control-Allow-Origin`, when the request has an allowed one.
pub fn cors_origin(cfg: &ServerConfig, headers: &[(String, String)]) -> Option<String> {
    let origin = header(headers, "Origin")?;
    origin_allowed(origin, &cfg.allowed_origins).then(|| origin.to_string())
}

/// True for `localhost`, `*.localhost` and loopback IP literals, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    // Only what a host and port are made of. Anything else (whitespace, a control
    // character, a bare CR or LF) is no host at all, and an allowed `Origin` is echoed in
    // a header as it came.
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return false;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1] or [::1]:port, and nothing else after the bracket.
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !port_ok {
            return false;
        }
        ip
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A browser origin is allowed when it is a local page or listed in config.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    !rest.contains('/') && is_loopback_host(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:31327",
            "127.0.0.1:80",
            "[::1]:31327",
            "127.1.2.3",
            "a.localhost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "example.com",
            "evil.com:31327",
            "192.168.1.2",
            "localhost.evil.com",
            "[2001:db8::1]:80",
            "",
            "[::1]x",
            "[::1]:",
            "[::1",
            "local host",
            "localhost\0",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    /// Regression: an `Origin` with a bare CR or LF whose tail looked loopback was allowed
    /// and echoed in `Access-Control-Allow-Origin`, splitting the response's headers.
    #[test]
    fn r_origin_with_line_breaks_is_not_echoed() {
        for origin in [
            "http://x\nSet-Cookie: pwned=1;.localhost",
            "http://x\rSet-Cookie: a=1;.localhost",
            "http://[::1]\r\nSet-Cookie: pwned=1",
            "http://[::1]\nX: 1",
            "http://localhost:3000\n",
        ] {
            assert!(!origin_allowed(origin, &[]), "{origin:?}");
            assert!(!is_loopback_host(&origin[7..]), "{origin:?}");
        }
        assert!(origin_allowed("http://[::1]:3000", &[]));
        assert!(origin_allowed("http://localhost.:8080", &[]));
    }

    #[test]
    fn header_caps() {
        let cfg = crate::config::ServerConfig {
            max_headers: 3,
            max_header_bytes: 64,
            ..Default::default()
        };
        let h = |n: usize, len: usize| -> Vec<(String, String)> {
            (0..n)
                .map(|i| (format!("X-{i}"), "v".repeat(len)))
                .collect()
        };
        assert!(check_header_size(&h(3, 10), &cfg).is_ok());
        let e = check_header_size(&h(4, 1), &cfg).unwrap_err();
        assert_eq!((e.status, e.code), (431, "request_header_too_large"));
        assert!(e.message.contains("server.max_headers"), "{}", e.message);
        assert_eq!(check_header_size(&h(1, 100), &cfg).unwrap_err().status, 431);
    }

    #[test]
    fn origins() {
        assert!(origin_allowed("http://localhost:3000", &[]));
        assert!(origin_allowed("http://127.0.0.1", &[]));
        assert!(!origin_allowed("https://evil.example", &[]));
        assert!(!origin_allowed("null", &[]));
        assert!(origin_allowed(
            "https://app.example",
            &["https://app.example".into()]
        ));
    }
}
