"""A tiny program that trades with Fyers, for tests/provider_fyers.rs.

usage: fyers_health.py PORT ENV_FILE API_BASE CLIENT_ID

Serves GET /health: 200 while the FYERS_ACCESS_TOKEN in ENV_FILE is accepted by Fyers'
profile endpoint (`Authorization: CLIENT_ID:TOKEN`, the raw token from the env file with the
prefix the SDK adds), 401 otherwise. It reads the env file at every probe, as a program run
with on_token_change = "watch" does. Standard library only."""

import json
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

port, env_file, api_base, client_id = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


def token():
    try:
        with open(env_file, encoding="utf-8") as f:
            for line in f:
                if line.startswith("FYERS_ACCESS_TOKEN="):
                    return line.split("=", 1)[1].strip()
    except FileNotFoundError:
        pass
    return ""


def fyers_accepts(tok):
    if not tok:
        return False
    req = urllib.request.Request(api_base + "/profile",
                                 headers={"Authorization": f"{client_id}:{tok}", "version": "3"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r).get("s") == "ok"
    except urllib.error.HTTPError:
        return False


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/health" and fyers_accepts(token())
        body = json.dumps({"auth": "VALID" if ok else "EXPIRED"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(port)), Health).serve_forever()
