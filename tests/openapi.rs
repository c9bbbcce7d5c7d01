//! `GET /api/openapi.json` is kept true by driving the running daemon into every status the
//! document lists for every operation, and checking each answer against the documented
//! schema (required fields, types, enums, ranges). A status the daemon answers that the
//! document does not list fails too.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_provider::{FakeProvider, Fault, Gate, Reply};
use support::stream_client::{Sse, ws_connect};
use support::{Daemon, Home, eventually};

const MODEL: &str = "openai/gpt-test";

/// Every (method, path template) the document lists, with its documented statuses.
fn operations(spec: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (path, ops) in spec["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let statuses = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .cloned()
                .collect();
            out.insert((method.to_uppercase(), path.clone()), statuses);
        }
    }
    out
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node["$ref"].as_str() {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            resolve(
                spec,
                spec.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {r}")),
            )
        }
        None => node,
    }
}

/// Checks `value` against the subset of JSON Schema the document uses.
fn validate(spec: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(spec, schema);
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            validate(spec, s, value, at)?;
        }
    }
    let ok = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => return Err(format!("{at}: unknown schema type {other}")),
    };
    if !ok {
        return Err(format!("{at}: {value} is not of type {}", schema["type"]));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            return Err(format!("{at}: {n} is below the minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            return Err(format!("{at}: {n} is above the maximum"));
        }
    }
    if let Some(required) = schema["required"].as_array() {
        for name in required.iter().filter_map(Value::as_str) {
            if value.get(name).is_none() {
                return Err(format!(
                    "{at}: required field {name:?} is missing in {value}"
                ));
            }
        }
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object()) {
        for (name, sub) in props {
            if let Some(v) = obj.get(name) {
                validate(spec, sub, v, &format!("{at}.{name}"))?;
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            validate(spec, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Records which documented statuses were seen, checking each answer on the way.
struct Conformance {
    spec: Value,
    seen: BTreeSet<(String, String, String)>,
}

impl Conformance {
    fn new(d: &Daemon) -> Conformance {
        let (status, spec) = d.get("/api/openapi.json");
        assert_eq!(status, 200);
        assert!(
            spec["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3."))
        );
        Conformance {
            spec,
            seen: BTreeSet::new(),
        }
    }

    /// Checks one answer of `method template` against the document.
    fn check(
        &mut self,
        method: &str,
        template: &str,
        status: u16,
        headers: &[(String, String)],
        body: &str,
    ) {
        let what = format!("{method} {template} -> {status}");
        let op = &self.spec["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{what}: operation not documented");
        let code = status.to_string();
        let documented = &op["responses"][&code];
        assert!(
            documented.is_object(),
            "{what}: status not documented; body {body}"
        );
        let response = resolve(&self.spec, documented);
        let content_type = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let streamed = content_type.starts_with("text/event-stream");
        if streamed && response.pointer("/content/text~1event-stream").is_some() {
            // A stream where the operation documents one (it may document JSON too).
        } else if let Some(schema) = response
            .pointer("/content/application~1json/schema")
            .cloned()
        {
            assert!(
                content_type.starts_with("application/json"),
                "{what}: content-type {content_type:?}"
            );
            let value: Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {body}"));
            if let Err(e) = validate(&self.spec, &schema, &value, "body") {
                panic!("{what}: {e}");
            }
            if status >= 400 {
                let code = value["error"]["code"].as_str().unwrap_or("");
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| d.contains(&format!("{code}:"))),
                    "{what}: error code {code:?} is not the one documented for this status: {}",
                    response["description"]
                );
            }
        } else if response.pointer("/content/text~1event-stream").is_some() {
            assert!(
                content_type.starts_with("text/event-stream"),
                "{what}: content-type {content_type:?}"
            );
        }
        if status == 503 {
            assert!(
                headers.iter().any(|(k, _)| k == "retry-after"),
                "{what}: no Retry-After"
            );
        }
        self.seen.insert((method.into(), template.into(), code));
    }

    /// Sends a request and checks its answer.
    fn call(
        &mut self,
        d: &Daemon,
        method: &str,
        template: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let (status, hs, text) = d.raw_call(method, path, body, headers);
        self.check(method, template, status, &hs, &text);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Documented (operation, status) pairs not seen, leaving out `except` statuses.
    fn unseen(&self, except: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for ((method, path), statuses) in operations(&self.spec) {
            for s in statuses {
                if !except.contains(&s.as_str())
                    && !self
                        .seen
                        .contains(&(method.clone(), path.clone(), s.clone()))
                {
                    out.push(format!("{method} {path} {s}"));
                }
            }
        }
        out
    }
}

/// A concrete path for a template, with a real session where one is wanted.
fn concrete(template: &str, session: &str) -> String {
    template.replace("{id}", session)
}

/// A body a POST route accepts, so only the thing under test is wrong.
fn body_for(method: &str, path: &str) -> Option<String> {
    (method == "POST").then(|| match path {
        "/api/chat" | "/api/chat/stream" => json!({"message": "hi"}).to_string(),
        "/v1/chat/completions" => v1_body(false),
        p if p.ends_with("/approve") => {
            json!({"request_id": "nope", "decision": "approve"}).to_string()
        }
        _ => "{}".into(),
    })
}

/// A `/v1/chat/completions` body.
fn v1_body(stream: bool) -> String {
    json!({"model": "localgpt", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
        .to_string()
}

/// An empty POST over a fresh connection; the raw answer.
fn post(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn config(fake: &FakeProvider, server: &str) -> String {
    format!(
        "[server]\nport = 0\ndebug_routes = true\n{server}\n\
         [agent]\ndefault_model = \"{MODEL}\"\n[heartbeat]\nenabled = false\n{}",
        fake.providers_toml("2s")
    )
}

fn start(fake: &FakeProvider, server: &str) -> Daemon {
    let home = Home::new("openapi");
    home.write_config(&config(fake, server));
    Daemon::start_in(home)
}

#[test]
fn every_documented_status_is_answered_as_documented() {
    let fake = FakeProvider::start();
    let d = start(&fake, "max_body_bytes = 8192\nmax_query_bytes = 1024");
    std::fs::write(
        d.home.workspace().join("MEMORY.md"),
        "# Notes\n\nThe conformance test looks for the word aardvark.\n",
    )
    .unwrap();
    let mut c = Conformance::new(&d);
    let ops = operations(&c.spec);
    let (_, created) = c.call(
        &d,
        "POST",
        "/api/sessions",
        "/api/sessions",
        Some("{}"),
        &[],
    );
    let session = created["session_id"]
        .as_str()
        .expect("session id")
        .to_string();

    // What every operation answers: a foreign Origin, an overlong target, an oversized body.
    for (method, template) in ops.keys() {
        let path = concrete(template, &session);
        let body = body_for(method, template);
        if template == "/api/ws" {
            continue; // below: the upgrade has its own answers
        }
        let (status, _) = c.call(
            &d,
            method,
            template,
            &path,
            body.as_deref(),
            &[("Origin", "http://evil.example")],
        );
        assert_eq!(status, 403, "{method} {template}");
        let long = format!("{path}?pad={}", "a".repeat(1100));
        let (status, _) = c.call(&d, method, template, &long, body.as_deref(), &[]);
        assert_eq!(status, 400, "{method} {template}");
        let many: Vec<(String, String)> = (0..120)
            .map(|i| (format!("X-Pad-{i}"), "x".into()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, _) = c.call(&d, method, template, &path, body.as_deref(), &many);
        assert_eq!(status, 431, "{method} {template}");
        if method == "POST" {
            let big = format!("{{\"pad\":\"{}\"}}", "b".repeat(9000));
            let (status, _) = c.call(&d, method, template, &path, Some(&big), &[]);
            assert_eq!(status, 413, "{method} {template}");
        }
    }

    // Success answers.
    let expect = |c: &mut Conformance,
                  method: &str,
                  template: &str,
                  path: &str,
                  body: Option<&str>,
                  want: u16| {
        let (status, value) = c.call(&d, method, template, path, body, &[]);
        assert_eq!(status, want, "{method} {path}: {value}");
        value
    };
    expect(&mut c, "GET", "/health", "/health", None, 200);
    expect(&mut c, "GET", "/api/status", "/api/status", None, 200);
    expect(
        &mut c,
        "GET",
        "/api/openapi.json",
        "/api/openapi.json",
        None,
        200,
    );
    expect(
        &mut c,
        "POST",
        "/api/memory/reindex",
        "/api/memory/reindex",
        Some("{\"force\":true}"),
        200,
    );
    let found = expect(
        &mut c,
        "GET",
        "/api/memory/search",
        "/api/memory/search?q=aardvark&limit=3",
        None,
        200,
    );
    assert_eq!(found["total"], 1, "{found}");
    expect(
        &mut c,
        "GET",
        "/api/memory/stats",
        "/api/memory/stats",
        None,
        200,
    );
    fake.push(Reply::text("Fine.").usage(3, 1));
    let chat = json!({"message": "hi", "session_id": session}).to_string();
    expect(&mut c, "POST", "/api/chat", "/api/chat", Some(&chat), 200);
    expect(&mut c, "GET", "/api/sessions", "/api/sessions", None, 200);
    let got = expect(
        &mut c,
        "GET",
        "/api/sessions/{id}",
        &format!("/api/sessions/{session}"),
        None,
        200,
    );
    assert_eq!(got["message_count"], 2, "{got}");
    expect(&mut c, "GET", "/api/heartbeat", "/api/heartbeat", None, 200);
    expect(&mut c, "GET", "/api/tools", "/api/tools", None, 200);
    expect(&mut c, "GET", "/v1/models", "/v1/models", None, 200);
    let v1_models = "/v1/models/{id}";
    expect(&mut c, "GET", v1_models, "/v1/models/localgpt", None, 200);
    expect(
        &mut c,
        "GET",
        v1_models,
        "/v1/models/no-such-model",
        None,
        404,
    );
    let v1 = "/v1/chat/completions";
    fake.push(Reply::text("Fine.").usage(3, 1));
    expect(&mut c, "POST", v1, v1, Some(&v1_body(false)), 200);
    fake.push(Reply::text("Fine."));
    let mut sse = Sse::open_at(d.addr, v1, &v1_body(true), &[]);
    c.check("POST", v1, sse.status, &sse.headers, "");
    assert_eq!(sse.collect().len(), 4, "role, text, finish, [DONE]");
    expect(
        &mut c,
        "POST",
        v1,
        v1,
        Some("{\"model\":\"localgpt\"}"),
        400,
    );
    let ghost_header = [("X-Session-Id", "no-such-session")];
    let (status, _) = c.call(&d, "POST", v1, v1, Some(&v1_body(false)), &ghost_header);
    assert_eq!(status, 404);
    expect(
        &mut c,
        "POST",
        "/api/heartbeat/run",
        "/api/heartbeat/run",
        None,
        200,
    );

    // Invalid requests.
    expect(
        &mut c,
        "GET",
        "/api/memory/search",
        "/api/memory/search",
        None,
        400,
    );
    expect(
        &mut c,
        "POST",
        "/api/memory/reindex",
        "/api/memory/reindex",
        Some("{\"force\":\"yes\"}"),
        400,
    );
    expect(&mut c, "POST", "/api/chat", "/api/chat", Some("{}"), 400);
    expect(
        &mut c,
        "POST",
        "/api/chat/stream",
        "/api/chat/stream",
        Some("{\"message\":7}"),
        400,
    );
    expect(
        &mut c,
        "POST",
        "/api/sessions",
        "/api/sessions",
        Some("{\"model\":5}"),
        400,
    );
    expect(
        &mut c,
        "POST",
        "/api/sessions/{id}/approve",
        &format!("/api/sessions/{session}/approve"),
        Some("{\"request_id\":1}"),
        400,
    );
    expect(
        &mut c,
        "POST",
        "/api/heartbeat/run",
        "/api/heartbeat/run",
        Some("[1]"),
        400,
    );
    let ghost = "/api/sessions/no-such-session";
    let ghost_chat = json!({"message": "hi", "session_id": "no-such-session"}).to_string();
    expect(
        &mut c,
        "POST",
        "/api/chat",
        "/api/chat",
        Some(&ghost_chat),
        404,
    );
    expect(
        &mut c,
        "POST",
        "/api/chat/stream",
        "/api/chat/stream",
        Some(&ghost_chat),
        404,
    );
    expect(&mut c, "GET", "/api/sessions/{id}", ghost, None, 404);
    expect(&mut c, "DELETE", "/api/sessions/{id}", ghost, None, 404);
    let approve = json!({"request_id": "r1", "decision": "approve"}).to_string();
    expect(
        &mut c,
        "POST",
        "/api/sessions/{id}/approve",
        &format!("{ghost}/approve"),
        Some(&approve),
        404,
    );

    // Provider failures.
    fake.push(Reply::fault(Fault::Status(500, "upstream broke".into())));
    expect(
        &mut c,
        "POST",
        "/api/chat",
        "/api/chat",
        Some("{\"message\":\"hi\"}"),
        502,
    );
    fake.push(Reply::fault(Fault::Hang(Duration::from_secs(30))));
    expect(
        &mut c,
        "POST",
        "/api/chat",
        "/api/chat",
        Some("{\"message\":\"hi\"}"),
        504,
    );
    fake.push(Reply::fault(Fault::Status(500, "upstream broke".into())));
    expect(&mut c, "POST", v1, v1, Some(&v1_body(false)), 502);
    fake.push(Reply::fault(Fault::Hang(Duration::from_secs(5))));
    expect(&mut c, "POST", v1, v1, Some(&v1_body(false)), 504);

    // A session in a turn: a second chat on it, plain or streamed, is a conflict.
    let before = fake.request_count();
    // Held until both conflicts were seen, however long that takes.
    let gate = Gate::new();
    fake.push(Reply::text("slow").hold_after(0, &gate));
    let addr = d.addr;
    let busy_body = chat.clone();
    let first = std::thread::spawn(move || Sse::open(addr, &busy_body).collect().len());
    eventually(
        Duration::from_secs(10),
        "the provider sees the first turn",
        || (fake.request_count() > before).then_some(()),
    );
    expect(&mut c, "POST", "/api/chat", "/api/chat", Some(&chat), 409);
    expect(
        &mut c,
        "POST",
        "/api/chat/stream",
        "/api/chat/stream",
        Some(&chat),
        409,
    );
    let busy_header = [("X-Session-Id", session.as_str())];
    let (status, _) = c.call(&d, "POST", v1, v1, Some(&v1_body(false)), &busy_header);
    assert_eq!(status, 409);
    gate.open();
    assert!(first.join().unwrap() > 2);

    // A streamed turn whose tool call waits for approval.
    fake.push(Reply::tool_call(
        "write_file",
        json!({"path": "notes.md", "content": "x"}),
    ));
    fake.push(Reply::text("Written."));
    let mut sse = Sse::open(
        d.addr,
        &json!({"message": "write", "session_id": session}).to_string(),
    );
    c.check("POST", "/api/chat/stream", sse.status, &sse.headers, "");
    let asked = sse.until("approval_required");
    let request_id = asked.data["request_id"]
        .as_str()
        .expect("request id")
        .to_string();
    let answer = json!({"request_id": request_id, "decision": "approve"}).to_string();
    let approved = expect(
        &mut c,
        "POST",
        "/api/sessions/{id}/approve",
        &format!("/api/sessions/{session}/approve"),
        Some(&answer),
        200,
    );
    assert_eq!(approved["decision"], "approve");
    let done = sse.until("done");
    if let Err(e) = validate(
        &c.spec,
        &json!({"$ref": "#/components/schemas/ChatResponse"}),
        &done.data,
        "done",
    ) {
        panic!("the stream's done event is not a ChatResponse: {e}");
    }

    // A heartbeat run while another is in progress.
    std::fs::write(
        d.home.workspace().join("HEARTBEAT.md"),
        "# Tasks\n\n- [ ] check the logs\n",
    )
    .unwrap();
    let before = fake.request_count();
    let gate = Gate::new();
    fake.push(Reply::text("HEARTBEAT_OK").hold_after(0, &gate));
    let url = d.addr;
    let running = std::thread::spawn(move || post(url, "/api/heartbeat/run"));
    eventually(
        Duration::from_secs(10),
        "the heartbeat run reaches the provider",
        || (fake.request_count() > before).then_some(()),
    );
    expect(
        &mut c,
        "POST",
        "/api/heartbeat/run",
        "/api/heartbeat/run",
        None,
        409,
    );
    gate.open();
    assert!(running.join().unwrap().starts_with("HTTP/1.1 200"));

    expect(
        &mut c,
        "DELETE",
        "/api/sessions/{id}",
        &format!("/api/sessions/{session}"),
        None,
        200,
    );

    // The events feed: a stream that stays open, so only its head is read.
    let feed = Sse::get(d.addr, "/api/events", &[]);
    c.check("GET", "/api/events", feed.status, &feed.headers, &feed.body);
    assert_eq!(feed.status, 200, "{}", feed.body);
    drop(feed);

    // The WebSocket upgrade.
    let ws = ws_connect(d.addr, None).expect("upgrade");
    c.seen
        .insert(("GET".into(), "/api/ws".into(), "101".into()));
    drop(ws);
    expect(&mut c, "GET", "/api/ws", "/api/ws", None, 400);
    assert!(matches!(
        ws_connect(d.addr, Some("http://evil.example")),
        Err(tungstenite::Error::Http(r)) if r.status() == 403
    ));
    c.seen
        .insert(("GET".into(), "/api/ws".into(), "403".into()));
    let (status, _) = c.call(
        &d,
        "GET",
        "/api/ws",
        &format!("/api/ws?pad={}", "a".repeat(1100)),
        None,
        &[],
    );
    assert_eq!(status, 400);
    let big = "h".repeat(40_000);
    let (status, _) = c.call(&d, "GET", "/api/ws", "/api/ws", None, &[("X-Big", &big)]);
    assert_eq!(status, 431);

    // 401 and 503 have their own tests below; 500 is a bug or a broken disk (the panic
    // test in tests/server.rs and the storage faults in tests/faults.rs).
    let unseen = c.unseen(&["401", "500", "503"]);
    assert!(
        unseen.is_empty(),
        "documented but never answered: {unseen:#?}"
    );
    assert!(!d.stderr().contains("panicked"), "{}", d.stderr());
}

#[test]
fn every_route_but_health_needs_the_token_when_one_is_set() {
    let fake = FakeProvider::start();
    let d = start(&fake, "auth_token = \"s3cret-token\"");
    let (status, spec) = d.call(
        "GET",
        "/api/openapi.json",
        None,
        &[("Authorization", "Bearer s3cret-token")],
    );
    assert_eq!(status, 200);
    let mut c = Conformance {
        spec,
        seen: BTreeSet::new(),
    };
    for ((method, template), statuses) in operations(&c.spec) {
        let path = concrete(&template, "some-session");
        let body = body_for(&method, &template);
        let (status, _) = c.call(
            &d,
            &method,
            &template,
            &path,
            body.as_deref(),
            &[("Authorization", "Bearer wrong")],
        );
        if template == "/health" {
            assert_eq!(status, 200);
            assert!(
                !statuses.contains("401"),
                "/health documents a 401 it never answers"
            );
        } else {
            assert_eq!(status, 401, "{method} {template}");
        }
    }
    let (status, _) = c.call(
        &d,
        "GET",
        "/api/status",
        "/api/status",
        None,
        &[("Authorization", "Bearer s3cret-token")],
    );
    assert_eq!(status, 200);
    let unseen: Vec<_> = c.unseen(&[
        "200", "201", "101", "400", "403", "404", "409", "413", "431", "500", "502", "503", "504",
    ]);
    assert!(
        unseen.is_empty(),
        "documented 401 never answered: {unseen:#?}"
    );
}

#[test]
fn every_route_answers_503_when_its_lane_is_full() {
    let fake = FakeProvider::start();
    let d = start(
        &fake,
        "workers = 1\nqueue = 0\nchat_workers = 1\nchat_queue = 0\nmax_websockets = 1",
    );
    let mut c = Conformance::new(&d);
    // One WebSocket fills server.max_websockets; one sleeper fills each lane.
    // With one fast worker, a request that just got its answer may still hold the lane.
    let _ws = eventually(Duration::from_secs(10), "the upgrade", || {
        ws_connect(d.addr, None).ok()
    });
    let addr = d.addr;
    let sleepers: Vec<_> = ["/api/debug/sleep-fast?ms=8000", "/api/debug/sleep?ms=8000"]
        .into_iter()
        .map(|path| {
            // A sleeper refused because a probe held the lane at that moment tries again.
            std::thread::spawn(move || {
                loop {
                    let out = post(addr, path);
                    if !out.starts_with("HTTP/1.1 503") {
                        return out;
                    }
                }
            })
        })
        .collect();
    // Each route is asked until it answers 503: a sleeper refused at first (because a
    // request had the lane a moment before) gets in on its next try. Other answers on the
    // way are still checked against the document.
    for ((method, template), _) in operations(&c.spec) {
        let path = concrete(&template, "some-session");
        let body = body_for(&method, &template);
        eventually(
            Duration::from_secs(5),
            &format!("{method} {template} answers 503"),
            || {
                let status = if template == "/api/ws" {
                    // Never upgraded: server.max_websockets is full either way.
                    let (status, hs, text) = d.raw_call(
                        "GET",
                        "/api/ws",
                        None,
                        &[
                            ("Upgrade", "websocket"),
                            ("Connection", "Upgrade"),
                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                            ("Sec-WebSocket-Version", "13"),
                        ],
                    );
                    c.check("GET", "/api/ws", status, &hs, &text);
                    status
                } else if template == "/api/events" {
                    // Admitted, it would stream forever: read only the head.
                    let feed = Sse::get(d.addr, "/api/events", &[]);
                    c.check("GET", "/api/events", feed.status, &feed.headers, &feed.body);
                    feed.status
                } else {
                    c.call(&d, &method, &template, &path, body.as_deref(), &[])
                        .0
                };
                (status == 503).then_some(())
            },
        );
    }
    for s in sleepers {
        assert!(
            s.join().unwrap().starts_with("HTTP/1.1 200"),
            "the sleepers were served"
        );
    }
    let unseen: Vec<_> = c.unseen(&[
        "200", "201", "101", "400", "401", "403", "404", "409", "413", "431", "500", "502", "504",
    ]);
    assert!(
        unseen.is_empty(),
        "documented 503 never answered: {unseen:#?}"
    );
}
