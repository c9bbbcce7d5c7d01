//! The providers against the scripted fake provider server (real sockets, the real `ureq`
//! client) and a fake `claude` executable: streaming, tool calls, request shapes, every
//! fault, timeouts and cancellation. No daemon is started.

mod support;

use std::time::{Duration, Instant};

use localgpt::config::ProvidersConfig;
use localgpt::providers::{
    ChatRequest, Completion, Message, ProviderError, ToolCall, ToolSpec, for_model,
};
use serde_json::{Value, json};
use support::fake_provider::{
    DEFAULT_REPLY, FakeClaude, FakeProvider, Fault, Gate, Reply, TEST_KEY, claude_lines,
    process_alive, read_pid, refused_url,
};

const HTTP_PROVIDERS: [&str; 3] = ["openai", "anthropic", "ollama"];

/// A read timeout long enough that only a test that means to hit it does.
const PATIENT: Duration = Duration::from_secs(10);

/// The read timeout of the timeout tests.
const SHORT: Duration = Duration::from_millis(300);

fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        system: "You are a test.".into(),
        messages: vec![Message::user("Say hello.")],
        tools: Vec::new(),
        max_tokens: 256,
        ..Default::default()
    }
}

fn tools() -> Vec<ToolSpec> {
    vec![ToolSpec {
        name: "memory_search".into(),
        description: "Search memory.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        }),
    }]
}

/// Runs one call of `provider/test-model`, collecting the deltas.
fn call_with(
    config: &ProvidersConfig,
    provider: &str,
    req: &ChatRequest,
) -> (Result<Completion, ProviderError>, Vec<String>) {
    let (p, model) = for_model(config, &format!("{provider}/test-model")).expect("known provider");
    assert_eq!(p.name(), provider);
    let mut req = req.clone();
    req.model = model;
    let mut deltas = Vec::new();
    let result = p.complete(&req, &mut |d: &str| {
        deltas.push(d.to_string());
        true
    });
    (result, deltas)
}

fn call(
    config: &ProvidersConfig,
    provider: &str,
) -> (Result<Completion, ProviderError>, Vec<String>) {
    call_with(config, provider, &request("test-model"))
}

/// The detail of a `Failed` error, checking it names the provider and holds no key.
fn failed(provider: &str, result: Result<Completion, ProviderError>) -> String {
    match result {
        Err(ProviderError::Failed {
            provider: p,
            detail,
        }) => {
            assert_eq!(p, provider);
            let shown = ProviderError::Failed {
                provider: p,
                detail: detail.clone(),
            }
            .to_string();
            assert!(shown.contains(provider), "{shown}");
            assert!(!shown.contains(TEST_KEY), "the key leaked: {shown}");
            detail
        }
        other => panic!("{provider}: expected Failed, got {other:?}"),
    }
}

fn timed_out(provider: &str, result: Result<Completion, ProviderError>) -> String {
    match result {
        Err(ProviderError::Timeout {
            provider: p,
            detail,
        }) => {
            assert_eq!(p, provider);
            assert!(!detail.contains(TEST_KEY));
            detail
        }
        other => panic!("{provider}: expected Timeout, got {other:?}"),
    }
}

// ---- plain streamed answers ----

#[test]
fn every_http_provider_streams_deltas_in_order_and_counts_tokens() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    for provider in HTTP_PROVIDERS {
        fake.push(
            Reply::text("Hello, world!")
                .pieces(["Hel", "lo, ", "world", "!"])
                .usage(21, 4),
        );
        let (result, deltas) = call(&config, provider);
        let c = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(deltas, ["Hel", "lo, ", "world", "!"], "{provider}");
        assert_eq!(c.text, "Hello, world!", "{provider}");
        assert_eq!((c.usage.prompt, c.usage.completion), (21, 4), "{provider}");
        assert!(c.tool_calls.is_empty(), "{provider}");
        assert!(c.stop_reason.is_some(), "{provider}");
    }
    assert_eq!(fake.disconnects(), 0);
}

#[test]
fn an_empty_script_gives_the_default_reply() {
    let fake = FakeProvider::start();
    let (result, _) = call(&fake.providers_config(PATIENT), "ollama");
    assert_eq!(result.unwrap().text, DEFAULT_REPLY);
}

#[test]
fn deltas_arrive_while_the_answer_is_still_streaming() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    for provider in HTTP_PROVIDERS {
        // The rest of the answer is held until the first delta reached the caller: a
        // client that buffered to the end would never see it (and time out instead).
        let gate = Gate::new();
        fake.push(
            Reply::text("abc")
                .pieces(["a", "b", "c"])
                .hold_after(frames_for_deltas(provider, 1), &gate),
        );
        let (p, model) = for_model(&config, &format!("{provider}/m")).unwrap();
        let mut req = request(&model);
        req.model = model;
        let mut deltas = 0;
        p.complete(&req, &mut |_| {
            deltas += 1;
            gate.open();
            true
        })
        .unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(deltas, 3, "{provider}");
    }
}

/// How many frames the fake sends for the first `deltas` text deltas (Anthropic opens its
/// content block with a frame of its own), for [`Reply::hold_after`].
fn frames_for_deltas(provider: &str, deltas: usize) -> usize {
    if provider == "anthropic" {
        deltas + 1
    } else {
        deltas
    }
}

// ---- request shapes ----

#[test]
fn openai_request_is_what_chat_completions_expects() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    let mut req = request("gpt-test");
    req.tools = tools();
    call_with(&config, "openai", &req).0.unwrap();
    let r = &fake.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = &r.body;
    assert_eq!(b["model"], "test-model");
    assert_eq!(b["stream"], true);
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
    assert_eq!(b["max_tokens"], 256);
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": "You are a test."})
    );
    assert_eq!(
        b["messages"][1],
        json!({"role": "user", "content": "Say hello."})
    );
    assert_eq!(b["tools"][0]["type"], "function");
    assert_eq!(b["tools"][0]["function"]["name"], "memory_search");
    assert_eq!(
        b["tools"][0]["function"]["parameters"]["required"],
        json!(["query"])
    );
}

#[test]
fn openai_compatible_server_without_key_gets_no_authorization_header() {
    let fake = FakeProvider::start();
    let mut config = fake.providers_config(PATIENT);
    config.openai.api_key = String::new();
    config.openai.base_url = fake.url(); // llama.cpp style: POST /chat/completions
    let (result, _) = call(&config, "openai");
    assert_eq!(result.unwrap().text, DEFAULT_REPLY);
    let r = &fake.requests()[0];
    assert_eq!(r.path, "/chat/completions");
    assert_eq!(r.header("authorization"), None);
}

#[test]
fn anthropic_request_is_what_the_messages_api_expects() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    let mut req = request("m");
    req.tools = tools();
    call_with(&config, "anthropic", &req).0.unwrap();
    let r = &fake.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(TEST_KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("authorization"), None);
    let b = &r.body;
    assert_eq!(b["stream"], true);
    assert_eq!(b["system"], "You are a test.");
    assert_eq!(b["max_tokens"], 256);
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}])
    );
    assert_eq!(b["tools"][0]["name"], "memory_search");
    assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
    assert!(b["tools"][0].get("parameters").is_none());
}

#[test]
fn ollama_request_is_what_api_chat_expects() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    let mut req = request("m");
    req.tools = tools();
    call_with(&config, "ollama", &req).0.unwrap();
    let r = &fake.requests()[0];
    assert_eq!(r.path, "/api/chat");
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("x-api-key"), None);
    let b = &r.body;
    assert_eq!(b["stream"], true);
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": "You are a test."})
    );
    assert_eq!(b["options"]["num_predict"], 256);
    assert_eq!(b["tools"][0]["function"]["parameters"]["type"], "object");
}

/// A conversation after one tool round trip, as each API wants it back.
fn history() -> (ChatRequest, ToolCall) {
    let call = ToolCall {
        id: "call_abc".into(),
        name: "memory_search".into(),
        arguments: json!({"query": "cats"}),
    };
    let mut req = request("m");
    req.tools = tools();
    req.messages = vec![
        Message::user("What do I know about cats?"),
        Message::assistant("Let me look.", vec![call.clone()]),
        Message::tool_result(&call, "Cats sleep a lot.", false),
    ];
    (req, call)
}

#[test]
fn tool_results_go_back_in_each_api_shape() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    let (req, _) = history();
    for provider in HTTP_PROVIDERS {
        call_with(&config, provider, &req).0.unwrap();
    }
    let recorded = fake.requests();

    let openai = &recorded[0].body["messages"];
    assert_eq!(openai[2]["tool_calls"][0]["id"], "call_abc");
    assert_eq!(
        openai[2]["tool_calls"][0]["function"]["name"],
        "memory_search"
    );
    let args: Value = serde_json::from_str(
        openai[2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"query": "cats"}));
    assert_eq!(
        openai[3],
        json!({"role": "tool", "tool_call_id": "call_abc", "content": "Cats sleep a lot."})
    );

    let anthropic = &recorded[1].body["messages"];
    assert_eq!(anthropic.as_array().unwrap().len(), 3);
    assert_eq!(anthropic[1]["role"], "assistant");
    assert_eq!(
        anthropic[1]["content"][1],
        json!({"type": "tool_use", "id": "call_abc", "name": "memory_search", "input": {"query": "cats"}})
    );
    assert_eq!(anthropic[2]["role"], "user");
    assert_eq!(
        anthropic[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "call_abc", "content": "Cats sleep a lot.", "is_error": false})
    );

    let ollama = &recorded[2].body["messages"];
    assert_eq!(
        ollama[2]["tool_calls"][0]["function"],
        json!({"name": "memory_search", "arguments": {"query": "cats"}})
    );
    assert_eq!(
        ollama[3],
        json!({"role": "tool", "content": "Cats sleep a lot.", "tool_name": "memory_search"})
    );
}

// ---- tool calls ----

#[test]
fn tool_calls_are_assembled_from_each_wire_format() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    let args_a = json!({"query": "cats and \"dogs\"", "limit": 3});
    let args_b = json!({"path": "memory/2025-01-01.md", "lines": [1, 20]});
    for provider in HTTP_PROVIDERS {
        fake.push(
            Reply::text("Checking.")
                .and_tool_call("memory_search", args_a.clone())
                .and_tool_call("memory_get", args_b.clone())
                .usage(30, 12),
        );
        let mut req = request("m");
        req.tools = tools();
        let (result, deltas) = call_with(&config, provider, &req);
        let c = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(deltas, ["Checking."], "{provider}");
        assert_eq!(c.tool_calls.len(), 2, "{provider}");
        assert_eq!(c.tool_calls[0].name, "memory_search", "{provider}");
        assert_eq!(c.tool_calls[0].arguments, args_a, "{provider}");
        assert_eq!(c.tool_calls[1].name, "memory_get", "{provider}");
        assert_eq!(c.tool_calls[1].arguments, args_b, "{provider}");
        assert!(!c.tool_calls[0].id.is_empty(), "{provider}");
        assert_ne!(c.tool_calls[0].id, c.tool_calls[1].id, "{provider}");
        assert_eq!((c.usage.prompt, c.usage.completion), (30, 12), "{provider}");
    }
}

#[test]
fn tool_call_ids_come_from_the_provider_when_it_sends_them() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    fake.push(Reply::tool_call("memory_search", json!({"query": "x"})));
    let c = call(&config, "openai").0.unwrap();
    assert_eq!(c.tool_calls[0].id, "call_0");
    assert_eq!(c.stop_reason.as_deref(), Some("tool_calls"));
    fake.push(Reply::tool_call("memory_search", json!({"query": "x"})));
    let c = call(&config, "anthropic").0.unwrap();
    assert_eq!(c.tool_calls[0].id, "toolu_0");
    assert_eq!(c.stop_reason.as_deref(), Some("tool_use"));
}

// ---- faults ----

#[test]
fn connection_refused_is_failed_naming_the_reason() {
    let url = refused_url();
    let mut config = ProvidersConfig::default();
    config.openai.base_url = format!("{url}/v1");
    config.anthropic.base_url = url.clone();
    config.ollama.base_url = url;
    config.openai.api_key = TEST_KEY.into();
    config.anthropic.api_key = TEST_KEY.into();
    for provider in HTTP_PROVIDERS {
        let detail = failed(provider, call(&config, provider).0);
        assert!(detail.contains("refused"), "{provider}: {detail}");
    }
}

#[test]
fn unknown_host_is_failed_naming_dns() {
    let mut config = ProvidersConfig::default();
    // `.invalid` never resolves (RFC 2606).
    config.ollama.base_url = "http://no-such-host.invalid:11434".into();
    let detail = failed("ollama", call(&config, "ollama").0);
    assert!(detail.contains("DNS"), "{detail}");
}

#[test]
fn http_error_status_passes_the_providers_message_through() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    for provider in HTTP_PROVIDERS {
        fake.push(Reply::fault(Fault::Status(
            500,
            "the fake is overloaded".into(),
        )));
        let detail = failed(provider, call(&config, provider).0);
        assert!(detail.contains("500"), "{provider}: {detail}");
        assert!(
            detail.contains("the fake is overloaded"),
            "{provider}: {detail}"
        );
        fake.push(Reply::fault(Fault::Status(401, "invalid x-api-key".into())));
        let detail = failed(provider, call(&config, provider).0);
        assert!(
            detail.contains("401") && detail.contains("invalid x-api-key"),
            "{provider}: {detail}"
        );
    }
}

#[test]
fn unauthorized_without_a_key_says_where_the_key_comes_from() {
    let fake = FakeProvider::start();
    let mut config = fake.providers_config(PATIENT);
    config.openai.api_key = String::new();
    config.anthropic.api_key = String::new();
    for (provider, env) in [
        ("openai", "OPENAI_API_KEY"),
        ("anthropic", "ANTHROPIC_API_KEY"),
    ] {
        fake.push(Reply::fault(Fault::Status(401, "missing key".into())));
        let detail = failed(provider, call(&config, provider).0);
        assert!(
            detail.contains("missing key") && detail.contains(env),
            "{detail}"
        );
    }
    assert_eq!(fake.requests()[1].header("x-api-key"), None);
}

#[test]
fn garbage_body_is_failed_as_malformed() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    for provider in HTTP_PROVIDERS {
        fake.push(Reply::fault(Fault::Garbage));
        let detail = failed(provider, call(&config, provider).0);
        assert!(detail.contains("malformed"), "{provider}: {detail}");
        fake.push(Reply::fault(Fault::NotHttp));
        let detail = failed(provider, call(&config, provider).0);
        assert!(detail.contains("malformed HTTP"), "{provider}: {detail}");
    }
}

#[test]
fn stream_cut_mid_way_is_failed_not_a_short_answer() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    for provider in HTTP_PROVIDERS {
        fake.push(
            Reply::text("partial")
                .pieces(["par", "tial"])
                .with_fault(Fault::Cut),
        );
        let (result, deltas) = call(&config, provider);
        let detail = failed(provider, result);
        assert!(detail.contains("cut"), "{provider}: {detail}");
        assert_eq!(
            deltas,
            ["par", "tial"],
            "{provider}: the deltas before the cut still streamed"
        );
    }
}

#[test]
fn stream_ending_without_its_end_marker_is_failed() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    for (provider, marker) in [
        ("openai", "[DONE]"),
        ("anthropic", "message_stop"),
        ("ollama", "done:true"),
    ] {
        fake.push(Reply::text("partial").with_fault(Fault::MissingEnd));
        let detail = failed(provider, call(&config, provider).0);
        assert!(
            detail.contains(marker) && detail.contains("cut"),
            "{provider}: {detail}"
        );
    }
}

#[test]
fn error_event_mid_stream_is_failed_with_its_message() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    for provider in HTTP_PROVIDERS {
        fake.push(
            Reply::text("so far")
                .with_fault(Fault::ErrorEvent("model overloaded mid-stream".into())),
        );
        let detail = failed(provider, call(&config, provider).0);
        assert!(
            detail.contains("model overloaded mid-stream"),
            "{provider}: {detail}"
        );
    }
}

#[test]
fn connection_closed_without_an_answer_is_failed() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    for provider in HTTP_PROVIDERS {
        fake.push(Reply::fault(Fault::CloseImmediately));
        let detail = failed(provider, call(&config, provider).0);
        assert!(detail.contains("closed"), "{provider}: {detail}");
    }
}

#[test]
fn slow_trickle_beyond_the_read_timeout_is_timeout() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(SHORT);
    for (n, provider) in HTTP_PROVIDERS.into_iter().enumerate() {
        // The piece would come after 30 s: a call that waited for it would have succeeded.
        fake.push(Reply::text("slow").delay(Duration::from_secs(30)));
        let start = Instant::now();
        let detail = timed_out(provider, call(&config, provider).0);
        assert!(detail.contains("read_timeout"), "{provider}: {detail}");
        // Generous: the point is "well before the piece", not a precise figure.
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{provider}: {:?}",
            start.elapsed()
        );
        assert!(
            fake.wait_for_disconnects(n + 1, Duration::from_secs(10)),
            "{provider}: the fake never saw the client go"
        );
    }
}

#[test]
fn a_trickle_within_the_read_timeout_is_fine() {
    let fake = FakeProvider::start();
    // Longer in total than the read timeout, but never silent for more than a tenth of
    // it: a busy machine may stretch a gap a lot before the test breaks.
    let config = fake.providers_config(Duration::from_secs(1));
    for provider in HTTP_PROVIDERS {
        fake.push(
            Reply::text("abcdefghijkl")
                .pieces(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"])
                .delay(Duration::from_millis(100)),
        );
        let c = call(&config, provider)
            .0
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(c.text, "abcdefghijkl");
    }
}

#[test]
fn hung_server_is_timeout_not_a_hang() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(SHORT);
    for provider in HTTP_PROVIDERS {
        fake.push(Reply::fault(Fault::Hang(Duration::from_secs(30))));
        let start = Instant::now();
        timed_out(provider, call(&config, provider).0);
        // Generous: the point is "long before the 30 s hang ends", not a precise figure.
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{provider}: {:?}",
            start.elapsed()
        );
    }
    // Each timed-out call dropped its connection.
    assert!(fake.wait_for_disconnects(3, Duration::from_secs(5)));
}

#[test]
fn sink_returning_false_cancels_and_drops_the_connection() {
    let fake = FakeProvider::start();
    let config = fake.providers_config(PATIENT);
    for (n, provider) in HTTP_PROVIDERS.into_iter().enumerate() {
        // Two deltas, then a gate that never opens: a client that went on reading after
        // the sink said stop would wait here (and time out) instead of being cancelled.
        let gate = Gate::new();
        let pieces: Vec<String> = (0..40).map(|i| format!("w{i} ")).collect();
        fake.push(
            Reply::text("")
                .pieces(pieces)
                .hold_after(frames_for_deltas(provider, 2), &gate),
        );
        let (p, model) = for_model(&config, &format!("{provider}/m")).unwrap();
        let mut req = request(&model);
        req.model = model;
        let mut seen = 0;
        let result = p.complete(&req, &mut |_| {
            seen += 1;
            seen < 2
        });
        assert_eq!(result, Err(ProviderError::Cancelled), "{provider}");
        assert_eq!(seen, 2, "{provider}: no delta after the sink said stop");
        // The fake counts a client that left before the reply ended.
        assert!(
            fake.wait_for_disconnects(n + 1, Duration::from_secs(10)),
            "{provider}: the fake never saw the client go"
        );
    }
}

// ---- claude-cli ----

fn claude_config(fake: &FakeClaude, read_timeout: Duration) -> ProvidersConfig {
    let mut config = ProvidersConfig {
        read_timeout: localgpt::config::Span(read_timeout),
        ..ProvidersConfig::default()
    };
    config.claude_cli.command = fake.command();
    config
}

#[test]
fn claude_cli_streams_assistant_text_and_reports_usage() {
    let fake = FakeClaude::printing(&claude_lines(&["Hello there.", "Anything else?"], (40, 9)));
    let config = claude_config(&fake, PATIENT);
    let (p, model) = for_model(&config, "claude-cli/opus").unwrap();
    let mut req = request(&model);
    req.model = model;
    req.tools = tools(); // ignored: the CLI has its own tools
    let mut deltas = Vec::new();
    let c = p
        .complete(&req, &mut |d| {
            deltas.push(d.to_string());
            true
        })
        .unwrap();
    assert_eq!(deltas, ["Hello there.", "\n\n", "Anything else?"]);
    assert_eq!(c.text, "Hello there.\n\nAnything else?");
    assert_eq!((c.usage.prompt, c.usage.completion), (40, 9));
    assert!(c.tool_calls.is_empty());
    assert_eq!(c.stop_reason.as_deref(), Some("success"));
    assert_eq!(
        fake.args(),
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "opus"
        ]
    );
    let stdin = fake.stdin();
    assert!(
        stdin.contains("You are a test.") && stdin.contains("Say hello."),
        "{stdin}"
    );
}

#[test]
fn claude_cli_missing_executable_is_failed_naming_the_command() {
    let mut config = ProvidersConfig::default();
    config.claude_cli.command = "/nonexistent/dir/claude-not-installed".into();
    let detail = failed("claude-cli", call(&config, "claude-cli").0);
    assert!(
        detail.contains("/nonexistent/dir/claude-not-installed"),
        "{detail}"
    );
    assert!(detail.contains("not found"), "{detail}");
}

#[test]
fn claude_cli_failing_executable_is_failed_with_its_stderr() {
    let fake = FakeClaude::failing("Invalid API key · Please run /login", 3);
    let detail = failed(
        "claude-cli",
        call(&claude_config(&fake, PATIENT), "claude-cli").0,
    );
    assert!(detail.contains("Invalid API key"), "{detail}");
    assert!(detail.contains('3'), "{detail}");
}

#[test]
fn claude_cli_error_result_is_failed() {
    let lines = vec![
        json!({"type": "system", "subtype": "init"}).to_string(),
        json!({"type": "result", "subtype": "error_max_turns", "is_error": true, "result": ""})
            .to_string(),
    ];
    let fake = FakeClaude::printing(&lines);
    let detail = failed(
        "claude-cli",
        call(&claude_config(&fake, PATIENT), "claude-cli").0,
    );
    assert!(detail.contains("error_max_turns"), "{detail}");
}

#[test]
fn claude_cli_without_a_result_line_is_failed() {
    let lines = claude_lines(&["half an answer"], (1, 1));
    let fake = FakeClaude::printing(&lines[..2]);
    let detail = failed(
        "claude-cli",
        call(&claude_config(&fake, PATIENT), "claude-cli").0,
    );
    assert!(detail.contains("without a result"), "{detail}");
}

#[test]
fn claude_cli_silent_child_is_killed_at_the_read_timeout() {
    let fake = FakeClaude::script(&format!("{START_GRANDCHILD}wait\n"));
    let start = Instant::now();
    let detail = timed_out(
        "claude-cli",
        call(&claude_config(&fake, SHORT), "claude-cli").0,
    );
    // Generous: the point is "long before the child's 30 s sleep ends".
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert!(detail.contains("read_timeout"), "{detail}");
    assert_process_group_gone(&fake);
}

/// Script lines that start a `sleep` in the background and record its pid: killing only the
/// script would leave the sleep behind.
const START_GRANDCHILD: &str = "sleep 30 &\necho $! > \"$(dirname \"$0\")/sleep.pid\"\n";

/// The script and its background sleep are both gone (killed and reaped) within a moment.
fn assert_process_group_gone(fake: &FakeClaude) {
    let script = fake.pid().expect("the script recorded its pid");
    let sleep = read_pid(&fake.dir().join("sleep.pid")).expect("the sleep's pid");
    let deadline = Instant::now() + Duration::from_secs(15);
    while process_alive(script) || process_alive(sleep) {
        assert!(
            Instant::now() < deadline,
            "child {script} or grandchild {sleep} survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn claude_cli_cancel_kills_the_child() {
    let lines = claude_lines(&["first"], (1, 1));
    let fake = FakeClaude::script(&format!(
        "{START_GRANDCHILD}printf '%s\\n' '{}' '{}'\nwait\nprintf '%s\\n' '{}'\n",
        lines[0], lines[1], lines[2]
    ));
    let config = claude_config(&fake, PATIENT);
    let (p, model) = for_model(&config, "claude-cli/opus").unwrap();
    let mut req = request(&model);
    req.model = model;
    let start = Instant::now();
    let result = p.complete(&req, &mut |_| false);
    assert_eq!(result, Err(ProviderError::Cancelled));
    // Generous: the point is "long before the child's 30 s sleep ends".
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_process_group_gone(&fake);
}

#[test]
fn claude_cli_child_lingering_after_its_result_still_answers() {
    let lines = claude_lines(&["done"], (3, 1));
    let fake = FakeClaude::script(&format!(
        "printf '%s\\n' '{}' '{}' '{}'\nsleep 30\n",
        lines[0], lines[1], lines[2]
    ));
    let start = Instant::now();
    let c = call(&claude_config(&fake, PATIENT), "claude-cli")
        .0
        .unwrap();
    assert_eq!(c.text, "done");
    // Generous: the point is "without waiting for the child's 30 s sleep".
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn fake_provider_toml_is_a_valid_providers_section() {
    let fake = FakeProvider::start();
    let text = fake.providers_toml("2s");
    let config = localgpt::config::Config::parse(std::path::Path::new("t.toml"), &text).unwrap();
    config.validate().unwrap();
    assert_eq!(
        config.providers,
        fake.providers_config(Duration::from_secs(2))
    );
}
