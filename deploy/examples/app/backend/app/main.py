"""An example FastAPI trading backend on the official Kite client, supervised by warden.

The pattern to copy: one `KiteConnect` for REST, one `KiteTicker` for the live feed, and one
function, `reload_token()`, that takes a new access token from the env file warden keeps
(`KITE_ENV_FILE`) WITHOUT restarting the process: REST switches at once, the ticker is closed
and reconnected with the new token. warden hands the token over in one of two ways:

- `on_token_change = "signal"`: warden rewrites the env file, then sends SIGHUP → reload_token().
- `on_token_change = "watch"`: warden only rewrites the file; set `KITE_ENV_WATCH=1` and a
  watchdog observer on the file's directory sees the rename-over → reload_token().

`GET /api/system/health` answers 403 `{"auth": "EXPIRED"}` once Kite rejects the token (warden
then refreshes it instead of restarting us); the answer is cached for 60 s so probes don't
hammer Kite. `GET /api/feed` has the ticker's state and the latest prices.

Environment: KITE_API_KEY, KITE_ACCESS_TOKEN (at start), KITE_ENV_FILE, and for a sandbox
KITE_API_BASE (default https://api.kite.trade) and KITE_TICKER_URL (default wss://ws.kite.trade).
"""

import logging
import os
import signal
import threading
import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from kiteconnect import KiteConnect, KiteTicker
from kiteconnect import exceptions as kex
from twisted.internet import reactor

log = logging.getLogger("backend")
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

API_KEY = os.environ.get("KITE_API_KEY", "")
API_BASE = os.environ.get("KITE_API_BASE") or None  # None: the client's own default host
TICKER_URL = os.environ.get("KITE_TICKER_URL") or None
ENV_FILE = os.environ.get("KITE_ENV_FILE", "")
TOKEN_KEY = "KITE_ACCESS_TOKEN"
RECHECK_SECONDS = 60.0  # ask Kite at most this often; probes in between get the cached answer
# Instrument tokens to stream (the low byte is the segment: 1 = NSE, 9 = an index).
INSTRUMENTS = {738561: "RELIANCE", 408065: "INFY", 256265: "NIFTY 50"}

kite = KiteConnect(api_key=API_KEY, root=API_BASE)
_lock = threading.Lock()
_state = {"token": os.environ.get(TOKEN_KEY, ""), "checked_at": 0.0, "auth": None}


class Feed:
    """The KiteTicker of the current token. Twisted's reactor runs once per process, in a
    daemon thread; every ticker call is made on that thread (Twisted is not thread-safe)."""

    def __init__(self):
        self.ticker = None
        self.connected = False
        self.reconnects = 0
        self.outages = 0  # connected -> down transitions: a short one may fall between polls
        self.down_since = None
        self.last_outage = None  # seconds
        self.prices = {}  # instrument token -> latest tick summary

    def start(self, token):
        reactor.callFromThread(self._replace, token)
        if not reactor.running:
            threading.Thread(
                target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
            ).start()

    def _replace(self, token):
        if self.ticker is not None:
            # The old ticker would keep retrying with its dead token: stop it for good.
            try:
                self.ticker.close()
            except Exception:  # already closed: nothing to stop
                pass
            self.reconnects += 1
        if self.connected:  # replaced while up: an outage too, until the new one connects
            self.outages += 1
            self.down_since = time.monotonic()
        self.connected = False
        if not token:
            self.ticker = None
            return
        t = KiteTicker(API_KEY, token, root=TICKER_URL, reconnect_max_delay=5)
        # Callbacks of a replaced ticker may still arrive: only the current one counts.
        t.on_connect = lambda ws, _resp: self._on_connect(t)
        t.on_close = lambda ws, code, reason: self._on_down(t, code, reason)
        t.on_error = lambda ws, code, reason: self._on_down(t, code, reason)
        t.on_ticks = lambda ws, ticks: self._on_ticks(t, ticks)
        self.ticker = t
        t.connect()  # the reactor is (about to be) running: this only schedules the connection

    def _on_connect(self, t):
        if t is self.ticker:
            self.connected = True
            if self.down_since is not None:
                self.last_outage = round(time.monotonic() - self.down_since, 3)
                self.down_since = None
            t.subscribe(list(INSTRUMENTS))
            t.set_mode(t.MODE_QUOTE, list(INSTRUMENTS))

    def _on_down(self, t, code, reason):
        if t is self.ticker:
            if self.connected:
                self.outages += 1
                self.down_since = time.monotonic()
            self.connected = False
            log.warning("ticker down: %s %s", code, reason)

    def _on_ticks(self, t, ticks):
        if t is not self.ticker:
            return
        for tick in ticks:
            tok = tick["instrument_token"]
            seen = self.prices.get(tok, {}).get("ticks", 0)
            self.prices[tok] = {
                "instrument_token": tok,
                "symbol": INSTRUMENTS.get(tok, str(tok)),
                "last_price": tick["last_price"],
                "change": tick.get("change", 0.0),
                "ticks": seen + 1,
                "at": time.time(),
            }


feed = Feed()


def _token_from_env_file(path):
    """The token line of a dotenv file (KEY=VALUE, optional quotes), or None."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and key.strip().removeprefix("export ").strip() == TOKEN_KEY:
                    return value.strip().strip("'\"")
    except OSError:
        return None
    return None


def reload_token(why):
    """Adopt the token in the env file, if it is new: REST at once, the feed reconnects.
    Called from the SIGHUP handler and from the file watcher; safe to call twice."""
    fresh = _token_from_env_file(ENV_FILE) if ENV_FILE else None
    with _lock:
        changed = bool(fresh) and fresh != _state["token"]
        if changed:
            # Re-validate on the next probe.
            _state.update(token=fresh, checked_at=0.0, auth=None)
            # Under the lock, so two reloads racing (signal and watcher) apply in order.
            kite.set_access_token(fresh)
            feed.start(fresh)  # only queues the reconnect on the reactor thread
    # Which path brought the token is worth a line in the log (never the token itself).
    cause = "signal" if why == "SIGHUP" else why
    log.info("token reloaded (cause=%s, changed=%s)", cause, "yes" if changed else "no")
    if changed:
        log.info("new access token adopted (%s): feed reconnecting", why)


def _watch_env_file():
    """`watch` hand-over: warden replaces the file by rename, so watch its directory."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    target = os.path.abspath(ENV_FILE)

    class OnEnvFile(FileSystemEventHandler):
        def on_any_event(self, event):
            paths = (event.src_path, getattr(event, "dest_path", ""))
            if any(p and os.path.abspath(p) == target for p in paths):
                reload_token("watch")

    observer = Observer()
    observer.schedule(OnEnvFile(), os.path.dirname(target) or ".", recursive=False)
    observer.daemon = True
    observer.start()


def _reload_on_sighup():
    # The signal handler only sets an event: a handler runs in the middle of whatever the main
    # thread was doing (logging, say), so taking locks there could deadlock.
    while True:
        _sighup.wait()
        _sighup.clear()
        reload_token("SIGHUP")


_sighup = threading.Event()
threading.Thread(target=_reload_on_sighup, daemon=True).start()
# At import, in the main thread, before uvicorn serves a request (uvicorn handles only
# SIGINT/SIGTERM; without a handler SIGHUP would kill the process).
signal.signal(signal.SIGHUP, lambda _sig, _frame: _sighup.set())
if ENV_FILE and os.environ.get("KITE_ENV_WATCH") == "1":
    _watch_env_file()
# The file is the truth (the environment is from our start, and a token may have been written
# since); read it only after the watcher is up, so that no write falls in between.
_state["token"] = (_token_from_env_file(ENV_FILE) if ENV_FILE else None) or _state["token"]
kite.set_access_token(_state["token"])
feed.start(_state["token"])

app = FastAPI(title="example trading backend")


def _ask_kite():
    """'VALID' or 'EXPIRED' for the current token, or 'UNKNOWN' when Kite can't say."""
    try:
        kite.profile()
        return "VALID"
    except kex.TokenException:
        return "EXPIRED"
    except Exception:  # network trouble, 5xx, 429: not this process's fault
        return "UNKNOWN"


@app.get("/api/system/health")
def health():
    with _lock:
        token, auth = _state["token"], _state["auth"]
        if time.monotonic() - _state["checked_at"] >= RECHECK_SECONDS:
            auth = None
    if auth is None:
        auth = _ask_kite() if token else "EXPIRED"
        with _lock:
            if token == _state["token"]:  # a reload meanwhile makes this answer stale
                _state.update(checked_at=time.monotonic(), auth=auth)
    body = {
        "status": "error" if auth == "EXPIRED" else "ok",
        "auth": auth,
        "feed": "connected" if feed.connected else "disconnected",
    }
    # Only a rejected token is a 403 (warden: refresh it). A feed that is down for any other
    # reason is reported, not turned into an error that would get us restarted.
    return JSONResponse(body, status_code=403 if auth == "EXPIRED" else 200)


@app.get("/api/feed")
def get_feed():
    return {
        "feed": "connected" if feed.connected else "disconnected",
        "reconnects": feed.reconnects,
        "outages": feed.outages,
        "last_outage_seconds": feed.last_outage,
        "prices": sorted(feed.prices.values(), key=lambda p: p["symbol"]),
    }
