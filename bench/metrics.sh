#!/usr/bin/env bash
# /metrics latency and size with many programs configured (default 1000 `sleep`s).
# Target: a typical scrape (p50) under 10 ms on loopback, one curl per scrape; p95/p99 are
# printed too (on a busy machine they show the machine more than warden).
#
#   bench/metrics.sh                    # uses target/release/warden, else target/debug/warden
#   WARDEN=path/to/warden PROGRAMS=1000 SCRAPES=200 bench/metrics.sh
#
# Prints: binary, programs, bytes and series per scrape, latency min/p50/p95/p99/max.
set -euo pipefail
cd "$(dirname "$0")/.."

PROGRAMS=${PROGRAMS:-1000}
SCRAPES=${SCRAPES:-200}
if [ -z "${WARDEN:-}" ]; then
  if [ -x target/release/warden ]; then WARDEN=target/release/warden; else WARDEN=target/debug/warden; fi
fi
[ -x "$WARDEN" ] || { echo "no warden binary at $WARDEN: run cargo build first" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }

dir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

# A free loopback port: bind port 0 and read back what the kernel chose.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
  printf '[supervisor]\nshutdown_timeout = "30s"\n\n[http]\nlisten = "127.0.0.1:%s"\n\n' "$port"
  for i in $(seq -w 1 "$PROGRAMS"); do
    printf '[programs.p%s]\ncommand = ["sleep", "3600"]\n' "$i"
  done
} >"$dir/supervisor.toml"

"$WARDEN" run -c "$dir/supervisor.toml" >"$dir/log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"

# Wait (bounded) until every program runs.
deadline=$((SECONDS + 120))
while :; do
  running=$(curl -fsS "$base/api/v1/status" 2>/dev/null | grep -o '"state":"running"' | wc -l || true)
  [ "${running:-0}" -ge "$PROGRAMS" ] && break
  if [ $SECONDS -ge $deadline ]; then
    echo "only ${running:-0} of $PROGRAMS programs running after 120 s; log: " >&2
    tail -20 "$dir/log" >&2
    exit 1
  fi
  kill -0 "$pid" 2>/dev/null || { echo "warden exited:" >&2; tail -20 "$dir/log" >&2; exit 1; }
  sleep 0.5
done

curl -fsS "$base/metrics" -o "$dir/metrics.txt"
bytes=$(wc -c <"$dir/metrics.txt")
series=$(grep -vc '^#' "$dir/metrics.txt")

# Warm up, then time each scrape (connect + request + full body).
for _ in $(seq 10); do curl -fsS -o /dev/null "$base/metrics"; done
for _ in $(seq "$SCRAPES"); do
  curl -fsS -o /dev/null -w '%{time_total}\n' "$base/metrics"
done | sort -n >"$dir/times"

stats=$(awk '{ t[NR] = $1 * 1000 }
  END {
    n = NR
    printf "min %.2f ms  p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms", t[1], t[int(n*0.50)], t[int(n*0.95)], t[int(n*0.99)], t[n]
  }' "$dir/times")
p50=$(awk '{ t[NR] = $1 * 1000 } END { printf "%.3f", t[int(NR*0.50)] }' "$dir/times")

echo "binary:   $WARDEN"
echo "programs: $PROGRAMS (all running)"
echo "scrape:   $bytes bytes, $series series"
echo "latency:  $stats  ($SCRAPES scrapes)"
if awk -v p="$p50" 'BEGIN { exit !(p < 10) }'; then
  echo "target:   p50 < 10 ms: PASS"
else
  echo "target:   p50 < 10 ms: FAIL (p50 $p50 ms)"
fi
