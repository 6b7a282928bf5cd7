//! The individual checks. Network probes have short timeouts: a preflight that hangs is no help.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Check;
use crate::config::{Config, ProgramConfig};

const NET_TIMEOUT: Duration = Duration::from_secs(5);

/// The state_dir takes writes and is private (the env files are each token's checks).
pub fn state_dir(cfg: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    if cfg.token_list().is_empty() {
        return checks;
    }
    let key = "supervisor.state_dir";
    let problems = crate::token::writable::check(cfg);
    match problems.iter().find(|p| p.key == key) {
        Some(p) => checks.push(Check::fail(
            format!("{key} writable"),
            format!("{}: {}", p.dir.display(), p.reason),
            format!(
                "make {} a directory writable by the user warden runs as, or point {key} \
                 somewhere writable",
                p.dir.display()
            ),
        )),
        None => checks.push(Check::ok(
            format!("{key} writable"),
            cfg.supervisor.state_dir.display().to_string(),
        )),
    }
    let state = &cfg.supervisor.state_dir;
    if let Some(meta) = std::fs::metadata(state).ok().filter(|m| m.is_dir()) {
        let mode = meta.permissions().mode() & 0o777;
        checks.push(if mode & 0o077 != 0 {
            Check::warn(
                "supervisor.state_dir mode",
                format!(
                    "{} (mode {mode:04o}) is open to other users; token.json lives there",
                    state.display()
                ),
                format!("chmod 700 {}", state.display()),
            )
        } else {
            Check::ok("supervisor.state_dir mode", "private to its owner")
        });
    }
    checks
}

/// Something answers on warden's listen address (the loopback one for an unspecified address).
pub fn warden_running(cfg: &Config) -> bool {
    TcpStream::connect_timeout(&reachable(cfg.http.listen), Duration::from_secs(1)).is_ok()
}

fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

pub(super) fn http_client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(NET_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

fn is_loopback_host(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Who can reach warden's API, and whether they need the api_token.
pub fn http_posture(cfg: &Config) -> Vec<Check> {
    let listen = cfg.http.listen;
    let token = cfg.http.api_token().is_some();
    let public_url = cfg.http.public_url();
    let mut checks = Vec::new();
    checks.push(if listen.ip().is_loopback() {
        Check::ok("http.listen", format!("{listen} (this machine only)"))
    } else if token {
        Check::ok(
            "http.listen",
            format!("{listen} (reachable from the network; api_token set)"),
        )
    } else {
        Check::fail(
            "http.listen",
            format!("{listen} is reachable from the network and http.api_token is not set"),
            "set http.api_token (or api_token_file), or listen on 127.0.0.1",
        )
    });
    if !is_loopback_host(&public_url) && !token {
        checks.push(Check::warn(
            "http.public_url",
            format!("{public_url} is not a loopback address and http.api_token is not set"),
            "set http.api_token before exposing warden through a proxy",
        ));
    }
    checks
}

/// Each program's executable exists and may be run, found the way exec finds it.
pub fn programs(cfg: &Config) -> Vec<Check> {
    cfg.programs
        .iter()
        .map(|(name, p)| {
            let check = format!("programs.{name}.command");
            let Some(arg0) = p.command.0.first() else {
                return Check::fail(check, "empty command", "set the command");
            };
            match find_executable(arg0, p) {
                Ok(path) => Check::ok(check, path.display().to_string()),
                Err(why) => Check::fail(
                    check,
                    format!("{arg0}: {why}"),
                    "install it, fix the path (relative paths start at the program's cwd), or \
                     chmod +x it",
                ),
            }
        })
        .collect()
}

pub(super) fn find_executable(arg0: &str, p: &ProgramConfig) -> Result<PathBuf, String> {
    if arg0.contains('/') {
        let path = p.cwd.join(arg0);
        return executable(&path).map(|()| path);
    }
    let search = p
        .env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    let mut last = "not found on PATH".to_string();
    for dir in search.split(':').filter(|d| !d.is_empty()) {
        let path = p.cwd.join(dir).join(arg0);
        match executable(&path) {
            Ok(()) => return Ok(path),
            Err(e) if path.exists() => last = e,
            Err(_) => {}
        }
    }
    Err(last)
}

fn executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("not executable".into());
    }
    Ok(())
}

/// Health URLs answer: only meaningful while the stack runs.
pub async fn health(cfg: &Config, running: bool) -> Vec<Check> {
    let Some(client) = http_client() else {
        return Vec::new();
    };
    let mut checks = Vec::new();
    for (name, p) in &cfg.programs {
        let Some(h) = &p.health else { continue };
        let check = format!("programs.{name}.health");
        let answer = client.get(&h.url).timeout(h.timeout).send().await;
        checks.push(match answer {
            Ok(r) if r.status().is_success() => {
                Check::ok(check, format!("{} answered {}", h.url, r.status().as_u16()))
            }
            Ok(r) if running => Check::fail(
                check,
                format!("{} answered HTTP {}", h.url, r.status().as_u16()),
                format!("see `warden status` and the program's log for why {name} is unhealthy"),
            ),
            Err(e) if running => Check::fail(
                check,
                format!("{}: {}", h.url, error_chain(&e)),
                format!("check that {name} listens where health.url points"),
            ),
            _ => Check::info(
                check,
                format!("{} not answering: the stack is not running", h.url),
            ),
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("http://127.0.0.1:9180"));
        assert!(is_loopback_host("http://localhost:9180/x"));
        assert!(is_loopback_host("http://[::1]:9180"));
        assert!(!is_loopback_host("https://stack.example.com"));
        assert!(!is_loopback_host("http://10.0.0.5:9180"));
    }

    #[test]
    fn executables_are_found_like_exec_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = ProgramConfig {
            cwd: dir.path().to_path_buf(),
            ..ProgramConfig::default()
        };
        std::fs::write(dir.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        assert_eq!(
            find_executable("./run.sh", &p).unwrap_err(),
            "not executable"
        );
        std::fs::set_permissions(
            dir.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(
            find_executable("./run.sh", &p).unwrap(),
            dir.path().join("./run.sh")
        );
        // A bare name is looked up on PATH, never in the cwd.
        let mut on_path = p.clone();
        on_path.env.insert("PATH".into(), "bin".into());
        assert!(find_executable("run.sh", &on_path).is_err());
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::rename(dir.path().join("run.sh"), dir.path().join("bin/run.sh")).unwrap();
        assert_eq!(
            find_executable("run.sh", &on_path).unwrap(),
            dir.path().join("bin/run.sh")
        );
        assert!(find_executable("./missing", &p).is_err());
    }
}
