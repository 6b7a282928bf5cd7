"""The official Fyers client (`pip install fyers-apiv3`) against `warden sandbox fyers`.

usage: fyers_sdk.py BASE CLIENT_ID SECRET_KEY REDIRECT_URL USER_ID PIN TOTP_SECRET

The SDK hard-codes its host: the script sets the class attribute `fyersModel.Config.API` to
the sandbox's `/api/v3` (read at call time). Builds the login URL with
`SessionModel.generate_authcode`, logs in there by hand, exchanges the auth code with
`generate_token` (appIdHash), reads `get_profile`, and after /_sandbox/expire sees the SDK
return the -8 "expired" answer."""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker_sdk_common import browser_login, check, control, done, query_param, totp  # noqa: E402

from fyers_apiv3 import fyersModel  # noqa: E402

base, client_id, secret_key, redirect, user_id, pin, secret = sys.argv[1:8]
fyersModel.Config.API = base + "/api/v3"

session = fyersModel.SessionModel(client_id=client_id, secret_key=secret_key, redirect_uri=redirect,
                                  response_type="code", grant_type="authorization_code",
                                  state="sdk-state")
url = session.generate_authcode()
check(url.startswith(base + "/api/v3/generate-authcode?"), "generate_authcode points at the sandbox")
location = browser_login(url, user_id, pin, totp(secret))
check(query_param(location, "state") == "sdk-state", "the redirect echoes state")
session.set_token(query_param(location, "auth_code"))
tokens = session.generate_token()
check(tokens.get("s") == "ok" and tokens.get("access_token") and tokens.get("refresh_token"),
      "generate_token exchanges the auth code (appIdHash accepted)")

logs = tempfile.mkdtemp()
fyers = fyersModel.FyersModel(client_id=client_id, token=tokens["access_token"], is_async=False,
                              log_path=logs)
profile = fyers.get_profile()
check(profile.get("s") == "ok" and profile["data"]["fy_id"] == user_id, "get_profile")

control(base, "/_sandbox/expire")
dead = fyers.get_profile()
check(dead.get("s") == "error" and dead.get("code") == -8, f"an expired token is code -8: {dead}")

again = fyersModel.SessionModel(client_id=client_id, secret_key="wrong", redirect_uri=redirect,
                                response_type="code", grant_type="authorization_code")
again.set_token("whatever")
bad = again.generate_token()
check(bad.get("code") == -371, f"a wrong secret key is -371: {bad}")
done()
