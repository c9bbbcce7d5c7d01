//! The daemon's shared state: the agent, the session store and the heartbeat. Handlers,
//! the timer and the CLI work on it; nothing it owns refers back to it.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::agent::Agent;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::heartbeat::Heartbeat;
use crate::memory::{Memory, MemoryError};
use crate::paths::Paths;
use crate::sessions::{SessionStore, StoreError};

/// Everything a running daemon holds, shared by reference between threads.
pub struct App {
    pub config: Config,
    pub paths: Paths,
    pub started: Instant,
    pub agent: Arc<Agent>,
    pub sessions: SessionStore,
    /// Heartbeat runs: history, schedule, the run in progress.
    pub heartbeat: Arc<Heartbeat>,
}

/// Why the daemon's state could not be opened.
#[derive(Debug)]
pub enum OpenError {
    Memory(MemoryError),
    Sessions(StoreError),
    /// A value only checkable against what exists (a tool name) is wrong.
    Config(ConfigError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Memory(e) => write!(f, "cannot open memory: {e}"),
            OpenError::Sessions(e) => write!(f, "{e}"),
            OpenError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl App {
    /// Opens the workspace, the index and the session store; directories must exist.
    pub fn open(config: Config, paths: Paths) -> Result<App, OpenError> {
        App::open_with_clock(config, paths, Arc::new(SystemClock))
    }

    /// [`App::open`] with time from `clock`.
    pub fn open_with_clock(
        config: Config,
        paths: Paths,
        clock: Arc<dyn Clock>,
    ) -> Result<App, OpenError> {
        let memory = Memory::open(&config.memory, &paths.workspace, &paths.index_db())
            .map(Arc::new)
            .map_err(OpenError::Memory)?;
        let sessions = SessionStore::open(&paths.sessions_db()).map_err(OpenError::Sessions)?;
        let agent = Agent::new(&config, memory, clock.clone()).map_err(OpenError::Config)?;
        let heartbeat = Heartbeat::open(
            &config.heartbeat,
            &config.agent.default_model,
            &paths.heartbeat_state(),
            clock,
        );
        Ok(App {
            agent: Arc::new(agent),
            sessions,
            heartbeat: Arc::new(heartbeat),
            started: Instant::now(),
            config,
            paths,
        })
    }
}
