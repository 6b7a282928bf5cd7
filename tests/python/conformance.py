#!/usr/bin/env python3
"""Conformance check: the official `kiteconnect` Python client against `warden sandbox kite`.

Usage: conformance.py BASE_URL API_KEY API_SECRET USER_ID PASSWORD TOTP_SECRET

The request token comes from the sandbox's real login flow (password, TOTP, the
/connect/login redirects followed by hand, the final redirect parsed, never fetched).
Exit status: 0 all good, 1 a check failed, 77 `kiteconnect` is not importable.
"""

import base64
import hashlib
import hmac
import struct
import sys
import time
import urllib.parse

try:
    import requests
    from kiteconnect import KiteConnect
    from kiteconnect import exceptions as kex
except ImportError as e:  # the Rust test turns this into a visible SKIP line
    print(f"cannot import kiteconnect/requests: {e}")
    sys.exit(77)


def totp(secret, at):
    """RFC 6238: HMAC-SHA-1, 30 s steps, 6 digits."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    off = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def request_token(base, api_key, user_id, password, code):
    s = requests.Session()
    r = s.post(f"{base}/api/login", data={"user_id": user_id, "password": password}, timeout=5)
    check(r.status_code == 200, f"POST /api/login -> {r.status_code}")
    data = r.json()["data"]
    r = s.post(f"{base}/api/twofa", timeout=5, data={
        "user_id": user_id,
        "request_id": data["request_id"],
        "twofa_value": code,
        "twofa_type": data["twofa_type"],
        "skip_session": "true",
    })
    check(r.status_code == 200, f"POST /api/twofa -> {r.status_code}")
    url = f"{base}/connect/login?v=3&api_key={api_key}"
    for _ in range(10):
        r = s.get(url, allow_redirects=False, timeout=5)
        check(r.status_code in (301, 302, 303, 307), f"redirect from {url.split('?')[0]}")
        url = urllib.parse.urljoin(url, r.headers["Location"])
        q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
        if "request_token" in q:
            check(q.get("status") == ["success"], "redirect says status=success")
            return q["request_token"][0]
    check(False, "request_token within 10 redirects")


def main():
    base, api_key, api_secret, user_id, password, secret = sys.argv[1:7]
    now = time.time()

    kite = KiteConnect(api_key=api_key, root=base)
    expired_hook_calls = []
    kite.set_session_expiry_hook(lambda: expired_hook_calls.append(1))

    rt = request_token(base, api_key, user_id, password, totp(secret, now))
    session = kite.generate_session(rt, api_secret=api_secret)
    check(session["user_id"] == user_id, "generate_session returns the user")
    check(bool(session["access_token"]), "generate_session returns an access token")
    check(hasattr(session["login_time"], "year"), "login_time parses as a datetime")
    check(kite.access_token == session["access_token"], "the client adopted the token")

    profile = kite.profile()
    check(profile["user_id"] == user_id, "profile() answers for the user")

    try:
        kite.generate_session(rt, api_secret=api_secret)
        check(False, "a reused request token is refused")
    except kex.TokenException:
        print("ok: a reused request token raises TokenException")

    hooks_before = len(expired_hook_calls)
    requests.post(f"{base}/_sandbox/expire", timeout=5).raise_for_status()
    try:
        kite.profile()
        check(False, "profile() after /_sandbox/expire raises")
    except kex.TokenException:
        print("ok: profile() after /_sandbox/expire raises TokenException")
    check(len(expired_hook_calls) == hooks_before + 1, "the session expiry hook ran on the 403")

    # A second login in the same 30 s window uses the next step's code (the sandbox refuses
    # replays and accepts +-1 step).
    rt = request_token(base, api_key, user_id, password, totp(secret, now + 30))
    kite.generate_session(rt, api_secret=api_secret)
    check(kite.profile()["user_id"] == user_id, "a new session works after the expiry")
    check(kite.invalidate_access_token() is True, "invalidate_access_token() returns True")
    try:
        kite.profile()
        check(False, "profile() after logout raises")
    except kex.TokenException:
        print("ok: profile() after invalidate_access_token() raises TokenException")

    print("conformance: all checks passed")


if __name__ == "__main__":
    main()
