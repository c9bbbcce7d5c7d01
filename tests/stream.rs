//! Sessions, SSE streaming, live approval and the WebSocket, over real sockets against the
//! real daemon and the fake provider.

mod support;

use std::time::Duration;

use serde_json::json;
use support::fake_provider::{FakeProvider, Gate, Reply, bash_turn};
use support::stream_client::{Sse, ws_connect, ws_next, ws_send, ws_until};
use support::{Daemon, eventually};

const MODEL: &str = "openai/gpt-test";

fn daemon(fake: &FakeProvider, extra: &str) -> Daemon {
    let home = support::Home::new("stream");
    home.write_config(&format!(
        "[heartbeat]\nenabled = false\n{}\n{extra}",
        fake.providers_toml("5s")
    ));
    Daemon::start_with(home, |cmd| {
        cmd.env("LOCALGPT_MODEL", MODEL);
    })
}

fn kinds(events: &[support::stream_client::Event]) -> Vec<String> {
    events.iter().map(|e| e.kind().to_string()).collect()
}

#[test]
fn sessions_crud_and_history() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let (status, created) = d.post("/api/sessions", "");
    assert_eq!(status, 201, "{created}");
    let id = created["session_id"].as_str().unwrap().to_string();
    assert_eq!(created["model"], MODEL);
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, custom) = d.post("/api/sessions", r#"{"model":"ollama/llama-test"}"#);
    assert_eq!(
        (status, custom["model"].as_str()),
        (201, Some("ollama/llama-test"))
    );
    assert_eq!(d.post("/api/sessions", r#"{"model":"nope"}"#).0, 400);

    fake.push(Reply::text("Nice to meet you, Ada."));
    fake.push(Reply::text("Your name is Ada."));
    let (s1, _) = d.post(
        "/api/chat",
        &json!({"message": "My name is Ada.", "session_id": id}).to_string(),
    );
    let (s2, second) = d.post(
        "/api/chat",
        &json!({"message": "What is my name?", "session_id": id}).to_string(),
    );
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(second["session_id"], id.as_str());
    let history = fake.requests()[1].body.to_string();
    assert!(
        history.contains("My name is Ada.") && history.contains("Nice to meet you, Ada."),
        "{history}"
    );

    let (_, list) = d.get("/api/sessions");
    let listed = list["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let mine = listed
        .iter()
        .find(|s| s["session_id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["message_count"], 4);

    let (status, got) = d.get(&format!("/api/sessions/{id}"));
    assert_eq!(status, 200);
    let roles: Vec<&str> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert!(got["messages"][0]["created_at"].is_string());

    let (status, del) = d.delete(&format!("/api/sessions/{id}"));
    assert_eq!(status, 200);
    assert_eq!(del, json!({"deleted": true, "session_id": id}));
    assert_eq!(d.delete(&format!("/api/sessions/{id}")).0, 404);
    assert_eq!(d.get(&format!("/api/sessions/{id}")).0, 404);
}

#[test]
fn long_history_is_summarised_not_dropped() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "[agent]\nhistory_chars = 1000\n");
    let (_, s) = d.post("/api/sessions", "");
    let id = s["session_id"].as_str().unwrap();
    for i in 0..4 {
        fake.push(Reply::text(&format!("answer {i} {}", "x".repeat(200))));
        let (status, _) = d.post(
            "/api/chat",
            &json!({"message": format!("question {i}"), "session_id": id}).to_string(),
        );
        assert_eq!(status, 200);
    }
    // Before the summary, a silent turn lets the model save what should last.
    fake.push(Reply::text("done"));
    fake.push(Reply::text("SUMMARY: asked questions 0-2"));
    fake.push(Reply::text("final"));
    let before = fake.request_count();
    let (status, _) = d.post(
        "/api/chat",
        &json!({"message": "and now?", "session_id": id}).to_string(),
    );
    assert_eq!(status, 200);
    let requests = fake.requests();
    assert_eq!(
        requests.len(),
        before + 3,
        "the memory flush, one summary call, then the turn"
    );
    let summary_call = requests[before + 1].body.to_string();
    assert!(
        summary_call.contains("question 0"),
        "the oldest turn went into the summary"
    );
    let turn = requests[before + 2].body.to_string();
    assert!(
        turn.contains("SUMMARY: asked questions 0-2"),
        "the summary is in the prompt"
    );
    assert!(
        !turn.contains("question 0"),
        "summarised messages are not resent verbatim"
    );
    // Nothing is deleted from the stored session.
    let (_, got) = d.get(&format!("/api/sessions/{id}"));
    assert_eq!(got["messages"].as_array().unwrap().len(), 10);
}

#[test]
fn sse_events_arrive_while_the_provider_streams() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let delay = Duration::from_millis(250);
    fake.push(
        Reply::text("")
            .pieces(["one ", "two ", "three ", "four ", "five"])
            .delay(delay),
    );
    let mut sse = Sse::open(d.addr, r#"{"message":"count"}"#);
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    assert_eq!(sse.header("cache-control"), Some("no-cache"));
    let events = sse.collect();
    let first = events.iter().find(|e| e.kind() == "content").unwrap();
    let done = events.iter().find(|e| e.kind() == "done").unwrap();
    // The fake waits `delay` before each of the 4 later pieces, so the first delta can only
    // be this far ahead of the end if it was delivered as it was produced.
    assert!(done.at.duration_since(first.at) >= delay * 4 - Duration::from_millis(50));
    assert_eq!(done.data["response"], "one two three four five");
    let deltas: String = events
        .iter()
        .filter(|e| e.kind() == "content")
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "one two three four five");
    let ids: Vec<u64> = events.iter().filter_map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[1] > w[0]), "ids increase: {ids:?}");
    assert_eq!(events.last().unwrap().data, json!("[DONE]"));
}

#[test]
fn sse_tool_turn_has_the_exact_event_sequence() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    fake.push(Reply::tool_call(
        "memory_search",
        json!({"query": "anything"}),
    ));
    fake.push(Reply::text("").pieces(["Nothing ", "found."]));
    let mut sse = Sse::open(d.addr, r#"{"message":"search"}"#);
    let events = sse.collect();
    assert_eq!(
        kinds(&events),
        [
            "session",
            "tool_start",
            "tool_end",
            "content",
            "content",
            "done",
            "[DONE]"
        ]
    );
    let start = &events[1].data;
    let end = &events[2].data;
    assert_eq!(start["name"], "memory_search");
    assert_eq!(start["arguments"], json!({"query": "anything"}));
    assert_eq!(end["id"], start["id"]);
    assert_eq!(end["is_error"], false);
    let done = &events[5].data;
    assert_eq!(done["tools_used"][0]["name"], "memory_search");
    assert_eq!(done["session_id"], events[0].data["session_id"]);
    // The stream's session holds the whole turn.
    let (_, s) = d.get(&format!(
        "/api/sessions/{}",
        done["session_id"].as_str().unwrap()
    ));
    assert_eq!(s["message_count"], 4, "{s}");
}

#[test]
fn sse_errors_after_start_are_events() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    fake.push(Reply::fault(support::fake_provider::Fault::Status(
        500,
        "boom upstream".into(),
    )));
    let mut sse = Sse::open(d.addr, r#"{"message":"hi"}"#);
    let events = sse.collect();
    assert_eq!(kinds(&events), ["session", "error", "[DONE]"]);
    assert_eq!(events[1].data["code"], "provider_error");
    assert!(
        events[1].data["message"]
            .as_str()
            .unwrap()
            .contains("boom upstream")
    );
    // Validation errors come before the stream, as plain JSON.
    let bad = Sse::open(d.addr, r#"{"message": 3}"#);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("invalid_request"));
    let missing = Sse::open(d.addr, r#"{"message": "x", "session_id": "nope"}"#);
    assert_eq!(missing.status, 404);
}

#[test]
fn sse_approval_approve_deny_timeout() {
    let fake = FakeProvider::start();
    // A decision must beat approval_timeout: a long one where the test decides (a busy
    // machine may take its time), a short one where the timeout is the point.
    let patient = daemon(&fake, "[tools]\napproval_timeout = \"60s\"\n");
    let hasty = daemon(&fake, "[tools]\napproval_timeout = \"1s\"\n");
    for (decision, should_run, d) in [
        (Some("approve"), true, &patient),
        (Some("deny"), false, &patient),
        (None, false, &hasty),
    ] {
        // In the workspace: the bash sandbox refuses writes elsewhere.
        let marker = d
            .home
            .workspace()
            .join(format!("marker-{}", decision.unwrap_or("timeout")));
        bash_turn(&fake, &marker);
        let mut sse = Sse::open(d.addr, r#"{"message":"run it"}"#);
        let session = sse.until("session").data["session_id"]
            .as_str()
            .unwrap()
            .to_string();
        let ask = sse.until("approval_required");
        assert_eq!(ask.data["tool"], "bash");
        if let Some(decision) = decision {
            let (status, body) = d.post(
                &format!("/api/sessions/{session}/approve"),
                &json!({"request_id": ask.data["request_id"], "decision": decision}).to_string(),
            );
            assert_eq!(status, 200, "{body}");
        }
        let end = sse.until("tool_end");
        assert_eq!(
            end.data["is_error"], !should_run,
            "{decision:?}: {}",
            end.data
        );
        if decision.is_none() {
            assert!(
                end.data["output"]
                    .as_str()
                    .unwrap()
                    .contains("approval_timeout")
            );
        }
        sse.until("done");
        assert_eq!(marker.exists(), should_run, "{decision:?}");
    }
    // A decision for nothing pending is 404; a bad decision is 400.
    let d = patient;
    let (_, s) = d.post("/api/sessions", "");
    let id = s["session_id"].as_str().unwrap();
    assert_eq!(
        d.post(
            &format!("/api/sessions/{id}/approve"),
            r#"{"request_id":"x","decision":"approve"}"#
        )
        .0,
        404
    );
    assert_eq!(
        d.post(
            &format!("/api/sessions/{id}/approve"),
            r#"{"request_id":"x","decision":"maybe"}"#
        )
        .0,
        400
    );
}

#[test]
fn client_disconnect_cancels_the_turn() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    // After the first piece the answer waits for a gate that never opens: only the
    // client's going away can end this turn.
    let gate = Gate::new();
    let pieces: Vec<String> = (0..100).map(|i| format!("piece{i} ")).collect();
    fake.push(Reply::text("").pieces(pieces).hold_after(1, &gate));
    let mut sse = Sse::open(d.addr, r#"{"message":"long answer"}"#);
    let session = sse.until("session").data["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    sse.until("content");
    drop(sse);
    assert!(
        fake.wait_for_disconnects(1, Duration::from_secs(10)),
        "the provider request was dropped"
    );
    // The turn ended without an answer being stored.
    eventually(Duration::from_secs(10), "session idle", || {
        let (_, s) = d.get(&format!("/api/sessions/{session}"));
        let roles: Vec<String> = s["messages"]
            .as_array()?
            .iter()
            .map(|m| m["role"].as_str().unwrap_or("").to_string())
            .collect();
        (roles == ["user"]).then_some(())
    });
    assert_eq!(d.get("/health").0, 200);
}

#[test]
fn sessions_survive_restart_and_kill_9() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    fake.push(Reply::text("first answer"));
    let (_, s) = d.post("/api/sessions", "");
    let id = s["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        d.post(
            "/api/chat",
            &json!({"message": "remember me", "session_id": id}).to_string()
        )
        .0,
        200
    );

    // kill -9 in the middle of a streaming turn.
    // Held after the first piece until the daemon is killed, however long that takes.
    let gate = Gate::new();
    fake.push(
        Reply::text("")
            .pieces((0..50).map(|i| format!("p{i} ")))
            .hold_after(1, &gate),
    );
    let mut sse = Sse::open(
        d.addr,
        &json!({"message": "second", "session_id": id}).to_string(),
    );
    sse.until("content");
    let home = d.into_home();

    let db = home.state_dir().join("sessions.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM messages WHERE session_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        n, 3,
        "two messages of the first turn and the committed user message of the second"
    );
    drop(conn);

    let d = Daemon::start_in(home);
    let (status, got) = d.get(&format!("/api/sessions/{id}"));
    assert_eq!(status, 200);
    let contents: Vec<&str> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["remember me", "first answer", "second"]);
}

#[test]
fn ws_chat_ping_and_approval() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "[tools]\napproval_timeout = \"1s\"\n");
    let mut ws = ws_connect(d.addr, None).unwrap();
    ws_send(&mut ws, &json!({"type": "ping"}));
    assert_eq!(ws_next(&mut ws)["type"], "pong");
    ws_send(&mut ws, &json!({"type": "session"}));
    let connected = ws_next(&mut ws);
    assert_eq!(connected["type"], "connected");
    let session = connected["session_id"].as_str().unwrap().to_string();

    fake.push(Reply::text("").pieces(["Hel", "lo"]));
    ws_send(&mut ws, &json!({"type": "chat", "message": "hi"}));
    assert_eq!(ws_next(&mut ws), json!({"type": "content", "delta": "Hel"}));
    ws_until(&mut ws, "content");
    let done = ws_until(&mut ws, "done");
    assert_eq!(done["response"], "Hello");
    assert_eq!(done["session_id"], session.as_str());

    for (decision, should_run) in [("approve", true), ("deny", false), ("timeout", false)] {
        let marker = d.home.workspace().join(format!("ws-{decision}"));
        bash_turn(&fake, &marker);
        ws_send(&mut ws, &json!({"type": "chat", "message": "run"}));
        let ask = ws_until(&mut ws, "approval_required");
        if decision == "timeout" {
            // The timeout fires on its own, the client silent (no sleep to race).
            let e = ws_next(&mut ws);
            assert_eq!(e["code"], "approval_timeout", "{e}");
        } else {
            ws_send(
                &mut ws,
                &json!({"type": "approve", "request_id": ask["request_id"], "decision": decision}),
            );
        }
        let end = ws_until(&mut ws, "tool_end");
        assert_eq!(end["is_error"], !should_run, "{decision}: {end}");
        ws_until(&mut ws, "done");
        assert_eq!(marker.exists(), should_run, "{decision}");
    }

    // cancel while a tool waits stops the turn.
    bash_turn(&fake, &d.home.workspace().join("never"));
    ws_send(&mut ws, &json!({"type": "chat", "message": "run"}));
    ws_until(&mut ws, "approval_required");
    ws_send(&mut ws, &json!({"type": "cancel"}));
    let mut last = ws_next(&mut ws);
    while last["type"] != "error" {
        last = ws_next(&mut ws);
    }
    assert_eq!(last["code"], "cancelled", "{last}");
}

#[test]
fn ws_bad_json_oversize_origin_and_close() {
    let d = Daemon::start("[server]\nws_max_message_bytes = 2048\n");
    let mut ws = ws_connect(d.addr, Some("http://localhost:5173")).unwrap();
    ws.send(tungstenite::Message::text("{not json")).unwrap();
    let e = ws_next(&mut ws);
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("invalid_request"))
    );
    ws_send(&mut ws, &json!({"type": "dance"}));
    assert_eq!(ws_next(&mut ws)["code"], "invalid_request");
    // Protocol ping is answered with a pong frame.
    ws.send(tungstenite::Message::Ping(b"hello".to_vec().into()))
        .unwrap();
    match ws.read().unwrap() {
        tungstenite::Message::Pong(p) => assert_eq!(&p[..], b"hello"),
        other => panic!("expected pong, got {other:?}"),
    }
    // Too big: closed with 1009.
    let _ = ws.send(tungstenite::Message::text("x".repeat(10_000)));
    let code = loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(f))) => break u16::from(f.code),
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    };
    assert_eq!(code, 1009);

    // A foreign Origin never gets upgraded.
    match ws_connect(d.addr, Some("https://evil.example")) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    // A normal close handshake.
    let mut ws = ws_connect(d.addr, None).unwrap();
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

#[test]
fn ws_connections_are_bounded() {
    let d = Daemon::start("[server]\nmax_websockets = 2\n");
    let _a = ws_connect(d.addr, None).unwrap();
    let _b = ws_connect(d.addr, None).unwrap();
    match ws_connect(d.addr, None) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    drop(_a);
    eventually(Duration::from_secs(10), "a slot frees up", || {
        ws_connect(d.addr, None).ok()
    });
}

#[test]
fn cheap_routes_stay_fast_while_every_chat_slot_streams() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "[server]\nchat_workers = 2\nchat_queue = 0\n");
    // Both streams send one piece, then hold their chat slots until the checks are done.
    let gate = Gate::new();
    for _ in 0..2 {
        fake.push(
            Reply::text("")
                .pieces((0..4).map(|i| format!("w{i} ")))
                .hold_after(1, &gate),
        );
    }
    let mut streams: Vec<Sse> = (0..2)
        .map(|_| Sse::open(d.addr, r#"{"message":"slow"}"#))
        .collect();
    for s in &mut streams {
        s.until("content");
    }
    let (status, body) = d.post("/api/chat", r#"{"message":"one more"}"#);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    // The streams cannot end before the gate opens: had these waited for a chat slot,
    // they would never be answered.
    for _ in 0..10 {
        assert_eq!(d.get("/health").0, 200);
        assert_eq!(d.get("/api/status").0, 200);
        assert_eq!(d.get("/api/memory/search?q=anything").0, 200);
    }
    gate.open();
    for s in &mut streams {
        let e = s.next().unwrap();
        assert_eq!(e.kind(), "content", "the held stream goes on");
        s.until("done");
    }
}

/// A script sends its next turn the moment it reads `done`: the session must be free by
/// then (it used to be released only after `[DONE]` was written).
#[test]
fn session_is_free_when_the_stream_says_done() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let (_, created) = d.post("/api/sessions", "");
    let id = created["session_id"].as_str().unwrap().to_string();
    for turn in 0..30 {
        fake.push(Reply::text("ok"));
        let mut sse = Sse::open(
            d.addr,
            &json!({"message": "next", "session_id": id}).to_string(),
        );
        assert_eq!(sse.status, 200, "turn {turn}: {}", sse.body);
        sse.until("done");
    }
}

/// RFC 6455: only version 13 is spoken, and a refusal says so (found by schemathesis: a
/// request without `Sec-WebSocket-Version` used to be upgraded).
#[test]
fn ws_upgrade_needs_version_13_and_a_real_key() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let key = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    let upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade")];
    for extra in [
        vec![key],
        vec![key, ("Sec-WebSocket-Version", "8")],
        vec![
            ("Sec-WebSocket-Key", "short"),
            ("Sec-WebSocket-Version", "13"),
        ],
    ] {
        let headers: Vec<(&str, &str)> = upgrade.iter().copied().chain(extra.clone()).collect();
        let (status, hs, body) = d.raw_call("GET", "/api/ws", None, &headers);
        assert_eq!(status, 400, "{extra:?}: {body}");
        assert!(
            hs.iter()
                .any(|(k, v)| k == "sec-websocket-version" && v == "13"),
            "{hs:?}"
        );
        assert!(body.contains("invalid_request"), "{body}");
    }
    assert!(
        ws_connect(d.addr, None).is_ok(),
        "a proper upgrade still works"
    );
}
