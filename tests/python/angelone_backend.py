"""A tiny Angel One backend for tests/provider_angelone.rs, standard library only.

It reads the JWT and the feed token from a dotenv file at start and on SIGHUP (what
`on_token_change = "signal"` sends), and answers GET /api/system/health by asking the broker
(getProfile with the JWT, the headers the official SDK sends) on every call:
  200 {"status":"ok","auth":"VALID","feed_token":true|false}  Angel One accepts the JWT;
  403 {"status":"error","auth":"EXPIRED"}                       no JWT, or AG8001/AG8002/AG8003;
  503 {"status":"error","auth":"UNKNOWN"}                       anything else (broker trouble).
Angel One answers a dead token with HTTP 200, so the body's error code decides.

usage: angelone_backend.py PORT ENV_FILE API_BASE API_KEY [JWT_KEY] [FEED_KEY]
"""

import json
import signal
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROFILE = "/rest/secure/angelbroking/user/v1/getProfile"
DEAD = {"AG8001", "AG8002", "AG8003"}

port, env_file, api_base, api_key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
jwt_key = sys.argv[5] if len(sys.argv) > 5 else "ANGELONE_JWT"
feed_key = sys.argv[6] if len(sys.argv) > 6 else "ANGELONE_FEED_TOKEN"
loaded = {}


def read_env():
    values = {}
    try:
        with open(env_file, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    values[k.strip()] = v.strip().strip('"')
    except FileNotFoundError:
        pass
    return values


def reload(*_):
    values = read_env()
    loaded["jwt"] = values.get(jwt_key, "")
    loaded["feed"] = values.get(feed_key, "")


def verdict():
    if not loaded.get("jwt"):
        return 403, {"status": "error", "auth": "EXPIRED"}
    req = urllib.request.Request(
        api_base.rstrip("/") + PROFILE,
        headers={
            "Authorization": "Bearer " + loaded["jwt"],
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-UserType": "USER",
            "X-SourceID": "WEB",
            "X-ClientLocalIP": "127.0.0.1",
            "X-ClientPublicIP": "127.0.0.1",
            "X-MACAddress": "00:00:00:00:00:00",
            "X-PrivateKey": api_key,
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=1.5) as r:
            body = json.loads(r.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError):
        return 503, {"status": "error", "auth": "UNKNOWN"}
    if body.get("status") is True or body.get("success") is True:
        return 200, {"status": "ok", "auth": "VALID", "feed_token": bool(loaded.get("feed"))}
    code = body.get("errorcode") or body.get("errorCode") or ""
    if code in DEAD:
        return 403, {"status": "error", "auth": "EXPIRED"}
    return 503, {"status": "error", "auth": "UNKNOWN"}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/api/system/health":
            self.send_error(404)
            return
        status, body = verdict()
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_):
        pass


reload()
signal.signal(signal.SIGHUP, reload)
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
