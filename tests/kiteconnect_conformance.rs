//! The official Python client (`pip install kiteconnect`) against the real
//! `warden sandbox kite` binary: `tests/python/conformance.py` logs in through the sandbox's
//! flow, calls `generate_session` and `profile()`, and expects `TokenException` after
//! `/_sandbox/expire`. Without python3 + kiteconnect the test prints a visible SKIP line and
//! passes, unless `WARDEN_TEST_REQUIRE_ALL=1`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/conformance.py");

fn kiteconnect_available() -> bool {
    Command::new("python3")
        .args(["-c", "import kiteconnect, requests"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn official_python_client_works_against_the_sandbox() {
    if !kiteconnect_available() {
        skip(
            "kiteconnect_conformance",
            "python kiteconnect not installed (pip install kiteconnect)",
        );
        return;
    }
    let sandbox = KiteSandbox::start(&[]);
    let script = Command::new("python3")
        .arg(SCRIPT)
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
    let output = output_within(script, Duration::from_secs(60), "conformance.py");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conformance.py failed ({}):\n{out}\n{err}",
        output.status
    );
    assert!(out.contains("conformance: all checks passed"), "{out}");
}
