#!/usr/bin/env bash
# bench/example_stack.sh: the trader's view of a token expiry, measured in a browser. For each
# hand-over mode it starts the example stack of tests/example_stack.rs once (warden, sandbox
# Kite with 200 ms ticks, the example backend under uvicorn, the example frontend under
# `next start`, headless Chromium on the page), then RUNS times: expire the token in the
# sandbox, and time the page showing "Feed disconnected", warden's new session, "Feed
# connected", and the watched price changing twice (prices moving again). Each expiry waits for
# a TOTP step warden has not used yet, as on a real morning (the last login was a day ago).
#
# Usage: bench/example_stack.sh [--runs N] [--modes signal,watch] [--out DIR]
# Prints a Markdown table (nearest-rank p50/p95/max over the runs); raw lines in DIR/example_stack.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10
modes=signal,watch
out=bench/out
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --modes) modes="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n 2,12p "$0"; exit 0 ;;
        *) echo "unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
raw="$out/example_stack.jsonl"
: > "$raw"

for mode in ${modes//,/ }; do
    echo "example stack: $runs expiries in $mode mode" >&2
    WARDEN_BENCH_MODE="$mode" WARDEN_BENCH_RUNS="$runs" \
        cargo test --quiet --test example_stack -- --ignored --exact bench_expiry_to_prices_moving --nocapture \
        | sed -n 's/^BENCH //p' | tee -a "$raw" >&2
done

python3 - "$raw" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def rank(xs, q):
    xs = sorted(xs)
    return xs[max(0, math.ceil(q * len(xs)) - 1)]
phases = [("disconnected_ms", "page shows 'Feed disconnected'"),
          ("refreshed_ms", "warden's new Kite session"),
          ("connected_ms", "page shows 'Feed connected'"),
          ("prices_moving_ms", "prices moving again on the page")]
print("| mode | from the expiry to | runs | p50 ms | p95 ms | max ms |")
print("|---|---|---|---|---|---|")
for mode in dict.fromkeys(r["mode"] for r in rows):
    rs = [r for r in rows if r["mode"] == mode]
    for key, what in phases:
        xs = [r[key] for r in rs]
        print(f"| {mode} | {what} | {len(xs)} | {rank(xs, .5):.0f} | {rank(xs, .95):.0f} | {max(xs):.0f} |")
PY
