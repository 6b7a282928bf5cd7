//! systemd notify protocol: the module against a real unix datagram socket standing in for
//! systemd, and the real binary with `NOTIFY_SOCKET` set.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use warden::model::{Health, ProgramState, ProgramStatus, ProgramsView, TokenState, TokenStatus};
use warden::sdnotify::{self, SdNotify, StatusContext};

/// A stand-in for systemd's notify socket: collects every datagram.
struct FakeSystemd {
    sock: UnixDatagram,
    /// What NOTIFY_SOCKET must say to reach it.
    address: String,
    _dir: Option<tempfile::TempDir>,
}

impl FakeSystemd {
    fn at_path() -> FakeSystemd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        FakeSystemd {
            sock,
            address: path.to_str().unwrap().to_string(),
            _dir: Some(dir),
        }
    }

    fn abstract_name() -> FakeSystemd {
        let name = format!("warden-test-{}-{}", std::process::id(), fastrand::u64(..));
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        FakeSystemd {
            sock,
            address: format!("@{name}"),
            _dir: None,
        }
    }

    fn notifier(&self, watchdog_usec: Option<&str>) -> SdNotify {
        SdNotify::from_values(
            Some(self.address.as_ref()),
            watchdog_usec,
            None,
            std::process::id(),
        )
    }

    /// The next datagram, or None after `timeout`.
    fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8(buf[..n].to_vec()).unwrap()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("recv: {e}"),
        }
    }

    /// Read datagrams until one satisfies `want`; returns it and everything seen before it.
    fn wait_for(&self, what: &str, timeout: Duration, want: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Some(m) = self.recv(left.max(Duration::from_millis(1))) {
                let hit = want(&m);
                seen.push(m);
                if hit {
                    return seen;
                }
            }
        }
        panic!("timed out after {timeout:?} waiting for {what}; got {seen:?}");
    }
}

fn program(name: &str, state: ProgramState, pid: Option<i32>) -> (String, ProgramStatus) {
    (
        name.to_string(),
        ProgramStatus {
            name: name.to_string(),
            state,
            pid,
            restarts: 0,
            health: Health::Unknown,
            since: jiff::Timestamp::UNIX_EPOCH,
            last_exit: None,
        },
    )
}

fn view(rows: &[(&str, ProgramState, Option<i32>)]) -> ProgramsView {
    rows.iter()
        .map(|(n, s, p)| program(n, *s, *p))
        .collect::<ProgramsView>()
}

fn ctx(grace: Duration) -> StatusContext {
    StatusContext {
        tz: jiff::tz::TimeZone::get("Asia/Kolkata").unwrap(),
        login_url: "http://trader.example:9180/login".into(),
        ready_grace: grace,
    }
}

fn token(state: TokenState, expires_at: Option<&str>) -> TokenStatus {
    TokenStatus {
        state,
        expires_at: expires_at.map(|e| e.parse().unwrap()),
        ..TokenStatus::default()
    }
}

#[test]
fn sends_datagrams_to_a_path_socket() {
    let systemd = FakeSystemd::at_path();
    let sd = systemd.notifier(None);
    assert!(sd.is_enabled());
    sd.send("READY=1\nSTATUS=hello").unwrap();
    assert_eq!(
        systemd.recv(Duration::from_secs(5)).as_deref(),
        Some("READY=1\nSTATUS=hello")
    );
}

#[test]
fn sends_datagrams_to_an_abstract_socket() {
    let systemd = FakeSystemd::abstract_name();
    let sd = systemd.notifier(None);
    sd.send("WATCHDOG=1").unwrap();
    assert_eq!(
        systemd.recv(Duration::from_secs(5)).as_deref(),
        Some("WATCHDOG=1")
    );
}

#[test]
fn stopping_sends_stopping_and_a_status() {
    let systemd = FakeSystemd::at_path();
    systemd.notifier(None).stopping();
    let m = systemd.recv(Duration::from_secs(5)).unwrap();
    assert!(m.starts_with("STOPPING=1\nSTATUS=stopping"), "{m}");
}

#[test]
fn without_a_socket_everything_is_a_no_op() {
    let sd = SdNotify::from_values(None, Some("1000000"), None, std::process::id());
    assert!(!sd.is_enabled());
    assert_eq!(sd.watchdog_period(), None);
    sd.send("READY=1").unwrap();
}

#[test]
fn a_socket_nobody_listens_on_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone");
    let sd = SdNotify::from_values(Some(path.as_os_str()), None, None, 1);
    let err = sd.send("READY=1").unwrap_err().to_string();
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    // The logged variant swallows it.
    sd.send_logged("READY=1");
}

#[test]
fn all_up_means_spawned_or_settled_not_healthy() {
    use ProgramState::*;
    assert!(sdnotify::all_up(&ProgramsView::new()));
    assert!(sdnotify::all_up(&view(&[
        ("backend", Starting, Some(10)),
        ("frontend", Running, Some(11)),
        ("worker", Backoff, None),
        ("once", Exited, None),
        ("broken", Fatal, None),
    ])));
    assert!(!sdnotify::all_up(&view(&[
        ("backend", Running, Some(10)),
        ("frontend", Stopped, None),
    ])));
    assert!(!sdnotify::all_up(&view(&[("backend", Starting, None)])));
}

#[test]
fn status_line_counts_programs_and_speaks_token() {
    use ProgramState::*;
    let c = ctx(Duration::from_secs(60));
    let up = view(&[
        ("backend", Running, Some(10)),
        ("frontend", Running, Some(11)),
        ("kite", Running, Some(12)),
    ]);
    let valid = token(TokenState::Valid, Some("2025-01-02T00:30:00Z"));
    assert_eq!(
        sdnotify::status_line(&up, Some(&valid), &c),
        "3/3 programs running; token valid until 06:00 IST"
    );
    let mixed = view(&[
        ("a", Running, Some(1)),
        ("b", Backoff, None),
        ("c", Fatal, None),
        ("d", Stopped, None),
        ("e", Starting, Some(5)),
    ]);
    assert_eq!(
        sdnotify::status_line(&mixed, Some(&token(TokenState::NeedsLogin, None)), &c),
        "1/5 programs running (b: backoff, c: fatal, d: stopped, +1 more); \
         token needs a login: open http://trader.example:9180/login"
    );
    assert_eq!(
        sdnotify::status_line(&ProgramsView::new(), None, &c),
        "no programs"
    );
    for (state, phrase) in [
        (TokenState::Expired, "token expired"),
        (TokenState::Refreshing, "token refreshing"),
        (TokenState::Unknown, "token being checked"),
        (TokenState::Valid, "token valid"),
    ] {
        let line = sdnotify::status_line(&up, Some(&token(state, None)), &c);
        assert!(line.ends_with(&format!("; {phrase}")), "{line}");
    }
}

#[tokio::test]
async fn reporter_sends_ready_once_programs_are_up_then_status_changes_and_watchdog() {
    use ProgramState::*;
    let systemd = FakeSystemd::at_path();
    let sd = systemd.notifier(Some("200000")); // WatchdogSec=200ms → a ping every 100 ms
    let (programs_tx, programs) = watch::channel(view(&[
        ("backend", Stopped, None),
        ("frontend", Stopped, None),
    ]));
    let (token_tx, token_rx) = watch::channel(token(TokenState::Unknown, None));
    let task = tokio::spawn(sdnotify::report(
        sd,
        programs,
        Some(token_rx),
        ctx(Duration::from_secs(600)),
    ));
    let systemd = std::sync::Arc::new(systemd);
    let recv = |what: &'static str, want: fn(&str) -> bool| {
        let s = systemd.clone();
        tokio::task::spawn_blocking(move || s.wait_for(what, Duration::from_secs(10), want))
    };

    let first = recv("the first status", |m| m.contains("STATUS="))
        .await
        .unwrap();
    let first = first.last().unwrap();
    assert_eq!(
        first,
        "STATUS=0/2 programs running (backend: stopped, frontend: stopped); token being checked\n"
    );

    programs_tx.send_modify(|v| {
        v.insert("backend".into(), program("backend", Running, Some(10)).1);
    });
    let seen = recv("the half-up status", |m| m.contains("1/2"))
        .await
        .unwrap();
    assert!(
        !seen.iter().any(|m| m.contains("READY=1")),
        "READY before every program is up: {seen:?}"
    );

    programs_tx.send_modify(|v| {
        v.insert("frontend".into(), program("frontend", Starting, Some(11)).1);
    });
    let seen = recv("READY=1", |m| m.contains("READY=1")).await.unwrap();
    assert_eq!(
        seen.last().unwrap(),
        "READY=1\nSTATUS=1/2 programs running (frontend: starting); token being checked\n"
    );

    token_tx.send_replace(token(TokenState::Valid, Some("2025-01-02T00:30:00Z")));
    recv("the token status", |m| {
        m.contains("STATUS=1/2 programs running (frontend: starting); token valid until 06:00 IST")
    })
    .await
    .unwrap();

    let s = systemd.clone();
    let seen = tokio::task::spawn_blocking(move || {
        let pings = std::cell::Cell::new(0);
        s.wait_for("two watchdog pings", Duration::from_secs(10), |m| {
            pings.set(pings.get() + usize::from(m == "WATCHDOG=1"));
            pings.get() == 2
        })
    })
    .await
    .unwrap();
    assert!(
        !seen.iter().any(|m| m.contains("READY=1")),
        "READY=1 sent twice: {seen:?}"
    );

    drop(programs_tx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("reporter ends when the programs view is gone")
        .unwrap();
}

#[tokio::test]
async fn reporter_sends_ready_after_the_grace_even_if_a_program_never_starts() {
    use ProgramState::*;
    let systemd = FakeSystemd::abstract_name();
    let sd = systemd.notifier(None);
    let (_programs_tx, programs) = watch::channel(view(&[
        ("backend", Starting, Some(10)),
        ("frontend", Stopped, None),
    ]));
    let started = Instant::now();
    let _task = tokio::spawn(sdnotify::report(
        sd.clone(),
        programs,
        None,
        ctx(Duration::from_millis(300)),
    ));
    let seen = tokio::task::spawn_blocking(move || {
        systemd.wait_for("READY=1", Duration::from_secs(10), |m| {
            m.contains("READY=1")
        })
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "READY=1 came before the grace: {seen:?}"
    );
    assert_eq!(
        seen[0],
        "STATUS=0/2 programs running (backend: starting, frontend: stopped)\n"
    );
}

#[tokio::test]
async fn reporter_marks_status_stopping_and_never_sends_ready_after_stopping() {
    use ProgramState::*;
    let systemd = FakeSystemd::at_path();
    let sd = systemd.notifier(None);
    let (programs_tx, programs) = watch::channel(view(&[("backend", Stopped, None)]));
    let _task = tokio::spawn(sdnotify::report(
        sd.clone(),
        programs,
        None,
        ctx(Duration::from_secs(600)),
    ));
    let systemd = std::sync::Arc::new(systemd);
    let s = systemd.clone();
    tokio::task::spawn_blocking(move || {
        s.wait_for("first status", Duration::from_secs(10), |m| {
            m.contains("STATUS=")
        })
    })
    .await
    .unwrap();
    sd.stopping();
    programs_tx.send_replace(view(&[("backend", Stopping, Some(10))]));
    let s = systemd.clone();
    let seen = tokio::task::spawn_blocking(move || {
        s.wait_for("a stopping status", Duration::from_secs(10), |m| {
            m.contains("STATUS=stopping: 0/1 programs running (backend: stopping)")
        })
    })
    .await
    .unwrap();
    assert_eq!(
        seen[0],
        "STOPPING=1\nSTATUS=stopping: programs are being stopped"
    );
    assert!(!seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
}

// ---- the real binary ----

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("supervisor.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn warden_under_systemd_reports_ready_status_watchdog_and_stopping() {
    let systemd = FakeSystemd::at_path();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[http]
listen = "127.0.0.1:0"

[programs.sleeper]
command = ["sleep", "1000"]

[programs.envdump]
command = ["sh", "-c", "env > seen.env && exec sleep 1000"]
"#,
    );
    let child = Command::new(common::BIN)
        .args(["run", "-c"])
        .arg(&config)
        .current_dir(dir.path())
        .env("NOTIFY_SOCKET", &systemd.address)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    /// Kills warden if the test fails before it exits.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut warden = Reap(child);

    let seen = systemd.wait_for("READY=1", Duration::from_secs(20), |m| {
        m.lines().any(|l| l == "READY=1")
    });
    let all = seen.join("");
    assert!(
        all.contains("STATUS="),
        "no STATUS with or before READY: {seen:?}"
    );
    if !all.contains("STATUS=2/2 programs running\n") {
        systemd.wait_for("2/2 running", Duration::from_secs(20), |m| {
            m.contains("STATUS=2/2 programs running\n")
        });
    }
    systemd.wait_for("WATCHDOG=1", Duration::from_secs(5), |m| m == "WATCHDOG=1");

    // Programs do not inherit the notify socket: they must not speak for warden.
    let env_file = dir.path().join("seen.env");
    common::wait_until("envdump to write seen.env", Duration::from_secs(10), || {
        std::fs::read_to_string(&env_file).is_ok_and(|s| s.contains("PATH="))
    });
    let env = std::fs::read_to_string(&env_file).unwrap();
    for var in ["NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="] {
        assert!(!env.lines().any(|l| l.starts_with(var)), "child got {var}");
    }

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    systemd.wait_for("STOPPING=1", Duration::from_secs(10), |m| {
        m.lines().any(|l| l == "STOPPING=1")
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = warden.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "warden did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
