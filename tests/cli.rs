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
    // In the workspace: the bash sandbox refuses writes elsewhere.
    let marker = d.home.workspace().join("approved-by-user");
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
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("holds a key or token") && out.contains("fix: chmod 600"),
        "a world-readable config with a key is a finding: {out}"
    );
    set_mode(&d.home.config_path(), 0o600);
    let (status, out, _) = d.home.run(&["doctor"]);
    assert!(status.success(), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        out.contains("sessions db") && out.contains("is sound"),
        "{out}"
    );
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn doctor_json(home: &Home) -> (Option<i32>, serde_json::Value) {
    let (status, out, err) = home.run(&["doctor", "--json"]);
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    (status.code(), report)
}

fn find<'a>(report: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no {check} check in {report}"))
}

#[test]
fn doctor_finds_damage_without_a_daemon() {
    let fake = FakeProvider::start();
    let home = Home::new("doctor");
    home.write_config(&format!(
        "[heartbeat]\nenabled = false\n[agent]\ndefault_model = \"ollama/llama\"\n{}",
        fake.providers_toml("5s")
    ));
    set_mode(&home.config_path(), 0o600);
    // A daemon run creates the directories and both databases, then stops.
    let mut d = Daemon::start_in(home);
    assert!(d.stop().success());
    let home = d.into_home();

    let (code, report) = doctor_json(&home);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(find(&report, "index db")["status"], "ok", "{report:#}");
    assert_eq!(find(&report, "port")["status"], "ok", "{report:#}");

    // A damaged index, a stale pid file, a taken port and an open state dir.
    std::fs::write(
        home.cache_dir().join("memory-index.sqlite"),
        vec![0x42u8; 16384],
    )
    .unwrap();
    std::fs::create_dir_all(home.pid_file().parent().unwrap()).unwrap();
    std::fs::write(home.pid_file(), "999999\n127.0.0.1:1\n").unwrap();
    set_mode(&home.state_dir(), 0o755);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, report) = {
        let mut cmd = home.command();
        cmd.args(["doctor", "--json"])
            .env("LOCALGPT_PORT", port.to_string());
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (
            out.status.code(),
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        )
    };
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    let index = find(&report, "index db");
    assert_eq!(index["status"], "fail", "{report:#}");
    assert!(index["fix"].as_str().unwrap().contains("reindex --force"));
    assert_eq!(
        find(&report, "daemon")["status"],
        "warn",
        "stale pid: {report:#}"
    );
    let port_check = find(&report, "port");
    assert_eq!(port_check["status"], "fail", "{report:#}");
    assert!(
        port_check["detail"]
            .as_str()
            .unwrap()
            .contains(&port.to_string())
    );
    let state = find(&report, "state dir");
    assert_eq!(state["status"], "fail", "{report:#}");
    assert!(state["fix"].as_str().unwrap().starts_with("chmod 700"));
    drop(taken);

    // A config that does not load is a failed check, and the rest still runs.
    std::fs::write(home.config_path(), "[server]\nport = \"many\"\n").unwrap();
    let (code, report) = doctor_json(&home);
    assert_eq!(code, Some(1));
    let config = find(&report, "config");
    assert_eq!(config["status"], "fail");
    assert!(
        config["detail"].as_str().unwrap().contains("port"),
        "{report:#}"
    );
    assert!(report["checks"].as_array().unwrap().len() > 5);
}
