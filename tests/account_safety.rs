//! SPEC §4.1 through the real binary against the real sandbox Kite: refresh requests never lift
//! a credential block, at most 2 rejections per credentials, a restart never replays a TOTP
//! step or lifts a block, a skewed clock submits nothing, a failed exchange is retried with
//! the same request token, an expiry right after a login recovers through the kept web
//! session, and a token whose write failed is kept and lands when the disk allows.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use warden::sandbox::kite::DEFAULT_PASSWORD;
use warden::token::login::{unix_now, Totp};

const T: Duration = Duration::from_secs(30);

fn stat(kite: &KiteSandbox, name: &str) -> u64 {
    kite.stats()[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name}"))
}

fn post(w: &Warden, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = http(&w.addr, "POST", path, &[], "");
    (code, serde_json::from_str(&body).unwrap_or_default())
}

fn metrics(w: &Warden) -> String {
    http(&w.addr, "GET", "/metrics", &[], "").1
}

/// A second warden on a copy of `w`'s state (`files`, relative to its directory): what a
/// restart of the same installation sees.
fn restart_on_state(w: &mut Warden, files: &[&str]) -> Warden {
    let config = std::fs::read_to_string(&w.config).unwrap();
    w.signal(libc::SIGTERM);
    w.wait_exit(T);
    let dir = w.dir.path().to_path_buf();
    Warden::start_with(
        &config,
        |d| {
            std::fs::create_dir_all(d.join(".warden")).unwrap();
            for f in files {
                if dir.join(f).exists() {
                    std::fs::copy(dir.join(f), d.join(f)).unwrap();
                }
            }
        },
        Vec::new(),
    )
}

fn wait_for_fresh_totp_step() {
    let step = Totp::step_of(unix_now());
    wait_until("the next TOTP step", Duration::from_secs(31), || {
        Totp::step_of(unix_now()) != step
    });
}

#[test]
fn refresh_requests_never_lift_a_credential_block_and_unblock_lifts_it_once() {
    let kite = KiteSandbox::start(&[]);
    let port = free_port();
    let cfg = kite
        .warden_config(port, "totp", None)
        .replace(DEFAULT_PASSWORD, "wrong-password");
    let mut w = Warden::start(&cfg);
    wait_until("needs_login", T, || {
        w.status()["token"]["state"] == "needs_login"
    });
    assert_eq!(stat(&kite, "password_fail"), 1);
    let status = w.status();
    assert!(
        status["token"]["blocked"]
            .as_str()
            .is_some_and(|r| r.contains("Invalid username or password")),
        "{status}"
    );

    // Six refresh requests of every kind: each is refused with the reason, none submits.
    for i in 0..6 {
        match i % 3 {
            0 => {
                let (code, body) = post(&w, "/api/v1/token/refresh");
                assert_eq!(code, 409, "{body}");
                assert!(
                    body["reason"].as_str().unwrap().contains("blocked"),
                    "{body}"
                );
            }
            1 => w.signal(libc::SIGUSR1),
            _ => {
                let o = warden_cli(&["token", "refresh"], &w.config);
                assert_eq!(o.status.code(), Some(1), "{o:?}");
                assert!(String::from_utf8_lossy(&o.stderr).contains("409"), "{o:?}");
            }
        }
    }
    wait_until("both signals handled", T, || {
        w.logs().matches("automated login is blocked").count() >= 2
    });
    assert_eq!(
        stat(&kite, "password_fail"),
        1,
        "a refresh request lifted the block"
    );

    // unblock: 202, exactly one more attempt, which is the second and last rejection.
    let o = warden_cli(&["token", "unblock"], &w.config);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    wait_until("the one allowed attempt", T, || {
        stat(&kite, "password_fail") == 2
    });
    wait_until("blocked again", T, || {
        w.status()["token"]["blocked"].is_string()
    });
    let (code, body) = post(&w, "/api/v1/token/unblock");
    assert_eq!(code, 409, "two rejections spent: {body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("2 credential rejections"),
        "{body}"
    );
    assert_eq!(post(&w, "/api/v1/token/refresh").0, 409);

    // A restart lifts nothing and submits nothing.
    let w2 = restart_on_state(&mut w, &[".warden/login.json"]);
    wait_until("needs_login after the restart", T, || {
        w2.status()["token"]["state"] == "needs_login"
    });
    assert!(w2.status()["token"]["blocked"].is_string());
    assert_eq!(post(&w2, "/api/v1/token/refresh").0, 409);
    let stats = kite.stats();
    assert_eq!(stats["password_fail"], 2, "{stats}");
    assert_eq!(stats["locked_users"].as_array().unwrap().len(), 0);
    let memory = std::fs::read_to_string(w2.dir.path().join(".warden/login.json")).unwrap();
    assert!(!memory.contains("wrong-password"), "{memory}");

    // Changed credentials are another fingerprint: the block is theirs no longer.
    w2.write_config(&kite.warden_config(port, "totp", None));
    wait_until("valid with the fixed password", T, || {
        w2.status()["token"]["state"] == "valid"
    });
    assert!(w2.status()["token"]["blocked"].is_null());
    let (code, body) = post(&w2, "/api/v1/token/unblock");
    assert_eq!(code, 409, "nothing is blocked: {body}");
}

#[test]
fn a_restart_inside_a_totp_step_replays_nothing() {
    let kite = KiteSandbox::start(&[]);
    let cfg = kite.warden_config(free_port(), "totp", None);
    // Start at the beginning of a step so that the login and the restart share it.
    wait_for_fresh_totp_step();
    let mut w = Warden::start(&cfg);
    wait_until("first login", T, || stat(&kite, "twofa_ok") == 1);
    let step = Totp::step_of(unix_now());
    // No token is carried over (so the new warden must log in), only the login memory.
    let w2 = restart_on_state(&mut w, &[".warden/login.json"]);
    assert_eq!(
        Totp::step_of(unix_now()),
        step,
        "the restart took longer than the TOTP step; the test proves nothing"
    );
    wait_until("a login in a later step", Duration::from_secs(45), || {
        w2.status()["token"]["state"] == "valid"
    });
    let stats = kite.stats();
    assert_eq!(
        stats["twofa_replayed"], 0,
        "a TOTP code was replayed: {stats}"
    );
    assert_eq!(stats["twofa_fail"], 0, "{stats}");
    assert_eq!(stats["twofa_ok"], 2, "{stats}");
}

#[test]
fn a_skewed_broker_clock_gets_no_totp() {
    let kite = KiteSandbox::start(&["--clock-skew", "60s"]);
    let w = Warden::start(&kite.warden_config(free_port(), "totp", None));
    wait_until("needs_login", T, || {
        w.status()["token"]["state"] == "needs_login"
    });
    let err = w.status()["token"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The broker's Date header has whole seconds, so the skew reads 60 s give or take one.
    let named = (58..=62).any(|s| err.contains(&format!("{s} s behind the broker")));
    assert!(named, "{err}");
    let m = metrics(&w);
    let skew: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("warden_clock_skew_seconds{token=\"kite\"} "))
        .unwrap_or_else(|| panic!("no skew metric:\n{m}"))
        .parse()
        .unwrap();
    assert!((-62.0..=-58.0).contains(&skew), "{skew}");
    let stats = kite.stats();
    for k in ["password_ok", "password_fail", "twofa_ok", "twofa_fail"] {
        assert_eq!(stats[k], 0, "{k}: credentials were submitted: {stats}");
    }
    // Not a credential block: once the clocks agree, a refresh request logs in.
    assert!(w.status()["token"]["blocked"].is_null());
    let (code, body) = http(
        &kite.addr,
        "POST",
        "/_sandbox/clock",
        &[("Content-Type", "application/json")],
        r#"{"skew_secs": 0}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(post(&w, "/api/v1/token/refresh").0, 202);
    wait_until("valid", T, || w.status()["token"]["state"] == "valid");
    assert_eq!(stat(&kite, "twofa_ok"), 1);
}

#[test]
fn two_503s_on_the_exchange_cost_one_totp() {
    let kite = KiteSandbox::start(&[]);
    kite.fault(r#"{"path": "/session/token", "status": 503, "count": 2}"#);
    let w = Warden::start(&kite.warden_config(free_port(), "totp", None));
    wait_until("valid", T, || w.status()["token"]["state"] == "valid");
    let stats = kite.stats();
    assert_eq!(stats["faults_served"], 2, "{stats}");
    assert_eq!(
        stats["twofa_ok"], 1,
        "one TOTP code for the whole login: {stats}"
    );
    assert_eq!(stats["password_ok"], 1, "{stats}");
    assert_eq!(stats["sessions_created"], 1, "{stats}");
    assert_eq!(
        w.logs()
            .matches("retrying with the same request token")
            .count(),
        2,
        "{}",
        w.logs()
    );
}

#[test]
fn an_expiry_right_after_a_login_recovers_through_the_web_session() {
    let kite = KiteSandbox::start(&[]);
    let w = Warden::start(&kite.backend_stack_config("totp", SANDBOX_TOTP, "signal"));
    let pid = w.wait_state("backend", "running", T)["pid"].clone();
    wait_until("healthy", T, || w.program("backend")["health"] == "healthy");
    let old = w.env_token();
    // Right after the login: the TOTP step may well be the one just used.
    kite.expire();
    wait_until("a new token in .env", T, || {
        let t = w.env_token();
        !t.is_empty() && t != old
    });
    wait_until("backend healthy again", T, || {
        w.program("backend")["health"] == "healthy"
    });
    let stats = kite.stats();
    assert_eq!(
        stats["session_resumes"], 1,
        "the web session was used: {stats}"
    );
    assert_eq!(stats["twofa_ok"], 1, "no second TOTP: {stats}");
    assert_eq!(stats["password_ok"], 1, "no second password: {stats}");
    assert_eq!(stats["sessions_created"], 2, "{stats}");
    assert_eq!(w.status()["token"]["source"], "session");
    let json = std::fs::read_to_string(w.dir.path().join(".warden/token.json")).unwrap();
    assert!(json.contains("\"source\": \"session\""), "{json}");
    assert!(metrics(&w)
        .contains("warden_token_login_attempts_total{kind=\"session\",token=\"kite\"} 1"));
    assert_eq!(w.program("backend")["pid"], pid);
}

/// A small tmpfs (root only) to fill up.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = [b'x'; 1024];
        while f.write_all(&chunk).and_then(|_| f.sync_all()).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }

    /// `mount -o remount,MODE`: `ro` makes every write fail with EROFS.
    fn remount(&self, mode: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_under_the_env_file_costs_one_login_and_the_token_lands_later() {
    kept_token_lands_later(
        "a_full_disk_under_the_env_file_costs_one_login_and_the_token_lands_later",
        Tmpfs::fill,
        Tmpfs::free,
    );
}

#[test]
fn a_read_only_env_directory_costs_one_login_and_the_token_lands_later() {
    kept_token_lands_later(
        "a_read_only_env_directory_costs_one_login_and_the_token_lands_later",
        |t| t.remount("ro"),
        |t| t.remount("rw"),
    );
}

/// The env file's filesystem breaks right before a new token comes (`break_it`), and is
/// repaired (`repair`) a few write retries later.
fn kept_token_lands_later(name: &str, break_it: fn(&Tmpfs), repair: fn(&Tmpfs)) {
    let kite = KiteSandbox::start(&[]);
    let cfg = kite
        .backend_stack_config("totp", SANDBOX_TOTP, "signal")
        .replace("\".env\"", "\"envdir/.env\"");
    let mut tmpfs = None;
    let w = Warden::start_with(
        &cfg,
        |d| tmpfs = Some(Tmpfs::mount(&d.join("envdir"))),
        Vec::new(),
    );
    let tmpfs = match tmpfs.unwrap() {
        Ok(t) => t,
        Err(e) => {
            skip(name, &format!("cannot mount a tmpfs ({e}); needs root"));
            return;
        }
    };
    let env = w.dir.path().join("envdir/.env");
    let token_of = || {
        std::fs::read_to_string(&env)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("KITE_ACCESS_TOKEN=").map(str::to_string))
            .unwrap_or_default()
    };
    wait_until("healthy", T, || w.program("backend")["health"] == "healthy");
    let old = token_of();
    assert!(!old.is_empty());
    break_it(&tmpfs);
    kite.expire();
    wait_until("the write failure reported", T, || {
        w.status()["token"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot be written"))
    });
    // Probes keep reporting the dead token meanwhile; none of that may cost a login.
    wait_until("a few write retries", T, || {
        w.logs().matches("cannot be written").count() >= 3
    });
    assert_eq!(stat(&kite, "sessions_created"), 2, "exactly one new login");
    assert_eq!(token_of(), old, "the old .env stays whole");
    repair(&tmpfs);
    wait_until("the kept token lands", T, || {
        let t = token_of();
        !t.is_empty() && t != old
    });
    wait_until("backend healthy again", T, || {
        w.program("backend")["health"] == "healthy"
    });
    assert_eq!(w.status()["token"]["state"], "valid");
    assert_eq!(stat(&kite, "sessions_created"), 2, "no login for the write");
    drop(w);
}

#[test]
fn check_and_start_name_a_directory_warden_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("afile"), "x").unwrap();
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        r#"[supervisor]
state_dir = "afile/state"

[http]
listen = "127.0.0.1:0"

[token]
provider = "command"
env_file = "missing/.env"
[token.command]
command = ["echo", "tok"]
"#,
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    // A directory missing here may exist where warden runs: only a warning in `check`.
    assert!(
        err.contains("warning: token.env_file") && err.contains("missing"),
        "{err}"
    );
    assert!(
        err.contains("supervisor.state_dir") && err.contains("afile is not a directory"),
        "{err}"
    );
    let o = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("token.env_file"), "{err}");
}

#[test]
fn a_restart_never_resets_the_attempt_caps_of_a_command_provider() {
    // A refresh script that always fails (and counts its runs).
    let cfg = r#"
[token]
provider = "command"
env_file = ".env"
min_interval = "0s"
max_attempts = 2
attempt_window = "1h"
[token.command]
command = ["sh", "-c", "echo run >> runs; exit 1"]
timeout = "5s"
"#;
    let mut w = Warden::start(cfg);
    let runs = |w: &Warden| {
        std::fs::read_to_string(w.dir.path().join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_until("the cap reached", T, || {
        w.status()["token"]["state"] == "needs_login"
    });
    assert_eq!(runs(&w), 2);
    let w2 = restart_on_state(&mut w, &[".warden/login.json", "runs"]);
    wait_until("needs_login after the restart", T, || {
        w2.status()["token"]["state"] == "needs_login"
    });
    let err = w2.status()["token"]["last_error"].to_string();
    assert!(err.contains("2 automated login attempts"), "{err}");
    assert_eq!(runs(&w2), 2, "the restart reset the attempt cap");
}
