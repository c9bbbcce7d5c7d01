#!/usr/bin/env bash
# Streaming latency and footprint. The fake provider emits 500 deltas at a 5 ms cadence.
#  1. One stream straight from the fake and one through POST /api/chat/stream: client
#     inter-arrival p50/p99 minus the cadence, and time to first event, side by side.
#  2. 50 concurrent SSE streams + 50 idle WebSockets: daemon RSS and threads before,
#     during, and 10 s after.
# Usage: scripts/bench-stream.sh
source "$(dirname "$0")/bench-common.sh"

start_fake stream --deltas 500 --cadence-ms 5
start_daemon "chat_workers = 64
chat_queue = 8
max_websockets = 64"

python3 - "$DPORT" "$FAKE_PORT" "$DPID" <<'PY'
import json, os, socket, statistics, sys, threading, time
dport, fport, dpid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
CADENCE = 5.0

def open_stream(port, path, body):
    s = socket.create_connection(("127.0.0.1", port))
    data = json.dumps(body).encode()
    t0 = time.perf_counter()
    s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
    return s, s.makefile("rb"), t0

last_other = None

def read_deltas(port, path, body):
    """Arrival times (ms after the request) of each event carrying text."""
    s, f, t0 = open_stream(port, path, body)
    status = f.readline()
    if b" 200 " not in status:
        s.close()
        print("request refused:", status.decode().strip(), file=sys.stderr)
        return []
    while f.readline() not in (b"\r\n", b""):
        pass
    times = []
    global last_other
    while True:
        size = f.readline()
        if not size:
            break
        n = int(size.strip() or b"0", 16)
        if n == 0:
            break
        payload = f.read(n + 2)
        now = (time.perf_counter() - t0) * 1000
        if b'"content"' in payload or b'"delta": {"content"' in payload:
            times.append(now)
        elif b'"session"' not in payload and b"[DONE]" not in payload and b'"done"' not in payload:
            last_other = payload[:300]
    s.close()
    return times

def first_event_ms(port, path, body):
    """Milliseconds from sending the request to the first text delta, read straight from
    the socket (no buffering layer between the bytes and the clock)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = json.dumps(body).encode()
    t0 = time.perf_counter()
    s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
    seen = b""
    while b'"content"' not in seen:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("stream ended before a delta: %r" % seen[:200])
        seen += chunk
    t = (time.perf_counter() - t0) * 1000
    while s.recv(65536):
        pass
    s.close()
    return t

DIRECT = (fport, "/v1/chat/completions", {"model": "short", "messages": [], "stream": True})
VIA = (dport, "/api/chat/stream", {"message": "x", "model": "openai/short", "include_memory": False})
# Warm both paths (first connection to the provider, first session write).
for _ in range(3):
    first_event_ms(*DIRECT)
    first_event_ms(*VIA)
# Alternate, so a noisy moment hits both sides alike.
direct_first, daemon_first = [], []
for _ in range(30):
    direct_first.append(first_event_ms(*DIRECT))
    daemon_first.append(first_event_ms(*VIA))

RUNS = 4
direct_runs, daemon_runs = [], []
for _ in range(RUNS):
    direct_runs.append(read_deltas(fport, "/v1/chat/completions", {"messages": [], "stream": True}))
    daemon_runs.append(read_deltas(dport, "/api/chat/stream", {"message": "stream please", "include_memory": False}))
print()
print(f"== localgpt streaming (fake provider: 500 deltas at a 5 ms cadence) ==")
def summary(name, runs, firsts):
    gaps = [b - a for r in runs for a, b in zip(r, r[1:])]
    q = statistics.quantiles(gaps, n=100)
    first = statistics.median(firsts)
    print(f"{name:<22} first event p50 {first:6.2f} ms   gap p50 {statistics.median(gaps):6.2f} ms"
          f" (+{statistics.median(gaps) - CADENCE:5.2f})   p99 {q[98]:6.2f} ms (+{q[98] - CADENCE:5.2f})"
          f"   events/stream {min(len(r) for r in runs)}")
    return first, q[98]
d_first, d_p99 = summary("direct from provider", direct_runs, direct_first)
s_first, s_p99 = summary("through daemon (SSE)", daemon_runs, daemon_first)
print(f"time to first event added by the daemon   {s_first - d_first:6.2f} ms   (median of 30 short streams each way; target < 5 ms)")
print(f"inter-arrival p99 added by the daemon     {s_p99 - d_p99:6.2f} ms   (target < 2 ms; vs cadence +{s_p99 - CADENCE:.2f})")

def proc(pid):
    st = open(f"/proc/{pid}/status").read()
    get = lambda k: int([l for l in st.splitlines() if l.startswith(k)][0].split()[1])
    return get("VmRSS:"), get("Threads:")

def idle_ws():
    s = socket.create_connection(("127.0.0.1", dport))
    s.sendall(b"GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = s.recv(1024)
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    return s

def one(results):
    results.append(len(read_deltas(dport, "/api/chat/stream", {"message": "x", "include_memory": False})))

def load_round():
    """50 idle WebSockets and 50 concurrent streams; (during, after) as (RSS, threads)."""
    sockets = [idle_ws() for _ in range(50)]
    results = []
    threads = [threading.Thread(target=one, args=(results,)) for _ in range(50)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    during = proc(dpid)
    for t in threads:
        t.join()
    for s in sockets:
        s.close()
    time.sleep(10)
    return results, during, proc(dpid)

base = proc(dpid)
print()
print("== 50 concurrent SSE streams + 50 idle WebSockets, twice ==")
rows = [("before", base)]
for round_no in range(1, int(os.environ.get("ROUNDS", "2")) + 1):
    results, during, after = load_round()
    print(f"round {round_no}: streams completed with all 500 deltas: {sum(1 for r in results if r == 500)}/50"
          + ("" if all(r == 500 for r in results) else f"  (short ones: {sorted(r for r in results if r != 500)}; last other event: {last_other!r})"))
    rows += [(f"round {round_no} during", during), (f"round {round_no} 10 s after", after)]
print(f"{'':<22}{'RSS KiB':>10}{'threads':>10}")
for name, (rss, threads) in rows:
    print(f"{name:<22}{rss:>10}{threads:>10}")
PY
echo
echo "daemon warnings/errors during the run:"
grep -E "WARN|ERROR" "$WORK/daemon.log" | sort | uniq -c | head -10 || echo "  none"
