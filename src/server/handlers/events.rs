//! `GET /api/events`: the events feed as Server-Sent Events.
//!
//! The fast-lane worker checks the request, takes a listener place (`events.max_listeners`,
//! else `503`), writes the stream's head and hands the connection to the feed's one thread
//! (`reach::feed`), which writes every event and the keepalives from then on. So an open
//! feed holds a connection and no worker, like a WebSocket; like one, it is busy for the
//! connection deadlines until the feed thread lets it go.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::reach::feed;
use crate::server::Server;
use crate::server::conn::deadlines::Connections;
use crate::server::error::ApiError;
use crate::server::http::{ApiRequest, ApiResponse};
use crate::server::render::sse::SseStream;
use crate::server::reply_cors;

/// Opens the feed on `request`: the status answered, and whether the feed thread took
/// the connection over.
pub fn open(
    srv: &Server,
    request: tiny_http::Request,
    req: &ApiRequest,
    cors: Option<&str>,
) -> (u16, bool) {
    let last_id = match last_event_id(req) {
        Ok(v) => v,
        Err(e) => return (reply_cors(request, e.into(), cors), false),
    };
    let feed = &srv.app.reach.feed;
    let Some(slot) = feed.reserve() else {
        let e = ApiError::overloaded(&format!(
            "events.max_listeners ({}) feed listeners are open",
            feed.max_listeners()
        ));
        return (reply_cors(request, e.into(), cors), false);
    };
    if req.method == "HEAD" {
        let head = ApiResponse {
            status: 200,
            content_type: "text/event-stream",
            headers: vec![("Cache-Control", "no-cache".into())],
            body: Vec::new(),
        };
        return (reply_cors(request, head, cors), false);
    }
    let headers: Vec<(&str, &str)> = match cors {
        Some(o) => vec![("Access-Control-Allow-Origin", o), ("Vary", "Origin")],
        None => Vec::new(),
    };
    let peer = request.remote_addr().copied();
    // No keepalive thread of its own: the feed thread writes the keepalives.
    match SseStream::start(request, Duration::ZERO, &headers) {
        Ok(stream) => {
            let listener = Listener {
                stream,
                conns: srv.conns.clone(),
                peer,
            };
            feed.attach(slot, Box::new(listener), last_id);
            (200, true)
        }
        Err(e) => {
            log::debug!("events: the listener went away before the head was sent: {e}");
            (200, false)
        }
    }
}

/// Where to resume: the `Last-Event-ID` header (what `EventSource` sends when it
/// reconnects), else the `last_event_id` query parameter (for a first connect, or curl).
fn last_event_id(req: &ApiRequest) -> Result<Option<u64>, ApiError> {
    let Some(raw) = req
        .header("Last-Event-ID")
        .or_else(|| req.query("last_event_id"))
    else {
        return Ok(None);
    };
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        ApiError::invalid_request(format!(
            "Last-Event-ID must be an event id (a whole number) from this feed, got {:?}",
            raw.chars().take(40).collect::<String>()
        ))
    })
}

/// An open feed stream, as the feed thread writes it.
struct Listener {
    stream: SseStream,
    conns: Arc<Connections>,
    peer: Option<SocketAddr>,
}

impl feed::Listener for Listener {
    fn event(&mut self, id: u64, data: &str) -> bool {
        self.stream.event_with_id(id, data)
    }

    fn comment(&mut self, text: &str) -> bool {
        self.stream.comment(text)
    }
}

impl Drop for Listener {
    /// The feed let the connection go: the deadlines apply to it again.
    fn drop(&mut self) {
        self.conns.request_finished(self.peer.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> ApiRequest {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ApiRequest::new("GET", target, headers, Vec::new())
    }

    #[test]
    fn the_resume_point_comes_from_the_header_or_the_query() {
        assert_eq!(last_event_id(&req("/api/events", &[])), Ok(None));
        assert_eq!(
            last_event_id(&req("/api/events", &[("Last-Event-ID", " 17 ")])),
            Ok(Some(17))
        );
        assert_eq!(
            last_event_id(&req("/api/events?last_event_id=9", &[])),
            Ok(Some(9))
        );
        let e = last_event_id(&req("/api/events", &[("Last-Event-ID", "abc")])).unwrap_err();
        assert_eq!(e.status, 400);
    }
}
