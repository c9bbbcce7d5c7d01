//! The load generator behind `scripts/bench-load.sh`: std only, a hand-written HTTP/1.1
//! keep-alive client, one thread per connection. Three modes:
//!
//! ```text
//! loadgen load  --port P [--requests 20000] [--conns 64] [--mix 40,20,30,10]
//!               [--queries a,b,c] [--timeout-ms 10000] [--quiet]
//! loadgen probe --port P (--count N | --stop-file F) [--interval-ms 5] [--fresh] [--label L]
//! loadgen slow  --port P --stop-file F [--conns 300] [--interval-ms 1500] [--bytes 4]
//! loadgen burst --port P [--conns 64] [--hold-ms 3000]
//! ```
//!
//! `load` sends a fixed number of requests mixing `/health`, `/api/status`,
//! `/api/memory/search` and `POST /api/chat` (mix in percent, that order) and prints
//! per-route counts and p50/p99. A `503` is counted as shed; any other status, a timeout or
//! a connection error is unexpected. `probe` is one client asking `/health` at a steady
//! pace (`--fresh`: a new connection per probe, as a health checker does). `slow` holds
//! connections that dribble a request a few bytes at a time and never finish it, until the
//! stop file appears. `burst` opens connections all at once, asks `/health` once on each
//! and keeps them all open for `--hold-ms`: a connection the server leaves unserved until
//! another one closes is answered only after the hold. Each mode ends with one
//! `RESULT`/`PROBE`/`SLOW`/`BURST` line of `key=value` pairs for the script to read.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// A response head or body larger than this is a protocol error, not something to buffer.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How many unexpected answers are printed in full (well, their first bytes).
const SAMPLES_KEPT: usize = 5;
/// Requests slower than this are counted as stalls, split by whether they were the first on
/// their connection (a stalled first request points at the accept path, not the handlers).
const STALL: Duration = Duration::from_millis(500);

fn main() {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().unwrap_or_default();
    let args = Args::parse(argv);
    match mode.as_str() {
        "load" => run_load(&args),
        "probe" => run_probe(&args),
        "slow" => run_slow(&args),
        "burst" => run_burst(&args),
        _ => fail(
            "usage: loadgen load|probe|slow --port P [options] (see the top of examples/loadgen.rs)",
        ),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    exit(2);
}

/// `--name value` pairs and bare `--flag`s.
struct Args {
    values: HashMap<String, String>,
}

impl Args {
    fn parse(argv: impl Iterator<Item = String>) -> Args {
        let mut values = HashMap::new();
        let mut argv = argv.peekable();
        while let Some(arg) = argv.next() {
            let Some(name) = arg.strip_prefix("--") else {
                fail(&format!("unexpected argument {arg:?}"));
            };
            let value = match argv.peek() {
                Some(v) if !v.starts_with("--") => argv.next().unwrap_or_default(),
                _ => String::new(),
            };
            values.insert(name.to_owned(), value);
        }
        Args { values }
    }

    fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn num<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| fail(&format!("--{name} wants a number, got {v:?}"))),
        }
    }

    fn port(&self) -> u16 {
        if self.text("port").is_none() {
            fail("--port is required");
        }
        self.num("port", 0)
    }

    fn stop_file(&self) -> Option<PathBuf> {
        self.text("stop-file").map(PathBuf::from)
    }
}

// --- the HTTP/1.1 client -----------------------------------------------------------------

#[derive(Debug)]
enum ClientError {
    Connect(io::Error),
    Timeout,
    Io(io::Error),
    /// The server closed the connection before a full response.
    Closed,
    Protocol(String),
}

impl ClientError {
    /// A short label to count errors by.
    fn kind(&self) -> String {
        match self {
            ClientError::Connect(e) => format!("connect: {}", e.kind()),
            ClientError::Timeout => "timeout".into(),
            ClientError::Io(e) => format!("io: {}", e.kind()),
            ClientError::Closed => "closed by server mid-response".into(),
            ClientError::Protocol(_) => "malformed response".into(),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "cannot connect: {e}"),
            ClientError::Timeout => write!(f, "no answer within the timeout"),
            ClientError::Io(e) => write!(f, "connection error: {e}"),
            ClientError::Closed => write!(f, "the server closed the connection mid-response"),
            ClientError::Protocol(m) => write!(f, "malformed response: {m}"),
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            io::ErrorKind::UnexpectedEof => ClientError::Closed,
            _ => ClientError::Io(e),
        }
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
    retry_after: bool,
    /// The server will not take another request on this connection.
    close: bool,
}

/// One keep-alive connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16, timeout: Duration) -> Result<Conn, ClientError> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(ClientError::Connect)?;
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(ClientError::Connect)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(ClientError::Connect)?;
        let writer = stream.try_clone().map_err(ClientError::Connect)?;
        Ok(Conn {
            reader: BufReader::with_capacity(16 * 1024, stream),
            writer,
        })
    }

    fn send(&mut self, request: &[u8]) -> Result<Response, ClientError> {
        self.writer.write_all(request)?;
        self.read_response()
    }

    fn read_line(&mut self, budget: &mut usize) -> Result<String, ClientError> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(*budget as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        if n > *budget {
            return Err(ClientError::Protocol(format!(
                "response head longer than {MAX_HEAD_BYTES} bytes"
            )));
        }
        *budget -= n;
        if !line.ends_with(b"\n") {
            return Err(ClientError::Closed);
        }
        String::from_utf8(line)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|_| ClientError::Protocol("response head is not UTF-8".into()))
    }

    fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut budget = MAX_HEAD_BYTES;
        let status_line = self.read_line(&mut budget)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| ClientError::Protocol(format!("bad status line {status_line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        let mut retry_after = false;
        let mut close = version == "HTTP/1.0";
        loop {
            let line = self.read_line(&mut budget)?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(ClientError::Protocol(format!("bad header line {line:?}")));
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => {
                    length = Some(value.parse::<usize>().map_err(|_| {
                        ClientError::Protocol(format!("bad Content-Length {value:?}"))
                    })?)
                }
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "retry-after" => retry_after = true,
                _ => {}
            }
        }
        let body = if chunked {
            self.read_chunked()?
        } else if let Some(n) = length {
            if n > MAX_BODY_BYTES {
                return Err(ClientError::Protocol(format!("body of {n} bytes")));
            }
            let mut body = vec![0; n];
            self.reader.read_exact(&mut body)?;
            body
        } else if status == 204 || status == 304 || status < 200 {
            Vec::new()
        } else {
            // No length: the body runs to the end of the connection.
            close = true;
            let mut body = Vec::new();
            (&mut self.reader)
                .take(MAX_BODY_BYTES as u64)
                .read_to_end(&mut body)?;
            body
        };
        Ok(Response {
            status,
            body,
            retry_after,
            close,
        })
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        loop {
            let mut budget = MAX_HEAD_BYTES;
            let line = self.read_line(&mut budget)?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| ClientError::Protocol(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, then the blank line.
                while !self.read_line(&mut budget)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY_BYTES {
                return Err(ClientError::Protocol("chunked body too large".into()));
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            self.reader.read_exact(&mut body[start..])?;
            if &body[start + size..] != b"\r\n" {
                return Err(ClientError::Protocol("chunk not followed by CRLF".into()));
            }
            body.truncate(start + size);
        }
    }
}

// --- latencies -----------------------------------------------------------------------------

/// Nearest-rank percentile of sorted durations, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// --- load ----------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Route {
    Health,
    Status,
    Search,
    Chat,
}

const ROUTES: [Route; 4] = [Route::Health, Route::Status, Route::Search, Route::Chat];

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Status => "status",
            Route::Search => "search",
            Route::Chat => "chat",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Route::Health => "GET /health",
            Route::Status => "GET /api/status",
            Route::Search => "GET /api/memory/search?q=...",
            Route::Chat => "POST /api/chat",
        }
    }
}

/// Which route request number `i` takes: exact proportions, interleaved.
struct Mix {
    weights: [u32; 4],
    sum: u32,
}

impl Mix {
    fn parse(text: &str) -> Mix {
        let parts: Vec<u32> = text
            .split(',')
            .map(|p| {
                p.trim()
                    .parse()
                    .unwrap_or_else(|_| fail(&format!("--mix wants four numbers, got {text:?}")))
            })
            .collect();
        let Ok(weights) = <[u32; 4]>::try_from(parts) else {
            fail(&format!(
                "--mix wants four weights (health,status,search,chat), got {text:?}"
            ));
        };
        let sum = weights.iter().sum();
        if sum == 0 {
            fail("--mix weights are all zero");
        }
        Mix { weights, sum }
    }

    fn pick(&self, i: usize) -> Route {
        // Walk the cycle with a stride coprime to its length, so consecutive requests spread
        // over the routes instead of running through one route's block at a time.
        let stride = if self.sum.is_multiple_of(37) { 1 } else { 37 };
        let mut slot = ((i as u64 * stride) % u64::from(self.sum)) as u32;
        for (route, w) in ROUTES.iter().zip(self.weights) {
            if slot < w {
                return *route;
            }
            slot -= w;
        }
        Route::Health
    }
}

/// What the request bytes for each route are.
struct Requests {
    port: u16,
    queries: Vec<String>,
}

impl Requests {
    fn build(&self, route: Route, i: usize) -> Vec<u8> {
        let host = format!("127.0.0.1:{}", self.port);
        match route {
            Route::Health => format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
            Route::Status => {
                format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
            }
            Route::Search => {
                let q = &self.queries[i % self.queries.len()];
                format!("GET /api/memory/search?q={q}&limit=5 HTTP/1.1\r\nHost: {host}\r\n\r\n")
                    .into_bytes()
            }
            Route::Chat => {
                let body =
                    format!("{{\"message\":\"load test question {i}: what do my notes say?\"}}");
                format!(
                    "POST /api/chat HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        }
    }
}

#[derive(Default)]
struct RouteStats {
    sent: u64,
    ok: Vec<Duration>,
    shed: u64,
    unexpected: u64,
    /// Searches answered 200 with no results (the workspace should make every query hit).
    empty_searches: u64,
}

#[derive(Default)]
struct LoadStats {
    routes: BTreeMap<Route, RouteStats>,
    unexpected_kinds: BTreeMap<String, u64>,
    samples: Vec<String>,
    reconnects: u64,
    stalls: u64,
    stalls_first_on_conn: u64,
}

impl LoadStats {
    fn unexpected(&mut self, route: Route, kind: String, sample: String) {
        self.routes.entry(route).or_default().unexpected += 1;
        *self.unexpected_kinds.entry(kind).or_default() += 1;
        if self.samples.len() < SAMPLES_KEPT {
            self.samples.push(format!("{}: {sample}", route.describe()));
        }
    }

    fn merge(&mut self, other: LoadStats) {
        for (route, s) in other.routes {
            let mine = self.routes.entry(route).or_default();
            mine.sent += s.sent;
            mine.ok.extend(s.ok);
            mine.shed += s.shed;
            mine.unexpected += s.unexpected;
            mine.empty_searches += s.empty_searches;
        }
        for (kind, n) in other.unexpected_kinds {
            *self.unexpected_kinds.entry(kind).or_default() += n;
        }
        for s in other.samples {
            if self.samples.len() < SAMPLES_KEPT {
                self.samples.push(s);
            }
        }
        self.reconnects += other.reconnects;
        self.stalls += other.stalls;
        self.stalls_first_on_conn += other.stalls_first_on_conn;
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.replace(['\r', '\n'], " ")
}

/// One connection's share of the work: takes request numbers until `total` are taken.
fn load_worker(
    next: &AtomicUsize,
    total: usize,
    mix: &Mix,
    requests: &Requests,
    timeout: Duration,
) -> LoadStats {
    let mut stats = LoadStats::default();
    let mut conn: Option<Conn> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            break;
        }
        let route = mix.pick(i);
        stats.routes.entry(route).or_default().sent += 1;
        let first_on_conn = conn.is_none();
        let c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(requests.port, timeout) {
                Ok(c) => c,
                Err(e) => {
                    stats.unexpected(route, e.kind(), e.to_string());
                    // Do not spin through the remaining requests while the server is away.
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let mut c = c;
        let bytes = requests.build(route, i);
        let started = Instant::now();
        match c.send(&bytes) {
            Ok(resp) => {
                let took = started.elapsed();
                if took > STALL {
                    stats.stalls += 1;
                    stats.stalls_first_on_conn += u64::from(first_on_conn);
                }
                let entry = stats.routes.entry(route).or_default();
                match resp.status {
                    200 => {
                        entry.ok.push(took);
                        if route == Route::Search
                            && String::from_utf8_lossy(&resp.body).contains("\"total\":0")
                        {
                            entry.empty_searches += 1;
                        }
                    }
                    503 if resp.retry_after => entry.shed += 1,
                    503 => stats.unexpected(
                        route,
                        "503 without Retry-After".into(),
                        snippet(&resp.body),
                    ),
                    s => stats.unexpected(
                        route,
                        format!("status {s}"),
                        format!("{s} {}", snippet(&resp.body)),
                    ),
                }
                if !resp.close {
                    conn = Some(c);
                } else {
                    stats.reconnects += 1;
                }
            }
            Err(e) => {
                stats.reconnects += 1;
                stats.unexpected(route, e.kind(), e.to_string());
            }
        }
    }
    stats
}

fn run_load(args: &Args) {
    let port = args.port();
    let total: usize = args.num("requests", 20_000);
    let conns: usize = args.num("conns", 64);
    let timeout = Duration::from_millis(args.num("timeout-ms", 10_000));
    let mix = Arc::new(Mix::parse(args.text("mix").unwrap_or("40,20,30,10")));
    let queries: Vec<String> = args
        .text("queries")
        .unwrap_or("memory,backup,raspberry,heartbeat,sqlite,garden")
        .split(',')
        .filter(|q| !q.is_empty())
        .map(str::to_owned)
        .collect();
    if queries.is_empty() || conns == 0 {
        fail("--queries and --conns must not be empty");
    }
    let requests = Arc::new(Requests { port, queries });
    let quiet = args.flag("quiet");
    if !quiet {
        let shares: Vec<String> = ROUTES
            .iter()
            .zip(mix.weights)
            .map(|(r, w)| {
                format!(
                    "{} {:.0}%",
                    r.name(),
                    100.0 * f64::from(w) / f64::from(mix.sum)
                )
            })
            .collect();
        println!("mix: {}", shares.join(", "));
    }

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (next, mix, requests) = (next.clone(), mix.clone(), requests.clone());
            thread::spawn(move || load_worker(&next, total, &mix, &requests, timeout))
        })
        .collect();
    let mut stats = LoadStats::default();
    for w in workers {
        match w.join() {
            Ok(s) => stats.merge(s),
            Err(_) => fail("a load thread panicked"),
        }
    }
    let elapsed = started.elapsed();
    report_load(&mut stats, total, conns, elapsed, quiet);
}

fn report_load(stats: &mut LoadStats, total: usize, conns: usize, elapsed: Duration, quiet: bool) {
    let (mut ok, mut shed, mut unexpected, mut empty) = (0, 0, 0, 0);
    if !quiet {
        println!(
            "{total} requests over {conns} keep-alive connections in {:.1} s ({:.0} req/s)",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64()
        );
        println!(
            "{:<8}{:>8}{:>8}{:>8}{:>12}{:>10}{:>10}{:>10}",
            "route", "sent", "ok", "shed", "unexpected", "p50 ms", "p99 ms", "max ms"
        );
    }
    let mut per_route = Vec::new();
    for route in ROUTES {
        let Some(s) = stats.routes.get_mut(&route) else {
            continue;
        };
        s.ok.sort_unstable();
        let (p50, p99) = (percentile_ms(&s.ok, 50.0), percentile_ms(&s.ok, 99.0));
        let max = s.ok.last().map(|d| ms(*d)).unwrap_or(f64::NAN);
        if !quiet {
            println!(
                "{:<8}{:>8}{:>8}{:>8}{:>12}{:>10.2}{:>10.2}{:>10.2}",
                route.name(),
                s.sent,
                s.ok.len(),
                s.shed,
                s.unexpected,
                p50,
                p99,
                max
            );
        }
        per_route.push(format!(
            "{0}_sent={1} {0}_ok={2} {0}_shed={3} {0}_unexpected={4} {0}_p50_ms={5:.2} {0}_p99_ms={6:.2}",
            route.name(),
            s.sent,
            s.ok.len(),
            s.shed,
            s.unexpected,
            p50,
            p99
        ));
        ok += s.ok.len();
        shed += s.shed;
        unexpected += s.unexpected;
        empty += s.empty_searches;
    }
    if !quiet {
        println!(
            "{:<8}{:>8}{:>8}{:>8}{:>12}",
            "total", total, ok, shed, unexpected
        );
        for (kind, n) in &stats.unexpected_kinds {
            println!("  unexpected: {n} x {kind}");
        }
        for s in &stats.samples {
            println!("  e.g. {s}");
        }
        if empty > 0 {
            println!("  note: {empty} searches answered with no results");
        }
        if stats.stalls > 0 {
            println!(
                "  note: {} requests took over {} ms, {} of them the first on a new connection",
                stats.stalls,
                STALL.as_millis(),
                stats.stalls_first_on_conn
            );
        }
    }
    println!(
        "RESULT total={total} ok={ok} shed={shed} unexpected={unexpected} empty_searches={empty} \
         reconnects={} stalls={} stalls_first_on_conn={} secs={:.2} {}",
        stats.reconnects,
        stats.stalls,
        stats.stalls_first_on_conn,
        elapsed.as_secs_f64(),
        per_route.join(" ")
    );
}

// --- probe ---------------------------------------------------------------------------------

fn stop_requested(stop: Option<&Path>) -> bool {
    stop.is_some_and(Path::exists)
}

fn run_probe(args: &Args) {
    let port = args.port();
    let count: usize = args.num("count", 0);
    let stop = args.stop_file();
    if count == 0 && stop.is_none() {
        fail("probe needs --count N or --stop-file F");
    }
    let interval = Duration::from_millis(args.num("interval-ms", 5));
    let fresh = args.flag("fresh");
    let label = args.text("label").unwrap_or("probe").to_owned();
    let timeout = Duration::from_millis(args.num("timeout-ms", 10_000));
    let request = if fresh {
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
    } else {
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
    };

    let mut times = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut conn: Option<Conn> = None;
    let started = Instant::now();
    while (count == 0 || times.len() + (errors.values().sum::<u64>() as usize) < count)
        && !stop_requested(stop.as_deref())
    {
        let t0 = Instant::now();
        // A fresh probe's time includes the connect, as a health checker's would.
        let result = match conn.take() {
            Some(c) => Ok(c),
            None => Conn::open(port, timeout),
        }
        .and_then(|mut c| c.send(request.as_bytes()).map(|r| (c, r)));
        match result {
            Ok((c, r)) if r.status == 200 => {
                times.push(t0.elapsed());
                if !fresh && !r.close {
                    conn = Some(c);
                }
            }
            Ok((_, r)) => *errors.entry(format!("status {}", r.status)).or_default() += 1,
            Err(e) => *errors.entry(e.kind()).or_default() += 1,
        }
        thread::sleep(interval);
    }
    times.sort_unstable();
    let n_err: u64 = errors.values().sum();
    let (p50, p99) = (percentile_ms(&times, 50.0), percentile_ms(&times, 99.0));
    let max = times.last().map(|d| ms(*d)).unwrap_or(f64::NAN);
    let kinds: Vec<String> = errors.iter().map(|(k, n)| format!("{n} x {k}")).collect();
    println!(
        "PROBE label={label} mode={} n={} errors={n_err} p50_ms={p50:.3} p99_ms={p99:.3} \
         max_ms={max:.3} secs={:.1}{}",
        if fresh {
            "new-connection"
        } else {
            "keep-alive"
        },
        times.len(),
        started.elapsed().as_secs_f64(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" error_kinds=\"{}\"", kinds.join(", "))
        }
    );
}

// --- slow connections ----------------------------------------------------------------------

/// An endless, never-finished request: a request line, then header after header; the blank
/// line that would end the head never comes.
fn slow_bytes(port: u16, offset: usize, len: usize) -> Vec<u8> {
    let head = format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    let mut out = Vec::with_capacity(len);
    let mut pos = offset;
    while out.len() < len {
        if pos < head.len() {
            out.push(head.as_bytes()[pos]);
        } else {
            // The same short header line over and over.
            let line = b"X-Slow: abcdef\r\n";
            out.push(line[(pos - head.len()) % line.len()]);
        }
        pos += 1;
    }
    out
}

struct SlowConn {
    stream: TcpStream,
    sent: usize,
    opened: Instant,
}

fn run_slow(args: &Args) {
    let port = args.port();
    let Some(stop) = args.stop_file() else {
        fail("slow needs --stop-file F");
    };
    let want: usize = args.num("conns", 300);
    let interval = Duration::from_millis(args.num("interval-ms", 1500));
    let per_tick: usize = args.num("bytes", 4);
    // Open a new slow connection for each one the server closes (a sustained attack).
    let reconnect = args.flag("reconnect");
    let started = Instant::now();
    // How long connections lived before the server closed them, in seconds.
    let mut lifetimes: Vec<f64> = Vec::new();
    let mut reopened = 0usize;

    let mut open: Vec<SlowConn> = Vec::new();
    let mut connect_errors: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..want {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                open.push(SlowConn {
                    stream,
                    sent: 0,
                    opened: Instant::now(),
                });
            }
            Err(e) => *connect_errors.entry(e.kind().to_string()).or_default() += 1,
        }
    }
    let opened = open.len();
    println!("SLOW ready opened={opened} of {want}");
    let _ = io::stdout().flush();

    let (mut closed_by_server, mut answered_by_server) = (0usize, 0usize);
    let mut answers: Vec<String> = Vec::new();
    let mut bytes_sent = 0usize;
    let mut buf = [0u8; 512];
    loop {
        let tick = Instant::now();
        let before = open.len();
        let mut ended: Vec<f64> = Vec::new();
        open.retain_mut(|c| {
            let lived = c.opened.elapsed().as_secs_f64();
            // Has the server answered (e.g. 408) or closed? Peek without blocking.
            if c.stream.set_nonblocking(true).is_ok() {
                let peeked = c.stream.peek(&mut buf);
                let _ = c.stream.set_nonblocking(false);
                match peeked {
                    Ok(0) => {
                        closed_by_server += 1;
                        ended.push(lived);
                        return false;
                    }
                    Ok(n) => {
                        answered_by_server += 1;
                        ended.push(lived);
                        if answers.len() < SAMPLES_KEPT {
                            answers.push(snippet(&buf[..n]));
                        }
                        return false;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        closed_by_server += 1;
                        ended.push(lived);
                        return false;
                    }
                }
            }
            let bytes = slow_bytes(port, c.sent, per_tick);
            match c.stream.write_all(&bytes) {
                Ok(()) => {
                    c.sent += bytes.len();
                    bytes_sent += bytes.len();
                    true
                }
                Err(_) => {
                    closed_by_server += 1;
                    ended.push(lived);
                    false
                }
            }
        });
        lifetimes.extend(&ended);
        if reconnect {
            for _ in open.len()..before {
                if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = stream.set_nodelay(true);
                    open.push(SlowConn {
                        stream,
                        sent: 0,
                        opened: Instant::now(),
                    });
                    reopened += 1;
                }
            }
        }
        // Sleep out the tick, watching for the stop file.
        while tick.elapsed() < interval {
            if stop.exists() {
                let errs: u64 = connect_errors.values().sum();
                lifetimes.sort_by(f64::total_cmp);
                let at = |q: f64| {
                    lifetimes
                        .get(((lifetimes.len() as f64 - 1.0) * q).round() as usize)
                        .copied()
                        .unwrap_or(0.0)
                };
                println!(
                    "SLOW opened={opened} open_at_end={} closed_by_server={closed_by_server} \
                     answered_by_server={answered_by_server} connect_errors={errs} \
                     bytes_sent={bytes_sent} held_secs={:.1} reopened={reopened} \
                     lifetime_p50_s={:.1} lifetime_max_s={:.1}",
                    open.len(),
                    started.elapsed().as_secs_f64(),
                    at(0.5),
                    at(1.0)
                );
                for (kind, n) in &connect_errors {
                    println!("  connect error: {n} x {kind}");
                }
                for a in &answers {
                    println!("  server answered a slow connection: {a}");
                }
                // Dropping the streams closes them.
                drop(open);
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

// --- burst -------------------------------------------------------------------------------

fn run_burst(args: &Args) {
    let port = args.port();
    let conns: usize = args.num("conns", 64);
    let hold = Duration::from_millis(args.num("hold-ms", 3000));
    let timeout = hold + Duration::from_secs(10);
    let barrier = Arc::new(Barrier::new(conns));
    let started = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let t0 = Instant::now();
                let request = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
                let result = Conn::open(port, timeout)
                    .and_then(|mut c| c.send(request.as_bytes()).map(|r| (c, r)));
                let took = t0.elapsed();
                // Keep the connection (and the server's thread for it) until the hold ends.
                thread::sleep(hold.saturating_sub(t0.elapsed()));
                match result {
                    Ok((_, r)) if r.status == 200 => Ok(took),
                    Ok((_, r)) => Err(format!("status {}", r.status)),
                    Err(e) => Err(e.kind()),
                }
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in threads {
        match t.join() {
            Ok(Ok(d)) => times.push(d),
            Ok(Err(kind)) => *errors.entry(kind).or_default() += 1,
            Err(_) => fail("a burst thread panicked"),
        }
    }
    times.sort_unstable();
    // Answered only once the hold was nearly over: served when another connection closed.
    let stalled: Vec<String> = times
        .iter()
        .filter(|d| **d >= hold.mul_f64(0.9))
        .map(|d| format!("{:.0}", ms(*d)))
        .collect();
    let n_err: u64 = errors.values().sum();
    println!(
        "BURST conns={conns} hold_ms={} answered={} errors={n_err} p50_ms={:.3} \
         stalled_until_hold={} stalled_ms=[{}] secs={:.1}",
        hold.as_millis(),
        times.len(),
        percentile_ms(&times, 50.0),
        stalled.len(),
        stalled.join(","),
        started.elapsed().as_secs_f64()
    );
}
