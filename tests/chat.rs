//! `POST /api/chat` end to end: the real daemon, the real ureq client, a fake provider
//! server speaking each wire format, tools that really run.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake_provider::{
    FakeClaude, FakeProvider, Fault, Reply, TEST_KEY, claude_lines, refused_url,
};
use support::{Daemon, eventually};

const MODELS: &[&str] = &[
    "openai/gpt-test",
    "anthropic/claude-test",
    "ollama/llama-test",
];

fn daemon(fake: &FakeProvider, extra: &str) -> Daemon {
    Daemon::start(&format!(
        "[heartbeat]\nenabled = false\n{}\n{extra}",
        fake.providers_toml("2s")
    ))
}

fn chat(d: &Daemon, model: &str, message: &str) -> (u16, Value) {
    d.post(
        "/api/chat",
        &json!({"message": message, "model": model}).to_string(),
    )
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

/// The text of every request body the fake saw, for looking up what the model was told.
fn bodies(fake: &FakeProvider) -> Vec<String> {
    fake.requests().iter().map(|r| r.body.to_string()).collect()
}

#[test]
fn plain_answer_with_tokens_for_each_provider() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    for model in MODELS {
        fake.push(
            Reply::text("The capital of France is Paris.")
                .pieces(["The capital ", "of France is Paris."])
                .usage(45, 12),
        );
        let (status, body) = chat(&d, model, "What is the capital of France?");
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(
            body["response"], "The capital of France is Paris.",
            "{model}"
        );
        assert_eq!(body["model"], *model);
        assert_eq!(
            body["tokens"],
            json!({"prompt": 45, "completion": 12, "total": 57}),
            "{model}"
        );
        assert_eq!(body["tools_used"], json!([]));
    }
    // The system prompt carried the workspace memory (include_memory defaults to true).
    assert!(bodies(&fake).iter().all(|b| b.contains("MEMORY.md")));
    let anthropic = fake
        .requests()
        .into_iter()
        .find(|r| r.path.contains("messages"))
        .unwrap();
    assert_eq!(anthropic.header("x-api-key"), Some(TEST_KEY));
    let log = d.wait_log("POST /api/chat 200");
    assert!(!log.contains(TEST_KEY), "keys are never logged");
}

#[test]
fn memory_search_tool_really_hits_the_index() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    std::fs::write(
        d.home.workspace().join("knowledge-zanzibar.md"),
        "# Travel\nThe ferry to Zanzibar leaves at 7am from pier 4.\n",
    )
    .unwrap();
    eventually(Duration::from_secs(20), "file indexed", || {
        let (_, v) = d.get("/api/memory/search?q=zanzibar");
        (v["total"].as_u64() == Some(1)).then_some(())
    });
    for model in MODELS {
        fake.push(
            Reply::tool_call("memory_search", json!({"query": "zanzibar ferry"})).usage(20, 3),
        );
        fake.push(Reply::text("It leaves at 7am from pier 4.").usage(30, 8));
        let before = fake.request_count();
        let (status, body) = chat(&d, model, "When does the Zanzibar ferry leave?");
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(body["response"], "It leaves at 7am from pier 4.");
        assert_eq!(
            body["tools_used"],
            json!([{"name": "memory_search", "arguments": {"query": "zanzibar ferry"}}]),
            "{model}"
        );
        assert_eq!(body["tokens"]["total"], 61, "usage summed over the loop");
        assert_eq!(fake.request_count(), before + 2);
        let second = &bodies(&fake)[before + 1];
        assert!(
            second.contains("pier 4"),
            "{model}: the tool result reached the model: {second}"
        );
    }
}

#[test]
fn bash_needs_approval_and_is_denied_on_plain_chat() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    // In the workspace, where the bash sandbox would let it be written if it ran.
    let marker = d.home.workspace().join("bash-ran");
    for model in MODELS {
        fake.push(Reply::tool_call(
            "bash",
            json!({"command": format!("touch {}", marker.display())}),
        ));
        fake.push(Reply::text("I could not run it."));
        let before = fake.request_count();
        let (status, body) = chat(&d, model, "make a file");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["tools_used"][0]["name"], "bash");
        assert!(!marker.exists(), "{model}: a denied bash must not run");
        let second = &bodies(&fake)[before + 1];
        assert!(
            second.contains("denied"),
            "{model}: the model is told: {second}"
        );
    }
}

#[test]
fn file_tools_stay_in_the_workspace() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "[tools]\nrequire_approval = []\n");
    let outside = d.home.root().join("escaped.md");
    fake.push(Reply::tool_call(
        "write_file",
        json!({"path": "../../escaped.md", "content": "x"}),
    ));
    fake.push(Reply::tool_call(
        "write_file",
        json!({"path": outside.to_str().unwrap(), "content": "y"}),
    ));
    fake.push(Reply::tool_call(
        "write_file",
        json!({"path": "notes/ok.md", "content": "inside note about quokkas"}),
    ));
    fake.push(Reply::text("done"));
    let (status, body) = chat(&d, "openai/gpt-test", "write files");
    assert_eq!(status, 200, "{body}");
    assert!(!outside.exists());
    let all = bodies(&fake);
    assert!(all[1].contains("outside the workspace"), "{}", all[1]);
    assert!(all[2].contains("outside the workspace"), "{}", all[2]);
    assert_eq!(
        std::fs::read_to_string(d.home.workspace().join("notes/ok.md")).unwrap(),
        "inside note about quokkas"
    );
    // The agent's own write is searchable at once (no scan needed).
    let (_, v) = d.get("/api/memory/search?q=quokkas");
    assert_eq!(v["total"], 1, "{v}");
}

#[test]
fn tool_loop_is_bounded() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "[agent]\nmax_tool_iterations = 3\n");
    for i in 0..5 {
        fake.push(Reply::tool_call(
            "memory_search",
            json!({"query": format!("thing {i}")}),
        ));
    }
    let (status, body) = chat(&d, "anthropic/claude-test", "loop forever");
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.request_count(), 3);
    assert!(
        body["response"]
            .as_str()
            .unwrap()
            .contains("max_tool_iterations")
    );
    assert_eq!(body["tools_used"].as_array().unwrap().len(), 3);
}

#[test]
fn identical_repeated_calls_are_stopped() {
    let fake = FakeProvider::start();
    let d = daemon(&fake, "");
    for _ in 0..5 {
        fake.push(Reply::tool_call("memory_search", json!({"query": "same"})));
    }
    let (status, body) = chat(&d, "openai/gpt-test", "repeat");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.request_count(),
        2,
        "second identical call stops the loop"
    );
    assert!(body["response"].as_str().unwrap().contains("repeating"));
}

#[test]
fn provider_faults_map_to_status_and_envelope() {
    let fake = FakeProvider::start();
    let d = Daemon::start(&format!(
        "[heartbeat]\nenabled = false\n{}",
        fake.providers_toml("500ms")
    ));
    let cases: Vec<(Fault, u16, &str)> = vec![
        (
            Fault::Status(500, "model overloaded, try later".into()),
            502,
            "model overloaded",
        ),
        (
            Fault::Status(401, "invalid x-api-key".into()),
            502,
            "invalid x-api-key",
        ),
        (Fault::Garbage, 502, ""),
        (Fault::Cut, 502, ""),
        (Fault::Hang(Duration::from_secs(30)), 504, ""),
    ];
    for model in MODELS {
        let provider = model.split('/').next().unwrap();
        for (fault, status, text) in &cases {
            fake.push(Reply::fault(fault.clone()));
            let (got, body) = chat(&d, model, "hi");
            assert_eq!(got, *status, "{model} {fault:?}: {body}");
            let expected = if *status == 504 {
                "provider_timeout"
            } else {
                "provider_error"
            };
            assert_eq!(code(&body), expected);
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(provider), "{message} names the provider");
            assert!(
                message.contains(text),
                "{message} passes the provider's reason"
            );
            assert!(!message.contains(TEST_KEY));
        }
    }
    assert_eq!(d.get("/health").0, 200, "healthy after every fault");
}

#[test]
fn refused_provider_is_502() {
    let home = support::Home::new("refused");
    home.write_config(&format!(
        "[providers.openai]\nbase_url = \"{}/v1\"\n[providers.ollama]\nbase_url = \"{}\"\n",
        refused_url(),
        refused_url()
    ));
    let d = Daemon::start_in(home);
    for model in ["openai/x", "ollama/y"] {
        let (status, body) = chat(&d, model, "hi");
        assert_eq!((status, code(&body)), (502, "provider_error"), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("refused"),
            "{body}"
        );
    }
}

#[test]
fn claude_cli_provider_and_missing_executable() {
    let claude = FakeClaude::printing(&claude_lines(&["Hello from the CLI."], (7, 4)));
    let d = Daemon::start(&format!(
        "[providers.claude_cli]\ncommand = \"{}\"\n",
        claude.command()
    ));
    let (status, body) = chat(&d, "claude-cli/opus", "hello");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response"], "Hello from the CLI.");
    assert_eq!(body["tokens"]["total"], 11);
    assert!(claude.args().iter().any(|a| a == "stream-json"));

    let d = Daemon::start("[providers.claude_cli]\ncommand = \"/nonexistent/claude\"\n");
    let (status, body) = chat(&d, "claude-cli/opus", "hello");
    assert_eq!((status, code(&body)), (502, "provider_error"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/claude")
    );
}

#[test]
fn bad_requests_name_the_field() {
    let d = Daemon::start("");
    let cases = [
        ("{}", "message"),
        (r#"{"message": 5}"#, "message"),
        (r#"{"message": "  "}"#, "message"),
        (
            r#"{"message": "hi", "include_memory": "yes"}"#,
            "include_memory",
        ),
        (r#"{"message": "hi", "model": 3}"#, "model"),
        (r#"{"message": "hi", "model": "gpt4"}"#, "provider"),
        (
            r#"{"message": "hi", "model": "acme/x"}"#,
            "anthropic, openai, ollama, claude-cli",
        ),
        ("{not json", "JSON"),
        ("[1,2]", "object"),
    ];
    for (body, needle) in cases {
        let (status, v) = d.post("/api/chat", body);
        assert_eq!((status, code(&v)), (400, "invalid_request"), "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (status, v) = d.post("/api/chat", r#"{"message": "hi", "session_id": "nope"}"#);
    assert_eq!((status, code(&v)), (404, "not_found"), "{v}");
}
