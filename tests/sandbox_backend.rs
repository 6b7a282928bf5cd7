//! The real `warden sandbox backend` binary against the in-process Kite sandbox: health
//! follows the token's validity, SIGHUP re-reads the env file in the same process, broker
//! trouble is 503 (not an auth failure), SIGTERM exits 0. The test never blocks its runtime
//! (the sandbox is served by it): output is polled, waits are async.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use warden::sandbox::kite::{spawn, Fault, FaultKind, SandboxHandle, SandboxOptions};

/// Kills the child on drop so a failed assertion never leaves a server running.
struct Backend {
    child: std::process::Child,
    lines: Receiver<String>,
    url: String,
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Backend {
    /// Start it and wait (bounded) for its `listening on` line.
    async fn start(env_file: &Path, kite: &str) -> Backend {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args([
                "sandbox",
                "backend",
                "--listen",
                "127.0.0.1:0",
                "--kite",
                kite,
            ])
            .arg("--env-file")
            .arg(env_file)
            .env_remove("KITE_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut b = Backend {
            child,
            lines,
            url: String::new(),
        };
        let first = b.next_line().await;
        b.url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        b
    }

    async fn next_line(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.lines.try_recv() {
                Ok(l) => return l,
                Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => panic!("no output line from the backend: {e}"),
            }
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("{}{path}", self.url)).await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn health(&self) -> (u16, String) {
        let (s, v) = self.get("/api/system/health").await;
        (s, v["auth"].as_str().unwrap_or_default().to_string())
    }

    async fn reloads(&self) -> u64 {
        self.get("/api/system/info").await.1["token_reloads"]
            .as_u64()
            .unwrap()
    }
}

async fn sandbox() -> SandboxHandle {
    spawn(SandboxOptions::default()).await.unwrap()
}

fn write_env(path: &Path, token: &str) {
    // Like warden: write aside, rename over, so the reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        format!("# demo\nOTHER=1\nKITE_ACCESS_TOKEN={token}\n"),
    )
    .unwrap();
    std::fs::rename(tmp, path).unwrap();
}

#[tokio::test]
async fn health_follows_the_token_and_sighup_reloads_in_place() {
    let kite = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    write_env(&env, kite.issue_session().expose());
    let mut b = Backend::start(&env, &kite.base_url()).await;
    assert_eq!(
        b.next_line().await,
        format!("token loaded in {}", env.display())
    );

    let (s, v) = b.get("/api/system/health").await;
    assert_eq!((s, v), (200, json!({"status": "ok", "auth": "VALID"})));
    let (_, info) = b.get("/api/system/info").await;
    assert_eq!(info["pid"], json!(b.child.id()));
    assert_eq!(info["token_reloads"], 0);

    // The morning expiry: Kite refuses the token, the backend says EXPIRED with 403.
    assert_eq!(kite.expire_all(), 1);
    let (s, v) = b.get("/api/system/health").await;
    assert_eq!(
        (s, &v["status"], &v["auth"]),
        (403, &json!("error"), &json!("EXPIRED"))
    );

    // A new token in the file + SIGHUP: healthy again, same process.
    let fresh = kite.issue_session();
    write_env(&env, fresh.expose());
    kill(b.pid(), Signal::SIGHUP).unwrap();
    let line = b.next_line().await;
    assert_eq!(line, "token reloaded (present)");
    assert!(!line.contains(fresh.expose()));
    assert_eq!(b.reloads().await, 1);
    assert_eq!(b.health().await, (200, "VALID".into()));
    assert_eq!(
        b.get("/api/system/info").await.1["pid"],
        json!(b.child.id())
    );

    // Broker trouble is not an auth failure: 503 UNKNOWN, token untouched.
    for fault in [
        Fault {
            status: 503,
            ..Fault::default()
        },
        Fault {
            status: 429,
            ..Fault::default()
        },
        Fault {
            kind: FaultKind::Garbage,
            ..Fault::default()
        },
        Fault {
            kind: FaultKind::Drop,
            ..Fault::default()
        },
    ] {
        let label = format!("{:?}/{}", fault.kind, fault.status);
        kite.inject(Fault {
            path: Some("/user/profile".into()),
            ..fault
        });
        let (s, v) = b.get("/api/system/health").await;
        assert_eq!(
            (s, &v["status"], &v["auth"]),
            (503, &json!("error"), &json!("UNKNOWN")),
            "{label}"
        );
        assert_eq!(b.health().await, (200, "VALID".into()), "{label}: after");
    }

    kill(b.pid(), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = b.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn no_token_is_expired_and_no_kite_is_unknown() {
    let kite = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("missing.env");
    let mut b = Backend::start(&env, &kite.base_url()).await;
    assert_eq!(
        b.next_line().await,
        format!("token absent in {}", env.display())
    );
    assert_eq!(b.health().await, (403, "EXPIRED".into()));

    // A token appears; SIGHUP picks it up.
    write_env(&env, kite.issue_session().expose());
    kill(b.pid(), Signal::SIGHUP).unwrap();
    assert_eq!(b.next_line().await, "token reloaded (present)");
    assert_eq!(b.health().await, (200, "VALID".into()));

    // Kite gone entirely.
    let url = kite.base_url();
    drop(kite);
    let dead = Backend::start(&env, &url).await;
    let _ = dead.health().await; // the first answer may still race the listener's close
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, auth) = dead.health().await;
        if (s, auth.as_str()) == (503, "UNKNOWN") {
            break;
        }
        assert!(Instant::now() < deadline, "still {s} {auth} with Kite gone");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn api_key_comes_from_the_env_file() {
    let kite = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    let token = kite.issue_session();
    std::fs::write(
        &env,
        format!(
            "KITE_API_KEY=someotherapp\nKITE_ACCESS_TOKEN=\"{}\"\n",
            token.expose()
        ),
    )
    .unwrap();
    let b = Backend::start(&env, &kite.base_url()).await;
    // Kite refuses a token presented with another app's key.
    assert_eq!(b.health().await, (403, "EXPIRED".into()));
    std::fs::write(
        &env,
        format!(
            "KITE_API_KEY=kitefront\nKITE_ACCESS_TOKEN=\"{}\"\n",
            token.expose()
        ),
    )
    .unwrap();
    kill(b.pid(), Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.reloads().await < 1 {
        assert!(Instant::now() < deadline, "no reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.health().await, (200, "VALID".into()));
}
