//! The heartbeat's timer thread: sleeps until the next run is due, runs it, repeats.
//!
//! It never polls: it waits on a channel with a timeout up to the due time (at most
//! [`MAX_SLEEP`] at once), so dropping the sender wakes it at once for shutdown. Runs
//! happen on this thread, one at a time, so timer runs cannot overlap each other; a run
//! started through the API is seen through the shared running mark.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use log::{error, info, warn};

use super::Heartbeat;
use super::schedule::{self, MAX_SLEEP};
use crate::agent::Agent;

/// The running timer; [`Timer::stop`] ends it.
pub struct Timer {
    heartbeat: Arc<Heartbeat>,
    /// Dropping it wakes the thread, which then exits.
    wake: Option<Sender<()>>,
    /// Disconnects when the thread has exited.
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Timer {
    /// Starts the timer thread when the heartbeat is enabled with a non-zero interval;
    /// otherwise the handle only serves to stop API-started runs on shutdown.
    pub fn spawn(heartbeat: Arc<Heartbeat>, agent: Arc<Agent>) -> Timer {
        let (wake_tx, wake_rx) = bounded::<()>(0);
        let (done_tx, done_rx) = bounded::<()>(0);
        let mut timer = Timer {
            heartbeat: heartbeat.clone(),
            wake: None,
            done: done_rx,
            thread: None,
        };
        let hb = &heartbeat;
        if !hb.timer_enabled() {
            info!("heartbeat timer off (heartbeat.enabled = false or heartbeat.interval = \"0\")");
            return timer;
        }
        let worker = heartbeat.clone();
        let spawned = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                run_timer(&worker, &agent, &wake_rx);
                drop(done_tx);
            });
        match spawned {
            Ok(thread) => {
                timer.wake = Some(wake_tx);
                timer.thread = Some(thread);
                info!(
                    "heartbeat every {}, next run at {}",
                    hb.config().interval,
                    hb.next_run()
                        .map(crate::clock::rfc3339)
                        .unwrap_or_else(|| "-".into())
                );
            }
            Err(e) => warn!("cannot start the heartbeat timer thread: {e}; no timer runs"),
        }
        timer
    }

    /// Stops the timer and asks a run in progress (timer or API) to stop; waits up to
    /// `grace` for the thread. Returns whether it ended in time (a turn stuck in a silent
    /// provider read ends at the provider's read timeout, and is left behind).
    pub fn stop(mut self, grace: Duration) -> bool {
        self.heartbeat.stop_runs();
        self.wake = None;
        let finished = matches!(
            self.done.recv_timeout(grace),
            Err(RecvTimeoutError::Disconnected)
        );
        if finished {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        } else {
            warn!("the heartbeat run did not stop within {grace:?}; not waiting for it");
        }
        finished
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // Without a stop() (an early error return), still end the thread and any run.
        self.heartbeat.stop_runs();
        self.wake = None;
    }
}

fn run_timer(hb: &Heartbeat, agent: &Agent, wake: &Receiver<()>) {
    loop {
        if hb.is_stopping() {
            return;
        }
        let Some(due) = hb.next_run() else {
            return;
        };
        let now = hb.now();
        if now < due {
            let wait = schedule::until(now, due).min(MAX_SLEEP);
            match wake.recv_timeout(wait) {
                // Due, or MAX_SLEEP passed, or a run by hand moved the schedule: look again.
                Err(RecvTimeoutError::Timeout) => continue,
                // The sender was dropped: stop.
                _ => return,
            }
        }
        // A bug in one run must not end the heartbeat for the rest of the daemon's life.
        if catch_unwind(AssertUnwindSafe(|| hb.tick(agent))).is_err() {
            error!("a heartbeat run panicked; the timer goes on");
        }
    }
}
