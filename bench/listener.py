#!/usr/bin/env python3
"""/healthz latency while hostile clients hold connections open (issue 12).

Starts the release warden on a loopback port with one `sleep` program, then measures /healthz
the way a probe does (a new connection per request, `Connection: close`), first with nothing
else connected, then with N hostile connections held open: half send a request head that never
ends (slowloris), half never send a byte. warden closes those after its 10 s header timeout; a
background thread reopens every one it closes, so N stay held for the whole measurement. With
N above 512 warden's cap is hit and newcomers displace the idlest connections.

    bench/listener.py                       # builds target/release/warden first
    bench/listener.py --no-build --seconds 30 --hostile 500,1000

Each scenario probes every 10 ms for 15 s (so the hostile connections time out and are
reopened during it). Prints one Markdown table: p50, p99 and max per scenario, how many requests
failed, and how often warden closed a hostile connection (timeout or displacement).
"""

import argparse
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port, timeout=10.0):
    """One probe-style request; its latency in ms, or None when it failed."""
    req = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(req)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    took = (time.perf_counter() - start) * 1000
    return took if data.startswith(b"HTTP/1.1 200") else None


class HostilePool:
    """N connections held open against warden, reopened as soon as warden closes one."""

    def __init__(self, port, n):
        self.port, self.n = port, n
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.reopened = 0
        for i in range(n):
            self._open(i)
        self.thread = threading.Thread(target=self._keep, daemon=True)
        self.thread.start()

    def _open(self, i):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return
        s.setblocking(False)
        if i % 2 == 0:
            try:
                s.send(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nX-Pad: ".encode())
            except OSError:
                pass
        self.sel.register(s, selectors.EVENT_READ, i)

    def _keep(self):
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                s, i = key.fileobj, key.data
                try:
                    gone = s.recv(4096) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    self.sel.unregister(s)
                    s.close()
                    self.reopened += 1
                    if not self.stop.is_set():
                        self._open(i)

    def held(self):
        return len(self.sel.get_map())

    def close(self):
        self.stop.set()
        self.thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


def measure(port, seconds, interval):
    """Probe every `interval` s for `seconds` s: long enough for warden's 10 s header timeout to
    close and the pool to reopen the hostile connections during the measurement."""
    lat, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = healthz(port)
        if t is None:
            failed += 1
        else:
            lat.append(t)
        time.sleep(interval)
    return lat, failed


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15, help="measuring time per scenario")
    ap.add_argument("--interval-ms", type=float, default=10, help="pause between /healthz requests")
    ap.add_argument("--hostile", default="500,1000", help="held-connection counts, comma-separated")
    ap.add_argument("--no-build", action="store_true", help="use the existing target/release/warden")
    ap.add_argument("--warden", default=os.path.join(ROOT, "target/release/warden"))
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    need = max(int(n) for n in args.hostile.split(",")) + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))

    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "supervisor.toml")
        with open(cfg, "w") as f:
            f.write(
                f'[http]\nlisten = "127.0.0.1:{port}"\n\n[programs.app]\ncommand = ["sleep", "3600"]\n'
            )
        proc = subprocess.Popen(
            [args.warden, "run", "-c", cfg],
            cwd=d,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while healthz(port, timeout=1) is None:
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("warden did not come up")
                time.sleep(0.05)
            rows = []
            interval = args.interval_ms / 1000
            measure(port, 0.5, interval)  # warm-up
            lat, failed = measure(port, args.seconds, interval)
            rows.append(("idle", 0, lat, failed, 0))
            for n in (int(x) for x in args.hostile.split(",")):
                pool = HostilePool(port, n)
                time.sleep(1)
                held = pool.held()
                lat, failed = measure(port, args.seconds, interval)
                rows.append((f"{n} hostile held", held, lat, failed, pool.reopened))
                pool.close()
                time.sleep(0.5)
            stop = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            stopped_ms = (time.monotonic() - stop) * 1000
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    print(f"`bench/listener.py --seconds {args.seconds:g} --interval-ms {args.interval_ms:g} "
          f"--hostile {args.hostile}` ({os.path.relpath(args.warden, ROOT)}, one connection per "
          f"request)\n")
    print("| scenario | client sockets open | /healthz p50 ms | p99 ms | max ms | failed | hostile reopened |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, held, lat, failed, reopened in rows:
        if lat:
            print(f"| {name} | {held} | {statistics.median(lat):.3f} | {pct(lat, 99):.3f} | "
                  f"{max(lat):.3f} | {failed}/{len(lat) + failed} | {reopened} |")
        else:
            print(f"| {name} | {held} | - | - | - | {failed}/{failed} | {reopened} |")
    print(f"\nSIGTERM after the last scenario: exit {code} in {stopped_ms:.0f} ms")


if __name__ == "__main__":
    main()
