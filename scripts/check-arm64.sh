#!/usr/bin/env bash
# Cross-builds localgpt for arm64 (Raspberry Pi OS, arm64 servers), runs that binary here
# under qemu-user as the packaged service would run it (the directories come from
# $STATE_DIRECTORY and friends, as systemd passes them), and walks scripts/smoke.sh
# against it with scripts/fake_openai.py as the provider. Exits non-zero on any failure.
#
#   scripts/check-arm64.sh
#
# Not part of `cargo test`: it needs the network once for the rustup target, and Debian's
# gcc-aarch64-linux-gnu and qemu-user-static, which it installs when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "check-arm64: $*" >&2; }
die() { say "FAIL: $*"; exit 1; }

target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu

need_deb() { # need_deb COMMAND PACKAGE
    command -v "$1" >/dev/null && return
    say "installing $2 with apt-get (for $1)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2
}

if ! rustup target list --installed | grep -qx "$target"; then
    say "adding the Rust target $target with rustup"
    rustup target add "$target" >&2
fi
need_deb aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
need_deb qemu-aarch64-static qemu-user-static
need_deb curl curl
command -v python3 >/dev/null || die "python3 is needed for scripts/fake_openai.py"

say "building for $target (release profile)"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
    cargo build --release --locked --target "$target" >&2
bin=$PWD/target/$target/release/localgpt
say "binary: $(du -k "$bin" | cut -f1) KiB$(command -v file >/dev/null && echo ", $(file -b "$bin" | cut -d, -f1-2)")"

work=$(mktemp -d)
fake_pid=""
daemon_pid=""
cleanup() {
    [[ -n "$daemon_pid" ]] && kill "$daemon_pid" 2>/dev/null || true
    [[ -n "$fake_pid" ]] && kill "$fake_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

arm64() { qemu-aarch64-static -L "$sysroot" "$bin" "$@"; }
version=$(arm64 --version) || die "the arm64 binary does not run under qemu"
say "under qemu: $version"

python3 scripts/fake_openai.py --mode stream --deltas 5 --cadence-ms 1 > "$work/fake.out" &
fake_pid=$!
port=""
for _ in $(seq 1 500); do
    port=$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$work/fake.out")
    [[ -n "$port" ]] && break
    kill -0 "$fake_pid" 2>/dev/null || die "the fake provider exited"
    sleep 0.02
done
[[ -n "$port" ]] || die "the fake provider did not start"

# The layout of the system service: /etc/localgpt, /var/lib/localgpt, /var/cache/localgpt,
# /run/localgpt, here under $work.
mkdir -p "$work"/{etc,lib,cache,run,home}
token=check-arm64-token
cat > "$work/etc/config.toml" <<EOF
[server]
port = 0
auth_token = "$token"
[agent]
default_model = "openai/fake"
[providers.openai]
api_key = "sk-fake"
base_url = "http://127.0.0.1:$port/v1"
[heartbeat]
enabled = false
EOF

env -i PATH="$PATH" HOME="$work/home" \
    CONFIGURATION_DIRECTORY="$work/etc" STATE_DIRECTORY="$work/lib" \
    CACHE_DIRECTORY="$work/cache" RUNTIME_DIRECTORY="$work/run" \
    qemu-aarch64-static -L "$sysroot" "$bin" daemon start --foreground 2> "$work/daemon.log" &
daemon_pid=$!
addr=""
for _ in $(seq 1 3000); do
    addr=$(sed -n 2p "$work/run/localgpt.pid" 2>/dev/null || true)
    [[ -n "$addr" ]] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; die "the daemon exited"; }
    sleep 0.02
done
[[ -n "$addr" ]] || { cat "$work/daemon.log" >&2; die "the daemon did not start"; }
say "daemon (arm64 under qemu) listening on $addr"

LOCALGPT_TOKEN=$token bash scripts/smoke.sh "http://$addr" || {
    cat "$work/daemon.log" >&2
    die "the smoke walkthrough failed against the arm64 daemon"
}

for f in lib/workspace/MEMORY.md lib/sessions.sqlite cache/memory-index.sqlite; do
    [[ -f "$work/$f" ]] || die "$f is missing: the systemd directories were not used"
done
say "files in the systemd directories: lib/workspace/, lib/sessions.sqlite, cache/memory-index.sqlite"

kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=""
[[ $status -eq 0 ]] || { cat "$work/daemon.log" >&2; die "the daemon exited with $status on SIGTERM"; }
say "SIGTERM: clean exit 0"
say "arm64 check passed"
