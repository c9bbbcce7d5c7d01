//! localgpt: a personal AI assistant daemon.
//!
//! The binary (`src/main.rs`) only parses arguments; everything else lives here so the
//! integration tests run the same code. Start with [`daemon::run_foreground`].
#![forbid(unsafe_code)]

pub mod agent;
pub mod app;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dbfile;
pub mod doctor;
pub mod durable;
pub mod heartbeat;
pub mod logging;
pub mod mcp;
pub mod memory;
pub mod paths;
pub mod providers;
pub mod reach;
pub mod server;
pub mod sessions;
pub mod sync;
pub mod terminal;
