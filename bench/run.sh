#!/usr/bin/env bash
# bench/run.sh: the benchmark suite in one command. Builds warden (release) and measures it beside
# tini, dumb-init, supervisord, s6, runit and horust, in the same run on the same machine:
#
#   1. memory of the supervisor process (RSS, PSS, private) and its idle CPU, with 2 and with 100
#      `sleep` children; warden's memory with the Kite provider live (sandbox Kite on loopback)
#   2. restart latency at zero backoff (SIGKILL of the child -> exec of the next one)
#   3. time to reap N orphans as PID 1 (inside a fresh PID namespace)
#   4. start-up: execve of the supervisor -> first instruction of its child
#   5. SIGTERM to the supervisor -> the child receiving SIGTERM
#   6. recovery after a token expiry, signal and restart modes (bench/recovery.py)
#   7. scaling: CPU and RSS with 1, 10, 100, 1000 programs, each HTTP-probed every second
#
# Every latency of 2-5 is a difference of two CLOCK_MONOTONIC readings taken by bench/probe.c at
# the event itself; this script only starts things, waits and does arithmetic. Prints one
# Markdown report on stdout (progress on stderr) and keeps a copy, the scaling data and the
# plot in --out. See bench/README.md.
#
# Usage: bench/run.sh [--quick] [options]; `bench/run.sh --help` lists them.
set -uo pipefail

usage() {
    cat <<'EOF'
usage: bench/run.sh [options]
  --quick              shorter run (about 6 min instead of about 12): 5 s windows, 20 restarts,
                       10 runs, 3 reap runs, 3 recovery runs per mode
  --window SECS        idle-CPU and wake-up window (default 58)
  --restarts N         restarts measured per supervisor (default 50)
  --runs N             start-up and SIGTERM runs per supervisor (default 20)
  --orphans N          orphans to reap as PID 1 (default 2000)
  --reap-runs N        reap runs per supervisor, median reported (default 9; a supervisor
                       that needs more than 5 s is measured once)
  --reap-cap SECS      give up waiting for a reap after this long (default 60)
  --mem-instances N    instances of each supervisor in the memory parts, median reported
                       (default 3)
  --recovery-runs N    token-expiry recoveries per mode (default 8)
  --scale LIST         program counts of the scaling curve (default 1,10,100,1000)
  --scale-window SECS  CPU window per point of the scaling curve (default 20)
  --only LIST          run only these parts (comma-separated: memory,memory100,kite,restart,
                       reap,startup,sigterm,recovery,scaling)
  --sups LIST          measure only these (comma-separated: warden,tini,dumb-init,supervisord,
                       s6,s6-supervise,runit,runsv,horust); the others show as "skipped"
  --no-build           do not run `cargo build --release` first
  --warden PATH        measure this warden binary instead of target/release/warden-lean (what
                       deploy/build.sh builds; implies --no-build), e.g. a variant built
                       with other flags
  --out DIR            where the report, the scaling data and scaling.png go (default bench/out)
Peers that are not installed show as "n/a (not installed)"; bench/install-peers.sh installs them.
EOF
}

WINDOW=58 RESTARTS=50 RUNS=20 ORPHANS=2000 REAP_RUNS=9 REAP_CAP=60 BUILD=1 WARDEN_BIN=""
RECOVERY_RUNS=8 SCALE_NS=1,10,100,1000 SCALE_WINDOW=20 OUT_ARG="" MEM_INSTANCES=3
ONLY=memory,memory100,kite,restart,reap,startup,sigterm,recovery,scaling
ONLY_SUPS=warden,tini,dumb-init,supervisord,s6,s6-supervise,runit,runsv,horust
# Seconds between launching the supervisors and reading their memory: enough for the slowest
# (s6 and runit start one process per service) to have every child running.
SETTLE=5
ORIG_ARGS=("$@")
while (($#)); do
    case $1 in
        --quick) WINDOW=5 RESTARTS=20 RUNS=10 REAP_RUNS=3 RECOVERY_RUNS=3 SCALE_WINDOW=5 ;;
        --window) WINDOW=${2:-}; shift ;;
        --restarts) RESTARTS=${2:-}; shift ;;
        --runs) RUNS=${2:-}; shift ;;
        --orphans) ORPHANS=${2:-}; shift ;;
        --reap-runs) REAP_RUNS=${2:-}; shift ;;
        --reap-cap) REAP_CAP=${2:-}; shift ;;
        --recovery-runs) RECOVERY_RUNS=${2:-}; shift ;;
        --mem-instances) MEM_INSTANCES=${2:-}; shift ;;
        --scale) SCALE_NS=${2:-}; shift ;;
        --scale-window) SCALE_WINDOW=${2:-}; shift ;;
        --only) ONLY=${2:-}; shift ;;
        --sups) ONLY_SUPS=${2:-}; shift ;;
        --no-build) BUILD=0 ;;
        --warden) WARDEN_BIN=${2:-}; BUILD=0; shift ;;
        --out) OUT_ARG=${2:-}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for v in WINDOW RESTARTS RUNS ORPHANS REAP_RUNS REAP_CAP RECOVERY_RUNS SCALE_WINDOW MEM_INSTANCES; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
        echo "run.sh: --$(tr 'A-Z_' 'a-z-' <<<"$v") needs a positive integer" >&2
        exit 2
    fi
done
if ! [[ $SCALE_NS =~ ^[0-9]+(,[0-9]+)*$ ]]; then
    echo "run.sh: --scale needs comma-separated program counts, e.g. 1,10,100,1000" >&2
    exit 2
fi
for part in ${ONLY//,/ }; do
    case $part in
        memory | memory100 | kite | restart | reap | startup | sigterm | recovery | scaling) ;;
        *) echo "run.sh: --only: unknown part '$part'" >&2; exit 2 ;;
    esac
done
wanted() { [[ ,$ONLY, == *,$1,* ]]; }
for sup in ${ONLY_SUPS//,/ }; do
    case $sup in
        warden | tini | dumb-init | supervisord | s6 | s6-supervise | runit | runsv | horust) ;;
        *) echo "run.sh: --sups: unknown supervisor '$sup'" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The supervisor measured is the production binary (deploy/build.sh, as the image builds it);
# TOOLS, the default build, runs `warden sandbox kite` and the token-expiry recoveries.
WARDEN=${WARDEN_BIN:-$ROOT/target/release/warden-lean}
case $WARDEN in /*) ;; *) WARDEN=$PWD/$WARDEN ;; esac
TOOLS=$ROOT/target/release/warden
OUT=${OUT_ARG:-$ROOT/bench/out}
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac

# ---------------------------------------------------------------------------------------------
# Stage 1: build, compile the probe, then re-run this script as a child subreaper, so that
# every process the bench starts, orphans included, stays our descendant and can be cleaned up.
# ---------------------------------------------------------------------------------------------
if [ -z "${WARDEN_BENCH_WORK:-}" ]; then
    if [ "$BUILD" = 1 ]; then
        echo "run.sh: deploy/build.sh (the production binary), then cargo build --release" >&2
        (cd "$ROOT" && deploy/build.sh target/release/warden-lean && cargo build --release) ||
            { echo "run.sh: build failed" >&2; exit 1; }
    fi
    [ -x "$WARDEN" ] || { echo "run.sh: $WARDEN missing (build it or drop --no-build)" >&2; exit 1; }
    if [[ ,$ONLY, == *,kite,* || ,$ONLY, == *,recovery,* ]] && [ ! -x "$TOOLS" ]; then
        echo "run.sh: $TOOLS missing (cargo build --release)" >&2
        exit 1
    fi
    # A binary the linker has just written sits in the page cache as dirty pages until written
    # back, and smaps counts every one of them as Private_Dirty: write it back first.
    sync "$WARDEN" 2>/dev/null || sync
    CC=$(command -v cc || command -v gcc || true)
    [ -n "$CC" ] || { echo "run.sh: a C compiler (cc) is needed for bench/probe.c" >&2; exit 1; }
    mkdir -p "$OUT" || exit 1
    work=$(mktemp -d "${TMPDIR:-/tmp}/warden-bench.XXXXXX") || exit 1
    case $work in *[[:space:]]*) echo "run.sh: temp dir has spaces: $work" >&2; rm -rf "$work"; exit 1 ;; esac
    if ! "$CC" -O2 -static -o "$work/probe" "$ROOT/bench/probe.c" 2>/dev/null \
        && ! "$CC" -O2 -o "$work/probe" "$ROOT/bench/probe.c"; then
        rm -rf "$work"
        exit 1
    fi
    export WARDEN_BENCH_WORK=$work
    exec "$work/probe" subreaper bash "${BASH_SOURCE[0]}" ${ORIG_ARGS[@]+"${ORIG_ARGS[@]}"}
fi

# ---------------------------------------------------------------------------------------------
# Stage 2: measure.
# ---------------------------------------------------------------------------------------------
WORK=$WARDEN_BENCH_WORK
PROBE=$WORK/probe
SELF=$$

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"
# shellcheck source=bench/lib/peers.sh
source "$ROOT/bench/lib/peers.sh"
# shellcheck source=bench/lib/core.sh
source "$ROOT/bench/lib/core.sh"
# shellcheck source=bench/lib/scaling.sh
source "$ROOT/bench/lib/scaling.sh"

cleanup() {
    trap - EXIT INT TERM
    # bash reports a killed background job ("Killed …") on stderr: not news while cleaning up.
    exec 3>&2 2>/dev/null
    WARN_FD=3
    kill_all_below
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Results: R[metric,sup] holds the printed cell; SPREAD[metric,sup] min / p50 / p95 / max.
declare -A R SPREAD

# Token-expiry recovery (bench/recovery.py): warden only. Its whole output (warden's log when a
# mode fails) is kept in $OUT/recovery.out.
bench_recovery() {
    log "recovery after a token expiry ($RECOVERY_RUNS runs per mode, both modes at once)"
    run_bg python3 "$ROOT/bench/recovery.py" --runs "$RECOVERY_RUNS" --exe "$TOOLS" \
        --json "$WORK/recovery.json" >"$WORK/recovery.out" 2>&1 ||
        log "recovery: a mode failed; see $OUT/recovery.out: $(grep -m1 'failed' "$WORK/recovery.out")"
    cp "$WORK/recovery.out" "$OUT/recovery.out"
    local mode key
    for mode in signal restart; do
        key=${mode:0:3}
        R[rec${key}50,warden]="failed" R[rec${key}95,warden]="failed"
        [ -s "$WORK/recovery.json" ] || continue
        read -r "R[rec${key}50,warden]" "R[rec${key}95,warden]" < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1])).get(sys.argv[2], {})
print("%.0f %.0f" % (r["p50_ms"], r["p95_ms"]) if "p50_ms" in r else "failed failed")' "$WORK/recovery.json" "$mode")
    done
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
cell() {
    local key=$1 sup=$2
    if [ -n "${SKIPPED[$sup]:-}" ]; then
        echo "skipped"
    elif [ -z "${HAVE[$sup]}" ]; then
        echo "${WHY_NOT[$sup]}"
    else
        echo "${R[$key,$sup]:-—}"
    fi
}

row() { # LABEL KEY TARGET VERDICT; a metric that was not measured (--only) is left out
    local label=$1 key=$2 target=$3 v=$4 line sup any=""
    for sup in "${SUPS[@]}"; do [ -n "${R[$key,$sup]:-}" ] && any=1; done
    [ -n "$any" ] || return 0
    line="| $label |"
    for sup in "${SUPS[@]}"; do line+=" $(cell "$key" "$sup") |"; done
    echo "$line $target | $v |"
}

# Both verdicts must pass; one that could not be judged (a peer not installed) is left out and
# the verdict says so.
both() {
    if [ "$1" = MISS ] || [ "$2" = MISS ]; then echo MISS
    elif [ "$1" = PASS ] && [ "$2" = PASS ]; then echo PASS
    elif [ "$1" = PASS ] || [ "$2" = PASS ]; then echo "PASS (one part n/a)"
    else echo n/a
    fi
}

report() {
    local sup hdr sep
    echo "## Machine"
    echo
    echo '```'
    echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "kernel:  $(uname -srm)"
    echo "cpu:     $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) ($(nproc) online CPUs)"
    echo "memory:  $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "warden:  $WARDEN, $(stat -c %s "$WARDEN") bytes, commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet HEAD -- 2>/dev/null || echo ' (+ uncommitted changes)')"
    peer_versions
    echo "run:     ${MEM_INSTANCES} instances each in the memory parts, window ${WINDOW}s, ${RESTARTS} restarts, ${RUNS} runs, ${ORPHANS} orphans x ${REAP_RUNS}, ${RECOVERY_RUNS} recoveries per mode, scaling ${SCALE_NS} programs x ${SCALE_WINDOW}s"
    echo "load:    $LOAD_BEFORE (before) -> $(cut -d' ' -f1-3 /proc/loadavg) (after); 1/5/15-min averages"
    local took="" p
    for p in memory memory100 kite restart reap startup sigterm recovery scaling; do
        [ -n "${TOOK[$p]:-}" ] && took+=" $p ${TOOK[$p]},"
    done
    took=${took# }
    echo "took:    $(($(date +%s) - STARTED)) s (${took%,}; seconds)"
    echo '```'
    echo
    hdr="| metric |"
    sep="|---|"
    for sup in "${SUPS[@]}"; do hdr+=" ${LABEL[$sup]} |"; sep+="---|"; done
    echo "$hdr target | verdict |"
    echo "$sep---|---|"

    local t_rss=${R[rss,tini]:-} w_rss=${R[rss,warden]:-} s_rss=${R[rss,supervisord]:-}
    local h_rss=${R[rss,horust]:-} lim="" sfx
    is_num "$t_rss" && lim=$(mul "$t_rss" 2.5)
    row "RSS at work, 2 children (KiB)" rss "≤ 4096 and ≤ 2.5× tini${lim:+ = $lim}" \
        "$(both "$(verdict "$w_rss" le 4096)" "$(verdict "$w_rss" le "$lim")")"
    for sup in "${SUPS[@]}"; do
        R[svdratio,$sup]=$(ratio "$s_rss" "${R[rss,$sup]:-}")
        [ -n "${R[svdratio,$sup]}" ] && R[svdratio,$sup]+="×"
    done
    row "supervisord RSS ÷ this RSS, 2 children" svdratio "≥ 8×" "$(verdict "$(ratio "$s_rss" "$w_rss")" ge 8)"
    row "PSS at work, 2 children (KiB)" pss "≤ 3072" "$(verdict "${R[pss,warden]:-}" le 3072)"
    row "Private_Dirty, 2 children (KiB)" pdirty "≤ 1024" "$(verdict "${R[pdirty,warden]:-}" le 1024)"
    row "Private_Clean, 2 children (KiB)" pclean "" ""
    row "threads, 2 children" threads "" ""
    row "RSS after the idle window, 2 children (KiB)" rssend "" ""
    row "CPU ticks over ${WINDOW}s idle, 2 children" ticks "≤ tini (${R[ticks,tini]:-?})" "$(verdict "${R[ticks,warden]:-}" le "${R[ticks,tini]:-}")"
    row "CPU µs over ${WINDOW}s idle (schedstat), 2 children" cpuus "" ""
    row "wake-ups over ${WINDOW}s idle, 2 children" wakeups "0" "$(verdict "${R[wakeups,warden]:-}" le 0)"
    row "RSS, 100 children (KiB)" rss100 "" ""
    row "PSS, 100 children (KiB)" pss100 "" ""
    row "Private_Dirty, 100 children (KiB)" pdirty100 "" ""
    row "threads, 100 children" threads100 "" ""
    row "CPU ticks over ${WINDOW}s idle, 100 children" ticks100 "" ""
    row "CPU µs over ${WINDOW}s idle (schedstat), 100 children" cpuus100 "" ""
    row "wake-ups over ${WINDOW}s idle, 100 children" wakeups100 "" ""
    row "RSS at work, Kite provider live (KiB)" krss "≤ 5120 and < horust (${h_rss:-?})" \
        "$(both "$(verdict "${R[krss,warden]:-}" le 5120)" "$(verdict "${R[krss,warden]:-}" lt "$h_rss")")"
    row "PSS at work, Kite provider live (KiB)" kpss "" ""
    row "Private_Dirty, Kite provider live (KiB)" kpdirty "≤ 1024" "$(verdict "${R[kpdirty,warden]:-}" le 1024)"
    row "RSS just after a forced token refresh (KiB)" krssrefresh "" ""
    row "restart p50 (ms)" rp50 "≤ s6-supervise (${R[rp50,s6-supervise]:-?})" "$(verdict "${R[rp50,warden]:-}" le "${R[rp50,s6-supervise]:-}")"
    row "restart p95 (ms)" rp95 "" ""
    row "reap $ORPHANS orphans as PID 1 (ms)" reap "≤ tini (${R[reap,tini]:-?})" "$(verdict "${R[reap,warden]:-}" le "${R[reap,tini]:-}")"
    row "… CPU time PID 1 spent meanwhile (ms)" reapcpu "" ""
    row "start-up to child exec, p50 (ms)" startup "≤ s6-svscan tree (${R[startup,s6]:-?})" "$(verdict "${R[startup,warden]:-}" le "${R[startup,s6]:-}")"
    row "SIGTERM to child, p50 (ms)" sigterm "≤ s6-svscan tree (${R[sigterm,s6]:-?})" "$(verdict "${R[sigterm,warden]:-}" le "${R[sigterm,s6]:-}")"
    for sfx in sig res; do
        [ -n "${R[rec${sfx}50,warden]:-}" ] || continue
        for sup in "${SUPS[@]}"; do
            [ "$sup" = warden ] || R[rec${sfx}50,$sup]="—" R[rec${sfx}95,$sup]="—"
        done
    done
    local mode
    for sfx in sig res; do
        mode=$([ $sfx = sig ] && echo signal || echo restart)
        row "token expiry → healthy, $mode mode, p50 (ms)" "rec${sfx}50" "≤ 1 s probe + 0.5 s = 1500" "$(verdict "${R[rec${sfx}50,warden]:-}" le 1500)"
        row "token expiry → healthy, $mode mode, p95 (ms)" "rec${sfx}95" "≤ 1500" "$(verdict "${R[rec${sfx}95,warden]:-}" le 1500)"
    done
    row "${SCALE_NS##*,} programs, HTTP probe every 1 s: CPU % of one core" scalecpu "< 10" "$(verdict "${R[scalecpu,warden]:-}" lt 10)"
    echo
    cat <<'EOF'
Columns: the supervisor process itself, never its children. "s6-svscan tree" is s6-svscan plus
one s6-supervise per service, "runit tree" is runsvdir plus one runsv per service (memory and
CPU summed over them); "s6-supervise" and "runsv" are one of those alone (memory: one of the
tree's; restart, start-up and SIGTERM: run directly on a service dir). tini and dumb-init run
one child, so for N programs they run `sh -c 'A & B & … & wait'`. Latencies are CLOCK_MONOTONIC
differences taken at the events by bench/probe.c. Memory rows: the median over several
instances of each supervisor, read at work: 5 s after start-up, once each warden served
/metrics, /api/v1/status and / (nothing is trimmed; warden is the production build of
deploy/build.sh, without the sandbox). Wake-ups: voluntary + involuntary context switches of
every thread over the idle window that follows.
EOF
    local key
    echo
    echo "### Spread of the latencies (ms: min / p50 / p95 / max)"
    echo
    echo '```'
    for key in rp50 reap reapcpu startup sigterm; do
        for sup in "${SUPS[@]}"; do
            [ -n "${SPREAD[$key,$sup]:-}" ] || continue
            printf '%-8s %-15s %s\n' "$(sed 's/^rp50$/restart/' <<<"$key")" "${LABEL[$sup]}" "${SPREAD[$key,$sup]}"
        done
    done
    echo '```'
    local any=""
    for key in rss rss100 krss; do for sup in "${SUPS[@]}"; do [ -n "${SPREAD[$key,$sup]:-}" ] && any=1; done; done
    if [ -n "$any" ]; then
        echo
        echo "### Spread of RSS over the instances (KiB: min / median / max)"
        echo
        echo '```'
        for key in rss rss100 krss; do
            for sup in "${SUPS[@]}"; do
                [ -n "${SPREAD[$key,$sup]:-}" ] || continue
                printf '%-8s %-15s %s\n' "$(sed 's/^rss$/2 ch./; s/^rss100$/100 ch./; s/^krss$/Kite/' <<<"$key")" "${LABEL[$sup]}" "${SPREAD[$key,$sup]}"
            done
        done
        echo '```'
    fi
    if [ -s "$WORK/recovery.out" ]; then
        echo
        echo "### Token-expiry recovery (bench/recovery.py)"
        echo
        echo '```'
        sed -n '/^recovery after/,$p' "$WORK/recovery.out"
        echo '```'
    fi
    if [ -s "$WORK/scaling.tsv" ]; then
        echo
        echo "### Scaling: N programs, each with an HTTP health check every 1 s"
        echo
        scaling_table
        echo
        echo "CPU: the supervisor process's run time over ${SCALE_WINDOW} s (schedstat summed over its threads when the same"
        echo "threads live through the window, else utime+stime ticks, which keep exited threads' time); RSS"
        echo "at the end of the window; probes/s: requests the health endpoints answered per second meanwhile."
        [ -s "$OUT/scaling.png" ] && echo && echo "![scaling](scaling.png)"
    fi
    if [ -s "$WORK/warden-detail.txt" ]; then
        echo
        echo "### warden process detail (during the memory measurement, 2 children)"
        echo
        echo '```'
        cat "$WORK/warden-detail.txt"
        echo '```'
    fi
}

STARTED=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Run part NAME (if wanted) as FUNCTION ARGS..., and note how long it took.
declare -A TOOK
part() {
    local name=$1 t0=$SECONDS
    shift
    wanted "$name" || return 0
    "$@"
    TOOK[$name]=$((SECONDS - t0))
    log "$name took ${TOOK[$name]}s"
}
part memory bench_memory_cpu 2 ""
part memory100 bench_memory_cpu 100 100
part kite bench_kite_memory
part restart bench_restart
part reap bench_reap
part startup bench_startup
part sigterm bench_sigterm
part recovery bench_recovery
part scaling bench_scaling
report | tee "$OUT/report.md"
[ -s "$WORK/scaling.tsv" ] && cp "$WORK/scaling.tsv" "$OUT/scaling.tsv"
log "done in $(($(date +%s) - STARTED))s; report in $OUT/report.md"
