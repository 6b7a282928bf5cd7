#!/usr/bin/env bash
# bench/layout.sh: regenerate deploy/warden.order, the functions deploy/build.sh lays out first.
#
# Builds the production binary unstripped (no sandbox), runs it under valgrind's callgrind
# through what every warden does: start-up with two children, serving /metrics,
# /api/v1/status, /, /healthz and /readyz, and a SIGTERM shutdown. Every function of warden's
# own binary that ran is listed by its symbol name (whose hash changes with the compiler and the
# dependencies: deploy/build.sh then matches without it). Run it after a toolchain or dependency
# update or a large change, then check `bench/run.sh --only memory`.
#
# Usage: bench/layout.sh     (needs valgrind and curl; bench/install-peers.sh installs both)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
for tool in valgrind curl nm python3; do
    command -v "$tool" >/dev/null || { echo "layout.sh: $tool is needed" >&2; exit 1; }
done
cargo rustc --release --no-default-features --bin warden -- -C strip=none
nm target/release/warden >/dev/null 2>&1 || { echo "layout.sh: target/release/warden has no symbols" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/warden-layout.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp target/release/warden "$work/warden"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf '[supervisor]\nshutdown_timeout = "10s"\n[http]\nlisten = "127.0.0.1:%s"\n' "$port" >"$work/supervisor.toml"
printf '[programs.p%s]\ncommand = ["sleep", "100000"]\n' 0 1 >>"$work/supervisor.toml"
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/callgrind.out" \
    "$work/warden" run -c "$work/supervisor.toml" >"$work/warden.log" 2>&1 &
pid=$!
ready=""
for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && { ready=1; break; }
    sleep 0.1
done
[ -n "$ready" ] || { echo "layout.sh: warden never got ready: $(tail -n 5 "$work/warden.log")" >&2; kill "$pid"; exit 1; }
for path in /metrics /api/v1/status / /healthz /readyz; do
    curl -fsS -o /dev/null --max-time 30 "http://127.0.0.1:$port$path"
done
kill -TERM "$pid"
wait "$pid" || true
# Functions defined in warden's .text, in the order callgrind first names them.
nm --defined-only "$work/warden" | awk '$2 ~ /^[tT]$/ { print $3 }' | sort -u >"$work/text"
{
    echo "# Functions warden runs at start-up, at work and at shutdown (bench/layout.sh, $(date -u +%F));"
    echo "# deploy/build.sh puts them first in .text. $(rustc --version), Cargo.lock of $(git rev-parse --short HEAD)."
    grep -oE '^c?fn=\([0-9]+\) [^ ]+' "$work/callgrind.out" | cut -d' ' -f2 | awk '!seen[$0]++' |
        grep -Fxf "$work/text"
} >deploy/warden.order
echo "layout.sh: $(grep -vc '^#' deploy/warden.order) functions written to deploy/warden.order" >&2
touch src/main.rs
