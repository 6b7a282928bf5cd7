#!/usr/bin/env bash
# Install the supervisors warden is compared with, plus the tools bench/core.sh uses.
# Debian/Ubuntu only (apt). Installs the subset the configured apt sources actually offer.
# Run as root. core.sh itself never installs anything: a missing peer shows as "n/a".
set -euo pipefail

wanted=(tini dumb-init supervisor s6 runit hyperfine gcc valgrind)

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-peers.sh: apt-get not found; install these by hand: ${wanted[*]}" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-peers.sh: run as root (apt-get install)" >&2
    exit 1
fi

apt-get update

available=()
for pkg in "${wanted[@]}"; do
    # apt-cache policy prints "Candidate: (none)" for a known-but-uninstallable package and
    # nothing at all for an unknown one.
    cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -n "$cand" ] && [ "$cand" != "(none)" ]; then
        available+=("$pkg")
    else
        echo "install-peers.sh: $pkg is not available from the configured apt sources; skipping" >&2
    fi
done

# Packages such as supervisor and runit ship a service that postinst would start; in a
# container without an init that is neither wanted nor useful. policy-rc.d exit 101 forbids it
# for the duration of the install (an existing policy file is left alone).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=1
fi
trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT

DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${available[@]}"
echo "installed: ${available[*]}"
