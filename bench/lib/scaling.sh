# shellcheck shell=bash
# bench/lib/scaling.sh: CPU and RSS of a supervisor running N programs, each with an HTTP health
# check every second, for N in SCALE_NS. The health endpoints are real listeners: one `probe
# http` process answers on N loopback ports, one port per program as if each were its own
# backend, so every probe is a real HTTP round trip (keep-alive where the prober keeps the
# connection). warden and horust are the supervisors here with HTTP health checks; the others
# have none. Sourced by bench/run.sh; rows go to $WORK/scaling.tsv.

# Ask the listener (pid LPID, stats file STATS) how many requests it has answered so far.
requests_served() {
    local lpid=$1 stats=$2 have
    have=$(wc -l <"$stats" 2>/dev/null || echo 0)
    kill -USR1 "$lpid" 2>/dev/null || return 1
    "$PROBE" waitlines "$stats" $((have + 1)) 5000 || return 1
    tail -n 1 "$stats" | awk '{ print $2 }'
}

now_ns() { date +%s%N; }

# CPU time of the whole process: "ticks ns tids". ticks is utime+stime from /proc/PID/stat,
# which keeps the time of threads that have exited (horust starts threads per health check);
# ns is the finer schedstat run time summed over the live threads, tids their ids. When the
# same threads live at both ends of the window, ns is exact and used; otherwise ticks.
proc_cpu() {
    local stat rest ticks t ns=0 tids="" sched
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    rest=${stat##*) }
    ticks=$(awk '{ print $12 + $13 }' <<<"$rest")
    for t in /proc/"$1"/task/*; do
        read -r sched _ <"$t/schedstat" 2>/dev/null || continue
        ns=$((ns + sched)) tids+="${t##*/},"
    done
    echo "$ticks $ns $tids"
}

# One measurement: SUP with N programs. Appends "sup n cpu_pct rss_kib probes_per_s threads"
# to $WORK/scaling.tsv, or "sup n failed <why>".
scale_once() {
    local sup=$1 n=$2 dir=$WORK/scale/$1-$2 lpid spid i port base ready
    mkdir -p "$dir"
    : >"$dir/stats"
    CMD=("$PROBE" http "$n" "$dir/ports" "$dir/stats") ENV=()
    launch "$dir/listener.log"
    lpid=$LAUNCHED
    for ((i = 0; i < 200; i++)); do [ -s "$dir/ports" ] && break; sleep 0.05; done
    if [ ! -s "$dir/ports" ]; then
        echo "$sup $n failed listener" >>"$WORK/scaling.tsv"
        stop_pid "$lpid" 5
        return
    fi
    local -a progs=()
    for ((i = 0; i < n; i++)); do progs+=("sleep 100000"); done
    port=$(free_port)
    # Like the memory parts: the supervisor's own copy of its executable, read from disk.
    local w h
    w=$(instance_bin "$WARDEN" scale) h=$(instance_bin "$HORUST" scale)
    "$PROBE" evict "$w" ${h:+"$h"}
    WARDEN=$w HORUST=$h WARDEN_PORT=$port prepare "$sup" "$dir/sup" "${progs[@]}"
    add_health_checks "$sup" "$dir/sup" "$dir/ports"
    launch "$dir/sup.log"
    spid=$LAUNCHED
    # Ready: warden's /readyz is 200 once every program's probe has passed; horust has no such
    # endpoint, so wait until the listener sees a full second's worth of probes.
    ready=""
    local deadline=$((SECONDS + 60 + n / 10)) r0 r1
    if [ "$sup" = warden ]; then
        base=http://127.0.0.1:$port
        while [ $SECONDS -lt $deadline ] && alive "$spid"; do
            http_get "$base/readyz" >/dev/null && { ready=1; break; }
            sleep 0.2
        done
    else
        while [ $SECONDS -lt $deadline ] && alive "$spid"; do
            r0=$(requests_served "$lpid" "$dir/stats") || break
            sleep 1
            r1=$(requests_served "$lpid" "$dir/stats") || break
            [ $((r1 - r0)) -ge $((n * 9 / 10)) ] && { ready=1; break; }
        done
    fi
    if [ -z "$ready" ]; then
        echo "$sup $n failed not-ready" >>"$WORK/scaling.tsv"
        log "scaling: $sup with $n programs never got all probes passing; log: $(tail -n 3 "$dir/sup.log" | tr '\n' ' ')"
        stop_pid "$spid" 10
        stop_pid "$lpid" 5
        return
    fi
    run_bg sleep 2
    local c0 c1 t0 t1 q0 q1 th rss
    q0=$(requests_served "$lpid" "$dir/stats")
    t0=$(now_ns)
    c0=$(proc_cpu "$spid")
    run_bg sleep "$SCALE_WINDOW"
    c1=$(proc_cpu "$spid")
    t1=$(now_ns)
    q1=$(requests_served "$lpid" "$dir/stats")
    rss=$(mem_of "$spid" | cut -d' ' -f1)
    th=$(awk '$1 == "Threads:" { print $2 }' "/proc/$spid/status" 2>/dev/null)
    if [ -z "$c0" ] || [ -z "$c1" ] || ! alive "$spid"; then
        echo "$sup $n failed died" >>"$WORK/scaling.tsv"
        log "scaling: $sup with $n programs died during the window"
    else
        local k0 k1 ns0 ns1 id0 id1 cpu_s
        read -r k0 ns0 id0 <<<"$c0"
        read -r k1 ns1 id1 <<<"$c1"
        if [ "$id0" = "$id1" ]; then
            cpu_s=$(awk -v ns=$((ns1 - ns0)) 'BEGIN { print ns / 1e9 }')
        else
            cpu_s=$(awk -v t=$((k1 - k0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { print t / hz }')
        fi
        awk -v s="$sup" -v n="$n" -v cpu="$cpu_s" -v dt=$((t1 - t0)) \
            -v rss="$rss" -v q=$((q1 - q0)) -v th="${th:-0}" 'BEGIN {
                printf "%s %d %.3f %d %.0f %d\n", s, n, 100 * cpu / (dt / 1e9), rss, q / (dt / 1e9), th }' \
            >>"$WORK/scaling.tsv"
    fi
    stop_pid "$spid" 15
    stop_pid "$lpid" 5
}

bench_scaling() {
    local sup n
    : >"$WORK/scaling.tsv"
    for sup in warden horust; do
        [ -n "${HAVE[$sup]}" ] || continue
        for n in ${SCALE_NS//,/ }; do
            log "scaling: $sup with $n programs, HTTP probe every 1 s (window ${SCALE_WINDOW}s)"
            scale_once "$sup" "$n"
        done
    done
    # The headline row of the main table: the largest N.
    local last=${SCALE_NS##*,}
    for sup in warden horust; do
        R[scalecpu,$sup]=$(awk -v s="$sup" -v n="$last" '$1 == s && $2 == n { print ($3 == "failed" ? "failed" : $3) }' "$WORK/scaling.tsv")
    done
    for sup in "${SUPS[@]}"; do
        case $sup in warden | horust) ;; *) [ -n "${HAVE[$sup]}" ] && R[scalecpu,$sup]="— (no HTTP probes)" ;; esac
    done
    scaling_plot
}

# The scaling table (Markdown) from $WORK/scaling.tsv.
scaling_table() {
    local sup
    echo "| programs | warden CPU % of one core | warden RSS (KiB) | warden probes/s | horust CPU % of one core | horust RSS (KiB) | horust probes/s | horust threads |"
    echo "|---|---|---|---|---|---|---|---|"
    for n in ${SCALE_NS//,/ }; do
        awk -v n="$n" -v hh="${HAVE[horust]}" -v why="$(cell x horust)" '
            $2 == n { cpu[$1] = $3; rss[$1] = $4; q[$1] = $5; th[$1] = $6 }
            END {
                w = ("warden" in cpu) ? (cpu["warden"] == "failed" ? "failed | | " : cpu["warden"] " | " rss["warden"] " | " q["warden"]) : "— | — | —"
                if ("horust" in cpu) h = (cpu["horust"] == "failed" ? "failed (" rss["horust"] ") | | | " : cpu["horust"] " | " rss["horust"] " | " q["horust"] " | " th["horust"])
                else h = (hh == "" ? why : "—") " | | | "
                printf "| %d | %s | %s |\n", n, w, h
            }' "$WORK/scaling.tsv"
    done
}

# A PNG of CPU % and RSS against N (log scale) with gnuplot, into $OUT/scaling.png.
scaling_plot() {
    local gp
    gp=$(command -v gnuplot || true)
    if [ -z "$gp" ]; then
        log "scaling: gnuplot not installed (bench/install-peers.sh); no plot"
        return
    fi
    awk '$3 != "failed" { print > ("'"$WORK"'/scaling-" $1 ".dat") }' "$WORK/scaling.tsv"
    local plots="" plots2="" sup
    for sup in warden horust; do
        [ -s "$WORK/scaling-$sup.dat" ] || continue
        plots+="${plots:+, }'$WORK/scaling-$sup.dat' using 2:3 with linespoints lw 2 pt 7 title '$sup'"
        plots2+="${plots2:+, }'$WORK/scaling-$sup.dat' using 2:(\$4/1024) with linespoints lw 2 pt 7 title '$sup'"
    done
    [ -n "$plots" ] || return
    "$gp" <<EOF 2>"$WORK/gnuplot.err" || log "scaling: gnuplot failed: $(head -n 3 "$WORK/gnuplot.err")"
set terminal pngcairo size 1100,450 font ",10" noenhanced
set output '$OUT/scaling.png'
set multiplot layout 1,2 title "N programs, each with an HTTP health check every 1 s ($(date -u +%Y-%m-%d), $(nproc) CPUs)"
set logscale x
set xtics (1, 10, 100, 1000)
set xlabel 'programs'
set grid
set key top left
set ylabel 'CPU, % of one core (log scale)'
set logscale y
set yrange [0.01:*]
plot $plots, 10 with lines dt 2 lc rgb 'red' title 'target for warden at 1000: 10 %'
set ylabel 'RSS (MiB, log scale)'
set yrange [1:*]
plot $plots2
unset multiplot
EOF
    [ -s "$OUT/scaling.png" ] && log "scaling: plot written to $OUT/scaling.png"
}
