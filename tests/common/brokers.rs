//! `warden sandbox angelone|dhan|upstox|fyers` as real processes (any broker sandbox but
//! Kite, whose richer harness is `sandbox.rs`), TOTP codes for their demo users, and the
//! official SDKs' virtualenvs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::sandbox::{launch_sandbox, wait_child_exit};
use super::web::{request, Resp};

/// `warden sandbox BROKER --listen 127.0.0.1:0 …` on a free port; killed on drop.
pub struct BrokerSandbox {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// What it printed at start, one entry per line.
    pub startup: Vec<String>,
}

impl BrokerSandbox {
    /// Start it and wait (at most 10 s) for the start-up block, which ends with a line in
    /// parentheses.
    pub fn start(broker: &str, extra: &[&str]) -> BrokerSandbox {
        let (child, addr, startup) = launch_sandbox(broker, extra);
        BrokerSandbox {
            child,
            addr,
            startup,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The value of a `key: value` start-up line.
    pub fn printed(&self, key: &str) -> &str {
        let prefix = format!("{key}: ");
        self.startup
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("the sandbox did not print {key}: {:?}", self.startup))
    }

    /// Any request, headers kept.
    pub fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        request(&self.addr, method, path, headers, body)
    }

    /// A request whose answer must be JSON; returns (status, body).
    pub fn json(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        let r = self.call(method, path, headers, body);
        let v = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", r.body));
        (r.status, v)
    }

    pub fn stats(&self) -> Value {
        self.json("GET", "/_sandbox/stats", &[], "").1
    }

    /// `POST /_sandbox/expire?what=…` (`access`, `refresh`, `all`).
    pub fn expire(&self, what: &str) {
        let (code, body) = self.json("POST", &format!("/_sandbox/expire?what={what}"), &[], "");
        assert_eq!(code, 200, "{body}");
    }

    /// Queue a fault rule (`POST /_sandbox/fault`).
    pub fn fault(&self, json: &str) {
        let ct = [("Content-Type", "application/json")];
        let (code, body) = self.json("POST", "/_sandbox/fault", &ct, json);
        assert_eq!(code, 200, "{body}");
    }
}

impl BrokerSandbox {
    /// SIGTERM, then its exit status (panics after 10 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_child_exit(&mut self.child, Duration::from_secs(10))
            .expect("the sandbox ignored SIGTERM for 10 s")
    }
}

impl Drop for BrokerSandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TOTP code `steps` steps of 30 s from now (0 = current; the sandboxes take -1..=1).
pub fn totp_code(secret: &str, steps: i64) -> String {
    let t = warden::token::login::Totp::from_base32(secret).expect("base32 secret");
    let now = warden::token::login::unix_now() as i64;
    t.code_at((now + steps * 30) as u64)
}

/// Where `.ci/run` puts the official broker SDKs' virtualenvs (one each: their pins clash).
pub fn sdk_venv_root() -> PathBuf {
    match std::env::var_os("WARDEN_SDK_VENVS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/warden-sdk-venvs"),
    }
}

/// The python of the `name` venv, if it can import `module`.
pub fn sdk_python(name: &str, module: &str) -> Result<PathBuf, String> {
    let py = sdk_venv_root().join(name).join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(py)
    } else {
        Err(format!(
            "{} cannot import {module} (.ci/run installs it)",
            py.display()
        ))
    }
}

/// Run a `tests/python/` script with `py` and `args`; panics unless it exits 0 within 90 s
/// and prints `conformance: all checks passed`. Returns its stdout.
pub fn run_sdk_script(py: &PathBuf, script: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = super::python_script(script);
    let child = Command::new(py)
        .arg(&path)
        .args(args)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let output = output_within(child, Duration::from_secs(90), script);
    let out = String::from_utf8_lossy(&output.stdout).to_string();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && out.contains("conformance: all checks passed"),
        "{script} failed ({}):\n{out}\n{err}",
        output.status
    );
    out
}

/// The spawned `child`'s exit status and piped output; killed, and a panic naming `what`, if
/// it has not finished within `timeout`.
pub fn output_within(child: Child, timeout: Duration, what: &str) -> std::process::Output {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(timeout) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("{what} did not finish in {timeout:?}");
        }
    }
}

/// The claims of a JWT (its payload, not verified: the way warden reads `exp`).
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut bytes = Vec::new();
    for c in payload.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {payload}"),
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
        }
    }
    serde_json::from_slice(&bytes).expect("JWT payload is JSON")
}

/// The value of query parameter `name` in a redirect `location`.
pub fn query_param(location: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(location).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
