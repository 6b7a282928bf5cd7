# shellcheck shell=bash
# bench/lib/core.sh: the per-supervisor measurements of bench/run.sh: memory and idle CPU (2
# and 100 children), memory with the Kite provider live, restart latency, reaping orphans as
# PID 1, start-up to first child exec, SIGTERM forwarding. Sourced; results go to R[KEY,SUP]
# and SPREAD[KEY,SUP].

# ---------------------------------------------------------------------------------------------
# Memory and idle CPU: every supervisor runs N `sleep` children, all side by side, MEM_INSTANCES
# instances of each; every figure is the median over the instances. Memory is read at work:
# after each warden served /metrics, /api/v1/status and / (nothing trims it afterwards). Then
# the idle window counts CPU time and wake-ups (context switches of every thread). (Several instances because
# a position-independent binary loads at a random address, and where the kernel's 64 KiB
# fault-around windows fall across the code changes with it: the same binary's RSS varies by
# a few hundred KiB from one start to the next.) Keys get the suffix SFX (empty for 2
# children, "100" for 100).
# ---------------------------------------------------------------------------------------------
MEM_METRICS=(rss pss pclean pdirty anon threads rssend ticks cpuus wakeups)

# Append VALUE to the samples of METRIC for SUP.
sample() { echo "$3" >>"$MEMDIR/v.$1.$2"; }

# What warden serves in production, requested once each before its memory is read.
AT_WORK="/metrics /api/v1/status /"
at_work() {
    local base=$1 path ok=0
    for path in $AT_WORK; do http_get "$base$path" >/dev/null || ok=1; done
    return $ok
}

# A private copy of the executable PATH for instance K: instances that ran one file would share
# its page-cache pages and each show a third of them in PSS and none in Private_Clean. Written
# with O_DIRECT, past the page cache: a freshly written file's cached pages are dirty (smaps
# counts them as Private_Dirty) until written back, and an fsync would wait for every other
# file's dirty data on a busy disk. supervisord, s6 and runit start their other programs by name
# and keep sharing their files between instances.
instance_bin() {
    local path=$1 k=$2 copy
    [ -n "$path" ] || return 0
    copy=$WORK/bin/$k/${path##*/}
    if [ ! -x "$copy" ]; then
        mkdir -p "${copy%/*}"
        { dd if="$path" of="$copy" bs=1M oflag=direct status=none 2>/dev/null ||
            { cp "$path" "$copy" && sync "$copy"; }; } && chmod +x "$copy"
    fi
    echo "$copy"
}

# The executables of every supervisor for instance K (private copies where instance_bin makes
# them). Before the memory parts their cached pages are dropped: each starts as it would the
# first time in a container, reading its code from disk. (How the page cache got filled changes
# RSS: fault-around maps only cached pages, in the folios the cache holds. A file just written
# by cp maps ~400 KiB more of warden than one read in by exec.)
supervisor_files() {
    local k=$1 f interp=""
    [ -n "$SUPERVISORD" ] && interp=$(head -n1 "$SUPERVISORD" | sed -n 's/^#! *\([^ ]*\).*/\1/p')
    for f in "$(instance_bin "$WARDEN" "$k")" "$(instance_bin "$TINI" "$k")" "$(instance_bin "$DUMB" "$k")" \
        "$(instance_bin "$HORUST" "$k")" "$S6SVSCAN" "$S6SUPERVISE" "$RUNSVDIR" "$RUNSV" "$interp"; do
        [ -n "$f" ] && [ -f "$f" ] && readlink -f "$f"
    done
}

cold_start() {
    local k
    for ((k = 1; k <= MEM_INSTANCES; k++)); do supervisor_files "$k"; done | sort -u | xargs "$PROBE" evict
}

bench_memory_cpu() {
    local n=$1 sfx=$2 sup pid i k key
    log "memory + idle CPU with $n children, $MEM_INSTANCES instances each (settle ${SETTLE}s, window ${WINDOW}s)"
    MEMDIR=$WORK/mem$n
    mkdir -p "$MEMDIR"
    local -a progs=()
    for ((i = 0; i < n; i++)); do progs+=("sleep 100000"); done
    local -A PID=() P0=() C0=() BASE=()
    cold_start
    for ((k = 1; k <= MEM_INSTANCES; k++)); do
        for sup in warden tini dumb-init supervisord s6 runit horust; do
            [ -n "${HAVE[$sup]}" ] || continue
            local port=0
            [ "$sup" = warden ] && port=$(free_port) && BASE[$k]=http://127.0.0.1:$port
            WARDEN=$(instance_bin "$WARDEN" "$k") TINI=$(instance_bin "$TINI" "$k") \
                DUMB=$(instance_bin "$DUMB" "$k") HORUST=$(instance_bin "$HORUST" "$k") \
                WARDEN_PORT=$port prepare "$sup" "$MEMDIR/$sup-$k" "${progs[@]}"
            launch "$MEMDIR/$sup-$k.log"
            PID[$sup#$k]=$LAUNCHED
        done
        [ -n "${HAVE[s6]}" ] && PID[s6-supervise#$k]=${PID[s6#$k]}
        [ -n "${HAVE[runit]}" ] && PID[runsv#$k]=${PID[runit#$k]}
    done
    run_bg sleep "$SETTLE"
    # Memory at work, not at rest: every warden has served what a scrape, `warden status` and a
    # look at the page ask for, as in production, before anything is read.
    for k in "${!BASE[@]}"; do at_work "${BASE[$k]}" || log "warning: warden #$k did not serve $AT_WORK"; done
    local rss pss pclean pdirty anon
    for key in "${!PID[@]}"; do
        sup=${key%#*} pid=${PID[$key]}
        P0[$key]=$(sup_pids "$sup" "$pid")
        if [ -z "${P0[$key]// /}" ] || ! alive "$pid"; then
            R[rss$sfx,$sup]="failed"
            continue
        fi
        local sleeps
        sleeps=$(count_children_named "$pid" sleep)
        [ "$sleeps" = "$n" ] || log "warning: $key runs $sleeps sleep children, not $n"
        # shellcheck disable=SC2086
        read -r rss pss pclean pdirty anon <<<"$(mem_of ${P0[$key]})"
        sample rss "$sup" "$rss"
        sample pss "$sup" "$pss"
        sample pclean "$sup" "$pclean"
        sample pdirty "$sup" "$pdirty"
        sample anon "$sup" "$anon"
        # shellcheck disable=SC2086
        C0[$key]=$(cpu_of ${P0[$key]})
        sample threads "$sup" "$(awk '{ print $4 }' <<<"${C0[$key]}")"
    done
    # Where warden's memory goes, for the report.
    if [ -z "$sfx" ] && [ -n "${PID[warden#1]:-}" ] && alive "${PID[warden#1]}"; then
        warden_detail "${PID[warden#1]}" >"$WORK/warden-detail.txt"
    fi
    run_bg sleep "$WINDOW"
    local t0 t1 n0 n1 s0 s1 th id0 id1
    for key in "${!PID[@]}"; do
        sup=${key%#*}
        [ -n "${C0[$key]:-}" ] || continue
        # shellcheck disable=SC2086
        read -r t1 n1 s1 th id1 <<<"$(cpu_of ${P0[$key]})"
        read -r t0 n0 s0 th id0 <<<"${C0[$key]}"
        # shellcheck disable=SC2086
        sample rssend "$sup" "$(mem_of ${P0[$key]} | cut -d' ' -f1)"
        if [ "$id0" != "$id1" ]; then
            log "warning: $key: its processes changed during the idle window ($id0 -> $id1)"
            R[ticks$sfx,$sup]="died" R[cpuus$sfx,$sup]="died" R[wakeups$sfx,$sup]="died"
            continue
        fi
        if [ $((t1 - t0)) -lt 0 ] || [ $((n1 - n0)) -lt 0 ] || [ $((s1 - s0)) -lt 0 ]; then
            # Counters only grow; a drop means the process set changed under us.
            log "warning: $key: CPU counters went down (pids ${P0[$key]}: ${C0[$key]} -> $t1 $n1 $s1)"
            R[ticks$sfx,$sup]="?" R[cpuus$sfx,$sup]="?" R[wakeups$sfx,$sup]="?"
            continue
        fi
        sample ticks "$sup" $((t1 - t0))
        sample cpuus "$sup" $(((n1 - n0) / 1000))
        sample wakeups "$sup" $((s1 - s0))
    done
    local m
    for sup in "${SUPS[@]}"; do
        for m in "${MEM_METRICS[@]}"; do
            [ -s "$MEMDIR/v.$m.$sup" ] && [ -z "${R[$m$sfx,$sup]:-}" ] && R[$m$sfx,$sup]=$(pctl "$MEMDIR/v.$m.$sup" 0.5)
        done
        # The spread over the instances of the figure with a target.
        [ -s "$MEMDIR/v.rss.$sup" ] && [ "$MEM_INSTANCES" -gt 1 ] &&
            SPREAD[rss$sfx,$sup]="$(pctl "$MEMDIR/v.rss.$sup" 0) / $(pctl "$MEMDIR/v.rss.$sup" 0.5) / $(pctl "$MEMDIR/v.rss.$sup" 1) (n=$(wc -l <"$MEMDIR/v.rss.$sup"))"
    done
    for key in "${!PID[@]}"; do
        case $key in s6-supervise* | runsv*) ;; *) stop_pid "${PID[$key]}" 10 ;; esac
    done
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
# Memory with the Kite provider live: warden with [token] provider = "kite" (automated TOTP
# login) against `warden sandbox kite` on loopback, two `sleep` children, the token validated
# every 3 s (GET /user/profile) so that the broker client's code is in use. Measured once the
# token is valid and a few validations ran, and again after a forced refresh (a full login).
# ---------------------------------------------------------------------------------------------
obtained_at() { http_get "$1/api/v1/status" | grep -o '"obtained_at":"[^"]*"' | head -n1; }

# One warden with the Kite provider against its own sandbox (one valid token per api_key: two
# wardens on one sandbox would log each other out). Sets KPID and KBASE.
kite_instance() {
    local dir=$1 k=$2 kport wport
    mkdir -p "$dir"
    kport=$(free_port) wport=$(free_port)
    KBASE=http://127.0.0.1:$wport
    CMD=("$TOOLS" sandbox kite --listen "127.0.0.1:$kport") ENV=()
    launch "$dir/kite.log"
    wait_http "http://127.0.0.1:$kport/_sandbox/stats" 10 || return 1
    {
        printf '[supervisor]\nshutdown_timeout = "10s"\n[http]\nlisten = "127.0.0.1:%s"\n' "$wport"
        printf '[token]\nprovider = "kite"\nenv_file = ".env"\nmin_interval = "0s"\n'
        printf 'check_interval = "3s"\nmax_attempts = 10\nattempt_window = "1m"\n'
        printf '[token.kite]\napi_key = "kitefront"\napi_secret = "kitefront-sandbox-secret"\n'
        printf 'user_id = "AB1234"\nlogin = "totp"\npassword = "sandbox-password"\n'
        printf 'totp_secret = "WARDENSANDBOXTOTPSECRETKITEAB234"\n'
        printf 'login_base = "http://127.0.0.1:%s"\napi_base = "http://127.0.0.1:%s"\n' "$kport" "$kport"
        printf '[programs.a]\ncommand = ["sleep", "100000"]\n[programs.b]\ncommand = ["sleep", "100000"]\n'
    } >"$dir/supervisor.toml"
    CMD=("$(instance_bin "$WARDEN" "$k")" run -c "$dir/supervisor.toml") ENV=()
    launch "$dir/warden.log"
    KPID=$LAUNCHED
}

bench_kite_memory() {
    local k i all
    local -a pids=() bases=() before=()
    log "memory with the Kite provider live (sandbox Kite on loopback, $MEM_INSTANCES instances)"
    MEMDIR=$WORK/kite
    mkdir -p "$MEMDIR"
    cold_start
    for ((k = 1; k <= MEM_INSTANCES; k++)); do
        if ! kite_instance "$MEMDIR/$k" "$k"; then
            R[krss,warden]="failed"
            log "kite: the sandbox did not come up: $(tail -n 3 "$MEMDIR/$k/kite.log")"
            kill_all_below
            return
        fi
        pids+=("$KPID") bases+=("$KBASE")
    done
    # /readyz: every program running and the token valid.
    for ((k = 0; k < MEM_INSTANCES; k++)); do
        if ! wait_http "${bases[$k]}/readyz" 30; then
            R[krss,warden]="failed"
            log "kite: warden never got ready: $(tail -n 5 "$MEMDIR/$((k + 1))/warden.log")"
            kill_all_below
            return
        fi
    done
    # Through a validation or two, then at work like the wardens of the 2-children part.
    run_bg sleep "$SETTLE"
    for ((k = 0; k < MEM_INSTANCES; k++)); do
        at_work "${bases[$k]}" || log "warning: Kite warden #$((k + 1)) did not serve $AT_WORK"
    done
    local rss pss pdirty
    for ((k = 0; k < MEM_INSTANCES; k++)); do
        read -r rss pss _ pdirty _ <<<"$(mem_of "${pids[$k]}")"
        sample krss warden "$rss"
        sample kpss warden "$pss"
        sample kpdirty warden "$pdirty"
    done
    # A forced refresh: a whole TOTP login (it waits for a fresh 30 s TOTP step: Kite refuses a
    # code twice). What it faults in stays mapped: nothing trims it.
    for ((k = 0; k < MEM_INSTANCES; k++)); do
        before[$k]=$(obtained_at "${bases[$k]}")
        curl -fsS -X POST --max-time 2 "${bases[$k]}/api/v1/token/refresh" >/dev/null 2>&1
    done
    for ((i = 0; i < 45 * 10; i++)); do
        all=1
        for ((k = 0; k < MEM_INSTANCES; k++)); do
            [ "$(obtained_at "${bases[$k]}")" != "${before[$k]}" ] || { all=""; break; }
        done
        [ -n "$all" ] && break
        sleep 0.1
    done
    for ((k = 0; k < MEM_INSTANCES; k++)); do
        if [ "$(obtained_at "${bases[$k]}")" != "${before[$k]}" ] && wait_http "${bases[$k]}/readyz" 10; then
            sleep 0.2
            sample krssrefresh warden "$(mem_of "${pids[$k]}" | cut -d' ' -f1)"
        else
            log "kite: the forced refresh did not complete: $(tail -n 5 "$MEMDIR/$((k + 1))/warden.log")"
        fi
    done
    local m
    for m in krss kpss kpdirty krssrefresh; do
        [ -s "$MEMDIR/v.$m.warden" ] && R[$m,warden]=$(pctl "$MEMDIR/v.$m.warden" 0.5)
    done
    [ -n "${R[krssrefresh,warden]:-}" ] || R[krssrefresh,warden]="failed"
    [ "$MEM_INSTANCES" -gt 1 ] &&
        SPREAD[krss,warden]="$(pctl "$MEMDIR/v.krss.warden" 0) / ${R[krss,warden]} / $(pctl "$MEMDIR/v.krss.warden" 1) (n=$MEM_INSTANCES)"
    for ((k = 0; k < MEM_INSTANCES; k++)); do stop_pid "${pids[$k]}" 10; done
    kill_all_below
}

# ---------------------------------------------------------------------------------------------
# Restart latency at zero backoff. All restart loops run at the same time: at most a few events
# per second each, so they rarely meet, and whatever load the machine has hits all alike.
# ---------------------------------------------------------------------------------------------
bench_restart() {
    log "restart latency ($RESTARTS restarts each, all supervisors at once)"
    local sup dir life
    local -A LOOP=() SUPPID=()
    for sup in warden supervisord s6-supervise runsv horust; do
        [ -n "${HAVE[$sup]}" ] || continue
        dir=$WORK/restart/$sup
        prepare "$sup" "$dir" "$PROBE stamp $dir/stamps"
        : >"$dir/stamps"
        launch "$dir.log"
        SUPPID[$sup]=$LAUNCHED
        # s6-supervise (>= 2.11) restarts at once only a service that has been ready for 1 s;
        # runsv waits 1 s before restarting a service that ran less than 1 s. The others have
        # no time-dependent path at zero backoff.
        life=100
        case $sup in s6-supervise | runsv) life=1100 ;; esac
        "$PROBE" restart-loop "$dir/stamps" "$RESTARTS" "$life" 10000 >"$dir/lat" 2>"$dir/err" &
        LOOP[$sup]=$!
    done
    for sup in "${!LOOP[@]}"; do
        dir=$WORK/restart/$sup
        if wait "${LOOP[$sup]}"; then
            summarise rp50 "$sup" "$dir/lat"
            R[rp95,$sup]=$(ms "$(pctl "$dir/lat" 0.95)")
        else
            R[rp50,$sup]="failed"
            log "$sup restart loop: $(cat "$dir/err")"
        fi
    done
    for sup in "${!SUPPID[@]}"; do stop_pid "${SUPPID[$sup]}" 10; done
    for sup in tini dumb-init; do
        [ -n "${HAVE[$sup]}" ] && R[rp50,$sup]="— (no restart)" R[rp95,$sup]="—"
    done
    [ -n "${HAVE[s6]}" ] && R[rp50,s6]="(= s6-supervise)" R[rp95,s6]=""
    [ -n "${HAVE[runit]}" ] && R[rp50,runit]="(= runsv)" R[rp95,runit]=""
}

# ---------------------------------------------------------------------------------------------
# 4, 5, 6 run round-robin: run 1 of every supervisor, then run 2 of every supervisor, ... so
# that a burst of load from elsewhere on the machine hits them all alike.
# ---------------------------------------------------------------------------------------------
# Reaping orphans as PID 1, inside a fresh PID namespace.
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
    for sup in warden tini dumb-init supervisord s6 runit horust; do
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
                    # A supervisor that needs seconds is measured once: more runs would cost
                    # minutes and tell nothing new.
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
    [ -n "${HAVE[runsv]}" ] && R[reap,runsv]="— (not PID 1)"
}

# Start-up, from the execve of the supervisor to the first instruction of its child.
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

# SIGTERM to the supervisor -> SIGTERM arriving in its child.
sigterm_once() {
    local sup=$1 dir=$WORK/sigterm/$1 a b wait_ms=10000
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
    # runsvdir exits on SIGTERM without telling its runsv processes (man runsvdir): 2 s show it.
    [ "$sup" = runit ] && wait_ms=2000
    if ! run_bg "$PROBE" waitlines "$dir/stamps" 3 "$wait_ms"; then
        [ "$sup" = runit ] && ! alive "$LAUNCHED" && R[sigterm,runit]="never (runsvdir exits, its services run on)"
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
    # A supervisor that takes 100s of ms (supervisord, horust) gets 5 runs: its figure is far
    # from any other and from the noise, and 20 runs of it would cost minutes.
    local -A slow=()
    for ((run = 1; run <= RUNS; run++)); do
        for sup in ${sups[@]+"${sups[@]}"}; do
            [ -z "${R[$kind,$sup]:-}" ] || continue
            [ -n "${slow[$sup]:-}" ] && [ "$run" -gt 5 ] && continue
            [ "$run" = 2 ] && [ -s "$WORK/$kind/$sup/times" ] &&
                [ "$(head -n1 "$WORK/$kind/$sup/times")" -gt 100000000 ] && slow[$sup]=1
            if ! "${kind}_once" "$sup"; then
                [ -n "${R[$kind,$sup]:-}" ] || R[$kind,$sup]="failed"
                log "$kind: $sup: ${R[$kind,$sup]} in run $run"
            fi
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
