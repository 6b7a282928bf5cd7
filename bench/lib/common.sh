# shellcheck shell=bash
# bench/lib/common.sh: process bookkeeping, /proc readings and arithmetic shared by the parts
# of bench/run.sh. Sourced, never run. Expects SELF (the subreaper shell's pid) and WORK.

log() { echo "run.sh: $*" >&2; }

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
    local pids
    for _ in $(seq 1 100); do
        pids=$(descendants "$SELF")
        [ -z "$pids" ] && return 0
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null
        sleep 0.02
    done
    echo "run.sh: warning: processes still running after cleanup: $(descendants "$SELF" | tr '\n' ' ')" >&"${WARN_FD:-2}"
}

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

# A free loopback TCP port (bound and released at once; the bench's own processes are the only
# ones that race for it).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

http_get() { curl -fsS --max-time 2 "$1" 2>/dev/null; }

# Wait up to SECS for URL to answer 2xx.
wait_http() {
    local url=$1 secs=$2 i
    for ((i = 0; i < secs * 20; i++)); do
        http_get "$url" >/dev/null && return 0
        sleep 0.05
    done
    return 1
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

is_num() { [[ ${1:-} =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
# verdict A OP B: PASS when A OP B holds (OP: le, ge, lt), n/a when either is not a number.
verdict() {
    is_num "$1" && is_num "$3" || { echo "n/a"; return; }
    awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN {
        ok = (op == "le") ? (a <= b) : (op == "lt") ? (a < b) : (a >= b)
        print (ok ? "PASS" : "MISS") }'
}
mul() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a * b }'; }
ratio() { is_num "$1" && is_num "$2" && [ "$2" != 0 ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

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
