"""A tiny program for tests/provider_upstox.rs: it reads UPSTOX_ACCESS_TOKEN from ENV_FILE at
start and on SIGHUP, and answers GET /health with 200 while Upstox (API_BASE, the sandbox)
accepts that token for its profile, 403 otherwise (no token, or a dead one).

    python3 upstox_app.py PORT API_BASE ENV_FILE
"""

import json
import signal
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
API_BASE = sys.argv[2].rstrip("/")
ENV_FILE = sys.argv[3]
token = {"value": ""}


def load(*_):
    value = ""
    try:
        with open(ENV_FILE) as f:
            for line in f:
                if line.startswith("UPSTOX_ACCESS_TOKEN="):
                    value = line.split("=", 1)[1].strip()
    except FileNotFoundError:
        pass
    token["value"] = value


def accepted():
    if not token["value"]:
        return False
    req = urllib.request.Request(
        API_BASE + "/v2/user/profile",
        headers={
            "Authorization": "Bearer " + token["value"],
            "Api-Version": "2.0",
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status == 200 and json.load(r).get("status") == "success"
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = accepted()
        self.send_response(200 if ok else 403)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"auth": "VALID" if ok else "EXPIRED"}).encode())

    def log_message(self, *args):
        pass


load()
signal.signal(signal.SIGHUP, load)
ThreadingHTTPServer(("127.0.0.1", PORT), Health).serve_forever()
