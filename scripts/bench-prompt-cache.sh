#!/usr/bin/env bash
# Prompt economy against a real model: the same 10-turn session, run by this build and by
# the build before the stable-first prompt layout, one after the other against llama.cpp's
# llama-server. The session crosses a minute boundary (before turn 4) and has a memory
# write in the middle (a line appended to today's daily log before turn 6). Per turn it
# prints the prompt tokens llama.cpp had to evaluate (`timings.prompt_n`, read by a small
# recording proxy between the daemon and the server), those it reused from its cache
# (`timings.cache_n`), the time llama.cpp spent reading the prompt (`timings.prompt_ms`),
# the turn's whole latency (with generation, which varies with each answer), and the
# target: the new message plus the previous answer plus 64 tokens.
#
# Newer llama-server builds also keep earlier prompts in RAM (`--cache-ram`) and restore
# the best match, so a first turn may find the previous run's prefix: compare turns 2-10.
#
# Needs llama-server with SmolLM2 (../shared/tools/local-llm: setup.sh, then start.sh) at
# LLM_URL (default http://127.0.0.1:18080). The old build is made in a temporary git
# worktree (its target dir is target/bench-before, kept for the next run).
# Usage: scripts/bench-prompt-cache.sh [old-commit]   (default: the commit before the change)
source "$(dirname "$0")/bench-common.sh"
LLM=${LLM_URL:-http://127.0.0.1:18080}
if ! curl -sf "$LLM/health" >/dev/null; then
    echo "no llama-server answers at $LLM: start it (../shared/tools/local-llm/start.sh)" >&2
    exit 1
fi

FIRST=$(git log --diff-filter=A --format=%H -- src/agent/prompt/context.rs | tail -1)
OLD=${1:-$FIRST^}
echo "building the old daemon ($(git rev-parse --short "$OLD")) ..." >&2
git worktree add --quiet --detach "$WORK/old" "$OLD"
trap 'cleanup; git worktree prune' EXIT
CARGO_TARGET_DIR=$PWD/target/bench-before cargo build --release --quiet --bin localgpt \
    --manifest-path "$WORK/old/Cargo.toml"
OLD_BIN=$PWD/target/bench-before/release/localgpt

# run_session DIR NAME BIN: one daemon over a fresh workspace, its provider behind the proxy.
run_session() {
    local name=$2 bin=$3
    local home=$WORK/$1
    mkdir -p "$home/data/workspace/memory"
    local proxy_port dport
    proxy_port=$(free_port)
    python3 - "$proxy_port" "$LLM" "$home/proxy.jsonl" >"$home/proxy.out" 2>&1 <<'PY' &
# Forwards requests to llama-server and records each answer's `timings`.
import http.client, json, sys, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, upstream, log_path = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2]), sys.argv[3]
log = open(log_path, "a")

class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self, method):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=900)
        conn.request(method, self.path, body or None, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        timings = None
        for line in data.split(b"\n"):
            line = line.strip()
            if line.startswith(b"data: {"):
                line = line[6:]
            if line.startswith(b"{"):
                try:
                    timings = json.loads(line).get("timings") or timings
                except ValueError:
                    pass
        if method == "POST":
            log.write(json.dumps({"at": time.time(), "timings": timings}) + "\n")
            log.flush()
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.forward("POST")

    def do_GET(self):
        self.forward("GET")

    def log_message(self, *args):
        pass

print("ready", flush=True)
ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()
PY
    local proxy_pid=$!
    PIDS+=("$proxy_pid")
    for _ in $(seq 1 200); do
        grep -q ready "$home/proxy.out" 2>/dev/null && break
        sleep 0.02
    done
    dport=$(free_port)
    cat >"$home/config.toml" <<TOML
[server]
port = $dport
[agent]
default_model = "openai/smollm2"
max_tokens = 64
[providers]
read_timeout = "10m"
[providers.openai]
api_key = ""
base_url = "http://127.0.0.1:$proxy_port/v1"
[heartbeat]
enabled = false
TOML
    # The same memory for both builds: a persona, notes about the user, today's log.
    cat >"$home/data/workspace/USER.md" <<'MD'
# User
- Name: Sam. Lives in Lyon, works as a nurse, often on night shifts.
- Prefers short answers, metric units and 24-hour times.
MD
    cat >"$home/data/workspace/MEMORY.md" <<'MD'
# Memory
- Sam's cat is called Miso; the vet is Dr. Arnaud, appointments on Tuesdays.
- Sam is learning Italian (evening class on Thursdays, 19:00).
- Sam's sister Léa visits on the first weekend of each month.
MD
    local today
    today=$(date +%F)
    printf -- '- 08:10 Slept after the night shift.\n- 12:30 Lunch with Léa planned for Saturday.\n' \
        >"$home/data/workspace/memory/$today.md"
    HOME=$home LOCALGPT_CONFIG=$home/config.toml LOCALGPT_DATA_DIR=$home/data \
        LOCALGPT_STATE_DIR=$home/state LOCALGPT_CACHE_DIR=$home/cache \
        "$bin" daemon start --foreground 2>"$home/daemon.log" &
    local daemon_pid=$!
    PIDS+=("$daemon_pid")
    wait_up "$dport"
    python3 - "$dport" "$LLM" "$home" "$name" <<'PY'
import datetime, http.client, json, sys, time
dport, llm, home, name = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

def post(port, path, body, host="127.0.0.1"):
    conn = http.client.HTTPConnection(host, port, timeout=900)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"null")
    assert resp.status in (200, 201), (resp.status, data)
    return data

llm_host, llm_port = llm.split("//")[1].split(":")
def tokens(text):
    return len(post(int(llm_port), "/tokenize", {"content": text}, llm_host)["tokens"])

messages = [
    "Hi! What do you know about me?",
    "What is my cat called?",
    "When is my Italian class?",
    "Suggest a dinner for tonight.",
    "Who visits me this month?",
    "Did I write anything new in today's log?",
    "What should I buy for Miso?",
    "Translate 'good night' into Italian.",
    "How many hours of sleep do nurses need?",
    "Thanks, that is all for now.",
]
session = post(dport, "/api/sessions", {})["session_id"]
log_path = f"{home}/proxy.jsonl"
rows, previous = [], ""
for i, message in enumerate(messages, 1):
    if i == 4:
        # Cross a minute boundary between turns 3 and 4.
        time.sleep(61 - datetime.datetime.now().second)
    if i == 6:
        # A memory write: a line in today's daily log, as an editor or a script adds it.
        today = datetime.date.today().isoformat()
        with open(f"{home}/data/workspace/memory/{today}.md", "a") as f:
            f.write(f"- {datetime.datetime.now():%H:%M} Bought cat food and a new lamp.\n")
    seen = sum(1 for _ in open(log_path))
    t0 = time.perf_counter()
    answer = post(dport, "/api/chat", {"message": message, "session_id": session})
    ms = (time.perf_counter() - t0) * 1000
    calls = [json.loads(l)["timings"] or {} for l in open(log_path).readlines()[seen:]]
    evaluated = sum(c.get("prompt_n", 0) for c in calls)
    cached = sum(c.get("cache_n", 0) for c in calls)
    reading = sum(c.get("prompt_ms", 0) for c in calls)
    bound = tokens(message) + tokens(previous) + 64
    rows.append((i, evaluated, cached, bound, reading, ms, len(calls), answer["tokens"].get("cached")))
    previous = answer["response"]

print(f"\n== {name} ==")
print("turn  evaluated  reused   bound   reading   latency  calls  tokens.cached")
for i, ev, ca, bound, reading, ms, calls, reported in rows:
    ok = "" if i == 1 else ("  ok" if ev <= bound else "  OVER")
    print(f"{i:>4}  {ev:>9}  {ca:>6}  {bound:>6}  {reading / 1000:>6.2f} s  {ms / 1000:>6.2f} s  {calls:>5}"
          f"  {str(reported):>13}{ok}")
rest = rows[1:]
print(f"turns 2-10: {sum(r[1] for r in rest)} tokens evaluated in {sum(r[4] for r in rest) / 1000:.1f} s "
      f"of reading ({sum(r[5] for r in rest) / 1000:.1f} s in all); "
      f"{sum(1 for r in rest if r[1] <= r[3])}/9 within the bound")
PY
    kill "$daemon_pid" "$proxy_pid" 2>/dev/null || true
    wait "$daemon_pid" "$proxy_pid" 2>/dev/null || true
}

run_session run-old "before ($(git rev-parse --short "$OLD"))" "$OLD_BIN"
run_session run-new "after ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo +))" "$BIN"
