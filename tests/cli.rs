//! The terminal front ends: `localgpt ask` with and without a daemon, and `localgpt chat`.

mod support;

use std::io::Write;
use std::process::Stdio;

use serde_json::json;
use support::fake_provider::{FakeProvider, Reply};
use support::{Daemon, Home};

fn home_with(fake: &FakeProvider) -> Home {
    let home = Home::new("cli");
    home.write_config(&format!(
        "[heartbeat]\nenabled = false\n{}",
        fake.providers_toml("5s")
    ));
    home
}

#[test]
fn ask_runs_in_process_without_a_daemon() {
    let fake = FakeProvider::start();
    let home = home_with(&fake);
    fake.push(Reply::text("Paris.").usage(9, 2));
    let (status, out, err) = home.run(&["ask", "Capital of France?", "-m", "openai/gpt-test"]);
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), "Paris.");

    fake.push(Reply::text("Still Paris."));
    let (status, out, err) = home.run(&["ask", "Again?", "--model", "anthropic/c", "--json"]);
    assert!(status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["response"], "Still Paris.");
    assert_eq!(v["model"], "anthropic/c");

    let (status, _, err) = home.run(&["ask", "x", "-m", "nope/x"]);
    assert!(!status.success());
    assert!(err.contains("known providers"), "{err}");
}

#[test]
fn ask_goes_through_a_running_daemon() {
    let fake = FakeProvider::start();
    let d = Daemon::start_in(home_with(&fake));
    fake.push(Reply::text("via the daemon"));
    let (status, out, err) = d.home.run(&["ask", "hello", "-m", "ollama/llama"]);
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), "via the daemon");
    d.wait_log("POST /api/chat 200");
}

#[test]
fn interactive_chat_streams_and_asks_for_approval() {
    let fake = FakeProvider::start();
    let d = Daemon::start_in(home_with(&fake));
    let marker = d.home.root().join("approved-by-user");
    fake.push(Reply::text("").pieces(["Hello ", "there!"]));
    fake.push(Reply::tool_call(
        "bash",
        json!({"command": format!("touch {}", marker.display())}),
    ));
    fake.push(Reply::text("Done."));
    let mut child = d
        .home
        .command()
        .args(["chat", "-m", "openai/gpt-test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"hi\nplease touch the file\ny\n/session\n/quit\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Hello there!"), "{stdout}");
    assert!(stdout.contains("Allow tool bash"), "{stdout}");
    assert!(stdout.contains("Done."), "{stdout}");
    assert!(marker.exists(), "the approved tool ran");
    let (_, sessions) = d.get("/api/sessions");
    let id = sessions["sessions"][0]["session_id"].as_str().unwrap();
    assert!(stdout.contains(id), "/session prints the id");
}

#[test]
fn chat_needs_a_running_daemon() {
    let home = Home::new("chat-nodaemon");
    home.write_config("");
    let (status, _, err) = home.run(&["chat"]);
    assert!(!status.success());
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn doctor_reports_what_to_fix() {
    let fake = FakeProvider::start();
    let d = Daemon::start_in(home_with(&fake));
    // Default model claude-cli/opus with a command that does not exist.
    std::fs::write(
        d.home.config_path(),
        format!(
            "[heartbeat]\nenabled = false\n[providers.claude_cli]\ncommand = \"/nonexistent/claude\"\n{}",
            fake.providers_toml("5s")
        ),
    )
    .unwrap();
    let (status, out, _) = d.home.run(&["doctor"]);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL") && out.contains("/nonexistent/claude"),
        "{out}"
    );
    assert!(
        out.contains("answers on http://"),
        "sees the running daemon: {out}"
    );
    assert!(
        out.contains("workspace") && out.contains("is writable"),
        "{out}"
    );

    std::fs::write(
        d.home.config_path(),
        format!(
            "[heartbeat]\nenabled = false\n[agent]\ndefault_model = \"ollama/llama\"\n{}",
            fake.providers_toml("5s")
        ),
    )
    .unwrap();
    let (status, out, _) = d.home.run(&["doctor"]);
    assert!(status.success(), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}
