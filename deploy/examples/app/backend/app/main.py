"""A stand-in for your FastAPI trading backend, to try warden's Docker stack end to end.

It does the two things warden expects from a backend that talks to Kite Connect:

- `GET /api/system/health` answers 200 `{"auth": "VALID"}` while the access token works, and
  403 `{"auth": "EXPIRED"}` once Kite rejects it: warden sees the 403 and refreshes the token
  instead of restarting this process.
- On SIGHUP it re-reads the token from the env file warden keeps (`KITE_ENV_FILE`), so
  `on_token_change = "signal"` hands it a new token without a restart. Without a SIGHUP
  handler, use `on_token_change = "restart"`: the token then arrives in the environment.
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

API_BASE = os.environ.get("KITE_API_BASE", "https://api.kite.trade").rstrip("/")
API_KEY = os.environ.get("KITE_API_KEY", "")
ENV_FILE = os.environ.get("KITE_ENV_FILE", "")
TOKEN_KEY = "KITE_ACCESS_TOKEN"
# Ask Kite at most this often; health probes in between get the cached answer.
RECHECK_SECONDS = 60.0

_lock = threading.Lock()
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


def _reload_token(_signum=None, _frame=None):
    global _token
    fresh = _token_from_env_file(ENV_FILE) if ENV_FILE else None
    with _lock:
        if fresh is not None:
            _token = fresh
        _last_check["at"] = 0.0  # validate the new token on the next probe


# Installed at import time, in the main thread, before uvicorn serves a request.
signal.signal(signal.SIGHUP, _reload_token)

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
