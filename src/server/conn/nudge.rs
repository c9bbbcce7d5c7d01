//! A workaround for a tiny_http 0.12 bug that can leave a new connection unserved.
//!
//! tiny_http gives each accepted connection to its own thread pool. The pool only queues a
//! connection (instead of starting a thread) while it counts an idle thread, but a thread
//! it has just woken is still counted as idle until it runs. In a burst of connects, later
//! connections are queued for wake-ups no thread receives, and they wait until some other
//! connection closes and frees a thread: with keep-alive clients that may be never
//! (`scripts/repro-pool-stall.sh` shows it on a bare tiny_http server too).
//!
//! A queued connection is taken by the next thread that finishes a connection. So while
//! requests are coming in, this thread opens a few connections to the server every
//! [`TICK`] and closes them at once: tiny_http hands each to a thread (a new one when all
//! are busy), the thread sees the end of the connection straight away and then takes the
//! next queued connection. An idle daemon does nothing: the thread sleeps until a request
//! arrives. The cost while busy is [`PER_TICK`] connects per tick, none of which reaches a
//! handler.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

/// How often to nudge while requests come in.
const TICK: Duration = Duration::from_millis(100);
/// Connections per tick: each can free one stranded connection.
const PER_TICK: usize = 4;
/// How long after the last request nudging goes on (a stranded connection has sent no
/// request the listener could see).
const LINGER: Duration = Duration::from_secs(2);

struct Shared {
    started: Instant,
    /// Milliseconds after `started` of the last request.
    last_request_ms: AtomicU64,
    /// The thread waits for a wake-up rather than ticking.
    asleep: AtomicBool,
}

/// The listener's handle: report requests; dropping it stops the thread.
pub struct Nudger {
    shared: Arc<Shared>,
    wake: Sender<()>,
}

impl Nudger {
    /// Starts the thread for a server listening on `addr`.
    pub fn start(addr: SocketAddr) -> std::io::Result<Nudger> {
        let shared = Arc::new(Shared {
            started: Instant::now(),
            last_request_ms: AtomicU64::new(0),
            asleep: AtomicBool::new(true),
        });
        let (wake, woken) = bounded::<()>(1);
        let target = SocketAddr::new(reachable(addr.ip()), addr.port());
        let inner = shared.clone();
        thread::Builder::new()
            .name("pool-nudge".into())
            .spawn(move || run(&inner, &woken, target))?;
        Ok(Nudger { shared, wake })
    }

    /// Called by the listener for every request: cheap (a store, and a channel send only
    /// when the thread sleeps).
    pub fn saw_request(&self) {
        let s = &self.shared;
        s.last_request_ms
            .store(s.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        if s.asleep.load(Ordering::Relaxed) && s.asleep.swap(false, Ordering::SeqCst) {
            let _ = self.wake.try_send(());
        }
    }
}

/// The address to connect to for a listener bound to `ip` (an unspecified bind is
/// reached on loopback).
fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

fn run(shared: &Shared, woken: &Receiver<()>, target: SocketAddr) {
    loop {
        // Asleep: wait for the listener's wake-up (or its end).
        if woken.recv().is_err() {
            return;
        }
        loop {
            match woken.recv_timeout(TICK) {
                Err(RecvTimeoutError::Disconnected) => return,
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            }
            let now = shared.started.elapsed().as_millis() as u64;
            let last = shared.last_request_ms.load(Ordering::Relaxed);
            if now.saturating_sub(last) > LINGER.as_millis() as u64 {
                shared.asleep.store(true, Ordering::SeqCst);
                // A request between the check and the store would have found the thread
                // awake and sent nothing: look once more.
                if shared.last_request_ms.load(Ordering::Relaxed) == last
                    || !shared.asleep.swap(false, Ordering::SeqCst)
                {
                    break;
                }
            }
            for _ in 0..PER_TICK {
                // Connected and closed: nothing is sent, tiny_http reads the end at once.
                let _ = TcpStream::connect_timeout(&target, TICK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_binds_are_reached_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            reachable("::".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        assert_eq!(reachable(lan), lan);
    }

    #[test]
    fn nudges_only_while_requests_come() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let nudger = Nudger::start(listener.local_addr().unwrap()).unwrap();
        let count = |l: &std::net::TcpListener| std::iter::from_fn(|| l.accept().ok()).count();
        thread::sleep(TICK * 3);
        assert_eq!(count(&listener), 0, "idle: no connections");
        nudger.saw_request();
        let deadline = Instant::now() + Duration::from_secs(20);
        while count(&listener) == 0 {
            assert!(Instant::now() < deadline, "busy: no connections");
            thread::sleep(TICK);
        }
        drop(nudger);
    }
}
