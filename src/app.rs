//! The daemon's shared state: what every handler, the heartbeat and the CLI work on.

use std::time::Instant;

use crate::config::Config;
use crate::paths::Paths;

/// Everything a running daemon holds, shared by reference between threads.
pub struct App {
    pub config: Config,
    pub paths: Paths,
    pub started: Instant,
}

impl App {
    /// Builds the state for `config` and `paths`; directories must already exist.
    pub fn new(config: Config, paths: Paths) -> App {
        App {
            config,
            paths,
            started: Instant::now(),
        }
    }
}
