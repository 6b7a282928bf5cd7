//! The official Python client (`pip install kiteconnect`) against the real
//! `warden sandbox kite` binary: `tests/python/conformance.py` logs in through the sandbox's
//! flow, calls `generate_session` and `profile()`, and expects `TokenException` after
//! `/_sandbox/expire`. Without python3 + kiteconnect the test prints a visible SKIP line and
//! passes, unless `WARDEN_TEST_REQUIRE_ALL=1`.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/conformance.py");

/// Kills the child on drop so a failed assertion never leaves a server running.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kiteconnect_available() -> bool {
    Command::new("python3")
        .args(["-c", "import kiteconnect, requests"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Written past libtest's capture so it shows in a normal `cargo test` run.
fn visible(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Start the sandbox binary; return it with the `key: value` lines it printed.
fn start_sandbox() -> (Child, HashMap<String, String>) {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["sandbox", "kite", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while printed.len() < 6 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("sandbox start-up lines within 10 s");
        if let Some(url) = line.strip_prefix("listening on ") {
            printed.insert("url".to_string(), url.to_string());
        } else if let Some((k, v)) = line.split_once(": ") {
            printed.insert(k.to_string(), v.to_string());
        }
    }
    (child, printed)
}

#[test]
fn official_python_client_works_against_the_sandbox() {
    if !kiteconnect_available() {
        let strict = std::env::var("WARDEN_TEST_REQUIRE_ALL").as_deref() == Ok("1");
        assert!(
            !strict,
            "kiteconnect_conformance: python3 with kiteconnect is required (WARDEN_TEST_REQUIRE_ALL=1)"
        );
        visible("SKIP kiteconnect_conformance: python kiteconnect not installed");
        return;
    }
    let (_sandbox, p) = start_sandbox();
    let arg = |k: &str| {
        p.get(k)
            .unwrap_or_else(|| panic!("sandbox did not print {k}"))
            .clone()
    };
    let script = Command::new("python3")
        .arg(SCRIPT)
        .args([
            arg("url"),
            arg("api_key"),
            arg("api_secret"),
            arg("user_id"),
            arg("password"),
            arg("totp_secret"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let pid = nix::unistd::Pid::from_raw(script.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(script.wait_with_output()));
    let output = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("conformance.py did not finish in 60 s");
        }
    };
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conformance.py failed ({}):\n{out}\n{err}",
        output.status
    );
    assert!(out.contains("conformance: all checks passed"), "{out}");
}
