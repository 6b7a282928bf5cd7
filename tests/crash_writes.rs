//! Crash-interrupted writes: warden is SIGKILLed at random moments while it refreshes the token
//! as fast as it can, and restarted on the same directory, over and over. After every kill the
//! `.env` and `.warden/token.json` must each be a complete old or new version, never a mix, and
//! at most one temporary file may be left behind by the kill.
//!
//! `WARDEN_CRASH_REFRESHES` (default 1000, about 30 s) is the number of completed refreshes to
//! go through; `WARDEN_CRASH_SEED` replays a schedule (the seed is printed).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{http, wait_until, BIN};

const T: Duration = Duration::from_secs(20);

/// Every other line of the `.env` must survive each rewrite byte for byte: comments, CRLF, an
/// `export`, quotes, and a last line without a newline.
const ENV_HEAD: &str = "# settings for the backend\r\nexport DB_URL='postgres://u@h/db'\n\nQUOTED=\"a \\\"b\\\" c\"  # trailing\n";
const ENV_TAIL: &str = "KITE_API_KEY=kitefront\n# last line has no newline\nZ=1";

/// Prints tok1, tok2, … (one more each run). The counter is replaced by rename so a run that
/// outlives a killed warden can never leave it half-written.
const SCRIPT: &str = r#"#!/bin/sh
n=$(cat counter 2>/dev/null || echo 0)
n=$((n+1))
echo $n > counter.tmp.$$ && mv counter.tmp.$$ counter
echo "refreshing (run $n)" >&2
echo "tok$n"
"#;

fn config() -> String {
    r#"
[http]
listen = "127.0.0.1:0"

[token]
provider = "command"
env_file = ".env"
min_interval = "0s"
max_attempts = 10
attempt_window = "1ms"
[token.command]
command = ["sh", "refresh.sh"]
timeout = "10s"
"#
    .to_string()
}

/// One warden process on the shared directory.
struct Run {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Run {
    fn start(dir: &Path, log: Arc<Mutex<String>>) -> Run {
        // Runs share the directory: the previous run's address must not be read.
        let addr_file = dir.join("http.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(dir.join("supervisor.toml"))
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .env("WARDEN_HTTP_ADDR_FILE", &addr_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn warden");
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let echo = std::env::var_os("WARDEN_TEST_ECHO").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{line}");
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut addr = String::new();
        wait_until("warden to listen", T, || {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                addr = a.trim().to_string();
                return true;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("warden exited early ({st}):\n{}", log.lock().unwrap());
            }
            false
        });
        Run { child, addr, log }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let st = self.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGKILL),
            "warden died on its own ({st}) before the kill:\n{}",
            self.log.lock().unwrap()
        );
    }

    fn refresh(&self, rng: &mut fastrand::Rng) {
        if rng.bool() {
            let (code, body) = http(&self.addr, "POST", "/api/v1/token/refresh", &[], "");
            assert_eq!(code, 202, "{body}");
        } else {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGUSR1) };
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The token in a complete `.env`, or a description of what is wrong with it.
fn env_token(dir: &Path) -> Result<u64, String> {
    let text = std::fs::read(dir.join(".env")).map_err(|e| format!("unreadable .env: {e}"))?;
    let text = String::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
    let line = text
        .strip_prefix(ENV_HEAD)
        .and_then(|r| r.strip_suffix(ENV_TAIL))
        .ok_or_else(|| format!("other lines changed or file cut short: {text:?}"))?;
    line.strip_prefix("KITE_ACCESS_TOKEN=tok")
        .and_then(|r| r.strip_suffix('\n'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("not exactly one complete token line: {text:?}"))
}

/// The token in a complete `token.json` with the five SPEC §4 fields.
fn json_token(dir: &Path) -> Result<u64, String> {
    let bytes = std::fs::read(dir.join(".warden/token.json"))
        .map_err(|e| format!("unreadable token.json: {e}"))?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "token.json is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    for f in [
        "access_token",
        "user_id",
        "obtained_at",
        "expires_at",
        "source",
    ] {
        if doc.get(f).is_none() {
            return Err(format!("token.json has no {f}: {doc}"));
        }
    }
    // `env_file` for the token found in .env at the first start, `command` afterwards.
    if doc["source"] != "command" && doc["source"] != "env_file" {
        return Err(format!("token.json source: {doc}"));
    }
    for f in ["obtained_at", "expires_at"] {
        let t = doc[f].as_str().unwrap_or("");
        if t.parse::<jiff::Timestamp>().is_err() {
            return Err(format!("token.json {f} is not RFC 3339: {doc}"));
        }
    }
    doc["access_token"]
        .as_str()
        .and_then(|t| t.strip_prefix("tok"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("token.json access_token: {doc}"))
}

fn counter(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("counter"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Temporary files warden's atomic writes leave next to `.env` and `token.json`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in [dir.to_path_buf(), dir.join(".warden")] {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().contains(".warden-tmp-") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Processes still working in `dir` (a token command that outlived its killed warden).
fn processes_in(dir: &Path) -> Vec<i32> {
    let dir = std::fs::canonicalize(dir).unwrap();
    common::processes()
        .into_iter()
        .filter(|p| std::fs::read_link(format!("/proc/{}/cwd", p.0)).is_ok_and(|c| c == dir))
        .map(|p| p.0)
        .collect()
}

fn prepare(dir: &Path) {
    std::fs::write(dir.join("supervisor.toml"), config()).unwrap();
    std::fs::write(dir.join("refresh.sh"), SCRIPT).unwrap();
    std::fs::write(
        dir.join(".env"),
        format!("{ENV_HEAD}KITE_ACCESS_TOKEN=tok0\n{ENV_TAIL}"),
    )
    .unwrap();
    std::fs::set_permissions(dir.join(".env"), std::fs::Permissions::from_mode(0o640)).unwrap();
}

#[test]
fn sigkill_during_refreshes_never_leaves_a_partial_env_or_token_json() {
    let target: u64 = std::env::var("WARDEN_CRASH_REFRESHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("WARDEN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("crash_writes: seed {seed} (WARDEN_CRASH_SEED={seed} replays it), {target} refreshes");
    let mut rng = fastrand::Rng::with_seed(seed);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    prepare(dir);
    let log = Arc::new(Mutex::new(String::new()));
    let started = Instant::now();
    let (mut kills, mut refreshes, mut orphans) = (0u64, 0u64, 0usize);
    let mut mid_write_kills = 0u64;
    let mut longest_refresh = Duration::ZERO;

    while refreshes < target {
        let run = Run::start(dir, log.clone());
        // At start warden reuses the stored token and writes both files for it: wait until
        // they agree, so that `before` is what is on disk when the next refresh starts.
        let mut before = 0;
        wait_until("warden to settle on one token", T, || {
            match (env_token(dir), json_token(dir)) {
                (Ok(e), Ok(j)) if e == j => {
                    before = e;
                    true
                }
                _ => false,
            }
        });
        // A few complete refreshes, then one that the kill interrupts at a random moment.
        for _ in 0..rng.usize(0..12) {
            let at = Instant::now();
            run.refresh(&mut rng);
            wait_until(
                "a refresh to land in .env and token.json",
                T,
                || matches!((env_token(dir), json_token(dir)), (Ok(e), Ok(j)) if e == j && e != before),
            );
            longest_refresh = longest_refresh.max(at.elapsed());
            before = env_token(dir).unwrap();
            refreshes += 1;
        }
        let temps_before = temp_files(dir);
        run.refresh(&mut rng);
        let spin = Duration::from_micros(rng.u64(0..25_000));
        let at = Instant::now();
        while at.elapsed() < spin {
            std::hint::spin_loop();
        }
        run.kill();
        kills += 1;
        wait_until("the token command to finish", T, || {
            processes_in(dir).is_empty()
        });

        // The files are each the old or the new version, complete.
        let env = env_token(dir)
            .unwrap_or_else(|e| panic!("after kill {kills} (seed {seed}): .env: {e}"));
        let json = json_token(dir)
            .unwrap_or_else(|e| panic!("after kill {kills} (seed {seed}): token.json: {e}"));
        let newest = counter(dir);
        assert!(
            env == before || (env > before && env <= newest),
            "after kill {kills}: .env holds tok{env}; expected tok{before} or a newer one up to tok{newest}"
        );
        assert!(
            json == before || (json > before && json <= env),
            "after kill {kills}: token.json holds tok{json}, .env tok{env} (written first), before tok{before}"
        );
        if env != json {
            mid_write_kills += 1;
        }
        if env != before {
            refreshes += 1;
        }
        let mode = std::fs::metadata(dir.join(".env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "the .env mode is kept");
        let temps = temp_files(dir);
        let new: Vec<_> = temps.iter().filter(|t| !temps_before.contains(t)).collect();
        assert!(
            new.len() <= 1,
            "after kill {kills}: more than one temp file left: {new:?}"
        );
        orphans = temps.len();
    }

    let logs = log.lock().unwrap().clone();
    let leaked = regex::Regex::new(r"\btok[0-9]+\b").unwrap();
    if let Some(m) = leaked.find(&logs) {
        panic!("a token ({}) appears in warden's log", m.as_str());
    }
    println!(
        "crash_writes: {refreshes} completed refreshes, {} command runs, {kills} kills \
         ({mid_write_kills} between the .env and token.json writes), longest refresh \
         {longest_refresh:?}, {orphans} orphaned temp files, {:?}",
        counter(dir),
        started.elapsed()
    );
}

/// A kill between the two writes leaves the new token in `.env` and the old one in
/// `token.json`. With no broker to validate against (command provider, no `[token.kite]`), the
/// next start "reuses" token.json's older token and writes it back over the newer one in `.env`.
#[test]
fn a_restart_after_a_kill_between_the_writes_keeps_the_newer_token() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    prepare(dir);
    let log = Arc::new(Mutex::new(String::new()));
    let run = Run::start(dir, log.clone());
    wait_until("tok0 adopted", T, || json_token(dir) == Ok(0));
    let mut rng = fastrand::Rng::with_seed(1);
    run.refresh(&mut rng);
    wait_until("tok1 written", T, || json_token(dir) == Ok(1));
    run.kill();
    // The state a kill right after the .env rename leaves: .env new, token.json old.
    std::fs::write(
        dir.join(".env"),
        format!("{ENV_HEAD}KITE_ACCESS_TOKEN=tok2\n{ENV_TAIL}"),
    )
    .unwrap();
    std::fs::write(dir.join("counter"), "2\n").unwrap();
    let run = Run::start(dir, log.clone());
    wait_until("warden settled", T, || {
        env_token(dir).is_ok() && json_token(dir) == env_token(dir)
    });
    assert_eq!(
        env_token(dir),
        Ok(2),
        "the newer token in .env was replaced by token.json's older one:\n{}",
        log.lock().unwrap()
    );
    drop(run);
}

/// A SIGKILL inside `atomic_write` orphans its temporary file (a full copy of the file, token
/// included). Nothing removes it later: not the next write, not the next start.
#[test]
fn stale_temp_files_from_a_dead_warden_are_removed_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    prepare(dir);
    std::fs::create_dir_all(dir.join(".warden")).unwrap();
    let stale = [
        dir.join(".env.warden-tmp-999999-0badf00d"),
        dir.join(".warden/.token.json.warden-tmp-999999-0badf00d"),
    ];
    for s in &stale {
        std::fs::write(s, "KITE_ACCESS_TOKEN=tok-stale\n").unwrap();
    }
    let log = Arc::new(Mutex::new(String::new()));
    let run = Run::start(dir, log.clone());
    wait_until("tok0 adopted", T, || json_token(dir) == Ok(0));
    let mut rng = fastrand::Rng::with_seed(2);
    run.refresh(&mut rng);
    wait_until("tok1 written", T, || json_token(dir) == Ok(1));
    let left: Vec<_> = stale.iter().filter(|s| s.exists()).collect();
    assert!(left.is_empty(), "stale temp files still there: {left:?}");
    drop(run);
}
