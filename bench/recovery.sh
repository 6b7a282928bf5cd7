#!/usr/bin/env bash
# Recovery time after a token expiry: signal and restart modes, and an expiry right after a login. Usage: bench/recovery.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/recovery.py "$@"
