//! Deadlines tiny_http 0.12 does not have: a request head must arrive within
//! `server.header_timeout` of the connection opening, a kept-alive connection must bring
//! its next request within `server.idle_timeout` of the last response, and a client must
//! keep reading (`server.write_timeout`, set on the listener as `SO_SNDTIMEO`, which every
//! accepted socket inherits).
//!
//! tiny_http hides its sockets, but they are descriptors of this process: a watchdog
//! thread lists `/proc/self/fd`, takes a duplicate of each socket connected to our port
//! with `pidfd_getfd` (a safe system call on our own process), and learns its peer. The
//! server tells it when a peer's request starts and ends. A connection past its deadline
//! is shut down through the duplicate, which wakes tiny_http's blocked read with an end of
//! file: its thread ends and the connection is freed. Streams (SSE) and WebSockets are
//! busy for their whole life and never timed out here.
//!
//! One case is different: a request line saying `HTTP/2.0` makes tiny_http answer 505
//! through a writer that waits, forever, for the request's own writer to be dropped. Its
//! thread never ends; only the client's socket can be closed. Such connections stay
//! listed after their shutdown and are counted as stuck.
//!
//! While no deadline runs (no connection is open, or every open one is busy with a
//! request, a stream or a WebSocket) the watchdog sleeps in `poll` on the listening socket
//! (a connection arriving wakes it), looking once a second in case one was accepted just
//! before it started to wait.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};
use rustix::net::Shutdown;
use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

use crate::sync::lock;

/// How often open connections are checked. A deadline is kept to within about this.
const TICK: Duration = Duration::from_millis(250);
/// How long an idle daemon sleeps between looks, in case a connection slipped in between
/// the last look and the `poll` (tiny_http accepted it before the watchdog listened). A
/// look reads this process's descriptor table: a few microseconds.
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// How long what the server said about a peer is kept before its connection is seen.
const UNSEEN_GRACE: Duration = Duration::from_secs(10);
/// How long the watchdog keeps ticking after a connection arrived on an idle daemon.
const ARRIVAL_WATCH: Duration = Duration::from_secs(2);
/// A connection still open this long after its shutdown has a thread tiny_http will never
/// free.
const STUCK_AFTER: Duration = Duration::from_secs(2);

/// The deadlines, from the config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// Stuck connections beyond which the daemon stops so its supervisor restarts it (the
    /// only way to free them); zero: never.
    pub max_stuck: usize,
}

/// What the watchdog knows about a peer's requests.
#[derive(Debug, Clone, Copy)]
enum Activity {
    /// A request is being served (or a stream or WebSocket runs): no deadline.
    Busy,
    /// The last response ended then.
    IdleSince(Instant),
}

#[derive(Debug)]
struct Conn {
    fd: i32,
    peer: SocketAddr,
    first_seen: Instant,
    shut_at: Option<Instant>,
    stuck: bool,
}

#[derive(Default)]
struct Inner {
    /// Server-side connections by socket inode (tiny_http holds two descriptors of each).
    conns: HashMap<u64, Conn>,
    /// Inodes of sockets that are not connections to our port.
    foreign: HashSet<u64>,
    /// What the server said last about each peer, and when.
    activity: HashMap<SocketAddr, (Activity, Instant)>,
    stuck: usize,
    closed: u64,
}

/// Counts for `/api/status` and `doctor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnCounts {
    /// Connections to the API open now.
    pub open: usize,
    /// Connections closed because a deadline passed, since start.
    pub closed_by_deadline: u64,
    /// Connections whose tiny_http thread can never end (`HTTP/2.0` request lines).
    pub stuck: usize,
    /// Whether deadlines are enforced (they need `pidfd_getfd`, Linux 5.6+).
    pub enforced: bool,
}

/// The connections of one server and their deadlines.
pub struct Connections {
    limits: Limits,
    port: u16,
    /// Told when too many connections are stuck: the daemon then stops (exit 1).
    fatal: crossbeam_channel::Sender<String>,
    /// `None` when this kernel (or a seccomp filter) refuses `pidfd_open`.
    pidfd: Option<OwnedFd>,
    inner: Mutex<Inner>,
}

impl Connections {
    pub fn new(limits: Limits, port: u16, fatal: crossbeam_channel::Sender<String>) -> Connections {
        let pidfd = match pidfd_open(getpid(), PidfdFlags::empty()) {
            Ok(fd) => Some(fd),
            Err(e) => {
                log::warn!(
                    "connection deadlines are not enforced: pidfd_open failed ({e}); \
                     idle and slow clients each hold a thread until they leave"
                );
                None
            }
        };
        Connections {
            limits,
            port,
            fatal,
            pidfd,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A request from `peer` reached the server.
    pub fn request_started(&self, peer: Option<&SocketAddr>) {
        if let Some(peer) = peer {
            lock(&self.inner)
                .activity
                .insert(*peer, (Activity::Busy, Instant::now()));
        }
    }

    /// The response to `peer` has been sent; its next request is due within the idle
    /// timeout.
    pub fn request_finished(&self, peer: Option<&SocketAddr>) {
        if let Some(peer) = peer {
            let now = Instant::now();
            lock(&self.inner)
                .activity
                .insert(*peer, (Activity::IdleSince(now), now));
        }
    }

    pub fn counts(&self) -> ConnCounts {
        let inner = lock(&self.inner);
        ConnCounts {
            open: inner.conns.len(),
            closed_by_deadline: inner.closed,
            stuck: inner.stuck,
            enforced: self.pidfd.is_some(),
        }
    }

    /// A duplicate of the socket connected to `peer`, if it is open now (the WebSocket
    /// uses it to read with a timeout).
    pub fn socket_of(&self, peer: SocketAddr) -> Option<OwnedFd> {
        self.look();
        let fd = lock(&self.inner)
            .conns
            .values()
            .find(|c| c.peer == peer && c.shut_at.is_none())
            .map(|c| c.fd)?;
        self.dup_if(fd, peer)
    }

    /// Our own duplicate of descriptor `fd`, if it is still the socket connected to `peer`.
    fn dup_if(&self, fd: i32, peer: SocketAddr) -> Option<OwnedFd> {
        let pidfd = self.pidfd.as_ref()?;
        let dup = pidfd_getfd(pidfd, fd, PidfdGetfdFlags::empty()).ok()?;
        let now_peer = rustix::net::getpeername(&dup)
            .ok()
            .flatten()
            .and_then(|a| SocketAddr::try_from(a).ok());
        (now_peer == Some(peer)).then_some(dup)
    }

    /// Whether some open connection has a deadline running (or is shut down and may turn
    /// out stuck).
    fn deadline_pending(&self) -> bool {
        let inner = lock(&self.inner);
        inner.conns.values().any(|c| {
            (c.shut_at.is_some() && !c.stuck)
                || (c.shut_at.is_none()
                    && !matches!(inner.activity.get(&c.peer), Some((Activity::Busy, _))))
        })
    }

    /// Lists our sockets: new connections are recorded, closed ones forgotten.
    fn look(&self) {
        let Some(pidfd) = &self.pidfd else {
            return;
        };
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        let now = Instant::now();
        let mut seen: HashMap<u64, i32> = HashMap::new();
        for entry in dir.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Some(inode) = std::fs::read_link(entry.path())
                .ok()
                .and_then(|l| socket_inode(&l.to_string_lossy()))
            else {
                continue;
            };
            seen.entry(inode).or_insert(fd);
        }
        // Sockets not seen before are probed without the lock (the listener thread takes
        // it for every request).
        let new: Vec<(u64, i32)> = {
            let inner = lock(&self.inner);
            seen.iter()
                .filter(|(inode, _)| {
                    !inner.conns.contains_key(inode) && !inner.foreign.contains(inode)
                })
                .map(|(inode, fd)| (*inode, *fd))
                .collect()
        };
        let probed: Vec<(u64, i32, Option<SocketAddr>)> = new
            .into_iter()
            .map(|(inode, fd)| (inode, fd, self.server_peer(pidfd, fd)))
            .collect();
        let mut inner = lock(&self.inner);
        let Inner {
            conns,
            foreign,
            activity,
            ..
        } = &mut *inner;
        conns.retain(|inode, conn| {
            let open = seen.contains_key(inode);
            if !open {
                activity.remove(&conn.peer);
            }
            open
        });
        foreign.retain(|inode| seen.contains_key(inode));
        for (inode, conn) in conns.iter_mut() {
            if let Some(fd) = seen.get(inode) {
                conn.fd = *fd;
            }
        }
        for (inode, fd, peer) in probed {
            match peer {
                Some(peer) => {
                    conns.insert(
                        inode,
                        Conn {
                            fd,
                            peer,
                            first_seen: now,
                            shut_at: None,
                            stuck: false,
                        },
                    );
                }
                None => {
                    foreign.insert(inode);
                }
            }
        }
        // What the server said about a peer whose connection this look has not seen yet
        // (accepted a moment ago) is kept a while; about one long gone, dropped.
        let live: HashSet<SocketAddr> = conns.values().map(|c| c.peer).collect();
        activity.retain(|peer, (_, at)| live.contains(peer) || at.elapsed() < UNSEEN_GRACE);
    }

    /// The peer of descriptor `fd` when it is a connection accepted on our port.
    fn server_peer(&self, pidfd: &OwnedFd, fd: i32) -> Option<SocketAddr> {
        let dup = pidfd_getfd(pidfd, fd, PidfdGetfdFlags::empty()).ok()?;
        let local = SocketAddr::try_from(rustix::net::getsockname(&dup).ok()?).ok()?;
        if local.port() != self.port {
            return None;
        }
        rustix::net::getpeername(&dup)
            .ok()
            .flatten()
            .and_then(|a| SocketAddr::try_from(a).ok())
    }

    /// Shuts down connections past their deadline and counts the ones that outlive it.
    fn enforce(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut inner = lock(&self.inner);
            let Inner {
                conns,
                activity,
                stuck,
                ..
            } = &mut *inner;
            for (&inode, conn) in conns.iter_mut() {
                if let Some(shut) = conn.shut_at {
                    if !conn.stuck && now.duration_since(shut) >= STUCK_AFTER {
                        conn.stuck = true;
                        *stuck += 1;
                        log::warn!(
                            "a connection from {} outlived its shutdown: tiny_http's thread \
                             for it is stuck for good ({} so far; an HTTP/2.0 request line does \
                             this, see docs/security.md)",
                            conn.peer,
                            stuck
                        );
                        if *stuck == self.limits.max_stuck {
                            let _ = self.fatal.try_send(format!(
                                "{stuck} connections are stuck in tiny_http (each holds a thread \
                                 and two descriptors until the process ends): stopping so the \
                                 supervisor restarts the daemon (server.max_stuck_connections)"
                            ));
                        }
                    }
                    continue;
                }
                // A zero limit is no limit.
                let (since, limit) = match activity.get(&conn.peer) {
                    Some((Activity::Busy, _)) => continue,
                    Some((Activity::IdleSince(t), _)) => (*t, self.limits.idle_timeout),
                    None => (conn.first_seen, self.limits.header_timeout),
                };
                if limit.is_zero() {
                    continue;
                }
                let deadline = since + limit;
                if now >= deadline {
                    due.push((inode, conn.fd, conn.peer, activity.contains_key(&conn.peer)));
                }
            }
        }
        for (inode, fd, peer, was_idle) in due {
            let Some(dup) = self.dup_if(fd, peer) else {
                continue;
            };
            // Counted before the shutdown: the client may ask /api/status the moment it
            // sees its connection end.
            lock(&self.inner).closed += 1;
            if rustix::net::shutdown(&dup, Shutdown::Both).is_err() {
                lock(&self.inner).closed -= 1;
            } else {
                if let Some(conn) = lock(&self.inner).conns.get_mut(&inode) {
                    conn.shut_at = Some(now);
                }
                let which = if was_idle {
                    "server.idle_timeout"
                } else {
                    "server.header_timeout"
                };
                log::debug!("closed the connection from {peer}: {which} passed");
            }
        }
    }
}

/// Whether this process can duplicate its own descriptors, as the watchdog does.
pub fn probe() -> Result<(), rustix::io::Errno> {
    use std::os::fd::AsRawFd;
    let pidfd = pidfd_open(getpid(), PidfdFlags::empty())?;
    pidfd_getfd(&pidfd, pidfd.as_raw_fd(), PidfdGetfdFlags::empty()).map(drop)
}

/// The inode of a `/proc/self/fd` link `socket:[12345]`.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The running watchdog; dropping [`Watchdog::stop`]'s handle ends it.
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the watchdog for `conns`; `listener` is a duplicate of the listening socket
    /// (to sleep on while no connection is open).
    pub fn start(conns: Arc<Connections>, listener: TcpListener) -> std::io::Result<Watchdog> {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let thread = {
            let stop = stop.clone();
            let wake = wake.try_clone()?;
            std::thread::Builder::new()
                .name("conn-deadlines".into())
                .spawn(move || run(&conns, &listener, &wake, &stop))?
        };
        Ok(Watchdog {
            stop,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(wake) = self.wake.take() {
            let _ = rustix::io::write(&wake, &1u64.to_ne_bytes());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(conns: &Connections, listener: &TcpListener, wake: &OwnedFd, stop: &AtomicBool) {
    if conns.pidfd.is_none() {
        return;
    }
    // After a connection arrived, keep looking at the tick for a while even before it
    // shows up (tiny_http may take a moment to accept it).
    let mut alert_until = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        conns.look();
        conns.enforce();
        // Nothing can fall due while every open connection is busy (a stream, a WebSocket,
        // a turn): then only a new connection matters, and the listener tells of those.
        let idle = !conns.deadline_pending() && Instant::now() >= alert_until;
        let wait = if idle { IDLE_LOOK } else { TICK };
        let mut fds = [
            PollFd::new(wake, PollFlags::IN),
            PollFd::new(listener, PollFlags::IN),
        ];
        // While connections are open, only the wake-up (stop) interrupts the tick.
        let watched = if idle { &mut fds[..] } else { &mut fds[..1] };
        let timeout = Timespec::try_from(wait).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        if poll(watched, Some(&timeout)).is_ok_and(|n| n > 0) && idle {
            alert_until = Instant::now() + ARRIVAL_WATCH;
            // A connection is arriving: give tiny_http a moment to accept it.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[1]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }
}
