//! The events feed: what happens without a client asking (today, every heartbeat run),
//! numbered, kept in a short backlog for listeners that reconnect, and fanned out.
//!
//! Two kinds of readers. In-process subscribers (webhooks, the Telegram bridge) get a bounded
//! queue each; [`Feed::publish`] never waits on one (a full queue loses that event for that
//! subscriber, with a warning). SSE listeners (`GET /api/events`) are served by one feed
//! thread that writes each event to each of them and keeps them alive with comments, so a
//! listener costs a connection and no thread; a write that fails drops the listener.
//!
//! Event ids start at the Unix time in milliseconds when the daemon started and count up
//! by one, so they also increase across restarts: a listener resuming with an id from an
//! earlier run of the daemon is told that the events after it are gone (a `:` comment) and
//! gets every event still kept.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select};
use serde::{Deserialize, Serialize};

use crate::heartbeat::{Run, RunStatus, Trigger};
use crate::sync::lock;

/// Events waiting in an in-process subscriber's queue before new ones are dropped for it.
pub const SUBSCRIBER_QUEUE: usize = 64;

/// Listeners waiting to be taken over by the feed thread. Admission is bounded by
/// `events.max_listeners` before this; the queue only absorbs a burst of connects.
const ATTACH_QUEUE: usize = 64;

/// One heartbeat run as the feed tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatEvent {
    /// `ok`, `alert`, `failed` or `skipped`.
    pub status: RunStatus,
    /// The model's whole reply for an alert; `null` otherwise.
    pub text: Option<String>,
    /// When the run began, RFC 3339 UTC.
    pub time: String,
    pub trigger: Trigger,
    /// Why the run was skipped or failed.
    pub reason: Option<String>,
    pub model: Option<String>,
    pub duration_ms: u64,
}

impl HeartbeatEvent {
    /// The event for `run`; `reply` is the model's whole reply when it was an alert.
    pub fn from_run(run: &Run, reply: Option<&str>) -> HeartbeatEvent {
        let text = (run.status == RunStatus::Alert)
            .then(|| reply.map(str::to_string).or_else(|| run.preview.clone()))
            .flatten();
        HeartbeatEvent {
            status: run.status,
            text,
            time: crate::clock::rfc3339(run.time),
            trigger: run.trigger,
            reason: run.reason.clone(),
            model: run.model.clone(),
            duration_ms: run.duration_ms,
        }
    }
}

/// Something that happened; its JSON (`{"type": ..., ...}`) is an event's `data:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Heartbeat(HeartbeatEvent),
}

/// A published event with its id and its JSON.
#[derive(Debug)]
pub struct Entry {
    pub id: u64,
    pub event: Event,
    pub data: String,
}

/// An SSE connection as the feed thread writes to it (the server implements it).
pub trait Listener: Send {
    /// Writes `id:` and `data:` of one event; false once the listener is gone.
    fn event(&mut self, id: u64, data: &str) -> bool;
    /// Writes a `: text` comment line; false once the listener is gone.
    fn comment(&mut self, text: &str) -> bool;
}

/// A listener place taken in [`Feed::reserve`]; given back when dropped.
pub struct Slot(Arc<Feed>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.listeners.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Inner {
    backlog: VecDeque<Arc<Entry>>,
    next_id: u64,
    subscribers: Vec<Sender<Arc<Entry>>>,
    /// Hands new listeners to the feed thread, once it runs.
    thread: Option<Sender<Attached>>,
}

/// The feed; one per daemon, in `App`.
pub struct Feed {
    inner: Mutex<Inner>,
    backlog: usize,
    max_listeners: usize,
    keepalive: Duration,
    /// Listeners open or being opened.
    listeners: AtomicUsize,
}

/// A listener on its way to the feed thread, with what it has to catch up on.
struct Attached {
    listener: Box<dyn Listener>,
    slot: Slot,
    /// A comment to send first (events were lost since the listener's last id).
    notice: Option<String>,
    replay: Vec<Arc<Entry>>,
    /// The newest id it has been given (or is about to be, by `replay`): the feed thread
    /// skips events up to it.
    seen: u64,
}

impl Feed {
    /// A feed keeping `backlog` events, admitting `max_listeners` SSE listeners, writing a
    /// keepalive comment to a listener idle for `keepalive` (zero: never).
    pub fn new(backlog: usize, max_listeners: usize, keepalive: Duration) -> Feed {
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2))
            .unwrap_or(1);
        Feed {
            inner: Mutex::new(Inner {
                backlog: VecDeque::new(),
                next_id: millis.max(1),
                subscribers: Vec::new(),
                thread: None,
            }),
            backlog: backlog.max(1),
            max_listeners,
            keepalive,
            listeners: AtomicUsize::new(0),
        }
    }

    /// Numbers `event`, keeps it for resumes and hands it to every subscriber and listener.
    /// Never blocks on a reader.
    pub fn publish(&self, event: Event) -> u64 {
        let data = match serde_json::to_string(&event) {
            Ok(d) => d,
            Err(e) => {
                log::error!("events: cannot encode an event: {e}");
                return 0;
            }
        };
        let mut inner = lock(&self.inner);
        let id = inner.next_id;
        inner.next_id += 1;
        let entry = Arc::new(Entry { id, event, data });
        inner.backlog.push_back(entry.clone());
        while inner.backlog.len() > self.backlog {
            inner.backlog.pop_front();
        }
        inner
            .subscribers
            .retain(|tx| match tx.try_send(entry.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    log::warn!("events: a subscriber is {SUBSCRIBER_QUEUE} events behind; event {id} is dropped for it");
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
        id
    }

    /// The heartbeat observer that publishes every run.
    pub fn heartbeat_observer(self: &Arc<Self>) -> crate::heartbeat::Observer {
        let feed = self.clone();
        Arc::new(move |run: &Run, reply: Option<&str>| {
            feed.publish(Event::Heartbeat(HeartbeatEvent::from_run(run, reply)));
        })
    }

    /// A queue of every event published from now on (bounded: see [`SUBSCRIBER_QUEUE`]).
    pub fn subscribe(&self) -> Receiver<Arc<Entry>> {
        let (tx, rx) = bounded(SUBSCRIBER_QUEUE);
        lock(&self.inner).subscribers.push(tx);
        rx
    }

    /// Takes a listener place, or `None` when `events.max_listeners` are open.
    pub fn reserve(self: &Arc<Self>) -> Option<Slot> {
        if self.listeners.fetch_add(1, Ordering::SeqCst) >= self.max_listeners {
            self.listeners.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(self.clone()))
    }

    /// Listeners open now.
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::SeqCst)
    }

    pub fn max_listeners(&self) -> usize {
        self.max_listeners
    }

    /// Hands an SSE listener (its head already written) to the feed thread. `last_id`
    /// (from `Last-Event-ID`) replays what it missed from the backlog.
    pub fn attach(&self, slot: Slot, listener: Box<dyn Listener>, last_id: Option<u64>) {
        let mut inner = lock(&self.inner);
        let newest = inner.next_id - 1;
        let (replay, notice) = match last_id {
            None => (Vec::new(), None),
            Some(last) => catch_up(&inner.backlog, newest, last),
        };
        let attached = Attached {
            listener,
            slot,
            notice,
            replay,
            seen: newest,
        };
        if inner.thread.is_none() {
            match self.start_thread(&mut inner) {
                Ok(tx) => inner.thread = Some(tx),
                Err(e) => {
                    log::error!("events: cannot start the feed thread: {e}");
                    return;
                }
            }
        }
        if let Some(tx) = &inner.thread
            && tx.try_send(attached).is_err()
        {
            log::warn!("events: too many listeners arriving at once; one was closed");
        }
    }

    fn start_thread(&self, inner: &mut Inner) -> std::io::Result<Sender<Attached>> {
        let (attach_tx, attach_rx) = bounded::<Attached>(ATTACH_QUEUE);
        // Bounded like any subscriber: a feed thread stuck on a listener that stopped
        // reading (until `server.write_timeout` cuts it) must not hoard events; listeners
        // that miss some can resume from the backlog.
        let (event_tx, event_rx) = bounded::<Arc<Entry>>(SUBSCRIBER_QUEUE);
        let keepalive = self.keepalive;
        thread::Builder::new()
            .name("events".into())
            .spawn(move || serve(&attach_rx, &event_rx, keepalive))?;
        inner.subscribers.push(event_tx);
        Ok(attach_tx)
    }
}

/// What a listener resuming after `last` gets from `backlog` (whose newest id is `newest`):
/// the kept events after it, or every kept event and a notice when some after it are gone
/// (pushed out of the backlog, or published by an earlier run of the daemon).
fn catch_up(
    backlog: &VecDeque<Arc<Entry>>,
    newest: u64,
    last: u64,
) -> (Vec<Arc<Entry>>, Option<String>) {
    let oldest = backlog.front().map_or(newest + 1, |e| e.id);
    if last >= oldest.saturating_sub(1) && last <= newest {
        let replay = backlog.iter().filter(|e| e.id > last).cloned().collect();
        return (replay, None);
    }
    let notice = match backlog.front() {
        Some(first) => format!(
            "events after id {last} are no longer kept (the daemon restarted, or more than \
             the backlog came since); resuming from the oldest kept event, id {}",
            first.id
        ),
        None => format!(
            "events after id {last} are no longer kept (the daemon restarted); nothing is \
             kept yet, new events follow"
        ),
    };
    (backlog.iter().cloned().collect(), Some(notice))
}

struct Open {
    listener: Box<dyn Listener>,
    _slot: Slot,
    seen: u64,
    last_write: Instant,
}

/// The feed thread: takes listeners in, writes each event to each of them, keeps idle ones
/// alive. A write to a listener that went away fails and drops it (its slot is freed).
fn serve(attach: &Receiver<Attached>, events: &Receiver<Arc<Entry>>, keepalive: Duration) {
    let mut open: Vec<Open> = Vec::new();
    loop {
        let wait = next_keepalive(&open, keepalive);
        select! {
            recv(events) -> entry => {
                let Ok(entry) = entry else { return };
                open.retain_mut(|l| {
                    if entry.id <= l.seen {
                        return true;
                    }
                    l.seen = entry.id;
                    l.last_write = Instant::now();
                    l.listener.event(entry.id, &entry.data)
                });
            }
            recv(attach) -> new => {
                let Ok(new) = new else { return };
                if let Some(l) = take_in(new) {
                    open.push(l);
                }
            }
            default(wait) => {
                if keepalive.is_zero() {
                    continue;
                }
                let now = Instant::now();
                open.retain_mut(|l| {
                    if now.duration_since(l.last_write) < keepalive {
                        return true;
                    }
                    l.last_write = now;
                    l.listener.comment("keepalive")
                });
            }
        }
    }
}

/// Sends a new listener its notice and replay; `None` if it is already gone.
fn take_in(new: Attached) -> Option<Open> {
    let Attached {
        mut listener,
        slot,
        notice,
        replay,
        seen,
    } = new;
    if let Some(text) = notice
        && !listener.comment(&text)
    {
        return None;
    }
    for entry in &replay {
        if !listener.event(entry.id, &entry.data) {
            return None;
        }
    }
    Some(Open {
        listener,
        _slot: slot,
        seen,
        last_write: Instant::now(),
    })
}

/// How long the feed thread may sleep before a listener is due a keepalive.
fn next_keepalive(open: &[Open], keepalive: Duration) -> Duration {
    // With nothing to keep alive, wake now and then anyway (cheap, and no special case).
    const IDLE: Duration = Duration::from_secs(3600);
    if keepalive.is_zero() {
        return IDLE;
    }
    let now = Instant::now();
    open.iter()
        .map(|l| (l.last_write + keepalive).saturating_duration_since(now))
        .min()
        .unwrap_or(IDLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener writing into a shared transcript; `fail_after` writes, it is gone.
    struct Transcript {
        lines: Arc<Mutex<Vec<String>>>,
        fail_after: usize,
    }

    impl Listener for Transcript {
        fn event(&mut self, id: u64, data: &str) -> bool {
            self.write(format!("{id} {data}"))
        }
        fn comment(&mut self, text: &str) -> bool {
            self.write(format!(": {text}"))
        }
    }

    impl Transcript {
        fn write(&mut self, line: String) -> bool {
            if self.fail_after == 0 {
                return false;
            }
            self.fail_after -= 1;
            lock(&self.lines).push(line);
            true
        }
    }

    fn event(n: u64) -> Event {
        Event::Heartbeat(HeartbeatEvent {
            status: RunStatus::Ok,
            text: None,
            time: "2026-01-01T00:00:00Z".into(),
            trigger: Trigger::Api,
            reason: None,
            model: None,
            duration_ms: n,
        })
    }

    fn wait_for(lines: &Arc<Mutex<Vec<String>>>, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = lock(lines).clone();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "only {got:?}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_json_is_the_documented_shape() {
        let data = serde_json::to_value(event(3)).unwrap();
        assert_eq!(data["type"], "heartbeat");
        assert_eq!(data["status"], "ok");
        assert_eq!(data["trigger"], "api");
        assert!(data["text"].is_null());
    }

    #[test]
    fn resumes_replay_what_was_missed_and_say_when_some_is_gone() {
        let feed = Arc::new(Feed::new(3, 4, Duration::ZERO));
        let first = feed.publish(event(1));
        for n in 2..=5 {
            feed.publish(event(n));
        }
        // Kept: first+2 ..= first+4.
        let lines = Arc::new(Mutex::new(Vec::new()));
        let listener = Transcript {
            lines: lines.clone(),
            fail_after: 100,
        };
        feed.attach(feed.reserve().unwrap(), Box::new(listener), Some(first + 2));
        let got = wait_for(&lines, 2);
        assert!(got[0].starts_with(&format!("{} ", first + 3)), "{got:?}");
        assert!(got[1].starts_with(&format!("{} ", first + 4)), "{got:?}");

        let lines = Arc::new(Mutex::new(Vec::new()));
        let listener = Transcript {
            lines: lines.clone(),
            fail_after: 100,
        };
        feed.attach(feed.reserve().unwrap(), Box::new(listener), Some(first));
        let got = wait_for(&lines, 4);
        assert!(got[0].contains("no longer kept"), "{got:?}");
        assert!(got[1].starts_with(&format!("{} ", first + 2)), "{got:?}");

        // New events reach both once each, after the replay.
        let next = feed.publish(event(6));
        let got = wait_for(&lines, 5);
        assert!(got[4].starts_with(&format!("{next} ")), "{got:?}");
        assert_eq!(
            got.iter()
                .filter(|l| l.starts_with(&format!("{next} ")))
                .count(),
            1
        );
    }

    #[test]
    fn listeners_are_bounded_and_a_dead_one_frees_its_place() {
        let feed = Arc::new(Feed::new(10, 1, Duration::ZERO));
        let slot = feed.reserve().unwrap();
        assert!(feed.reserve().is_none(), "max_listeners = 1");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let listener = Transcript {
            lines: lines.clone(),
            fail_after: 1,
        };
        feed.attach(slot, Box::new(listener), None);
        feed.publish(event(1));
        wait_for(&lines, 1);
        feed.publish(event(2)); // this write fails: the listener is dropped
        let deadline = Instant::now() + Duration::from_secs(10);
        while feed.listeners() > 0 {
            assert!(Instant::now() < deadline, "the place was not freed");
            thread::sleep(Duration::from_millis(5));
        }
        assert!(feed.reserve().is_some());
    }

    #[test]
    fn subscribers_get_every_event_and_a_full_queue_never_blocks() {
        let feed = Feed::new(10, 1, Duration::ZERO);
        let rx = feed.subscribe();
        for n in 0..(SUBSCRIBER_QUEUE as u64 + 5) {
            feed.publish(event(n));
        }
        assert_eq!(rx.len(), SUBSCRIBER_QUEUE);
        drop(rx);
        feed.publish(event(0));
        assert!(
            lock(&feed.inner).subscribers.is_empty(),
            "a gone one is forgotten"
        );
    }
}
