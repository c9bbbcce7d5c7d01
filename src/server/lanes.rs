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

/// What a lane holds: requests admitted and not yet finished (running or waiting), and
/// WebSocket turns of the chat lane, which run on their connection's thread but count
/// against the same limit.
pub struct Admission {
    load: AtomicUsize,
    /// `workers + queue`: what the lane holds before it answers 503.
    capacity: usize,
}

impl Admission {
    /// A lane that holds `capacity` requests (its workers and its queue).
    pub fn new(capacity: usize) -> Arc<Admission> {
        Arc::new(Admission {
            load: AtomicUsize::new(0),
            capacity,
        })
    }

    fn enter(&self) -> bool {
        if self.load.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.load.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    fn leave(&self) {
        self.load.fetch_sub(1, Ordering::SeqCst);
    }

    /// A place in the lane for work that does not go through its workers; `None` when
    /// the lane is full.
    pub fn ticket(self: &Arc<Self>) -> Option<Ticket> {
        self.enter().then(|| Ticket(self.clone()))
    }
}

/// A place held in a lane; dropping it frees the place.
pub struct Ticket(Arc<Admission>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// A pool of workers and the requests admitted to it.
pub struct LaneHandle {
    tx: Sender<Job>,
    /// Jobs a free worker takes before any in `tx` (`/health`: a liveness probe must not
    /// wait behind a queue of searches).
    urgent: Sender<Job>,
    admission: Arc<Admission>,
}

impl LaneHandle {
    /// Hands `job` to the lane; gives it back when the lane is full. Admission counts
    /// requests rather than channel slots: a burst must not be refused just because idle
    /// workers have not yet woken up to take what was sent a moment ago.
    pub fn admit(&self, job: Job) -> Option<Job> {
        if !self.admission.enter() {
            return Some(job);
        }
        let tx = match job.route {
            Ok(Route::Health) => &self.urgent,
            _ => &self.tx,
        };
        match tx.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.admission.leave();
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
    admission: Arc<Admission>,
    serve: Arc<dyn Fn(Job) + Send + Sync>,
    done: &Sender<()>,
) -> std::io::Result<LaneHandle> {
    let capacity = admission.capacity;
    // Admission keeps at most `capacity` jobs in flight, so the channel never fills.
    let (tx, rx) = bounded::<Job>(capacity);
    let (urgent, urgent_rx) = bounded::<Job>(capacity);
    for i in 0..workers {
        let (rx, urgent_rx) = (rx.clone(), urgent_rx.clone());
        let (serve, done, admission) = (serve.clone(), done.clone(), admission.clone());
        thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                while let Some(job) = next_job(&urgent_rx, &rx) {
                    // Handlers catch their own panics; this catches the streaming routes'
                    // too, so the worker and the lane's count survive anything.
                    let _ = catch_unwind(AssertUnwindSafe(|| serve(job)));
                    admission.leave();
                }
                drop(done);
            })?;
    }
    Ok(LaneHandle {
        tx,
        urgent,
        admission,
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
