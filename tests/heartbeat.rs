//! The heartbeat end to end: the real daemon with a 1s timer (or runs by hand), the fake
//! provider server, HEARTBEAT.md and the daily log on disk, the state file across restarts.
//!
//! Nothing here asserts how long something took; waits are bounded polls.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use support::fake_provider::{FakeProvider, Fault, Gate, Reply};
use support::{Daemon, Home, eventually};

const TASKS: &str = "# Heartbeat\n\n- [ ] water the plants\n- [x] call mum\n";

/// Generous: ticks are 1s apart but the machine may be busy with other tests.
const WAIT: Duration = Duration::from_secs(30);

/// A home whose config points every provider at `fake`, with `heartbeat` as the
/// `[heartbeat]` section's keys, and `tasks` (if any) as HEARTBEAT.md.
fn home(fake: &FakeProvider, heartbeat: &str, tasks: Option<&str>) -> Home {
    let home = Home::new("heartbeat");
    home.write_config(&format!(
        "[heartbeat]\nmodel = \"openai/gpt-test\"\n{heartbeat}\n{}",
        fake.providers_toml("5s")
    ));
    if let Some(text) = tasks {
        fs::create_dir_all(home.workspace()).unwrap();
        fs::write(home.workspace().join("HEARTBEAT.md"), text).unwrap();
    }
    home
}

fn heartbeat(d: &Daemon) -> Value {
    let (status, v) = d.get("/api/heartbeat");
    assert_eq!(status, 200, "{v}");
    v
}

/// Recorded runs, newest first.
fn runs(d: &Daemon) -> Vec<Value> {
    heartbeat(d)["runs"].as_array().unwrap().clone()
}

fn model_runs(d: &Daemon) -> usize {
    runs(d)
        .iter()
        .filter(|r| r["model_called"] == json!(true))
        .count()
}

fn time(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// Every line of the workspace's daily logs.
fn daily_logs(home: &Home) -> String {
    let mut all = String::new();
    if let Ok(entries) = fs::read_dir(home.workspace().join("memory")) {
        for e in entries.flatten() {
            all.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    all
}

fn run_now(d: &Daemon) -> Value {
    let (status, v) = d.post("/api/heartbeat/run", "");
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn an_empty_task_list_makes_no_model_call_over_many_ticks() {
    let fake = FakeProvider::start();
    // No HEARTBEAT.md written: the daemon creates its starter file (a heading, a comment).
    let d = Daemon::start_in(home(&fake, "interval = \"1s\"", None));
    let seen = eventually(WAIT, "three ticks", || {
        let r = runs(&d);
        (r.len() >= 3).then_some(r)
    });
    for run in &seen {
        assert_eq!(run["status"], "skipped", "{run}");
        assert_eq!(run["model_called"], false);
        assert_eq!(run["trigger"], "timer");
        assert!(
            run["reason"].as_str().unwrap().contains("no open tasks"),
            "{run}"
        );
    }
    assert_eq!(fake.request_count(), 0, "idle must cost nothing");

    let (_, status) = d.get("/api/status");
    let hb = &status["heartbeat"];
    assert_eq!(hb["enabled"], true);
    assert!(time(&hb["next_run"]) > time(&hb["last_run"]), "{hb}");
    assert!(hb["last_run"].as_str().unwrap().ends_with('Z'));

    let state = d.home.state_dir().join("heartbeat.json");
    let mode = fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_task_makes_exactly_one_request_per_tick_and_ok_is_silent() {
    let fake = FakeProvider::start();
    for _ in 0..200 {
        fake.push(Reply::text("HEARTBEAT_OK"));
    }
    let d = Daemon::start_in(home(&fake, "interval = \"1s\"", Some(TASKS)));
    eventually(WAIT, "three runs with a model call", || {
        (model_runs(&d) >= 3).then_some(())
    });
    // A tick may be in flight between two readings; wait for a quiet moment.
    eventually(WAIT, "one request per run", || {
        let before = model_runs(&d);
        let requests = fake.request_count();
        let after = model_runs(&d);
        (before == after && requests == after).then_some(())
    });
    for run in runs(&d).iter().filter(|r| r["model_called"] == true) {
        assert_eq!(run["status"], "ok", "{run}");
        assert_eq!(run["preview"], "HEARTBEAT_OK");
        assert_eq!(run["model"], "openai/gpt-test");
    }
    // The task list travels in the message: no tool round trip was needed to read it.
    for request in fake.requests() {
        let body = request.body.to_string();
        assert!(body.contains("water the plants"), "{body}");
        assert!(body.contains("HEARTBEAT_OK"), "{body}");
    }
    assert!(
        !daily_logs(&d.home).contains("Heartbeat"),
        "an ok reply is silent"
    );
}

#[test]
fn an_alert_lands_in_the_daily_log_and_the_status() {
    let fake = FakeProvider::start();
    let d = Daemon::start_in(home(
        &fake,
        "enabled = false\ntimezone = \"UTC\"",
        Some(TASKS),
    ));
    fake.push(Reply::text("Nothing is due yet. HEARTBEAT_OK"));
    let ok = run_now(&d);
    assert_eq!(ok["status"], "ok", "{ok}");
    assert_eq!(ok["trigger"], "api");
    assert_eq!(ok["model_called"], true);
    assert!(!daily_logs(&d.home).contains("Heartbeat"));

    fake.push(Reply::text(
        "Reminder: the plants need water today.\nAlso buy quokkasoil.",
    ));
    let alert = run_now(&d);
    assert_eq!(alert["status"], "alert", "{alert}");
    assert!(
        alert["preview"]
            .as_str()
            .unwrap()
            .contains("the plants need water")
    );
    let logs = daily_logs(&d.home);
    let line = logs
        .lines()
        .find(|l| l.contains("Heartbeat: Reminder: the plants need water today."))
        .unwrap_or_else(|| panic!("alert not in the daily log:\n{logs}"));
    // "- HH:MM Heartbeat: ..."
    let stamp = &line[2..7];
    assert!(
        line.starts_with("- ") && stamp.as_bytes()[2] == b':',
        "{line}"
    );
    assert!(logs.contains("\n  Also buy quokkasoil.\n"), "{logs}");

    let hb = heartbeat(&d);
    assert_eq!(hb["last_alert"]["status"], "alert");
    assert_eq!(hb["runs"][0]["status"], "alert");
    assert_eq!(hb["runs"][1]["status"], "ok");
    assert_eq!(hb["enabled"], false);
    assert_eq!(hb["next_run"], Value::Null);
    assert_eq!(hb["timezone"], "UTC");
    // The alert is in memory at once (indexed as it was written).
    let (_, found) = d.get("/api/memory/search?q=quokkasoil");
    assert_eq!(found["total"], 1, "{found}");
}

#[test]
fn outside_active_hours_ticks_are_skipped() {
    let fake = FakeProvider::start();
    // A window that starts two hours from now and lasts one: now is outside it for the
    // whole test, whatever the time of day.
    let hour = Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .hour();
    let window = format!(
        "active_hours = {{ start = \"{:02}:00\", end = \"{:02}:00\" }}",
        (hour + 2) % 24,
        (hour + 3) % 24
    );
    let d = Daemon::start_in(home(
        &fake,
        &format!("interval = \"1s\"\ntimezone = \"UTC\"\n{window}"),
        Some(TASKS),
    ));
    let seen = eventually(WAIT, "two ticks", || {
        let r = runs(&d);
        (r.len() >= 2).then_some(r)
    });
    for run in &seen {
        assert_eq!(run["status"], "skipped", "{run}");
        assert!(
            run["reason"]
                .as_str()
                .unwrap()
                .contains("outside active hours"),
            "{run}"
        );
    }
    assert_eq!(fake.request_count(), 0);
    let hb = heartbeat(&d);
    assert_eq!(
        hb["active_hours"]["start"],
        format!("{:02}:00", (hour + 2) % 24)
    );
}

#[test]
fn a_provider_failure_is_recorded_and_the_next_tick_still_runs() {
    let fake = FakeProvider::start();
    fake.push(Reply::fault(Fault::Status(
        500,
        "model overloaded, try later".into(),
    )));
    for _ in 0..200 {
        fake.push(Reply::text("HEARTBEAT_OK"));
    }
    let d = Daemon::start_in(home(&fake, "interval = \"1s\"", Some(TASKS)));
    let seen = eventually(WAIT, "a failure followed by an ok run", || {
        let r = runs(&d);
        let failed = r.iter().position(|x| x["status"] == "failed")?;
        let ok = r.iter().position(|x| x["status"] == "ok")?;
        // Newest first: the ok run came after the failure.
        (ok < failed).then_some(r)
    });
    let failed = seen.iter().find(|r| r["status"] == "failed").unwrap();
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("openai") && reason.contains("model overloaded"),
        "{reason}"
    );
    assert_eq!(failed["model_called"], true);
    assert_eq!(d.get("/health").0, 200);
}

#[test]
fn a_restart_keeps_the_last_run_and_schedules_sanely() {
    let fake = FakeProvider::start();
    fake.push(Reply::text("HEARTBEAT_OK"));
    let d = Daemon::start_in(home(&fake, "interval = \"1h\"", Some(TASKS)));
    let first = run_now(&d);
    let (_, status) = d.get("/api/status");
    let last = status["heartbeat"]["last_run"].clone();
    assert_eq!(last, first["time"]);
    // An hour after the last run (the API shows whole seconds).
    let next = time(&status["heartbeat"]["next_run"]);
    let gap = next.duration_since(time(&last)).as_secs();
    assert!((3599..=3601).contains(&gap), "{status}");

    // Restart with a short interval: the last run is now overdue.
    let home = d.into_home();
    let config = fs::read_to_string(home.config_path()).unwrap();
    fs::write(
        home.config_path(),
        config.replace("interval = \"1h\"", "interval = \"1s\""),
    )
    .unwrap();
    for _ in 0..20 {
        fake.push(Reply::text("HEARTBEAT_OK"));
    }
    let restarted = Timestamp::now();
    let d = Daemon::start_in(home);
    let hb = heartbeat(&d);
    assert_eq!(hb["last_run"], last, "last_run survives the restart");
    assert_eq!(hb["runs"][0], first);
    let next = time(&hb["next_run"]);
    assert!(next > time(&last), "{hb}");
    // Overdue runs wait OVERDUE_DELAY (5s) after start rather than run at once.
    assert!(
        next.duration_since(restarted).as_secs() >= 4,
        "an overdue run is not immediate: {hb} (restarted at {restarted})"
    );
    let after = eventually(WAIT, "the overdue run", || {
        let r = runs(&d);
        (r.len() >= 2).then_some(r)
    });
    assert!(
        time(&after[after.len() - 2]["time"])
            .duration_since(restarted)
            .as_secs()
            >= 4,
        "{after:?}"
    );
}

#[test]
fn running_one_while_one_runs_is_409() {
    let fake = FakeProvider::start();
    // Held in progress until the second run was refused, however long that takes.
    let gate = Gate::new();
    fake.push(
        Reply::text("")
            .pieces(["HEART", "BEAT", "_OK"])
            .hold_after(1, &gate),
    );
    let d = Daemon::start_in(home(&fake, "enabled = false", Some(TASKS)));
    std::thread::scope(|s| {
        let slow = s.spawn(|| d.post("/api/heartbeat/run", "{}"));
        eventually(WAIT, "the run to be in progress", || {
            (heartbeat(&d)["running"] == true).then_some(())
        });
        let (status, v) = d.post("/api/heartbeat/run", "");
        assert_eq!(status, 409, "{v}");
        assert_eq!(v["error"]["code"], "conflict");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("in progress"),
            "{v}"
        );
        gate.open();
        let (status, first) = slow.join().unwrap();
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["status"], "ok", "{first}");
    });
    assert_eq!(heartbeat(&d)["running"], false);
    assert_eq!(fake.request_count(), 1);
}

#[test]
fn a_turn_longer_than_the_timeout_fails() {
    let fake = FakeProvider::start();
    fake.push(
        Reply::text("")
            .pieces(["still ", "thinking ", "about ", "it ", "..."])
            .delay(Duration::from_millis(600)),
    );
    let d = Daemon::start_in(home(
        &fake,
        "enabled = false\ntimeout = \"1s\"",
        Some(TASKS),
    ));
    let run = run_now(&d);
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["reason"], "timed out after 1s (heartbeat.timeout)");
}

#[test]
fn heartbeat_tools_follow_their_own_policy() {
    let fake = FakeProvider::start();
    let d = Daemon::start_in(home(&fake, "enabled = false", Some(TASKS)));
    // In the workspace, where the bash sandbox would let it be written if it ran.
    let marker = d.home.workspace().join("bash-ran");
    fake.push(Reply::tool_call(
        "bash",
        json!({"command": format!("touch {}", marker.display())}),
    ));
    fake.push(Reply::tool_call(
        "edit_file",
        json!({"path": "HEARTBEAT.md", "old_text": "- [ ] water the plants",
               "new_text": "- [x] water the plants"}),
    ));
    fake.push(Reply::text("HEARTBEAT_OK"));
    let run = run_now(&d);
    assert_eq!(run["status"], "ok", "{run}");
    assert!(!marker.exists(), "bash is denied in a heartbeat by default");
    let bodies: Vec<String> = fake.requests().iter().map(|r| r.body.to_string()).collect();
    assert!(bodies[1].contains("denied"), "{}", bodies[1]);
    let tasks = fs::read_to_string(d.home.workspace().join("HEARTBEAT.md")).unwrap();
    assert!(tasks.contains("- [x] water the plants"), "{tasks}");
    // Every task is now done: the next run costs nothing.
    let next = run_now(&d);
    assert_eq!(next["status"], "skipped", "{next}");
    assert_eq!(fake.request_count(), 3);
}

#[test]
fn the_cli_runs_a_cycle_with_or_without_the_daemon() {
    let fake = FakeProvider::start();
    let home = home(&fake, "enabled = false", Some(TASKS));

    // No daemon: the run happens in the CLI process and is stored for the daemon to see.
    fake.push(Reply::text("HEARTBEAT_OK"));
    let (status, out, err) = home.run(&["daemon", "heartbeat", "--json"]);
    assert!(status.success(), "{out}{err}");
    let run: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(run["trigger"], "cli");

    // A failed run exits 1 and says why.
    fake.push(Reply::fault(Fault::Status(500, "model overloaded".into())));
    let (status, out, _) = home.run(&["daemon", "heartbeat"]);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("heartbeat: failed") && out.contains("model overloaded"),
        "{out}"
    );

    // With a daemon: the CLI asks it.
    let d = Daemon::start_in(home);
    fake.push(Reply::text("The plants need water."));
    let (status, out, err) = d.home.run(&["daemon", "heartbeat"]);
    assert!(status.success(), "{out}{err}");
    assert!(out.starts_with("heartbeat: alert"), "{out}");
    assert!(out.contains("The plants need water."), "{out}");
    let r = runs(&d);
    assert_eq!(r[0]["trigger"], "api");
    assert_eq!(r[1]["status"], "failed");
    assert_eq!(r[2]["trigger"], "cli");
}

#[test]
fn answers_match_the_openapi_schemas() {
    let fake = FakeProvider::start();
    fake.push(Reply::text("Water the plants."));
    let d = Daemon::start_in(home(&fake, "interval = \"1h\"", Some(TASKS)));
    let run = run_now(&d);
    let (_, doc) = d.get("/api/openapi.json");
    let schemas = &doc["components"]["schemas"];
    let required = |name: &str| -> Vec<String> {
        schemas[name]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    let hb = heartbeat(&d);
    for key in required("Heartbeat") {
        assert!(
            hb.get(&key).is_some(),
            "GET /api/heartbeat lacks {key}: {hb}"
        );
    }
    for record in [&run, &hb["runs"][0], &hb["last_alert"]] {
        for key in required("HeartbeatRun") {
            assert!(record.get(&key).is_some(), "a run lacks {key}: {record}");
        }
        let status = record["status"].as_str().unwrap();
        let allowed = &schemas["HeartbeatRun"]["properties"]["status"]["enum"];
        assert!(allowed.as_array().unwrap().contains(&json!(status)));
    }
    assert_eq!(hb["runs"].as_array().unwrap().len(), 1);
    assert!(hb["active_hours"].is_null());
    assert_eq!(hb["interval"], "1h");
}
