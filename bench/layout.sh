#!/usr/bin/env bash
# bench/layout.sh: regenerate deploy/warden.order, the functions deploy/build.sh lays out first.
#
# Builds the production binary unstripped (no sandbox) and runs it under valgrind's callgrind
# through what wardens do, twice:
#   1. no broker: start-up with two children (restart policy, backoff, stop timeout set),
#      serving /metrics, /api/v1/status, /, /healthz and /readyz, a SIGTERM shutdown;
#   2. the Kite provider against `warden sandbox kite` (the default build, target/release/warden
#      as `cargo build --release` leaves it; pass another with --tools): the automated login,
#      validations, the same requests, a forced refresh, shutdown.
# Every function of warden's own binary that ran is listed by its symbol name (whose hash changes
# with the compiler and the dependencies: deploy/build.sh then matches without it). Run it after
# a toolchain or dependency update or a large change, then check `bench/run.sh --only memory,kite`.
#
# Usage: bench/layout.sh [--tools WARDEN_WITH_SANDBOX]   (needs valgrind, curl, nm, python3)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
tools=$ROOT/target/release/warden
[ "${1:-}" = --tools ] && tools=$(realpath "$2")
for tool in valgrind curl nm python3; do
    command -v "$tool" >/dev/null || { echo "layout.sh: $tool is needed" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/warden-layout.XXXXXX")
pids=()
cleanup() {
    for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
"$tools" sandbox kite --help >/dev/null 2>&1 || { echo "layout.sh: $tools has no sandbox (cargo build --release)" >&2; exit 1; }
cp "$tools" "$work/tools"
touch src/main.rs # always relink: never reuse a binary another build left in target/release
cargo rustc --release --no-default-features --bin warden -- -C strip=none
nm target/release/warden >/dev/null 2>&1 || { echo "layout.sh: target/release/warden has no symbols" >&2; exit 1; }
cp target/release/warden "$work/warden"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ok() { # URL SECS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Runs warden under callgrind with config $1 (its [http] port $2) until it is ready, serves the
# endpoints, runs $3 (a shell command, may be empty), stops it. Output: $work/$4.out
profile() {
    local config=$1 port=$2 extra=$3 name=$4 pid base
    base=http://127.0.0.1:$port
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$name.out" \
        "$work/warden" run -c "$config" >"$work/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_ok "$base/readyz" 120 || { echo "layout.sh: $name: warden never got ready: $(tail -n 5 "$work/$name.log")" >&2; exit 1; }
    for path in /metrics /api/v1/status / /healthz /readyz; do
        curl -fsS -o /dev/null --max-time 30 "$base$path"
    done
    [ -z "$extra" ] || eval "$extra"
    kill -TERM "$pid"
    wait "$pid" || true
}

common='[supervisor]
shutdown_timeout = "10s"
[programs.p0]
command = ["sleep", "100000"]
restart = "always"
backoff_initial = "0s"
backoff_max = "0s"
max_restarts = 1000000
restart_window = "1s"
stop_timeout = "5s"
[programs.p1]
command = ["sleep", "100000"]'

port=$(free_port)
printf '%s\n[http]\nlisten = "127.0.0.1:%s"\n' "$common" "$port" >"$work/plain.toml"
profile "$work/plain.toml" "$port" "" plain

kport=$(free_port) port=$(free_port)
"$work/tools" sandbox kite --listen "127.0.0.1:$kport" >"$work/kite.log" 2>&1 &
pids+=("$!")
wait_ok "http://127.0.0.1:$kport/_sandbox/stats" 10 || { echo "layout.sh: the sandbox Kite did not start" >&2; exit 1; }
{
    printf '%s\n[http]\nlisten = "127.0.0.1:%s"\n' "$common" "$port"
    printf '[token]\nprovider = "kite"\nenv_file = "%s/.env"\nmin_interval = "0s"\ncheck_interval = "3s"\n' "$work"
    printf '[token.kite]\napi_key = "kitefront"\napi_secret = "kitefront-sandbox-secret"\n'
    printf 'user_id = "AB1234"\nlogin = "totp"\npassword = "sandbox-password"\n'
    printf 'totp_secret = "WARDENSANDBOXTOTPSECRETKITEAB234"\n'
    printf 'login_base = "http://127.0.0.1:%s"\napi_base = "http://127.0.0.1:%s"\n' "$kport" "$kport"
} >"$work/kite.toml"
# After the login: validations every 3 s, then a forced refresh (a whole new login, which waits
# for a fresh TOTP step) and its completion.
refresh="sleep 7
before=\$(curl -fsS http://127.0.0.1:$port/api/v1/status | grep -o '\"obtained_at\":\"[^\"]*\"' | head -n1)
curl -fsS -X POST -o /dev/null http://127.0.0.1:$port/api/v1/token/refresh || true
for _ in \$(seq 1 600); do
    now=\$(curl -fsS http://127.0.0.1:$port/api/v1/status | grep -o '\"obtained_at\":\"[^\"]*\"' | head -n1)
    [ \"\$now\" != \"\$before\" ] && break
    sleep 0.1
done"
profile "$work/kite.toml" "$port" "$refresh" kite

# Functions defined in warden's .text, in the order callgrind first names them.
nm --defined-only "$work/warden" | awk '$2 ~ /^[tT]$/ { print $3 }' | sort -u >"$work/text"
{
    echo "# Functions warden runs at start-up, at work and at shutdown, without and with the Kite"
    echo "# provider (bench/layout.sh, $(date -u +%F)); deploy/build.sh puts them first in .text."
    echo "# $(rustc --version), Cargo.lock of $(git rev-parse --short HEAD)."
    cat "$work/plain.out" "$work/kite.out" | grep -oE '^c?fn=\([0-9]+\) [^ ]+' | cut -d' ' -f2 |
        awk '!seen[$0]++' | grep -Fxf "$work/text"
} >deploy/warden.order
echo "layout.sh: $(grep -vc '^#' deploy/warden.order) functions written to deploy/warden.order" >&2
