"""Helpers shared by the broker SDK conformance scripts (standard library only, so every
SDK's virtualenv can run them): TOTP codes, the sandbox's browser login walked by hand, the
sandbox controls, and check/done reporting."""

import base64
import hashlib
import hmac
import html.parser
import http.client
import json
import struct
import sys
import time
import urllib.parse


def totp(secret_b32, steps=0):
    """RFC 6238 (SHA-1, 30 s, 6 digits) code `steps` steps from now."""
    s = secret_b32.upper().replace(" ", "")
    key = base64.b32decode(s + "=" * (-len(s) % 8))
    counter = int(time.time()) // 30 + steps
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def done():
    print("conformance: all checks passed", flush=True)


def _request(method, url, body=None, headers=None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    path = u.path + ("?" + u.query if u.query else "")
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read().decode("utf-8", "replace")
    location = r.getheader("Location")
    conn.close()
    return r.status, data, location


def control(base, path):
    """POST a `/_sandbox/…` control; returns its JSON answer."""
    status, data, _ = _request("POST", base + path)
    if status != 200:
        raise RuntimeError(f"{path}: {status} {data}")
    return json.loads(data)


class _Form(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.action = None
        self.hidden = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action")
        if tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a.get("value", "")


def browser_login(page_url, user_id, pin, code):
    """What a person does at the broker's login page: open it, fill user id, PIN and TOTP,
    submit. Returns the redirect the broker answers with (not followed: it points at an app
    that is not running)."""
    status, page, _ = _request("GET", page_url)
    if status != 200:
        raise RuntimeError(f"login page {page_url}: {status} {page}")
    form = _Form()
    form.feed(page)
    fields = dict(form.hidden, user_id=user_id, pin=pin, totp=code)
    u = urllib.parse.urlsplit(page_url)
    action = f"{u.scheme}://{u.netloc}{form.action}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, body, location = _request("POST", action, urllib.parse.urlencode(fields), headers)
    if status != 302:
        raise RuntimeError(f"login form: {status} {body}")
    return location


def query_param(url, name):
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get(name, [None])[0]
