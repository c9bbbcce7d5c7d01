#!/usr/bin/env bash
# Bounded load test (a few minutes at most; not part of cargo test). With the default
# daemon config and the fake provider (scripts/fake_openai.py, one tool call per chat):
#  1. 300 slow connections (slowloris: a request dribbled a few bytes every 1.5 s, never
#     finished) are opened and kept at 300 for the whole run: each one the daemon closes
#     (server.header_timeout) is replaced by a new one; their lifetimes are reported;
#  2. with only those open, a single prober asks /health 1,000 times on one keep-alive
#     connection and 1,000 times on a new connection each;
#  3. examples/loadgen.rs sends 20,000 requests over 64 keep-alive connections
#     (mix: /health 40%, /api/status 20%, /api/memory/search 30%, POST /api/chat 10%)
#     while the prober keeps asking /health on new connections;
#  4. the slow connections close; the daemon's RSS and threads are read 10 s later.
# RSS and threads are read from /proc before, every 0.2 s during (peak), and after.
# Usage: scripts/bench-load.sh [requests] [connections] [slow_connections]
#        MIX=40,20,30,10 scripts/bench-load.sh
source "$(dirname "$0")/bench-common.sh"

REQUESTS=${1:-20000}
CONNS=${2:-64}
SLOW=${3:-300}
MIX=${MIX:-40,20,30,10}
AFTER_WAIT=10
QUERIES="backup,raspberry,heartbeat,sqlite,garden,sourdough"
cargo build --release --quiet --example loadgen
LOADGEN=$PWD/target/release/examples/loadgen

# The slow client and the daemon each need an fd per connection.
ulimit -n 4096 2>/dev/null || true

# --- a workspace whose notes every search query hits -------------------------------------
WS=$LOCALGPT_DATA_DIR/workspace
mkdir -p "$WS/knowledge" "$WS/memory"
for i in $(seq 1 40); do
    {
        echo "# Notes $i"
        echo
        echo "The backup of the raspberry pi runs nightly; check the heartbeat log if it fails."
        echo "SQLite keeps the index; the garden needs water on Tuesdays (note $i)."
        echo "Sourdough starter: feed it twice a day, keep it near the window."
        for j in $(seq 1 15); do
            echo "- item $j of list $i: backup disk $j, garden bed $j, sqlite page $j"
        done
    } >"$WS/knowledge/notes-$i.md"
done
printf '# Memory\n\nThe user keeps a raspberry pi for backups and a small garden.\n' >"$WS/MEMORY.md"

start_fake tool
start_daemon ""

proc_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# The kernel's count of connections dropped because a listen queue was full (for the whole
# network namespace, so other programs can add to it; read it as an upper bound).
listen_overflows() {
    awk '/^TcpExt:/ {if (!h) {split($0, n); h = 1} else {split($0, v); for (i in n) if (n[i] == "ListenOverflows") print v[i]}}' /proc/net/netstat
}
kv() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

# Every query must hit before anything is measured.
for q in ${QUERIES//,/ }; do
    total=$(curl -sf "http://127.0.0.1:$DPORT/api/memory/search?q=$q" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
    if [ "$total" = 0 ]; then
        echo "search for $q found nothing: the workspace was not indexed" >&2
        exit 1
    fi
done

# Warm every route (first provider connection, page cache, session store), then wait for
# tiny_http's extra connection threads to expire (an idle one lives 5 s after its last
# wake-up): the baseline is taken once the thread count has held still for 6 s.
"$LOADGEN" load --port "$DPORT" --requests 400 --conns 4 --mix "$MIX" --queries "$QUERIES" --quiet >"$WORK/warm.out"
if [ "$(kv "$(grep ^RESULT "$WORK/warm.out")" unexpected)" != 0 ]; then
    echo "warm-up had unexpected errors:" >&2
    cat "$WORK/warm.out" >&2
    exit 1
fi
last=-1 still=0
for _ in $(seq 1 30); do
    sleep 1
    now=$(proc_field "$DPID" Threads)
    if [ "$now" = "$last" ]; then still=$((still + 1)); else still=0; fi
    last=$now
    [ "$still" -ge 6 ] && break
done
RSS_BEFORE=$(proc_field "$DPID" VmRSS) THR_BEFORE=$(proc_field "$DPID" Threads)
LOAD_START=$(loadavg)

# --- sampler: RSS and threads every 0.2 s until told to stop -----------------------------
SAMPLE_STOP=$WORK/sample.stop
(
    while [ ! -e "$SAMPLE_STOP" ]; do
        rss='' thr=''
        while read -r key value _; do
            case $key in VmRSS:) rss=$value ;; Threads:) thr=$value ;; esac
        done <"/proc/$DPID/status"
        echo "$rss $thr"
        sleep 0.2
    done
) >"$WORK/samples.txt" &
PIDS+=("$!")

# --- 1. the slow connections --------------------------------------------------------------
SLOW_STOP=$WORK/slow.stop
OV0=$(listen_overflows)
"$LOADGEN" slow --port "$DPORT" --conns "$SLOW" --interval-ms 1500 --bytes 4 --reconnect --stop-file "$SLOW_STOP" >"$WORK/slow.out" &
SLOW_PID=$!
PIDS+=("$SLOW_PID")
for _ in $(seq 1 300); do
    grep -q '^SLOW ready' "$WORK/slow.out" 2>/dev/null && break
    sleep 0.05
done
grep '^SLOW ready' "$WORK/slow.out" >/dev/null || { echo "the slow client did not start" >&2; exit 1; }
sleep 3 # a couple of dribbles in, so every connection holds a half-read request
OV1=$(listen_overflows)

# --- 2. /health with only the slow connections open --------------------------------------
"$LOADGEN" probe --port "$DPORT" --count 1000 --interval-ms 5 --label slow-only >"$WORK/probe-ka.out"
"$LOADGEN" probe --port "$DPORT" --count 1000 --interval-ms 5 --fresh --label slow-only >"$WORK/probe-fresh.out"
LOAD_QUIET=$(loadavg)
OV2=$(listen_overflows)

# --- 3. the main load, with the prober alongside -----------------------------------------
PROBE_STOP=$WORK/probe.stop
"$LOADGEN" probe --port "$DPORT" --interval-ms 1 --fresh --label under-load --stop-file "$PROBE_STOP" >"$WORK/probe-load.out" &
PROBE_PID=$!
PIDS+=("$PROBE_PID")
echo
echo "== localgpt load test: $REQUESTS requests over $CONNS keep-alive connections, $SLOW slow connections held open =="
"$LOADGEN" load --port "$DPORT" --requests "$REQUESTS" --conns "$CONNS" --mix "$MIX" --queries "$QUERIES" | tee "$WORK/load.out"
LOAD_END=$(loadavg)
OV3=$(listen_overflows)
touch "$PROBE_STOP"
wait "$PROBE_PID" || true

# --- 4. close the slow connections, wait, read the footprint -----------------------------
touch "$SLOW_STOP"
wait "$SLOW_PID" || true
sleep "$AFTER_WAIT"
touch "$SAMPLE_STOP"
RSS_AFTER=$(proc_field "$DPID" VmRSS) THR_AFTER=$(proc_field "$DPID" Threads)
sleep 0.3
RSS_PEAK=$(awk '$1 > m {m = $1} END {print m}' "$WORK/samples.txt")
THR_PEAK=$(awk '$2 > m {m = $2} END {print m}' "$WORK/samples.txt")

RESULT=$(grep '^RESULT' "$WORK/load.out") || { echo "loadgen printed no result" >&2; exit 1; }
SLOW_END=$(grep '^SLOW opened' "$WORK/slow.out") || { echo "the slow client printed no summary" >&2; cat "$WORK/slow.out" >&2; exit 1; }
UNEXPECTED=$(kv "$RESULT" unexpected) SHED=$(kv "$RESULT" shed)

echo
echo "slow connections: $(sed 's/^SLOW //' <<<"$SLOW_END")"
grep -v '^SLOW' "$WORK/slow.out" || true
echo
echo "/health from a single prober ($SLOW slow connections open; a probe every 5 ms alone, every 1 ms under load):"
for f in probe-ka probe-fresh probe-load; do
    line=$(grep '^PROBE' "$WORK/$f.out") || { echo "  $f printed no result" >&2; continue; }
    printf '  %-11s %-15s n %5s  errors %s  p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms\n' \
        "$(kv "$line" label)" "$(kv "$line" mode)" "$(kv "$line" n)" "$(kv "$line" errors)" \
        "$(kv "$line" p50_ms)" "$(kv "$line" p99_ms)" "$(kv "$line" max_ms)"
    grep -o 'error_kinds=.*' <<<"$line" | sed 's/^/    /' || true
done
echo
printf '%-8s %10s %9s\n' "daemon" "RSS KiB" "threads"
printf '%-8s %10s %9s\n' before "$RSS_BEFORE" "$THR_BEFORE"
printf '%-8s %10s %9s   (peak of %s samples every 0.2 s)\n' during "$RSS_PEAK" "$THR_PEAK" "$(wc -l <"$WORK/samples.txt")"
printf '%-8s %10s %9s   (%s s after the slow connections closed)\n' after "$RSS_AFTER" "$THR_AFTER" "$AFTER_WAIT"
echo
BACKLOG=$(ss -Hltn "sport = :$DPORT" 2>/dev/null | awk '{print $3}' || true)
echo "kernel listen-queue overflows (namespace-wide): connecting the slow clients +$((OV1 - OV0)), quiet probes +$((OV2 - OV1)), main load +$((OV3 - OV2))  (daemon's listen backlog: ${BACKLOG:-unknown})"
echo "load average (1/5/15 min): at start $LOAD_START; after the quiet probes $LOAD_QUIET; after the load $LOAD_END  ($(nproc) cores)"

# --- verdicts ------------------------------------------------------------------------------
verdict() { if [ "$1" = 1 ]; then echo "PASS  $2"; else echo "MISS  $2"; fi; }
le() { python3 -c "import sys; print(int(float(sys.argv[1]) <= float(sys.argv[2])))" "$1" "$2"; }
lt() { python3 -c "import sys; print(int(float(sys.argv[1]) < float(sys.argv[2])))" "$1" "$2"; }
P99_KA=$(kv "$(grep ^PROBE "$WORK/probe-ka.out")" p99_ms)
P99_FRESH=$(kv "$(grep ^PROBE "$WORK/probe-fresh.out")" p99_ms)
P99_LOAD=$(kv "$(grep ^PROBE "$WORK/probe-load.out")" p99_ms)
PROBE_ERR=$(( $(kv "$(grep ^PROBE "$WORK/probe-ka.out")" errors) + $(kv "$(grep ^PROBE "$WORK/probe-fresh.out")" errors) + $(kv "$(grep ^PROBE "$WORK/probe-load.out")" errors) ))
echo
echo "== verdicts =="
verdict "$([ "$UNEXPECTED" = 0 ] && [ "$PROBE_ERR" = 0 ] && echo 1)" \
    "unexpected errors: $UNEXPECTED in the load, $PROBE_ERR in the probes (target 0)"
if [ "$SHED" = 0 ]; then
    echo "INFO  no request was shed (503) with the default config"
else
    echo "INFO  $SHED requests shed with 503 + Retry-After under the default config (lane bounds: chat_workers 4 + chat_queue 4, workers 4 + queue 64)"
fi
verdict "$(lt "$P99_KA" 10)" "/health p99 with $SLOW slow connections, no other load, keep-alive: $P99_KA ms (target < 10)"
verdict "$(lt "$P99_FRESH" 10)" "/health p99 with $SLOW slow connections, no other load, new connection each: $P99_FRESH ms (target < 10)"
verdict "$(lt "$P99_LOAD" 10)" "/health p99 with $SLOW slow connections and the main load, new connection each: $P99_LOAD ms (target < 10)"
SECS=$(kv "$RESULT" secs)
echo "INFO  under the main load every fast-lane request waits its turn: $CONNS closed-loop connections / $(python3 -c "print(round($REQUESTS / $SECS))") req/s = $(python3 -c "print(f'{$CONNS * $SECS / $REQUESTS * 1000:.1f}')") ms mean time in the daemon (Little's law), /health included"
STALLS=$(kv "$RESULT" stalls)
if [ "$STALLS" != 0 ]; then
    echo "INFO  $STALLS load requests took over 500 ms, $(kv "$RESULT" stalls_first_on_conn) of them the first on their connection (see scripts/repro-pool-stall.sh)"
fi
verdict "$(le "$THR_AFTER" $((THR_BEFORE + 2)))" "threads back to baseline: $THR_BEFORE -> $THR_PEAK -> $THR_AFTER (target after <= before + 2)"
verdict "$(le "$RSS_AFTER" "$(( RSS_BEFORE * 5 / 4 ))")" "RSS back near baseline: $RSS_BEFORE -> $RSS_PEAK -> $RSS_AFTER KiB (target after <= before + 25%)"
echo "INFO  slow connections: $(kv "$SLOW_END" opened) opened, $(kv "$SLOW_END" reopened) reopened after the daemon closed them; $(kv "$SLOW_END" closed_by_server) closed by the daemon, $(kv "$SLOW_END" answered_by_server) answered; lifetime p50 $(kv "$SLOW_END" lifetime_p50_s) s, max $(kv "$SLOW_END" lifetime_max_s) s (server.header_timeout 10s)"
echo
echo "daemon warnings/errors during the run:"
grep -E "WARN|ERROR" "$WORK/daemon.log" | sed -E 's/^[0-9:. -]+//' | sort | uniq -c | head -10 || echo "  none"
