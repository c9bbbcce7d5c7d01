#!/usr/bin/env bash
# Memory search that finds meaning: recall on a labelled set, and what it costs, with the
# real local embedder (all-MiniLM-L6-v2 from ../shared/tools/local-llm, started with its
# start.sh). Every figure is measured side by side with its reference in the same run.
#
#   scripts/bench-recall.sh                  # everything (about 5 minutes on 2 cores)
#   PARTS="recall" scripts/bench-recall.sh   # some of: recall throughput scale
#   FUSION=rrf VECTOR_WEIGHT=0.6 PARTS=recall scripts/bench-recall.sh   # try other weights
#
# On a shared machine other work changes the embedder's speed from one minute to the
# next: throughput runs ROUNDS (3) rounds, each the embedder alone then the daemon, and
# sums them.
#
# Needs: python3, curl, a release build (built here if missing), the embedder answering on
# EMBED_URL (default http://127.0.0.1:18082/v1, model EMBED_MODEL all-minilm-l6-v2).
#
# What it prints:
#   recall      hit@1, hit@3 and MRR (top 10) of lexical, vector and hybrid search on the
#               recall set (scripts/recall/facts.py: 50 facts hidden in a year of daily
#               logs, asked with synonyms, abbreviations, other word forms, categories),
#               against grep-style ranking of lines by shared words.
#               Targets: hit@3 >= 0.85 lexical, >= 0.90 hybrid.
#   throughput  texts per second embedded by the daemon (batches in the background,
#               fresh index; timed by the daemon's own log line from its first batch to
#               nothing pending) vs the embedder's own rate for the same texts in batches
#               of the same size posted back to back, and the share of its time the daemon
#               spent waiting for the embedder (what is left is its own overhead, which
#               the load of the machine does not skew). Target: >= 0.8x.
#   scale       at 100,000 chunks with vectors: search p50/p95 per mode over HTTP (one
#               keep-alive connection) with the embedder's own time per query beside it,
#               and the daemon's RSS. Targets: hybrid p50 <= 20 ms, RSS <= 64 MiB.
#               (The vectors there are random, stored as the daemon stores them: a search
#               costs the same whatever they say, and embedding 100,000 chunks with a CPU
#               model takes longer than a benchmark should.)
set -euo pipefail

PARTS="${PARTS:-recall throughput scale}"
EMBED_URL="${EMBED_URL:-http://127.0.0.1:18082/v1}"
EMBED_MODEL="${EMBED_MODEL:-all-minilm-l6-v2}"
FUSION="${FUSION:-weighted}"
VECTOR_WEIGHT="${VECTOR_WEIGHT:-0.7}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/localgpt"
RECALL="$ROOT/scripts/recall"

for tool in python3 curl; do
    command -v "$tool" >/dev/null || { echo "bench-recall: needs $tool" >&2; exit 1; }
done
if ! curl -sf "$EMBED_URL/models" >/dev/null; then
    echo "bench-recall: no embedder at $EMBED_URL; start it with" >&2
    echo "  ../shared/tools/local-llm/start.sh WORKDIR   (see its README)" >&2
    exit 1
fi
if [[ ! -x "$BIN" || -n "$(find "$ROOT/src" -newer "$BIN" -name '*.rs' -print -quit)" ]]; then
    echo "building release binary..." >&2
    (cd "$ROOT" && cargo build --release --quiet)
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/localgpt-bench-recall.XXXXXX")"
DAEMON_PID=""
stop_daemon() {
    if [[ -n "$DAEMON_PID" ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    DAEMON_PID=""
}
cleanup() {
    stop_daemon
    rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

# use_home DIR: the environment of a daemon or CLI call living in DIR.
use_home() {
    export HOME="$1" LOCALGPT_CONFIG="$1/config.toml" LOCALGPT_DATA_DIR="$1/data"
    export LOCALGPT_STATE_DIR="$1/state" LOCALGPT_CACHE_DIR="$1/cache"
    unset LOCALGPT_WORKSPACE XDG_RUNTIME_DIR
}

# write_config DIR PORT EMBEDDINGS(yes|no) [extra [memory] lines]
write_config() {
    {
        printf '[server]\nport = %s\n[heartbeat]\nenabled = false\n[memory]\n%s\n' "$2" "${4:-}"
        if [[ "$3" == yes ]]; then
            printf '[memory.embeddings]\nprovider = "openai"\nbase_url = "%s"\nmodel = "%s"\n' \
                "$EMBED_URL" "$EMBED_MODEL"
            printf 'fusion = "%s"\nvector_weight = %s\n' "$FUSION" "$VECTOR_WEIGHT"
        fi
    } >"$1/config.toml"
}

start_daemon() {
    "$BIN" daemon start --foreground >"$HOME/daemon.log" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0
        sleep 0.1
    done
    echo "bench-recall: the daemon did not start:" >&2
    cat "$HOME/daemon.log" >&2
    exit 1
}

# wait_embedded PORT: until the index is up to date and every chunk has its vector. One
# process polling over one connection: a poller started anew each time would take CPU from
# the embedder it is timing.
wait_embedded() {
    python3 - "$1" <<'EOF' || { echo "bench-recall: embedding did not finish" >&2; exit 1; }
import http.client, json, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
deadline = time.time() + 3600
while time.time() < deadline:
    conn.request("GET", "/api/memory/stats")
    s = json.loads(conn.getresponse().read())
    e = s["embeddings"]
    if s["index"]["state"] == "ready" and e["state"] == "ready" and e["pending"] == 0:
        sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
EOF
}

rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

echo "== localgpt memory recall benchmark ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), embedder $EMBED_MODEL at $EMBED_URL, fusion $FUSION $VECTOR_WEIGHT) =="

if [[ " $PARTS " == *" recall "* ]]; then
    mkdir -p "$WORK/recall/data"
    python3 "$RECALL/generate.py" "$WORK/recall/data/workspace" >/dev/null
    use_home "$WORK/recall"
    # Results cut to the matching chunk, so a hit is the fact's own line ranked, not a
    # neighbour shown beside another line.
    write_config "$WORK/recall" 31411 yes "result_chars = 50"
    start_daemon 31411
    wait_embedded 31411
    echo
    echo "-- recall: $(python3 -c "import json; print(len(json.load(open('$WORK/recall/data/answers.json'))))") questions over $(ls "$WORK/recall/data/workspace/memory" | wc -l) daily logs (targets: hit@3 >= 0.85 lexical, >= 0.90 hybrid)"
    python3 "$RECALL/evaluate.py" --url http://127.0.0.1:31411 \
        --workspace "$WORK/recall/data/workspace" --answers "$WORK/recall/data/answers.json" \
        ${MISSES:+--misses}
    stop_daemon
fi

if [[ " $PARTS " == *" throughput "* ]]; then
    echo
    echo "-- throughput: the same texts, embedded by the daemon vs posted to the embedder directly (target >= 0.8x)"
    mkdir -p "$WORK/tp/data"
    python3 "$RECALL/generate.py" "$WORK/tp/data/workspace" --seed 3 >/dev/null
    use_home "$WORK/tp"
    write_config "$WORK/tp" 31412 no
    "$BIN" memory reindex >/dev/null 2>&1
    python3 - "$WORK/tp/cache/memory-index.sqlite" >"$WORK/tp/texts.json" <<'EOF'
import json, re, sqlite3, sys
# The text the daemon embeds for a chunk (src/memory/chunk.rs, embed_text).
heading = re.compile(r"^ {0,3}#{1,6}(\s|$)")
def embed_text(context, text):
    first, _, rest = text.partition("\n")
    body = text
    if heading.match(first):
        body = rest.lstrip() if rest else ""
    if not context:
        return text
    return f"{context}\n{body}" if body else context
rows = sqlite3.connect(sys.argv[1]).execute("SELECT context, content FROM chunks ORDER BY id")
seen, texts = set(), []
for c, t in rows:
    e = embed_text(c, t)
    if e not in seen:
        seen.add(e)
        texts.append(e)
json.dump(texts, sys.stdout)
EOF
    count=$(python3 -c "import json; print(len(json.load(open('$WORK/tp/texts.json'))))")
    direct_sum=0 daemon_sum=0
    for round in $(seq "${ROUNDS:-3}"); do
        direct=$(python3 - "$EMBED_URL" "$EMBED_MODEL" "$WORK/tp/texts.json" <<'EOF'
import http.client, json, sys, time, urllib.parse
url, model, texts = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
t = time.perf_counter()
for i in range(0, len(texts), 32):
    conn.request("POST", u.path.rstrip("/") + "/embeddings",
                 json.dumps({"model": model, "input": texts[i:i + 32]}),
                 {"content-type": "application/json"})
    r = conn.getresponse()
    r.read()
    assert r.status == 200, r.status
print(f"{len(texts) / (time.perf_counter() - t):.1f}")
EOF
)
        rm -rf "$WORK/tp/cache"
        write_config "$WORK/tp" 31412 yes
        start_daemon 31412
        wait_embedded 31412
        stop_daemon
        # The daemon's own account: from its first batch to nothing pending, and how much
        # of that it spent waiting for the embedder's answers.
        read -r texts took waiting < <(sed -n \
            's/.*memory: embedded \([0-9]*\) chunk texts in \([0-9.]*\) s (.*; \([0-9.]*\) s of it waiting.*/\1 \2 \3/p' \
            "$HOME/daemon.log" | tail -1)
        daemon=$(python3 -c "print(f'{$texts / $took:.1f}')")
        ratio=$(python3 -c "print(f'{$daemon / $direct:.2f}')")
        busy=$(python3 -c "print(f'{100 * $waiting / $took:.0f}')")
        printf '  round %d: %d texts; embedder alone %6.1f texts/s, through the daemon %6.1f texts/s: %sx (the daemon waited for the embedder %s%% of its time)\n' \
            "$round" "$texts" "$direct" "$daemon" "$ratio" "$busy"
        direct_sum=$(python3 -c "print($direct_sum + $count / $direct)")
        daemon_sum=$(python3 -c "print($daemon_sum + $texts / $daemon)")
    done
    python3 -c "print(f'  all rounds: embedder alone {$direct_sum:.1f} s, through the daemon {$daemon_sum:.1f} s: {$direct_sum / $daemon_sum:.2f}x')"
fi

if [[ " $PARTS " == *" scale "* ]]; then
    echo
    echo "-- scale: 100,000 chunks with vectors (targets: hybrid p50 <= 20 ms, RSS <= 64 MiB)"
    mkdir -p "$WORK/scale/data"
    python3 "$RECALL/generate.py" "$WORK/scale/data/workspace" --years 53 >/dev/null
    use_home "$WORK/scale"
    write_config "$WORK/scale" 31413 no
    "$BIN" memory reindex 2>/dev/null | sed 's/^/  /'
    python3 "$RECALL/fill_vectors.py" "$WORK/scale/cache/memory-index.sqlite" "$EMBED_MODEL" |
        sed 's/^/  /'
    write_config "$WORK/scale" 31413 yes
    start_daemon 31413
    wait_embedded 31413
    printf '  daemon RSS with every vector loaded: %d MiB\n' $(($(rss_kib "$DAEMON_PID") / 1024))
    python3 "$RECALL/latency.py" --url http://127.0.0.1:31413 \
        --answers "$WORK/scale/data/answers.json" --embedder "$EMBED_URL" --model "$EMBED_MODEL" |
        grep -v '^FIGURES'
    printf '  daemon RSS after the searches: %d MiB (peak %d MiB)\n' \
        $(($(rss_kib "$DAEMON_PID") / 1024)) \
        $(($(awk '/VmHWM/ { print $2 }' "/proc/$DAEMON_PID/status") / 1024))
    stop_daemon
fi
