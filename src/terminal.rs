//! Terminal front ends: `localgpt ask` (one turn) and `localgpt chat` (an interactive
//! session streaming from the running daemon).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::agent::chat::{self, ChatParams};
use crate::agent::events::{Answer, TurnEvent, Unattended};
use crate::app::App;
use crate::client::{Bound, Client, ClientError};
use crate::daemon::{self, DaemonError, PidFile, sys};

/// An answer from the daemon that is not what its API says it sends.
fn unexpected(what: &str, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Client(ClientError::Unreachable(format!(
        "the daemon's {what} could not be read: {e}"
    )))
}

/// `localgpt ask`: through the daemon when one runs, else in this process. Prints the
/// answer, or the whole answer object with `json`.
pub fn ask(
    config_flag: Option<&Path>,
    question: &str,
    model: Option<&str>,
    json: bool,
) -> Result<(), DaemonError> {
    let (config, paths) = daemon::load(config_flag)?;
    let answer: Answer = match PidFile::probe(&paths.pid_file()).and_then(|i| i.addr) {
        Some(addr) => {
            let mut body = json!({"message": question});
            if let Some(m) = model {
                body["model"] = json!(m);
            }
            let value = Client::patient(&config).at(addr).post("/api/chat", &body)?;
            serde_json::from_value(value).map_err(|e| unexpected("answer", e))?
        }
        None => {
            let model = model
                .map(|m| m.parse())
                .transpose()
                .map_err(|why| DaemonError::Refused(format!("--model: {why}")))?;
            paths
                .create_dirs()
                .map_err(sys("cannot create directories"))?;
            let app = App::open(config, paths)?;
            // Without a daemon nobody keeps the index current: catch up first.
            app.agent.memory.reindex(false, None)?;
            let params = ChatParams {
                message: question.to_string(),
                model,
                include_memory: true,
                session_id: None,
            };
            let failed = |e: crate::agent::AgentError| DaemonError::Refused(e.to_string());
            let prepared =
                chat::prepare(&app.agent, &app.sessions, &params, false).map_err(failed)?;
            chat::run(
                &app.agent,
                &app.sessions,
                &params,
                prepared,
                &mut Unattended,
            )
            .map_err(failed)?
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        println!("{}", answer.response);
    }
    Ok(())
}

/// `localgpt chat`: an interactive session with the running daemon.
pub fn chat(
    config_flag: Option<&Path>,
    session: Option<String>,
    model: Option<&str>,
) -> Result<(), DaemonError> {
    let (config, paths) = daemon::load(config_flag)?;
    let addr = PidFile::probe(&paths.pid_file())
        .and_then(|i| i.addr)
        .ok_or_else(|| {
            DaemonError::Refused(
                "the daemon is not running; start it with `localgpt daemon start`".into(),
            )
        })?;
    let client = Client::patient(&config);
    let bound = client.at(addr);
    let mut session = match session {
        Some(id) => {
            bound.get(&format!("/api/sessions/{id}"))?;
            id
        }
        None => new_session(&bound, model)?,
    };
    println!("localgpt chat — session {session}. Commands: /new, /session, /quit");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("\n> ");
        let _ = std::io::stdout().flush();
        let Some(Ok(line)) = lines.next() else {
            println!();
            return Ok(());
        };
        let line = line.trim();
        match line {
            "" => continue,
            "/quit" | "/exit" => return Ok(()),
            "/session" => {
                println!("{session}");
                continue;
            }
            "/new" => {
                session = new_session(&bound, model)?;
                println!("new session {session}");
                continue;
            }
            _ => {}
        }
        let mut body = json!({"message": line, "session_id": session});
        if let Some(m) = model {
            body["model"] = json!(m);
        }
        stream_turn(&bound, &session, &body, &mut lines)?;
    }
}

fn new_session(bound: &Bound<'_>, model: Option<&str>) -> Result<String, DaemonError> {
    let body = match model {
        Some(m) => json!({"model": m}),
        None => json!({}),
    };
    let created = bound.post("/api/sessions", &body)?;
    created["session_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| unexpected("new session", "no session_id"))
}

/// Sends one message to `/api/chat/stream` and prints events as they arrive, asking the
/// user about tools that need approval.
fn stream_turn(
    bound: &Bound<'_>,
    session: &str,
    body: &Value,
    input: &mut impl Iterator<Item = std::io::Result<String>>,
) -> Result<(), DaemonError> {
    let resp = bound.post_stream("/api/chat/stream", body)?;
    let reader = BufReader::new(resp.into_body().into_reader());
    let mut out = std::io::stdout();
    for line in reader.lines() {
        let line = line.map_err(sys("reading the stream"))?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let event: TurnEvent = match serde_json::from_str(data) {
            Ok(e) => e,
            Err(e) => {
                log::debug!("skipping an event this client does not know: {e}");
                continue;
            }
        };
        match event {
            TurnEvent::Content { delta } => {
                let _ = write!(out, "{delta}");
                let _ = out.flush();
            }
            TurnEvent::ToolStart {
                name, arguments, ..
            } => {
                let _ = writeln!(out, "\n[tool {name} {arguments}]");
            }
            TurnEvent::ToolEnd {
                name,
                output,
                is_error: true,
                ..
            } => {
                let first = output.lines().next().unwrap_or("");
                let _ = writeln!(out, "[tool {name} failed: {first}]");
            }
            TurnEvent::ApprovalRequired {
                request_id,
                tool,
                arguments,
            } => {
                print!("\nAllow tool {tool} with {arguments}? [y/N] ");
                let _ = out.flush();
                let yes = matches!(input.next(), Some(Ok(a)) if a.trim().eq_ignore_ascii_case("y") || a.trim().eq_ignore_ascii_case("yes"));
                let decision = if yes { "approve" } else { "deny" };
                let answer = json!({"request_id": request_id, "decision": decision});
                let path = format!("/api/sessions/{session}/approve");
                if let Err(e) = bound.post(&path, &answer) {
                    let _ = writeln!(out, "[could not send the decision: {e}]");
                }
            }
            TurnEvent::Error { code, message } => {
                let _ = writeln!(out, "\n[error {code}: {message}]");
            }
            TurnEvent::Done(answer) => {
                let _ = writeln!(out, "\n[{} tokens]", answer.tokens.total);
            }
            TurnEvent::Session { .. } | TurnEvent::ToolEnd { .. } => {}
        }
    }
    Ok(())
}
