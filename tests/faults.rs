//! Faults, end to end: a broken provider on every chat route, session and index databases
//! deleted or corrupted under a running daemon, a read-only workspace, and `kill -9` in the
//! middle of a burst of writes. The real binary over loopback, real SQLite files, the real
//! fake provider server.
//!
//! Related faults covered elsewhere: every wire format's parsing of each fault at the
//! provider level (`tests/providers.rs`), 401 and trickles (`tests/chat.rs`,
//! `tests/providers.rs`), a client that disconnects (`tests/stream.rs`), `kill -9` during
//! one stream (`tests/stream.rs::sessions_survive_restart_and_kill_9`), a garbage index at
//! start and a deleted index while running (`tests/memory.rs`).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Daemon;
use support::fake_provider::{FakeProvider, Fault, Reply, TEST_KEY};
use support::stream_client::Sse;

const MODELS: &[&str] = &[
    "openai/gpt-test",
    "anthropic/claude-test",
    "ollama/llama-test",
];

/// Generous for a loaded 2-core CI machine; polls return as soon as the condition holds.
const PATIENCE: Duration = Duration::from_secs(30);

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("<none>")
}

fn new_session(d: &Daemon, model: &str) -> String {
    let (status, s) = d.post("/api/sessions", &json!({ "model": model }).to_string());
    assert_eq!(status, 201, "{s}");
    s["session_id"].as_str().unwrap().to_string()
}

/// (role, content) of every stored message of a session.
fn stored(d: &Daemon, id: &str) -> Vec<(String, String)> {
    let (status, s) = d.get(&format!("/api/sessions/{id}"));
    assert_eq!(status, 200, "{s}");
    s["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect()
}

// ---- 1. provider faults × {plain, streamed} ----

#[derive(Clone, Copy, Debug)]
enum Broken {
    Refused,
    Stalled,
    Status500,
    Garbage,
    Cut,
}

/// Each fault, the status and code a plain turn answers, and words the message must hold.
const FAULTS: &[(Broken, u16, &str, &[&str])] = &[
    (Broken::Refused, 502, "provider_error", &["refused"]),
    (Broken::Stalled, 504, "provider_timeout", &["timed out"]),
    (
        Broken::Status500,
        502,
        "provider_error",
        &["500", "upstream exploded"],
    ),
    (Broken::Garbage, 502, "provider_error", &["malformed"]),
    (Broken::Cut, 502, "provider_error", &["cut"]),
];

/// One turn on either route: (status of a plain answer or the code's status, error code or
/// "", error message or the response, content deltas streamed).
fn turn(d: &Daemon, streamed: bool, id: &str, text: &str) -> (u16, String, String, Vec<String>) {
    let body = json!({"message": text, "session_id": id}).to_string();
    if !streamed {
        let (status, v) = d.post("/api/chat", &body);
        return if status == 200 {
            (
                200,
                String::new(),
                v["response"].as_str().unwrap().into(),
                vec![],
            )
        } else {
            (status, code(&v).into(), message(&v).into(), vec![])
        };
    }
    let mut sse = Sse::open(d.addr, &body);
    assert_eq!(sse.status, 200, "{}", sse.body);
    let events = sse.collect();
    assert!(
        sse.next_raw().is_none(),
        "the stream ends right after [DONE]"
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds.first(), Some(&"session"), "{kinds:?}");
    assert_eq!(events[0].data["session_id"], id);
    assert_eq!(kinds.last(), Some(&"[DONE]"), "{kinds:?}");
    let last = &events[events.len() - 2];
    let middle = &kinds[1..kinds.len() - 2];
    assert!(
        middle.iter().all(|k| *k == "content"),
        "only content before the end: {kinds:?}"
    );
    let deltas = events[1..events.len() - 2]
        .iter()
        .map(|e| e.data["delta"].as_str().unwrap().to_string())
        .collect();
    match last.kind() {
        "done" => (
            200,
            String::new(),
            last.data["response"].as_str().unwrap().into(),
            deltas,
        ),
        "error" => {
            let code = last.data["code"].as_str().unwrap().to_string();
            let status = if code == "provider_timeout" { 504 } else { 502 };
            (
                status,
                code,
                last.data["message"].as_str().unwrap().into(),
                deltas,
            )
        }
        other => panic!("stream ended with {other}: {kinds:?}"),
    }
}

#[test]
fn provider_faults_on_plain_and_streamed_turns_keep_the_session_and_recover() {
    let mut fake = Some(FakeProvider::start());
    let toml = fake.as_ref().unwrap().providers_toml("500ms");
    let d = Daemon::start(&format!("[heartbeat]\nenabled = false\n{toml}"));
    for model in MODELS {
        let provider = model.split('/').next().unwrap();
        for &(broken, status, error_code, words) in FAULTS {
            for streamed in [false, true] {
                let case = format!(
                    "{model} {broken:?} {}",
                    if streamed { "stream" } else { "plain" }
                );
                let id = new_session(&d, model);
                let mut down = None;
                let live = fake.as_ref().unwrap();
                match broken {
                    Broken::Refused => down = Some(fake.take().unwrap().shut_down()),
                    Broken::Stalled => live.push(Reply::fault(Fault::Hang(PATIENCE))),
                    Broken::Status500 => {
                        live.push(Reply::fault(Fault::Status(500, "upstream exploded".into())))
                    }
                    Broken::Garbage => live.push(Reply::fault(Fault::Garbage)),
                    Broken::Cut => live.push(
                        Reply::text("partial")
                            .pieces(["par", "tial"])
                            .with_fault(Fault::Cut),
                    ),
                }
                let asked = format!("question during {case}");
                let (got, got_code, text, deltas) = turn(&d, streamed, &id, &asked);
                assert_eq!(
                    (got, got_code.as_str()),
                    (status, error_code),
                    "{case}: {text}"
                );
                assert!(text.contains(provider), "{case}: {text} names the provider");
                for w in words {
                    assert!(text.contains(w), "{case}: {text} says {w:?}");
                }
                assert!(!text.contains(TEST_KEY), "{case}: the key leaked");
                if streamed && matches!(broken, Broken::Cut) {
                    assert_eq!(deltas, ["par", "tial"], "{case}: deltas before the cut");
                }
                assert_eq!(
                    stored(&d, &id),
                    pairs(&[("user", &asked)]),
                    "{case}: the user message is kept, no partial answer"
                );

                if let Some(addr) = down {
                    fake = Some(FakeProvider::start_on(addr));
                }
                fake.as_ref().unwrap().push(Reply::text("back again"));
                let again = format!("retry after {case}");
                let (got, _, text, _) = turn(&d, streamed, &id, &again);
                assert_eq!((got, text.as_str()), (200, "back again"), "{case}");
                assert_eq!(
                    stored(&d, &id),
                    pairs(&[
                        ("user", &asked),
                        ("user", &again),
                        ("assistant", "back again")
                    ]),
                    "{case}"
                );
            }
        }
    }
    assert_eq!(d.get("/health").0, 200);
}
