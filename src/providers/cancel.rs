//! Cancelling a model call while it waits for the provider.
//!
//! A turn notices a client that left, a WebSocket `cancel` or a heartbeat deadline between
//! steps and whenever a delta arrives; a provider that goes silent (thinking, or stuck)
//! would hold the turn until its read timeout. So while a call runs, the calling thread
//! names a check, and the HTTP transport waits for input in short slices, asking it
//! between slices: a cancelled call ends within about [`SLICE`].

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::Error;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};

/// Whether the call in progress should stop.
pub type CancelCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// How often a waiting read asks whether it should stop.
pub const SLICE: Duration = Duration::from_millis(200);

thread_local! {
    static CHECK: RefCell<Option<CancelCheck>> = const { RefCell::new(None) };
}

/// Runs `f` (a model call) with `check` watching it on this thread.
pub fn watched<T>(check: Option<CancelCheck>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<CancelCheck>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CHECK.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CHECK.with(|c| c.replace(check));
    let _restore = Restore(previous);
    f()
}

/// `None` when nothing watches this thread's call.
fn requested() -> Option<bool> {
    CHECK.with(|c| c.borrow().as_ref().map(|check| check()))
}

/// The default connector, with transports whose reads can be cancelled.
#[derive(Debug, Default)]
pub struct Interruptible(DefaultConnector);

impl Connector<()> for Interruptible {
    type Out = Slicing;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Slicing>, Error> {
        Ok(self.0.connect(details, chained)?.map(Slicing))
    }
}

/// A transport that waits for input in slices, asking the thread's check between them.
pub struct Slicing(Box<dyn Transport>);

impl fmt::Debug for Slicing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Slicing").field(&self.0).finish()
    }
}

impl Transport for Slicing {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.0.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        if requested().is_none() {
            return self.0.await_input(timeout);
        }
        let limit = timeout.for_read();
        let deadline = limit.not_zero().map(|d| Instant::now() + *d);
        loop {
            if requested() == Some(true) {
                // Not `Interrupted`: readers up the stack retry those.
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the call was cancelled",
                )));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let slice = left.map_or(SLICE, |l| l.min(SLICE));
            if slice.is_zero() {
                return Err(Error::Timeout(limit.reason));
            }
            let sliced = NextTimeout {
                after: slice.into(),
                reason: limit.reason,
                per_read: None,
                per_write: timeout.per_write,
            };
            match self.0.await_input(sliced) {
                Err(Error::Timeout(_)) if left.is_none_or(|l| l > SLICE) => continue,
                other => return other,
            }
        }
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}
