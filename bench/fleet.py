#!/usr/bin/env python3
"""Fleet mode under a token expiry: how long from the broker killing the token until ALL N
backends answer healthy again, for N wardens sharing one Kite app through Redis (issue #7).

For each fleet size N: one redis-server (no persistence), one sandbox Kite (TOTP login), and N
wardens (release build), each in its own directory with its own .env, each supervising one
demo backend with `on_token_change = "signal"` and a 1 s health probe. Once all N are healthy
on one token, each round waits for a fresh TOTP step (Kite refuses a code twice and the fleet
reserves one code per 30 s step), expires every token at the sandbox, and polls every backend's
/api/system/health directly until each answers 200. Then it checks that every .env holds the
same new token, that no backend was restarted, and that the sandbox saw exactly one new
session for the whole fleet.

The wardens log JSON; their log lines give a breakdown of each round (who noticed first, when
the leader started and finished its login, when the last follower had the token).

Needs python3 (stdlib only), redis-server on PATH and target/release/warden (bench/fleet.sh
builds it). No root. Loopback only.
"""
import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "target", "release", "warden")
# The sandbox's fixed demo credentials (printed by `warden sandbox kite` at start).
API_KEY, API_SECRET, USER_ID = "kitefront", "kitefront-sandbox-secret", "AB1234"
PASSWORD, TOTP_SECRET = "sandbox-password", "WARDENSANDBOXTOTPSECRETKITEAB234"
TOTP_STEP = 30
ENV_KEY = "KITE_ACCESS_TOKEN"


class Interrupted(Exception):
    """SIGTERM or SIGHUP to this script: unwind so every child is stopped."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method, url, timeout=2.0):
    """(status, body); status 0 when nothing answered."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def get_json(url):
    code, body = request("GET", url)
    if code != 200:
        raise RuntimeError(f"GET {url} answered {code}")
    return json.loads(body)


def wait(what, cond, timeout, every=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def totp_step():
    return int(time.time()) // TOTP_STEP


def wait_fresh_totp_step():
    step = totp_step()
    wait("a fresh TOTP step", lambda: totp_step() != step, TOTP_STEP + 1, every=0.01)


def ms(x):
    return "-" if x is None else f"{x * 1000:.0f}ms"


class Children:
    """Every process this script started, so that every exit path stops all of them. Each
    runs in a session of its own: a Ctrl-C reaches only this script, which then stops the
    wardens gracefully (they stop their backends) before the sandbox and Redis."""

    def __init__(self):
        self.procs = []  # (kind, Popen), in start order
        self.backend_pids = set()

    def spawn(self, kind, argv, **kw):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        self.procs.append((kind, p))
        return p

    def stop_all(self):
        # A second Ctrl-C must not cut the clean-up short.
        sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        saved = [signal.signal(s, signal.SIG_IGN) for s in sigs]
        try:
            self._stop_all()
        finally:
            for s, h in zip(sigs, saved):
                signal.signal(s, h)

    def _stop_all(self):
        # Wardens first (their backends go with them), then the peers they talk to.
        for group in (("warden",), ("kite", "redis")):
            procs = [p for k, p in self.procs if k in group and p.poll() is None]
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        # A warden that had to be killed leaves its backend behind: kill those by pid, but
        # only if the pid still belongs to a sandbox backend.
        for pid in self.backend_pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                if b"sandbox" in argv and b"backend" in argv:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.procs.clear()


class Warden:
    def __init__(self, children, root, i, kite_url, redis_url, probe_interval):
        self.dir = os.path.join(root, f"warden-{i}")
        os.mkdir(self.dir)
        self.http = f"127.0.0.1:{free_port()}"
        backend_port = free_port()
        self.health_url = f"http://127.0.0.1:{backend_port}/api/system/health"
        self.info_url = f"http://127.0.0.1:{backend_port}/api/system/info"
        cfg = f"""
[supervisor]
log_format = "json"
shutdown_timeout = "10s"
[http]
listen = "{self.http}"
[token]
provider = "kite"
env_file = ".env"
env_key = "{ENV_KEY}"
min_interval = "0s"
max_attempts = 10
attempt_window = "1m"
check_interval = "1h"
verify_timeout = "10s"
[token.store]
kind = "redis"
url = "{redis_url}"
key_prefix = "fleetbench:"
lock_ttl = "5s"
[token.kite]
api_key = "{API_KEY}"
api_secret = "{API_SECRET}"
user_id = "{USER_ID}"
login = "totp"
password = "{PASSWORD}"
totp_secret = "{TOTP_SECRET}"
login_base = "{kite_url}"
api_base = "{kite_url}"
[programs.backend]
command = ["{EXE}", "sandbox", "backend", "--listen", "127.0.0.1:{backend_port}", "--env-file", ".env", "--kite", "{kite_url}", "--api-key", "{API_KEY}"]
on_token_change = "signal"
backoff_initial = "0s"
[programs.backend.health]
url = "{self.health_url}"
interval = "{probe_interval}"
timeout = "1s"
initial_delay = "0s"
failure_threshold = 10
"""
        conf = os.path.join(self.dir, "supervisor.toml")
        with open(conf, "w") as f:
            f.write(cfg)
        self.log_path = os.path.join(self.dir, "warden.log")
        with open(self.log_path, "w") as log:
            self.proc = children.spawn("warden", [EXE, "run", "-c", conf], cwd=self.dir,
                                       stdout=subprocess.DEVNULL, stderr=log)

    def status(self):
        return get_json(f"http://{self.http}/api/v1/status")

    def role(self):
        return self.status()["token"].get("store", {}).get("role")

    def backend(self, st=None):
        st = st or self.status()
        return next(p for p in st["programs"] if p["name"] == "backend")

    def env_token(self):
        """The token in this warden's .env (compared, never printed)."""
        try:
            with open(os.path.join(self.dir, ".env")) as f:
                for line in f:
                    if line.startswith(ENV_KEY + "="):
                        return line[len(ENV_KEY) + 1:].strip()
        except FileNotFoundError:
            pass
        return ""

    def backend_info(self):
        return get_json(self.info_url)

    def log_size(self):
        return os.path.getsize(self.log_path)

    def events_since(self, offset):
        """(unix time, message) of each JSON log line written after `offset`."""
        out = []
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            for raw in f:
                try:
                    ev = json.loads(raw)
                    t = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00"))
                except (ValueError, KeyError):
                    continue
                out.append((t.timestamp(), ev.get("message", "")))
        return out

    def tail(self, chars=3000):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]


def all_healthy_on_one_token(fleet):
    first = fleet[0].env_token()
    if not first:
        return False
    for w in fleet:
        try:
            st = w.status()
        except (RuntimeError, ValueError):
            return False  # not listening yet
        if w.env_token() != first or st["token"]["state"] != "valid":
            return False
        if w.backend(st)["health"] != "healthy":
            return False
    return True


def poll_until_healthy(fleet, t0, poll, timeout=60.0):
    """Poll every backend's health endpoint in its own thread; the seconds from t0 until each
    first answered 200 (None if it never did within the timeout)."""
    done = [None] * len(fleet)
    deadline = t0 + timeout

    def poller(i, url):
        while time.monotonic() < deadline:
            if request("GET", url, timeout=0.5)[0] == 200:
                done[i] = time.monotonic() - t0
                return
            time.sleep(poll)

    threads = [threading.Thread(target=poller, args=(i, w.health_url), daemon=True)
               for i, w in enumerate(fleet)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done


# Log messages that mark the steps of one recovery (see src/token/keeper.rs, src/supervisor.rs).
NOTICED = "probe reports an auth failure; validating the token"
LOGIN_START = "refreshing the token"
IN_PLACE = "new token in place"
FROM_FLEET = "new token from the fleet"
ASKED = "a follower asks for a token"
SIGNALLED = re.compile(r"^sending \S+ for the new token$")


def breakdown(fleet, offsets, t0_wall):
    """Seconds from the expiry to each step, from the wardens' logs."""
    evs = [[(t - t0_wall, m) for t, m in w.events_since(o)] for w, o in zip(fleet, offsets)]

    def first(i, pred):
        return next((t for t, m in evs[i] if pred(m)), None)

    leaders = [i for i in range(len(fleet)) if first(i, lambda m: m == LOGIN_START) is not None]
    noticed = [t for i in range(len(fleet)) if (t := first(i, lambda m: m == NOTICED)) is not None]
    signalled = [first(i, SIGNALLED.match) for i in range(len(fleet))]
    # Not every warden's probe need see the 403: one that probes after the new token arrived
    # never does.
    r = {"leaders": len(leaders), "noticed": min(noticed, default=None),
         "noticed_last": max(noticed, default=None), "noticed_by": len(noticed),
         "signalled": None if None in signalled else max(signalled)}
    if len(leaders) != 1:
        return r
    lead = leaders[0]
    r["login_start"] = first(lead, lambda m: m == LOGIN_START)
    r["in_place"] = first(lead, lambda m: m == IN_PLACE)
    asked = first(lead, lambda m: m == ASKED)
    # What set the leader off: its own backend's probe, or a follower's request over Redis.
    r["trigger"] = "follower" if asked is not None and asked <= r["login_start"] else "own probe"
    got = [first(i, lambda m: m == FROM_FLEET) for i in range(len(fleet)) if i != lead]
    r["fanout"] = r["in_place"] if not got else (None if None in got else max(got))
    return r


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    redis = (re.search(r"v=(\S+)", redis) or [None, "?"])[1]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    return (f"{model}; nproc {len(os.sched_getaffinity(0))}; Linux {platform.release()}; "
            f"Python {platform.python_version()}; redis-server {redis}; warden {commit}")


def loadavg():
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_size(n, rounds, probe_interval, poll):
    children = Children()
    root = tempfile.mkdtemp(prefix=f"warden-fleetbench-{n}-")
    ok = False
    fleet = []
    rows = []
    try:
        redis_port, kite_port = free_port(), free_port()
        children.spawn("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", root],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kite_url = f"http://127.0.0.1:{kite_port}"
        children.spawn("kite", [EXE, "sandbox", "kite", "--listen", f"127.0.0.1:{kite_port}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("the sandbox Kite", lambda: request("GET", kite_url + "/_sandbox/stats")[0] == 200, 10)
        redis_url = f"redis://127.0.0.1:{redis_port}"
        fleet = [Warden(children, root, i, kite_url, redis_url, probe_interval) for i in range(n)]

        def sessions():
            return get_json(kite_url + "/_sandbox/stats")["sessions_created"]

        wait(f"all {n} healthy on one token", lambda: all_healthy_on_one_token(fleet), 90)
        leaders = [w.role() for w in fleet].count("leader")
        if leaders != 1:
            raise RuntimeError(f"{leaders} leaders after start-up")
        print(f"N={n}: all healthy on one token, {sessions()} login(s) at start-up", flush=True)

        for r in range(rounds):
            wait_fresh_totp_step()
            # A random phase against the probe schedules, so rounds do not all land alike.
            time.sleep(random.uniform(0, parse_seconds(probe_interval)))
            before = sessions()
            old = fleet[0].env_token()
            pids = [w.backend_info()["pid"] for w in fleet]
            offsets = [w.log_size() for w in fleet]
            t0_wall, t0 = time.time(), time.monotonic()
            code, _ = request("POST", kite_url + "/_sandbox/expire", timeout=5)
            if code != 200:
                raise RuntimeError(f"POST /_sandbox/expire answered {code}")
            healthy = poll_until_healthy(fleet, t0, poll)
            if None in healthy:
                raise RuntimeError(f"{healthy.count(None)} of {n} backends never recovered")
            # The backend only answers 200 once Kite accepts its token, so its .env already
            # holds the new one; each of them must hold the same one.
            tokens = {w.env_token() for w in fleet}
            if len(tokens) != 1 or old in tokens:
                raise RuntimeError("the .env files do not all hold one new token")
            if [w.backend_info()["pid"] for w in fleet] != pids:
                raise RuntimeError("a backend was restarted instead of signalled")
            logins = sessions() - before
            b = breakdown(fleet, offsets, t0_wall)
            rows.append({"all": max(healthy), "first": min(healthy), "logins": logins, **b})
            if b["noticed"] is not None:
                rows[-1]["after_noticed"] = max(healthy) - b["noticed"]
            print(f"  N={n} round {r + 1}/{rounds}: all healthy {ms(max(healthy))}, "
                  f"first {ms(min(healthy))}, logins {logins:+d}; "
                  f"403 seen by {b['noticed_by']}/{n} probes "
                  f"{ms(b['noticed'])}..{ms(b['noticed_last'])}, "
                  f"login {ms(b.get('login_start'))}..{ms(b.get('in_place'))} "
                  f"({b.get('trigger', '?')}), last follower {ms(b.get('fanout'))}, "
                  f"last signal {ms(b['signalled'])}", flush=True)
        # A second login by anyone would need a TOTP step of its own: look once more after the
        # next step has begun, so a late duplicate login is counted too.
        settled_before = sessions()
        wait_fresh_totp_step()
        time.sleep(1.5)
        late = sessions() - settled_before
        if late:
            rows[-1]["logins"] += late
            print(f"  N={n}: {late} more login(s) after the last round", flush=True)
        ok = True
    finally:
        if not ok:
            for i, w in enumerate(fleet):
                sys.stderr.write(f"--- warden {i} log ---\n{w.tail()}\n")
        for w in fleet:
            try:
                children.backend_pids.add(w.backend()["pid"])
            except (RuntimeError, ValueError, KeyError, StopIteration):
                pass
        children.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    return rows


def parse_seconds(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", s)
    if not m:
        raise SystemExit(f"--probe-interval: use e.g. 1s or 500ms, not {s!r}")
    return float(m[1]) / (1000 if m[2] == "ms" else 1)


def main():
    global EXE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="expiries per fleet size (default 3)")
    ap.add_argument("--sizes", default="1,3,10", help="fleet sizes (default 1,3,10)")
    ap.add_argument("--probe-interval", default="1s", help="each warden's probe interval")
    ap.add_argument("--poll-ms", type=float, default=None,
                    help="pause between two health polls of one backend (default: max(5, N) ms, "
                         "so that polling 10 backends does not load the machine it measures)")
    ap.add_argument("--warden", default=EXE, help="the warden binary (default: the release build)")
    a = ap.parse_args()
    EXE = os.path.abspath(a.warden)
    sizes = [int(x) for x in a.sizes.split(",")]
    parse_seconds(a.probe_interval)
    if not os.path.exists(EXE):
        raise SystemExit(f"{EXE} missing: run `cargo build --release` (bench/fleet.sh does)")
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server not found (apt-get install redis-server)")

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    print(f"machine: {machine()}")
    print(f"before: {loadavg()}", flush=True)
    results = []
    for n in sizes:
        poll = (a.poll_ms if a.poll_ms is not None else max(5.0, float(n))) / 1000
        results.append((n, poll, run_size(n, a.rounds, a.probe_interval, poll)))
    print(f"after:  {loadavg()}")
    print()
    print(f"fleet recovery after a token expiry: signal mode, probe interval {a.probe_interval}, "
          f"redis store, TOTP login")
    print(f"{'N':>3} {'rounds':>6} {'all healthy p50':>15} {'max':>7} {'first healthy p50':>17} "
          f"{'logins/expiry':>13} {'poll':>5}")
    for n, poll, rows in results:
        alls = [r["all"] for r in rows]
        logins = ",".join(str(r["logins"]) for r in rows)
        print(f"{n:>3} {len(rows):>6} {ms(statistics.median(alls)):>15} {ms(max(alls)):>7} "
              f"{ms(statistics.median(r['first'] for r in rows)):>17} {logins:>13} "
              f"{poll * 1000:>3.0f}ms")
    print()
    print("where the time goes (median seconds after the expiry, from the wardens' logs):")
    print(f"{'N':>3} {'noticed':>8} {'login start':>11} {'token in place':>14} "
          f"{'last follower':>13} {'last signal':>11} {'all healthy':>11} {'noticed->all':>12}"
          f"  trigger")

    def med(rows, key):
        xs = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(xs) if xs else None

    for n, _, rows in results:
        triggers = ", ".join(f"{k} x{v}" for k, v in
                             sorted(Counter(r.get("trigger", "?") for r in rows).items()))
        print(f"{n:>3} {ms(med(rows, 'noticed')):>8} {ms(med(rows, 'login_start')):>11} "
              f"{ms(med(rows, 'in_place')):>14} {ms(med(rows, 'fanout')):>13} "
              f"{ms(med(rows, 'signalled')):>11} {ms(med(rows, 'all')):>11} "
              f"{ms(med(rows, 'after_noticed')):>12}  {triggers}")
    bad = [(n, r["logins"]) for n, _, rows in results for r in rows if r["logins"] != 1]
    if bad:
        print(f"FAIL: an expiry did not cost exactly one login: {bad}")
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, Interrupted) as e:
        sys.exit(f"interrupted ({str(e) or 'SIGINT'}); every child was stopped")
