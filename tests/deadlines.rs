//! Deadlines on every connection and live control of WebSocket turns, over raw sockets
//! against the real daemon: unfinished heads, dribbling clients, `HTTP/2.0` request lines,
//! idle keep-alive, clients that stop reading; approve, cancel and ping mid-turn; the chat
//! lane shared with WebSocket turns; tool names that name no tool.
//!
//! No test asserts an upper bound on time: each waits for the event it is about (the
//! socket closing, a count in `/api/status`, the fake provider seeing the disconnect).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::fake_provider::{FakeProvider, Gate, Reply, bash_turn};
use support::stream_client::{ws_connect, ws_next, ws_send, ws_until};
use support::{Daemon, Home, eventually};

const MODEL: &str = "openai/gpt-test";

fn daemon(fake: &FakeProvider, extra: &str) -> Daemon {
    let home = Home::new("deadlines");
    home.write_config(&format!(
        "[heartbeat]\nenabled = false\n{}\n{extra}",
        fake.providers_toml("30s")
    ));
    Daemon::start_with(home, |cmd| {
        cmd.env("LOCALGPT_MODEL", MODEL);
    })
}

fn connections(d: &Daemon) -> Value {
    let (status, v) = d.get("/api/status");
    assert_eq!(status, 200, "{v}");
    v["connections"].clone()
}

fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads until the server closes the connection (or resets it); the bytes it sent.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

fn health_request(port: u16) -> String {
    format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
}

/// Reads one response with a `Content-Length` body from a kept-alive connection.
fn read_response(s: &mut TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("response");
        assert!(n > 0, "closed before a response");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                return (status, body[..len].to_string());
            }
        }
    }
}

#[test]
fn an_unfinished_head_is_closed_after_header_timeout() {
    let d = Daemon::start("[server]\nheader_timeout = \"1s\"\n[heartbeat]\nenabled = false\n");
    let mut s = TcpStream::connect(d.addr).unwrap();
    let opened = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let answer = read_until_closed(&mut s);
    let took = opened.elapsed();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // Never before its deadline (a lower bound holds on any machine).
    assert!(took >= Duration::from_millis(950), "closed after {took:?}");
    eprintln!("unfinished head closed after {took:?} (header_timeout 1s)");
    let c = connections(&d);
    assert!(c["closed_by_deadline"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(c["enforced"], true);
}

#[test]
fn dribbling_connections_are_released_while_health_answers() {
    const CONNS: usize = 200;
    let d = Daemon::start("[server]\nheader_timeout = \"1s\"\n[heartbeat]\nenabled = false\n");
    let baseline = threads(d.pid());
    let head = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1234567890123456789\r\n";
    let mut socks: Vec<TcpStream> = (0..CONNS)
        .map(|_| TcpStream::connect(d.addr).expect("connect"))
        .collect();
    // A byte to each, round and round, until the daemon has closed every one.
    let mut open = [true; CONNS];
    let mut sent = 0;
    let mut health_checked = false;
    while open.iter().any(|o| *o) {
        for (i, s) in socks.iter_mut().enumerate() {
            if open[i] && s.write_all(&head[sent % head.len()..][..1]).is_err() {
                open[i] = false;
            }
        }
        sent += 1;
        if !health_checked {
            // Cheap routes answer while the dribblers hold their threads.
            assert_eq!(d.get("/health").0, 200);
            health_checked = true;
        }
        thread::sleep(Duration::from_millis(100));
        // A write may succeed into a socket the daemon has shut down for reading only
        // once: look for the end of file too.
        for (i, s) in socks.iter_mut().enumerate() {
            s.set_nonblocking(true).expect("nonblocking");
            let mut b = [0u8; 64];
            if matches!(s.read(&mut b), Ok(0) | Err(_)) && open[i] {
                let eof =
                    !matches!(s.read(&mut b), Err(ref e) if e.kind() == ErrorKind::WouldBlock);
                if eof {
                    open[i] = false;
                }
            }
        }
    }
    assert_eq!(d.get("/health").0, 200);
    let c = connections(&d);
    assert!(
        c["closed_by_deadline"].as_u64().unwrap() >= CONNS as u64,
        "{c}"
    );
    // tiny_http's threads for them end (an idle pool thread lingers a few seconds).
    let settled = eventually(
        Duration::from_secs(30),
        "threads back near baseline",
        || {
            let now = threads(d.pid());
            (now <= baseline + 8).then_some(now)
        },
    );
    eprintln!("threads: {baseline} before, {settled} after {CONNS} dribbling connections");
}

#[test]
fn http2_request_lines_are_closed_by_the_deadline_and_counted() {
    const CONNS: usize = 20;
    let d = Daemon::start("[server]\nheader_timeout = \"1s\"\n[heartbeat]\nenabled = false\n");
    let fds_before = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .map(|r| r.count())
        .unwrap_or(0);
    let threads_before = threads(d.pid());
    let mut socks: Vec<TcpStream> = (0..CONNS)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).expect("connect");
            s.write_all(b"GET /health HTTP/2.0\r\nHost: localhost\r\n\r\n")
                .expect("write");
            s
        })
        .collect();
    for s in &mut socks {
        read_until_closed(s);
    }
    let c = eventually(Duration::from_secs(30), "stuck connections counted", || {
        let c = connections(&d);
        (c["stuck"].as_u64() == Some(CONNS as u64)).then_some(c)
    });
    let fds_after = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .map(|r| r.count())
        .unwrap_or(0);
    eprintln!(
        "{CONNS} HTTP/2.0 request lines: {c}; threads {threads_before} -> {}, fds {fds_before} -> {fds_after}",
        threads(d.pid())
    );
    assert!(d.wait_log("outlived its shutdown").contains("HTTP/2.0"));
    assert_eq!(d.get("/health").0, 200);
    let (_, out, err) = d.home.run(&["doctor"]);
    assert!(
        out.contains(&format!("{CONNS} connections are stuck in tiny_http")),
        "{out}{err}"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let d = Daemon::start("[server]\nidle_timeout = \"1s\"\n[heartbeat]\nenabled = false\n");
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(health_request(d.addr.port()).as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    let idle_from = Instant::now();
    let rest = read_until_closed(&mut s);
    assert!(rest.is_empty());
    assert!(idle_from.elapsed() >= Duration::from_millis(950));
}

#[test]
fn keep_alive_reuse_inside_the_window_still_works() {
    // A kept-alive connection waits for idle_timeout, not header_timeout.
    let d = Daemon::start(
        "[server]\nheader_timeout = \"1s\"\nidle_timeout = \"60s\"\n[heartbeat]\nenabled = false\n",
    );
    let mut s = TcpStream::connect(d.addr).unwrap();
    for _ in 0..3 {
        s.write_all(health_request(d.addr.port()).as_bytes())
            .unwrap();
        assert_eq!(read_response(&mut s), (200, r#"{"status":"ok"}"#.into()));
        thread::sleep(Duration::from_millis(1500));
    }
}

#[test]
fn a_stalled_sse_reader_is_cut_and_its_turn_cancelled() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "[server]\nwrite_timeout = \"1s\"");
    // Far more than the socket buffers hold, as fast as the fake can send it.
    let piece = "x".repeat(8192);
    fake.push(Reply::text("").pieces(vec![piece; 4000]));
    let body = r#"{"message":"a very long answer"}"#;
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(
        format!(
            "POST /api/chat/stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    // Never read: the daemon's writes block until write_timeout cuts the stream.
    assert!(
        fake.wait_for_disconnects(1, Duration::from_secs(60)),
        "the provider call was not cancelled"
    );
    d.wait_log("cancelled: the client went away");
    drop(s);
    assert_eq!(d.get("/health").0, 200);
}

#[test]
fn ws_approve_over_http_decides_a_websocket_turn() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "[tools]\napproval_timeout = \"60s\"");
    let marker = d.home.workspace().join("ws-http-approved");
    bash_turn(&fake, &marker);
    let mut ws = ws_connect(d.addr, None).unwrap();
    ws_send(&mut ws, &json!({"type": "chat", "message": "run it"}));
    let session = ws_until(&mut ws, "session")["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ask = ws_until(&mut ws, "approval_required");
    let (status, body) = d.post(
        &format!("/api/sessions/{session}/approve"),
        &json!({"request_id": ask["request_id"], "decision": "approve"}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let end = ws_until(&mut ws, "tool_end");
    assert_eq!(end["is_error"], false, "{end}");
    ws_until(&mut ws, "done");
    assert!(marker.exists());
}

#[test]
fn ws_approval_times_out_without_the_client_speaking() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "[tools]\napproval_timeout = \"1s\"");
    let marker = d.home.workspace().join("ws-never");
    bash_turn(&fake, &marker);
    let mut ws = ws_connect(d.addr, None).unwrap();
    ws_send(&mut ws, &json!({"type": "chat", "message": "run it"}));
    ws_until(&mut ws, "approval_required");
    // Silence: the timeout fires on its own.
    let mut next = ws_next(&mut ws);
    while next["type"] == "content" {
        next = ws_next(&mut ws);
    }
    assert_eq!(next["code"], "approval_timeout", "{next}");
    let end = ws_until(&mut ws, "tool_end");
    assert_eq!(end["is_error"], true);
    ws_until(&mut ws, "done");
    assert!(!marker.exists());
    // The session is free again.
    fake.push(Reply::text("again"));
    ws_send(&mut ws, &json!({"type": "chat", "message": "again"}));
    assert_eq!(ws_until(&mut ws, "done")["response"], "again");
}

#[test]
fn ws_cancel_and_ping_mid_stream() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    // After its first piece the answer waits on a gate that never opens.
    let gate = Gate::new();
    fake.push(
        Reply::text("")
            .pieces(["first ", "second ", "third"])
            .hold_after(1, &gate),
    );
    let mut ws = ws_connect(d.addr, None).unwrap();
    ws_send(&mut ws, &json!({"type": "chat", "message": "talk"}));
    ws_until(&mut ws, "content");
    ws_send(&mut ws, &json!({"type": "ping"}));
    assert_eq!(ws_until(&mut ws, "pong")["type"], "pong");
    ws_send(&mut ws, &json!({"type": "cancel"}));
    let mut last = ws_next(&mut ws);
    while last["type"] != "error" {
        last = ws_next(&mut ws);
    }
    assert_eq!(last["code"], "cancelled", "{last}");
    assert!(
        fake.wait_for_disconnects(1, Duration::from_secs(30)),
        "the provider stream was not ended"
    );
    // The connection goes on.
    ws_send(&mut ws, &json!({"type": "ping"}));
    assert_eq!(ws_next(&mut ws)["type"], "pong");
    drop(gate);
}

#[test]
fn a_websocket_turn_takes_a_chat_lane_place() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "[server]\nchat_workers = 1\nchat_queue = 0");
    let gate = Gate::new();
    fake.push(
        Reply::text("")
            .pieces(["held ", "answer"])
            .hold_after(1, &gate),
    );
    let mut ws = ws_connect(d.addr, None).unwrap();
    ws_send(
        &mut ws,
        &json!({"type": "chat", "message": "hold the lane"}),
    );
    ws_until(&mut ws, "content");
    // The lane is full: plain chat gets 503, a second WebSocket turn an error event.
    let (status, v) = d.post("/api/chat", r#"{"message":"hi"}"#);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("overloaded"))
    );
    let mut other = ws_connect(d.addr, None).unwrap();
    ws_send(&mut other, &json!({"type": "chat", "message": "me too"}));
    let mut e = ws_next(&mut other);
    while e["type"] == "session" {
        e = ws_next(&mut other);
    }
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("overloaded"))
    );
    ws_send(&mut other, &json!({"type": "ping"}));
    assert_eq!(ws_next(&mut other)["type"], "pong", "the socket stays open");
    // When the turn ends, the place is free.
    gate.open();
    ws_until(&mut ws, "done");
    fake.push(Reply::text("now"));
    let (status, v) = d.post("/api/chat", r#"{"message":"hi"}"#);
    assert_eq!(status, 200, "{v}");
}

#[test]
fn a_tool_name_that_names_no_tool_is_refused_at_start() {
    for (section, key) in [
        (
            "[tools]\nrequire_approval = [\"Bash\"]",
            "tools.require_approval",
        ),
        (
            "[heartbeat]\nallowed_tools = [\"memory_serch\"]",
            "heartbeat.allowed_tools",
        ),
    ] {
        let home = Home::new("badtool");
        home.write_config(section);
        let (status, _, stderr) = home.run(&["daemon", "start", "--foreground"]);
        assert_eq!(status.code(), Some(78), "{stderr}");
        assert!(stderr.contains(key), "{stderr}");
    }
}

#[test]
fn too_many_stuck_connections_stop_the_daemon_for_a_restart() {
    let mut d = Daemon::start(
        "[server]\nheader_timeout = \"1s\"\nmax_stuck_connections = 3\n[heartbeat]\nenabled = false\n",
    );
    let mut socks: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).expect("connect");
            s.write_all(b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n")
                .expect("write");
            s
        })
        .collect();
    for s in &mut socks {
        read_until_closed(s);
    }
    let status = d.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", d.stderr());
    assert!(d.stderr().contains("server.max_stuck_connections"));
}

/// A request in progress has no deadline, however long it takes (the watchdog must not
/// lose track of it, e.g. when its connection was accepted between two of its looks).
#[test]
fn a_request_longer_than_the_header_timeout_is_not_cut() {
    let d = Daemon::start(
        "[server]\nheader_timeout = \"1s\"\nidle_timeout = \"1s\"\ndebug_routes = true\n[heartbeat]\nenabled = false\n",
    );
    for _ in 0..3 {
        let (status, v) = d.post("/api/debug/sleep?ms=2500", "");
        assert_eq!(status, 200, "{v}");
    }
    let c = connections(&d);
    assert_eq!(c["closed_by_deadline"], 0, "{c}");
}
