"""The official Angel One client (`pip install smartapi-python`, plus logzero and
websocket-client, which it imports without declaring) against `warden sandbox angelone`.

usage: angelone_sdk.py BASE API_KEY CLIENT_CODE PIN TOTP_SECRET

Points the SDK at the sandbox with its own `root=` argument (no patching). Logs in with
generateSession (loginByPassword + getProfile), renews with generateToken, reads the profile,
and after /_sandbox/expire sees the SDK return the dead-token answer (HTTP 200, AG8002)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker_sdk_common import check, control, done, totp  # noqa: E402

# Importing the SDK asks api.ipify.org for the public IP; offline it falls back to a fixed
# address, which is all the sandbox needs.
from SmartApi import SmartConnect  # noqa: E402

base, api_key, client_code, pin, secret = sys.argv[1:6]

api = SmartConnect(api_key=api_key, root=base)
wrong = api.generateSession(client_code, pin, "000000")
check(wrong["status"] is False and wrong["errorcode"] == "AB1050", f"wrong TOTP refused: {wrong}")

session = api.generateSession(client_code, pin, totp(secret))
check(session["status"] is True, "generateSession logs in")
check(session["data"]["clientcode"] == client_code, "generateSession read the profile")
check(session["data"]["jwtToken"].startswith("Bearer "), "the SDK prefixes the JWT")
check(bool(api.getfeedToken()), "a feed token came with the login")

profile = api.getProfile(api.refresh_token)
check(profile["status"] is True and profile["data"]["clientcode"] == client_code, "getProfile")

renewed = api.generateToken(api.refresh_token)
check(renewed["status"] is True and renewed["data"]["jwtToken"], "generateToken with the refresh token")
check(api.getProfile(api.refresh_token)["status"] is True, "the renewed JWT works")

control(base, "/_sandbox/expire")
dead = api.getProfile(api.refresh_token)
check(dead.get("success") is False and dead.get("errorCode") == "AG8002",
      f"an expired JWT comes back as AG8002 in a 200 answer: {dead}")
done()
