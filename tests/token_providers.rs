//! The command provider, transient broker trouble and the attempt caps, through the real binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

const SCRIPT: &str = r#"#!/bin/sh
n=$(cat counter 2>/dev/null || echo 0)
n=$((n+1))
echo $n > counter
echo "logging in as someone (stderr is logged)" >&2
echo "some chatter on stdout"
echo "tok$n"
"#;

fn command_config() -> String {
    r#"
[token]
provider = "command"
env_file = ".env"
min_interval = "0s"
max_attempts = 10
attempt_window = "1s"
[token.command]
command = ["sh", "refresh.sh"]
timeout = "10s"

[programs.app]
command = ["sh", "-c", "trap 'echo reloaded' HUP; echo started; while true; do sleep 0.05; done"]
on_token_change = "signal"
"#
    .to_string()
}

const ENV_PREFIX: &str = "# my settings, keep them\nexport FOO='bar baz'\n\nDB_URL=postgres://x\n";

fn env_text(w: &Warden) -> String {
    std::fs::read_to_string(w.dir.path().join(".env")).unwrap_or_default()
}

fn token_in(text: &str) -> Option<String> {
    let lines: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("KITE_ACCESS_TOKEN="))
        .collect();
    match lines.as_slice() {
        [one] => Some(one.trim_start_matches("KITE_ACCESS_TOKEN=").to_string()),
        _ => None,
    }
}

#[test]
fn command_provider_writes_the_token_keeps_the_rest_of_env_and_refreshes_on_sigusr1() {
    let w = Warden::start_with(
        &command_config(),
        |d| {
            std::fs::write(d.join("refresh.sh"), SCRIPT).unwrap();
            std::fs::write(d.join(".env"), ENV_PREFIX).unwrap();
            std::fs::set_permissions(d.join(".env"), std::fs::Permissions::from_mode(0o640))
                .unwrap();
        },
        Vec::new(),
    );
    w.wait_log("app | started", T);
    let text = env_text(&w);
    assert_eq!(
        text,
        format!("{ENV_PREFIX}KITE_ACCESS_TOKEN=tok1\n"),
        "only the token line was added"
    );
    let mode = std::fs::metadata(w.dir.path().join(".env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "mode kept");
    assert_eq!(w.status()["token"]["source"], "command");
    assert!(
        w.logs().contains("token.command | logging in as someone"),
        "{}",
        w.logs()
    );
    assert!(!w.logs().contains("tok1"), "the token leaked into the log");

    w.signal(libc::SIGUSR1);
    wait_until("tok2 in .env", T, || {
        token_in(&env_text(&w)).as_deref() == Some("tok2")
    });
    w.wait_log("app | reloaded", T);
    assert!(env_text(&w).starts_with(ENV_PREFIX));
    assert_eq!(w.program("app")["restarts"], 0);
}

#[test]
fn a_reader_never_sees_a_partial_env_file_during_50_refreshes() {
    let w = Warden::start_with(
        &command_config(),
        |d| std::fs::write(d.join("refresh.sh"), SCRIPT).unwrap(),
        Vec::new(),
    );
    w.wait_log("app | started", T);
    let path = w.dir.path().join(".env");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).expect("the env file always exists");
                let tok =
                    token_in(&text).unwrap_or_else(|| panic!("partial or broken .env: {text:?}"));
                assert!(tok.starts_with("tok") && text.ends_with('\n'), "{text:?}");
                reads += 1;
            }
            reads
        })
    };
    for i in 2..=51 {
        let (code, _) = http(&w.addr, "POST", "/api/v1/token/refresh", &[], "");
        assert_eq!(code, 202);
        let want = format!("tok{i}");
        wait_until(&want, T, || {
            token_in(&env_text(&w)).as_deref() == Some(want.as_str())
        });
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader saw a broken file");
    assert!(
        reads > 50,
        "the reader really raced the writes ({reads} reads)"
    );
}

mod kite {
    use super::*;

    pub fn config(kite: &str, max_attempts: u32) -> String {
        format!(
            r#"
[token]
provider = "kite"
env_file = ".env"
min_interval = "0s"
max_attempts = {max_attempts}
attempt_window = "1h"
[token.kite]
api_key = "kitefront"
api_secret = "kitefront-sandbox-secret"
user_id = "AB1234"
login = "totp"
password = "sandbox-password"
totp_secret = "WARDENSANDBOXTOTPSECRETKITEAB234"
login_base = "http://{kite}"
api_base = "http://{kite}"
"#
        )
    }

    pub fn metric(w: &Warden, name: &str) -> f64 {
        let (_, text) = http(&w.addr, "GET", "/metrics", &[], "");
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

#[test]
fn broker_5xx_twice_then_success() {
    let kite = KiteSandbox::start(&[]);
    kite.fault(r#"{"path": "/api/login", "status": 503, "count": 2}"#);
    let w = Warden::start(&kite::config(&kite.addr, 5));
    wait_until("valid token", T, || w.status()["token"]["state"] == "valid");
    assert_eq!(
        kite::metric(
            &w,
            r#"warden_token_login_attempts_total{kind="totp",token="kite"}"#
        ),
        3.0
    );
    assert_eq!(
        kite::metric(
            &w,
            r#"warden_token_refreshes_total{result="failure",source="totp",token="kite"}"#
        ),
        2.0
    );
    assert_eq!(
        kite::metric(
            &w,
            r#"warden_token_refreshes_total{result="success",source="totp",token="kite"}"#
        ),
        1.0
    );
    let stats = get_json(&kite.addr, "/_sandbox/stats");
    assert_eq!(stats["sessions_created"], 1, "{stats}");
}

#[test]
fn a_broker_outage_never_exceeds_max_attempts() {
    let kite = KiteSandbox::start(&[]);
    kite.fault(r#"{"path": "/api/login", "status": 503, "count": 1000}"#);
    let w = Warden::start(&kite::config(&kite.addr, 2));
    wait_until("needs_login after the cap", T, || {
        w.status()["token"]["state"] == "needs_login"
    });
    assert_eq!(
        kite::metric(
            &w,
            r#"warden_token_login_attempts_total{kind="totp",token="kite"}"#
        ),
        2.0
    );
    // A refresh request is still held to the cap.
    let (code, _) = http(&w.addr, "POST", "/api/v1/token/refresh", &[], "");
    assert_eq!(code, 202);
    wait_until("the request was handled", T, || {
        w.logs().contains("token refresh requested")
    });
    assert_eq!(
        kite::metric(
            &w,
            r#"warden_token_login_attempts_total{kind="totp",token="kite"}"#
        ),
        2.0
    );
    assert!(
        w.status()["token"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("attempts"),
        "{}",
        w.status()
    );
}
