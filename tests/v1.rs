//! The OpenAI-compatible API (`/v1`) end to end: the real daemon over real HTTP, the fake
//! provider server behind it, OpenAI's request and response shapes checked field by field.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake_provider::{FakeProvider, Fault, Reply};
use support::stream_client::{Event, Sse};
use support::{Daemon, Home, eventually};

const MODEL: &str = "openai/gpt-test";

fn daemon(fake: &FakeProvider, extra: &str) -> Daemon {
    let home = Home::new("v1");
    home.write_config(&format!(
        "[agent]\ndefault_model = \"{MODEL}\"\n[heartbeat]\nenabled = false\nmodel = \"ollama/llama-beat\"\n{}\n{extra}",
        fake.providers_toml("3s")
    ));
    Daemon::start_in(home)
}

fn post(d: &Daemon, body: &Value) -> (u16, Value) {
    d.post("/v1/chat/completions", &body.to_string())
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }}])
}

/// Asserts OpenAI's error shape and returns the error object.
fn openai_error(status: u16, body: &Value, want_status: u16, want_type: &str) -> Value {
    assert_eq!(status, want_status, "{body}");
    let e = &body["error"];
    for field in ["message", "type", "param", "code"] {
        assert!(e.get(field).is_some(), "error without {field}: {body}");
    }
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(e["type"], want_type, "{body}");
    e.clone()
}

/// Every chunk up to `[DONE]` (which must come), each checked for the chunk shape.
fn read_chunks(sse: &mut Sse) -> Vec<Value> {
    assert_eq!(sse.status, 200, "{}", sse.body);
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    let events: Vec<Event> = sse.collect();
    let (last, rest) = events.split_last().expect("events");
    assert_eq!(last.data, Value::String("[DONE]".into()));
    let chunks: Vec<Value> = rest.iter().map(|e| e.data.clone()).collect();
    let id = chunks[0]["id"].clone();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert_eq!(c["id"], id, "one id per completion");
        assert!(c["created"].is_i64() && c["model"] == MODEL, "{c}");
    }
    chunks
}

fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn finish_of(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .map(str::to_string)
        .collect()
}

#[test]
fn models_are_listed_in_openai_shape() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let (status, list) = d.get("/v1/models");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["localgpt", MODEL, "ollama/llama-beat"]);
    for m in list["data"].as_array().unwrap() {
        assert_eq!(m["object"], "model");
        assert!(
            m["created"].as_i64().is_some_and(|t| t > 1_600_000_000),
            "{m}"
        );
        assert!(m["owned_by"].is_string());
    }
    assert_eq!(list["data"][1]["owned_by"], "openai");

    let (status, one) = d.get("/v1/models/localgpt");
    assert_eq!((status, &one["id"]), (200, &json!("localgpt")));
    // An SDK may escape the `/` of a provider/model id, or not.
    for path in ["/v1/models/openai%2Fgpt-test", "/v1/models/openai/gpt-test"] {
        let (status, one) = d.get(path);
        assert_eq!(status, 200, "{path}: {one}");
        assert_eq!(one["id"], MODEL);
    }
    let (status, e) = d.get("/v1/models/anthropic/any-model");
    assert_eq!((status, &e["owned_by"]), (200, &json!("anthropic")));
    let (status, e) = d.get("/v1/models/gpt-4o");
    let e = openai_error(status, &e, 404, "not_found_error");
    assert_eq!(e["code"], "not_found");
    // Unknown paths and wrong methods under /v1 answer in OpenAI's shape too.
    let (status, e) = d.get("/v1/embeddings");
    openai_error(status, &e, 404, "not_found_error");
    let (status, e) = d.delete("/v1/models");
    openai_error(status, &e, 405, "invalid_request_error");
}

#[test]
fn plain_completion_passes_options_and_reports_usage() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    fake.push(
        Reply::text("Hello there.")
            .pieces(["Hel", "lo there."])
            .usage(12, 3),
    );
    let (status, body) = post(
        &d,
        &json!({
            "model": "localgpt",
            "messages": [
                {"role": "system", "content": "Answer like a pirate."},
                {"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Ahoy."},
                {"role": "user", "content": [{"type": "text", "text": "Say hello"}, {"type": "text", "text": "again."}]},
            ],
            "max_tokens": 64,
            "temperature": 0.2,
            "stop": ["END"],
        }),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    );
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    assert!(body["created"].is_i64());
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Hello there.");
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})
    );

    let sent = &fake.requests()[0].body;
    assert_eq!(sent["model"], "gpt-test");
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["temperature"], 0.2);
    assert_eq!(sent["stop"], json!(["END"]));
    let messages = sent["messages"].as_array().unwrap();
    let system = messages[0]["content"].as_str().unwrap();
    assert_eq!(messages[0]["role"], "system");
    // The daemon's own prompt (with its memory) first, the client's instructions after it.
    assert!(system.contains("MEMORY.md"), "{system}");
    let pirate = system
        .find("Answer like a pirate.")
        .expect("client system text");
    assert!(pirate > system.find("MEMORY.md").unwrap());
    let rest: Vec<(&str, &str)> = messages[1..]
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(rest[..2], [("user", "Hi!"), ("assistant", "Ahoy.")]);
    // The daemon's context (the time, new daily-log lines) follows the user's words.
    assert_eq!(rest[2].0, "user");
    assert!(
        rest[2].1.starts_with("Say hello\nagain.\n\n<context>\n"),
        "{}",
        rest[2].1
    );
    // The daemon's tools are offered to the model.
    assert!(sent["tools"].to_string().contains("memory_search"));
}

#[test]
fn options_reach_each_provider_in_its_wire_format() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    for model in ["anthropic/claude-test", "ollama/llama-test"] {
        fake.push(Reply::text("ok"));
        let (status, body) = post(
            &d,
            &json!({"model": model, "messages": user("hi"), "max_completion_tokens": 33,
                "temperature": 0.7, "stop": "STOP"}),
        );
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(body["model"], model);
    }
    let requests = fake.requests();
    let anthropic = &requests[0].body;
    assert_eq!(anthropic["max_tokens"], 33);
    assert_eq!(anthropic["temperature"], 0.7);
    assert_eq!(anthropic["stop_sequences"], json!(["STOP"]));
    let ollama = &requests[1].body;
    assert_eq!(
        ollama["options"],
        json!({"num_predict": 33, "temperature": 0.7, "stop": ["STOP"]})
    );
}

#[test]
fn streamed_completion_with_and_without_usage() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let body = json!({"model": "localgpt", "messages": user("hi"), "stream": true});

    fake.push(Reply::text("Hello").pieces(["Hel", "lo"]).usage(7, 2));
    let mut sse = Sse::open_at(d.addr, "/v1/chat/completions", &body.to_string(), &[]);
    let chunks = read_chunks(&mut sse);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(text_of(&chunks), "Hello");
    assert_eq!(finish_of(&chunks), ["stop"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "no usage unless asked"
    );

    fake.push(Reply::text("Hello").pieces(["Hel", "lo"]).usage(7, 2));
    let mut with_usage = body.clone();
    with_usage["stream_options"] = json!({"include_usage": true});
    let mut sse = Sse::open_at(d.addr, "/v1/chat/completions", &with_usage.to_string(), &[]);
    let chunks = read_chunks(&mut sse);
    assert_eq!(text_of(&chunks), "Hello");
    let (usage, others) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9})
    );
    assert!(others.iter().all(|c| c["usage"].is_null()));
    assert_eq!(finish_of(others), ["stop"]);
}

#[test]
fn client_tool_call_then_its_result_continues_the_turn() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    fake.push(
        Reply::text("Let me check.")
            .and_tool_call("get_weather", json!({"city": "Oslo"}))
            .usage(20, 5),
    );
    let mut messages = user("What's the weather in Oslo?");
    let (status, body) = post(
        &d,
        &json!({"model": "localgpt", "messages": messages, "tools": weather_tool()}),
    );
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Let me check.");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Oslo"}));
    assert_eq!(body["usage"]["total_tokens"], 25);
    // The client's tool was offered beside the daemon's, and only one model call ran.
    let first = &fake.requests()[0].body;
    let offered = first["tools"].to_string();
    assert!(offered.contains("get_weather") && offered.contains("memory_search"));
    assert_eq!(fake.request_count(), 1);

    // The client runs the tool and sends the result back: the turn goes on.
    let messages_arr = messages.as_array_mut().unwrap();
    messages_arr.push(choice["message"].clone());
    messages_arr
        .push(json!({"role": "tool", "tool_call_id": call["id"], "content": "light rain, 7 °C"}));
    fake.push(Reply::text("It rains in Oslo: 7 °C."));
    let (status, body) = post(
        &d,
        &json!({"model": "localgpt", "messages": messages, "tools": weather_tool()}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "It rains in Oslo: 7 °C."
    );
    let sent = &fake.requests()[1].body;
    let sent_messages = sent["messages"].as_array().unwrap();
    let n = sent_messages.len();
    assert_eq!(sent_messages[n - 2]["role"], "assistant");
    assert_eq!(sent_messages[n - 2]["tool_calls"][0]["id"], call["id"]);
    assert_eq!(
        sent_messages[n - 1],
        json!({"role": "tool", "tool_call_id": call["id"], "content": "light rain, 7 °C"})
    );
}

#[test]
fn streamed_client_tool_call_is_well_formed_deltas() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    fake.push(
        Reply::tool_call("get_weather", json!({"city": "Oslo"}))
            .and_tool_call("get_weather", json!({"city": "Bergen"})),
    );
    let body = json!({"model": "localgpt", "messages": user("Weather in Oslo and Bergen?"),
        "tools": weather_tool(), "stream": true});
    let mut sse = Sse::open_at(d.addr, "/v1/chat/completions", &body.to_string(), &[]);
    let chunks = read_chunks(&mut sse);
    assert_eq!(finish_of(&chunks), ["tool_calls"]);
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert!(!deltas.is_empty());
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for delta in deltas {
        let index = delta["index"].as_u64().expect("index on every delta") as usize;
        assert!(delta["function"]["arguments"].is_string(), "{delta}");
        if index == calls.len() {
            // The first delta of a call has its id, type and name.
            assert!(
                delta["id"].as_str().is_some_and(|id| !id.is_empty()),
                "{delta}"
            );
            assert_eq!(delta["type"], "function");
            let name = delta["function"]["name"]
                .as_str()
                .expect("name")
                .to_string();
            calls.push((delta["id"].as_str().unwrap().into(), name, String::new()));
        }
        calls[index]
            .2
            .push_str(delta["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0].0, calls[1].0);
    for ((_, name, arguments), city) in calls.iter().zip(["Oslo", "Bergen"]) {
        assert_eq!(name, "get_weather");
        let args: Value = serde_json::from_str(arguments).unwrap();
        assert_eq!(args, json!({"city": city}));
    }
}

#[test]
fn the_daemons_own_memory_tool_runs_in_the_same_request() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    std::fs::write(
        d.home.workspace().join("knowledge-home.md"),
        "# Me\nMy home town is Narvik, far in the north.\n",
    )
    .unwrap();
    eventually(Duration::from_secs(20), "file indexed", || {
        let (_, v) = d.get("/api/memory/search?q=narvik");
        (v["total"].as_u64() == Some(1)).then_some(())
    });
    // Memory first, then the client's tool: one request, two model calls, and the client
    // sees only its own tool call.
    fake.push(Reply::tool_call("memory_search", json!({"query": "home town"})).usage(10, 2));
    fake.push(Reply::tool_call("get_weather", json!({"city": "Narvik"})).usage(30, 4));
    let (status, body) = post(
        &d,
        &json!({"model": "localgpt", "messages": user("What's the weather at home?"),
            "tools": weather_tool()}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let calls = body["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        body["usage"]["total_tokens"], 46,
        "usage summed over the loop"
    );
    assert_eq!(fake.request_count(), 2);
    let second = fake.requests()[1].body.to_string();
    assert!(
        second.contains("far in the north"),
        "the search result reached the model"
    );

    // Memory then text: the answer is the model's words after the search.
    fake.push(Reply::tool_call("memory_search", json!({"query": "home"})));
    fake.push(Reply::text("You live in Narvik."));
    let (status, body) = post(
        &d,
        &json!({"model": "localgpt", "messages": user("Where do I live?")}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "You live in Narvik."
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[test]
fn bad_requests_are_400_in_openai_shape() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let (status, e) = post(&d, &json!({"model": "gpt-4o", "messages": user("hi")}));
    let e = openai_error(status, &e, 400, "invalid_request_error");
    assert_eq!(
        (e["code"].as_str(), e["param"].as_str()),
        (Some("model_not_found"), Some("model"))
    );
    let (status, e) = post(&d, &json!({"model": "nosuch/x", "messages": user("hi")}));
    assert_eq!(
        openai_error(status, &e, 400, "invalid_request_error")["code"],
        "model_not_found"
    );

    let (status, e) = d.post("/v1/chat/completions", "{\"model\": ");
    let e = openai_error(status, &e, 400, "invalid_request_error");
    assert_eq!(e["code"], "invalid_request");
    assert!(e["message"].as_str().unwrap().contains("not valid JSON"));

    let (status, e) = post(&d, &json!({"model": "localgpt"}));
    let e = openai_error(status, &e, 400, "invalid_request_error");
    assert_eq!(e["param"], "messages");

    let image = json!({"model": "localgpt", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]});
    let (status, e) = post(&d, &image);
    let e = openai_error(status, &e, 400, "invalid_request_error");
    assert_eq!(e["param"], "messages[0].content[1].type");

    let clash = json!({"model": "localgpt", "messages": user("hi"),
        "tools": [{"type": "function", "function": {"name": "memory_search", "parameters": {"type": "object"}}}]});
    let (status, e) = post(&d, &clash);
    let e = openai_error(status, &e, 400, "invalid_request_error");
    assert_eq!(e["param"], "tools[0].function.name");
    assert!(e["message"].as_str().unwrap().contains("daemon"));
    assert_eq!(
        fake.request_count(),
        0,
        "no bad request reached the provider"
    );
}

#[test]
fn provider_failures_keep_their_status_plain_and_become_an_error_event_streamed() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    fake.push(Reply::fault(Fault::Status(500, "upstream broke".into())));
    let (status, e) = post(&d, &json!({"model": "localgpt", "messages": user("hi")}));
    let e = openai_error(status, &e, 502, "server_error");
    assert_eq!(e["code"], "provider_error");
    assert!(e["message"].as_str().unwrap().contains("upstream broke"));

    fake.push(Reply::text("partial").with_fault(Fault::ErrorEvent("overloaded now".into())));
    let body = json!({"model": "localgpt", "messages": user("hi"), "stream": true});
    let mut sse = Sse::open_at(d.addr, "/v1/chat/completions", &body.to_string(), &[]);
    let events = sse.collect();
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(last.data, Value::String("[DONE]".into()));
    let error = &rest.last().unwrap().data["error"];
    assert_eq!(error["code"], "provider_error");
    assert_eq!(error["type"], "server_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("overloaded now")
    );
}

#[test]
fn any_bearer_key_is_accepted_without_a_token() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let (status, _) = d.call(
        "GET",
        "/v1/models",
        None,
        &[("Authorization", "Bearer sk-anything")],
    );
    assert_eq!(status, 200);
    let body = json!({"model": "localgpt", "messages": user("hi")}).to_string();
    let (status, v) = d.call(
        "POST",
        "/v1/chat/completions",
        Some(&body),
        &[("Authorization", "Bearer ollama")],
    );
    assert_eq!(status, 200, "{v}");
}

#[test]
fn the_token_is_enforced_when_configured() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "[server]\nauth_token = \"s3cret\"");
    let body = json!({"model": "localgpt", "messages": user("hi")}).to_string();
    for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let (status, e) = d.call("GET", "/v1/models", None, &headers);
        let e = openai_error(status, &e, 401, "authentication_error");
        assert_eq!(e["code"], "unauthorized");
        let (status, e) = d.call("POST", "/v1/chat/completions", Some(&body), &headers);
        openai_error(status, &e, 401, "authentication_error");
    }
    assert_eq!(fake.request_count(), 0);
    let ok = [("Authorization", "Bearer s3cret")];
    assert_eq!(d.call("GET", "/v1/models", None, &ok).0, 200);
    let (status, v) = d.call("POST", "/v1/chat/completions", Some(&body), &ok);
    assert_eq!(status, 200, "{v}");
}

#[test]
fn session_header_binds_the_turn_to_a_stored_session() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let (_, created) = d.post("/api/sessions", "{}");
    let id = created["session_id"].as_str().unwrap().to_string();
    let header = [("X-Session-Id", id.as_str())];

    fake.push(Reply::text("Noted: you like tea."));
    let body = json!({"model": "localgpt", "messages": user("I like tea.")}).to_string();
    let (status, headers, text) = d.raw_call("POST", "/v1/chat/completions", Some(&body), &header);
    assert_eq!(status, 200, "{text}");
    assert!(headers.contains(&("x-session-id".into(), id.clone())));

    // The session holds the history: only the request's new message is taken.
    fake.push(Reply::text("You like tea."));
    let body = json!({"model": "localgpt", "messages": [
        {"role": "user", "content": "forgotten by the client"},
        {"role": "assistant", "content": "whatever"},
        {"role": "user", "content": "What do I like?"},
    ], "stream": true});
    let mut sse = Sse::open_at(d.addr, "/v1/chat/completions", &body.to_string(), &header);
    assert_eq!(sse.header("x-session-id"), Some(id.as_str()));
    assert_eq!(text_of(&read_chunks(&mut sse)), "You like tea.");
    let sent = fake.requests()[1].body.to_string();
    assert!(sent.contains("I like tea.") && sent.contains("Noted: you like tea."));
    assert!(!sent.contains("forgotten by the client"));

    let (_, session) = d.get(&format!("/api/sessions/{id}"));
    let stored: Vec<(&str, &str)> = session["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stored,
        [
            ("user", "I like tea."),
            ("assistant", "Noted: you like tea."),
            ("user", "What do I like?"),
            ("assistant", "You like tea.")
        ]
    );

    let ghost = [("X-Session-Id", "no-such-session")];
    let (status, _, text) = d.raw_call(
        "POST",
        "/v1/chat/completions",
        Some(&json!({"messages": user("hi")}).to_string()),
        &ghost,
    );
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        openai_error(status, &e, 404, "not_found_error")["code"],
        "not_found"
    );
}

#[test]
fn client_tool_results_continue_a_session_turn() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let (_, created) = d.post("/api/sessions", "{}");
    let id = created["session_id"].as_str().unwrap().to_string();
    let header = [("X-Session-Id", id.as_str())];
    fake.push(Reply::tool_call("get_weather", json!({"city": "Oslo"})));
    let first = json!({"messages": user("Weather?"), "tools": weather_tool()}).to_string();
    let (_, _, text) = d.raw_call("POST", "/v1/chat/completions", Some(&first), &header);
    let body: Value = serde_json::from_str(&text).unwrap();
    let message = body["choices"][0]["message"].clone();
    let call_id = message["tool_calls"][0]["id"].clone();

    fake.push(Reply::text("Sunny."));
    let follow = json!({"messages": [
        {"role": "user", "content": "Weather?"}, message,
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ], "tools": weather_tool()})
    .to_string();
    let (status, _, text) = d.raw_call("POST", "/v1/chat/completions", Some(&follow), &header);
    assert_eq!(status, 200, "{text}");
    let (_, session) = d.get(&format!("/api/sessions/{id}"));
    let roles: Vec<&str> = session["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert_eq!(session["messages"][2]["content"], "sunny");
}

#[test]
fn client_disconnect_cancels_the_turn() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    let pieces: Vec<String> = (0..100).map(|i| format!("piece{i} ")).collect();
    fake.push(
        Reply::text("")
            .pieces(pieces)
            .delay(Duration::from_millis(50)),
    );
    let body = json!({"model": "localgpt", "messages": user("long answer"), "stream": true});
    let mut sse = Sse::open_at(d.addr, "/v1/chat/completions", &body.to_string(), &[]);
    // The role chunk, then the first text.
    loop {
        let e = sse.next().expect("a chunk");
        if e.data["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        {
            break;
        }
    }
    drop(sse);
    assert!(
        fake.wait_for_disconnects(1, Duration::from_secs(10)),
        "the provider request was dropped"
    );
    d.wait_log("cancelled: the client went away");
    assert_eq!(d.get("/health").0, 200);
}

#[test]
fn streamed_text_around_a_daemon_tool_is_kept_apart() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    fake.push(Reply::text("Let me look.").and_tool_call("memory_search", json!({"query": "keys"})));
    fake.push(Reply::text("They are on the hook."));
    let body = json!({"messages": user("Where are my keys?"), "stream": true});
    let mut sse = Sse::open_at(d.addr, "/v1/chat/completions", &body.to_string(), &[]);
    let chunks = read_chunks(&mut sse);
    // The daemon's own tool call is not the client's business: no tool_calls deltas.
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none())
    );
    assert_eq!(text_of(&chunks), "Let me look.\n\nThey are on the hook.");
    assert_eq!(finish_of(&chunks), ["stop"]);
}
