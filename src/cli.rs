//! The command line: argument definitions and dispatch to the library.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::config::{self, Config};
use crate::daemon::{self, DaemonError, ForegroundOptions, PidFile, exit, sys};
use crate::heartbeat::{Run, RunStatus, Trigger};
use crate::memory::{Memory, ReindexReport};
use crate::paths::{self, Paths};

/// The rest of the manual, shown by `localgpt --help` (and so in the man page made from it).
const MANUAL: &str = "\
Files (each overridable; the first that is set wins):
  config     --config, $LOCALGPT_CONFIG, $CONFIGURATION_DIRECTORY/config.toml,
             ~/.config/localgpt/config.toml (a missing file means all defaults)
  workspace  $LOCALGPT_WORKSPACE, memory.workspace, $LOCALGPT_DATA_DIR/workspace,
             $STATE_DIRECTORY/workspace, ~/.local/share/localgpt/workspace
  state      $LOCALGPT_STATE_DIR, $STATE_DIRECTORY, ~/.local/state/localgpt
             (sessions, heartbeat state, the log of a background daemon)
  cache      $LOCALGPT_CACHE_DIR, $CACHE_DIRECTORY, ~/.cache/localgpt (the memory index)
  pid file   <state>/run if $LOCALGPT_STATE_DIR is set, else $RUNTIME_DIRECTORY,
             $XDG_RUNTIME_DIR/localgpt, <state>/run
The *_DIRECTORY variables are set by systemd for the packaged service, which keeps its
config in /etc/localgpt and its data in /var/lib/localgpt and /var/cache/localgpt.

Environment:
  LOCALGPT_BIND, LOCALGPT_PORT, LOCALGPT_AUTH_TOKEN, LOCALGPT_MODEL, LOCALGPT_LOG override
  the config; OPENAI_API_KEY and ANTHROPIC_API_KEY are used when the config has no key.

Exit status:
  0 success, 1 failure, 2 usage error, 3 not running (daemon status),
  69 port in use or daemon already running, 78 bad config.
  systemd units should not restart on 69 or 78 (RestartPreventExitStatus=78 69).

Run `localgpt config init` to write a commented config, `localgpt doctor` to check a setup.";

#[derive(Parser, Debug)]
#[command(
    name = "localgpt",
    version,
    about = "A personal AI assistant that lives on your machine",
    after_long_help = MANUAL
)]
pub struct Cli {
    /// Config file (default: ~/.config/localgpt/config.toml; env LOCALGPT_CONFIG)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// More log output (-v debug, -vv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run, stop and inspect the daemon
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Create, show and locate the config file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Search, reindex and inspect the memory workspace (works with or without the daemon)
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// Ask one question (through the running daemon, or in this process)
    Ask {
        /// The question
        question: String,
        /// Model as provider/model (default: agent.default_model)
        #[arg(short, long)]
        model: Option<String>,
        /// Print the whole answer object as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check the setup (config, directories, databases, daemon, port, provider, heartbeat)
    /// and say how to fix what fails; exits 1 when a check fails
    Doctor {
        /// Print the checks as JSON
        #[arg(long)]
        json: bool,
    },
    /// Chat interactively with the running daemon (tokens stream as they arrive)
    Chat {
        /// Resume this session instead of starting a new one
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Model as provider/model for a new session
        #[arg(short, long)]
        model: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DaemonCommand {
    /// Start the daemon (in the background unless --foreground)
    Start(StartArgs),
    /// Stop a running daemon (SIGTERM, then wait)
    Stop,
    /// Show whether the daemon runs, its pid, address, uptime and version
    Status,
    /// Run one heartbeat cycle now (through the running daemon, else in this process)
    Heartbeat(HeartbeatArgs),
}

#[derive(Args, Debug)]
pub struct HeartbeatArgs {
    /// Print the run record as JSON (the shape of POST /api/heartbeat/run)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Stay in the foreground and log to stderr (for systemd and containers)
    #[arg(long)]
    pub foreground: bool,
    /// Log to this file instead of stderr (used by background start)
    #[arg(long, hide = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Write a commented config file with every default
    Init {
        /// Overwrite an existing file
        #[arg(long)]
        force: bool,
    },
    /// Print the effective config (file, env overrides, defaults) with secrets redacted
    Show,
    /// Print the config file's path
    Path,
}

#[derive(Subcommand, Debug)]
pub enum MemoryCommand {
    /// Search memory; words are joined, quoting is optional
    Search {
        /// What to look for
        #[arg(required = true, value_name = "QUERY")]
        query: Vec<String>,
        /// Most results to show (1-100)
        #[arg(short, long, default_value_t = crate::memory::DEFAULT_LIMIT as u16,
              value_parser = clap::value_parser!(u16).range(1..=crate::memory::MAX_LIMIT as i64))]
        limit: u16,
        /// Print the same JSON as GET /api/memory/search
        #[arg(long)]
        json: bool,
        /// Ranking: hybrid, lexical or vector (default: hybrid with embeddings configured,
        /// else lexical; lexical whenever vectors cannot be used)
        #[arg(long, value_name = "MODE", value_parser = clap::value_parser!(crate::memory::SearchMode))]
        mode: Option<crate::memory::SearchMode>,
    },
    /// Bring the index up to date with the workspace files
    Reindex {
        /// Re-read and re-chunk every file, changed or not
        #[arg(long)]
        force: bool,
    },
    /// Show workspace and index statistics
    Stats {
        /// Print the same JSON as GET /api/memory/stats
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Daemon(cmd) => run_daemon(cmd, cli.config, cli.verbose),
        Command::Config(cmd) => run_config(cmd, cli.config),
        Command::Memory(cmd) => run_memory(cmd, cli.config, cli.verbose),
        Command::Ask {
            question,
            model,
            json,
        } => crate::terminal::ask(cli.config.as_deref(), &question, model.as_deref(), json)
            .map(|_| 0),
        Command::Doctor { json } => run_doctor(cli.config, json),
        Command::Chat { session, model } => {
            crate::terminal::chat(cli.config.as_deref(), session, model.as_deref()).map(|_| 0)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("localgpt: {e}");
            e.exit_code()
        }
    }
}

fn run_daemon(
    cmd: DaemonCommand,
    config: Option<PathBuf>,
    verbose: u8,
) -> Result<i32, DaemonError> {
    match cmd {
        DaemonCommand::Start(args) if args.foreground => {
            daemon::run_foreground(&ForegroundOptions {
                config,
                verbose,
                log_file: args.log_file,
            })?;
            Ok(0)
        }
        DaemonCommand::Start(_) => {
            let info = daemon::start_background(config.as_deref(), verbose)?;
            match info.addr {
                Some(addr) => println!("localgpt started (pid {}) on http://{addr}", info.pid),
                None => println!("localgpt started (pid {}) without HTTP listener", info.pid),
            }
            Ok(0)
        }
        DaemonCommand::Stop => {
            let (cfg, paths) = daemon::load(config.as_deref())?;
            match daemon::stop(&paths, cfg.server.shutdown_grace.get())? {
                Some(pid) => println!("localgpt stopped (pid {pid})"),
                None => println!("localgpt is not running"),
            }
            Ok(0)
        }
        DaemonCommand::Heartbeat(args) => run_heartbeat(config, verbose, args.json),
        DaemonCommand::Status => {
            let (cfg, paths) = daemon::load(config.as_deref())?;
            let Some(info) = PidFile::probe(&paths.pid_file()) else {
                println!("localgpt is not running");
                return Ok(exit::NOT_RUNNING);
            };
            println!("pid:      {}", info.pid);
            let Some(addr) = info.addr else {
                println!("address:  none (server.enabled = false)");
                return Ok(0);
            };
            let client =
                crate::client::Client::new(&cfg.server.auth_token, Some(Duration::from_secs(5)));
            let bound = client.at(addr);
            println!("address:  {}", bound.base());
            match bound.get("/api/status") {
                Ok(status) => {
                    let uptime = status["uptime_seconds"].as_u64().unwrap_or(0);
                    println!("uptime:   {}", human_duration(uptime));
                    println!("version:  {}", status["version"].as_str().unwrap_or("?"));
                    println!("model:    {}", status["model"].as_str().unwrap_or("?"));
                    let hb = &status["heartbeat"];
                    if hb["enabled"] == true {
                        let at = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
                        println!(
                            "heartbeat: last {}, next {}",
                            at(&hb["last_run"]),
                            at(&hb["next_run"])
                        );
                    } else {
                        println!("heartbeat: off");
                    }
                    Ok(0)
                }
                Err(e) => {
                    println!("status:   not answering ({e})");
                    Ok(exit::FAILURE)
                }
            }
        }
    }
}

/// `daemon heartbeat`: a running daemon does the run (it owns the schedule and the state
/// file); without one, the run happens here, exactly as the daemon would do it. Exits 1 when
/// the run failed.
fn run_heartbeat(config: Option<PathBuf>, verbose: u8, json: bool) -> Result<i32, DaemonError> {
    let (cfg, paths) = daemon::load(config.as_deref())?;
    let _ = crate::logging::init(crate::logging::level("warn", verbose), None);
    paths
        .create_dirs()
        .map_err(sys("cannot create directories"))?;
    let record: Value = if let Some(info) = PidFile::probe(&paths.pid_file()) {
        let Some(addr) = info.addr else {
            return Err(DaemonError::Refused(format!(
                "the daemon (pid {}) runs without an HTTP listener (server.enabled = false), so \
                 it cannot be asked for a run; it runs the heartbeat on its own timer",
                info.pid
            )));
        };
        crate::client::Client::patient(&cfg)
            .at(addr)
            .post("/api/heartbeat/run", &serde_json::json!({}))?
    } else {
        let app = crate::app::App::open(cfg, paths)?;
        // The daemon's scanner keeps the index fresh; here, catch up before the turn so its
        // memory_search sees recent edits.
        if let Err(e) = app.agent.memory.reindex(false, None) {
            log::warn!("memory index not updated: {e}");
        }
        let run = app
            .heartbeat
            .run_now(&app.agent, Trigger::Cli)
            .map_err(|busy| DaemonError::Refused(busy.to_string()))?;
        run.to_json()
    };
    let run: Run = serde_json::from_value(record.clone()).map_err(|e| {
        DaemonError::Refused(format!(
            "the daemon answered a run record we cannot read: {e}"
        ))
    })?;
    if json {
        println!("{}", to_json(&record)?);
    } else {
        let mut head = format!("heartbeat: {}", run.status.as_str());
        if let Some(model) = &run.model {
            head.push_str(&format!(" ({model}, {} ms)", run.duration_ms));
        }
        if let Some(reason) = &run.reason {
            head.push_str(&format!(": {reason}"));
        }
        println!("{head}");
        if let Some(preview) = &run.preview {
            println!("{preview}");
        }
    }
    Ok(if run.status == RunStatus::Failed {
        exit::FAILURE
    } else {
        0
    })
}

fn run_config(cmd: ConfigCommand, flag: Option<PathBuf>) -> Result<i32, DaemonError> {
    let path = paths::config_file(flag.as_deref(), &paths::process_env);
    match cmd {
        ConfigCommand::Path => {
            println!("{}", path.display());
            Ok(0)
        }
        ConfigCommand::Init { force } => {
            if path.exists() && !force {
                return Err(DaemonError::Refused(format!(
                    "{} already exists; use --force to overwrite it",
                    path.display()
                )));
            }
            if let Some(dir) = path.parent() {
                paths::create_private_dir(dir)
                    .map_err(sys(format!("cannot create {}", dir.display())))?;
            }
            crate::durable::write_atomic(&path, config::EXAMPLE.as_bytes())
                .map_err(sys(format!("cannot write {}", path.display())))?;
            let _ = paths::make_private(&path);
            println!("wrote {}", path.display());
            Ok(0)
        }
        ConfigCommand::Show => {
            let cfg = Config::load(&path)?;
            println!("# effective config (file: {})", path.display());
            print!("{}", cfg.redacted_toml());
            Ok(0)
        }
    }
}

/// Memory commands open the index directly (SQLite WAL lets them share it with a running
/// daemon) and bring it up to date first, so they answer the same with or without one.
fn run_memory(
    cmd: MemoryCommand,
    config: Option<PathBuf>,
    verbose: u8,
) -> Result<i32, DaemonError> {
    let (cfg, paths) = daemon::load(config.as_deref())?;
    // Warnings (a rebuilt index, an unreadable file) matter here; info lines do not.
    let _ = crate::logging::init(crate::logging::level("warn", verbose), None);
    paths
        .create_dirs()
        .map_err(sys("cannot create directories"))?;
    let memory = Memory::open(&cfg.memory, &paths.workspace, &paths.index_db())?;
    match cmd {
        MemoryCommand::Search {
            query,
            limit,
            json,
            mode,
        } => {
            let text = query.join(" ");
            update_index(&memory, false)?;
            let outcome = memory.search_with(&text, usize::from(limit), mode)?;
            let results = outcome.hits;
            if json {
                let answer = crate::server::handlers::memory::SearchAnswer {
                    query: &text,
                    total: results.len(),
                    results,
                    mode: outcome.mode,
                };
                println!("{}", to_json(&answer)?);
            } else if results.is_empty() {
                println!("no results for {text:?}");
            } else {
                for (i, hit) in results.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    println!(
                        "{}:{}-{}  (score {:.2})",
                        hit.file, hit.line_start, hit.line_end, hit.score
                    );
                    for line in hit.content.lines() {
                        println!("    {line}");
                    }
                }
            }
        }
        MemoryCommand::Reindex { force } => {
            let report = update_index(&memory, force)?;
            println!(
                "indexed {} files ({} updated), {} chunks, in {} ms",
                report.files_processed, report.files_updated, report.chunks, report.duration_ms
            );
        }
        MemoryCommand::Stats { json } => {
            update_index(&memory, false)?;
            let s = memory.stats()?;
            if json {
                println!("{}", to_json(&s)?);
            } else {
                let f = &s.files;
                println!("workspace:     {}", s.workspace);
                println!("files:         {} Markdown files", f.total);
                println!(
                    "MEMORY.md:     {} bytes, {} lines",
                    f.memory_md.size_bytes, f.memory_md.lines
                );
                println!(
                    "HEARTBEAT.md:  {} bytes, {} lines",
                    f.heartbeat_md.size_bytes, f.heartbeat_md.lines
                );
                println!(
                    "daily logs:    {} ({} bytes)",
                    f.daily_logs.count, f.daily_logs.total_size_bytes
                );
                println!(
                    "index:         {} chunks from {} files, {} bytes on disk",
                    s.index.chunks, s.index.files, s.index.database_size_bytes
                );
                println!(
                    "last indexed:  {}",
                    s.index.last_indexed.as_deref().unwrap_or("never")
                );
            }
        }
    }
    Ok(0)
}

/// Runs an index pass, showing a progress line on stderr when many files need work.
fn update_index(memory: &Memory, force: bool) -> Result<ReindexReport, DaemonError> {
    use std::io::{IsTerminal, Write};
    const SHOW_FROM: usize = 200;
    let tty = std::io::stderr().is_terminal();
    let every = Duration::from_millis(if tty { 200 } else { 2000 });
    let mut last: Option<Instant> = None;
    let mut progress = |done: usize, total: usize| {
        if total < SHOW_FROM || (done < total && last.is_some_and(|t| t.elapsed() < every)) {
            return;
        }
        last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\rindexing: {done}/{total} files")
        } else {
            writeln!(err, "indexing: {done}/{total} files")
        };
        let _ = err.flush();
    };
    let report = memory.reindex(force, Some(&mut progress))?;
    if tty && last.is_some() {
        eprintln!();
    }
    Ok(report)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, DaemonError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| sys("cannot encode the answer as JSON")(e.into()))
}

fn run_doctor(flag: Option<PathBuf>, json: bool) -> Result<i32, DaemonError> {
    let config_file = paths::config_file(flag.as_deref(), &paths::process_env);
    let loaded = Config::load(&config_file);
    let workspace = loaded
        .as_ref()
        .map(|c| c.memory.workspace.clone())
        .unwrap_or_default();
    let paths = Paths::resolve(config_file, &workspace, &paths::process_env);
    let checks = crate::doctor::run(loaded.as_ref(), &paths);
    let failed = checks.iter().any(|c| c.failed());
    if json {
        let report = serde_json::json!({ "ok": !failed, "checks": checks });
        println!("{}", to_json(&report)?);
    } else {
        for c in &checks {
            let tag = match c.status {
                crate::doctor::Status::Ok => "ok  ",
                crate::doctor::Status::Warn => "warn",
                crate::doctor::Status::Fail => "FAIL",
            };
            let detail = c.detail.trim_end().replace('\n', &format!("\n{:32}", ""));
            println!("{tag} {:<26} {detail}", c.check);
            if let Some(fix) = &c.fix {
                println!("     {:<26} fix: {fix}", "");
            }
        }
    }
    Ok(if failed { exit::FAILURE } else { 0 })
}

fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m 5s");
        assert_eq!(human_duration(7300), "2h 1m");
        assert_eq!(human_duration(90000), "1d 1h");
    }
}
