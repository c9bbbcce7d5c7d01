//! The periodic scan thread that keeps the index following the files, and (with
//! embeddings configured) the embedding thread beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use log::{debug, info, warn};

use super::Memory;

impl Memory {
    /// Starts the periodic scan thread. Its first scan runs at once (the index at start);
    /// then one every `interval` (zero: no periodic scans). With embeddings configured,
    /// also starts the thread that embeds new chunks in the background. The threads stop
    /// when the handle is dropped or [`ScanHandle::stop`] is called, between two batches of
    /// a long index (or of embeddings) at the latest.
    pub fn spawn_scanner(self: &Arc<Self>, interval: Duration) -> ScanHandle {
        let stop = Arc::new(AtomicBool::new(false));
        // Never sent on: dropping the sender (in `ScanHandle::shut`) wakes both threads.
        let (wake_tx, stop_rx) = bounded::<()>(0);
        let wake_rx = stop_rx.clone();
        let memory = Arc::clone(self);
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("memory-scan".into())
            .spawn(move || {
                let mut first = true;
                let mut last_error = None;
                loop {
                    memory.scan_once(first, &flag, &mut last_error);
                    first = false;
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let wait = if interval.is_zero() {
                        Duration::MAX
                    } else {
                        interval
                    };
                    match wake_rx.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
            });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(
                    "memory: cannot start the scan thread ({e}); the index will not follow edits"
                );
                None
            }
        };
        let embedder = self.embedding.as_ref().and_then(|emb| {
            emb.expect_worker();
            let memory = Arc::clone(self);
            let flag = Arc::clone(&stop);
            let stop_rx = stop_rx.clone();
            let (done_tx, done_rx) = bounded::<()>(1);
            std::thread::Builder::new()
                .name("memory-embed".into())
                .spawn(move || {
                    memory.run_embedder(&flag, &stop_rx);
                    let _ = done_tx.send(());
                })
                .map_err(|e| {
                    warn!("memory: cannot start the embedding thread ({e}); search stays lexical")
                })
                .ok()
                .map(|t| (t, done_rx))
        });
        ScanHandle {
            stop,
            wake: Some(wake_tx),
            thread,
            embedder,
        }
    }

    /// One periodic pass. A failure is logged once, not every few seconds while it lasts
    /// (an unmounted workspace, a full disk), and its end is logged too.
    fn scan_once(&self, first: bool, stop: &AtomicBool, last_error: &mut Option<String>) {
        let started = Instant::now();
        let result = self.sync(false, None, stop);
        match (&result, last_error.as_ref()) {
            (Ok(_), Some(_)) => info!("memory: scanning works again"),
            (Err(e), Some(last)) if e.to_string() == *last => return,
            _ => {}
        }
        *last_error = result.as_ref().err().map(|e| e.to_string());
        match result {
            Ok(report) if first => info!(
                "memory: {} files, {} chunks indexed ({} updated) in {} ms",
                report.files_processed, report.chunks, report.files_updated, report.duration_ms
            ),
            Ok(report) if report.files_updated > 0 => debug!(
                "memory: {} files updated in {} ms",
                report.files_updated, report.duration_ms
            ),
            Ok(_) => {}
            Err(e) => warn!(
                "memory: scan failed after {} ms: {e}",
                started.elapsed().as_millis()
            ),
        }
    }
}

/// How long stopping waits for the embedding thread. It stops between batches; one
/// request to a slow embedder may take up to `memory.embeddings.read_timeout`, and a
/// shutdown must not wait for that: the batch is simply done again at the next start.
const EMBEDDER_STOP_WAIT: Duration = Duration::from_secs(2);

/// Stops the periodic scan thread (and the embedding thread) when dropped.
pub struct ScanHandle {
    stop: Arc<AtomicBool>,
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The embedding thread and the channel it signals its end on.
    embedder: Option<(JoinHandle<()>, Receiver<()>)>,
}

impl ScanHandle {
    /// Stops the scanner and waits for it: a running index stops after its current batch.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Dropping the sender wakes the threads from their waits.
        self.wake = None;
        if let Some((t, done)) = self.embedder.take() {
            match done.recv_timeout(EMBEDDER_STOP_WAIT) {
                Err(RecvTimeoutError::Timeout) => {
                    info!("memory: not waiting for the embedder's answer to the current batch")
                }
                _ => {
                    let _ = t.join();
                }
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ScanHandle {
    fn drop(&mut self) {
        self.shut();
    }
}
