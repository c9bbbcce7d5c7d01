//! Heartbeat runs against a real agent (workspace and memory index in a temp dir), with a
//! clock the test moves. No model is reachable: the provider points at a closed port, so
//! any model call fails loudly. Nothing else of the daemon is built.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use super::schedule::{OVERDUE_DELAY, add};
use super::*;
use crate::agent::Agent;
use crate::config::{ActiveHours, Config};
use crate::memory::Memory;

/// A clock that reads `now` and then moves it on by `step` (zero: stands still).
struct TestClock {
    now: Mutex<Timestamp>,
    step: Duration,
}

impl TestClock {
    fn at(time: &str, step: Duration) -> Arc<TestClock> {
        Arc::new(TestClock {
            now: Mutex::new(time.parse().unwrap()),
            step,
        })
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        let mut now = self.now.lock().unwrap();
        let was = *now;
        *now = add(was, self.step);
        was
    }
}

struct Fixture {
    root: PathBuf,
    config: Config,
    workspace: PathBuf,
    agent: Agent,
    heartbeat: Heartbeat,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Fixture {
    /// A heartbeat that runs every 10 minutes in UTC, 08:00-22:00, on `clock`.
    fn new(tag: &str, clock: Arc<TestClock>) -> Fixture {
        let root = std::env::temp_dir().join(format!(
            "lgpt-hb-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut config = Config::default();
        config.heartbeat.interval = crate::config::Span::secs(600);
        config.heartbeat.timezone = "UTC".parse().unwrap();
        config.heartbeat.active_hours = Some(ActiveHours {
            start: "08:00".into(),
            end: "22:00".into(),
        });
        config.heartbeat.model = Some("openai/test-model".parse().unwrap());
        // Port 9 (discard) is closed on any sane test machine: a model call is refused.
        config.providers.openai.base_url = "http://127.0.0.1:9/v1".into();
        config.providers.openai.api_key = "sk-unused".into();
        let workspace = root.join("workspace");
        let memory = Memory::open(&config.memory, &workspace, &root.join("index.sqlite")).unwrap();
        // The agent reads its own clock (the time in the prompt): the test's clock counts
        // the heartbeat's readings only.
        let agent_clock = Arc::new(TestClock {
            now: Mutex::new(clock.now.lock().map(|t| *t).unwrap()),
            step: Duration::ZERO,
        });
        let agent = Agent::new(&config, Arc::new(memory), agent_clock).unwrap();
        let heartbeat = Heartbeat::open(
            &config.heartbeat,
            &config.agent.default_model,
            &root.join("heartbeat.json"),
            clock,
        );
        Fixture {
            root,
            config,
            workspace,
            agent,
            heartbeat,
        }
    }

    fn hb(&self) -> &Heartbeat {
        &self.heartbeat
    }

    fn state_path(&self) -> PathBuf {
        self.root.join("heartbeat.json")
    }

    fn write_tasks(&self, text: &str) {
        std::fs::write(self.workspace.join("HEARTBEAT.md"), text).unwrap();
    }

    /// Reopens the heartbeat as a restarted daemon would, on `clock`.
    fn restart(&mut self, clock: Arc<TestClock>) {
        self.heartbeat = Heartbeat::open(
            &self.config.heartbeat,
            &self.config.agent.default_model,
            &self.state_path(),
            clock,
        );
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_tick_outside_active_hours_is_skipped_without_a_model_call() {
    let f = Fixture::new(
        "night",
        TestClock::at("2026-02-14T23:30:00Z", Duration::ZERO),
    );
    f.write_tasks("- [ ] water the plants\n");
    f.hb().tick(&f.agent);
    let s = f.hb().snapshot();
    let run = s.last_run.unwrap();
    assert_eq!(run.status, RunStatus::Skipped);
    assert!(!run.model_called);
    assert!(
        run.reason.as_deref().unwrap().contains("08:00-22:00"),
        "{run:?}"
    );
    assert_eq!(run.time, ts("2026-02-14T23:30:00Z"));
    assert_eq!(s.next_run, Some(ts("2026-02-14T23:40:00Z")));
    // Persisted.
    let on_disk = state::State::load(&f.state_path());
    assert_eq!(on_disk.runs.len(), 1);
}

#[test]
fn the_starter_task_list_is_skipped_without_a_model_call() {
    let f = Fixture::new(
        "starter",
        TestClock::at("2026-02-14T10:00:00Z", Duration::ZERO),
    );
    let starter = std::fs::read_to_string(f.workspace.join("HEARTBEAT.md")).unwrap();
    assert!(
        !starter.trim().is_empty(),
        "the workspace has its starter file"
    );
    f.hb().tick(&f.agent);
    let run = f.hb().snapshot().last_run.unwrap();
    assert_eq!(run.status, RunStatus::Skipped);
    assert!(run.reason.unwrap().contains("no open tasks"));
    assert!(!run.model_called);
}

#[test]
fn a_run_by_hand_ignores_active_hours() {
    let f = Fixture::new(
        "manual",
        TestClock::at("2026-02-14T03:00:00Z", Duration::ZERO),
    );
    f.write_tasks("- [ ] water the plants\n");
    let run = f.hb().run_now(&f.agent, Trigger::Api).unwrap();
    // It got as far as the model, which is unreachable here.
    assert!(run.model_called, "{run:?}");
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.model.as_deref(), Some("openai/test-model"));
    let reason = run.reason.unwrap();
    assert!(reason.contains("openai"), "{reason}");
    assert_eq!(run.trigger, Trigger::Api);
}

#[test]
fn a_run_in_progress_refuses_another_and_the_timer_records_a_skip() {
    let f = Fixture::new(
        "busy",
        TestClock::at("2026-02-14T10:00:00Z", Duration::ZERO),
    );
    let (_, guard) = f.hb().begin(Trigger::Api).unwrap();
    let busy = f.hb().run_now(&f.agent, Trigger::Cli).unwrap_err();
    assert_eq!(busy.trigger, Trigger::Api);
    assert!(busy.to_string().contains("in progress"));
    assert!(f.hb().snapshot().running.is_some());
    f.hb().tick(&f.agent);
    let run = f.hb().snapshot().last_run.unwrap();
    assert_eq!(run.status, RunStatus::Skipped);
    assert!(run.reason.unwrap().contains("still running"));
    drop(guard);
    assert!(f.hb().snapshot().running.is_none());
    assert!(f.hb().run_now(&f.agent, Trigger::Cli).is_ok());
}

#[test]
fn a_run_longer_than_the_interval_records_the_ticks_it_missed() {
    // Every reading of the clock is 25 minutes after the last: the run "takes" 25 minutes.
    let f = Fixture::new(
        "overrun",
        TestClock::at("2026-02-14T10:00:00Z", Duration::from_secs(25 * 60)),
    );
    f.write_tasks("- [ ] water the plants\n");
    // open() read 10:00; the tick begins at 10:25 and ends at 10:50.
    f.hb().tick(&f.agent);
    let s = f.hb().snapshot();
    assert_eq!(s.runs.len(), 2, "{:?}", s.runs);
    assert_eq!(s.runs[1].status, RunStatus::Failed);
    assert_eq!(s.runs[1].time, ts("2026-02-14T10:25:00Z"));
    let skip = &s.runs[0];
    assert_eq!(skip.status, RunStatus::Skipped);
    assert_eq!(skip.time, ts("2026-02-14T10:45:00Z"));
    assert!(skip.reason.as_deref().unwrap().contains("2 tick(s) missed"));
    assert_eq!(s.next_run, Some(ts("2026-02-14T10:55:00Z")));
}

#[test]
fn a_restart_keeps_the_history_and_delays_an_overdue_run() {
    let mut f = Fixture::new(
        "restart",
        TestClock::at("2026-02-14T10:00:00Z", Duration::ZERO),
    );
    f.hb().tick(&f.agent);
    let before = f.hb().snapshot().last_run.unwrap();

    // Back five minutes later: the schedule goes on from the last run.
    f.restart(TestClock::at("2026-02-14T10:05:00Z", Duration::ZERO));
    let s = f.hb().snapshot();
    assert_eq!(s.last_run.as_ref(), Some(&before));
    assert_eq!(s.next_run, Some(ts("2026-02-14T10:10:00Z")));

    // Back two hours later: overdue, so shortly after start, not at once.
    f.restart(TestClock::at("2026-02-14T12:00:00Z", Duration::ZERO));
    let s = f.hb().snapshot();
    assert_eq!(s.last_run.as_ref(), Some(&before));
    assert_eq!(
        s.next_run,
        Some(add(ts("2026-02-14T12:00:00Z"), OVERDUE_DELAY))
    );
}

#[test]
fn a_zero_interval_or_disabled_heartbeat_has_no_next_run() {
    let mut f = Fixture::new("off", TestClock::at("2026-02-14T10:00:00Z", Duration::ZERO));
    f.config.heartbeat.interval = crate::config::Span::secs(0);
    f.restart(TestClock::at("2026-02-14T10:00:00Z", Duration::ZERO));
    assert!(!f.hb().timer_enabled());
    assert_eq!(f.hb().next_run(), None);
    f.config.heartbeat.interval = crate::config::Span::secs(60);
    f.config.heartbeat.enabled = false;
    f.restart(TestClock::at("2026-02-14T10:00:00Z", Duration::ZERO));
    assert_eq!(f.hb().snapshot().next_run, None);
    // Runs by hand still work.
    assert!(f.hb().run_now(&f.agent, Trigger::Cli).is_ok());
}

#[test]
fn a_corrupt_state_file_is_not_fatal() {
    let mut f = Fixture::new(
        "corrupt",
        TestClock::at("2026-02-14T10:00:00Z", Duration::ZERO),
    );
    std::fs::write(f.state_path(), "{{{ not json").unwrap();
    f.restart(TestClock::at("2026-02-14T10:00:00Z", Duration::ZERO));
    assert!(f.hb().snapshot().last_run.is_none());
    f.hb().tick(&f.agent);
    assert_eq!(state::State::load(&f.state_path()).runs.len(), 1);
}
