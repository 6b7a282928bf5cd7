#!/usr/bin/env bash
# bench/core.sh: warden's core costs beside tini, dumb-init, supervisord and s6, measured in
# the same run on the same machine.
#
#   1. memory of the supervisor process (RSS, PSS, private, anonymous) with two `sleep` children
#   2. CPU it burns while idle
#   3. restart latency at zero backoff (SIGKILL of the child -> exec of the next one)
#   4. time to reap N orphans as PID 1 (inside a fresh PID namespace)
#   5. start-up: execve of the supervisor -> first instruction of its child
#   6. SIGTERM to the supervisor -> the child receiving SIGTERM
#
# Every latency is a difference of two CLOCK_MONOTONIC readings taken by bench/probe.c at the
# event itself; this script only starts things, waits and does arithmetic. See bench/README.md.
#
# Usage: bench/core.sh [--quick] [options]; `bench/core.sh --help` lists them.
set -uo pipefail

usage() {
    cat <<'EOF'
usage: bench/core.sh [options]
  --quick           shorter run: 5 s idle window, 20 restarts, 10 runs, 3 reap runs
  --window SECS     idle-CPU window (default 30)
  --restarts N      restarts measured per supervisor (default 50)
  --runs N          start-up and SIGTERM runs per supervisor (default 20)
  --orphans N       orphans to reap as PID 1 (default 2000)
  --reap-runs N     reap runs per supervisor, median reported (default 9; a supervisor
                    that needs more than 5 s is measured once)
  --reap-cap SECS   give up waiting for a reap after this long (default 60)
  --only LIST       run only these parts (comma-separated: memory,restart,reap,startup,sigterm)
  --sups LIST       measure only these (comma-separated: warden,tini,dumb-init,supervisord,
                    s6,s6-supervise); the others show as "skipped"
  --no-build        do not run `cargo build --release` first
  --warden PATH     measure this warden binary instead (implies --no-build), e.g. a variant
                    built with other flags
Peers that are not installed show as "n/a (not installed)"; bench/install-peers.sh installs them.
EOF
}

WINDOW=30 RESTARTS=50 RUNS=20 ORPHANS=2000 REAP_RUNS=9 REAP_CAP=60 BUILD=1 WARDEN_BIN=""
ONLY=memory,restart,reap,startup,sigterm
ONLY_SUPS=warden,tini,dumb-init,supervisord,s6,s6-supervise
SETTLE=2
ORIG_ARGS=("$@")
while (($#)); do
    case $1 in
        --quick) WINDOW=5 RESTARTS=20 RUNS=10 REAP_RUNS=3 ;;
        --window) WINDOW=${2:-}; shift ;;
        --restarts) RESTARTS=${2:-}; shift ;;
        --runs) RUNS=${2:-}; shift ;;
        --orphans) ORPHANS=${2:-}; shift ;;
        --reap-runs) REAP_RUNS=${2:-}; shift ;;
        --reap-cap) REAP_CAP=${2:-}; shift ;;
        --only) ONLY=${2:-}; shift ;;
        --sups) ONLY_SUPS=${2:-}; shift ;;
        --no-build) BUILD=0 ;;
        --warden) WARDEN_BIN=${2:-}; BUILD=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "core.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for v in WINDOW RESTARTS RUNS ORPHANS REAP_RUNS REAP_CAP; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
        echo "core.sh: --$(tr 'A-Z_' 'a-z-' <<<"$v") needs a positive integer" >&2
        exit 2
    fi
done

for part in ${ONLY//,/ }; do
    case $part in
        memory | restart | reap | startup | sigterm) ;;
        *) echo "core.sh: --only: unknown part '$part'" >&2; exit 2 ;;
    esac
done
wanted() { [[ ,$ONLY, == *,$1,* ]]; }
for sup in ${ONLY_SUPS//,/ }; do
    case $sup in
        warden | tini | dumb-init | supervisord | s6 | s6-supervise) ;;
        *) echo "core.sh: --sups: unknown supervisor '$sup'" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WARDEN=${WARDEN_BIN:-$ROOT/target/release/warden}
case $WARDEN in /*) ;; *) WARDEN=$PWD/$WARDEN ;; esac

# ---------------------------------------------------------------------------------------------
# Stage 1: build, compile the probe, then re-run this script as a child subreaper, so that
# every process the bench starts, orphans included, stays our descendant and can be cleaned up.
# ---------------------------------------------------------------------------------------------
if [ -z "${WARDEN_BENCH_WORK:-}" ]; then
    if [ "$BUILD" = 1 ]; then
        echo "core.sh: cargo build --release" >&2
        (cd "$ROOT" && cargo build --release) || { echo "core.sh: build failed" >&2; exit 1; }
    fi
    [ -x "$WARDEN" ] || { echo "core.sh: $WARDEN missing (build it or drop --no-build)" >&2; exit 1; }
    CC=$(command -v cc || command -v gcc || true)
    [ -n "$CC" ] || { echo "core.sh: a C compiler (cc) is needed for bench/probe.c" >&2; exit 1; }
    work=$(mktemp -d "${TMPDIR:-/tmp}/warden-bench.XXXXXX") || exit 1
    case $work in *[[:space:]]*) echo "core.sh: temp dir has spaces: $work" >&2; rm -rf "$work"; exit 1 ;; esac
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

# Every process below ROOT (orphans come back to us: we are a subreaper). Zombies are skipped
# (bash reaps them), and so is the subshell running this function with its ps and awk.
descendants() {
    local me=$BASHPID
    ps -e -o pid=,ppid=,stat= | awk -v root="$1" -v me="$me" '
        { par[$1] = $2; st[$1] = $3 }
        END {
            for (p in par) {
                if (st[p] ~ /^Z/ || p == me) continue
                q = par[p]
                for (d = 0; d < 64 && q > 1; d++) {
                    if (q == me) break
                    if (q == root) { print p; break }
                    q = par[q]
                }
            }
        }'
}

# Kill everything below us until nothing is left (a supervisor may respawn between rounds; its
# orphans come back to us). Bounded.
kill_all_below() {
    local round pids
    for round in $(seq 1 100); do
        pids=$(descendants "$SELF")
        [ -z "$pids" ] && return 0
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null
        sleep 0.02
    done
    echo "core.sh: warning: processes still running after cleanup: $(descendants "$SELF" | tr '\n' ' ')" >&"${WARN_FD:-2}"
}

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

log() { echo "core.sh: $*" >&2; }

# Run a long command in the background and wait for it: bash runs a trap only once the
# foreground command has finished, but `wait` returns as soon as a trapped signal arrives, so
# Ctrl-C or SIGTERM cleans up at once instead of after a 30 s sleep.
run_bg() {
    "$@" &
    wait $!
}

state_of() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    echo "${s%% *}"
}
alive() {
    local s
    s=$(state_of "$1") || return 1
    [ "$s" != Z ] && [ "$s" != X ]
}

# SIGTERM (or the given signal) to PID, wait up to SECS for it to go, SIGKILL after that; then
# clear anything it left behind.
stop_pid() {
    local pid=$1 secs=${2:-10} sig=${3:-TERM} i
    kill -"$sig" "$pid" 2>/dev/null
    for ((i = 0; i < secs * 50; i++)); do
        alive "$pid" || break
        sleep 0.02
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    kill_all_below
}

# ---------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------
SUPS=(warden tini dumb-init supervisord s6 s6-supervise)
declare -A HAVE LABEL
LABEL=([warden]=warden [tini]=tini [dumb-init]=dumb-init [supervisord]=supervisord
    [s6]="s6-svscan tree" [s6-supervise]=s6-supervise)
TINI=$(command -v tini || true)
DUMB=$(command -v dumb-init || true)
SUPERVISORD=$(command -v supervisord || true)
S6SVSCAN=$(command -v s6-svscan || true)
S6SUPERVISE=$(command -v s6-supervise || true)
UNSHARE=$(command -v unshare || true)
HAVE[warden]=1
HAVE[tini]=${TINI:+1}
HAVE[dumb-init]=${DUMB:+1}
HAVE[supervisord]=${SUPERVISORD:+1}
HAVE[s6]=$([ -n "$S6SVSCAN" ] && [ -n "$S6SUPERVISE" ] && echo 1)
HAVE[s6-supervise]=${S6SUPERVISE:+1}
declare -A SKIPPED
for sup in "${SUPS[@]}"; do
    if [[ ,$ONLY_SUPS, != *,$sup,* ]]; then
        [ -n "${HAVE[$sup]}" ] && SKIPPED[$sup]=1
        HAVE[$sup]=""
    fi
done

# Results: R[metric,sup] holds the printed cell; SPREAD[metric,sup] min / p50 / p95 / max.
declare -A R SPREAD

# ---------------------------------------------------------------------------------------------
# Setting a supervisor up: prepare SUP DIR PROG... writes its config into DIR and sets CMD (the
# command line) and ENV (extra environment). A PROG is a command as one space-separated string.
# ---------------------------------------------------------------------------------------------
toml_array() {
    local out="" w
    for w in $1; do out+="${out:+, }\"$w\""; done
    echo "$out"
}

# s6 wants an executable `run`. For the probe's stamp/term modes it is a symlink to the probe
# (mode and file from the environment), so s6 pays no extra shell exec; with notification-fd
# the probe reports readiness, which s6 >= 2.11 needs to restart without its 1 s throttle.
s6_service() {
    local dir=$1 prog=$2
    local -a w
    read -ra w <<<"$prog"
    mkdir -p "$dir"
    if [ "${w[0]}" = "$PROBE" ] && { [ "${w[1]}" = stamp ] || [ "${w[1]}" = term ]; }; then
        ln -sf "$PROBE" "$dir/run"
        echo 3 >"$dir/notification-fd"
        ENV=(PROBE_MODE="${w[1]}" PROBE_FILE="${w[2]}" PROBE_NOTIFY_FD=3)
    else
        printf '#!/bin/sh\nexec %s\n' "$prog" >"$dir/run"
        chmod +x "$dir/run"
    fi
}

prepare() {
    local sup=$1 dir=$2
    shift 2
    local -a progs=("$@")
    local i
    rm -rf "$dir"
    mkdir -p "$dir"
    CMD=() ENV=()
    case $sup in
        warden)
            {
                printf '[supervisor]\nshutdown_timeout = "10s"\n[http]\nlisten = "127.0.0.1:0"\n'
                for i in "${!progs[@]}"; do
                    printf '[programs.p%d]\ncommand = [%s]\n' "$i" "$(toml_array "${progs[$i]}")"
                    printf 'restart = "always"\nbackoff_initial = "0s"\nbackoff_max = "0s"\n'
                    printf 'max_restarts = 1000000\nrestart_window = "1s"\nstop_timeout = "5s"\n'
                done
            } >"$dir/supervisor.toml"
            CMD=("$WARDEN" run -c "$dir/supervisor.toml")
            ;;
        tini | dumb-init)
            local -a child
            if [ ${#progs[@]} -eq 1 ]; then
                read -ra child <<<"${progs[0]}"
            else
                # tini and dumb-init run exactly one child: a shell that runs the programs.
                local joined=""
                for i in "${!progs[@]}"; do joined+="${progs[$i]} & "; done
                child=(sh -c "${joined}wait")
            fi
            if [ "$sup" = tini ]; then CMD=("$TINI" -s -- "${child[@]}"); else CMD=("$DUMB" "${child[@]}"); fi
            ;;
        supervisord)
            {
                printf '[supervisord]\nnodaemon=true\nlogfile=%s/supervisord.log\n' "$dir"
                printf 'pidfile=%s/supervisord.pid\nchildlogdir=%s\n' "$dir" "$dir"
                for i in "${!progs[@]}"; do
                    printf '[program:p%d]\ncommand=%s\nstartsecs=0\nautorestart=true\n' "$i" "${progs[$i]}"
                    printf 'startretries=1000000\nstopwaitsecs=5\n'
                    printf 'stdout_logfile=%s/p%d.out\nstderr_logfile=%s/p%d.err\n' "$dir" "$i" "$dir" "$i"
                done
            } >"$dir/supervisord.conf"
            CMD=("$SUPERVISORD" -n -c "$dir/supervisord.conf")
            ;;
        s6)
            for i in "${!progs[@]}"; do s6_service "$dir/scan/p$i" "${progs[$i]}"; done
            CMD=("$S6SVSCAN" "$dir/scan")
            ;;
        s6-supervise)
            s6_service "$dir/svc" "${progs[0]}"
            CMD=("$S6SUPERVISE" "$dir/svc")
            ;;
    esac
    # Saved so that runs can alternate between supervisors: `use DIR` brings CMD/ENV back.
    # (-g: sourced inside a function, a plain `declare` would make them local.)
    declare -p CMD ENV | sed 's/^declare -a /declare -ga /' >"$dir/.launch"
}

use() {
    # shellcheck disable=SC1091
    source "$1/.launch"
}

# Start CMD (after the optional PRE prefix) in the background with ENV; sets LAUNCHED.
launch() {
    local logfile=$1
    shift
    local -a pre=("$@")
    (
        for kv in ${ENV[@]+"${ENV[@]}"}; do export "${kv?}"; done
        exec ${pre[@]+"${pre[@]}"} "${CMD[@]}"
    ) </dev/null >>"$logfile" 2>&1 &
    LAUNCHED=$!
    # Not a job: no "Killed" notices. stop_pid watches /proc instead of using `wait`.
    disown "$LAUNCHED"
}

# Field of the first line of FILE whose first word is EVENT.
event_ns() { awk -v e="$2" '$1 == e { print $2; exit }' "$1"; }

ms() { awk -v n="$1" 'BEGIN { printf "%.3f", n / 1e6 }'; }

# Nearest-rank percentile P (0..1) of the numbers in FILE.
pctl() {
    sort -n "$1" | awk -v p="$2" '{ a[NR] = $1 } END {
        if (NR == 0) exit
        i = int(p * NR); if (i < p * NR) i++; if (i < 1) i = 1
        print a[i] }'
}

# ---------------------------------------------------------------------------------------------
# 1 + 2: memory and idle CPU, all supervisors side by side
# ---------------------------------------------------------------------------------------------
# The processes that make up SUP's supervisor: one pid, or s6-svscan and its s6-supervises.
sup_pids() {
    local sup=$1 pid=$2
    case $sup in
        s6) echo "$pid" $(ps -o pid= --ppid "$pid") ;;
        s6-supervise) ps -o pid= --ppid "$pid" | head -n1 ;;
        *) echo "$pid" ;;
    esac
}

# Sum of smaps_rollup fields over PIDS: "rss pss private_clean private_dirty anonymous" in KiB.
mem_of() {
    local p
    for p in "$@"; do cat "/proc/$p/smaps_rollup"; done 2>/dev/null | awk '
        $1 == "Rss:" { r += $2 } $1 == "Pss:" { p += $2 }
        $1 == "Private_Clean:" { pc += $2 } $1 == "Private_Dirty:" { pd += $2 }
        $1 == "Anonymous:" { a += $2 }
        END { printf "%d %d %d %d %d\n", r, p, pc, pd, a }'
}

# "ticks ns switches threads id" summed over PIDS: utime+stime (clock ticks, all threads), run
# time from schedstat and context switches (wake-ups), both summed over every thread; id is
# pid:starttime of each, to notice a process replaced by another under the same pid.
cpu_of() {
    local p t ticks=0 ns=0 sw=0 th=0 stat rest f sched id=""
    for p in "$@"; do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${stat##*) }
        read -ra f <<<"$rest"
        ticks=$((ticks + f[11] + f[12]))
        id+="$p:${f[19]},"
        for t in /proc/"$p"/task/*; do
            th=$((th + 1))
            read -r sched _ <"$t/schedstat" 2>/dev/null && ns=$((ns + sched))
            sw=$((sw + $(awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }' "$t/status" 2>/dev/null)))
        done
    done
    echo "$ticks $ns $sw $th $id"
}

count_children_named() { # PID NAME: descendants of PID whose comm is NAME
    local root=$1 name=$2
    ps -e -o pid=,ppid=,comm= | awk -v root="$root" -v name="$name" '
        { par[$1] = $2; comm[$1] = $3 }
        END { n = 0
            for (p in par) { if (comm[p] != name) continue
                q = par[p]; for (d = 0; d < 16 && q > 1; d++) { if (q == root) { n++; break }; q = par[q] } }
            print n }'
}

bench_memory_cpu() {
    log "memory + idle CPU (settle ${SETTLE}s, window ${WINDOW}s)"
    local sup pid
    declare -A PID
    for sup in warden tini dumb-init supervisord s6; do
        [ -n "${HAVE[$sup]}" ] || continue
        prepare "$sup" "$WORK/mem/$sup" "sleep 100000" "sleep 100000"
        launch "$WORK/mem/$sup.log"
        PID[$sup]=$LAUNCHED
    done
    [ -n "${HAVE[s6]}" ] && PID[s6-supervise]=${PID[s6]}
    run_bg sleep "$SETTLE"
    declare -A P0 C0
    for sup in "${!PID[@]}"; do
        pid=${PID[$sup]}
        P0[$sup]=$(sup_pids "$sup" "$pid")
        if [ -z "${P0[$sup]// /}" ] || ! alive "$pid"; then
            R[rss,$sup]="failed"
            continue
        fi
        local sleeps
        sleeps=$(count_children_named "$pid" sleep)
        [ "$sleeps" = 2 ] || log "warning: $sup runs $sleeps sleep children, not 2"
        # shellcheck disable=SC2086
        read -r "R[rss,$sup]" "R[pss,$sup]" "R[pclean,$sup]" "R[pdirty,$sup]" "R[anon,$sup]" <<<"$(mem_of ${P0[$sup]})"
        # shellcheck disable=SC2086
        C0[$sup]=$(cpu_of ${P0[$sup]})
        R[threads,$sup]=$(awk '{ print $4 }' <<<"${C0[$sup]}")
    done
    # Where warden's memory goes, for the report.
    if alive "${PID[warden]}"; then
        warden_detail "${PID[warden]}" >"$WORK/warden-detail.txt"
    fi
    run_bg sleep "$WINDOW"
    local t0 t1 n0 n1 s0 s1 th id0 id1
    for sup in "${!PID[@]}"; do
        [ -n "${C0[$sup]:-}" ] || continue
        # shellcheck disable=SC2086
        read -r t1 n1 s1 th id1 <<<"$(cpu_of ${P0[$sup]})"
        read -r t0 n0 s0 th id0 <<<"${C0[$sup]}"
        if [ "$id0" != "$id1" ]; then
            log "warning: $sup: its processes changed during the idle window ($id0 -> $id1)"
            R[ticks,$sup]="died" R[cpuus,$sup]="died" R[wakeups,$sup]="died"
            continue
        fi
        R[ticks,$sup]=$((t1 - t0))
        R[cpuus,$sup]=$(((n1 - n0) / 1000))
        R[wakeups,$sup]=$((s1 - s0))
        if [ $((t1 - t0)) -lt 0 ] || [ $((n1 - n0)) -lt 0 ] || [ $((s1 - s0)) -lt 0 ]; then
            # Counters only grow; a drop means the process set changed under us.
            log "warning: $sup: CPU counters went down (pids ${P0[$sup]}: ${C0[$sup]} -> $t1 $n1 $s1)"
            R[ticks,$sup]="?" R[cpuus,$sup]="?" R[wakeups,$sup]="?"
        fi
    done
    for sup in "${!PID[@]}"; do [ "$sup" = s6-supervise ] || stop_pid "${PID[$sup]}" 10; done
    kill_all_below
}

warden_detail() {
    local pid=$1 t
    echo "threads:"
    for t in /proc/"$pid"/task/*; do
        printf '  %s %s\n' "${t##*/}" "$(cat "$t/comm" 2>/dev/null)"
    done
    echo "largest mappings by RSS (KiB; Rss / Private_Dirty / Anonymous):"
    awk '
        /^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anon]" : $6); if (NF > 6) for (i = 7; i <= NF; i++) name = name " " $i; next }
        $1 == "Rss:" { rss[name] += $2 }
        $1 == "Private_Dirty:" { pd[name] += $2 }
        $1 == "Anonymous:" { an[name] += $2 }
        END { for (n in rss) printf "  %7d %7d %7d  %s\n", rss[n], pd[n], an[n], n }' "/proc/$pid/smaps" |
        sort -rn | head -n 10
}

# ---------------------------------------------------------------------------------------------
# 3: restart latency at zero backoff
# ---------------------------------------------------------------------------------------------
bench_restart() {
    log "restart latency ($RESTARTS restarts each)"
    local sup dir life
    for sup in warden supervisord s6-supervise; do
        [ -n "${HAVE[$sup]}" ] || continue
        dir=$WORK/restart/$sup
        prepare "$sup" "$dir" "$PROBE stamp $dir/stamps"
        : >"$dir/stamps"
        launch "$dir.log"
        # s6-supervise (>= 2.11) restarts at once only a service that has been ready for 1 s;
        # the others have no time-dependent path at zero backoff.
        life=100
        [ "$sup" = s6-supervise ] && life=1100
        if run_bg "$PROBE" restart-loop "$dir/stamps" "$RESTARTS" "$life" 10000 >"$dir/lat" 2>"$dir/err"; then
            summarise rp50 "$sup" "$dir/lat"
            R[rp95,$sup]=$(ms "$(pctl "$dir/lat" 0.95)")
        else
            R[rp50,$sup]="failed"
            log "$sup restart loop: $(cat "$dir/err")"
        fi
        stop_pid "$LAUNCHED" 10
    done
    for sup in tini dumb-init; do
        [ -n "${HAVE[$sup]}" ] && R[rp50,$sup]="— (no restart)" R[rp95,$sup]="—"
    done
    [ -n "${HAVE[s6]}" ] && R[rp50,s6]="(= s6-supervise)" R[rp95,s6]=""
}

# ---------------------------------------------------------------------------------------------
# 4, 5, 6 run round-robin: run 1 of every supervisor, then run 2 of every supervisor, ... so
# that a burst of load from elsewhere on the machine hits them all alike.
# ---------------------------------------------------------------------------------------------
# Summarise a file of nanosecond samples into R[KEY,SUP] (the median, in ms) and the spread.
summarise() {
    local key=$1 sup=$2 file=$3
    [ -n "${R[$key,$sup]:-}" ] && return # already failed or timed out
    if [ ! -s "$file" ]; then
        R[$key,$sup]="failed"
        return
    fi
    R[$key,$sup]=$(ms "$(pctl "$file" 0.5)")
    SPREAD[$key,$sup]="$(ms "$(pctl "$file" 0)") / $(ms "$(pctl "$file" 0.5)") / $(ms "$(pctl "$file" 0.95)") / $(ms "$(pctl "$file" 1)") (n=$(wc -l <"$file"))"
}

# 4: reaping orphans as PID 1, inside a fresh PID namespace.
bench_reap() {
    if [ -z "$UNSHARE" ] || [ "$(id -u)" != 0 ]; then
        log "reap: needs root and unshare; skipped"
        for sup in "${SUPS[@]}"; do R[reap,$sup]="n/a (needs root)"; done
        return
    fi
    log "reap $ORPHANS orphans as PID 1 ($REAP_RUNS runs each, cap ${REAP_CAP}s)"
    local sup dir run ev val cpu
    local -a sups=()
    local -A slow=()
    for sup in warden tini dumb-init supervisord s6; do
        [ -n "${HAVE[$sup]}" ] || continue
        sups+=("$sup")
        dir=$WORK/reap/$sup
        prepare "$sup" "$dir" "$PROBE orphans $ORPHANS $dir/result $((REAP_CAP * 1000))"
        : >"$dir/times"
        : >"$dir/cpu"
    done
    for ((run = 1; run <= REAP_RUNS; run++)); do
        for sup in ${sups[@]+"${sups[@]}"}; do
            [ -z "${R[reap,$sup]:-}" ] || continue # timed out or failed before: skip
            [ -z "${slow[$sup]:-}" ] || continue
            dir=$WORK/reap/$sup
            use "$dir"
            : >"$dir/result"
            launch "$dir.log" "$UNSHARE" --pid --fork --mount-proc --kill-child
            run_bg "$PROBE" waitlines "$dir/result" 1 $(((REAP_CAP + 30) * 1000))
            ev="" val="" cpu=""
            read -r ev val cpu _ <"$dir/result"
            # --kill-child: the namespace's PID 1 dies with unshare, and the namespace with it.
            stop_pid "$LAUNCHED" 5 KILL
            case $ev in
                reaped)
                    echo "$val" >>"$dir/times"
                    [ "${cpu:--1}" -ge 0 ] && echo "$cpu" >>"$dir/cpu"
                    # A supervisor that needs seconds (supervisord) is measured once: more
                    # runs would cost minutes and tell nothing new.
                    [ "$val" -gt 5000000000 ] && slow[$sup]=1
                    ;;
                timeout) R[reap,$sup]=">${REAP_CAP}s" ;;
                *) R[reap,$sup]="failed"; log "$sup reap: '$(cat "$dir/result")'" ;;
            esac
        done
    done
    for sup in ${sups[@]+"${sups[@]}"}; do
        summarise reap "$sup" "$WORK/reap/$sup/times"
        # Only for supervisors whose reaps all finished: a timeout leaves R[reap] set.
        [ -s "$WORK/reap/$sup/cpu" ] && [ -z "${R[reapcpu,$sup]:-}" ] && is_num "${R[reap,$sup]}" &&
            summarise reapcpu "$sup" "$WORK/reap/$sup/cpu"
    done
    [ -n "${HAVE[s6-supervise]}" ] && R[reap,s6-supervise]="— (not PID 1)"
}

# 5: start-up, from the execve of the supervisor to the first instruction of its child.
startup_once() {
    local sup=$1 dir=$WORK/startup/$1 a b
    use "$dir"
    : >"$dir/stamps"
    launch "$dir.log" "$PROBE" exec-at "$dir/stamps"
    if ! run_bg "$PROBE" waitlines "$dir/stamps" 2 10000; then
        stop_pid "$LAUNCHED" 5
        return 1
    fi
    a=$(event_ns "$dir/stamps" exec) b=$(event_ns "$dir/stamps" start)
    echo $((b - a)) >>"$dir/times"
    stop_pid "$LAUNCHED" 10
}

# 6: SIGTERM to the supervisor -> SIGTERM arriving in its child.
sigterm_once() {
    local sup=$1 dir=$WORK/sigterm/$1 a b
    use "$dir"
    : >"$dir/stamps"
    launch "$dir.log"
    if ! run_bg "$PROBE" waitlines "$dir/stamps" 1 10000; then
        stop_pid "$LAUNCHED" 5
        return 1
    fi
    # Let the supervisor finish what it does right after a spawn.
    sleep 0.2
    "$PROBE" kill 15 "$LAUNCHED" "$dir/stamps"
    if ! run_bg "$PROBE" waitlines "$dir/stamps" 3 10000; then
        stop_pid "$LAUNCHED" 5
        return 1
    fi
    a=$(event_ns "$dir/stamps" kill) b=$(event_ns "$dir/stamps" term)
    echo $((b - a)) >>"$dir/times"
    stop_pid "$LAUNCHED" 10
}

# KIND is startup or sigterm; the child is the probe in stamp or term mode.
bench_rounds() {
    local kind=$1 mode=$2 sup run dir
    local -a sups=()
    for sup in "${SUPS[@]}"; do
        [ -n "${HAVE[$sup]}" ] || continue
        sups+=("$sup")
        dir=$WORK/$kind/$sup
        prepare "$sup" "$dir" "$PROBE $mode $dir/stamps"
        : >"$dir/times"
    done
    for ((run = 1; run <= RUNS; run++)); do
        for sup in ${sups[@]+"${sups[@]}"}; do
            [ -z "${R[$kind,$sup]:-}" ] || continue
            "${kind}_once" "$sup" || { R[$kind,$sup]="failed"; log "$kind: $sup failed in run $run"; }
        done
    done
    for sup in ${sups[@]+"${sups[@]}"}; do summarise "$kind" "$sup" "$WORK/$kind/$sup/times"; done
}

bench_startup() {
    log "start-up to first child exec ($RUNS runs each)"
    bench_rounds startup stamp
}

bench_sigterm() {
    log "SIGTERM to child ($RUNS runs each)"
    bench_rounds sigterm term
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
is_num() { [[ ${1:-} =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
# verdict A OP B: PASS when A OP B holds (OP: le, ge), n/a when either is not a number.
verdict() {
    is_num "$1" && is_num "$3" || { echo "n/a"; return; }
    awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN {
        ok = (op == "le") ? (a <= b) : (a >= b)
        print (ok ? "PASS" : "MISS") }'
}
mul() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a * b }'; }
ratio() { is_num "$1" && is_num "$2" && [ "$2" != 0 ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

cell() {
    local key=$1 sup=$2
    if [ -n "${SKIPPED[$sup]:-}" ]; then
        echo "skipped"
    elif [ -z "${HAVE[$sup]}" ]; then
        echo "n/a (not installed)"
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

report() {
    local sup hdr sep
    echo "## Machine"
    echo
    echo '```'
    echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "kernel:  $(uname -srm)"
    echo "cpu:     $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) ($(nproc) online CPUs)"
    echo "memory:  $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "warden:  $WARDEN, $(stat -c %s "$WARDEN") bytes, commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)"
    [ -n "$TINI" ] && echo "tini:    $("$TINI" --version 2>&1 | head -n1)"
    [ -n "$DUMB" ] && echo "dumb-init: $("$DUMB" --version 2>&1 | head -n1)"
    [ -n "$SUPERVISORD" ] && echo "supervisord: $("$SUPERVISORD" --version 2>&1 | head -n1) ($(python3 --version 2>&1))"
    [ -n "$S6SVSCAN" ] && echo "s6:      $(dpkg-query -W -f '${Version}' s6 2>/dev/null || echo '?')"
    echo "run:     window ${WINDOW}s, ${RESTARTS} restarts, ${RUNS} runs, ${ORPHANS} orphans x ${REAP_RUNS}"
    echo "load:    $LOAD_BEFORE (before) -> $(cut -d' ' -f1-3 /proc/loadavg) (after); 1/5/15-min averages"
    echo '```'
    echo
    hdr="| metric |"
    sep="|---|"
    for sup in "${SUPS[@]}"; do hdr+=" ${LABEL[$sup]} |"; sep+="---|"; done
    echo "$hdr target | verdict |"
    echo "$sep---|---|"

    local t_rss=${R[rss,tini]:-} w_rss=${R[rss,warden]:-} s_rss=${R[rss,supervisord]:-}
    local lim=""
    is_num "$t_rss" && lim=$(mul "$t_rss" 2.5)
    row "RSS (KiB)" rss "≤ 2.5× tini${lim:+ = $lim}" "$(verdict "$w_rss" le "$lim")"
    for sup in "${SUPS[@]}"; do
        R[svdratio,$sup]=$(ratio "$s_rss" "${R[rss,$sup]:-}")
        [ -n "${R[svdratio,$sup]}" ] && R[svdratio,$sup]+="×"
    done
    row "supervisord RSS ÷ this RSS" svdratio "≥ 8×" "$(verdict "$(ratio "$s_rss" "$w_rss")" ge 8)"
    row "PSS (KiB)" pss "" ""
    row "Private_Dirty (KiB)" pdirty "≤ 1024" "$(verdict "${R[pdirty,warden]:-}" le 1024)"
    row "Private_Clean (KiB)" pclean "" ""
    row "Anonymous (KiB)" anon "" ""
    row "threads" threads "" ""
    row "CPU ticks over ${WINDOW}s idle" ticks "≤ tini (${R[ticks,tini]:-?})" "$(verdict "${R[ticks,warden]:-}" le "${R[ticks,tini]:-}")"
    row "CPU µs over ${WINDOW}s idle (schedstat)" cpuus "" ""
    row "wake-ups over ${WINDOW}s idle" wakeups "" ""
    row "restart p50 (ms)" rp50 "≤ s6-supervise (${R[rp50,s6-supervise]:-?})" "$(verdict "${R[rp50,warden]:-}" le "${R[rp50,s6-supervise]:-}")"
    row "restart p95 (ms)" rp95 "" ""
    row "reap $ORPHANS orphans as PID 1 (ms)" reap "≤ tini (${R[reap,tini]:-?})" "$(verdict "${R[reap,warden]:-}" le "${R[reap,tini]:-}")"
    row "… CPU time PID 1 spent meanwhile (ms)" reapcpu "" ""
    row "start-up to child exec, p50 (ms)" startup "≤ s6-svscan tree (${R[startup,s6]:-?})" "$(verdict "${R[startup,warden]:-}" le "${R[startup,s6]:-}")"
    row "SIGTERM to child, p50 (ms)" sigterm "≤ s6-svscan tree (${R[sigterm,s6]:-?})" "$(verdict "${R[sigterm,warden]:-}" le "${R[sigterm,s6]:-}")"
    echo
    cat <<'EOF'
Columns: the supervisor process itself, never its children. "s6-svscan tree" is s6-svscan plus
one s6-supervise per service (memory and CPU summed over them); "s6-supervise" is one
s6-supervise alone (memory: one of the tree's; start-up and SIGTERM: run directly on a service
dir). tini and dumb-init run one child, so for two programs they run `sh -c 'A & B & wait'`.
Latencies are CLOCK_MONOTONIC differences taken at the events by bench/probe.c.
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
    if [ -s "$WORK/warden-detail.txt" ]; then
        echo
        echo "### warden process detail (during the memory measurement)"
        echo
        echo '```'
        cat "$WORK/warden-detail.txt"
        echo '```'
    fi
}

started=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
wanted memory && bench_memory_cpu
wanted restart && bench_restart
wanted reap && bench_reap
wanted startup && bench_startup
wanted sigterm && bench_sigterm
report
log "done in $(($(date +%s) - started))s"
