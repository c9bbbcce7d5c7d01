#!/usr/bin/env bash
# HTTP benchmark: /health under wrk against the daemon and against a bare tiny_http
# hello-world built in the same run, plus idle RSS, binary size and start time.
# Usage: scripts/bench-http.sh [duration_seconds]   (needs wrk, curl, python3)
source "$(dirname "$0")/bench-common.sh"

DURATION=${1:-5}
CONNS=64
need wrk wrk
cargo build --release --quiet --example hello_tiny_http
HELLO=target/release/examples/hello_tiny_http

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# wrk prints "Requests/sec: N" and, with --latency, a "99%" line.
run_wrk() {
    wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/health" >"$WORK/wrk-$2.txt"
    RPS=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-$2.txt")
    # p99 in milliseconds, whatever unit wrk chose (us, ms, s).
    P99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/, "", v); v = v / 1000}
        else if (v ~ /ms$/) {sub(/ms$/, "", v)} else {sub(/s$/, "", v); v = v * 1000}; print v}' "$WORK/wrk-$2.txt")
}

# Both servers run side by side; wrk alternates between them so a noisy moment on this
# machine hits both alike, and the medians are compared.
DPORT=$(free_port)
printf '[server]\nport = %s\n[heartbeat]\nenabled = false\n' "$DPORT" >"$LOCALGPT_CONFIG"
"$BIN" daemon start --foreground 2>"$WORK/daemon.log" &
DPID=$!
PIDS+=("$DPID")
HPORT=$(free_port)
"$HELLO" "$HPORT" &
HPID=$!
PIDS+=("$HPID")
wait_up "$DPORT"
wait_up "$HPORT"
sleep 1
IDLE_RSS=$(rss_kib "$DPID")
D_ALL=() H_ALL=() D_P99S=() H_P99S=()
for round in 1 2 3 4 5; do
    run_wrk "$DPORT" "daemon-$round"
    D_ALL+=("$RPS") D_P99S+=("$P99")
    run_wrk "$HPORT" "hello-$round"
    H_ALL+=("$RPS") H_P99S+=("$P99")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
D_RPS=$(median "${D_ALL[@]}") H_RPS=$(median "${H_ALL[@]}")
D_P99=$(printf '%s\n' "${D_P99S[@]}" | sort -g | sed -n 3p) H_P99=$(printf '%s\n' "${H_P99S[@]}" | sort -g | sed -n 3p)
sleep 1
LOADED_RSS=$(rss_kib "$DPID")
kill -TERM "$DPID" "$HPID"
wait "$DPID" "$HPID" 2>/dev/null || true

# --- start time: exec to first 200, median of 20 ---
START_MS=$(python3 - "$BIN" <<'PY'
import os, socket, subprocess, sys, time, statistics
binary = sys.argv[1]
times = []
for _ in range(20):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    with open(os.environ["LOCALGPT_CONFIG"], "w") as f:
        f.write(f"[server]\nport = {port}\n[heartbeat]\nenabled = false\n")
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "daemon", "start", "--foreground"], stderr=subprocess.DEVNULL)
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            if c.recv(64).startswith(b"HTTP/1.1 200"):
                c.close(); break
            c.close()
        except OSError:
            time.sleep(0.0005)
    times.append((time.perf_counter() - t0) * 1000)
    p.terminate(); p.wait()
print(f"{statistics.median(times):.1f}")
PY
)

SIZE=$(stat -c %s "$BIN")
RATIO=$(python3 -c "print(f'{$D_RPS / $H_RPS:.2f}')")
echo
echo "== localgpt HTTP benchmark (wrk, $CONNS connections, /health, 5 alternating rounds of ${DURATION}s, medians) =="
echo "rounds, daemon req/s: ${D_ALL[*]}"
echo "rounds, bare   req/s: ${H_ALL[*]}"
printf '%-28s %12s req/s   p99 %s ms (median round)\n' "localgpt daemon" "$D_RPS" "$D_P99"
printf '%-28s %12s req/s   p99 %s ms (median round)\n' "bare tiny_http hello-world" "$H_RPS" "$H_P99"
printf '%-28s %12s   (target >= 0.8)\n' "ratio daemon/bare" "$RATIO"
printf '%-28s %9s KiB   (target <= 10240)\n' "idle RSS after start" "$IDLE_RSS"
printf '%-28s %9s KiB\n' "RSS after load" "$LOADED_RSS"
printf '%-28s %9s bytes (target <= 8 MiB)\n' "stripped release binary" "$SIZE"
printf '%-28s %9s ms    (target <= 50)\n' "exec to first 200 (median)" "$START_MS"
