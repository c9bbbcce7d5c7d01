//! The heartbeat: on a timer, the assistant reads its task list (`HEARTBEAT.md`) and acts
//! on what is due, at zero cost while there is nothing to do.
//!
//! Each run ends `ok` (the model replied `HEARTBEAT_OK`), `alert` (anything else; written
//! to today's daily log), `skipped` (outside active hours, no open task, or a run still
//! going; no model call) or `failed` (provider error or timeout). The last
//! [`state::KEEP_RUNS`] runs live in `<state dir>/heartbeat.json`, and the schedule follows
//! on from them after a restart.
//!
//! The parts: [`schedule`] (interval and active-hours maths, pure), [`state`] (run records
//! and their file), [`run`] (one cycle), [`timer`] (the thread). [`Heartbeat`] ties them
//! together; one is shared by the timer, the API handlers and the CLI. A run is a turn of
//! the [`Agent`], which the heartbeat is handed rather than owns.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use localgpt::{agent::Agent, heartbeat::{Heartbeat, Timer, Trigger}};
//! # fn demo(heartbeat: Arc<Heartbeat>, agent: Arc<Agent>) {
//! let timer = Timer::spawn(heartbeat.clone(), agent.clone());
//! let run = heartbeat.run_now(&agent, Trigger::Api).expect("no run in progress");
//! println!("{} {:?}", run.status.as_str(), run.preview);
//! timer.stop(std::time::Duration::from_secs(10));
//! # }
//! ```

pub mod run;
pub mod schedule;
pub mod state;
pub mod timer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;

use crate::agent::Agent;
use crate::clock::Clock;
use crate::config::{HeartbeatConfig, ModelRef};
use crate::sync::lock;
use schedule::ActiveWindow;
use state::State;
pub use state::{Run, RunStatus, Trigger};
pub use timer::Timer;

/// A run was asked for while another one is in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// When the run in progress began.
    pub since: Timestamp,
    pub trigger: Trigger,
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a heartbeat run (started by {} at {}) is still in progress; try again when it ends",
            self.trigger.as_str(),
            crate::clock::rfc3339(self.since)
        )
    }
}

/// A consistent view of the heartbeat for the API.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The timer runs (`heartbeat.enabled` and a non-zero interval).
    pub enabled: bool,
    /// The run in progress: when it began and what started it.
    pub running: Option<(Timestamp, Trigger)>,
    pub last_run: Option<Run>,
    pub next_run: Option<Timestamp>,
    /// Newest first.
    pub runs: Vec<Run>,
    pub last_alert: Option<Run>,
}

struct Inner {
    state: State,
    /// When the latest run began (or was skipped): what the schedule counts from.
    anchor: Option<Timestamp>,
    running: Option<(Timestamp, Trigger)>,
}

/// The heartbeat's state, shared by the timer thread, the API and the CLI.
pub struct Heartbeat {
    config: HeartbeatConfig,
    /// `heartbeat.model`, else `agent.default_model`.
    model: ModelRef,
    window: Option<ActiveWindow>,
    state_path: PathBuf,
    clock: Arc<dyn Clock>,
    /// When this process started, for the restart rule of [`schedule::next_run`].
    started: Timestamp,
    inner: Mutex<Inner>,
    /// Set on shutdown: a turn in progress stops at its next step.
    stopping: Arc<AtomicBool>,
}

/// Clears the running mark when a run ends, also if it panics.
struct RunningGuard<'a>(&'a Heartbeat);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().running = None;
    }
}

impl Heartbeat {
    /// Loads the run history from `state_path` (a corrupt file is logged and ignored).
    /// `default_model` serves when `heartbeat.model` is not set.
    pub fn open(
        config: &HeartbeatConfig,
        default_model: &ModelRef,
        state_path: &Path,
        clock: Arc<dyn Clock>,
    ) -> Heartbeat {
        let state = State::load(state_path);
        let started = clock.now();
        let anchor = schedule::initial_anchor(state.latest_time(), started);
        Heartbeat {
            config: config.clone(),
            model: config.model_or(default_model).clone(),
            window: config
                .active_hours
                .as_ref()
                .and_then(ActiveWindow::from_config),
            state_path: state_path.to_path_buf(),
            clock,
            started,
            inner: Mutex::new(Inner {
                state,
                anchor,
                running: None,
            }),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the timer runs: `heartbeat.enabled` and an interval above zero.
    pub fn timer_enabled(&self) -> bool {
        self.config.enabled && !self.config.interval.get().is_zero()
    }

    /// The active-hours window, if configured.
    pub fn window(&self) -> Option<ActiveWindow> {
        self.window
    }

    /// The heartbeat's model: `heartbeat.model`, else `agent.default_model`.
    pub fn model(&self) -> &ModelRef {
        &self.model
    }

    pub fn config(&self) -> &HeartbeatConfig {
        &self.config
    }

    /// Now, by the heartbeat's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// When the timer runs next; `None` when it is off.
    pub fn next_run(&self) -> Option<Timestamp> {
        let inner = self.lock();
        self.next_run_locked(&inner)
    }

    fn next_run_locked(&self, inner: &Inner) -> Option<Timestamp> {
        if !self.timer_enabled() {
            return None;
        }
        schedule::next_run(inner.anchor, self.started, self.config.interval.get())
    }

    /// Everything the API shows, read under one lock.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            enabled: self.timer_enabled(),
            running: inner.running,
            last_run: inner.state.last().cloned(),
            next_run: self.next_run_locked(&inner),
            runs: inner.state.runs.iter().rev().cloned().collect(),
            last_alert: inner.state.last_alert.clone(),
        }
    }

    /// Runs one cycle now and records it, unless a run is already in progress. Runs asked
    /// for by hand ignore active hours (someone asked), but still skip an empty task list.
    pub fn run_now(&self, agent: &Agent, trigger: Trigger) -> Result<Run, Busy> {
        let (time, _guard) = self.begin(trigger)?;
        let run = run::cycle(self, agent, trigger, time);
        self.finish(&run);
        Ok(run)
    }

    /// One timer tick: a cycle, or a `skipped` record when a run is still in progress. A
    /// cycle that outlasted the interval records the ticks it made the timer miss.
    pub(crate) fn tick(&self, agent: &Agent) {
        match self.begin(Trigger::Timer) {
            Err(busy) => {
                let now = self.clock.now();
                let run = Run::skipped(
                    now,
                    Trigger::Timer,
                    format!(
                        "the previous run (started by {} at {}) was still running",
                        busy.trigger.as_str(),
                        crate::clock::rfc3339(busy.since)
                    ),
                );
                let mut inner = self.lock();
                inner.anchor = Some(now);
                self.record_locked(&mut inner, &run);
            }
            Ok((time, guard)) => {
                let run = run::cycle(self, agent, Trigger::Timer, time);
                self.finish(&run);
                drop(guard);
                let now = self.clock.now();
                if let Some((missed, last_due)) =
                    schedule::missed_ticks(time, now, self.config.interval.get())
                {
                    let skipped = Run::skipped(
                        last_due,
                        Trigger::Timer,
                        format!("the previous run was still running ({missed} tick(s) missed)"),
                    );
                    let mut inner = self.lock();
                    inner.anchor = Some(last_due);
                    self.record_locked(&mut inner, &skipped);
                }
            }
        }
    }

    /// Asks a turn in progress to stop (shutdown); later runs stop at once too.
    pub fn stop_runs(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether [`Heartbeat::stop_runs`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// [`Heartbeat::is_stopping`] as a flag another thread can hold.
    pub(crate) fn stopping_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    /// Marks a run as begun at now, or says which run is in the way.
    fn begin(&self, trigger: Trigger) -> Result<(Timestamp, RunningGuard<'_>), Busy> {
        let mut inner = self.lock();
        if let Some((since, trigger)) = inner.running {
            return Err(Busy { since, trigger });
        }
        let now = self.clock.now();
        inner.running = Some((now, trigger));
        inner.anchor = Some(now);
        Ok((now, RunningGuard(self)))
    }

    fn finish(&self, run: &Run) {
        match run.status {
            RunStatus::Skipped => {
                log::debug!("heartbeat skipped: {}", run.reason.as_deref().unwrap_or(""))
            }
            RunStatus::Ok => log::info!("heartbeat ok in {} ms", run.duration_ms),
            RunStatus::Alert => log::info!(
                "heartbeat alert in {} ms: {}",
                run.duration_ms,
                run.preview.as_deref().unwrap_or("")
            ),
            RunStatus::Failed => log::warn!(
                "heartbeat failed after {} ms: {}",
                run.duration_ms,
                run.reason.as_deref().unwrap_or("")
            ),
        }
        let mut inner = self.lock();
        self.record_locked(&mut inner, run);
    }

    /// Stores a run and persists the state. Written under the lock, so two runs finishing
    /// together cannot leave the older snapshot on disk.
    fn record_locked(&self, inner: &mut Inner, run: &Run) {
        inner.state.record(run.clone());
        if let Err(e) = inner.state.save(&self.state_path) {
            log::warn!(
                "heartbeat: cannot write {}: {e}; the run is kept in memory only",
                self.state_path.display()
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

#[cfg(test)]
mod tests;
