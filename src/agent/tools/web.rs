//! The `web_fetch` tool: GET a URL with a size cap and timeouts, refusing private and
//! loopback addresses (unless `tools.web_fetch_allow_private`).
//!
//! The check is pinned to the connection: ureq resolves every hop's host through
//! [`PinnedResolver`], which looks the name up once, refuses the whole answer if any
//! address is not public, and hands ureq only the addresses it checked. There is no second
//! lookup between check and connect for a DNS-rebinding name to answer differently.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;
use ureq::config::Config;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::{ToolContext, ToolOutput, str_arg};

const MAX_REDIRECTS: usize = 5;

/// Runs `web_fetch`: the page's status, content type and text, capped in size.
pub fn fetch(ctx: &ToolContext, args: &Value) -> Result<ToolOutput, String> {
    let url = str_arg(args, "url")?.trim().to_string();
    let cfg = &ctx.config;
    let permit = if cfg.web_fetch_allow_private {
        any_address
    } else {
        is_public
    };
    fetch_url(
        url,
        cfg,
        PinnedResolver::new(DefaultResolver::default(), permit),
    )
}

/// Fetches `url`, following redirects by hand so that each hop's scheme is checked and
/// each hop's host goes through `resolver`.
fn fetch_url(
    mut url: String,
    cfg: &crate::config::ToolsConfig,
    resolver: impl Resolver,
) -> Result<ToolOutput, String> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        // A proxy would resolve the host itself, after and apart from our check.
        .proxy(None)
        .timeout_connect(Some(
            Duration::from_secs(10).min(cfg.web_fetch_timeout.get()),
        ))
        .timeout_global(Some(cfg.web_fetch_timeout.get()))
        .user_agent(concat!("localgpt/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent = ureq::Agent::with_parts(config, DefaultConnector::default(), resolver);
    for _ in 0..=MAX_REDIRECTS {
        check_scheme(&url)?;
        let resp = agent.get(&url).call().map_err(|e| match refusal(&e) {
            Some(refused) => refused.to_string(),
            None => format!("fetching {url} failed: {e}"),
        })?;
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

/// Refuses non-HTTP schemes and URLs without a host.
fn check_scheme(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "only http and https URLs can be fetched, not {url:?}"
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("URL {url:?} has no host"));
    }
    Ok(())
}

/// A ureq resolver that lets through only addresses `permit` accepts. Any refused address
/// refuses the whole answer: a name that mixes public and private addresses is not trusted
/// to be connected to its public half.
struct PinnedResolver<R> {
    inner: R,
    permit: fn(&IpAddr) -> bool,
}

impl<R: Resolver> PinnedResolver<R> {
    fn new(inner: R, permit: fn(&IpAddr) -> bool) -> PinnedResolver<R> {
        PinnedResolver { inner, permit }
    }
}

impl<R> fmt::Debug for PinnedResolver<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedResolver").finish_non_exhaustive()
    }
}

impl<R: Resolver> Resolver for PinnedResolver<R> {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.inner.resolve(uri, config, timeout)?;
        if let Some(bad) = addrs.iter().find(|a| !(self.permit)(&a.ip())) {
            let host = uri.host().unwrap_or("").to_string();
            return Err(ureq::Error::Other(Box::new(Refused {
                host,
                addr: bad.ip(),
            })));
        }
        Ok(addrs)
    }
}

/// A host that resolved to an address web_fetch may not reach.
#[derive(Debug)]
struct Refused {
    host: String,
    addr: IpAddr,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves to {}, a private or local address; set tools.web_fetch_allow_private = true to allow it",
            self.host, self.addr
        )
    }
}

impl std::error::Error for Refused {}

fn refusal(e: &ureq::Error) -> Option<&Refused> {
    match e {
        ureq::Error::Other(inner) => inner.downcast_ref::<Refused>(),
        _ => None,
    }
}

fn any_address(_: &IpAddr) -> bool {
    true
}

/// Whether `ip` is a global unicast address. Loopback, private, link-local, unspecified,
/// multicast, broadcast, CGNAT (100.64/10), unique-local (fc00::/7), documentation,
/// benchmarking and reserved ranges are not; nor are IPv6 forms that carry one of those
/// IPv4 addresses inside (mapped, compatible, NAT64, 6to4).
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
                || o[0] >= 240
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1])))
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(&IpAddr::V4(v4));
            }
            // ::a.b.c.d (deprecated "compatible" form; also covers :: and ::1).
            if seg[..6] == [0; 6] {
                return false;
            }
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address inside.
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(&embedded(seg[6], seg[7]));
            }
            if seg[0] == 0x2002 {
                return is_public(&embedded(seg[1], seg[2]));
            }
            !(v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] & 0xffc0) == 0xfec0
                || (seg[0] == 0x2001 && seg[1] == 0x0db8))
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

    use std::collections::VecDeque;
    use std::net::{Ipv4Addr, SocketAddr, TcpListener};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use crate::config::ToolsConfig;

    /// A loopback web server on `ip` that answers `/page` with text, `/self` with a redirect
    /// to `/page`, and `/away` with a redirect to `away`; it counts the requests it saw.
    struct Site {
        server: Arc<tiny_http::Server>,
        addr: SocketAddr,
        seen: Arc<AtomicUsize>,
    }

    impl Site {
        fn start(ip: &str, away: String) -> Site {
            let server = Arc::new(tiny_http::Server::http(format!("{ip}:0")).unwrap());
            let addr = server.server_addr().to_ip().unwrap();
            let seen = Arc::new(AtomicUsize::new(0));
            let (srv, count) = (server.clone(), seen.clone());
            std::thread::spawn(move || {
                while let Ok(req) = srv.recv() {
                    count.fetch_add(1, Ordering::SeqCst);
                    let redirect = |to: &str| {
                        tiny_http::Response::from_string("")
                            .with_status_code(302)
                            .with_header(tiny_http::Header::from_bytes("Location", to).unwrap())
                    };
                    let resp = match req.url() {
                        "/self" => redirect("/page"),
                        "/away" => redirect(&away),
                        _ => tiny_http::Response::from_string("hello page"),
                    };
                    let _ = req.respond(resp);
                }
            });
            Site { server, addr, seen }
        }

        fn seen(&self) -> usize {
            self.seen.load(Ordering::SeqCst)
        }
    }

    impl Drop for Site {
        fn drop(&mut self) {
            self.server.unblock();
        }
    }

    /// Whether anyone connected to `listener` (a connect completes in the kernel before
    /// the client goes on, so it is queued by the time the fetch returns).
    fn connected(listener: &TcpListener) -> bool {
        listener.set_nonblocking(true).unwrap();
        listener.accept().is_ok()
    }

    /// Only 127.0.0.1 counts as "public": the tests' stand-in for the internet, so that
    /// other loopback addresses can play the private network.
    fn only_127_0_0_1(ip: &IpAddr) -> bool {
        *ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    /// Answers each lookup with the next scripted address (the last one forever after).
    #[derive(Debug)]
    struct Scripted {
        answers: Mutex<VecDeque<SocketAddr>>,
        calls: Arc<AtomicUsize>,
    }

    impl Resolver for Scripted {
        fn resolve(
            &self,
            _: &ureq::http::Uri,
            _: &Config,
            _: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut answers = self.answers.lock().unwrap();
            let next = if answers.len() > 1 {
                answers.pop_front()
            } else {
                answers.front().copied()
            };
            let mut out = self.empty();
            out.push(next.ok_or(ureq::Error::HostNotFound)?);
            Ok(out)
        }
    }

    fn get(url: &str, resolver: impl Resolver) -> Result<ToolOutput, String> {
        fetch_url(url.to_string(), &ToolsConfig::default(), resolver)
    }

    #[test]
    fn a_name_for_loopback_is_refused_before_any_connection() {
        let site = Site::start("127.0.0.1", String::new());
        let port = site.addr.port();
        for url in [
            format!("http://localhost:{port}/page"),
            format!("http://127.0.0.1:{port}/page"),
        ] {
            let err = get(
                &url,
                PinnedResolver::new(DefaultResolver::default(), is_public),
            )
            .unwrap_err();
            assert!(err.contains("web_fetch_allow_private"), "{url}: {err}");
        }
        assert_eq!(site.seen(), 0);
        let ok = get(
            &format!("http://localhost:{port}/page"),
            PinnedResolver::new(DefaultResolver::default(), any_address),
        )
        .unwrap();
        assert!(ok.text.contains("hello page"), "{}", ok.text);
    }

    #[test]
    fn a_redirect_to_a_private_address_is_refused() {
        let private = TcpListener::bind("127.0.0.2:0").unwrap();
        let away = format!("http://{}/secret", private.local_addr().unwrap());
        let site = Site::start("127.0.0.1", away);
        let pinned = || PinnedResolver::new(DefaultResolver::default(), only_127_0_0_1);
        // Redirects inside the permitted site are followed.
        let ok = get(&format!("http://{}/self", site.addr), pinned()).unwrap();
        assert!(ok.text.contains("hello page"), "{}", ok.text);
        let err = get(&format!("http://{}/away", site.addr), pinned()).unwrap_err();
        assert!(
            err.starts_with("127.0.0.2 resolves to 127.0.0.2, a private"),
            "{err}"
        );
        assert!(
            !connected(&private),
            "the private address was never connected to"
        );
    }

    #[test]
    fn r_dns_rebinding_between_check_and_connect() {
        // The name first resolves to the permitted site, then to a private address: the
        // address checked must be the one connected to, with no second lookup in between.
        let private = TcpListener::bind("127.0.0.2:0").unwrap();
        let site = Site::start("127.0.0.1", String::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let resolver = PinnedResolver::new(
            Scripted {
                answers: Mutex::new(VecDeque::from([site.addr, private.local_addr().unwrap()])),
                calls: calls.clone(),
            },
            only_127_0_0_1,
        );
        let agent_url = format!("http://rebind.test:{}/page", site.addr.port());
        let ok = fetch_url(agent_url.clone(), &ToolsConfig::default(), resolver).unwrap();
        assert!(ok.text.contains("hello page"), "{}", ok.text);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one lookup per connection");
        assert!(!connected(&private));
    }

    #[test]
    fn private_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
        ] {
            assert!(!is_public(&bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(&good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn only_http_urls_with_a_host() {
        for bad in [
            "file:///etc/passwd",
            "ftp://example.com/",
            "http:///x",
            "nonsense",
        ] {
            assert!(check_scheme(bad).is_err(), "{bad}");
        }
        assert!(check_scheme("https://example.com/x").is_ok());
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
