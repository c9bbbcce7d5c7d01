//! A turn's events for a WebSocket: the turn runs on its own thread and hands each event
//! to the connection's thread, which owns the socket, through a channel, ringing an
//! eventfd so that thread (asleep in `poll`) wakes at once.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Sender;

use crate::agent::events::{TurnEvent, TurnSink};
use crate::providers::cancel::CancelCheck;

/// What the turn thread tells the connection thread.
pub enum Out {
    Event(TurnEvent),
    /// The turn's last event (`done` or `error`): the turn is over, its session and its
    /// place in the chat lane are free again.
    Last(TurnEvent),
}

/// Sends to the connection thread and wakes it.
pub struct Mailbox<'a> {
    pub tx: Sender<Out>,
    /// Rung after every message; `None` when the connection thread blocks on the channel.
    pub bell: Option<&'a OwnedFd>,
}

impl Mailbox<'_> {
    /// False once the connection thread is gone.
    pub fn send(&self, out: Out) -> bool {
        let sent = self.tx.send(out).is_ok();
        if let Some(bell) = self.bell {
            let _ = rustix::io::write(bell, &1u64.to_ne_bytes());
        }
        sent
    }
}

/// The turn's sink: events go to the mailbox; the connection thread sets `cancel` when
/// the client sends `cancel` and `gone` when it leaves. Decisions arrive through the
/// approval registry, from an `approve` message or `POST /api/sessions/{id}/approve`.
pub struct WsSink<'a> {
    pub mailbox: Mailbox<'a>,
    pub cancel: Arc<AtomicBool>,
    pub gone: Arc<AtomicBool>,
}

impl TurnSink for WsSink<'_> {
    fn emit(&mut self, event: TurnEvent) -> bool {
        if self.gone.load(Ordering::SeqCst) || !self.mailbox.send(Out::Event(event)) {
            return false;
        }
        !self.cancelled()
    }

    fn cancelled(&self) -> bool {
        self.gone.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst)
    }

    fn can_approve(&self) -> bool {
        true
    }

    fn cancel_check(&self) -> Option<CancelCheck> {
        let (cancel, gone) = (self.cancel.clone(), self.gone.clone());
        Some(Arc::new(move || {
            cancel.load(Ordering::SeqCst) || gone.load(Ordering::SeqCst)
        }))
    }
}
