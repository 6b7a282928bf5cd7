//! The command-line client: `warden status`, `restart`, `token refresh|status` and `login-url`
//! ask the running warden over its HTTP API (SPEC §2, §5).
//!
//! The running warden is found through the same config file it runs from: `[http] listen`
//! (an unspecified address like `0.0.0.0` is reached on loopback) and `[http] api_token` for
//! the mutating calls. A small blocking HTTP/1.1 client over `std::net::TcpStream` is enough
//! for one request per command, and keeps the CLI free of an async runtime.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use crate::config::{ConfigError, Secret};
use crate::model::TokenState;

mod events;
mod watch;
pub use events::{events, EventsOptions};
pub use watch::watch;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A restart answers once the program was told; a status is a snapshot. Both are quick.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Refuse absurd answers instead of reading without end.
const MAX_RESPONSE: u64 = 16 << 20;

/// What the user asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    Status {
        json: bool,
    },
    Restart {
        name: String,
    },
    /// `name`: which token (SPEC §9.1); `None`: the only one.
    TokenRefresh {
        name: Option<String>,
    },
    /// `None`: every token.
    TokenStatus {
        name: Option<String>,
    },
    TokenUnblock {
        name: Option<String>,
    },
    LoginUrl {
        name: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The config file is missing or invalid where the client needs it (`[http]`).
    #[error("{0}")]
    Config(Box<ConfigError>),
    #[error("{file}: {message}")]
    Usage { file: PathBuf, message: String },
    #[error("warden is not running at {addr} ({reason}); start it with `warden run -c {config}`")]
    NotRunning {
        addr: SocketAddr,
        reason: String,
        config: String,
    },
    #[error(
        "warden refused the API token; set [http] api_token / WARDEN_API_TOKEN to the same value \
         warden runs with"
    )]
    Unauthorized,
    #[error("warden has no program named {name:?} (programs: {known})")]
    UnknownProgram { name: String, known: String },
    #[error("warden manages no token: its config has no [token] provider")]
    NoToken,
    #[error("warden has no token named {name:?} (tokens: {known})")]
    UnknownToken { name: String, known: String },
    #[error("warden keeps several tokens ({known}): name one, like `warden token refresh NAME`")]
    TokenNameNeeded { known: String },
    #[error("warden's token comes from a command, not a Kite login: use `warden token refresh`")]
    NotKite,
    #[error("warden at {addr} answered HTTP {status}: {detail}")]
    Refused {
        addr: SocketAddr,
        status: u16,
        detail: String,
    },
    #[error("the program at {addr} does not answer like warden: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
}

impl ClientError {
    /// SPEC §2: 2 for a usage or config problem, 1 for everything that went wrong at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Config(_)
            | ClientError::Usage { .. }
            | ClientError::TokenNameNeeded { .. } => 2,
            _ => 1,
        }
    }
}

/// Where the running warden is and what to tell it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The address to connect to (loopback for an unspecified `listen`).
    pub addrs: Vec<SocketAddr>,
    pub api_token: Option<Secret>,
    /// `[http] public_url` (or `http://{listen}`), without a trailing slash.
    pub public_url: String,
    /// The config file as given, for messages.
    pub config: PathBuf,
    /// Each token's name and the broker whose `/{provider}/callback` completes its manual
    /// login (empty when the config could not be read whole).
    pub callbacks: Vec<(String, &'static str)>,
}

/// Run one client command against the warden of `config`; returns what to print on stdout.
pub fn run(cmd: &ClientCommand, config: &Path) -> Result<String, ClientError> {
    let ep = endpoint(config)?;
    match cmd {
        ClientCommand::Status { json } => {
            let status = get_status(&ep)?;
            Ok(if *json {
                let mut s = serde_json::to_string_pretty(&status).unwrap_or_default();
                s.push('\n');
                s
            } else {
                render_status(&status, Timestamp::now())
            })
        }
        ClientCommand::Restart { name } => restart(&ep, name),
        ClientCommand::TokenRefresh { name } => token_refresh(&ep, name.as_deref()),
        ClientCommand::TokenUnblock { name } => token_unblock(&ep, name.as_deref()),
        ClientCommand::TokenStatus { name } => {
            let status = get_status(&ep)?;
            if status["token"].is_null() {
                return Ok("token: not managed (no [token] provider configured)\n".to_string());
            }
            let several = tokens_of(&status).len() > 1;
            if name.is_none() && several {
                // Every token, each under its name.
                let mut out = String::new();
                for (n, t) in tokens_of(&status) {
                    let login = format!("{}/login/{n}", ep.public_url);
                    out.push_str(&format!("token {n}:\n"));
                    out.push_str(&render_token(t, &login, Timestamp::now()));
                    out.push('\n');
                }
                return Ok(out);
            }
            let picked = pick_token(&status, name.as_deref())?;
            Ok(render_token(
                &picked.status,
                &picked.login_url(&ep.public_url),
                Timestamp::now(),
            ))
        }
        ClientCommand::LoginUrl { name } => {
            let status = get_status(&ep)?;
            let picked = pick_token(&status, name.as_deref())?;
            match picked.status["login"].as_str() {
                Some("command") => Err(ClientError::NotKite),
                _ => {
                    let mut out = format!("{}\n", picked.login_url(&ep.public_url));
                    // SPEC §9.2: `warden login-url NAME` also prints the redirect URL to
                    // register with the broker, on its own line; without a NAME the output
                    // stays the one login URL (SPEC §2) that scripts read.
                    let callback = name
                        .as_deref()
                        .and_then(|n| ep.callbacks.iter().find(|(token, _)| token == n));
                    if let Some((_, provider)) = callback {
                        out.push_str(&format!(
                            "redirect URL to register with the broker: {}/{provider}/callback\n",
                            ep.public_url
                        ));
                    }
                    Ok(out)
                }
            }
        }
    }
}

/// `tokens` of a status answer, in order (a warden from before several tokens: its `token`).
fn tokens_of(status: &Value) -> Vec<(String, &Value)> {
    match status["tokens"].as_object() {
        Some(map) => map.iter().map(|(n, t)| (n.clone(), t)).collect(),
        None if !status["token"].is_null() => vec![(String::new(), &status["token"])],
        None => Vec::new(),
    }
}

/// The token a command means.
struct PickedToken {
    /// `None`: the only token (reached through the un-named routes).
    name: Option<String>,
    status: Value,
}

impl PickedToken {
    /// Where a person logs this token in by hand.
    fn login_url(&self, public_url: &str) -> String {
        match &self.name {
            Some(n) => format!("{public_url}/login/{n}"),
            None => format!("{public_url}/login"),
        }
    }

    /// `/api/v1/token/{op}`, or `/api/v1/tokens/{name}/{op}`.
    fn api_path(&self, op: &str) -> String {
        match &self.name {
            Some(n) => format!("/api/v1/tokens/{n}/{op}"),
            None => format!("/api/v1/token/{op}"),
        }
    }
}

/// `name`: that token; `None`: the only one (an error naming them when there are several).
fn pick_token(status: &Value, name: Option<&str>) -> Result<PickedToken, ClientError> {
    let tokens = tokens_of(status);
    let known = || {
        tokens
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if tokens.is_empty() {
        return Err(ClientError::NoToken);
    }
    let several = tokens.len() > 1;
    match name {
        Some(n) => match tokens.iter().find(|(t, _)| t == n) {
            Some((_, t)) => Ok(PickedToken {
                name: several.then(|| n.to_string()),
                status: (*t).clone(),
            }),
            None => Err(ClientError::UnknownToken {
                name: n.to_string(),
                known: known(),
            }),
        },
        None if several => Err(ClientError::TokenNameNeeded { known: known() }),
        None => Ok(PickedToken {
            name: None,
            status: tokens[0].1.clone(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Finding warden

/// Read `[http]` from the config. The full loader is tried first (same expansion, secrets and
/// validation as `warden run`); if the file only fails elsewhere — typically a Kite secret that
/// is set in warden's environment but not in this shell — `[http]` alone is read leniently.
pub fn endpoint(config: &Path) -> Result<Endpoint, ClientError> {
    match crate::config::load(config) {
        Ok(cfg) => Ok(Endpoint {
            addrs: connect_addrs(cfg.http.listen, config)?,
            api_token: cfg.http.api_token().cloned().or_else(env_api_token),
            public_url: cfg.http.public_url(),
            config: config.to_path_buf(),
            callbacks: cfg
                .token_list()
                .iter()
                .filter_map(|t| {
                    let provider = crate::token::provider::configured::manual_login_provider(t)?;
                    Some((t.display_name(), provider))
                })
                .collect(),
        }),
        Err(e) if e.problems.iter().all(|p| outside_http(&p.key)) => lenient_endpoint(config),
        Err(e) => Err(ClientError::Config(Box::new(e))),
    }
}

fn outside_http(key: &str) -> bool {
    !key.is_empty() && key != "http" && !key.starts_with("http.")
}

fn env_api_token() -> Option<Secret> {
    std::env::var("WARDEN_API_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new)
}

fn lenient_endpoint(config: &Path) -> Result<Endpoint, ClientError> {
    let usage = |message: String| ClientError::Usage {
        file: config.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(config)
        .map_err(|e| usage(format!("cannot read the config file: {e}")))?;
    let root: toml::Table =
        toml::from_str(&text).map_err(|e| usage(format!("not valid TOML: {}", e.message())))?;
    let http = root.get("http").and_then(|h| h.as_table());
    let get = |key: &str| -> Result<Option<String>, ClientError> {
        match http.and_then(|h| h.get(key)) {
            None => Ok(None),
            Some(v) => {
                let s = v
                    .as_str()
                    .ok_or_else(|| usage(format!("http.{key}: must be a string")))?;
                expand_vars(s)
                    .map(Some)
                    .map_err(|m| usage(format!("http.{key}: {m}")))
            }
        }
    };
    let listen: SocketAddr = match get("listen")? {
        Some(s) => s
            .parse()
            .map_err(|_| usage(format!("http.listen: {s:?} is not an IP:PORT address")))?,
        None => crate::config::HttpConfig::default().listen,
    };
    let mut api_token = get("api_token")?.filter(|t| !t.is_empty()).map(Secret::new);
    if api_token.is_none() {
        if let Some(file) = get("api_token_file")? {
            let base = config.parent().unwrap_or(Path::new("."));
            let text = std::fs::read_to_string(base.join(&file))
                .map_err(|e| usage(format!("http.api_token_file: cannot read {file}: {e}")))?;
            api_token = Some(Secret::new(text.trim_end_matches(['\n', '\r'])));
        }
    }
    let public_url = match get("public_url")?.filter(|u| !u.is_empty()) {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("http://{listen}"),
    };
    Ok(Endpoint {
        addrs: connect_addrs(listen, config)?,
        api_token: api_token.or_else(env_api_token),
        public_url,
        config: config.to_path_buf(),
        callbacks: Vec::new(),
    })
}

/// `${NAME}`, `${NAME:-default}` (default used when unset or empty, itself expanded) and `$$`,
/// as the config loader does; only needed for the lenient `[http]` read.
fn expand_vars(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body).ok_or("`${` has no closing `}`")?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let value = std::env::var(name).ok();
            match (value, default) {
                (Some(v), Some(_)) if !v.is_empty() => out.push_str(&v),
                (Some(v), None) => out.push_str(&v),
                (_, Some(d)) => out.push_str(&expand_vars(d)?),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${`, skipping nested `${…}` in defaults.
fn closing_brace(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where to connect for a `listen` address: itself, or loopback when it is unspecified.
fn connect_addrs(listen: SocketAddr, config: &Path) -> Result<Vec<SocketAddr>, ClientError> {
    if listen.port() == 0 {
        return Err(ClientError::Usage {
            file: config.to_path_buf(),
            message: "[http] listen has port 0 (any free port), so the running warden cannot be \
                      found from the config: give it a fixed port"
                .into(),
        });
    }
    let port = listen.port();
    Ok(match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => vec![(Ipv4Addr::LOCALHOST, port).into()],
        // `[::]` usually accepts IPv4 too; if it is IPv6-only, loopback ::1 still answers.
        IpAddr::V6(ip) if ip.is_unspecified() => vec![
            (Ipv4Addr::LOCALHOST, port).into(),
            (Ipv6Addr::LOCALHOST, port).into(),
        ],
        _ => vec![listen],
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Reply {
    addr: SocketAddr,
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_str(&self.body).map_err(|e| ClientError::Protocol {
            addr: self.addr,
            detail: format!("HTTP {} with a body that is not JSON ({e})", self.status),
        })
    }

    /// The `error` of a JSON error body, or the body itself.
    fn detail(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                v["error"]
                    .as_str()
                    .or_else(|| v["reason"].as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.body.trim().chars().take(300).collect())
    }

    fn refused(&self) -> ClientError {
        if self.status == 401 {
            return ClientError::Unauthorized;
        }
        ClientError::Refused {
            addr: self.addr,
            status: self.status,
            detail: self.detail(),
        }
    }
}

fn call(ep: &Endpoint, method: &str, path: &str) -> Result<Reply, ClientError> {
    let mut last = None;
    for addr in &ep.addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(stream) => return exchange(stream, *addr, method, path, ep.api_token.as_ref()),
            Err(e) => last = Some((*addr, e)),
        }
    }
    let (addr, e) = last.expect("at least one address");
    let reason = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())
        }
        _ => e.to_string(),
    };
    Err(ClientError::NotRunning {
        addr,
        reason,
        config: ep.config.display().to_string(),
    })
}

fn exchange(
    mut stream: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&Secret>,
) -> Result<Reply, ClientError> {
    let io = |e: std::io::Error| ClientError::Protocol {
        addr,
        detail: format!("{method} {path}: {e}"),
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: warden-cli/{}\r\n\
         Accept: application/json\r\nConnection: close\r\nContent-Length: 0\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token {
        req.push_str("Authorization: Bearer ");
        req.push_str(t.expose());
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(io)?;
    parse_response(&raw)
        .map_err(|detail| ClientError::Protocol { addr, detail })
        .map(|(status, body)| Reply { addr, status, body })
}

/// Status and body of a complete HTTP/1.x response read until the server closed.
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP response header")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    if !status_line.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP response: {status_line:?}"));
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                let n: usize = v.parse().map_err(|_| "bad Content-Length")?;
                body = &body[..n.min(body.len())];
            }
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = s
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size = std::str::from_utf8(&s[..eol]).map_err(|_| "bad chunk size")?;
        let size = size.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16).map_err(|_| "bad chunk size")?;
        s = &s[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        if s.len() < n {
            return Err("truncated chunked body".into());
        }
        out.extend_from_slice(&s[..n]);
        s = s.get(n + 2..).unwrap_or_default();
    }
}

fn get_status(ep: &Endpoint) -> Result<Value, ClientError> {
    let r = call(ep, "GET", "/api/v1/status")?;
    if r.status != 200 {
        return Err(r.refused());
    }
    let v = r.json()?;
    if !v["programs"].is_array() {
        return Err(ClientError::Protocol {
            addr: r.addr,
            detail: "GET /api/v1/status has no `programs`".into(),
        });
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Commands

fn restart(ep: &Endpoint, name: &str) -> Result<String, ClientError> {
    let path = format!(
        "/api/v1/programs/{}/restart",
        url::form_urlencoded::byte_serialize(name.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    );
    let r = call(ep, "POST", &path)?;
    match r.status {
        202 => Ok(format!("restarting {name}\n")),
        404 => {
            let known = get_status(ep)
                .map(|s| program_names(&s).join(", "))
                .unwrap_or_default();
            Err(ClientError::UnknownProgram {
                name: name.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known
                },
            })
        }
        _ => Err(r.refused()),
    }
}

fn token_refresh(ep: &Endpoint, name: Option<&str>) -> Result<String, ClientError> {
    let status = get_status(ep)?;
    let picked = pick_token(&status, name)?;
    let r = call(ep, "POST", &picked.api_path("refresh"))?;
    if r.status != 202 {
        return Err(r.refused());
    }
    let mut out = String::from("token refresh started; `warden token status` shows how it went\n");
    if picked.status["login"] == "manual" {
        out.push_str(&format!(
            "manual login mode: warden cannot log in by itself; open {} to log in\n",
            picked.login_url(&ep.public_url)
        ));
    }
    Ok(out)
}

/// `warden token unblock`: 0 when a block was lifted, 1 (with the reason) when nothing was
/// blocked or the block cannot be lifted this way.
fn token_unblock(ep: &Endpoint, name: Option<&str>) -> Result<String, ClientError> {
    let status = get_status(ep)?;
    let picked = pick_token(&status, name)?;
    let r = call(ep, "POST", &picked.api_path("unblock"))?;
    if r.status != 202 {
        return Err(r.refused());
    }
    Ok("credential block lifted; one automated login attempt is starting; `warden token status` shows how it went\n".to_string())
}

fn program_names(status: &Value) -> Vec<String> {
    status["programs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Output

fn parse_time(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

/// `2026-05-01 06:00:00 IST (in 3h 05m)`, in this machine's time zone.
fn when(t: Timestamp, now: Timestamp) -> String {
    crate::present::when(t, now, &jiff::tz::TimeZone::system())
}

/// `warden status`: a table of programs, then the token in one line.
pub fn render_status(status: &Value, now: Timestamp) -> String {
    let header = ["PROGRAM", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS"];
    let mut rows: Vec<[String; 6]> = vec![header.map(str::to_string)];
    for p in status["programs"].as_array().into_iter().flatten() {
        let s = |k: &str| p[k].as_str().unwrap_or("-").to_string();
        let uptime = match parse_time(&p["since"]) {
            Some(t) if p["state"] == "running" => crate::present::elapsed(t, now),
            _ => "-".into(),
        };
        rows.push([
            s("name"),
            s("state"),
            s("health"),
            p["pid"].as_i64().map_or("-".into(), |n| n.to_string()),
            uptime,
            p["restarts"].as_u64().unwrap_or(0).to_string(),
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if rows.len() == 1 {
        out.push_str("(no programs)\n");
    }
    out.push('\n');
    let t = &status["token"];
    if t.is_null() {
        out.push_str("token: not managed\n");
        out.push_str(&held_lines(status));
        return out;
    }
    let tokens = tokens_of(status);
    if tokens.len() > 1 {
        for (name, t) in tokens {
            out.push_str(&token_lines(&format!("token {name}"), t, now));
        }
    } else {
        out.push_str(&token_lines("token", t, now));
    }
    out.push_str(&held_lines(status));
    out
}

/// `LABEL: state, user …, expires …` and the last error and store lines.
fn token_lines(label: &str, t: &Value, now: Timestamp) -> String {
    let mut out = String::new();
    let mut line = format!("{label}: {}", t["state"].as_str().unwrap_or("unknown"));
    if let Some(u) = t["user_id"].as_str() {
        line.push_str(&format!(", user {u}"));
    }
    if let Some(x) = parse_time(&t["expires_at"]) {
        line.push_str(&format!(", expires {}", when(x, now)));
    }
    out.push_str(&line);
    out.push('\n');
    if let Some(e) = t["last_error"].as_str().filter(|e| !e.is_empty()) {
        out.push_str(&format!("last error: {e}\n"));
    }
    if let Some(s) = store_line(&t["store"]) {
        out.push_str(&format!("store: {s}\n"));
    }
    out
}

/// `held until Tue 07:45 IST: token kite needs a login: …`, one line per held notification.
fn held_lines(status: &Value) -> String {
    status["held_notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            format!(
                "held until {}: {}\n",
                h["send_at_local"].as_str().unwrap_or("?"),
                h["summary"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Fleet mode: `redis up, leader (fence 3)` / `redis DOWN, ...` / `redis up, follower of ID`.
fn store_line(s: &Value) -> Option<String> {
    let kind = s["kind"].as_str()?;
    let up = if s["up"] == true { "up" } else { "DOWN" };
    let role = match s["role"].as_str().unwrap_or("unknown") {
        "leader" => format!("leader (fence {})", s["fence"]),
        "follower" => format!("follower of {}", s["leader"].as_str().unwrap_or("?")),
        other => other.to_string(),
    };
    Some(format!("{kind} {up}, {role}"))
}

/// `warden token status`: every field of the token object, one per line (never the token).
/// `login_url`: where this token is logged in by hand (`{public_url}/login` or
/// `{public_url}/login/NAME`).
pub fn render_token(t: &Value, login_url: &str, now: Timestamp) -> String {
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
    let state = t["state"].as_str().unwrap_or("unknown");
    field("state:", state.to_string());
    let text = |k: &str| t[k].as_str().unwrap_or("-").to_string();
    field("user:", text("user_id"));
    field("login:", text("login"));
    field("source:", text("source"));
    for (label, key) in [
        ("obtained:", "obtained_at"),
        ("expires:", "expires_at"),
        ("next refresh:", "next_refresh_at"),
    ] {
        field(
            label,
            parse_time(&t[key]).map_or("-".into(), |x| when(x, now)),
        );
    }
    field("last error:", text("last_error"));
    if let Some(reason) = t["blocked"].as_str() {
        field(
            "blocked:",
            format!("{reason} (after fixing it: `warden token unblock`)"),
        );
    }
    if let Some(line) = store_line(&t["store"]) {
        field("store:", line);
    }
    let needed = TokenState::from_name(state).is_some_and(crate::present::login_needed);
    if needed && t["login"] != "command" {
        field("log in at:", login_url.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expands_like_the_config_loader() {
        std::env::set_var("WARDEN_CLIENT_TEST_SET", "abc");
        std::env::set_var("WARDEN_CLIENT_TEST_EMPTY", "");
        std::env::remove_var("WARDEN_CLIENT_TEST_UNSET");
        assert_eq!(expand_vars("plain $x").unwrap(), "plain $x");
        assert_eq!(expand_vars("${WARDEN_CLIENT_TEST_SET}").unwrap(), "abc");
        assert_eq!(expand_vars("${WARDEN_CLIENT_TEST_EMPTY}").unwrap(), "");
        assert_eq!(
            expand_vars("${WARDEN_CLIENT_TEST_EMPTY:-d}:${WARDEN_CLIENT_TEST_UNSET:-}").unwrap(),
            "d:"
        );
        assert_eq!(
            expand_vars("${WARDEN_CLIENT_TEST_UNSET:-${WARDEN_CLIENT_TEST_SET:-x}}/$$").unwrap(),
            "abc/$"
        );
        assert!(expand_vars("${WARDEN_CLIENT_TEST_UNSET}")
            .unwrap_err()
            .contains("WARDEN_CLIENT_TEST_UNSET"));
        assert!(expand_vars("${OPEN").is_err());
    }

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let p = Path::new("x.toml");
        assert_eq!(
            connect_addrs("0.0.0.0:9180".parse().unwrap(), p).unwrap(),
            vec!["127.0.0.1:9180".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            connect_addrs("[::]:9180".parse().unwrap(), p).unwrap(),
            vec![
                "127.0.0.1:9180".parse::<SocketAddr>().unwrap(),
                "[::1]:9180".parse().unwrap()
            ]
        );
        assert_eq!(
            connect_addrs("10.1.2.3:80".parse().unwrap(), p).unwrap(),
            vec!["10.1.2.3:80".parse::<SocketAddr>().unwrap()]
        );
        let e = connect_addrs("127.0.0.1:0".parse().unwrap(), p).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn parses_plain_and_chunked_responses() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}trailing";
        assert_eq!(parse_response(raw).unwrap(), (200, "{}".into()));
        let raw = b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap(), (202, "abcde".into()));
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn the_table_lines_up_and_names_the_token_state() {
        let now: Timestamp = "2026-05-01T10:05:07Z".parse().unwrap();
        let status = json!({
            "programs": [
                {"name": "backend", "state": "running", "health": "healthy", "pid": 4242,
                 "restarts": 1, "since": "2026-05-01T10:00:00Z"},
                {"name": "frontend-long-name", "state": "backoff", "health": "unknown",
                 "pid": null, "restarts": 12, "since": "2026-05-01T10:05:00Z"}
            ],
            "token": {"state": "needs_login", "user_id": null, "expires_at": null,
                      "last_error": "a manual Kite login is needed"}
        });
        let out = render_status(&status, now);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "PROGRAM             STATE    HEALTH   PID   UPTIME  RESTARTS"
        );
        assert_eq!(
            lines[1],
            "backend             running  healthy  4242  5m 07s  1"
        );
        assert_eq!(
            lines[2],
            "frontend-long-name  backoff  unknown  -     -       12"
        );
        assert!(out.contains("token: needs_login\n"), "{out}");
        assert!(out.contains("last error: a manual Kite login is needed"));
        assert!(!out.contains("held until"), "{out}");
    }

    #[test]
    fn held_notifications_follow_the_token_line() {
        let now: Timestamp = "2026-05-01T10:05:07Z".parse().unwrap();
        let held = json!([{"send_at_local": "Tue 07:45 IST",
            "summary": "token kite needs a login: a manual Kite login is needed"}]);
        let line =
            "held until Tue 07:45 IST: token kite needs a login: a manual Kite login is needed\n";
        let with_token = json!({"programs": [], "token": {"state": "needs_login"},
            "held_notifications": held});
        assert!(render_status(&with_token, now).ends_with(line));
        let without = json!({"programs": [], "token": null, "held_notifications": held});
        assert!(render_status(&without, now).ends_with(line));
    }

    #[test]
    fn several_tokens_get_a_line_each_and_commands_must_name_one() {
        let now: Timestamp = "2026-05-01T10:05:07Z".parse().unwrap();
        let a = json!({"state": "valid", "user_id": "AB1234", "expires_at": null});
        let b = json!({"state": "needs_login", "user_id": null, "expires_at": null});
        let status = json!({"programs": [], "token": a, "tokens": {"a": a, "b": b}});
        let out = render_status(&status, now);
        assert!(out.contains("token a: valid, user AB1234\n"), "{out}");
        assert!(out.contains("token b: needs_login\n"), "{out}");
        assert!(matches!(
            pick_token(&status, None),
            Err(ClientError::TokenNameNeeded { .. })
        ));
        assert!(matches!(
            pick_token(&status, Some("c")),
            Err(ClientError::UnknownToken { .. })
        ));
        let b = pick_token(&status, Some("b")).unwrap();
        assert_eq!(b.api_path("refresh"), "/api/v1/tokens/b/refresh");
        assert_eq!(b.login_url("http://w"), "http://w/login/b");
        // One token: the un-named routes, as before.
        let one = json!({"programs": [], "token": a, "tokens": {"kite": a}});
        let only = pick_token(&one, None).unwrap();
        assert_eq!(only.api_path("unblock"), "/api/v1/token/unblock");
        assert_eq!(only.login_url("http://w"), "http://w/login");
    }

    #[test]
    fn token_status_lists_every_field_and_the_login_link_when_needed() {
        let now: Timestamp = "2026-05-01T10:00:00Z".parse().unwrap();
        let t = json!({"state": "expired", "user_id": "AB1234", "login": "manual",
            "source": "manual", "obtained_at": "2026-04-30T04:00:00Z",
            "expires_at": "2026-05-01T00:30:00Z", "next_refresh_at": null, "last_error": null});
        let out = render_token(&t, "http://127.0.0.1:9180/login", now);
        assert!(out.starts_with("state:        expired\n"), "{out}");
        assert!(out.contains("user:         AB1234\n"));
        assert!(out.contains("(9h 30m ago)"), "{out}");
        assert!(out.contains("next refresh: -\n"));
        assert!(out.contains("log in at:    http://127.0.0.1:9180/login\n"));
        assert!(
            !out.contains("store:"),
            "no store line without fleet mode: {out}"
        );
    }

    #[test]
    fn fleet_store_state_is_one_line() {
        let lead = json!({"kind": "redis", "up": true, "role": "leader", "fence": 3});
        assert_eq!(store_line(&lead).unwrap(), "redis up, leader (fence 3)");
        let follow = json!({"kind": "redis", "up": false, "role": "follower", "leader": "h/1/ab"});
        assert_eq!(
            store_line(&follow).unwrap(),
            "redis DOWN, follower of h/1/ab"
        );
        assert!(store_line(&Value::Null).is_none());
    }
}
