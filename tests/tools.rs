//! The `bash` sandbox and the pinned `web_fetch`, through the real daemon: the fake
//! provider asks for the tool calls, the SSE stream reports what each one did.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use support::fake_provider::{FakeProvider, Reply};
use support::stream_client::Sse;
use support::{Daemon, Home};

const MODEL: &str = "openai/gpt-test";

fn daemon(fake: &FakeProvider, home: Home, tools: &str) -> Daemon {
    home.write_config(&format!(
        "[heartbeat]\nenabled = false\n{}\n[tools]\nrequire_approval = []\n{tools}",
        fake.providers_toml("5s")
    ));
    Daemon::start_with(home, |cmd| {
        cmd.env("LOCALGPT_MODEL", MODEL);
    })
}

/// What one tool call did, as the stream reported it.
#[derive(Debug)]
struct Outcome {
    is_error: bool,
    output: String,
}

/// Runs one turn in which the model calls each tool in `calls`, in order, and returns
/// what each call did.
fn run_tools(d: &Daemon, fake: &FakeProvider, calls: &[(&str, Value)]) -> Vec<Outcome> {
    for (name, args) in calls {
        fake.push(Reply::tool_call(name, args.clone()));
    }
    fake.push(Reply::text("done"));
    let mut sse = Sse::open(d.addr, r#"{"message":"go"}"#);
    assert_eq!(sse.status, 200, "{}", sse.body);
    let outcomes: Vec<Outcome> = sse
        .collect()
        .into_iter()
        .filter(|e| e.kind() == "tool_end")
        .map(|e| Outcome {
            is_error: e.data["is_error"].as_bool().unwrap_or(false),
            output: e.data["output"].as_str().unwrap_or("").to_string(),
        })
        .collect();
    assert_eq!(outcomes.len(), calls.len(), "{outcomes:?}");
    outcomes
}

fn bash(command: &str) -> (&'static str, Value) {
    ("bash", json!({ "command": command }))
}

/// Whether anyone connected to `listener`: a connect completes in the kernel before the
/// client goes on, so by the time the tool call has ended it would be queued.
fn connected(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).expect("nonblocking");
    listener.accept().is_ok()
}

#[test]
fn bash_writes_only_in_the_workspace_allowed_paths_and_its_temp_dir() {
    let status = localgpt::agent::tools::bash_sandbox_status();
    if !status.confined {
        eprintln!("skipped: no Landlock here ({})", status.detail);
        return;
    }
    let fake = FakeProvider::start();
    let home = Home::new("sandbox");
    let allowed = home.root().join("shared");
    std::fs::create_dir_all(&allowed).unwrap();
    let d = daemon(
        &fake,
        home,
        &format!("allowed_paths = [{:?}]", allowed.display().to_string()),
    );
    let outside = d.home.root().join("escaped");
    let out = run_tools(
        &d,
        &fake,
        &[
            bash(&format!("echo out > {}", outside.display())),
            bash("echo in > inside.txt && mkdir -p sub && mv inside.txt sub/moved.txt"),
            bash(&format!("echo a > {}/ok.txt", allowed.display())),
            bash(
                "t=$(mktemp) && echo tmp > \"$t\" && cat \"$t\" && cat <<EOF\nheredoc ok\nEOF\necho \"tmpdir=$TMPDIR\"",
            ),
            bash("echo to-stderr > /dev/stderr; echo gone > /dev/null; echo fine"),
            bash(&format!("rm -f {}", d.home.config_path().display())),
        ],
    );
    assert!(out[0].is_error, "{:?}", out[0]);
    assert!(out[0].output.contains("Permission denied"), "{:?}", out[0]);
    assert!(
        !outside.exists(),
        "a write outside the workspace is refused"
    );
    assert!(!out[1].is_error, "{:?}", out[1]);
    assert!(d.home.workspace().join("sub/moved.txt").exists());
    assert!(!out[2].is_error, "{:?}", out[2]);
    assert!(allowed.join("ok.txt").exists());
    assert!(!out[3].is_error, "{:?}", out[3]);
    assert!(out[3].output.contains("tmp\nheredoc ok"), "{:?}", out[3]);
    let tmpdir = out[3]
        .output
        .lines()
        .find_map(|l| l.strip_prefix("tmpdir="))
        .expect("TMPDIR printed");
    assert!(
        tmpdir.contains("localgpt-bash-"),
        "a private temp dir: {tmpdir}"
    );
    assert!(
        !Path::new(tmpdir).exists(),
        "the temp dir is removed after the call"
    );
    assert!(!out[4].is_error, "{:?}", out[4]);
    assert!(out[4].output.contains("fine"), "{:?}", out[4]);
    assert!(out[5].is_error, "{:?}", out[5]);
    assert!(
        d.home.config_path().exists(),
        "deleting outside is a write too"
    );
}

#[test]
fn bash_network_false_denies_tcp_connect() {
    let status = localgpt::agent::tools::bash_sandbox_status();
    if !status.network_rules {
        eprintln!(
            "skipped: no Landlock network rules here ({})",
            status.detail
        );
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = bash(&format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"
    ));
    let fake = FakeProvider::start();

    let denied = daemon(&fake, Home::new("nonet"), "bash_network = false");
    let out = run_tools(&denied, &fake, std::slice::from_ref(&connect));
    assert!(out[0].is_error, "{:?}", out[0]);
    assert!(out[0].output.contains("Permission denied"), "{:?}", out[0]);
    assert!(!connected(&listener), "no connection reached the listener");
    drop(denied);

    // The default lets the same command through: the refusal above was the setting's.
    let allowed = daemon(&fake, Home::new("net"), "");
    let out = run_tools(&allowed, &fake, &[connect]);
    assert!(!out[0].is_error, "{:?}", out[0]);
    assert!(out[0].output.contains("connected"), "{:?}", out[0]);
    assert!(connected(&listener));
}

/// A loopback web server: `/page` answers text, `/self` redirects to `/page`; it counts
/// the requests it saw.
struct Site {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    seen: Arc<AtomicUsize>,
}

impl Site {
    fn start() -> Site {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let (srv, count) = (server.clone(), seen.clone());
        std::thread::spawn(move || {
            while let Ok(req) = srv.recv() {
                count.fetch_add(1, Ordering::SeqCst);
                let resp = if req.url() == "/self" {
                    tiny_http::Response::from_string("")
                        .with_status_code(302)
                        .with_header(tiny_http::Header::from_bytes("Location", "/page").unwrap())
                } else {
                    tiny_http::Response::from_string("hello from the page")
                };
                let _ = req.respond(resp);
            }
        });
        Site { server, addr, seen }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

#[test]
fn web_fetch_refuses_names_for_loopback_unless_allowed() {
    let site = Site::start();
    let port = site.addr.port();
    let fake = FakeProvider::start();
    let fetch = |url: String| ("web_fetch", json!({ "url": url }));

    let strict = daemon(&fake, Home::new("fetch-strict"), "");
    let out = run_tools(
        &strict,
        &fake,
        &[
            fetch(format!("http://localhost:{port}/page")),
            fetch(format!("http://127.0.0.1:{port}/self")),
            fetch(format!("http://[::ffff:127.0.0.1]:{port}/page")),
        ],
    );
    for o in &out {
        assert!(o.is_error, "{o:?}");
        assert!(o.output.contains("tools.web_fetch_allow_private"), "{o:?}");
    }
    assert_eq!(
        site.seen.load(Ordering::SeqCst),
        0,
        "nothing reached the site"
    );
    drop(strict);

    let open = daemon(
        &fake,
        Home::new("fetch-open"),
        "web_fetch_allow_private = true",
    );
    let out = run_tools(
        &open,
        &fake,
        &[fetch(format!("http://localhost:{port}/self"))],
    );
    assert!(!out[0].is_error, "{:?}", out[0]);
    assert!(
        out[0].output.contains("hello from the page"),
        "{:?}",
        out[0]
    );
    assert_eq!(
        site.seen.load(Ordering::SeqCst),
        2,
        "the redirect was followed"
    );
}
