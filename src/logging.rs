//! Log setup: clean lines on stderr in the foreground (journald adds timestamps), timestamped
//! lines in a file when backgrounded.

use std::fs::OpenOptions;
use std::io::{LineWriter, Write};
use std::path::Path;

use log::LevelFilter;
use simplelog::{ConfigBuilder, WriteLogger};

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

/// Logs to `file` (appending, timestamped) or to stderr (no timestamps). A second call in
/// the same process is ignored.
pub fn init(level: LevelFilter, file: Option<&Path>) -> std::io::Result<()> {
    let sink: Box<dyn Write + Send> = match file {
        Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(std::io::stderr()),
    };
    // One write(2) per line: readers of the log never see half lines.
    let _ = WriteLogger::init(
        level,
        builder(file.is_some()).build(),
        LineWriter::new(sink),
    );
    install_panic_hook();
    Ok(())
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
