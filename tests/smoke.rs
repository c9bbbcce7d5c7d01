//! `scripts/smoke.sh`, the curl walkthrough users run against a live daemon, run here
//! against a daemon whose provider is the scripted fake (so `cargo test` and `.ci/run`
//! run it). It needs `bash` and `curl`.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::Daemon;
use support::fake_provider::{FakeProvider, Reply, refused_url};

fn smoke(url: &str, token: Option<&str>) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/smoke.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script).arg(url).env_remove("LOCALGPT_TOKEN");
    if let Some(t) = token {
        cmd.env("LOCALGPT_TOKEN", t);
    }
    let out = cmd.output().expect("run bash scripts/smoke.sh");
    assert_ne!(
        out.status.code(),
        Some(2),
        "the smoke test needs curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn daemon(openai_url: &str, server: &str) -> Daemon {
    let home = support::Home::new("smoke");
    home.write_config(&format!(
        "[server]\nport = 0\n{server}\n[heartbeat]\nenabled = false\n\
         [agent]\ndefault_model = \"openai/gpt-test\"\n\
         [providers.openai]\napi_key = \"sk-test\"\nbase_url = \"{openai_url}\"\n"
    ));
    Daemon::start_in(home)
}

#[test]
fn smoke_script_passes_against_a_working_daemon() {
    let fake = FakeProvider::start();
    fake.push(Reply::text("Hello there, nice to meet.").pieces([
        "Hello ",
        "there, ",
        "nice to meet.",
    ]));
    let d = daemon(&fake.openai_url(), "auth_token = \"smoke-token\"");
    let out = smoke(&d.url(""), Some("smoke-token"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("smoke: all 12 steps passed"), "{stdout}");
    assert!(stdout.contains("3 content events"), "{stdout}");
    assert_eq!(fake.request_count(), 1, "one model call");
}

#[test]
fn smoke_script_stops_at_the_first_wrong_answer() {
    // The provider refuses connections: the chat step gets an error event.
    let d = daemon(&refused_url(), "");
    let out = smoke(&d.url(""), None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("FAIL  chat stream: an error event"),
        "{stderr}"
    );
    assert!(
        stdout.contains("ok  8  GET /api/sessions lists it"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("DELETE"),
        "stops at the first failure: {stdout}"
    );

    // A wrong token fails at the first authenticated step.
    let d = daemon(&refused_url(), "auth_token = \"right\"");
    let out = smoke(&d.url(""), Some("wrong"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("GET /api/status: status 401"), "{stderr}");
}
