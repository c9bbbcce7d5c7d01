//! Test clients for the daemon's streams: an SSE reader that timestamps each event as it
//! arrives, and a WebSocket client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One SSE event as received.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Instant,
    pub id: Option<u64>,
    /// The parsed `data:` JSON, or `Value::String("[DONE]")`.
    pub data: Value,
    /// A `: comment` (keepalive) rather than an event.
    pub comment: bool,
}

impl Event {
    pub fn kind(&self) -> &str {
        self.data["type"]
            .as_str()
            .unwrap_or(self.data.as_str().unwrap_or(""))
    }
}

/// An open event stream (`POST /api/chat/stream`, `GET /api/events`).
pub struct Sse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    pending: String,
    /// Non-stream answers (validation errors) end up here.
    pub body: String,
}

impl Sse {
    pub fn open(addr: SocketAddr, body: &str) -> Sse {
        Sse::request(
            addr,
            &format!(
                "POST /api/chat/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    /// A streamed POST to `path` with extra request headers.
    pub fn open_at(addr: SocketAddr, path: &str, body: &str, headers: &[(&str, &str)]) -> Sse {
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        Sse::request(
            addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    /// A `GET` stream (`/api/events`) with extra request headers.
    pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        Sse::request(addr, &head)
    }

    /// Sends `request` (head and body) on a new connection and reads the answer's head.
    fn request(addr: SocketAddr, request: &str) -> Sse {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut w = stream.try_clone().expect("clone");
        w.write_all(request.as_bytes()).expect("send");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut sse = Sse {
            status,
            headers,
            reader,
            pending: String::new(),
            body: String::new(),
        };
        if status != 200 {
            let len = sse
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0usize);
            let mut buf = vec![0; len];
            let _ = sse.reader.read_exact(&mut buf);
            sse.body = String::from_utf8_lossy(&buf).into_owned();
        }
        sse
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads one chunk of the chunked body; false at the end.
    fn read_chunk(&mut self) -> bool {
        let mut size = String::new();
        if self.reader.read_line(&mut size).unwrap_or(0) == 0 {
            return false;
        }
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return false;
        };
        if n == 0 {
            return false;
        }
        let mut buf = vec![0; n + 2];
        if self.reader.read_exact(&mut buf).is_err() {
            return false;
        }
        self.pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        true
    }

    /// The next event or comment, or `None` when the stream ended.
    pub fn next_raw(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let at = Instant::now();
                if block.starts_with(':') {
                    return Some(Event {
                        at,
                        id: None,
                        data: Value::String(block.trim().into()),
                        comment: true,
                    });
                }
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(Event {
                    at,
                    id,
                    data,
                    comment: false,
                });
            }
            if !self.read_chunk() {
                return None;
            }
        }
    }

    /// The next event, skipping keepalive comments.
    pub fn next(&mut self) -> Option<Event> {
        loop {
            match self.next_raw() {
                Some(e) if e.comment => continue,
                other => return other,
            }
        }
    }

    /// Every remaining event up to and including `[DONE]`.
    pub fn collect(&mut self) -> Vec<Event> {
        let mut all = Vec::new();
        while let Some(e) = self.next() {
            let done = e.data == Value::String("[DONE]".into());
            all.push(e);
            if done {
                break;
            }
        }
        all
    }

    /// Waits for the next event of `kind`, returning it (events before it are dropped).
    pub fn until(&mut self, kind: &str) -> Event {
        loop {
            let e = self
                .next()
                .unwrap_or_else(|| panic!("stream ended before a {kind} event"));
            if e.kind() == kind {
                return e;
            }
        }
    }
}

pub type Ws = tungstenite::WebSocket<TcpStream>;

/// Opens `/api/ws`, optionally with an `Origin` header.
pub fn ws_connect(addr: SocketAddr, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut req = format!("ws://{addr}/api/ws").into_client_request()?;
    if let Some(o) = origin {
        req.headers_mut()
            .insert("Origin", o.parse().expect("origin header"));
    }
    match tungstenite::client(req, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("blocking handshake interrupted")
        }
    }
}

pub fn ws_send(ws: &mut Ws, v: &Value) {
    ws.send(tungstenite::Message::text(v.to_string()))
        .expect("ws send");
}

/// The next JSON text message (protocol frames skipped).
pub fn ws_next(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("ws read") {
            tungstenite::Message::Text(t) => {
                return serde_json::from_str(t.as_str()).expect("server sends JSON");
            }
            tungstenite::Message::Close(f) => panic!("closed: {f:?}"),
            _ => continue,
        }
    }
}

/// Reads messages until one of `kind`.
pub fn ws_until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = ws_next(ws);
        if v["type"] == kind {
            return v;
        }
        assert_ne!(
            v["type"], "error",
            "unexpected error while waiting for {kind}: {v}"
        );
    }
}
