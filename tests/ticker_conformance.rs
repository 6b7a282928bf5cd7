//! The official Python client's `KiteTicker` against the real `warden sandbox kite` binary's
//! ticker WebSocket (SPEC §8): `tests/python/ticker_conformance.py` connects, subscribes,
//! checks ticks in each mode, and is refused with 403 after the token dies (expiry, logout,
//! a new login, the TTL). Without python3 + kiteconnect the test prints a visible SKIP line
//! and passes, unless `WARDEN_TEST_REQUIRE_ALL=1`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/ticker_conformance.py"
);

fn kiteticker_available() -> bool {
    Command::new("python3")
        .args(["-c", "import kiteconnect, requests, twisted, autobahn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Run one scenario of the script against `sandbox`; panics with its output on failure.
fn run_scenario(sandbox: &KiteSandbox, scenario: &str) {
    let script = Command::new("python3")
        .arg(SCRIPT)
        .arg(scenario)
        .arg(sandbox.url())
        .args(
            [
                "api_key",
                "api_secret",
                "user_id",
                "password",
                "totp_secret",
            ]
            .map(|k| sandbox.printed(k)),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let output = output_within(
        script,
        Duration::from_secs(120),
        &format!("ticker_conformance.py {scenario}"),
    );
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ticker_conformance.py {scenario} failed ({}):\n{out}\n{err}",
        output.status
    );
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn kiteticker_streams_each_mode_and_is_refused_after_expiry_and_logout() {
    if !kiteticker_available() {
        skip(
            "ticker_conformance",
            "python kiteconnect (with twisted/autobahn) not installed (pip install kiteconnect)",
        );
        return;
    }
    let sandbox = KiteSandbox::with().flag("--tick-interval", "200ms").start();
    run_scenario(&sandbox, "modes");
}

#[test]
fn kiteticker_is_dropped_by_a_new_login_and_by_the_token_ttl() {
    if !kiteticker_available() {
        skip(
            "ticker_conformance",
            "python kiteconnect (with twisted/autobahn) not installed (pip install kiteconnect)",
        );
        return;
    }
    let sandbox = KiteSandbox::with()
        .token_ttl("10s")
        .flag("--tick-interval", "200ms")
        .start();
    run_scenario(&sandbox, "relogin-ttl");
}
