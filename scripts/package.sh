#!/usr/bin/env bash
# Builds the Debian package of localgpt for one architecture and checks it with lintian.
#
#   scripts/package.sh [amd64|arm64]      default: this machine's architecture
#
# Output: target/debian/localgpt_<version>_<arch>.deb (release profile, stripped).
# Installs what it lacks and says so on stderr: cargo-deb (cargo install), the rustup
# target and Debian's cross gcc for a foreign architecture, help2man (the man page is
# made from `localgpt --help`), lintian, and qemu-user-static when the man page has to be
# made by running a foreign binary. Fails when lintian reports an error.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "package: $*" >&2; }
die() { say "$*"; exit 1; }

host_arch=$(dpkg --print-architecture)
arch=${1:-$host_arch}
case "$arch" in
    amd64) target=x86_64-unknown-linux-gnu gnu=x86-64-linux-gnu qemu=qemu-x86_64-static ;;
    arm64) target=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu qemu=qemu-aarch64-static ;;
    *) die "unknown architecture '$arch': use amd64 or arm64" ;;
esac
cross=no
[[ "$arch" != "$host_arch" ]] && cross=yes

apt_get() {
    if [[ -z "${PACKAGE_APT_UPDATED:-}" ]]; then
        apt-get update -qq >&2
        PACKAGE_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

need_deb() { # need_deb COMMAND PACKAGE
    command -v "$1" >/dev/null && return
    say "installing $2 with apt-get (for $1)"
    apt_get "$2"
}

if ! command -v cargo-deb >/dev/null; then
    say "installing cargo-deb with cargo install"
    cargo install --locked cargo-deb >&2
fi
need_deb lintian lintian
need_deb help2man help2man

build_env=()
if [[ $cross == yes ]]; then
    if ! rustup target list --installed | grep -qx "$target"; then
        say "adding the Rust target $target with rustup"
        rustup target add "$target" >&2
    fi
    need_deb "$gnu-gcc" "gcc-$gnu"
    need_deb "$qemu" qemu-user-static
    upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
    build_env=("CARGO_TARGET_${upper}_LINKER=$gnu-gcc" "CC_${target//-/_}=$gnu-gcc"
        "AR_${target//-/_}=$gnu-ar")
fi

version=$(cargo metadata --no-deps --format-version 1 \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
# The package's version is <version>-<revision>; the changelog's newest entry must match.
changelog_version=$(sed -n '1s/^localgpt (\([^)]*\)).*/\1/p' debian/changelog)
[[ "${changelog_version%-*}" == "$version" ]] \
    || die "debian/changelog starts at $changelog_version but Cargo.toml says $version: add an entry"

say "building localgpt $version for $arch ($target, release profile)"
if [[ $cross == yes ]]; then
    env "${build_env[@]}" cargo build --release --locked --target "$target" >&2
    binary=target/$target/release/localgpt
    run_binary=("$qemu" -L "/usr/$gnu" "$PWD/$binary")
else
    cargo build --release --locked >&2
    binary=target/release/localgpt
    run_binary=("$PWD/$binary")
fi

# Files the package takes from target/debian-assets/ (see [package.metadata.deb]).
assets=target/debian-assets
rm -rf "$assets"
mkdir -p "$assets"

# The conffile: the whole example config, commented out, under a note for the service.
{
    cat <<'EOF'
# /etc/localgpt/config.toml: the configuration of the localgpt system service.
# Every key below is commented out and so has its default. Uncomment what you change,
# then `systemctl restart localgpt`. The service has no Claude Code CLI: set
# agent.default_model to a provider it can reach (openai/…, anthropic/…, ollama/…).
#
# This file is readable by every local user. Provider keys and the API token belong in
# /etc/localgpt/environment (create it with mode 0600; systemd reads it, the service
# only sees the variables), one per line:
#   OPENAI_API_KEY=…   ANTHROPIC_API_KEY=…   LOCALGPT_AUTH_TOKEN=…
#
# The service keeps its data in /var/lib/localgpt (sessions, heartbeat state and the
# workspace, /var/lib/localgpt/workspace) and the memory index in /var/cache/localgpt.
# Logs: journalctl -u localgpt. More: /usr/share/doc/localgpt/install.md.
#
EOF
    sed -e 's/^\([^#[:space:]].*\)$/# \1/' config.example.toml
} > "$assets/config.toml"

# The user unit, pointed at the packaged binary instead of ~/.cargo/bin.
sed -e 's|%h/\.cargo/bin/localgpt|/usr/bin/localgpt|g' \
    -e 's|^# Install: .*|# Enable:   systemctl --user daemon-reload|' \
    -e '/^#           systemctl --user daemon-reload$/d' \
    -e 's|^# For a system-wide service use .*|# The system-wide service is /lib/systemd/system/localgpt.service.|' \
    scripts/localgpt.service > "$assets/localgpt.user.service"
grep -q '^ExecStart=/usr/bin/localgpt ' "$assets/localgpt.user.service" \
    || die "scripts/localgpt.service: ExecStart no longer names %h/.cargo/bin/localgpt"

# The man page, from the binary's own --help and --version, run through a wrapper named
# `localgpt` (under qemu for a foreign architecture) so the page names the command.
wrapper_dir=$(mktemp -d)
trap 'rm -rf "$wrapper_dir"' EXIT
printf '#!/bin/sh\nexec %s "$@"\n' "${run_binary[*]}" > "$wrapper_dir/localgpt"
chmod 755 "$wrapper_dir/localgpt"
help2man --no-info --section 1 --name "a personal AI assistant that lives on your machine" \
    --version-string "$version" --output "$assets/localgpt.1" "$wrapper_dir/localgpt" \
    || die "help2man could not run ${run_binary[*]}"
gzip -9n "$assets/localgpt.1"

out=target/debian/localgpt_${version}_${arch}.deb
mkdir -p target/debian
rm -f "$out"
deb_args=(--no-build --output "$out" --deb-version "$changelog_version")
# The release profile strips at link time (strip = true); the host's strip cannot read
# a foreign binary, so cargo-deb does not strip again there.
[[ $cross == yes ]] && deb_args+=(--target "$target" --no-strip)
env "${build_env[@]}" cargo deb "${deb_args[@]}" >&2
[[ -f "$out" ]] || die "cargo deb did not write $out"

if [[ $cross == yes ]]; then
    # dpkg-shlibdeps reads the cross libc's shlibs and asks for "libc6:arm64 (>= 2.36)",
    # the cross package's own version; the binary needs only the newest GLIBC_ symbol
    # version it links (Ubuntu 22.04 has 2.35, enough).
    glibc=$("$gnu-objdump" -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' \
        | sort -uV | tail -n 1)
    [[ -n "$glibc" ]] || die "no GLIBC_ symbol versions in $binary"
    repack=$(mktemp -d)
    dpkg-deb -R "$out" "$repack/pkg"
    sed -i "s/^Depends: .*/Depends: libc6 (>= $glibc)/" "$repack/pkg/DEBIAN/control"
    dpkg-deb --root-owner-group -Zxz -b "$repack/pkg" "$out" >&2
    rm -rf "$repack"
    say "Depends: libc6 (>= $glibc), from the binary's symbol versions"
fi

say "lintian $out"
lintian_out=$(lintian --fail-on error --display-info --allow-root "$out" 2>&1) && lintian_rc=0 || lintian_rc=$?
[[ -n "$lintian_out" ]] && echo "$lintian_out" >&2
[[ $lintian_rc -eq 0 ]] || die "lintian reports an error (exit $lintian_rc)"
say "lintian: no error"

if command -v file >/dev/null; then say "binary: $(file -b "$binary")"; fi
say "$(du -k "$out" | cut -f1) KiB  $out"
echo "$out"
