#!/usr/bin/env bash
# Install the supervisors warden is compared with, plus the tools bench/run.sh uses. Only what is
# missing is installed:
#   - from Debian/Ubuntu (apt, needs root): tini dumb-init supervisor s6 runit, and hyperfine
#     gcc valgrind curl gnuplot-nox (the scaling plot);
#   - from crates.io (cargo): horust, into a bench-local cargo root ($WARDEN_BENCH_PEERS, default
#     bench/.peers, ignored by git). If it does not build, the reason is kept in
#     bench/.peers/horust.failed and the report shows it in horust's column.
# bench/run.sh itself never installs anything: a missing peer shows as "n/a".
#
# Usage: bench/install-peers.sh [--no-apt] [--no-cargo]
set -uo pipefail

apt=1 cargo=1
for a in "$@"; do
    case $a in
        --no-apt) apt=0 ;;
        --no-cargo) cargo=0 ;;
        -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "install-peers.sh: unknown argument '$a'" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_DIR=${WARDEN_BENCH_PEERS:-$ROOT/bench/.peers}
status=0

# Package -> a command it provides (installed = the command exists).
declare -A provides=([tini]=tini [dumb-init]=dumb-init [supervisor]=supervisord [s6]=s6-svscan
    [runit]=runsvdir [hyperfine]=hyperfine [gcc]=gcc [valgrind]=valgrind [curl]=curl
    [gnuplot-nox]=gnuplot)
order=(tini dumb-init supervisor s6 runit hyperfine gcc valgrind curl gnuplot-nox)

install_apt() {
    local missing=() available=() pkg cand
    for pkg in "${order[@]}"; do
        command -v "${provides[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "install-peers.sh: apt packages: all present"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-peers.sh: apt-get not found; install these by hand: ${missing[*]}" >&2
        return 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-peers.sh: run as root to install ${missing[*]} (apt-get)" >&2
        return 1
    fi
    apt-get update || return 1
    for pkg in "${missing[@]}"; do
        # apt-cache policy prints "Candidate: (none)" for a known-but-uninstallable package and
        # nothing at all for an unknown one.
        cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
        if [ -n "$cand" ] && [ "$cand" != "(none)" ]; then
            available+=("$pkg")
        else
            echo "install-peers.sh: $pkg is not available from the configured apt sources; skipping" >&2
        fi
    done
    [ ${#available[@]} -gt 0 ] || return 0
    # Packages such as supervisor and runit ship a service that postinst would start; in a
    # container without an init that is neither wanted nor useful. policy-rc.d exit 101 forbids
    # it for the duration of the install (an existing policy file is left alone).
    local policy=/usr/sbin/policy-rc.d own_policy=0 rc
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${available[@]}"
    rc=$?
    [ "$own_policy" = 1 ] && rm -f "$policy"
    [ $rc -eq 0 ] && echo "install-peers.sh: installed ${available[*]}"
    return $rc
}

install_horust() {
    if [ -x "$PEERS_DIR/bin/horust" ]; then
        echo "install-peers.sh: horust: present in $PEERS_DIR"
        return 0
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found" >"$PEERS_DIR/horust.failed"
        echo "install-peers.sh: horust needs cargo" >&2
        return 1
    fi
    mkdir -p "$PEERS_DIR"
    echo "install-peers.sh: cargo install horust --locked (a few minutes)"
    # Its own target dir (under the peers dir): nothing of it lands in the repo's target/.
    if CARGO_TARGET_DIR=$PEERS_DIR/target cargo install horust --locked --root "$PEERS_DIR" \
        >"$PEERS_DIR/horust.log" 2>&1; then
        rm -f "$PEERS_DIR/horust.failed"
        rm -rf "$PEERS_DIR/target"
        echo "install-peers.sh: horust installed in $PEERS_DIR/bin"
    else
        # The first error line is the reason the report shows.
        grep -m1 -E '^error' "$PEERS_DIR/horust.log" >"$PEERS_DIR/horust.failed" ||
            tail -n 1 "$PEERS_DIR/horust.log" >"$PEERS_DIR/horust.failed"
        echo "install-peers.sh: horust did not build: $(cat "$PEERS_DIR/horust.failed") (log: $PEERS_DIR/horust.log)" >&2
        return 1
    fi
}

[ $apt = 1 ] && { install_apt || status=1; }
[ $cargo = 1 ] && { install_horust || status=1; }
exit $status
