//! One thread per server keeps it running: start it, shake hands, list its tools, then
//! watch it (its exit, `list_changed`, a ping when idle or after a call timed out) and
//! restart it with backoff when it exits or stops answering.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

use super::State;
use super::connection::{CallError, Connection, Event};
use super::process::{self, CLOSE_WAIT, Process};
use super::protocol::{self, Handshake, ListedTool};
use crate::config::McpServerConfig;
use crate::sync::lock;

/// First wait before a restart; it doubles with each failure in a row.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between restarts.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A server that ran this long before failing starts again from [`BACKOFF_MIN`].
const STABLE: Duration = Duration::from_secs(60);

/// The timeouts and places every server of a daemon shares.
#[derive(Debug, Clone)]
pub struct Settings {
    pub call_timeout: Duration,
    pub start_timeout: Duration,
    pub ping_interval: Duration,
    pub workspace: std::path::PathBuf,
}

/// What is known about a server now.
pub(super) struct Live {
    pub state: State,
    /// Why it failed (also kept while it starts again).
    pub reason: Option<String>,
    /// Its tools as last listed: kept while it restarts, so the model's tool list (and the
    /// prompt cache) stays the same and calls fail as tool errors.
    pub tools: Arc<Vec<ListedTool>>,
    /// Set while it is ready.
    pub conn: Option<Arc<Connection>>,
    pub restarts: u64,
    pub handshake: Option<Handshake>,
}

/// One configured server, shared by its supervisor thread and the tool calls.
pub(super) struct Server {
    pub name: String,
    pub config: McpServerConfig,
    live: Mutex<Live>,
    stopping: AtomicBool,
    events: Sender<Event>,
    /// Taken by the supervisor thread when it starts.
    inbox: Mutex<Option<Receiver<Event>>>,
}

impl Server {
    pub fn new(name: &str, config: &McpServerConfig) -> Server {
        let (events, inbox) = unbounded();
        Server {
            name: name.to_string(),
            config: config.clone(),
            live: Mutex::new(Live {
                state: State::Starting,
                reason: None,
                tools: Arc::new(Vec::new()),
                conn: None,
                restarts: 0,
                handshake: None,
            }),
            stopping: AtomicBool::new(false),
            events,
            inbox: Mutex::new(Some(inbox)),
        }
    }

    pub fn live(&self) -> MutexGuard<'_, Live> {
        lock(&self.live)
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Asks the supervisor to stop the server.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.events.send(Event::Stop);
    }

    /// A call on connection `generation` timed out: the supervisor pings the server.
    pub fn suspect(&self, generation: u64) {
        let _ = self.events.send(Event::Suspect(generation));
    }

    pub fn take_inbox(&self) -> Option<Receiver<Event>> {
        lock(&self.inbox).take()
    }
}

/// The supervisor thread's body: runs `server` until it is asked to stop.
pub(super) fn supervise(server: Arc<Server>, settings: Settings, inbox: Receiver<Event>) {
    let name = server.name.clone();
    let mut backoff = BACKOFF_MIN;
    let mut generation = 0;
    while !server.stopping() {
        generation += 1;
        if generation > 1 {
            server.live().restarts += 1;
        }
        server.live().state = State::Starting;
        let started = Instant::now();
        let why = match start(&server, &settings, generation) {
            Err(why) => why,
            Ok((process, conn)) => {
                let why = watch(&server, &settings, &conn, &inbox);
                server.live().conn = None;
                let ended = process.stop(|| conn.close_input(), CLOSE_WAIT);
                match why {
                    None => {
                        log::info!("mcp[{name}]: stopped (the process {ended})");
                        break;
                    }
                    Some(why) => format!("{why} (the process {ended})"),
                }
            }
        };
        if server.stopping() {
            break;
        }
        if started.elapsed() >= STABLE {
            backoff = BACKOFF_MIN;
        }
        log::warn!("mcp[{name}]: {why}; starting it again in {backoff:?}");
        {
            let mut live = server.live();
            live.state = State::Failed;
            live.reason = Some(why);
        }
        // Only a stop ends the wait early: news from the old connection is stale.
        let deadline = Instant::now() + backoff;
        loop {
            match inbox.recv_deadline(deadline) {
                Ok(Event::Stop) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return;
                }
                Ok(_) => {}
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => break,
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Starts the process, shakes hands and lists the tools; on success the server is ready.
fn start(
    server: &Server,
    settings: &Settings,
    generation: u64,
) -> Result<(Process, Arc<Connection>), String> {
    let name = &server.name;
    let (process, pipes) = process::spawn(name, &server.config, &settings.workspace)?;
    log::debug!("mcp[{name}]: started as pid {}", process.pid());
    let conn = match Connection::open(
        name,
        generation,
        pipes.stdin,
        pipes.stdout,
        server.events.clone(),
    ) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            let ended = process.stop(|| {}, Duration::ZERO);
            return Err(format!(
                "cannot start its reader threads: {e} (the process {ended})"
            ));
        }
    };
    let stopping = || server.stopping();
    let ready = protocol::initialize(&conn, settings.start_timeout, &stopping).and_then(|hs| {
        protocol::list_tools(&conn, settings.start_timeout, &stopping).map(|tools| (hs, tools))
    });
    match ready {
        Ok((handshake, tools)) => {
            log::info!(
                "mcp[{name}]: ready with {} tools ({}, protocol {})",
                tools.len(),
                handshake.server,
                handshake.protocol_version
            );
            let mut live = server.live();
            live.state = State::Ready;
            live.reason = None;
            live.tools = Arc::new(tools);
            live.conn = Some(conn.clone());
            live.handshake = Some(handshake);
            Ok((process, conn))
        }
        Err(why) => {
            let ended = process.stop(|| conn.close_input(), CLOSE_WAIT);
            Err(format!("{why} (the process {ended})"))
        }
    }
}

/// Watches a ready server. `None`: asked to stop; `Some(why)`: it must be restarted.
fn watch(
    server: &Server,
    settings: &Settings,
    conn: &Connection,
    inbox: &Receiver<Event>,
) -> Option<String> {
    let generation = conn.generation();
    let stopping = || server.stopping();
    let check = || match protocol::ping(conn, settings.start_timeout, &stopping) {
        Ok(()) => None,
        Err(CallError::Cancelled) => Some(None),
        Err(e) => Some(Some(format!(
            "it stopped answering (ping: {e}; mcp.start_timeout = {:?})",
            settings.start_timeout
        ))),
    };
    loop {
        let event = if settings.ping_interval.is_zero() {
            inbox.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            inbox.recv_timeout(settings.ping_interval)
        };
        match event {
            Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return None,
            Ok(Event::Closed(g, why)) if g == generation => return Some(why),
            Ok(Event::ListChanged(g)) if g == generation => {
                match protocol::list_tools(conn, settings.start_timeout, &stopping) {
                    Ok(tools) => {
                        log::info!(
                            "mcp[{}]: tool list changed: {} tools",
                            server.name,
                            tools.len()
                        );
                        server.live().tools = Arc::new(tools);
                    }
                    Err(_) if server.stopping() => return None,
                    Err(why) => return Some(why),
                }
            }
            Ok(Event::Suspect(g)) if g == generation => {
                if let Some(outcome) = check() {
                    return outcome;
                }
            }
            // An idle server is pinged; one busy with calls shows it is alive by answering.
            Err(RecvTimeoutError::Timeout) if conn.in_flight() == 0 => {
                if let Some(outcome) = check() {
                    return outcome;
                }
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
        }
    }
}
