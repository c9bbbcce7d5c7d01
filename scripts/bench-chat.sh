#!/usr/bin/env bash
# Chat overhead: 500 sequential /api/chat turns (one tool call each, so two provider round
# trips) against a fake provider that answers instantly, vs 500 direct requests to that
# fake. Prints the daemon's median overhead per turn and per provider round trip.
# Usage: scripts/bench-chat.sh [turns]
source "$(dirname "$0")/bench-common.sh"
TURNS=${1:-500}

start_fake tool
start_daemon ""

python3 - "$DPORT" "$FAKE_PORT" "$TURNS" <<'PY'
import http.client, json, socket, statistics, sys, time
dport, fport, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def timed(port, path, body, count):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status == 200, (resp.status, data[:300])
    return out

# Warm up both paths (connection setup, first index scan, page cache).
timed(dport, "/api/chat", {"message": "warm up"}, 5)
timed(fport, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, 5)

turns = timed(dport, "/api/chat", {"message": "find bench notes"}, n)
direct = timed(fport, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": True}, n)
mt, md = statistics.median(turns), statistics.median(direct)
overhead = mt - 2 * md
print()
print(f"== localgpt chat overhead ({n} turns, 1 tool call each = 2 provider round trips) ==")
print(f"median /api/chat turn           {mt:8.3f} ms   (p99 {statistics.quantiles(turns, n=100)[98]:.3f} ms)")
print(f"median direct provider request  {md:8.3f} ms   (p99 {statistics.quantiles(direct, n=100)[98]:.3f} ms)")
print(f"daemon overhead per turn        {overhead:8.3f} ms")
print(f"overhead per provider round trip{overhead / 2:8.3f} ms   (target < 2 ms)")
print(f"ratio turn / 2 direct requests  {mt / (2 * md):8.2f}x")
PY
