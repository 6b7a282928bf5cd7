//! Shared harness for integration tests: runs the real `warden` binary in a temp directory and
//! talks to it over real HTTP. Every wait is bounded and polls a condition.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
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

/// A visible skip, or a failure under `WARDEN_TEST_REQUIRE_ALL=1` (CI installs everything).
pub fn skip(test: &str, why: &str) {
    if std::env::var("WARDEN_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{test}: {why} (required because WARDEN_TEST_REQUIRE_ALL=1)");
    }
    println!("SKIP {test}: {why}");
    eprintln!("SKIP {test}: {why}");
}

pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn get_json(addr: &str, path: &str) -> Value {
    let (code, body) = http(addr, "GET", path, &[], "");
    assert!(code == 200 || code == 503, "GET {path}: {code} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
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
            if let Some(a) = w
                .logs()
                .lines()
                .find_map(|l| l.split("http listening on ").nth(1))
            {
                addr = a
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
                    .collect();
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

/// True while a process with this pid exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// (pid, state char, ppid, pgid) of every process.
pub fn processes() -> Vec<(i32, char, i32, i32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        out.push((
            pid,
            f[0].chars().next().unwrap_or('?'),
            f[1].parse().unwrap_or(0),
            f[2].parse().unwrap_or(0),
        ));
    }
    out
}

/// Live members of a process group.
pub fn group_members(pgid: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.3 == pgid && p.1 != 'Z')
        .map(|p| p.0)
        .collect()
}

/// `warden sandbox kite` as a real process on a free loopback port.
pub struct KiteSandbox {
    child: Child,
    pub addr: String,
}

impl KiteSandbox {
    pub fn start(extra: &[&str]) -> KiteSandbox {
        let mut child = Command::new(BIN)
            .args(["sandbox", "kite", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the sandbox");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "sandbox exited before listening"
            );
            if let Some(a) = line.trim().strip_prefix("listening on http://") {
                break a.to_string();
            }
        };
        std::thread::spawn(move || for _ in out.lines() {});
        KiteSandbox { child, addr }
    }

    pub fn stats(&self) -> Value {
        get_json(&self.addr, "/_sandbox/stats")
    }

    pub fn expire(&self) {
        let (code, body) = http(&self.addr, "POST", "/_sandbox/expire", &[], "");
        assert_eq!(code, 200, "{body}");
    }

    pub fn fault(&self, json: &str) {
        let (code, body) = http(
            &self.addr,
            "POST",
            "/_sandbox/fault",
            &[("Content-Type", "application/json")],
            json,
        );
        assert_eq!(code, 200, "{body}");
    }

    /// The sandbox's demo credentials, pointed at this sandbox.
    pub fn kite_config(&self) -> warden::config::KiteConfig {
        warden::config::KiteConfig {
            api_key: "kitefront".into(),
            api_secret: warden::config::Secret::new("kitefront-sandbox-secret"),
            user_id: "AB1234".into(),
            login: warden::config::LoginMode::Totp,
            password: warden::config::Secret::new("sandbox-password"),
            totp_secret: warden::config::Secret::new(SANDBOX_TOTP),
            login_base: format!("http://{}", self.addr),
            api_base: format!("http://{}", self.addr),
        }
    }

    /// Log in the way a person's browser would, and return the request token.
    pub fn request_token(&self) -> warden::config::Secret {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cfg = self.kite_config();
        rt.block_on(async {
            warden::token::login::TotpLogin::new(&cfg)
                .unwrap()
                .login()
                .await
                .unwrap()
        })
    }
}

impl Drop for KiteSandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SANDBOX_TOTP: &str = "WARDENSANDBOXTOTPSECRETKITEAB234";
