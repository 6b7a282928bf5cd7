#!/usr/bin/env python3
"""Conformance check: the official client's `KiteTicker` against `warden sandbox kite`.

Usage: ticker_conformance.py SCENARIO BASE_URL API_KEY API_SECRET USER_ID PASSWORD TOTP_SECRET

SCENARIO `modes`: refused for a foreign or made-up token; heartbeats before any subscription;
ticks in quote (the default), full and ltp modes for an equity, an index and a currency
instrument with sane fields; prices moving; unsubscribe; dropped on `/_sandbox/expire` and
refused (403) on the reconnect; a new session's ticker dropped on logout.
SCENARIO `relogin-ttl` (sandbox started with a short --token-ttl): a new login for the
api_key drops the old token's ticker, and the new token's ticker is dropped when its TTL ends.

Exit status: 0 all good, 1 a check failed, 77 `kiteconnect` is not importable.
"""

import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conformance import check, request_token, totp  # noqa: E402  (exits 77 without kiteconnect)

import requests  # noqa: E402
from kiteconnect import KiteConnect, KiteTicker  # noqa: E402
from twisted.internet import reactor  # noqa: E402

RELIANCE = 738561   # NSE equity (segment 1)
NIFTY = 256265      # NSE index (segment 9): its own packet lengths
USDINR = 412675     # currency future (segment 3): prices in 1e-7 rupee
WAIT = 10.0


class Watched:
    """A KiteTicker whose callbacks land in queues the checks can wait on."""

    def __init__(self, api_key, token, root, reconnect=True):
        self.events = queue.Queue()
        self.ticks = queue.Queue()
        self.heartbeats = 0
        t = KiteTicker(api_key, token, root=root, reconnect=reconnect)
        t.on_connect = lambda ws, resp: self.events.put(("connect", "connected"))
        t.on_close = lambda ws, code, reason: self.events.put(("close", f"{code} {reason}"))
        t.on_error = lambda ws, code, reason: self.events.put(("error", f"{code} {reason}"))
        t.on_ticks = lambda ws, ticks: [self.ticks.put(x) for x in ticks]
        t.on_message = self._message
        self.ticker = t

    def _message(self, ws, payload, is_binary):
        if is_binary and len(payload) == 1:
            self.heartbeats += 1

    def start(self):
        # One Twisted reactor per process: the first ticker starts it in a thread, later ones
        # are connected from inside it.
        if reactor.running:
            reactor.callFromThread(self.ticker.connect)
        else:
            self.ticker.connect(threaded=True)

    def do(self, method, *args):
        reactor.callFromThread(getattr(self.ticker, method), *args)

    def wait_event(self, kind, timeout=WAIT):
        """The detail of the first `kind` event within `timeout` (other events are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                got, detail = self.events.get(timeout=left)
            except queue.Empty:
                return None
            if got == kind:
                return detail

    def wait_tick(self, match, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                t = self.ticks.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if match(t):
                return t
        return None

    def drain(self):
        while not self.ticks.empty():
            self.ticks.get_nowait()


def login(base, args, code_at):
    api_key, api_secret, user_id, password, secret = args
    kite = KiteConnect(api_key=api_key, root=base)
    rt = request_token(base, api_key, user_id, password, totp(secret, code_at))
    kite.generate_session(rt, api_secret=api_secret)
    return kite


def refused(api_key, token, root, what):
    w = Watched(api_key, token, root, reconnect=False)
    w.start()
    detail = w.wait_event("error")
    check(detail is not None and "403" in detail, f"{what}: refused with 403 ({detail})")
    check(w.wait_event("connect", 0.5) is None, f"{what}: never connected")
    w.do("close")  # KiteTicker retries even with reconnect=False


def dropped_then_refused(w, what):
    check(w.wait_event("close") is not None, f"{what}: the open ticker is closed")
    # KiteTicker reconnects on its own; the reconnect meets the 403.
    detail = w.wait_event("error", timeout=15)
    check(detail is not None and "403" in detail, f"{what}: the reconnect is refused with 403")
    w.do("close")


def sane_quote(t, mode):
    o = t["ohlc"]
    return (t["mode"] == mode and t["tradable"] and t["last_price"] > 0
            and 0 < o["low"] <= t["last_price"] <= o["high"] and o["open"] > 0 and o["close"] > 0
            and t["volume_traded"] >= 0 and t["total_buy_quantity"] > 0)


def scenario_modes(base, root, args):
    api_key = args[0]
    now = time.time()
    kite = login(base, args, now)
    token = kite.access_token

    w = Watched(api_key, token, root)
    w.start()
    check(w.wait_event("connect") is not None, "KiteTicker connects with a live token")
    deadline = time.monotonic() + WAIT
    while w.heartbeats == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    check(w.heartbeats > 0, "1-byte heartbeats arrive before any subscription")

    w.do("subscribe", [RELIANCE, NIFTY, USDINR])
    t = w.wait_tick(lambda t: t["instrument_token"] == RELIANCE)
    check(t is not None and sane_quote(t, "quote"), f"equity quote tick (the default mode): {t}")
    t = w.wait_tick(lambda t: t["instrument_token"] == NIFTY)
    check(t is not None and t["mode"] == "quote" and not t["tradable"]
          and t["ohlc"]["high"] >= t["last_price"] >= t["ohlc"]["low"] > 0,
          f"index quote tick (28-byte packet, not tradable): {t}")
    t = w.wait_tick(lambda t: t["instrument_token"] == USDINR)
    check(t is not None and 50 < t["last_price"] < 150, f"currency price in rupees (1e-7 divisor): {t}")

    w.do("set_mode", w.ticker.MODE_FULL, [RELIANCE, NIFTY])
    t = w.wait_tick(lambda t: t["instrument_token"] == RELIANCE and t["mode"] == "full")
    check(t is not None and sane_quote(t, "full"), "equity full tick")
    d = t["depth"]
    check(len(d["buy"]) == 5 and len(d["sell"]) == 5, "full tick has 5 + 5 depth levels")
    check(d["buy"][0]["price"] < t["last_price"] < d["sell"][0]["price"]
          and all(x["quantity"] > 0 and x["orders"] > 0 for x in d["buy"] + d["sell"]),
          "bids below and offers above the last price")
    check(abs(t["exchange_timestamp"].timestamp() - time.time()) < 60
          and t["last_trade_time"] is not None, "full tick carries the exchange timestamp")
    t = w.wait_tick(lambda t: t["instrument_token"] == NIFTY and t["mode"] == "full")
    check(t is not None and t["exchange_timestamp"] is not None, "index full tick (32 bytes)")

    w.do("set_mode", w.ticker.MODE_LTP, [RELIANCE])
    t = w.wait_tick(lambda t: t["instrument_token"] == RELIANCE and t["mode"] == "ltp")
    check(t is not None and set(t) == {"tradable", "mode", "instrument_token", "last_price"},
          "ltp tick carries only the last price")

    prices = set()
    deadline = time.monotonic() + WAIT
    while len(prices) < 3 and time.monotonic() < deadline:
        t = w.wait_tick(lambda t: t["instrument_token"] == RELIANCE, timeout=1)
        if t:
            prices.add(t["last_price"])
    check(len(prices) >= 3, f"prices move: {sorted(prices)}")

    w.do("unsubscribe", [NIFTY, USDINR])
    # Ticks already on the wire may trail the unsubscribe: let them pass.
    w.wait_tick(lambda t: False, timeout=2.5)
    w.drain()
    seen = set()
    for _ in range(3):
        t = w.wait_tick(lambda t: True, timeout=3)
        if t:
            seen.add(t["instrument_token"])
    check(seen == {RELIANCE}, f"after unsubscribe only the subscribed instrument ticks: {seen}")

    refused("someone-else", token, root, "a live token under a foreign api_key")
    refused(api_key, "not-a-token", root, "a made-up token")

    requests.post(f"{base}/_sandbox/expire", timeout=5).raise_for_status()
    dropped_then_refused(w, "after /_sandbox/expire")
    refused(api_key, token, root, "an expired token")

    kite = login(base, args, now + 30)
    w = Watched(api_key, kite.access_token, root)
    w.start()
    check(w.wait_event("connect") is not None, "a new session's token connects")
    kite.invalidate_access_token()
    dropped_then_refused(w, "after logout")


def scenario_relogin_ttl(base, root, args):
    api_key = args[0]
    now = time.time()
    first = login(base, args, now)
    w = Watched(api_key, first.access_token, root)
    w.start()
    check(w.wait_event("connect") is not None, "the first token's ticker connects")
    w.do("subscribe", [RELIANCE])
    check(w.wait_tick(lambda t: True) is not None, "and ticks")

    second = login(base, args, now + 30)
    dropped_then_refused(w, "after a new login for the api_key")

    w = Watched(api_key, second.access_token, root)
    w.start()
    check(w.wait_event("connect") is not None, "the new token's ticker connects")
    check(w.wait_event("close", timeout=30) is not None, "and is closed when the token's TTL ends")
    w.do("close")


def main():
    scenario, base = sys.argv[1], sys.argv[2].rstrip("/")
    args = sys.argv[3:8]
    root = "ws" + base[len("http"):]
    {"modes": scenario_modes, "relogin-ttl": scenario_relogin_ttl}[scenario](base, root, args)
    print(f"ticker conformance ({scenario}): all checks passed")
    sys.stdout.flush()
    os._exit(0)  # the reactor thread is a daemon, but Twisted may linger on shutdown


if __name__ == "__main__":
    try:
        main()
    except SystemExit as e:
        sys.stdout.flush()
        os._exit(e.code if isinstance(e.code, int) else 1)
