//! Headless Chromium through chromedriver's W3C WebDriver HTTP API, for tests that read a
//! page's DOM or click through it as a person would (`tests/browser.rs`,
//! `tests/example_stack.rs`).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{free_port, request, wait_until};

/// An executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long to wait for chromedriver to come up and for an element to appear.
const WAIT: Duration = Duration::from_secs(30);

/// chromedriver in its own process group, with one headless Chromium session; on drop the
/// session ends and the whole group (driver and browser) is killed, even after a panic.
pub struct Browser {
    child: Child,
    addr: String,
    session: String,
    /// Where `screenshot` writes (WARDEN_TEST_SCREENSHOT_DIR); unset: no screenshots.
    shots: Option<PathBuf>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// `None` when chromium or chromedriver is not on PATH.
    pub fn start() -> Option<Browser> {
        Browser::start_with_args(&[])
    }

    /// As `start`, with more Chromium command-line arguments (`--window-size=W,H`).
    pub fn start_with_args(extra_args: &[&str]) -> Option<Browser> {
        let (chromium, chromedriver) = (which("chromium")?, which("chromedriver")?);
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--silent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            child,
            addr: format!("127.0.0.1:{port}"),
            session: String::new(),
            shots: std::env::var_os("WARDEN_TEST_SCREENSHOT_DIR").map(PathBuf::from),
            _profile: profile,
        };
        wait_until("chromedriver to be ready", WAIT, || {
            std::net::TcpStream::connect(&b.addr).is_ok()
                && b.call("GET", "/status", None)["ready"] == true
        });
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ]
        .iter()
        .chain(extra_args)
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", b._profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "timeouts": {"pageLoad": 30000, "script": 5000, "implicit": 0},
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        Some(b)
    }

    /// One WebDriver command; returns its `value` (panics on a WebDriver error).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.try_call(method, path, body);
        assert!(v.get("error").is_none(), "{method} {path}: {v}");
        v
    }

    /// One WebDriver command; its `value`, a WebDriver error included.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        let r = request(&self.addr, method, path, headers, &body);
        let v: Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", r.body));
        v["value"].clone()
    }

    /// A command on this browser's session (`path` below `/session/ID`).
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Lay pages out like a phone `width` CSS pixels wide (headless Chromium keeps its window
    /// at least 500 px wide, so `--window-size` cannot go that narrow): device metrics
    /// emulation through chromedriver's DevTools bridge.
    pub fn phone_viewport(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": height, "deviceScaleFactor": 3, "mobile": true}}),
            ),
        );
    }

    pub fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    /// Run `script` (a function body; `return` its result) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_string()
    }

    pub fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Wait for an element to exist (pages load after clicks); returns its reference.
    pub fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.try_call(
                "POST",
                &format!("/session/{}/element", self.session),
                Some(json!({"using": "css selector", "value": css})),
            );
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_string();
            }
            if Instant::now() > deadline {
                panic!("no element {css} on {}: {v}", self.url());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn text(&self, el: &str) -> String {
        self.cmd("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn click(&self, el: &str) {
        self.cmd("POST", &format!("/element/{el}/click"), Some(json!({})));
    }

    /// Replace the text of the element `css` finds.
    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{el}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        );
    }

    /// A PNG of the page as `name` under WARDEN_TEST_SCREENSHOT_DIR, when that is set.
    pub fn screenshot(&self, name: &str) {
        let Some(dir) = &self.shots else { return };
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap());
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let v = A.iter().position(|a| *a == c).expect("base64") as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = request(&self.addr, "DELETE", &path, &[], "");
        }
        // SAFETY: plain killpg(2) on the group this test created.
        unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
