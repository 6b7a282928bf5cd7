#!/usr/bin/env bash
# Fleet mode: time from a token expiry until all N backends are healthy again, for N = 1, 3, 10
# wardens sharing one token through Redis. Needs redis-server; no root.
# Usage: bench/fleet.sh [--rounds R] [--sizes 1,3,10] [--probe-interval 1s] [--poll-ms MS]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null; then
    echo "bench/fleet.sh: redis-server not found (apt-get install redis-server)" >&2
    exit 2
fi
cargo build --release --quiet
exec python3 bench/fleet.py "$@"
