//! The daemon's shared state: what every handler, the heartbeat and the CLI work on.

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::memory::Memory;
use crate::paths::Paths;

/// Everything a running daemon holds, shared by reference between threads.
pub struct App {
    pub config: Config,
    pub paths: Paths,
    pub started: Instant,
    pub memory: Arc<Memory>,
}

impl App {
    /// Builds the state for `config` and `paths` (directories must already exist): opens
    /// the memory workspace and index, which does no indexing and so is quick.
    pub fn open(config: Config, paths: Paths) -> Result<App, String> {
        let memory = Memory::open(&config.memory, &paths.workspace, &paths.index_db())
            .map_err(|e| e.to_string())?;
        Ok(App {
            config,
            paths,
            started: Instant::now(),
            memory: Arc::new(memory),
        })
    }
}
