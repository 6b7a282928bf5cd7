# shellcheck shell=bash
# bench/lib/peers.sh: which supervisors are measured, and how each one is set up to run a list of
# programs. Sourced by bench/run.sh. Expects ROOT, WORK, PROBE, WARDEN, ONLY_SUPS.

# Columns of the report, in order. "s6" and "runit" are the trees (s6-svscan + one s6-supervise
# per service, runsvdir + one runsv per service); "s6-supervise" and "runsv" are one of those
# per-service supervisors alone.
SUPS=(warden tini dumb-init supervisord s6 s6-supervise runit runsv horust)
declare -A HAVE LABEL WHY_NOT SKIPPED
LABEL=([warden]=warden [tini]=tini [dumb-init]=dumb-init [supervisord]=supervisord
    [s6]="s6-svscan tree" [s6-supervise]=s6-supervise [runit]="runit tree" [runsv]=runsv
    [horust]=horust)

# Peers built from source (horust) live in a bench-local cargo root, never in the repo.
PEERS_DIR=${WARDEN_BENCH_PEERS:-$ROOT/bench/.peers}
TINI=$(command -v tini || true)
DUMB=$(command -v dumb-init || true)
SUPERVISORD=$(command -v supervisord || true)
S6SVSCAN=$(command -v s6-svscan || true)
S6SUPERVISE=$(command -v s6-supervise || true)
RUNSVDIR=$(command -v runsvdir || true)
RUNSV=$(command -v runsv || true)
HORUST=""
if [ -x "$PEERS_DIR/bin/horust" ]; then
    HORUST=$PEERS_DIR/bin/horust
elif command -v horust >/dev/null 2>&1; then
    HORUST=$(command -v horust)
fi
UNSHARE=$(command -v unshare || true)

HAVE[warden]=1
HAVE[tini]=${TINI:+1}
HAVE[dumb-init]=${DUMB:+1}
HAVE[supervisord]=${SUPERVISORD:+1}
HAVE[s6]=$([ -n "$S6SVSCAN" ] && [ -n "$S6SUPERVISE" ] && echo 1)
HAVE[s6-supervise]=${S6SUPERVISE:+1}
HAVE[runit]=$([ -n "$RUNSVDIR" ] && [ -n "$RUNSV" ] && echo 1)
HAVE[runsv]=${RUNSV:+1}
HAVE[horust]=${HORUST:+1}
for sup in "${SUPS[@]}"; do WHY_NOT[$sup]="n/a (not installed)"; done
# install-peers.sh leaves the reason there when `cargo install horust` fails.
if [ -z "$HORUST" ] && [ -s "$PEERS_DIR/horust.failed" ]; then
    WHY_NOT[horust]="n/a (did not build: $(head -c 120 "$PEERS_DIR/horust.failed" | tr '\n|' '  '))"
fi
for sup in "${SUPS[@]}"; do
    if [[ ,$ONLY_SUPS, != *,$sup,* ]]; then
        [ -n "${HAVE[$sup]}" ] && SKIPPED[$sup]=1
        HAVE[$sup]=""
    fi
done

peer_versions() {
    [ -n "$TINI" ] && echo "tini:    $("$TINI" --version 2>&1 | head -n1)"
    [ -n "$DUMB" ] && echo "dumb-init: $("$DUMB" --version 2>&1 | head -n1)"
    [ -n "$SUPERVISORD" ] && echo "supervisord: $("$SUPERVISORD" --version 2>&1 | head -n1) ($(python3 --version 2>&1))"
    [ -n "$S6SVSCAN" ] && echo "s6:      $(dpkg-query -W -f '${Version}' s6 2>/dev/null || echo '?')"
    [ -n "$RUNSVDIR" ] && echo "runit:   $(dpkg-query -W -f '${Version}' runit 2>/dev/null || echo '?')"
    if [ -n "$HORUST" ]; then
        local v
        v=$(grep -o '"horust [0-9][^ ]*' "$PEERS_DIR/.crates.toml" 2>/dev/null | head -n1 | cut -d' ' -f2)
        echo "horust:  ${v:-?} (cargo install --locked from crates.io, default features: http-healthcheck)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Setting a supervisor up: prepare SUP DIR PROG... writes its config into DIR and sets CMD (the
# command line) and ENV (extra environment). A PROG is a command as one space-separated string.
# `prepare_warden_health` and `prepare_horust_health` add an HTTP health check per program.
# ---------------------------------------------------------------------------------------------
toml_array() {
    local out="" w
    for w in $1; do out+="${out:+, }\"$w\""; done
    echo "$out"
}

# s6 and runsv want an executable `run`. For the probe's stamp/term modes it is a symlink to the
# probe (mode and file from the environment), so the supervisor pays no extra shell exec; for s6,
# with notification-fd the probe reports readiness, which s6 >= 2.11 needs to restart without
# its 1 s throttle. runsv has no readiness protocol (it always waits 1 s after a short run).
run_service() {
    local kind=$1 dir=$2 prog=$3
    local -a w
    read -ra w <<<"$prog"
    mkdir -p "$dir"
    if [ "${w[0]}" = "$PROBE" ] && { [ "${w[1]}" = stamp ] || [ "${w[1]}" = term ]; }; then
        ln -sf "$PROBE" "$dir/run"
        ENV=(PROBE_MODE="${w[1]}" PROBE_FILE="${w[2]}")
        if [ "$kind" = s6 ]; then
            echo 3 >"$dir/notification-fd"
            ENV+=(PROBE_NOTIFY_FD=3)
        fi
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
                printf '[supervisor]\nshutdown_timeout = "10s"\n[http]\nlisten = "127.0.0.1:%s"\n' "${WARDEN_PORT:-0}"
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
            for i in "${!progs[@]}"; do run_service s6 "$dir/scan/p$i" "${progs[$i]}"; done
            CMD=("$S6SVSCAN" "$dir/scan")
            ;;
        s6-supervise)
            run_service s6 "$dir/svc" "${progs[0]}"
            CMD=("$S6SUPERVISE" "$dir/svc")
            ;;
        runit)
            for i in "${!progs[@]}"; do run_service runit "$dir/sv/p$i" "${progs[$i]}"; done
            CMD=("$RUNSVDIR" "$dir/sv")
            ;;
        runsv)
            run_service runit "$dir/svc" "${progs[0]}"
            CMD=("$RUNSV" "$dir/svc")
            ;;
        horust)
            mkdir -p "$dir/services" "$dir/uds"
            for i in "${!progs[@]}"; do
                {
                    printf 'command = "%s"\n' "${progs[$i]}"
                    printf '[restart]\nstrategy = "always"\nbackoff = "0s"\nattempts = 0\n'
                    printf '[termination]\nwait = "5s"\n'
                } >"$dir/services/p$i.toml"
            done
            # No horust.toml: the defaults apply (the flag only keeps it off /etc/horust).
            CMD=("$HORUST" --config-path "$dir/horust.toml" --services-path "$dir/services"
                --uds-folder-path "$dir/uds")
            ;;
    esac
    # Saved so that runs can alternate between supervisors: `use DIR` brings CMD/ENV back.
    # (-g: sourced inside a function, a plain `declare` would make them local.)
    declare -p CMD ENV | sed 's/^declare -a /declare -ga /' >"$dir/.launch"
}

# Add an HTTP health check to every program of a prepared warden or horust: program i is probed
# at http://127.0.0.1:PORT_i/api/system/health every second (PORTS: a file, one port per line).
add_health_checks() {
    local sup=$1 dir=$2 ports=$3 i=0 port
    while read -r port; do
        case $sup in
            warden)
                printf '[programs.p%d.health]\nurl = "http://127.0.0.1:%s/api/system/health"\n' "$i" "$port"
                printf 'interval = "1s"\ntimeout = "1s"\ninitial_delay = "0s"\n'
                ;;
            horust)
                # horust probes every second (not configurable), with HEAD and a 1 s timeout.
                printf '[healthiness]\nhttp-endpoint = "http://127.0.0.1:%s/api/system/health"\n' "$port" \
                    >>"$dir/services/p$i.toml"
                ;;
        esac
        i=$((i + 1))
    done <"$ports" >>"$dir/health.toml"
    [ "$sup" = warden ] && cat "$dir/health.toml" >>"$dir/supervisor.toml"
    return 0
}

use() {
    # shellcheck disable=SC1091
    source "$1/.launch"
}

# The processes that make up SUP's supervisor: one pid, or the tree's root and its per-service
# supervisors (s6-svscan + s6-supervise, runsvdir + runsv), or one of those alone.
sup_pids() {
    local sup=$1 pid=$2
    case $sup in
        s6 | runit) echo "$pid" $(ps -o pid= --ppid "$pid") ;;
        s6-supervise | runsv) ps -o pid= --ppid "$pid" | head -n1 ;;
        *) echo "$pid" ;;
    esac
}
