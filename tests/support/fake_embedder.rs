//! A fake embedding server: a real HTTP/1.1 server on `127.0.0.1:0` answering OpenAI's
//! `POST /v1/embeddings` and Ollama's `POST /api/embed` with deterministic vectors.
//!
//! A text's vector counts its words by *concept*: words of one synonym group ("car",
//! "vehicle", "automobile") land on the same dimension, every other word on a dimension of
//! its own (a hash), stop words nowhere. So a paraphrase that shares no word with a text
//! but says the same thing in other words is close to it, which lexical search cannot see.
//! Every request is recorded with its model and texts, so tests can tell what was embedded
//! (and what was not) and wait for it.
//!
//! ```ignore
//! let fake = FakeEmbedder::start();
//! let toml = fake.config_toml("openai", "fake-mini");
//! // ... start a daemon with it, write files ...
//! fake.wait_for_text("fake-mini", "the vehicle needs new tyres");
//! assert_eq!(fake.times_embedded("fake-mini", "…"), 1);
//! fake.set_failing(true); // every request now answers 500
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Dimensions of the fake vectors.
pub const DIM: usize = 64;

/// Words that mean the same thing here; the first of each group names the concept.
const SYNONYMS: &[&[&str]] = &[
    &["car", "vehicle", "automobile", "corolla"],
    &["cat", "feline", "kitty", "pet"],
    &["doctor", "physician", "gp"],
    &["instrument", "guitar", "piano", "violin"],
    &["holiday", "vacation", "trip"],
    &["flat", "apartment", "home"],
];

const STOP: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "my", "i", "to", "of", "and", "in", "on", "for", "what",
    "which", "when", "did", "do", "does", "at", "it", "its", "with", "me", "we",
];

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct EmbedRequest {
    pub path: String,
    pub model: String,
    pub inputs: Vec<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<EmbedRequest>>,
    changed: Condvar,
    failing: AtomicBool,
    /// Silence before each answer.
    delay: Mutex<Duration>,
}

/// The running fake; stops listening when dropped.
pub struct FakeEmbedder {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl FakeEmbedder {
    pub fn start() -> FakeEmbedder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake embedder");
        let addr = listener.local_addr().expect("fake embedder address");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (shared2, stop2) = (Arc::clone(&shared), Arc::clone(&stop));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let shared = Arc::clone(&shared2);
                thread::spawn(move || serve(conn, &shared));
            }
        });
        FakeEmbedder { addr, shared, stop }
    }

    /// `http://127.0.0.1:<port>`: Ollama's base URL; OpenAI's is this plus `/v1`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `[memory.embeddings]` section pointing at this fake (`provider` "openai" or
    /// "ollama"), with short timeouts and backoff so tests are quick.
    pub fn config_toml(&self, provider: &str, model: &str) -> String {
        let base = if provider == "openai" {
            format!("{}/v1", self.url())
        } else {
            self.url()
        };
        format!(
            "[memory.embeddings]\nprovider = \"{provider}\"\nmodel = \"{model}\"\n\
             base_url = \"{base}\"\nbatch_size = 8\nmax_backoff = \"1s\"\n"
        )
    }

    /// From now on every request answers 500 (`true`), or is served again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// From now on every answer comes after this long (a hung embedder).
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    pub fn requests(&self) -> Vec<EmbedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many times `text` was sent to be embedded with `model`.
    pub fn times_embedded(&self, model: &str, text: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.model == model)
            .flat_map(|r| r.inputs.iter())
            .filter(|t| t.as_str() == text)
            .count()
    }

    /// Every text sent with `model`, in order, repeats included.
    pub fn texts(&self, model: &str) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.model == model)
            .flat_map(|r| r.inputs)
            .collect()
    }

    /// Waits until a text containing `needle` was sent with `model`.
    pub fn wait_for_text(&self, model: &str, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut requests = self.shared.requests.lock().unwrap();
        loop {
            if requests
                .iter()
                .filter(|r| r.model == model)
                .any(|r| r.inputs.iter().any(|t| t.contains(needle)))
            {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no text with {needle:?} was embedded");
            requests = self.shared.changed.wait_timeout(requests, left).unwrap().0;
        }
    }
}

impl Drop for FakeEmbedder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// The fake's vector for `text` (see the module doc), normalised.
pub fn vector(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIM];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        if STOP.contains(&word.as_str()) {
            continue;
        }
        let concept = SYNONYMS
            .iter()
            .find(|g| g.contains(&word.as_str()))
            .map(|g| g[0].to_string())
            .unwrap_or(word);
        // FNV-1a: stable across runs and platforms.
        let h = concept.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        v[(h % DIM as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v[0] = 1.0;
    }
    v
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let Some((path, body, authorization)) = read_request(&stream) else {
        return;
    };
    let model = body["model"].as_str().unwrap_or("").to_string();
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let answer = if shared.failing.load(Ordering::SeqCst) {
        Err((500, "the fake embedder is failing on purpose"))
    } else if path == "/v1/embeddings" {
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t)}))
            .collect();
        Ok(json!({"object": "list", "data": data, "model": model}))
    } else if path == "/api/embed" {
        let embeddings: Vec<Vec<f32>> = inputs.iter().map(|t| vector(t)).collect();
        Ok(json!({"model": model, "embeddings": embeddings}))
    } else {
        Err((404, "no such path"))
    };
    {
        let mut requests = shared.requests.lock().unwrap();
        requests.push(EmbedRequest {
            path,
            model,
            inputs,
            authorization,
        });
        shared.changed.notify_all();
    }
    let delay = *shared.delay.lock().unwrap();
    thread::sleep(delay);
    let (status, body) = match answer {
        Ok(v) => (200, v.to_string()),
        Err((code, message)) => (code, json!({"error": {"message": message}}).to_string()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Path, JSON body and `Authorization` of one request (Content-Length bodies only: ureq
/// sends JSON that way).
fn read_request(stream: &TcpStream) -> Option<(String, Value, Option<String>)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok()?,
                "authorization" => authorization = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, serde_json::from_slice(&body).ok()?, authorization))
}
