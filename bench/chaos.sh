#!/usr/bin/env bash
# The long chaos soak (tests/chaos.rs) and, optionally, the crash-write test at a larger count.
#
# Usage: bench/chaos.sh [SECONDS] [--seed N] [--crash N]
#   SECONDS     length of the chaos phase (default 120, the CI soak; `cargo test` uses 20)
#   --seed N    replay the schedule of an earlier run (each run prints its seed)
#   --crash N   also run tests/crash_writes.rs with N refreshes (default: not run)
# The full-disk part of the soak needs root (it mounts a 64 KiB tmpfs); without it the soak
# prints a SKIP line for that part and runs the rest (fails under WARDEN_TEST_REQUIRE_ALL=1).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=120
crash=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) export WARDEN_CHAOS_SEED="$2"; shift 2 ;;
    --crash) crash="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) secs="$1"; shift ;;
  esac
done
case "$secs" in ''|*[!0-9]*) echo "chaos.sh: SECONDS must be a number, got '$secs'" >&2; exit 2 ;; esac

export WARDEN_CHAOS_SECS="$secs"
# Recovery after the chaos can need a TOTP step (30 s) plus the attempt window (30 s).
export WARDEN_CHAOS_RECOVERY_SECS="${WARDEN_CHAOS_RECOVERY_SECS:-180}"
cargo test --test chaos -- --nocapture --test-threads 1 chaos_soak

if [ -n "$crash" ]; then
  WARDEN_CRASH_REFRESHES="$crash" cargo test --test crash_writes -- --nocapture \
    sigkill_during_refreshes_never_leaves_a_partial_env_or_token_json
fi
