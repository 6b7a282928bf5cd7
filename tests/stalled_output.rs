//! SPEC §7: nothing a program does can stall warden. With warden's stdout and stderr going to
//! pipes nobody reads, and a program printing as fast as it can, warden keeps answering,
//! keeps refreshing the token, stops on SIGTERM, and counts the lines it had to drop.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

/// The refresh script: a new token each run.
const SCRIPT: &str = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; \
                      echo progress >&2; echo \"tok$n\"\n";

/// `GET path` with a bound on the whole exchange: a stalled warden fails it instead of hanging.
fn get(addr: &str, path: &str) -> Result<String, String> {
    let bound = Duration::from_secs(5);
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(bound)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(bound))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn metric(addr: &str, series: &str) -> f64 {
    get(addr, "/metrics")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn env_token(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join(".env"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("KITE_ACCESS_TOKEN="))
        .unwrap_or("")
        .to_string()
}

/// A test that fails must not leave warden running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn a_stalled_log_reader_never_stalls_warden() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::write(dir.path().join("refresh.sh"), SCRIPT).unwrap();
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[http]
listen = "{addr}"

[token]
provider = "command"
min_interval = "0s"
max_attempts = 10
attempt_window = "1s"
[token.command]
command = ["sh", "refresh.sh"]
timeout = "10s"

[programs.chatty]
command = ["sh", "-c", "while :; do seq 1 3000; sleep 0.1; done"]
stop_timeout = "2s"
"#
        ),
    )
    .unwrap();
    // Both output pipes are held open here and never read: once the kernel's pipe buffers
    // are full, every write warden made to them would block.
    let mut child = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&config)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _unread = (child.stdout.take(), child.stderr.take());
    let mut child = KillOnDrop(child);

    wait_until("warden to answer /healthz", T, || {
        get(&addr, "/healthz").is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    wait_until("the first token in .env", T, || {
        env_token(dir.path()) == "tok1"
    });
    let dropped = "warden_log_lines_dropped_total{program=\"chatty\"}";
    wait_until("chatty's lines to be dropped and counted", T, || {
        metric(&addr, dropped) > 0.0
    });

    // Stalled output all along: still answering, and a refresh still goes through.
    for _ in 0..20 {
        let r = get(&addr, "/healthz");
        assert!(
            r.as_ref().is_ok_and(|r| r.starts_with("HTTP/1.1 200")),
            "/healthz while output is stalled: {r:?}"
        );
    }
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /api/v1/token/refresh HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    wait_until("the refreshed token in .env", T, || {
        env_token(dir.path()) == "tok2"
    });
    let before = metric(&addr, dropped);
    wait_until("the count of dropped lines to keep growing", T, || {
        metric(&addr, dropped) > before
    });

    // SIGTERM still stops everything, in time.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            panic!("warden did not stop within {T:?} of SIGTERM with its output stalled");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
