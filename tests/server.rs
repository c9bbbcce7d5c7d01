//! The daemon foundation over real HTTP: routes, envelope, limits, lanes, auth, shutdown,
//! single instance, config errors.

mod support;

use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::{Daemon, Home, eventually};

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

/// Holds a chat slot for `ms`, retrying while the lane is full (a probe may hold the slot
/// for an instant); returns the final status and body.
fn hold_chat_slot(d: &Daemon, ms: u64) -> thread::JoinHandle<(u16, String)> {
    let url = d.url(&format!("/api/debug/sleep?ms={ms}"));
    thread::spawn(move || {
        loop {
            let mut r = ureq::post(&url)
                .config()
                .http_status_as_error(false)
                .build()
                .send("")
                .expect("request");
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_string().unwrap_or_default();
            if status != 503 {
                return (status, body);
            }
            thread::sleep(Duration::from_millis(5));
        }
    })
}

/// Waits until every chat slot is taken: a zero-length sleep is refused with 503.
fn wait_chat_lane_full(d: &Daemon) {
    eventually(Duration::from_secs(10), "chat lane saturated", || {
        let (status, _) = d.post("/api/debug/sleep?ms=0", "");
        (status == 503).then_some(())
    });
}

#[test]
fn health_and_status_shapes() {
    let d = Daemon::start("");
    let (status, body) = d.get("/health");
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    let (status, s) = d.get("/api/status");
    assert_eq!(status, 200);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["uptime_seconds"].is_u64());
    assert_eq!(s["model"], "claude-cli/opus");
    assert!(s["memory"]["files_indexed"].is_u64());
    assert!(s["memory"]["chunks"].is_u64());
    assert!(s["heartbeat"]["enabled"].is_boolean());
    assert!(s["heartbeat"].get("last_run").is_some());
    assert!(s["heartbeat"].get("next_run").is_some());
}

#[test]
fn errors_use_the_envelope() {
    let d = Daemon::start("[server]\ndebug_routes = true\nmax_body_bytes = 2048\n");
    let (status, body) = d.get("/no/such/thing");
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    let (status, headers, text) = d.raw_call("DELETE", "/health", None, &[]);
    assert_eq!(status, 405);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error_code(&body), "method_not_allowed");
    assert!(headers.iter().any(|(k, v)| k == "allow" && v == "GET"));

    let big = "x".repeat(4096);
    let (status, body) = d.post("/api/debug/sleep?ms=0", &big);
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));

    let long = format!("/health?{}", "a".repeat(5000));
    let (status, body) = d.get(&long);
    assert_eq!((status, error_code(&body)), (400, "invalid_request"));

    let (status, body) = d.post("/api/debug/sleep?ms=abc", "");
    assert_eq!((status, error_code(&body)), (400, "invalid_request"));
    assert!(body["error"]["message"].as_str().unwrap().contains("ms"));
}

#[test]
fn foreign_host_and_origin_are_refused() {
    let d = Daemon::start("");
    let raw = d.raw(
        b"GET /api/status HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let (status, _, text) = support::parse_response(&raw);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("forbidden"));

    let (status, body) = d.call(
        "GET",
        "/api/status",
        None,
        &[("Origin", "https://evil.example")],
    );
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, headers, _) = d.raw_call(
        "GET",
        "/api/status",
        None,
        &[("Origin", "http://localhost:3000")],
    );
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "access-control-allow-origin" && v == "http://localhost:3000")
    );
}

#[test]
fn bearer_token_guards_all_but_health() {
    let d = Daemon::start("[server]\nauth_token = \"s3cret-token\"\n");
    assert_eq!(d.get("/health").0, 200, "health needs no token");
    let (status, body) = d.get("/api/status");
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, _) = d.call(
        "GET",
        "/api/status",
        None,
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(status, 401);
    let (status, _) = d.call(
        "GET",
        "/api/status",
        None,
        &[("Authorization", "Bearer s3cret-token")],
    );
    assert_eq!(status, 200);
    let log = d.wait_log("GET /api/status 200");
    assert!(!log.contains("s3cret-token"), "token must not be logged");
}

#[test]
fn full_chat_lane_answers_503_at_once() {
    let d = Daemon::start("[server]\ndebug_routes = true\nchat_workers = 1\nchat_queue = 0\n");
    let sleeper = hold_chat_slot(&d, 3000);
    wait_chat_lane_full(&d);
    let (status, headers, text) = d.raw_call("POST", "/api/debug/sleep?ms=0", Some(""), &[]);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("overloaded"));
    assert!(headers.iter().any(|(k, v)| k == "retry-after" && v == "1"));
    assert_eq!(sleeper.join().unwrap().0, 200);
}

#[test]
fn cheap_routes_answer_while_chat_lane_is_saturated() {
    let d = Daemon::start("[server]\ndebug_routes = true\nchat_workers = 2\nchat_queue = 0\n");
    let sleepers: Vec<_> = (0..2).map(|_| hold_chat_slot(&d, 4000)).collect();
    wait_chat_lane_full(&d);
    for _ in 0..20 {
        assert_eq!(d.get("/health").0, 200);
        assert_eq!(d.get("/api/status").0, 200);
    }
    // The fast lane answered while both slow requests were still running.
    assert!(sleepers.iter().all(|s| !s.is_finished()));
    for s in sleepers {
        assert_eq!(s.join().unwrap().0, 200);
    }
}

#[test]
fn handler_panic_is_500_and_worker_survives() {
    let d = Daemon::start("[server]\ndebug_routes = true\nworkers = 1\n");
    for _ in 0..3 {
        let (status, body) = d.get("/api/debug/panic");
        assert_eq!((status, error_code(&body)), (500, "internal_error"));
        // Same single worker still serves.
        assert_eq!(d.get("/health").0, 200);
    }
    d.wait_log("deliberate panic");
}

#[test]
fn sigterm_lets_in_flight_request_finish_then_exits_0() {
    let mut d = Daemon::start("[server]\ndebug_routes = true\nchat_workers = 1\nchat_queue = 0\n");
    let sleeper = hold_chat_slot(&d, 1500);
    wait_chat_lane_full(&d);
    let status = d.stop();
    assert!(status.success(), "exit status {status:?}\n{}", d.stderr());
    let (status, body) = sleeper.join().unwrap();
    assert_eq!(status, 200, "in-flight request completed: {body}");
    assert!(body.contains("slept_ms"));
    assert!(d.stderr().contains("shutting down"));
}

#[test]
fn second_instance_is_refused() {
    let d = Daemon::start("");
    let (status, _, stderr) = d.home.run(&["daemon", "start", "--foreground"]);
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    let (status, _, stderr) = d.home.run(&["daemon", "start"]);
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert_eq!(d.get("/health").0, 200);
}

#[test]
fn port_in_use_is_refused_with_its_status() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let home = Home::new("port");
    home.write_config(&format!("[server]\nport = {port}\n"));
    let (status, _, stderr) = home.run(&["daemon", "start", "--foreground"]);
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[test]
fn bad_config_is_refused_with_its_status() {
    let home = Home::new("badcfg");
    home.write_config("[server]\nprot = 1\n");
    let (status, _, stderr) = home.run(&["daemon", "start", "--foreground"]);
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("prot"), "{stderr}");

    home.write_config("[server]\nbind = \"0.0.0.0\"\n");
    let (status, _, stderr) = home.run(&["daemon", "start", "--foreground"]);
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("auth_token"), "{stderr}");

    let (status, _, stderr) = home.run(&["daemon", "start"]);
    assert_eq!(
        status.code(),
        Some(78),
        "background start refuses too: {stderr}"
    );
}

#[test]
fn config_commands() {
    let home = Home::new("cfgcmd");
    let (status, out, _) = home.run(&["config", "path"]);
    assert!(status.success());
    assert_eq!(out.trim(), home.config_path().to_str().unwrap());

    let (status, _, _) = home.run(&["config", "init"]);
    assert!(status.success());
    let written = std::fs::read_to_string(home.config_path()).unwrap();
    assert_eq!(written, include_str!("../config.example.toml"));
    let (status, _, stderr) = home.run(&["config", "init"]);
    assert!(!status.success());
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(home.run(&["config", "init", "--force"]).0.success());

    home.write_config(
        "[server]\nauth_token = \"tok-abc\"\n[providers.openai]\napi_key = \"sk-live-123\"\n",
    );
    let (status, out, _) = home.run(&["config", "show"]);
    assert!(status.success());
    assert!(
        !out.contains("tok-abc") && !out.contains("sk-live-123"),
        "{out}"
    );
    assert!(out.contains("<redacted>"));
    assert!(out.contains("default_model"));
}

#[test]
fn background_start_status_stop() {
    let home = Home::new("bg");
    home.write_config("");
    let (status, out, stderr) = home.run(&["daemon", "start"]);
    assert!(status.success(), "{out}{stderr}");
    assert!(out.contains("started (pid"), "{out}");

    let (status, out, _) = home.run(&["daemon", "status"]);
    assert!(status.success(), "{out}");
    for field in ["pid:", "address:", "uptime:", "version:", "heartbeat:"] {
        assert!(out.contains(field), "{out}");
    }
    assert!(home.state_dir().join("localgpt.log").exists());

    let (status, out, _) = home.run(&["daemon", "stop"]);
    assert!(status.success(), "{out}");
    assert!(out.contains("stopped"));
    let (status, out, _) = home.run(&["daemon", "status"]);
    assert_eq!(status.code(), Some(3), "{out}");
    let log = std::fs::read_to_string(home.state_dir().join("localgpt.log")).unwrap();
    assert!(log.contains("listening on"), "{log}");
}

#[test]
fn without_listener_the_daemon_still_runs() {
    let home = Home::new("nolisten");
    home.write_config("[server]\nenabled = false\n");
    let mut child = home
        .command()
        .args(["daemon", "start", "--foreground"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(10), "pid file", || {
        std::fs::read_to_string(home.pid_file())
            .ok()
            .filter(|t| !t.is_empty())
    });
    assert!(child.try_wait().unwrap().is_none(), "still running");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = support::wait_timeout(&mut child, Duration::from_secs(10)).unwrap();
    assert!(status.success());
}

/// Regression: a burst as large as the lane was refused with 503 while workers sat idle,
/// because admission counted channel slots and woken workers had not yet taken theirs.
#[test]
fn r_burst_within_capacity_is_not_refused() {
    let d = Daemon::start("[server]\ndebug_routes = true\nchat_workers = 24\nchat_queue = 1\n");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(24));
    let handles: Vec<_> = (0..24)
        .map(|_| {
            let (url, barrier) = (d.url("/api/debug/sleep?ms=300"), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                ureq::post(&url)
                    .config()
                    .http_status_as_error(false)
                    .build()
                    .send("")
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), 200);
    }
}

/// Regression: a `Content-Length` of a terabyte made tiny_http allocate a terabyte when the
/// refused request was dropped, aborting the daemon.
#[test]
fn r_absurd_content_length_is_refused_without_crashing() {
    let d = Daemon::start("");
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::{Read, Write};
    s.write_all(
        b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000000\r\n\r\n{\"message\":\"x\"}",
    )
    .unwrap();
    let mut head = [0u8; 64];
    let n = s.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 413"));
    drop(s);
    for _ in 0..3 {
        assert_eq!(d.get("/health").0, 200, "the daemon is still up");
    }
}

/// Reads one response with a `Content-Length` body off a keep-alive connection.
fn read_one_response(s: &mut std::net::TcpStream) -> std::io::Result<u16> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    s.read_exact(&mut body)?;
    Ok(text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// Regression: tiny_http 0.12's connection pool can leave a connection from a burst
/// unserved until another connection closes (scripts/repro-pool-stall.sh). Here no
/// connection closes until every one has its answer, so a stranded one would never get
/// it; the daemon's nudging must get it served.
#[test]
fn r_a_burst_of_keep_alive_connections_is_served_while_all_stay_open() {
    use std::io::Write;
    use std::sync::{Arc, Barrier, mpsc};
    const CONNS: usize = 64;
    let d = Daemon::start("[heartbeat]\nenabled = false\n[server]\nqueue = 128\n");
    for round in 0..3 {
        let go = Arc::new(Barrier::new(CONNS));
        let (answered, answers) = mpsc::channel();
        let release = Arc::new(Barrier::new(CONNS + 1));
        let clients: Vec<_> = (0..CONNS)
            .map(|_| {
                let (go, answered, release, addr) =
                    (go.clone(), answered.clone(), release.clone(), d.addr);
                thread::spawn(move || {
                    go.wait();
                    let result = std::net::TcpStream::connect(addr).and_then(|mut s| {
                        s.set_read_timeout(Some(Duration::from_secs(30)))?;
                        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
                        let status = read_one_response(&mut s);
                        Ok((s, status))
                    });
                    match result {
                        Ok((s, status)) => {
                            let _ = answered.send(status.map_err(|e| e.to_string()));
                            release.wait(); // keep the connection open until all are answered
                            drop(s);
                        }
                        Err(e) => {
                            let _ = answered.send(Err(e.to_string()));
                            release.wait();
                        }
                    }
                })
            })
            .collect();
        drop(answered);
        let mut ok = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while ok < CONNS {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match answers.recv_timeout(left) {
                Ok(Ok(200)) => ok += 1,
                Ok(other) => panic!("round {round}: {other:?}"),
                Err(_) => panic!(
                    "round {round}: only {ok} of {CONNS} connections answered while all stay open"
                ),
            }
        }
        release.wait();
        for c in clients {
            c.join().unwrap();
        }
    }
}

/// `/health` is a liveness probe: a free fast-lane worker takes it before the requests
/// queued ahead of it, so a busy daemon still answers it after one request, not a queue.
///
/// The order is read from the daemon's access log (the order the worker finished the
/// requests), not from client threads that may be scheduled late. The first sleeper holds
/// the only worker for 1.5 s, so the queued ones and /health are all in before it ends
/// unless this thread stalls for that long.
#[test]
fn health_is_taken_before_the_fast_lane_queue() {
    let d = Daemon::start(
        "[heartbeat]\nenabled = false\n[server]\ndebug_routes = true\nworkers = 1\nqueue = 8\n",
    );
    let mut clients = Vec::new();
    for ms in [1500, 300, 300, 300, 300] {
        let addr = d.addr;
        clients.push(thread::spawn(move || {
            post_empty(addr, &format!("/api/debug/sleep-fast?ms={ms}"))
        }));
    }
    let (status, body) = d.get("/health");
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    let finished = eventually(Duration::from_secs(10), "5 sleepers logged", || {
        let order: Vec<String> = d
            .stderr()
            .lines()
            .filter_map(|l| {
                if l.contains("POST /api/debug/sleep-fast 200") {
                    Some("sleeper".to_string())
                } else if l.contains("GET /health 200") {
                    Some("health".to_string())
                } else {
                    None
                }
            })
            .collect();
        (order.iter().filter(|o| *o == "sleeper").count() == 5).then_some(order)
    });
    let health = finished.iter().position(|o| o == "health").unwrap();
    assert!(
        health <= 2,
        "health waited behind the queued sleepers: {finished:?}"
    );
}

/// An empty POST on a fresh connection; the status.
fn post_empty(addr: std::net::SocketAddr, path: &str) -> u16 {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    read_one_response(&mut s).unwrap()
}
