//! `warden sandbox kite` as a real process, the warden config that points at it, and the
//! manual login walked by hand the way a browser without JavaScript would.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden::sandbox::kite::{DEFAULT_API_SECRET, DEFAULT_PASSWORD, DEFAULT_TOTP_SECRET};

use super::web::{enc, get_json, http, request, split_url, Resp};
use super::{free_port, wait_until, Warden, BIN};

/// The sandbox's demo TOTP secret (`--totp-secret` default).
pub const SANDBOX_TOTP: &str = DEFAULT_TOTP_SECRET;

/// Flags for `warden sandbox kite` beyond `--listen 127.0.0.1:0`; [`SandboxFlags::start`]
/// runs it. `KiteSandbox::with().redirect_to_warden(port).token_ttl("90s").start()`.
#[derive(Debug, Clone, Default)]
pub struct SandboxFlags(Vec<String>);

impl SandboxFlags {
    /// Any flag of `warden sandbox kite --help`, with its value.
    pub fn flag(mut self, name: &str, value: &str) -> Self {
        self.0.push(name.to_string());
        self.0.push(value.to_string());
        self
    }

    /// Kite sends the browser back here after a login: the app's registered redirect URL.
    pub fn redirect_url(self, url: &str) -> Self {
        self.flag("--redirect-url", url)
    }

    /// The redirect URL of a warden that will listen on `127.0.0.1:{port}` (pick the port
    /// with `free_port` before starting the sandbox, and give it to the warden config).
    pub fn redirect_to_warden(self, port: u16) -> Self {
        self.redirect_url(&format!("http://127.0.0.1:{port}/kite/callback"))
    }

    pub fn token_ttl(self, ttl: &str) -> Self {
        self.flag("--token-ttl", ttl)
    }

    /// Start it and wait (at most 10 s) for the lines it prints at start.
    pub fn start(self) -> KiteSandbox {
        let (child, addr, startup) = launch_sandbox("kite", &self.0);
        KiteSandbox {
            child,
            addr,
            startup,
        }
    }
}

/// `warden sandbox BROKER --listen 127.0.0.1:0 EXTRA…`, once it has printed its start-up block
/// (at most 10 s): the child, its `127.0.0.1:PORT` and the block's lines. The block ends with
/// a note in parentheses; the process exiting first (a bad flag, a taken port) ends the
/// channel. On a panic here the child is killed.
pub fn launch_sandbox(
    broker: &str,
    extra: &[impl AsRef<std::ffi::OsStr>],
) -> (Child, String, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["sandbox", broker, "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the sandbox");
    let lines = line_channel(child.stdout.take().unwrap());
    let mut startup: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        if startup.last().is_some_and(|l| l.starts_with('(')) {
            break None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => startup.push(line),
            Err(e) => {
                break Some(format!(
                    "{broker} sandbox start-up lines ({e}); got: {startup:?}"
                ))
            }
        }
    };
    let addr = match (failed, startup[0].strip_prefix("listening on http://")) {
        (None, Some(addr)) => addr.to_string(),
        (failed, _) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{}",
                failed.unwrap_or_else(|| format!("unexpected first line {:?}", startup[0]))
            );
        }
    };
    (child, addr, startup)
}

/// Wait for `child` to exit: its status, or `None` once `timeout` has passed.
pub fn wait_child_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every line `out` prints, on a channel, read by a thread of its own (which also keeps the
/// pipe drained for as long as the process writes).
pub fn line_channel(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // Nobody listening any more: keep draining so the writer never blocks.
            let _ = tx.send(line);
        }
    });
    rx
}

/// `warden sandbox kite` as a real process on a free loopback port; killed on drop.
pub struct KiteSandbox {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// What it printed at start, one entry per line: `listening on http://…`, then
    /// `key: value` lines (user_id, password, totp_secret, api_key, api_secret, …).
    pub startup: Vec<String>,
}

impl KiteSandbox {
    /// With the default credentials plus `extra` flags (`["--token-ttl", "5s"]`).
    pub fn start(extra: &[&str]) -> KiteSandbox {
        let mut flags = SandboxFlags::default();
        flags.0.extend(extra.iter().map(|s| s.to_string()));
        flags.start()
    }

    /// A builder for the flags: `KiteSandbox::with().redirect_to_warden(port).start()`.
    pub fn with() -> SandboxFlags {
        SandboxFlags::default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The value of a `key: value` start-up line, e.g. `printed("api_key")`.
    pub fn printed(&self, key: &str) -> &str {
        let prefix = format!("{key}: ");
        self.startup
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("the sandbox did not print {key}: {:?}", self.startup))
    }

    pub fn stats(&self) -> Value {
        get_json(&self.addr, "/_sandbox/stats")
    }

    /// Expire every token now (`POST /_sandbox/expire`).
    pub fn expire(&self) {
        let (code, body) = http(&self.addr, "POST", "/_sandbox/expire", &[], "");
        assert_eq!(code, 200, "{body}");
    }

    /// Queue a fault rule (`POST /_sandbox/fault` with a JSON body).
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
            api_secret: warden::config::Secret::new(DEFAULT_API_SECRET),
            user_id: "AB1234".into(),
            login: warden::config::LoginMode::Totp,
            password: warden::config::Secret::new(DEFAULT_PASSWORD),
            totp_secret: warden::config::Secret::new(SANDBOX_TOTP),
            login_base: self.url(),
            api_base: self.url(),
        }
    }

    /// `[http]` on `127.0.0.1:{port}` (so the CLI and the redirect can find warden) and a
    /// `[token]` section for this sandbox, `login` = `"manual"` or `"totp"`.
    pub fn warden_config(&self, port: u16, login: &str, api_token: Option<&str>) -> String {
        let api_token = api_token
            .map(|t| format!("api_token = \"{t}\"\n"))
            .unwrap_or_default();
        let token = self.token_section(login, SANDBOX_TOTP, "max_attempts = 3\n");
        format!(
            r#"[http]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
{api_token}
{token}"#
        )
    }

    /// `[token]` and `[token.kite]` for this sandbox's demo user; `limits` adds keys to
    /// `[token]` (attempt caps, verify_timeout).
    fn token_section(&self, login: &str, totp_secret: &str, limits: &str) -> String {
        let kite = self.url();
        format!(
            r#"[token]
provider = "kite"
env_file = ".env"
min_interval = "0s"
check_interval = "1h"
{limits}[token.kite]
api_key = "kitefront"
api_secret = "{DEFAULT_API_SECRET}"
user_id = "AB1234"
login = "{login}"
password = "{DEFAULT_PASSWORD}"
totp_secret = "{totp_secret}"
login_base = "{kite}"
api_base = "{kite}"
"#
        )
    }

    /// A warden config for this sandbox with one demo backend (its own free port, a 200 ms
    /// probe) that reads the token from `.env`: the token lifecycle tests' stack.
    pub fn backend_stack_config(&self, login: &str, totp_secret: &str, on_change: &str) -> String {
        let port = free_port();
        let kite = &self.addr;
        let token = self.token_section(
            login,
            totp_secret,
            "max_attempts = 5\nverify_timeout = \"5s\"\n",
        );
        format!(
            r#"
{token}
[programs.backend]
command = ["{BIN}", "sandbox", "backend", "--listen", "127.0.0.1:{port}", "--env-file", ".env", "--kite", "http://{kite}", "--api-key", "kitefront"]
on_token_change = "{on_change}"
backoff_initial = "100ms"
[programs.backend.health]
url = "http://127.0.0.1:{port}/api/system/health"
interval = "200ms"
timeout = "2s"
initial_delay = "100ms"
failure_threshold = 5
"#
        )
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

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Wait for it to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_child_exit(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("the sandbox did not exit within {timeout:?}"))
    }
}

impl Drop for KiteSandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A warden in `login = "manual"` mode on a port known in advance, and the sandbox Kite whose
/// redirect URL is that warden's callback.
pub struct ManualLoginStack {
    /// warden listens on `127.0.0.1:{port}`.
    pub port: u16,
    // Field order is drop order: warden stops before its broker goes.
    pub warden: Warden,
    pub kite: KiteSandbox,
}

impl ManualLoginStack {
    /// Start both (`extra`: more config, like `[programs.web]`) and wait (at most 30 s) until
    /// the token is `needs_login`.
    pub fn start(api_token: Option<&str>, extra: &str) -> ManualLoginStack {
        let port = free_port();
        let kite = KiteSandbox::with().redirect_to_warden(port).start();
        let warden = Warden::start(&format!(
            "{}\n{extra}",
            kite.warden_config(port, "manual", api_token)
        ));
        wait_until("token needs_login", Duration::from_secs(30), || {
            warden.status()["token"]["state"] == "needs_login"
        });
        ManualLoginStack { port, warden, kite }
    }
}

/// The manual login as a browser without JavaScript walks it: warden's `/login`, Kite's login
/// form (filled with the sandbox user and the TOTP code `totp`), Kite's redirect to warden's
/// `/kite/callback`. Returns the callback's answer (302 to `/` on success).
pub fn manual_login(warden: &str, totp: &str) -> Resp {
    manual_login_from(warden, "/login", totp)
}

/// [`manual_login`] starting at `login_path` (`/login/NAME` for one of several tokens).
pub fn manual_login_from(warden: &str, login_path: &str, totp: &str) -> Resp {
    let r = request(warden, "GET", login_path, &[], "");
    assert_eq!(r.status, 302, "{login_path}: {}", r.body);
    let mut url = r.header("location").unwrap().to_string();
    let mut cookie = String::new();
    for _ in 0..10 {
        let (addr, path) = split_url(&url);
        if addr == warden {
            return request(warden, "GET", &path, &[], "");
        }
        let headers: Vec<(&str, &str)> = if cookie.is_empty() {
            vec![]
        } else {
            vec![("Cookie", cookie.as_str())]
        };
        let r = request(&addr, "GET", &path, &headers, "");
        if r.status == 302 || r.status == 303 {
            url = absolute(&addr, r.header("location").unwrap());
            continue;
        }
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let (r, session) = post_login_form(&addr, &r.body, totp);
        cookie = session;
        url = absolute(&addr, r.header("location").unwrap());
    }
    panic!("the login did not come back to warden within 10 hops");
}

/// Fill in the sandbox's login form `html` (served by `addr`) as user AB1234 with the demo
/// password and `totp`, and post it: the 303 answer and its session cookie (`name=value`).
pub fn post_login_form(addr: &str, html: &str, totp: &str) -> (Resp, String) {
    let form = format!(
        "api_key={}&sess_id={}&user_id=AB1234&password={}&twofa_value={}",
        enc(&form_value(html, "api_key")),
        enc(&form_value(html, "sess_id")),
        enc(DEFAULT_PASSWORD),
        totp
    );
    let r = request(
        addr,
        "POST",
        "/connect/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(r.status, 303, "login form: {}", r.body);
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    (r, cookie)
}

/// The value of `name="…" value="…"` in the sandbox's login form.
fn form_value(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} in the login form:\n{html}"));
    let rest = &html[at + needle.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn absolute(addr: &str, location: &str) -> String {
    if location.starts_with("http://") {
        location.to_string()
    } else {
        format!("http://{addr}{location}")
    }
}
