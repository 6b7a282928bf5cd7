"""The official Angel One client (smartapi-python) using what warden wrote into the env file.

usage: angelone_env_sdk.py BASE API_KEY CLIENT_CODE ENV_FILE

Reads ANGELONE_JWT and ANGELONE_FEED_TOKEN the way a backend would, hands them to SmartConnect
(which adds "Bearer " itself, so the file must hold the raw JWT) and reads the profile."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker_sdk_common import check, done  # noqa: E402

# Importing the SDK asks api.ipify.org for the public IP; offline it falls back to a fixed
# address, which is all the sandbox needs.
from SmartApi import SmartConnect  # noqa: E402

base, api_key, client_code, env_file = sys.argv[1:5]

values = {}
with open(env_file, encoding="utf-8") as f:
    for line in f:
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.rstrip("\n").split("=", 1)
            values[k.strip()] = v
jwt = values.get("ANGELONE_JWT", "")
feed = values.get("ANGELONE_FEED_TOKEN", "")
check(jwt.count(".") == 2 and not jwt.lower().startswith("bearer"), "the env file holds a raw JWT")
check(bool(feed), "the env file holds a feed token")

api = SmartConnect(api_key=api_key, root=base)
api.setAccessToken(jwt)
api.setFeedToken(feed)
profile = api.getProfile("")
check(profile.get("status") is True, f"getProfile accepts warden's JWT: {profile}")
check(profile["data"]["clientcode"] == client_code, "the profile is the configured client's")
check(api.getfeedToken() == feed, "the SDK carries the feed token for its WebSocket")
done()
