#!/usr/bin/env bash
# Reproduces a stall found by scripts/bench-load.sh: a new connection that tiny_http 0.12
# accepts but leaves unserved until some *other* connection closes.
#
# tiny_http hands each accepted connection to its TaskPool (src/util/task_pool.rs). `spawn`
# queues the connection instead of starting a thread whenever `waiting_tasks > 0`; but a
# thread it has just woken with `notify_one` still counts as waiting until it re-takes the
# lock. When connections arrive faster than woken threads re-take it, later ones are queued
# with a wake-up nobody receives; the woken threads take the first ones, which are
# keep-alive connections and never give the thread back. The rest wait until a connection
# closes somewhere (or an idle thread's 5 s timeout fires, when there is one).
# The daemon works around it (src/server/conn/nudge.rs): its column should read 0, while the
# bare server keeps stranding connections.
#
# Each round opens 64 connections at once against a bare tiny_http server
# (examples/hello_tiny_http.rs) and against the daemon, asks /health once on each, and
# keeps them all open for 2 s. A connection answered only at ~2000 ms was stranded: it was
# served when the others closed. It is a race, so it shows in some rounds, not all.
# One second into each daemon burst the script counts, with `ss`, the daemon's established
# sockets holding unread request bytes (Recv-Q > 0) and the listen socket's accept queue,
# and reads the daemon's thread count: stranded connections are accepted (accept queue
# empty) but have no thread reading them.
# Usage: scripts/repro-pool-stall.sh [rounds]
#        DAEMON_EXTRA="pool_nudge = false" scripts/repro-pool-stall.sh   (the daemon without the nudger)
source "$(dirname "$0")/bench-common.sh"

ROUNDS=${1:-10}
cargo build --release --quiet --example loadgen --example hello_tiny_http
LOADGEN=$PWD/target/release/examples/loadgen

start_fake tool
start_daemon "${DAEMON_EXTRA:-}"
HPORT=$(free_port)
target/release/examples/hello_tiny_http "$HPORT" &
PIDS+=("$!")
wait_up "$HPORT"
sleep 1
THREADS_IDLE=$(awk '/^Threads/ {print $2}' "/proc/$DPID/status")

# unread_sockets PORT: established server-side sockets with bytes waiting in Recv-Q.
unread_sockets() { ss -Htn state established "sport = :$1" | awk '$1 > 0' | wc -l; }
accept_queue() { ss -Hltn "sport = :$1" | awk '{print $2}'; }
kv() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }
BARE=0 DAEMON=0 BARE_ROUNDS=0 DAEMON_ROUNDS=0
echo "== 64 connections at once, one /health each, all held open 2 s; $ROUNDS rounds =="
for round in $(seq 1 "$ROUNDS"); do
    b=$("$LOADGEN" burst --port "$HPORT" --conns 64 --hold-ms 2000)
    "$LOADGEN" burst --port "$DPORT" --conns 64 --hold-ms 2000 >"$WORK/burst.out" &
    sleep 1
    snap="unread sockets $(unread_sockets "$DPORT"), accept queue $(accept_queue "$DPORT"), threads $(awk '/^Threads/ {print $2}' "/proc/$DPID/status")"
    wait $!
    d=$(cat "$WORK/burst.out")
    nb=$(kv "$b" stalled_until_hold) nd=$(kv "$d" stalled_until_hold)
    printf 'round %2s   bare tiny_http: %2s stranded   daemon: %2s stranded (at 1 s: %s)\n' \
        "$round" "$nb" "$nd" "$snap"
    BARE=$((BARE + nb)) DAEMON=$((DAEMON + nd))
    [ "$nb" != 0 ] && BARE_ROUNDS=$((BARE_ROUNDS + 1))
    [ "$nd" != 0 ] && DAEMON_ROUNDS=$((DAEMON_ROUNDS + 1))
    sleep 0.5
done
echo "(daemon threads at rest: $THREADS_IDLE; a stranded connection was answered after $(kv "$d" hold_ms) ms, when the others closed)"
echo "stranded connections: bare tiny_http $BARE (in $BARE_ROUNDS of $ROUNDS rounds), daemon $DAEMON (in $DAEMON_ROUNDS of $ROUNDS rounds)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
