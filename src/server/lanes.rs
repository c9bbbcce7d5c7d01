//! Lanes: a bounded queue and a fixed set of worker threads each. The listener admits a
//! request to its route's lane or, when the lane is full, answers `503` at once.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use super::error::ApiError;
use super::router::Route;

/// A request waiting for a worker.
pub struct Job {
    pub request: tiny_http::Request,
    pub route: Result<Route, ApiError>,
    pub received: Instant,
}

/// A pool of workers and the requests admitted to it.
pub struct LaneHandle {
    tx: Sender<Job>,
    /// Jobs a free worker takes before any in `tx` (`/health`: a liveness probe must not
    /// wait behind a queue of searches).
    urgent: Sender<Job>,
    /// Requests admitted and not yet finished (running or waiting).
    load: Arc<AtomicUsize>,
    /// `workers + queue`: what the lane holds before it answers 503.
    capacity: usize,
}

impl LaneHandle {
    /// Hands `job` to the lane; gives it back when the lane is full. Admission counts
    /// requests rather than channel slots: a burst must not be refused just because idle
    /// workers have not yet woken up to take what was sent a moment ago.
    pub fn admit(&self, job: Job) -> Option<Job> {
        if self.load.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.load.fetch_sub(1, Ordering::SeqCst);
            return Some(job);
        }
        let tx = match job.route {
            Ok(Route::Health) => &self.urgent,
            _ => &self.tx,
        };
        match tx.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.load.fetch_sub(1, Ordering::SeqCst);
                Some(job)
            }
        }
    }
}

/// Starts `workers` threads serving jobs with `serve`. Each holds a clone of `done`, so
/// its receiver disconnects once every worker has exited.
pub fn spawn_lane(
    name: &'static str,
    workers: usize,
    queue: usize,
    serve: Arc<dyn Fn(Job) + Send + Sync>,
    done: &Sender<()>,
) -> std::io::Result<LaneHandle> {
    let capacity = workers + queue;
    // Admission keeps at most `capacity` jobs in flight, so the channel never fills.
    let (tx, rx) = bounded::<Job>(capacity);
    let (urgent, urgent_rx) = bounded::<Job>(capacity);
    let load = Arc::new(AtomicUsize::new(0));
    for i in 0..workers {
        let (rx, urgent_rx) = (rx.clone(), urgent_rx.clone());
        let (serve, done, load) = (serve.clone(), done.clone(), load.clone());
        thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                while let Some(job) = next_job(&urgent_rx, &rx) {
                    // Handlers catch their own panics; this catches the streaming routes'
                    // too, so the worker and the lane's count survive anything.
                    let _ = catch_unwind(AssertUnwindSafe(|| serve(job)));
                    load.fetch_sub(1, Ordering::SeqCst);
                }
                drop(done);
            })?;
    }
    Ok(LaneHandle {
        tx,
        urgent,
        load,
        capacity,
    })
}

/// The next job for a worker: an urgent one when there is one. `None` once both channels
/// are closed and empty.
fn next_job(urgent: &Receiver<Job>, normal: &Receiver<Job>) -> Option<Job> {
    if let Ok(job) = urgent.try_recv() {
        return Some(job);
    }
    crossbeam_channel::select! {
        recv(urgent) -> job => job.ok().or_else(|| normal.recv().ok()),
        recv(normal) -> job => job.ok().or_else(|| urgent.recv().ok()),
    }
}
