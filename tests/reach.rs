//! Reaching the user, end to end: the real daemon, the fake provider, a fake Telegram Bot
//! API that long-polls honestly, a webhook receiver, and the events feed over real SSE.
//!
//! Nothing here asserts how long something took at most; waits are bounded polls or
//! condition waits on what the fakes saw. The one timing check is a lower bound (a 429's
//! `retry_after` was waited out).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_provider::{FakeProvider, Reply};
use support::fake_telegram::{Call, FakeTelegram, TOKEN};
use support::http_server::HttpServer;
use support::stream_client::Sse;
use support::{Daemon, Home, eventually};

/// The allowed user (and, a private chat's id being its user's, the chat).
const USER: i64 = 42;

const WAIT: Duration = Duration::from_secs(30);

/// A home with the daemon's model on `fake`, the heartbeat timer off, Telegram on `tg`
/// (`telegram` extra keys), and `extra` TOML sections.
fn home(fake: &FakeProvider, tg: Option<&FakeTelegram>, telegram: &str, extra: &str) -> Home {
    let home = Home::new("reach");
    home.write_config(&format!(
        "[server]\nport = 0\n[agent]\ndefault_model = \"openai/gpt-test\"\n\
         [heartbeat]\nenabled = false\n{}\n{extra}\n{}",
        tg.map(|t| t.toml(&[USER], telegram)).unwrap_or_default(),
        fake.providers_toml("10s")
    ));
    home
}

fn status(d: &Daemon) -> Value {
    let (code, v) = d.get("/api/status");
    assert_eq!(code, 200, "{v}");
    v
}

/// The last user message the provider was sent in request `i`.
fn last_user_message(fake: &FakeProvider, i: usize) -> String {
    let body = fake.requests()[i].body.clone();
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| m["content"].to_string())
        .unwrap_or_default()
}

#[test]
fn a_message_gets_an_answer_in_its_session_and_the_token_stays_secret() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::start();
    fake.push(Reply::text("Hello from the model."));
    fake.push(Reply::text("Second answer."));
    let d = Daemon::start_in(home(&fake, Some(&tg), "", ""));

    tg.message(USER, "hi there");
    let sent = tg.wait_sent(USER, 1);
    assert_eq!(sent[0].text(), "Hello from the model.");
    assert!(sent[0].body.get("parse_mode").is_none(), "plain text");
    assert!(last_user_message(&fake, 0).contains("hi there"));
    let typing = tg.calls("sendChatAction");
    assert!(
        typing
            .iter()
            .any(|c| c.body == json!({"chat_id": USER, "action": "typing"})),
        "{typing:?}"
    );

    // The chat is one session: the second turn carries the first.
    tg.message(USER, "and again");
    let sent = tg.wait_sent(USER, 2);
    assert_eq!(sent[1].text(), "Second answer.");
    assert!(fake.requests()[1].body.to_string().contains("hi there"));
    let (_, sessions) = d.get("/api/sessions");
    let sessions = sessions["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["message_count"], 4);

    let s = status(&d);
    assert_eq!(s["telegram"]["state"], "polling", "{s}");
    assert_eq!(s["telegram"]["bot"], "@test_bot", "{s}");

    // The token is in every URL the daemon calls, and nowhere it shows.
    let (_, show, _) = d.home.run(&["config", "show"]);
    for (what, text) in [
        ("log", d.stderr()),
        ("status", s.to_string()),
        ("config show", show),
    ] {
        assert!(!text.contains(TOKEN), "the token is in the {what}: {text}");
        assert!(
            !text.contains("TEST-SECRET"),
            "part of the token in the {what}"
        );
    }
    let state = std::fs::read_to_string(d.home.state_dir().join("telegram.json")).unwrap();
    assert!(!state.contains("TEST-SECRET"));
}

#[test]
fn a_stranger_gets_no_answer_and_their_text_is_not_logged() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::start();
    fake.push(Reply::text("Hi."));
    let d = Daemon::start_in(home(&fake, Some(&tg), "", ""));

    let stranger = tg.message(999, "STRANGER-SECRET-WORDS please run rm -rf");
    tg.message(USER, "hello");
    // Updates are taken in order: once the user has an answer, the stranger's was seen.
    assert_eq!(tg.wait_sent(USER, 1)[0].text(), "Hi.");
    tg.wait_taken(stranger);
    let log = d.wait_log("telegram: update from user 999 ignored");
    assert!(!log.contains("STRANGER-SECRET"), "{log}");
    assert!(tg.sent(999).is_empty(), "no answer to a stranger");
    assert_eq!(
        fake.request_count(),
        1,
        "the stranger's text reached no model"
    );
    assert!(!fake.requests()[0].raw_body.contains("STRANGER"));
    let state = std::fs::read_to_string(d.home.state_dir().join("telegram.json")).unwrap();
    assert!(
        !state.contains("STRANGER") && !state.contains("999"),
        "{state}"
    );
}

/// The question with buttons sent to `chat`: (message id, approve data, deny data).
fn question(tg: &FakeTelegram, chat: i64) -> (i64, String, String) {
    tg.wait("a question with buttons", |calls| {
        calls.iter().find_map(|c: &Call| {
            if c.method != "sendMessage" || c.status != 200 || c.body["chat_id"] != json!(chat) {
                return None;
            }
            let row = &c.body["reply_markup"]["inline_keyboard"][0];
            Some((
                c.result["message_id"].as_i64()?,
                row[0]["callback_data"].as_str()?.to_string(),
                row[1]["callback_data"].as_str()?.to_string(),
            ))
        })
    })
}

#[test]
fn a_tool_is_approved_with_a_button() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::start();
    fake.push(Reply::tool_call(
        "write_file",
        json!({"path": "notes.md", "content": "approved text"}),
    ));
    fake.push(Reply::text("Written."));
    let d = Daemon::start_in(home(&fake, Some(&tg), "", ""));

    tg.message(USER, "write a note");
    let (message_id, approve, deny) = question(&tg, USER);
    assert!(approve.starts_with("approve:apr_") && deny.starts_with("deny:apr_"));
    let asked = tg.sent(USER);
    assert!(
        asked[0].text().contains("write_file"),
        "{}",
        asked[0].text()
    );

    tg.press(USER, message_id, &approve);
    let sent = tg.wait_sent(USER, 2);
    assert_eq!(sent[1].text(), "Written.");
    let answers = tg.calls("answerCallbackQuery");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].body["text"], "Approved");
    // The question shows the decision (edited right after the press is answered).
    tg.wait("the question edited", |calls| {
        calls
            .iter()
            .any(|c| {
                c.method == "editMessageText"
                    && c.body["message_id"] == json!(message_id)
                    && c.text().contains("Approved")
            })
            .then_some(())
    });
    let written = std::fs::read_to_string(d.home.workspace().join("notes.md")).unwrap();
    assert_eq!(written, "approved text");
}

#[test]
fn an_unanswered_question_times_out_and_the_tool_is_denied() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::start();
    fake.push(Reply::tool_call("bash", json!({"command": "echo hi"})));
    fake.push(Reply::text("I could not run it."));
    let d = Daemon::start_in(home(
        &fake,
        Some(&tg),
        "",
        "[tools]\napproval_timeout = \"1s\"",
    ));
    tg.message(USER, "run something");
    let (message_id, _, _) = question(&tg, USER);
    let sent = tg.wait_sent(USER, 2);
    assert_eq!(sent[1].text(), "I could not run it.");
    let result = fake.requests()[1].body.to_string();
    assert!(
        result.contains("approval_timeout"),
        "the model is told: {result}"
    );
    tg.wait("the question marked as timed out", |calls| {
        calls
            .iter()
            .any(|c| {
                c.method == "editMessageText"
                    && c.body["message_id"] == json!(message_id)
                    && c.text().contains("No answer in time")
            })
            .then_some(())
    });
    drop(d);
}

#[test]
fn new_starts_a_fresh_session_and_help_says_what_works() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::start();
    fake.push(Reply::text("One."));
    fake.push(Reply::text("Two."));
    let d = Daemon::start_in(home(&fake, Some(&tg), "", ""));

    tg.message(USER, "remember the word aardvark");
    tg.wait_sent(USER, 1);
    tg.message(USER, "/new");
    assert!(tg.wait_sent(USER, 2)[1].text().contains("New conversation"));
    tg.message(USER, "which word?");
    assert_eq!(tg.wait_sent(USER, 3)[2].text(), "Two.");
    assert!(
        !fake.requests()[1].raw_body.contains("aardvark"),
        "the new session has no history"
    );
    let (_, sessions) = d.get("/api/sessions");
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 2);

    tg.message(USER, "/help@test_bot");
    let help = tg.wait_sent(USER, 4)[3].text().to_string();
    assert!(help.contains("/new") && help.contains("/help"), "{help}");
    assert_eq!(fake.request_count(), 2, "commands call no model");
}

#[test]
fn a_long_answer_is_split_on_line_boundaries() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::start();
    let long: String = (0..300)
        .map(|i| format!("line {i:03}: {}", "x".repeat(60)))
        .collect::<Vec<_>>()
        .join("\n");
    fake.push(Reply::text(&long));
    let _d = Daemon::start_in(home(&fake, Some(&tg), "", ""));
    tg.message(USER, "tell me everything");
    let pieces = tg.wait("the whole answer", |calls| {
        let texts: Vec<String> = calls
            .iter()
            .filter(|c| c.method == "sendMessage" && c.status == 200)
            .map(|c| c.text().to_string())
            .collect();
        (texts.join("\n") == long).then_some(texts)
    });
    assert!(pieces.len() >= 6, "{} pieces", pieces.len());
    for p in &pieces {
        assert!(p.encode_utf16().count() <= 4096);
        assert!(
            p.lines().all(|l| l.starts_with("line ") && l.len() == 70),
            "whole lines"
        );
    }
}

#[test]
fn rate_limits_are_waited_out_and_an_outage_is_logged_once() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::start();
    tg.fail_next("getUpdates", 502, None);
    tg.fail_next("getUpdates", 502, None);
    tg.fail_next("sendMessage", 429, Some(2));
    fake.push(Reply::text("Patient answer."));
    let d = Daemon::start_in(home(&fake, Some(&tg), "", ""));

    tg.message(USER, "hello");
    assert_eq!(tg.wait_sent(USER, 1)[0].text(), "Patient answer.");
    let sends = tg.calls("sendMessage");
    assert_eq!(sends[0].status, 429);
    assert_eq!(sends[1].status, 200);
    assert!(
        sends[1].at.duration_since(sends[0].at) >= Duration::from_secs(2),
        "retry_after was not waited out"
    );
    assert_eq!(tg.sent(USER).len(), 1, "sent once");

    let log = d.wait_log("telegram: reachable again");
    assert_eq!(
        log.matches("Telegram is unreachable").count(),
        1,
        "one line per outage: {log}"
    );
    eventually(WAIT, "polling again", || {
        (status(&d)["telegram"]["state"] == "polling").then_some(())
    });
}

#[test]
fn a_refused_token_stops_the_bridge_with_one_clear_line_and_fails_doctor() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::with_token("999:SOME-OTHER-TOKEN");
    let d = Daemon::start_in(home(&fake, Some(&tg), "", ""));

    let log = d.wait_log("the Telegram bridge stopped");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("telegram:")).collect();
    let refused: Vec<&&str> = lines.iter().filter(|l| l.contains("refused")).collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(
        refused[0].contains("telegram.bot_token"),
        "names the setting: {log}"
    );
    assert!(
        tg.calls("getUpdates").is_empty(),
        "no polling with a refused token"
    );
    let s = status(&d);
    assert_eq!(s["telegram"]["state"], "failing", "{s}");
    assert!(
        s["telegram"]["reason"]
            .as_str()
            .unwrap()
            .contains("refused")
    );

    let (code, out, err) = d.home.run(&["doctor"]);
    assert_eq!(code.code(), Some(1), "{out}{err}");
    let doctor_line = out
        .lines()
        .find(|l| l.contains("telegram"))
        .unwrap_or_else(|| panic!("no telegram check: {out}"));
    assert!(
        doctor_line.contains("FAIL") && doctor_line.contains("refused"),
        "{out}"
    );
    for text in [&log, &out, &err, &s.to_string()] {
        assert!(!text.contains("TEST-SECRET"), "{text}");
    }
}

#[test]
fn a_restart_neither_loses_nor_repeats_a_message() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::start();
    fake.push(Reply::text("First answer."));
    let mut d = Daemon::start_in(home(&fake, Some(&tg), "", ""));
    let first = tg.message(USER, "first");
    assert_eq!(tg.wait_sent(USER, 1)[0].text(), "First answer.");
    assert!(d.stop().success());
    let polls_before = tg.calls("getUpdates").len();

    // Written while the daemon is down.
    let second = tg.message(USER, "second");
    fake.push(Reply::text("Second answer."));
    let d = Daemon::start_in(d.into_home());
    let sent = tg.wait_sent(USER, 2);
    assert_eq!(sent[1].text(), "Second answer.");
    tg.wait_taken(second);
    let polls = tg.calls("getUpdates");
    assert_eq!(
        polls[polls_before].body["offset"],
        json!(first + 1),
        "the restarted bridge resumes after the last message it took"
    );
    assert_eq!(tg.sent(USER).len(), 2, "nothing answered twice");
    assert_eq!(fake.request_count(), 2);
    assert!(last_user_message(&fake, 1).contains("second"));
    drop(d);
}

#[test]
fn a_message_cut_short_by_a_crash_is_neither_lost_silently_nor_repeated() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::start();
    fake.push(Reply::text("too late").delay(Duration::from_secs(60)));
    let mut d = Daemon::start_in(home(&fake, Some(&tg), "", ""));
    tg.message(USER, "a slow question");
    eventually(WAIT, "the turn reaches the model", || {
        (fake.request_count() == 1).then_some(())
    });
    d.kill();

    let d = Daemon::start_in(d.into_home());
    let sent = tg.wait_sent(USER, 1);
    assert!(
        sent[0].text().contains("restarted before I could answer"),
        "{}",
        sent[0].text()
    );
    tg.wait("a poll after the restart", |calls| {
        (calls.iter().filter(|c| c.method == "getUpdates").count() >= 2).then_some(())
    });
    assert_eq!(fake.request_count(), 1, "the message is not run again");
    drop(d);
}

/// A webhook receiver that answers 500 to its first `failures` POSTs, then 200.
struct Receiver {
    server: HttpServer,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    fn start(failures: usize) -> Receiver {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = HttpServer::start(move |req| {
            let mut seen = log.lock().unwrap();
            seen.push((req.path.clone(), req.body.clone()));
            if seen.len() <= failures {
                (500, "{\"error\":\"not yet\"}".into())
            } else {
                (200, "{}".into())
            }
        });
        Receiver { server, seen }
    }

    fn wait_for(&self, n: usize) -> Vec<(String, String)> {
        eventually(WAIT, &format!("{n} webhook POSTs"), || {
            let seen = self.seen.lock().unwrap().clone();
            (seen.len() >= n).then_some(seen)
        })
    }
}

#[test]
fn a_heartbeat_alert_reaches_the_feed_a_webhook_and_telegram() {
    let fake = FakeProvider::start();
    let tg = FakeTelegram::start();
    let hook = Receiver::start(2);
    let reply = "Water the plants now.\nAnd call mum about Sunday.";
    fake.push(Reply::text(reply));
    let extra = format!(
        "[sessions]\nkeepalive = \"1s\"\n\
         [events]\nmax_listeners = 2\n\
         [notify]\nwebhooks = [\"{}/api/webhook/secret-hook-id?tpl=1&m={{{{.text}}}}\"]\n\
         retry_backoff = \"200ms\"\n",
        hook.server.url()
    );
    let home = home(&fake, Some(&tg), "", &extra);
    std::fs::create_dir_all(home.workspace()).unwrap();
    std::fs::write(
        home.workspace().join("HEARTBEAT.md"),
        "# Tasks\n\n- [ ] remind me of the plants\n",
    )
    .unwrap();
    let d = Daemon::start_in(home);

    let mut feed = Sse::get(d.addr, "/api/events", &[]);
    assert_eq!(feed.status, 200, "{}", feed.body);
    assert!(
        feed.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (code, run) = d.post("/api/heartbeat/run", "");
    assert_eq!(
        (code, run["status"].as_str()),
        (200, Some("alert")),
        "{run}"
    );

    // The feed: the whole reply, with an id and the run's time.
    let event = feed.next().expect("an event");
    assert_eq!(event.kind(), "heartbeat");
    assert_eq!(event.data["status"], "alert");
    assert_eq!(event.data["text"], reply);
    assert_eq!(event.data["trigger"], "api");
    let time = event.data["time"].as_str().unwrap().to_string();
    assert_eq!(time, run["time"].as_str().unwrap());
    let id = event.id.expect("an id");

    // Keepalives while nothing happens.
    let keepalive = feed.next_raw().expect("a keepalive");
    assert!(keepalive.comment, "{:?}", keepalive.data);

    // The webhook: two failures, then delivered; one line when it failed, one when it
    // worked again, and never the secret part of the URL.
    let posts = hook.wait_for(3);
    // The query (an ntfy template, say) goes as written.
    assert!(
        posts
            .iter()
            .all(|(path, _)| path == "/api/webhook/secret-hook-id?tpl=1&m={{.text}}"),
        "{posts:?}"
    );
    let body: Value = serde_json::from_str(&posts[2].1).unwrap();
    assert_eq!(
        body,
        json!({"event": "heartbeat_alert", "text": reply, "time": time})
    );
    let log = d.wait_log("delivering again");
    assert_eq!(log.matches("HTTP 500").count(), 1, "{log}");
    assert!(!log.contains("secret-hook-id"), "{log}");
    eventually(WAIT, "the delivery counted", || {
        (status(&d)["notify"]["delivered"] == 1).then_some(())
    });
    let s = status(&d);
    assert_eq!(
        s["notify"],
        json!({"webhooks": 1, "failing": 0, "delivered": 1, "dropped": 0})
    );

    // Telegram: the alert goes to the first allowed user.
    let sent = tg.wait_sent(USER, 1);
    assert!(sent[0].text().starts_with("Heartbeat alert"));
    assert!(sent[0].text().contains("And call mum about Sunday."));

    // Resuming replays what was missed; the listener limit holds.
    let last = (id - 1).to_string();
    let mut resumed = Sse::get(d.addr, "/api/events", &[("Last-Event-ID", &last)]);
    let again = resumed.next().expect("the replayed event");
    assert_eq!((again.id, &again.data), (Some(id), &event.data));
    let full = Sse::get(d.addr, "/api/events?last_event_id=1", &[]);
    assert_eq!(full.status, 503, "{}", full.body);
    assert!(full.header("retry-after").is_some());
    assert!(full.body.contains("events.max_listeners"), "{}", full.body);
    assert_eq!(status(&d)["events"]["listeners"], 2);

    // A listener that leaves frees its place (found out at the next keepalive).
    drop(resumed);
    drop(feed);
    eventually(WAIT, "the places freed", || {
        (status(&d)["events"]["listeners"] == 0).then_some(())
    });
    let mut ancient = Sse::get(d.addr, "/api/events?last_event_id=1", &[]);
    let notice = ancient.next_raw().expect("a notice");
    assert!(notice.comment, "{:?}", notice.data);
    assert!(notice.data.as_str().unwrap().contains("no longer kept"));
    assert_eq!(ancient.next().expect("the kept event").id, Some(id));
}

#[test]
fn the_feed_refuses_a_bad_resume_point() {
    let fake = FakeProvider::start();
    let d = Daemon::start_in(home(&fake, None, "", ""));
    let bad = Sse::get(d.addr, "/api/events", &[("Last-Event-ID", "yesterday")]);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("Last-Event-ID"));
    assert_eq!(status(&d)["telegram"], json!({"state": "off"}));
}

/// Regression: the feed's connection, handed over by its worker, counted as idle for the
/// connection deadlines, so the watchdog cut every feed after `server.idle_timeout`.
#[test]
fn r_a_feed_outlives_the_idle_timeout() {
    let fake = FakeProvider::start();
    fake.push(Reply::text("Still here?"));
    let home = home(
        &fake,
        None,
        "",
        "[sessions]\nkeepalive = \"1s\"\n[events]\nbacklog = 10",
    );
    let config = std::fs::read_to_string(home.config_path()).unwrap();
    std::fs::write(
        home.config_path(),
        config.replacen("[server]\n", "[server]\nidle_timeout = \"1s\"\n", 1),
    )
    .unwrap();
    std::fs::create_dir_all(home.workspace()).unwrap();
    std::fs::write(home.workspace().join("HEARTBEAT.md"), "- [ ] check\n").unwrap();
    let d = Daemon::start_in(home);
    let mut feed = Sse::get(d.addr, "/api/events", &[]);
    assert_eq!(feed.status, 200);
    // Three keepalives, a second apart at least: well past the idle timeout.
    for _ in 0..3 {
        let k = feed.next_raw().expect("the feed is still open");
        assert!(k.comment);
    }
    let (code, _) = d.post("/api/heartbeat/run", "");
    assert_eq!(code, 200);
    let event = feed.next().expect("the feed is still open");
    assert_eq!(event.data["text"], "Still here?");
}
