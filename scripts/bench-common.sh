# Shared by the benchmark scripts: tool checks, a temporary home, the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
# The daemon runs with HOME pointing at a temporary folder; cargo and rustup must not.
export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup} CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "installing $2 ..." >&2
            apt-get install -y -qq "$2" >/dev/null
        else
            echo "missing $1: install it (apt-get install $2)" >&2
            exit 1
        fi
    fi
}
need python3 python3
need curl curl

cargo build --release --quiet --bin localgpt
BIN=$PWD/target/release/localgpt

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

export HOME=$WORK LOCALGPT_CONFIG=$WORK/config.toml LOCALGPT_DATA_DIR=$WORK/data \
    LOCALGPT_STATE_DIR=$WORK/state LOCALGPT_CACHE_DIR=$WORK/cache
unset XDG_RUNTIME_DIR

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_up() {
    for _ in $(seq 1 500); do
        curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
        sleep 0.01
    done
    echo "server on port $1 did not come up" >&2
    exit 1
}

# start_fake MODE [args...]: runs scripts/fake_openai.py, sets FAKE_PORT.
start_fake() {
    local mode=$1
    shift
    python3 scripts/fake_openai.py --mode "$mode" "$@" >"$WORK/fake.out" &
    PIDS+=("$!")
    for _ in $(seq 1 200); do
        FAKE_PORT=$(awk '/^ready/ {print $2}' "$WORK/fake.out" 2>/dev/null || true)
        [ -n "$FAKE_PORT" ] && return 0
        sleep 0.02
    done
    echo "fake provider did not start" >&2
    exit 1
}

# start_daemon EXTRA_TOML: writes the config (provider = the fake) and starts the daemon.
start_daemon() {
    DPORT=$(free_port)
    cat >"$LOCALGPT_CONFIG" <<TOML
[server]
port = $DPORT
$1
[agent]
default_model = "openai/bench"
[providers.openai]
base_url = "http://127.0.0.1:$FAKE_PORT/v1"
[heartbeat]
enabled = false
TOML
    "$BIN" daemon start --foreground 2>"$WORK/daemon.log" &
    DPID=$!
    PIDS+=("$DPID")
    wait_up "$DPORT"
}
