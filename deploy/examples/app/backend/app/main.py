"""A stand-in for your FastAPI trading backend, to try warden's Docker stack end to end.

It does the two things warden expects from a backend that talks to Kite Connect:

- `GET /api/system/health` answers 200 `{"auth": "VALID"}` while the access token works, and
  403 `{"auth": "EXPIRED"}` once Kite rejects it: warden sees the 403 and refreshes the token
  instead of restarting this process.
- It picks up a new token from the env file warden keeps (`KITE_ENV_FILE`) without a restart,
  two ways, through one function (`reload_token`):
  - on SIGHUP, for `on_token_change = "signal"` (warden sends the signal after writing);
  - by watching the file with `watchdog`, for `on_token_change = "watch"` (warden sends
    nothing). The watch is on the file's directory: warden replaces the file by rename, which
    a watch on the file itself would lose track of.
  Either way warden then probes the health check and restarts the process only if no probe
  sent after the hand-over is answered 2xx within `verify_timeout`. Without either, use
  `on_token_change = "restart"`: the token then arrives in the environment.
"""

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

API_BASE = os.environ.get("KITE_API_BASE", "https://api.kite.trade").rstrip("/")
API_KEY = os.environ.get("KITE_API_KEY", "")
ENV_FILE = os.environ.get("KITE_ENV_FILE", "")
TOKEN_KEY = "KITE_ACCESS_TOKEN"
# Ask Kite at most this often; health probes in between get the cached answer.
RECHECK_SECONDS = 60.0

# Re-entrant: a second SIGHUP can interrupt the handler of the first in the main thread.
_lock = threading.RLock()
_token = os.environ.get(TOKEN_KEY, "")
_last_check = {"at": 0.0, "answer": None}


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


def reload_token(cause):
    """Re-read the token from ENV_FILE; `cause` ("signal" or "watch") is only logged."""
    global _token
    fresh = _token_from_env_file(ENV_FILE) if ENV_FILE else None
    with _lock:
        changed = fresh is not None and fresh != _token
        if fresh is not None:
            _token = fresh
        _last_check["at"] = 0.0  # validate the token on the next probe
    # Never the token itself: only whether it changed.
    print(f"token reloaded (cause={cause}, changed={'yes' if changed else 'no'})", flush=True)


class _EnvFileChanged(FileSystemEventHandler):
    """Calls reload_token when ENV_FILE is written, created or renamed into place."""

    def __init__(self, path):
        self._path = os.path.abspath(path)

    def on_any_event(self, event):
        if event.event_type == "moved":
            target = event.dest_path  # a rename-over: the new file is in place
        elif event.event_type in ("created", "modified"):
            target = event.src_path
        else:
            return
        if os.path.abspath(target) == self._path:
            reload_token("watch")


def _watch_env_file(path):
    observer = Observer()
    observer.schedule(_EnvFileChanged(path), os.path.dirname(os.path.abspath(path)))
    observer.daemon = True
    observer.start()
    return observer


# Installed at import time, in the main thread, before uvicorn serves a request.
signal.signal(signal.SIGHUP, lambda _signum, _frame: reload_token("signal"))
_watcher = _watch_env_file(ENV_FILE) if ENV_FILE else None

app = FastAPI(title="demo trading backend")


def _ask_kite(token):
    """(status, auth) for the token: profile 200 → VALID, 403 → EXPIRED."""
    if not token:
        return 403, "EXPIRED"
    req = urllib.request.Request(
        f"{API_BASE}/user/profile",
        headers={"X-Kite-Version": "3", "Authorization": f"token {API_KEY}:{token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            json.load(resp)
            return 200, "VALID"
    except urllib.error.HTTPError as e:
        if e.code == 403:
            return 403, "EXPIRED"
        return 200, "UNKNOWN"  # broker trouble is not this process's fault: don't get restarted
    except (urllib.error.URLError, TimeoutError, ValueError):
        return 200, "UNKNOWN"


@app.get("/api/system/health")
def health():
    with _lock:
        token = _token
        fresh = time.monotonic() - _last_check["at"] < RECHECK_SECONDS
        answer = _last_check["answer"] if fresh else None
    if answer is None:
        answer = _ask_kite(token)
        with _lock:
            if token == _token:
                _last_check.update(at=time.monotonic(), answer=answer)
    status, auth = answer
    body = {"status": "ok" if status == 200 else "error", "auth": auth}
    return JSONResponse(body, status_code=status)
