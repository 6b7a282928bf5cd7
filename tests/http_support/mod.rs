//! Helpers shared by the HTTP-facing tests (status page, CLI, Prometheus, browser): the Kite
//! sandbox as a process, a raw HTTP/1.1 request that keeps the headers, and the manual login
//! walked by hand the way a browser without JavaScript would.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_warden");
pub const TOTP_SECRET: &str = warden::sandbox::kite::DEFAULT_TOTP_SECRET;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `warden sandbox kite` as a child process on a free port.
pub struct Kite {
    child: Child,
    pub addr: String,
}

impl Kite {
    /// `redirect_url`: warden's `/kite/callback` (its `public_url` + `/kite/callback`).
    pub fn start(redirect_url: &str) -> Kite {
        let mut child = Command::new(BIN)
            .args(["sandbox", "kite", "--listen", "127.0.0.1:0"])
            .args(["--redirect-url", redirect_url])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "sandbox exited");
            if let Some(a) = line.trim().strip_prefix("listening on http://") {
                break a.to_string();
            }
        };
        std::thread::spawn(move || for _ in out.lines() {});
        Kite { child, addr }
    }

    /// `POST /_sandbox/fault` with a JSON rule.
    pub fn fault(&self, rule: &str) {
        let r = request(
            &self.addr,
            "POST",
            "/_sandbox/fault",
            &[("Content-Type", "application/json")],
            rule,
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }

    pub fn expire(&self) {
        let r = request(&self.addr, "POST", "/_sandbox/expire", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&request(&self.addr, "GET", "/_sandbox/stats", &[], "").body).unwrap()
    }
}

impl Drop for Kite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[http]` on a fixed port (so the CLI and the sandbox's redirect can find it) and a
/// `[token]` section for the sandbox at `kite` with `login` = `manual` or `totp`.
pub fn kite_config(port: u16, kite: &str, login: &str, api_token: Option<&str>) -> String {
    let api_token = api_token
        .map(|t| format!("api_token = \"{t}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[http]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
{api_token}
[token]
provider = "kite"
env_file = ".env"
min_interval = "0s"
check_interval = "1h"
max_attempts = 3
[token.kite]
api_key = "kitefront"
api_secret = "kitefront-sandbox-secret"
user_id = "AB1234"
login = "{login}"
password = "sandbox-password"
totp_secret = "{TOTP_SECRET}"
login_base = "http://{kite}"
api_base = "http://{kite}"
"#
    )
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; answers with the headers kept.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
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
    let raw = read_response(&mut s);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = if is_chunked(head) {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn is_chunked(head: &str) -> bool {
    head.to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// Read one response: up to its Content-Length, to the last chunk, or to the close. Some
/// servers (chromedriver) keep the connection open despite `Connection: close`.
fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let body = raw.len() - end - 4;
            if content_length(&head).is_some_and(|n| body >= n)
                || (is_chunked(&head) && raw.ends_with(b"0\r\n\r\n"))
            {
                return raw;
            }
        }
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            return raw;
        }
        raw.extend_from_slice(&buf[..n]);
    }
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

/// `http://host:port/path?q` → ("host:port", "/path?q").
pub fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

/// Percent-encode a form value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The value of `name="…" value="…"` in the sandbox's login form.
fn form_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in the login form:\n{html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The manual login as a browser without JavaScript walks it: warden's `/login`, Kite's login
/// form (filled with the sandbox user and the current TOTP code), Kite's redirect to warden's
/// `/kite/callback`. Returns the callback's answer (302 to `/` on success).
pub fn manual_login(warden: &str, totp: &str) -> Resp {
    let r = request(warden, "GET", "/login", &[], "");
    assert_eq!(r.status, 302, "/login: {}", r.body);
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
        let form = format!(
            "api_key={}&sess_id={}&user_id=AB1234&password=sandbox-password&twofa_value={}",
            enc(&form_value(&r.body, "api_key")),
            enc(&form_value(&r.body, "sess_id")),
            totp
        );
        let r = request(
            &addr,
            "POST",
            "/connect/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form,
        );
        assert_eq!(r.status, 303, "login form: {}", r.body);
        cookie = r
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .unwrap()
            .to_string();
        url = absolute(&addr, r.header("location").unwrap());
    }
    panic!("the login did not come back to warden within 10 hops");
}

fn absolute(addr: &str, location: &str) -> String {
    if location.starts_with("http://") {
        location.to_string()
    } else {
        format!("http://{addr}{location}")
    }
}
