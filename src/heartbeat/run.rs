//! One heartbeat cycle: decide whether there is anything to do, run one agent turn over the
//! task list, and read what the model replied.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::Heartbeat;
use super::state::{Run, RunStatus, Trigger};
use crate::agent::approval::Approver;
use crate::agent::events::TurnSink;
use crate::agent::turn::{ClientTurn, TurnInput, run_turn};
use crate::agent::{Agent, AgentError};
use crate::memory::workspace::{HEARTBEAT_MD, is_effectively_empty};
use crate::providers::{Message, ProviderError};

/// The reply that means "nothing needs the user's attention".
pub const OK_TOKEN: &str = "HEARTBEAT_OK";

/// A reply with [`OK_TOKEN`] at its start or end and at most this many other characters is
/// still `ok`: models like to add "nothing due today" around the token, and such a remark is
/// not worth an entry in the daily log.
pub const ACK_MAX_EXTRA_CHARS: usize = 300;

/// The most of HEARTBEAT.md put in the turn's message. A task list is short; this bounds
/// what a runaway file (a pasted log) costs in tokens.
pub const MAX_TASKS_BYTES: usize = 64 * 1024;

/// Characters of the reply kept in a run record.
pub const PREVIEW_CHARS: usize = 280;

/// What a cycle decided before any model call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do, for this reason.
    Skip(String),
    /// Run a turn over this task list.
    Turn(String),
}

/// Reads HEARTBEAT.md and decides: missing or effectively empty → skip; else its text
/// (cut to [`MAX_TASKS_BYTES`]). An unreadable file is an error.
pub fn plan(path: &Path) -> Result<Plan, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Plan::Skip(format!(
                "{HEARTBEAT_MD} does not exist; write tasks there for the heartbeat to check"
            )));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_TASKS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cut = bytes.len() > MAX_TASKS_BYTES;
    bytes.truncate(MAX_TASKS_BYTES);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if is_effectively_empty(&text) {
        return Ok(Plan::Skip(format!(
            "{HEARTBEAT_MD} has no open tasks (only headings, comments and checked-off items)"
        )));
    }
    if cut {
        text.push_str(&format!(
            "\n[HEARTBEAT.md is longer; only its first {MAX_TASKS_BYTES} bytes are shown]\n"
        ));
    }
    Ok(Plan::Turn(text))
}

/// The user message of a heartbeat turn. It carries the task list itself, so the model
/// needs no tool round trip to read it.
pub fn instruction(tasks: &str, local_time: &str) -> String {
    format!(
        "This is a heartbeat: a scheduled check you run on your own, with nobody present \
         (local time {local_time}).\n\
         Below is {HEARTBEAT_MD}, the user's task list for you.\n\
         - Act on the tasks that are due now, using your tools. Tools that need approval \
         are denied here; do not retry a denied tool.\n\
         - When you finish a task, mark it done in {HEARTBEAT_MD} by changing its `- [ ]` \
         to `- [x]` (edit_file).\n\
         - If nothing needs the user's attention, reply with exactly {OK_TOKEN} and nothing \
         else.\n\
         - Otherwise reply with a short message for the user; it is written to today's daily \
         log.\n\
         \n\
         <{HEARTBEAT_MD}>\n{}\n</{HEARTBEAT_MD}>\n",
        tasks.trim_end()
    )
}

/// True when `reply` means "nothing needs attention": empty, or [`OK_TOKEN`] at its start
/// or end (as a whole word, markup like `**` or a final `.` aside) with at most
/// [`ACK_MAX_EXTRA_CHARS`] of anything else.
pub fn is_ok_reply(reply: &str) -> bool {
    const WRAPPING: &[char] = &['*', '_', '`', '"', '\'', '.', '!'];
    const JOINERS: &[char] = &['*', '_', '`', '"', '\'', '.', '!', '-', '—', ':', ',', ';'];
    let text = reply.trim().trim_matches(WRAPPING).trim();
    if text.is_empty() {
        return true;
    }
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    let rest = if let Some(rest) = text.strip_prefix(OK_TOKEN)
        && !rest.starts_with(word_char)
    {
        rest
    } else if let Some(rest) = text.strip_suffix(OK_TOKEN)
        && !rest.ends_with(word_char)
    {
        rest
    } else {
        return false;
    };
    let rest = rest.trim().trim_matches(JOINERS).trim();
    rest.chars().count() <= ACK_MAX_EXTRA_CHARS
}

/// The start of `text` on one line, at most [`PREVIEW_CHARS`] characters.
pub fn preview(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= PREVIEW_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(PREVIEW_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A daily-log entry for an alert at local time `hhmm`: one list item, later lines
/// indented under it so the Markdown stays one item.
pub fn alert_entry(hhmm: &str, reply: &str) -> String {
    let mut lines = reply.trim().lines();
    let mut entry = format!(
        "- {hhmm} Heartbeat: {}\n",
        lines.next().unwrap_or("").trim_end()
    );
    for line in lines {
        if line.trim().is_empty() {
            entry.push('\n');
        } else {
            entry.push_str(&format!("  {}\n", line.trim_end()));
        }
    }
    entry
}

/// Stops a turn at its deadline (`heartbeat.timeout`) or when the daemon shuts down: the
/// provider notices at its next read, the tool loop between steps.
struct Bounded<'a> {
    deadline: Option<Instant>,
    heartbeat: &'a Heartbeat,
}

impl Bounded<'_> {
    fn timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

impl TurnSink for Bounded<'_> {
    fn emit(&mut self, _event: crate::agent::events::TurnEvent) -> bool {
        !self.cancelled()
    }

    fn cancelled(&self) -> bool {
        self.heartbeat.is_stopping() || self.timed_out()
    }

    fn cancel_check(&self) -> Option<crate::providers::cancel::CancelCheck> {
        let (stopping, deadline) = (self.heartbeat.stopping_flag(), self.deadline);
        Some(std::sync::Arc::new(move || {
            stopping.load(std::sync::atomic::Ordering::SeqCst)
                || deadline.is_some_and(|d| Instant::now() >= d)
        }))
    }
}

/// Runs one cycle at `time` and returns its record (not yet stored); an alert's whole reply
/// goes to `reply`.
pub(super) fn cycle(
    hb: &Heartbeat,
    agent: &Agent,
    trigger: Trigger,
    time: Timestamp,
    reply: &mut Option<String>,
) -> Run {
    let began = Instant::now();
    let zone = &agent.zone;
    let elapsed_ms =
        |since: Instant| u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Active hours keep the timer quiet at night; a run asked for by hand runs anyway.
    if trigger == Trigger::Timer
        && let Some(window) = hb.window()
        && !window.contains(time, zone.tz())
    {
        return Run::skipped(
            time,
            trigger,
            format!("outside active hours {window} ({})", zone.iana_name()),
        );
    }
    let workspace = agent.memory.workspace();
    let tasks = match plan(&workspace.join(HEARTBEAT_MD)) {
        Ok(Plan::Skip(why)) => return Run::skipped(time, trigger, why),
        Ok(Plan::Turn(tasks)) => tasks,
        Err(why) => {
            let mut run = Run::failed(time, trigger, why);
            run.duration_ms = elapsed_ms(began);
            return run;
        }
    };

    if hb.is_stopping() {
        return Run::failed(time, trigger, "stopped: the daemon is shutting down");
    }
    let model = hb.model().clone();
    let local = crate::clock::local(time, zone.tz());
    let input = TurnInput {
        model: model.clone(),
        incoming: vec![Message::user(instruction(
            &tasks,
            &local.strftime("%Y-%m-%d %H:%M %A").to_string(),
        ))],
        include_memory: true,
        history: Vec::new(),
        summary: None,
        policy: agent.unattended_policy.clone(),
        approver: Approver::Nobody("nobody is there to approve it during a heartbeat"),
        client: ClientTurn::default(),
    };
    let timeout = hb.config().timeout.get();
    // A zero timeout means no limit of our own; the provider's read timeout still applies.
    let mut events = Bounded {
        deadline: (!timeout.is_zero()).then(|| began + timeout),
        heartbeat: hb,
    };
    let mut run = Run {
        time,
        status: RunStatus::Failed,
        trigger,
        reason: None,
        preview: None,
        duration_ms: 0,
        model_called: true,
        model: Some(model.to_string()),
    };
    match run_turn(agent, input, &mut events) {
        Ok(outcome) => {
            run.preview = Some(preview(&outcome.response));
            if is_ok_reply(&outcome.response) {
                run.status = RunStatus::Ok;
            } else {
                run.status = RunStatus::Alert;
                if let Err(why) = log_alert(hb, agent, &outcome.response) {
                    log::warn!("heartbeat: {why}");
                    run.reason = Some(why);
                }
                *reply = Some(outcome.response);
            }
        }
        Err(e) => run.reason = Some(failure(&e, &events, timeout)),
    }
    run.duration_ms = elapsed_ms(began);
    run
}

fn failure(e: &AgentError, events: &Bounded, timeout: Duration) -> String {
    match e {
        AgentError::Provider(ProviderError::Cancelled) if events.timed_out() => format!(
            "timed out after {} (heartbeat.timeout)",
            crate::config::Span(timeout)
        ),
        AgentError::Provider(ProviderError::Cancelled) => {
            "stopped: the daemon is shutting down".to_string()
        }
        other => other.to_string(),
    }
}

/// Appends an alert to today's daily log (in the user's zone), and indexes it.
fn log_alert(hb: &Heartbeat, agent: &Agent, reply: &str) -> Result<(), String> {
    let now = crate::clock::local(hb.now(), agent.zone.tz());
    let path = agent
        .memory
        .workspace()
        .join(crate::memory::daily_log_rel(now.date()));
    let entry = alert_entry(&now.strftime("%H:%M").to_string(), reply);
    crate::agent::tools::append_entry(&agent.tools, &path, &entry)
        .map_err(|e| format!("the alert could not be written to the daily log: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_replies() {
        for reply in [
            "HEARTBEAT_OK",
            "  HEARTBEAT_OK\n",
            "**HEARTBEAT_OK**",
            "`HEARTBEAT_OK`.",
            "HEARTBEAT_OK - nothing is due right now.",
            "Nothing due today. HEARTBEAT_OK",
            "All tasks are done.\n\nHEARTBEAT_OK",
            "",
        ] {
            assert!(is_ok_reply(reply), "{reply:?}");
        }
    }

    #[test]
    fn alert_replies() {
        let long = format!("HEARTBEAT_OK {}", "but also this. ".repeat(30));
        for reply in [
            "Reminder: water the plants today.",
            "I checked the list: the dentist appointment is in one hour.",
            "The word HEARTBEAT_OK in the middle does not count.",
            "HEARTBEAT_OKAY",
            "NOT_HEARTBEAT_OK",
            long.as_str(),
        ] {
            assert!(!is_ok_reply(reply), "{reply:?}");
        }
    }

    #[test]
    fn previews_are_one_short_line() {
        assert_eq!(preview("a\n\n  b\tc "), "a b c");
        let long = "x".repeat(1000);
        let p = preview(&long);
        assert_eq!(p.chars().count(), PREVIEW_CHARS);
        assert!(p.ends_with('…'));
    }

    #[test]
    fn alert_entries_are_one_list_item() {
        assert_eq!(
            alert_entry("14:05", "Water the plants.\n\nAnd call mum.\n"),
            "- 14:05 Heartbeat: Water the plants.\n\n  And call mum.\n"
        );
    }

    #[test]
    fn instruction_carries_the_task_list() {
        let m = instruction(
            "# Tasks\n- [ ] water the plants\n",
            "2026-02-14 10:00 Saturday",
        );
        assert!(m.contains("- [ ] water the plants"));
        assert!(m.contains(OK_TOKEN));
        assert!(m.contains("2026-02-14 10:00"));
    }

    #[test]
    fn plan_reads_the_task_list() {
        let dir = std::env::temp_dir().join(format!(
            "lgpt-hb-plan-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(HEARTBEAT_MD);
        assert!(matches!(plan(&path), Ok(Plan::Skip(why)) if why.contains("does not exist")));
        std::fs::write(&path, "# Heartbeat\n<!--\n- [ ] example\n-->\n- [x] done\n").unwrap();
        assert!(matches!(plan(&path), Ok(Plan::Skip(why)) if why.contains("no open tasks")));
        std::fs::write(&path, "- [ ] water the plants\n").unwrap();
        assert_eq!(
            plan(&path),
            Ok(Plan::Turn("- [ ] water the plants\n".into()))
        );
        std::fs::write(&path, "- [ ] big\n".repeat(MAX_TASKS_BYTES)).unwrap();
        match plan(&path) {
            Ok(Plan::Turn(text)) => {
                assert!(text.len() < MAX_TASKS_BYTES + 200);
                assert!(text.contains("only its first"));
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
