//! What the heartbeat remembers across restarts: its recent runs, in
//! `<state dir>/heartbeat.json` (JSON, written atomically, mode 0600).

use std::collections::VecDeque;
use std::io;
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Runs kept in the state file and listed by `GET /api/heartbeat`.
pub const KEEP_RUNS: usize = 20;

/// A state file larger than this is not one we wrote (20 short records are a few KiB); it
/// is ignored rather than read into memory.
const MAX_STATE_BYTES: u64 = 1024 * 1024;

/// The format version written to the file, for a future change of shape.
const VERSION: u32 = 1;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The model replied `HEARTBEAT_OK`: nothing needs attention.
    Ok,
    /// The model replied something else; it went to the daily log.
    Alert,
    /// Nothing to do (outside active hours, no open task, a run still going); no model call.
    Skipped,
    /// The model call failed or timed out, or HEARTBEAT.md could not be read.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Alert => "alert",
            RunStatus::Skipped => "skipped",
            RunStatus::Failed => "failed",
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The interval timer.
    Timer,
    /// `POST /api/heartbeat/run` (also `localgpt daemon heartbeat` with a daemon running).
    Api,
    /// `localgpt daemon heartbeat` run in-process (no daemon running).
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Timer => "timer",
            Trigger::Api => "api",
            Trigger::Cli => "cli",
        }
    }
}

/// One heartbeat run, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// When the run began (or was skipped).
    #[serde(with = "timestamp")]
    pub time: Timestamp,
    pub status: RunStatus,
    pub trigger: Trigger,
    /// Why the run was skipped or failed (or why an alert could not be logged).
    #[serde(default)]
    pub reason: Option<String>,
    /// The start of the model's reply.
    #[serde(default)]
    pub preview: Option<String>,
    pub duration_ms: u64,
    /// Whether a model turn was started (false for every skipped run).
    pub model_called: bool,
    /// The `provider/model` of the turn, when there was one.
    #[serde(default)]
    pub model: Option<String>,
}

impl Run {
    /// A run that did nothing, for `reason`.
    pub fn skipped(time: Timestamp, trigger: Trigger, reason: impl Into<String>) -> Run {
        Run {
            time,
            status: RunStatus::Skipped,
            trigger,
            reason: Some(reason.into()),
            preview: None,
            duration_ms: 0,
            model_called: false,
            model: None,
        }
    }

    /// The record as the API (and `localgpt daemon heartbeat --json`) shows it: times in
    /// RFC 3339 UTC to the second.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "time": crate::clock::rfc3339(self.time),
            "status": self.status.as_str(),
            "trigger": self.trigger.as_str(),
            "reason": self.reason,
            "preview": self.preview,
            "duration_ms": self.duration_ms,
            "model_called": self.model_called,
            "model": self.model,
        })
    }

    /// A run that failed before any model call, for `reason`.
    pub fn failed(time: Timestamp, trigger: Trigger, reason: impl Into<String>) -> Run {
        Run {
            status: RunStatus::Failed,
            ..Run::skipped(time, trigger, reason)
        }
    }
}

/// The persisted state: recent runs, oldest first, in the order they finished.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub runs: VecDeque<Run>,
    /// The latest alert, kept even after [`KEEP_RUNS`] newer runs pushed it off the list.
    #[serde(default)]
    pub last_alert: Option<Run>,
}

impl State {
    /// Reads the state at `path`. A missing file is a first start; an unreadable or corrupt
    /// one is logged and replaced by an empty state (the next run rewrites it), because a
    /// lost run history must never keep the daemon from starting.
    pub fn load(path: &Path) -> State {
        match read(path) {
            Ok(Some(state)) => state,
            Ok(None) => State::default(),
            Err(why) => {
                log::warn!(
                    "heartbeat: ignoring state file {}: {why}; starting with no run history",
                    path.display()
                );
                State::default()
            }
        }
    }

    /// Writes the state to `path` atomically, readable by the owner only.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut shown = self.clone();
        shown.version = VERSION;
        crate::durable::write_state(path, &shown)
    }

    /// Adds a finished run, dropping the oldest beyond [`KEEP_RUNS`].
    pub fn record(&mut self, run: Run) {
        if run.status == RunStatus::Alert {
            self.last_alert = Some(run.clone());
        }
        self.runs.push_back(run);
        while self.runs.len() > KEEP_RUNS {
            self.runs.pop_front();
        }
    }

    /// The run that finished last.
    pub fn last(&self) -> Option<&Run> {
        self.runs.back()
    }

    /// When the latest recorded run began.
    pub fn latest_time(&self) -> Option<Timestamp> {
        self.runs.iter().map(|r| r.time).max()
    }
}

fn read(path: &Path) -> Result<Option<State>, String> {
    let Some(mut state) = crate::durable::read_state::<State>(path, MAX_STATE_BYTES)? else {
        return Ok(None);
    };
    while state.runs.len() > KEEP_RUNS {
        state.runs.pop_front();
    }
    Ok(Some(state))
}

/// Timestamps in the file keep their full precision (RFC 3339 with fractions), so the
/// schedule after a restart is exactly what it was before.
mod timestamp {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(ts)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lgpt-hb-state-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn run(at: &str, status: RunStatus) -> Run {
        Run {
            time: at.parse().unwrap(),
            status,
            trigger: Trigger::Timer,
            reason: None,
            preview: Some("HEARTBEAT_OK".into()),
            duration_ms: 1234,
            model_called: true,
            model: Some("openai/x".into()),
        }
    }

    #[test]
    fn round_trip_is_private_and_exact() {
        let dir = temp_dir("rt");
        let path = dir.join("heartbeat.json");
        let mut state = State::default();
        state.record(run("2026-02-14T10:30:00.123456789Z", RunStatus::Ok));
        state.record(run("2026-02-14T11:00:00Z", RunStatus::Alert));
        state.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = State::load(&path);
        assert_eq!(back.runs, state.runs);
        assert_eq!(back.version, VERSION);
        assert_eq!(
            back.last_alert.as_ref().map(|r| r.status),
            Some(RunStatus::Alert)
        );
        assert_eq!(
            back.latest_time(),
            Some("2026-02-14T11:00:00Z".parse().unwrap())
        );
        // Saving again keeps the mode and leaves no temp file.
        back.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keeps_the_last_twenty_and_the_last_alert() {
        let mut state = State::default();
        state.record(run("2026-02-14T09:00:00Z", RunStatus::Alert));
        for i in 0..25 {
            state.record(run(&format!("2026-02-14T10:{i:02}:00Z"), RunStatus::Ok));
        }
        assert_eq!(state.runs.len(), KEEP_RUNS);
        assert_eq!(
            state.runs.front().unwrap().time,
            "2026-02-14T10:05:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            state.last().unwrap().time,
            "2026-02-14T10:24:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            state.last_alert.unwrap().time,
            "2026-02-14T09:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn missing_or_corrupt_file_is_an_empty_history() {
        let dir = temp_dir("bad");
        let path = dir.join("heartbeat.json");
        assert_eq!(State::load(&path), State::default());
        fs::write(&path, "{ not json").unwrap();
        assert_eq!(State::load(&path), State::default());
        fs::write(&path, r#"{"runs":[{"time":"yesterday"}]}"#).unwrap();
        assert_eq!(State::load(&path), State::default());
        // The next save replaces the corrupt file.
        let mut state = State::default();
        state.record(run("2026-02-14T10:00:00Z", RunStatus::Ok));
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).runs.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
