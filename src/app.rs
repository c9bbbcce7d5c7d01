//! The daemon's shared state: what every handler, the heartbeat and the CLI work on.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use jiff::tz::TimeZone;

use crate::agent::Providers;
use crate::agent::approval::Approvals;
use crate::agent::chat::BusySessions;
use crate::agent::tools::ToolContext;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::heartbeat::Heartbeat;
use crate::memory::Memory;
use crate::paths::Paths;
use crate::sessions::SessionStore;

/// Everything a running daemon holds, shared by reference between threads.
pub struct App {
    pub config: Config,
    pub paths: Paths,
    pub started: Instant,
    /// The user's zone (`heartbeat.timezone`, else local): dates of daily logs, active hours.
    pub zone: TimeZone,
    pub memory: Arc<Memory>,
    pub providers: Providers,
    pub tools: ToolContext,
    pub sessions: SessionStore,
    pub approvals: Approvals,
    pub busy: BusySessions,
    /// Open WebSocket connections.
    pub websockets: AtomicUsize,
    /// Heartbeat runs: history, schedule, the run in progress.
    pub heartbeat: Heartbeat,
}

impl App {
    /// Opens the workspace, the index and the session store; directories must exist.
    pub fn open(config: Config, paths: Paths) -> Result<App, String> {
        let memory = Memory::open(&config.memory, &paths.workspace, &paths.index_db())
            .map(Arc::new)
            .map_err(|e| format!("cannot open memory: {e}"))?;
        let sessions = SessionStore::open(&paths.sessions_db()).map_err(|e| e.to_string())?;
        let tools = ToolContext::new(memory.clone(), &config.tools, &config.heartbeat.timezone);
        Ok(App {
            zone: crate::clock::zone(&config.heartbeat.timezone),
            providers: Providers::new(&config.providers),
            tools,
            memory,
            sessions,
            approvals: Approvals::default(),
            busy: BusySessions::default(),
            websockets: AtomicUsize::new(0),
            heartbeat: Heartbeat::open(
                &config.heartbeat,
                &paths.heartbeat_state(),
                Arc::new(SystemClock),
            ),
            started: Instant::now(),
            config,
            paths,
        })
    }
}
