//! Prompt economy (DESIGN §15): the requests of a session share their prefix byte for byte
//! across turns, minute and day boundaries and edits of today's log; the time and the
//! daily logs come last; Anthropic requests mark cache breakpoints; cached prompt tokens
//! reach the answer; a silent memory flush runs before a summary.
//!
//! Most tests build the agent in-process over a test clock (the daemon has no switch to set
//! its clock), with a real workspace, a real SQLite session store and the fake provider
//! server; the token counts are checked on the running daemon too.

mod support;

use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use localgpt::agent::Agent;
use localgpt::agent::chat::{self, ChatParams, FLUSH_REQUEST};
use localgpt::agent::events::{Answer, Unattended};
use localgpt::clock::Clock;
use localgpt::config::Config;
use localgpt::memory::Memory;
use localgpt::providers::{ChatRequest, Message, for_model};
use localgpt::sessions::SessionStore;
use serde_json::{Value, json};
use support::fake_provider::{FakeClaude, FakeProvider, Recorded, Reply};
use support::stream_client::Sse;
use support::{Daemon, TempDir};

/// A clock the test moves.
struct TestClock(Mutex<Timestamp>);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

/// An agent over a temp workspace and session store, talking to a fake provider.
struct Setup {
    fake: FakeProvider,
    dir: TempDir,
    agent: Agent,
    sessions: SessionStore,
    clock: Arc<TestClock>,
    model: String,
}

impl Setup {
    /// `agent` holds extra `[agent]` keys (and may go on with other tables).
    fn new(model: &str, agent: &str) -> Setup {
        let fake = FakeProvider::start();
        let dir = TempDir::new("prompt");
        let text = format!(
            "{}\n[agent]\ndefault_model = \"{model}\"\n{agent}\n\n[heartbeat]\nenabled = false\ntimezone = \"Europe/Paris\"\n",
            fake.providers_toml("10s")
        );
        let config = Config::parse(&dir.path().join("config.toml"), &text).expect("config");
        let workspace = dir.path().join("workspace");
        let memory = Memory::open(&config.memory, &workspace, &dir.path().join("index.sqlite"))
            .expect("memory");
        let clock = Arc::new(TestClock(Mutex::new(Timestamp::UNIX_EPOCH)));
        let agent = Agent::new(&config, Arc::new(memory), clock.clone()).expect("agent");
        let sessions = SessionStore::open(&dir.path().join("sessions.sqlite")).expect("sessions");
        Setup {
            fake,
            dir,
            agent,
            sessions,
            clock,
            model: model.to_string(),
        }
    }

    fn workspace(&self) -> std::path::PathBuf {
        self.dir.path().join("workspace")
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.workspace().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn append(&self, rel: &str, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.workspace().join(rel))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.workspace().join(rel)).unwrap_or_default()
    }

    /// Sets the clock, e.g. `2026-02-14T23:58:30+01:00`.
    fn at(&self, time: &str) {
        *self.clock.0.lock().unwrap() = time.parse().unwrap();
    }

    fn session(&self) -> String {
        self.sessions.create(&self.model).unwrap().session_id
    }

    fn chat(&self, session: &str, message: &str) -> Answer {
        let params = ChatParams {
            message: message.into(),
            model: None,
            include_memory: true,
            session_id: Some(session.into()),
        };
        let prepared = chat::prepare(&self.agent, &self.sessions, &params, false).unwrap();
        chat::run(
            &self.agent,
            &self.sessions,
            &params,
            prepared,
            &mut Unattended,
        )
        .unwrap()
    }
}

/// `v` without Anthropic's cache marks: they say where to cache, and are not part of the
/// prompt a cache compares.
fn unmarked(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| *k != "cache_control")
                .map(|(k, v)| (k.clone(), unmarked(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(unmarked).collect()),
        other => other.clone(),
    }
}

/// The parts a prompt cache keys on, in their order: system (Anthropic), tools, messages.
fn prompt_parts(r: &Recorded) -> (String, String, Vec<String>) {
    let body = unmarked(&r.body);
    let messages = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    (
        body["system"].to_string(),
        body["tools"].to_string(),
        messages,
    )
}

/// Everything `earlier` sent is the start of what `later` sends, byte for byte.
fn assert_prefix(earlier: &Recorded, later: &Recorded, what: &str) {
    let (system, tools, messages) = prompt_parts(earlier);
    let (system2, tools2, messages2) = prompt_parts(later);
    assert_eq!(system, system2, "{what}: the system prompt changed");
    assert_eq!(tools, tools2, "{what}: the tools changed");
    assert!(messages2.len() > messages.len(), "{what}: no new message");
    for (i, (a, b)) in messages.iter().zip(&messages2).enumerate() {
        assert_eq!(a, b, "{what}: message {i} changed");
    }
}

/// The text of the last user message of a request, in any wire format.
fn last_user_text(r: &Recorded) -> String {
    let messages = r.body["messages"].as_array().unwrap();
    let last = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
        other => other.to_string(),
    }
}

/// The system prompt of a request, in any wire format.
fn system_text(r: &Recorded) -> String {
    match &r.body["system"] {
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        Value::String(s) => s.clone(),
        _ => r.body["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    }
}

#[test]
fn a_sessions_requests_share_their_prefix_across_minutes_days_and_log_edits() {
    for provider in ["openai", "anthropic", "ollama"] {
        let s = Setup::new(&format!("{provider}/test-model"), "");
        s.write("MEMORY.md", "# Memory\n- The user's cat is called Miso.\n");
        s.write("memory/2026-02-13.md", "- 18:00 watered the plants\n");
        s.write("memory/2026-02-14.md", "- 09:00 dentist at 15:00\n");
        let id = s.session();

        s.at("2026-02-14T23:58:30+01:00");
        s.chat(&id, "Hello there.");
        s.at("2026-02-14T23:59:10+01:00");
        s.chat(&id, "What time is it?");
        s.append(
            "memory/2026-02-14.md",
            "- 23:59 a note written in an editor\n",
        );
        s.at("2026-02-14T23:59:40+01:00");
        s.chat(&id, "Anything new?");
        s.at("2026-02-15T00:00:20+01:00");
        s.chat(&id, "A new day.");
        // A memory write by the model in the middle of a turn.
        s.fake.push(Reply::tool_call(
            "memory_append",
            json!({"text": "the user stayed up late"}),
        ));
        s.fake.push(Reply::text("Noted."));
        s.chat(&id, "Remember that I stayed up late.");
        s.at("2026-02-15T00:01:05+01:00");
        s.chat(&id, "Good night.");

        let r = s.fake.requests();
        assert_eq!(r.len(), 7, "{provider}");
        for i in 1..r.len() {
            assert_prefix(&r[i - 1], &r[i], &format!("{provider}: request {i}"));
        }
        let system = system_text(&r[0]);
        assert!(
            system.contains("Miso"),
            "{provider}: curated memory: {system}"
        );
        assert!(
            !system.contains("2026") && !system.contains("23:5"),
            "{provider}: no time or daily log in the system prompt: {system}"
        );

        let first = last_user_text(&r[0]);
        assert!(first.starts_with("Hello there.\n\n<context>\n"), "{first}");
        assert!(first.contains("Local time: Saturday 2026-02-14 23:58 (Europe/Paris)"));
        assert!(first.contains("watered the plants") && first.contains("dentist"));
        let second = last_user_text(&r[1]);
        assert!(
            second.contains("23:59") && !second.contains("dentist"),
            "{second}"
        );
        let third = last_user_text(&r[2]);
        assert!(
            third.contains("new since last shown)\n- 23:59 a note written in an editor")
                && !third.contains("dentist"),
            "{third}"
        );
        let fourth = last_user_text(&r[3]);
        assert!(
            fourth.contains("Sunday 2026-02-15 00:00") && !fourth.contains("###"),
            "{fourth}"
        );
        let sixth = last_user_text(&r[6]);
        assert!(
            sixth.contains("memory/2026-02-15.md (today's log)")
                && sixth.contains("the user stayed up late"),
            "{sixth}"
        );
        assert!(
            s.read("memory/2026-02-15.md")
                .contains("- 00:00 the user stayed up late")
        );
        // The session keeps the user's words; the context stays out of the API.
        let stored = s.sessions.messages(&id).unwrap();
        assert_eq!(stored[0].content, "Hello there.");
        assert!(
            !serde_json::to_string(&stored)
                .unwrap()
                .contains("<context>")
        );
    }
}

#[test]
fn anthropic_requests_mark_the_stable_system_and_the_history_for_caching() {
    let s = Setup::new("anthropic/test-model", "");
    s.write("MEMORY.md", "- likes tea\n");
    let id = s.session();
    s.at("2026-02-14T10:00:00+01:00");
    s.chat(&id, "one");
    s.fake
        .push(Reply::tool_call("memory_search", json!({"query": "tea"})));
    s.fake.push(Reply::text("Tea it is."));
    s.chat(&id, "two");
    for r in s.fake.requests() {
        let marks = r.raw_body.matches("\"cache_control\"").count();
        assert!((1..=4).contains(&marks), "{marks} marks: {}", r.raw_body);
        let system = r.body["system"].as_array().unwrap();
        assert_eq!(system[0]["cache_control"], json!({"type": "ephemeral"}));
        let turns = r.body["messages"].as_array().unwrap();
        let last = turns.last().unwrap()["content"].as_array().unwrap();
        assert_eq!(
            last.last().unwrap()["cache_control"],
            json!({"type": "ephemeral"})
        );
    }
    // The tool round of the second turn marks the end of the first turn too.
    let round = &s.fake.requests()[2];
    let turns = round.body["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 5);
    assert_eq!(
        turns[1]["content"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
}

#[test]
fn cached_prompt_tokens_are_passed_through_from_each_provider() {
    for (model, reply) in [
        ("openai/m", Reply::text("hi").usage(100, 5).cached(80)),
        ("openai/m", Reply::text("hi").usage(100, 5).llama_cached(80)),
        ("anthropic/m", Reply::text("hi").usage(100, 5).cached(80)),
        ("ollama/m", Reply::text("hi").usage(100, 5).cached(80)),
    ] {
        let s = Setup::new(model, "");
        s.fake.push(reply);
        let id = s.session();
        let answer = s.chat(&id, "hello");
        assert_eq!(answer.tokens.prompt, 100, "{model}");
        assert_eq!(answer.tokens.cached, Some(80), "{model}");
        assert_eq!(answer.tokens.total, 105, "{model}");
        let v = serde_json::to_value(&answer).unwrap();
        assert_eq!(v["tokens"]["cached"], 80, "{model}");
        // Without a count from the provider, no count in the answer.
        s.fake.push(Reply::text("hi"));
        let answer = s.chat(&id, "again");
        assert_eq!(answer.tokens.cached, None, "{model}");
        let v = serde_json::to_value(&answer).unwrap();
        assert!(v["tokens"].get("cached").is_none(), "{model}: {v}");
    }

    // The Claude CLI reports Anthropic's usage.
    let result = json!({"type": "result", "subtype": "success", "is_error": false,
        "result": "hi", "usage": {"input_tokens": 3, "cache_read_input_tokens": 90,
        "cache_creation_input_tokens": 7, "output_tokens": 2}});
    let claude = FakeClaude::printing(&[result.to_string()]);
    let mut config = localgpt::config::ProvidersConfig::default();
    config.claude_cli.command = claude.command();
    let (provider, model) = for_model(&config, "claude-cli/opus").unwrap();
    let request = ChatRequest {
        model,
        messages: vec![Message::user("hello")],
        ..Default::default()
    };
    let done = provider.complete(&request, &mut |_| true).unwrap();
    assert_eq!((done.usage.prompt, done.usage.cached), (100, Some(90)));
}

#[test]
fn the_daemon_reports_cached_tokens_on_answers_and_done_events() {
    let fake = FakeProvider::start();
    let d = Daemon::start(&format!(
        "{}\n[agent]\ndefault_model = \"openai/test-model\"\n\n[logging]\nlevel = \"debug\"\n",
        fake.providers_toml("10s")
    ));
    fake.push(Reply::text("hi").usage(120, 4).cached(100));
    let (status, v) = d.post("/api/chat", &json!({"message": "hello"}).to_string());
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["tokens"],
        json!({"prompt": 120, "completion": 4, "total": 124, "cached": 100})
    );
    // One debug line per turn, in the access log's manner.
    d.wait_log("turn openai/test-model prompt 120 cached 100 completion 4 ");
    fake.push(Reply::text("hi").usage(130, 4).cached(110));
    let mut sse = Sse::open(d.addr, &json!({"message": "hello"}).to_string());
    let done = sse.until("done");
    assert_eq!(done.data["tokens"]["cached"], 110, "{:?}", done.data);
}

/// A chat turn and a heartbeat run send the same system prompt and tools, so the heartbeat
/// finds them in the provider's cache.
#[test]
fn a_heartbeat_shares_the_stable_prefix_of_a_chat_turn() {
    let fake = FakeProvider::start();
    let d = Daemon::start(&format!(
        "{}\n[agent]\ndefault_model = \"openai/test-model\"\n\n[heartbeat]\ninterval = \"0\"\n",
        fake.providers_toml("10s")
    ));
    let workspace = d.home.workspace();
    std::fs::write(workspace.join("MEMORY.md"), "- likes tea\n").unwrap();
    std::fs::write(workspace.join("HEARTBEAT.md"), "- [ ] water the plants\n").unwrap();
    let (status, v) = d.post("/api/chat", &json!({"message": "hello"}).to_string());
    assert_eq!(status, 200, "{v}");
    fake.push(Reply::text("HEARTBEAT_OK"));
    let (status, v) = d.post("/api/heartbeat/run", "");
    assert_eq!(status, 200, "{v}");
    let r = fake.requests();
    assert_eq!(r.len(), 2);
    let chat = &r[0].body;
    let heartbeat = &r[1].body;
    assert_eq!(chat["messages"][0], heartbeat["messages"][0], "system");
    assert!(chat["messages"][0].to_string().contains("likes tea"));
    assert_eq!(chat["tools"], heartbeat["tools"]);
}

/// History over `agent.history_chars` is summarised; first, one silent turn lets the model
/// save what should last.
#[test]
fn a_silent_memory_flush_runs_once_before_a_summary() {
    let s = Setup::new("openai/test-model", "history_chars = 1000");
    let id = s.session();
    s.at("2026-02-14T10:00:00+01:00");
    let long = |n: usize| format!("Message {n}: {}", "words of a long message ".repeat(12));
    for n in 1..=3 {
        s.fake.push(Reply::text(&format!("Answer {n}.")));
        s.chat(&id, &long(n));
    }
    let before = s.fake.request_count();
    assert_eq!(before, 3, "no summary yet");

    // The fourth turn: flush (a memory_append, then its answer), summary, the turn itself.
    s.fake.push(Reply::tool_call(
        "memory_append",
        json!({"text": "The user writes long messages.", "target": "daily"}),
    ));
    s.fake.push(Reply::text("done"));
    s.fake
        .push(Reply::text("SUMMARY: the user sent long messages 1 to 3."));
    s.fake.push(Reply::text("Answer 4."));
    s.chat(&id, &long(4));
    let r = s.fake.requests();
    assert_eq!(r.len(), 7);

    // The flush continues the last turn's request: same system, tools, history.
    let flush = &r[3];
    assert!(
        last_user_text(flush).starts_with(FLUSH_REQUEST),
        "{}",
        last_user_text(flush)
    );
    assert_prefix(&r[2], flush, "flush");
    assert_eq!(
        flush.body["tools"], r[2].body["tools"],
        "the same tools offered"
    );
    let flush_round = &r[4];
    assert_prefix(flush, flush_round, "flush tool round");
    assert!(
        s.read("memory/2026-02-14.md")
            .contains("The user writes long messages.")
    );
    // Then the summary, then the turn over the summary and the newest messages.
    assert!(last_user_text(&r[5]).contains("Message 1:"));
    let turn = &r[6];
    assert!(system_text(turn).contains("SUMMARY: the user sent long messages 1 to 3."));
    assert!(last_user_text(turn).starts_with("Message 4:"));
    // The flush's note reached the model in the turn's context.
    assert!(last_user_text(turn).contains("The user writes long messages."));

    // Nothing of the flush is in the session.
    let stored = s.sessions.messages(&id).unwrap();
    assert_eq!(stored.len(), 8, "four turns of two messages");
    assert!(stored.iter().all(|m| !m.content.contains("[From LocalGPT")));
    assert!(stored.iter().all(|m| m.content != "done"));

    // The next turn fits: no flush, no summary.
    s.fake.push(Reply::text("Answer 5."));
    s.chat(&id, "short");
    let r = s.fake.requests();
    assert_eq!(r.len(), 8);
    assert_prefix(&r[6], &r[7], "after the summary");
    // One flush turn (the second request with its message is its tool round).
    let flushes: Vec<usize> = (0..r.len())
        .filter(|&i| last_user_text(&r[i]).starts_with(FLUSH_REQUEST))
        .collect();
    assert_eq!(flushes, [3, 4]);
}

#[test]
fn no_flush_when_memory_append_needs_an_approval_nobody_can_give() {
    let s = Setup::new(
        "openai/test-model",
        "history_chars = 1000\n\n[tools]\nrequire_approval = [\"bash\", \"memory_append\"]",
    );
    let id = s.session();
    s.at("2026-02-14T10:00:00+01:00");
    for n in 1..=4 {
        s.chat(&id, &format!("{n}: {}", "a long message ".repeat(20)));
    }
    let r = s.fake.requests();
    // Three turns, then the summary and the fourth turn: no flush.
    assert_eq!(r.len(), 5);
    assert!(
        r.iter()
            .all(|r| !last_user_text(r).starts_with(FLUSH_REQUEST))
    );
    assert!(!s.workspace().join("memory/2026-02-14.md").exists());
}
