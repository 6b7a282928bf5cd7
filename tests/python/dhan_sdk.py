"""The official Dhan client (`pip install dhanhq`) against `warden sandbox dhan`.

usage: dhan_sdk.py BASE CLIENT_ID PIN TOTP_SECRET APP_ID APP_SECRET

The SDK hard-codes its hosts as class attributes: the script sets `DhanLogin.AUTH_BASE_URL`,
`DhanLogin.API_BASE_URL` and the context's `dhan_http.base_url` (the override the maintainer
endorses) to the sandbox, and stubs `webbrowser.open`. Mints with generate_token (PIN + TOTP),
hits the 2-minute rule, runs the consent flow, reads the profile through DhanLogin and through
DhanHTTP, and sees the expired token fail both ways."""

import os
import sys
import webbrowser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker_sdk_common import browser_login, check, control, done, query_param, totp  # noqa: E402

from dhanhq import DhanContext, DhanLogin  # noqa: E402

base, client_id, pin, secret, app_id, app_secret = sys.argv[1:7]
DhanLogin.AUTH_BASE_URL = base
DhanLogin.API_BASE_URL = base + "/v2"
opened = []
webbrowser.open = lambda url, *a, **k: opened.append(url) or True

login = DhanLogin(client_id)
minted = login.generate_token(pin, totp(secret, 0))
token = minted.get("accessToken")
check(bool(token) and minted["dhanClientId"] == client_id, "generate_token with PIN + TOTP")
again = login.generate_token(pin, totp(secret, 0))
check(again == {"status": "error", "message": "Token can be generated once every 2 minutes."},
      f"a second mint within 2 minutes is refused (HTTP 200, no exception): {again}")

profile = login.user_profile(token)
check(profile["dhanClientId"] == client_id and "tokenValidity" in profile, "user_profile")

# The consent flow (manual mode): generate, the browser login, consume.
consent = login.generate_login_session(app_id, app_secret)
check(bool(consent) and opened and consent in opened[0], "generate_login_session opened the login page")
location = browser_login(opened[0], client_id, pin, totp(secret, 1))
token_id = query_param(location, "tokenId")
check(bool(token_id), f"the login redirected with tokenId: {location}")
consumed = login.consume_token_id(token_id, app_id, app_secret)
new_token = consumed["accessToken"]
check(bool(new_token) and consumed["dhanClientId"] == client_id, "consume_token_id")
try:
    login.user_profile(token)
    check(False, "the older token died when the consent minted a new one")
except Exception as e:  # the SDK raises a bare Exception on non-200
    check("DH-901" in str(e), f"one live token per client: the old one is DH-901 ({e})")

ctx = DhanContext(client_id, new_token)
ctx.dhan_http.base_url = base + "/v2"
ok = ctx.dhan_http.get("/profile")
check(ok["status"] == "success" and ok["data"]["dhanClientId"] == client_id, "DhanHTTP GET /profile")

control(base, "/_sandbox/expire")
dead = ctx.dhan_http.get("/profile")
check(dead["status"] == "failure" and dead["remarks"]["error_code"] == "DH-901",
      f"an expired token is a DH-901 failure: {dead}")
try:
    login.user_profile(new_token)
    check(False, "user_profile raises for an expired token")
except Exception as e:
    check("DH-901" in str(e), f"user_profile raises with DH-901 ({e})")
done()
