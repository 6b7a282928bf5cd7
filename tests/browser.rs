//! A real browser does the manual login: headless Chromium, driven through chromedriver's W3C
//! WebDriver HTTP API, opens warden's status page while the token needs a login, clicks
//! "Log in with Kite", fills the sandbox's Kite login form (user id, password, TOTP code) and
//! lands back on warden's page with a valid token.
//!
//! Needs `chromium` and `chromedriver` on PATH (Debian: chromium, chromium-driver); else a skip.
//! Set WARDEN_TEST_SCREENSHOT_DIR to keep screenshots of each step.

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);
/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver in its own process group: on drop the whole group (the driver and any browser
/// it started) is killed, even when the test panics half-way.
struct Driver {
    child: Child,
    addr: String,
}

impl Driver {
    fn start(bin: &PathBuf) -> Driver {
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .arg("--silent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let d = Driver { child, addr };
        wait_until("chromedriver to be ready", T, || {
            std::net::TcpStream::connect(&d.addr).is_ok()
                && d.call("GET", "/status", None)["ready"] == true
        });
        d
    }

    /// One WebDriver command; returns its `value` (panics on a WebDriver error).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.try_call(method, path, body);
        assert!(v.get("error").is_none(), "{method} {path}: {v}");
        v
    }

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
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: plain killpg(2) on the group this test created.
        unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

struct Session<'a> {
    driver: &'a Driver,
    id: String,
    shots: Option<PathBuf>,
    _profile: tempfile::TempDir,
}

impl<'a> Session<'a> {
    fn new(driver: &'a Driver, chromium: &PathBuf) -> Session<'a> {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    "--window-size=420,900",
                ],
            },
            "timeouts": {"pageLoad": 20000, "script": 5000, "implicit": 0},
        }}});
        let v = driver.call("POST", "/session", Some(caps));
        Session {
            driver,
            id: v["sessionId"].as_str().expect("a session id").to_string(),
            shots: std::env::var_os("WARDEN_TEST_SCREENSHOT_DIR").map(PathBuf::from),
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_string()
    }

    fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Wait for an element to exist (pages load after clicks); returns its reference.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + T;
        loop {
            let v = self.driver.try_call(
                "POST",
                &format!("/session/{}/element", self.id),
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

    fn text(&self, el: &str) -> String {
        self.cmd("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn click(&self, el: &str) {
        self.cmd("POST", &format!("/element/{el}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{el}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        );
    }

    fn screenshot(&self, name: &str) {
        let Some(dir) = &self.shots else { return };
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap());
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .try_call("DELETE", &format!("/session/{}", self.id), None);
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

#[test]
fn a_person_logs_in_with_kite_from_the_status_page() {
    let name = "a_person_logs_in_with_kite_from_the_status_page";
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        skip(
            name,
            "chromium/chromedriver not on PATH (apt-get install chromium chromium-driver)",
        );
        return;
    };
    let stack = ManualLoginStack::start(
        None,
        "[programs.web]\ncommand = [\"sleep\", \"300\"]\non_token_change = \"none\"\n",
    );
    let w = &stack.warden;
    let kite = &stack.kite;
    let port = stack.port;

    let driver = Driver::start(&chromedriver);
    let s = Session::new(&driver, &chromium);
    let home = format!("http://127.0.0.1:{port}/");
    s.go(&home);
    let button = s.find("a.login");
    assert_eq!(s.text(&button), "Log in with Kite");
    s.screenshot("1-needs-login.png");
    s.click(&button);

    // Kite's (the sandbox's) login form.
    s.find("input[name=twofa_value]");
    assert!(
        s.url()
            .starts_with(&format!("http://{}/connect/login", kite.addr)),
        "{}",
        s.url()
    );
    s.type_into("input[name=user_id]", "AB1234");
    s.type_into("input[name=password]", "sandbox-password");
    let code = warden::sandbox::kite::current_totp(SANDBOX_TOTP).unwrap();
    s.type_into("input[name=twofa_value]", &code);
    s.screenshot("2-kite-form.png");
    let submit = s.find("button[type=submit]");
    s.click(&submit);

    // Back on warden's page, through /kite/callback, with the token valid.
    wait_until("back on warden's status page", T, || s.url() == home);
    wait_until("token valid", T, || w.status()["token"]["state"] == "valid");
    s.go(&home);
    let badge = s.find("#token .badge");
    assert_eq!(s.text(&badge), "valid");
    let html = s.source();
    assert!(!html.contains("Log in with Kite"), "{html}");
    assert!(html.contains("AB1234"));
    s.screenshot("3-valid.png");
    assert_eq!(kite.stats()["sessions_created"], 1);
    assert_eq!(w.status()["token"]["source"], "manual");
}
