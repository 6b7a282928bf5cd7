"""A health endpoint whose answers a test controls through SIGHUP, for tests/handover.rs.

    python3 handover_backend.py PORT HOLD_SECONDS AFTER [ENV_FILE]

Before a SIGHUP every probe is held until the SIGHUP arrives (at most HOLD_SECONDS), then
answered 200: so when warden hands over a token by signal, a probe is almost surely in flight,
and its 200 arrives after the hand-over although it was sent before. Probes received after the
SIGHUP are answered at once: 200 if AFTER is "ok" or "ok-unreleased", 503 if it is "fail".
With "ok-unreleased" the SIGHUP does not release the probes already held: they are answered
only after the full HOLD_SECONDS (a slow answer to a probe from before the hand-over).

With ENV_FILE, a change of that file (a rename-over included) is a hand-over too, like a
program with `on_token_change = "watch"` sees it.

It prints (flushed, one line each) what a test needs to see:
    listening
    SIGHUP with N probe(s) in flight        (or: env file change with N probe(s) in flight)
    200 after the hand-over to a probe received before it
"""

import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
HOLD_SECONDS = float(sys.argv[2])
AFTER_OK = sys.argv[3] in ("ok", "ok-unreleased")
RELEASE_ON_SIGHUP = sys.argv[3] != "ok-unreleased"

_lock = threading.Lock()
_handed_over = threading.Event()
_released = threading.Event()
_in_flight = 0


def say(line):
    print(line, flush=True)


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        global _in_flight
        if _handed_over.is_set():
            self.answer(200 if AFTER_OK else 503)
            return
        with _lock:
            _in_flight += 1
        try:
            _released.wait(HOLD_SECONDS)
        finally:
            with _lock:
                _in_flight -= 1
        try:
            self.answer(200)
        except OSError:
            return  # warden gave up on this probe
        if _handed_over.is_set():
            say("200 after the hand-over to a probe received before it")

    def answer(self, status):
        body = b'{"status":"ok"}' if status == 200 else b'{"status":"error"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


def hand_over(cause):
    if _handed_over.is_set():
        return
    # The counter, not the lock: a signal handler must not wait for a thread it interrupted.
    say(f"{cause} with {_in_flight} probe(s) in flight")
    _handed_over.set()
    if RELEASE_ON_SIGHUP:
        _released.set()


def on_sighup(_signum, _frame):
    hand_over("SIGHUP")


def watch_env_file(path):
    def identity():
        try:
            st = os.stat(path)
            return (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    first = identity()
    while identity() == first:
        time.sleep(0.02)
    hand_over("env file change")


server = ThreadingHTTPServer(("127.0.0.1", PORT), Health)
server.daemon_threads = True
signal.signal(signal.SIGHUP, on_sighup)
if len(sys.argv) > 4:
    threading.Thread(target=watch_env_file, args=(sys.argv[4],), daemon=True).start()
say("listening")
server.serve_forever()
