//! Shared harness for integration tests: runs the real `warden` binary in a temp directory and
//! talks to it over real HTTP. Every wait is bounded and polls a condition.
//!
//! - here: [`Warden`] (a running `warden run`), [`wait_until`], [`skip`], [`free_port`];
//! - [`web`]: raw HTTP requests ([`request`] keeps the headers, [`http`] and [`get_json`] don't);
//! - [`sandbox`]: `warden sandbox kite` as a process ([`KiteSandbox`], its flags builder, the
//!   warden config that points at it) and the by-hand [`manual_login`];
//! - [`brokers`]: the other brokers' sandboxes as processes ([`BrokerSandbox`]), TOTP codes,
//!   the official SDKs' virtualenvs;
//! - [`procs`]: the process table from `/proc`;
//! - [`pyapp`]: the example FastAPI backend under real uvicorn as a warden program, and
//!   `tests/python/` scripts;
//! - [`webdriver`]: headless Chromium over WebDriver ([`Browser`]) to read a page's DOM.
#![allow(dead_code)]

mod brokers;
mod procs;
mod pyapp;
mod sandbox;
mod web;
mod webdriver;

// Each test file uses a part of the harness: what it leaves unused is not a mistake.
#[allow(unused_imports)]
pub use brokers::*;
#[allow(unused_imports)]
pub use procs::*;
#[allow(unused_imports)]
pub use pyapp::*;
#[allow(unused_imports)]
pub use sandbox::*;
#[allow(unused_imports)]
pub use web::*;
#[allow(unused_imports)]
pub use webdriver::*;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_warden");

/// Poll `cond` until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `warden ARGS… -c CONFIG` with WARDEN_API_TOKEN and WARDEN_CONFIG removed from its
/// environment (the CLI reads them), run to completion.
pub fn warden_cli(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(config)
        .env_remove("WARDEN_API_TOKEN")
        .env_remove("WARDEN_CONFIG")
        .output()
        .unwrap()
}

/// A visible skip, or a failure under `WARDEN_TEST_REQUIRE_ALL=1` (CI installs everything).
pub fn skip(test: &str, why: &str) {
    if std::env::var("WARDEN_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{test}: {why} (required because WARDEN_TEST_REQUIRE_ALL=1)");
    }
    println!("SKIP {test}: {why}");
    // Straight to the stream, past libtest's capture, so a normal `cargo test` shows it.
    let _ = writeln!(std::io::stderr().lock(), "SKIP {test}: {why}");
}

/// A port that was free a moment ago, for configs that must name one before the server starts
/// (the sandbox's redirect URL, a program's health URL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Warden {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub addr: String,
    logs: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

impl Warden {
    /// Write `config` as `supervisor.toml` in a fresh temp dir and start warden on it. Unless the
    /// config has an `[http]` section, warden listens on an ephemeral loopback port.
    pub fn start(config: &str) -> Warden {
        Self::start_with(config, |_| {}, Vec::<String>::new())
    }

    /// Like `start`, with a hook to create files in the dir first and a command prefix
    /// (e.g. `unshare --pid --fork`).
    pub fn start_with(config: &str, prepare: impl FnOnce(&Path), prefix: Vec<String>) -> Warden {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let mut text = config.to_string();
        if !text.contains("[http]") {
            text = format!("[http]\nlisten = \"127.0.0.1:0\"\n\n{text}");
        }
        let config = dir.path().join("supervisor.toml");
        std::fs::write(&config, text).unwrap();
        let mut cmd = if prefix.is_empty() {
            Command::new(BIN)
        } else {
            let mut c = Command::new(&prefix[0]);
            c.args(&prefix[1..]).arg(BIN);
            c
        };
        cmd.arg("run")
            .arg("-c")
            .arg(&config)
            .current_dir(dir.path());
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        cmd.env("RUST_LOG", "info");
        // warden writes its bound address here (README "HTTP"): no log scraping.
        let addr_file = dir.path().join("http.addr");
        cmd.env("WARDEN_HTTP_ADDR_FILE", &addr_file);
        let mut child = cmd.spawn().expect("spawn warden");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if std::env::var_os("WARDEN_TEST_ECHO").is_some() {
                    eprint!("{line}");
                }
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut w = Warden {
            child,
            dir,
            config,
            addr: String::new(),
            logs,
            exited: None,
        };
        let mut addr = String::new();
        wait_until("warden to listen", Duration::from_secs(20), || {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                addr = a.trim().to_string();
                return true;
            }
            if let Ok(Some(st)) = w.child.try_wait() {
                panic!("warden exited early ({st}):\n{}", w.logs());
            }
            false
        });
        w.addr = addr;
        w
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        wait_until(&format!("log line containing {needle:?}"), timeout, || {
            self.logs().contains(needle)
        });
    }

    pub fn status(&self) -> Value {
        get_json(&self.addr, "/api/v1/status")
    }

    pub fn program(&self, name: &str) -> Value {
        let st = self.status();
        st["programs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// The `KITE_ACCESS_TOKEN` in this warden's `.env` ("" when there is none).
    pub fn env_token(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(".env")).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("KITE_ACCESS_TOKEN="))
            .unwrap_or("")
            .to_string()
    }

    pub fn pid_of(&self, name: &str) -> Option<i32> {
        self.program(name)["pid"].as_i64().map(|p| p as i32)
    }

    /// Wait for `name` to be in `state` and return its status.
    pub fn wait_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            last = self.program(name);
            if last["state"] == state {
                return last;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{name} not {state} after {timeout:?}; last {last}\nlogs:\n{}",
            self.logs()
        );
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn write_config(&self, text: &str) {
        let mut text = text.to_string();
        if !text.contains("[http]") {
            text = format!("[http]\nlisten = \"127.0.0.1:0\"\n\n{text}");
        }
        // Replace by rename, the way editors and deploy tools do.
        let tmp = self.dir.path().join(".supervisor.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, &self.config).unwrap();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.exited {
            return st;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.exited = Some(st);
                return st;
            }
            if Instant::now() > deadline {
                panic!(
                    "warden did not exit within {timeout:?}\nlogs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        if self.exited.is_none() && self.child.try_wait().ok().flatten().is_none() {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if self.child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
