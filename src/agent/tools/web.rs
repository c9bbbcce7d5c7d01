//! The `web_fetch` tool: GET a URL with a size cap and timeouts, refusing private and
//! loopback addresses (unless `tools.web_fetch_allow_private`), re-checked on every redirect.

use std::io::Read;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use super::{ToolContext, ToolOutput, str_arg};

const MAX_REDIRECTS: usize = 5;

pub fn fetch(ctx: &ToolContext, args: &Value) -> Result<ToolOutput, String> {
    let mut url = str_arg(args, "url")?.trim().to_string();
    let cfg = &ctx.config;
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(
            Duration::from_secs(10).min(cfg.web_fetch_timeout.get()),
        ))
        .timeout_global(Some(cfg.web_fetch_timeout.get()))
        .user_agent(concat!("localgpt/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    for _ in 0..=MAX_REDIRECTS {
        check_target(&url, cfg.web_fetch_allow_private)?;
        let resp = agent
            .get(&url)
            .call()
            .map_err(|e| format!("fetching {url} failed: {e}"))?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let Some(next) = resp.headers().get("location").and_then(|v| v.to_str().ok()) else {
                return Err(format!("{url} answered {status} without a Location"));
            };
            url = join_location(&url, next)?;
            continue;
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown")
            .to_string();
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(cfg.web_fetch_max_bytes as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("reading {url} failed: {e}"))?;
        let truncated = body.len() > cfg.web_fetch_max_bytes;
        body.truncate(cfg.web_fetch_max_bytes);
        let mut text = format!(
            "HTTP {status} {url}\ncontent-type: {content_type}\n\n{}",
            String::from_utf8_lossy(&body)
        );
        if truncated {
            text.push_str(&format!(
                "\n[truncated at tools.web_fetch_max_bytes = {}]",
                cfg.web_fetch_max_bytes
            ));
        }
        return Ok(if status >= 400 {
            ToolOutput::error(text)
        } else {
            ToolOutput::ok(text)
        });
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// Refuses non-HTTP schemes and hosts that resolve to a non-public address.
fn check_target(url: &str, allow_private: bool) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "only http and https URLs can be fetched, not {url:?}"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("URL {url:?} has no host"))?
        .trim_matches(|c| c == '[' || c == ']');
    if allow_private {
        return Ok(());
    }
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let addrs: Vec<IpAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    if let Some(bad) = addrs.iter().find(|ip| !is_public(ip)) {
        return Err(format!(
            "{host} resolves to {bad}, a private or local address; set tools.web_fetch_allow_private = true to allow it"
        ));
    }
    Ok(())
}

fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(&IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Resolves a `Location` against the URL that sent it.
fn join_location(base: &str, location: &str) -> Result<String, String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_string());
    }
    let uri: ureq::http::Uri = base.parse().map_err(|e| format!("bad URL {base:?}: {e}"))?;
    let origin = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or("")
    );
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("{}://{rest}", uri.scheme_str().unwrap_or("http")));
    }
    if location.starts_with('/') {
        return Ok(format!("{origin}{location}"));
    }
    let path = uri.path();
    let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
    Ok(format!("{origin}{dir}{location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_refused() {
        for bad in [
            "http://127.0.0.1/",
            "http://localhost:8080/x",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://169.254.169.254/latest",
            "file:///etc/passwd",
            "ftp://example.com/",
        ] {
            assert!(check_target(bad, false).is_err(), "{bad}");
        }
        assert!(check_target("http://127.0.0.1/", true).is_ok());
    }

    #[test]
    fn public_ranges() {
        assert!(is_public(&"93.184.216.34".parse().unwrap()));
        assert!(!is_public(&"100.64.0.1".parse().unwrap()));
        assert!(!is_public(&"::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_public(&"fd00::1".parse().unwrap()));
    }

    #[test]
    fn locations_join() {
        assert_eq!(
            join_location("http://a.b/x/y", "/z").unwrap(),
            "http://a.b/z"
        );
        assert_eq!(
            join_location("http://a.b/x/y", "z").unwrap(),
            "http://a.b/x/z"
        );
        assert_eq!(
            join_location("https://a.b/", "//c.d/e").unwrap(),
            "https://c.d/e"
        );
        assert_eq!(
            join_location("http://a.b/", "https://c.d/").unwrap(),
            "https://c.d/"
        );
    }
}
