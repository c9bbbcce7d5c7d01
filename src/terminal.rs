//! Terminal front ends: `localgpt ask` (one turn) and `localgpt chat` (an interactive
//! session streaming from the running daemon).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::agent::chat::{ChatParams, resolve, run_chat};
use crate::agent::turn::Unattended;
use crate::app::App;
use crate::client::{Bound, Client};
use crate::daemon::{self, PidFile};

/// Why a terminal command failed.
#[derive(Debug)]
pub struct TerminalError(pub String);

impl std::fmt::Display for TerminalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(e: impl std::fmt::Display) -> TerminalError {
    TerminalError(e.to_string())
}

/// `localgpt ask`: through the daemon when one runs, else in this process. Prints the
/// answer, or the whole answer object with `json`.
pub fn ask(
    config_flag: Option<&Path>,
    question: &str,
    model: Option<&str>,
    json: bool,
) -> Result<(), TerminalError> {
    let (config, paths) = daemon::load(config_flag).map_err(err)?;
    let answer = match PidFile::probe(&paths.pid_file()).and_then(|i| i.addr) {
        Some(addr) => {
            let mut body = json!({"message": question});
            if let Some(m) = model {
                body["model"] = json!(m);
            }
            Client::patient(&config)
                .at(addr)
                .post("/api/chat", &body)
                .map_err(err)?
        }
        None => {
            paths.create_dirs().map_err(err)?;
            let app = App::open(config, paths).map_err(err)?;
            // Without a daemon nobody keeps the index current: catch up first.
            app.memory.reindex(false, None).map_err(err)?;
            let params = ChatParams {
                message: question.to_string(),
                model: model.map(str::to_string),
                include_memory: true,
                session_id: None,
            };
            let (model, _) = resolve(&app, &params, false).map_err(err)?;
            let outcome = run_chat(&app, &params, &model, None, &mut Unattended).map_err(err)?;
            crate::server::handlers::chat::outcome_json(&outcome, None)
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        println!("{}", answer["response"].as_str().unwrap_or(""));
    }
    Ok(())
}

/// `localgpt chat`: an interactive session with the running daemon.
pub fn chat(
    config_flag: Option<&Path>,
    session: Option<String>,
    model: Option<&str>,
) -> Result<(), TerminalError> {
    let (config, paths) = daemon::load(config_flag).map_err(err)?;
    let addr = PidFile::probe(&paths.pid_file())
        .and_then(|i| i.addr)
        .ok_or_else(|| err("the daemon is not running; start it with `localgpt daemon start`"))?;
    let client = Client::patient(&config);
    let bound = client.at(addr);
    let mut session = match session {
        Some(id) => {
            bound.get(&format!("/api/sessions/{id}")).map_err(err)?;
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

fn new_session(bound: &Bound<'_>, model: Option<&str>) -> Result<String, TerminalError> {
    let body = match model {
        Some(m) => json!({"model": m}),
        None => json!({}),
    };
    let created = bound.post("/api/sessions", &body).map_err(err)?;
    created["session_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| err("the daemon did not return a session id"))
}

/// Sends one message to `/api/chat/stream` and prints events as they arrive, asking the
/// user about tools that need approval.
fn stream_turn(
    bound: &Bound<'_>,
    session: &str,
    body: &Value,
    input: &mut impl Iterator<Item = std::io::Result<String>>,
) -> Result<(), TerminalError> {
    let resp = bound.post_stream("/api/chat/stream", body).map_err(err)?;
    let reader = BufReader::new(resp.into_body().into_reader());
    let mut out = std::io::stdout();
    for line in reader.lines() {
        let line = line.map_err(err)?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        match event["type"].as_str().unwrap_or("") {
            "content" => {
                let _ = write!(out, "{}", event["delta"].as_str().unwrap_or(""));
                let _ = out.flush();
            }
            "tool_start" => {
                let _ = writeln!(
                    out,
                    "\n[tool {} {}]",
                    event["name"].as_str().unwrap_or("?"),
                    event["arguments"]
                );
            }
            "tool_end" if event["is_error"] == true => {
                let first = event["output"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("");
                let _ = writeln!(
                    out,
                    "[tool {} failed: {first}]",
                    event["name"].as_str().unwrap_or("?")
                );
            }
            "approval_required" => {
                print!(
                    "\nAllow tool {} with {}? [y/N] ",
                    event["tool"].as_str().unwrap_or("?"),
                    event["arguments"]
                );
                let _ = out.flush();
                let yes = matches!(input.next(), Some(Ok(a)) if a.trim().eq_ignore_ascii_case("y") || a.trim().eq_ignore_ascii_case("yes"));
                let decision = if yes { "approve" } else { "deny" };
                let answer = json!({"request_id": event["request_id"], "decision": decision});
                let path = format!("/api/sessions/{session}/approve");
                if let Err(e) = bound.post(&path, &answer) {
                    let _ = writeln!(out, "[could not send the decision: {e}]");
                }
            }
            "error" => {
                let _ = writeln!(
                    out,
                    "\n[error {}: {}]",
                    event["code"].as_str().unwrap_or(""),
                    event["message"].as_str().unwrap_or("")
                );
            }
            "done" => {
                let t = &event["tokens"];
                let _ = writeln!(out, "\n[{} tokens]", t["total"]);
            }
            _ => {}
        }
    }
    Ok(())
}
