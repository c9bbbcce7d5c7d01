#!/usr/bin/env bash
# Chat overhead: 500 sequential turns (one tool call each, so two provider round trips) on
# /api/chat and on the OpenAI-compatible /v1/chat/completions, against a fake provider that
# answers instantly, and 500 direct requests to that fake, interleaved in one run so all
# three see the same machine. Prints the daemon's median overhead per turn and per provider
# round trip for both routes, and how far /v1 is from /api/chat (target: within 0.2 ms).
# Usage: scripts/bench-chat.sh [turns]
source "$(dirname "$0")/bench-common.sh"
TURNS=${1:-500}

start_fake tool
start_daemon ""

python3 - "$DPORT" "$FAKE_PORT" "$TURNS" <<'PY'
import http.client, json, socket, statistics, sys, time
dport, fport, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

class Timed:
    """One keep-alive connection timing POSTs of one body to one path."""

    def __init__(self, port, path, body):
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.path, self.body, self.samples = path, json.dumps(body), []

    def once(self):
        t0 = time.perf_counter()
        self.conn.request("POST", self.path, body=self.body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        self.samples.append((time.perf_counter() - t0) * 1000)
        assert resp.status == 200, (self.path, resp.status, data[:300])
        return data

question = [{"role": "user", "content": "find bench notes"}]
api = Timed(dport, "/api/chat", {"message": "find bench notes"})
v1 = Timed(dport, "/v1/chat/completions", {"model": "localgpt", "messages": question})
direct = Timed(fport, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": True})

# Warm up every path (connection setup, first index scan, page cache); check /v1's answer.
for _ in range(5):
    api.once(); direct.once()
    answer = json.loads(v1.once())
assert answer["choices"][0]["message"]["content"] == "Done.", answer
for t in (api, v1, direct):
    t.samples.clear()

for _ in range(n):
    api.once(); v1.once(); direct.once()

def p99(xs):
    return statistics.quantiles(xs, n=100)[98]

md = statistics.median(direct.samples)
print()
print(f"== localgpt chat overhead ({n} turns per route, 1 tool call each = 2 provider round trips) ==")
print(f"median direct provider request    {md:8.3f} ms   (p99 {p99(direct.samples):.3f} ms)")
per_trip = {}
for name, t in (("/api/chat", api), ("/v1/chat/completions", v1)):
    mt = statistics.median(t.samples)
    per_trip[name] = (mt - 2 * md) / 2
    print(f"median {name:<22}     {mt:8.3f} ms   (p99 {p99(t.samples):.3f} ms)")
    print(f"  overhead per turn               {mt - 2 * md:8.3f} ms")
    print(f"  overhead per provider round trip{per_trip[name]:8.3f} ms   (target < 2 ms)")
    print(f"  ratio turn / 2 direct requests  {mt / (2 * md):8.2f}x")
gap = per_trip["/v1/chat/completions"] - per_trip["/api/chat"]
print(f"/v1 minus /api/chat per round trip{gap:8.3f} ms   (target within 0.2 ms)")
PY
