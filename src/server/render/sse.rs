//! Server-Sent Events written straight onto the connection: status line, headers and
//! chunked framing by hand, one flush per event (tiny_http's streaming `Response` would
//! buffer the body and deliver it at the end); and [`SseSink`], which renders a turn's
//! events onto such a stream.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};
use serde::Serialize;

use crate::agent::events::{TurnEvent, TurnSink};
use crate::providers::cancel::CancelCheck;
use crate::sync::lock;

struct State {
    writer: Box<dyn Write + Send>,
    next_id: u64,
    last_write: Instant,
    /// A write failed: the client is gone.
    broken: bool,
}

impl State {
    fn write_chunk(&mut self, payload: &str) -> bool {
        if self.broken {
            return false;
        }
        let framed = format!("{:X}\r\n{payload}\r\n", payload.len());
        let ok = self
            .writer
            .write_all(framed.as_bytes())
            .and_then(|_| self.writer.flush())
            .is_ok();
        self.last_write = Instant::now();
        self.broken = !ok;
        ok
    }
}

/// An open event stream. Comments keep it alive while nothing else is written.
pub struct SseStream {
    state: Arc<Mutex<State>>,
    stop: Option<Sender<()>>,
    keepalive: Option<JoinHandle<()>>,
}

impl SseStream {
    /// Writes the response head and starts the keepalive thread.
    pub fn start(
        request: tiny_http::Request,
        keepalive: Duration,
        extra_headers: &[(&str, &str)],
    ) -> io::Result<SseStream> {
        let mut writer = request.into_writer();
        let mut head = String::from(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\nX-Accel-Buffering: no\r\n",
        );
        for (k, v) in extra_headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes())?;
        writer.flush()?;
        let state = Arc::new(Mutex::new(State {
            writer,
            next_id: 1,
            last_write: Instant::now(),
            broken: false,
        }));
        let (stop, stopped) = bounded::<()>(1);
        let keepalive = if keepalive.is_zero() {
            None
        } else {
            let state = state.clone();
            Some(
                thread::Builder::new()
                    .name("sse-keepalive".into())
                    .spawn(move || {
                        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(keepalive) {
                            let mut s = lock(&state);
                            if s.last_write.elapsed() >= keepalive
                                && !s.write_chunk(": keepalive\n\n")
                            {
                                break;
                            }
                        }
                    })?,
            )
        };
        Ok(SseStream {
            state,
            stop: Some(stop),
            keepalive,
        })
    }

    /// Sends one `data:` event with the next `id:`; false once the client is gone.
    pub fn event<T: Serialize + ?Sized>(&self, data: &T) -> bool {
        let data = match serde_json::to_string(data) {
            Ok(d) => d,
            Err(e) => {
                log::error!("cannot encode an event: {e}");
                return !self.is_broken();
            }
        };
        let mut s = lock(&self.state);
        let id = s.next_id;
        s.next_id += 1;
        s.write_chunk(&format!("id: {id}\ndata: {data}\n\n"))
    }

    pub fn is_broken(&self) -> bool {
        lock(&self.state).broken
    }

    /// [`SseStream::is_broken`] as a check another thread can hold.
    pub fn broken_check(&self) -> CancelCheck {
        let state = self.state.clone();
        Arc::new(move || lock(&state).broken)
    }

    /// Sends `data: [DONE]` and ends the chunked body.
    pub fn finish(mut self) {
        self.stop_keepalive();
        let mut s = lock(&self.state);
        if s.write_chunk("data: [DONE]\n\n") {
            let _ = s.writer.write_all(b"0\r\n\r\n");
            let _ = s.writer.flush();
        }
    }

    fn stop_keepalive(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.keepalive.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        self.stop_keepalive();
    }
}

/// A turn's events as SSE; the client approves through `POST /api/sessions/{id}/approve`.
pub struct SseSink<'a>(pub &'a SseStream);

impl TurnSink for SseSink<'_> {
    fn emit(&mut self, event: TurnEvent) -> bool {
        self.0.event(&event)
    }

    fn cancelled(&self) -> bool {
        self.0.is_broken()
    }

    fn can_approve(&self) -> bool {
        true
    }

    fn cancel_check(&self) -> Option<CancelCheck> {
        Some(self.0.broken_check())
    }
}
