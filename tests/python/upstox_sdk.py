"""The official Upstox client (`pip install upstox-python-sdk`) against
`warden sandbox upstox`.

usage: upstox_sdk.py BASE CLIENT_ID CLIENT_SECRET REDIRECT_URL USER_ID PIN TOTP_SECRET NOTIFY_PORT

Points the SDK at the sandbox with `Configuration().host` (no patching; `sandbox=True` is not
used: it only lets order URLs through). Logs in through the authorization dialog and
`LoginApi.token`, reads the profile with `UserApi.get_profile`, makes an Access Token Request
with `init_token_request_for_indie_user`, approves it through the sandbox control and receives
the token on a notifier webhook served here (NOTIFY_PORT, the sandbox's --notifier-url), and
sees an expired token raise `ApiException` 401 UDAPI100050."""

import http.server
import json
import os
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker_sdk_common import browser_login, check, control, done, query_param, totp  # noqa: E402

import upstox_client  # noqa: E402
from upstox_client.rest import ApiException  # noqa: E402

base, client_id, client_secret, redirect, user_id, pin, secret, notify_port = sys.argv[1:9]
API_VERSION = "2.0"


def client(token=None):
    cfg = upstox_client.Configuration()
    cfg.host = base
    if token:
        cfg.access_token = token
    return upstox_client.ApiClient(cfg)


# The authorization-code login (manual mode).
q = urllib.parse.urlencode({"response_type": "code", "client_id": client_id,
                            "redirect_uri": redirect, "state": "sdk-state"})
location = browser_login(f"{base}/v2/login/authorization/dialog?{q}", user_id, pin, totp(secret))
check(query_param(location, "state") == "sdk-state", "the dialog echoes state")
code = query_param(location, "code")
got = upstox_client.LoginApi(client()).token(
    API_VERSION, code=code, client_id=client_id, client_secret=client_secret,
    redirect_uri=redirect, grant_type="authorization_code")
check(got.user_id == user_id and bool(got.access_token), "LoginApi.token exchanges the code")
check(got.order_types == ["MARKET", "LIMIT", "SL", "SL-M"], "the token answer passes the SDK's model checks")

profile = upstox_client.UserApi(client(got.access_token)).get_profile(API_VERSION)
check(profile.status == "success" and profile.data.user_id == user_id, "UserApi.get_profile")

# The Access Token Request (approve mode): the notifier webhook gets the token.
received = []


class Notifier(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", int(notify_port)), Notifier)
threading.Thread(target=server.serve_forever, daemon=True).start()
req = upstox_client.LoginApi(client()).init_token_request_for_indie_user(
    upstox_client.IndieUserTokenRequest(client_secret=client_secret), client_id)
check(req.status == "success" and int(req.data.authorization_expiry) > 0,
      "init_token_request_for_indie_user is pending")
approved = control(base, "/_sandbox/approve")
check(approved.get("notifier_status") == 200, f"approved and posted: {approved}")
server.shutdown()
check(len(received) == 1 and received[0]["message_type"] == "access_token"
      and received[0]["user_id"] == user_id, "the notifier got the access_token message")
pushed = received[0]["access_token"]
profile = upstox_client.UserApi(client(pushed)).get_profile(API_VERSION)
check(profile.data.user_id == user_id, "the pushed token works with the SDK")
try:
    upstox_client.UserApi(client(got.access_token)).get_profile(API_VERSION)
    check(False, "the approved token replaced the code-flow one")
except ApiException as e:
    check(e.status == 401, "one live token per user: the older one is refused")

control(base, "/_sandbox/expire")
try:
    upstox_client.UserApi(client(pushed)).get_profile(API_VERSION)
    check(False, "an expired token raises")
except ApiException as e:
    body = json.loads(e.body)
    check(e.status == 401 and body["errors"][0]["errorCode"] == "UDAPI100050",
          f"an expired token is ApiException 401 UDAPI100050 ({e.status})")
done()
