//! Log setup: clean lines on stderr in the foreground (journald adds timestamps), timestamped
//! lines in a file when backgrounded.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use log::LevelFilter;
use simplelog::{ConfigBuilder, WriteLogger};

use crate::sync::lock;

/// The level from config (`logging.level`), raised one step per `-v`.
pub fn level(configured: &str, verbose: u8) -> LevelFilter {
    let base = match configured.to_ascii_lowercase().as_str() {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => LevelFilter::Info,
    };
    let mut level = base;
    for _ in 0..verbose {
        level = match level {
            LevelFilter::Off => LevelFilter::Error,
            LevelFilter::Error => LevelFilter::Warn,
            LevelFilter::Warn => LevelFilter::Info,
            LevelFilter::Info => LevelFilter::Debug,
            _ => LevelFilter::Trace,
        };
    }
    level
}

fn builder(timestamps: bool) -> ConfigBuilder {
    let mut b = ConfigBuilder::new();
    b.set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .add_filter_ignore_str("rustls")
        .add_filter_ignore_str("ureq")
        .add_filter_ignore_str("tungstenite");
    if timestamps {
        b.set_time_level(LevelFilter::Error)
            .set_time_format_rfc3339();
    } else {
        b.set_time_level(LevelFilter::Off);
    }
    b
}

/// How long a log line may wait in memory before it is written. Lines of a burst (one
/// access-log line per request under load) go out together in one write(2).
const FLUSH_DELAY: Duration = Duration::from_millis(50);

/// Buffered past this, a write goes straight through (a stalled sink never grows memory).
const MAX_BUFFERED: usize = 256 * 1024;

struct Shared {
    /// Pending bytes, and whether the flusher has been woken for them.
    pending: Mutex<(Vec<u8>, bool)>,
    wake: Condvar,
    sink: Mutex<Box<dyn Write + Send>>,
}

impl Shared {
    fn flush_now(&self) -> io::Result<()> {
        let data = std::mem::take(&mut lock(&self.pending).0);
        let mut sink = lock(&self.sink);
        sink.write_all(&data)?;
        sink.flush()
    }
}

/// A log sink that writes at most [`FLUSH_DELAY`] late: a per-request access line would
/// otherwise cost a system call per request. The flusher thread sleeps on a condition
/// variable while there is nothing to write, so an idle daemon never wakes up for it.
struct Deferred(Arc<Shared>);

impl Deferred {
    fn start(sink: Box<dyn Write + Send>) -> io::Result<Deferred> {
        let shared = Arc::new(Shared {
            pending: Mutex::new((Vec::new(), false)),
            wake: Condvar::new(),
            sink: Mutex::new(sink),
        });
        let flusher = shared.clone();
        std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                loop {
                    {
                        let guard = lock(&flusher.pending);
                        let mut guard = flusher
                            .wake
                            .wait_while(guard, |(_, armed)| !*armed)
                            .unwrap_or_else(|p| p.into_inner());
                        guard.1 = false;
                    }
                    std::thread::sleep(FLUSH_DELAY);
                    let _ = flusher.flush_now();
                }
            })?;
        Ok(Deferred(shared))
    }
}

impl Write for Deferred {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut pending = lock(&self.0.pending);
        pending.0.extend_from_slice(data);
        if pending.0.len() > MAX_BUFFERED {
            drop(pending);
            self.0.flush_now()?;
        } else if !pending.1 {
            pending.1 = true;
            self.0.wake.notify_one();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush_now()
    }
}

/// Logs to `file` (appending, timestamped) or to stderr (no timestamps). A second call in
/// the same process is ignored. Call [`flush`] before the process exits.
pub fn init(level: LevelFilter, file: Option<&Path>) -> std::io::Result<()> {
    let sink: Box<dyn Write + Send> = match file {
        Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(std::io::stderr()),
    };
    let _ = WriteLogger::init(
        level,
        builder(file.is_some()).build(),
        Deferred::start(sink)?,
    );
    install_panic_hook();
    Ok(())
}

/// Writes out every buffered log line.
pub fn flush() {
    log::logger().flush();
}

/// Panics go through the logger (one line with thread and place) so they reach the log file
/// of a backgrounded daemon.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log::error!("panic in thread {name} at {place}: {what}");
        log::logger().flush();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_raises_level() {
        assert_eq!(level("info", 0), LevelFilter::Info);
        assert_eq!(level("info", 1), LevelFilter::Debug);
        assert_eq!(level("warn", 2), LevelFilter::Debug);
        assert_eq!(level("info", 9), LevelFilter::Trace);
    }
}
