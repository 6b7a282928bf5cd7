//! The token lifecycle through the real binary against the real sandbox (both as processes).

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

const GOOD_TOTP: &str = SANDBOX_TOTP;

/// Kite (and the sandbox) refuse a TOTP code twice, and warden never resubmits one: a second
/// login needs the next 30 s step. Wait for it so that the login under test can happen.
fn wait_for_fresh_totp_step() {
    let now = warden::token::login::unix_now();
    let step = warden::token::login::Totp::step_of(now);
    wait_until("the next TOTP step", Duration::from_secs(31), || {
        warden::token::login::Totp::step_of(warden::token::login::unix_now()) != step
    });
}

#[test]
fn cold_start_logs_in_once_and_the_backend_becomes_healthy() {
    let kite = KiteSandbox::start(&[]);
    let w = Warden::start(&kite.backend_stack_config("totp", GOOD_TOTP, "signal"));
    let st = w.wait_state("backend", "running", T);
    assert_eq!(st["health"], "healthy");
    assert_eq!(kite.stats()["sessions_created"], 1);
    let token = w.env_token();
    assert!(!token.is_empty());
    assert!(!w.logs().contains(&token), "the token leaked into the log");
    let (_, metrics) = http(&w.addr, "GET", "/metrics", &[], "");
    assert!(!metrics.contains(&token));
    assert!(
        metrics.contains("warden_token_valid{token=\"kite\"} 1"),
        "{metrics}"
    );
    let status = w.status();
    assert_eq!(status["token"]["state"], "valid", "{status}");
    assert_eq!(status["token"]["user_id"], "AB1234");
    assert!(!status.to_string().contains(&token));
    use std::os::unix::fs::PermissionsExt;
    // The env file is written first (programs need it); token.json follows.
    let token_json = w.dir.path().join(".warden/token.json");
    wait_until("token.json written", T, || token_json.exists());
    let mode = std::fs::metadata(&token_json).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn expiry_leads_to_exactly_one_login_and_the_signalled_backend_recovers_with_the_same_pid() {
    let kite = KiteSandbox::start(&[]);
    let w = Warden::start(&kite.backend_stack_config("totp", GOOD_TOTP, "signal"));
    let pid = w.wait_state("backend", "running", T)["pid"].clone();
    wait_until("healthy", T, || w.program("backend")["health"] == "healthy");
    let old = w.env_token();
    wait_for_fresh_totp_step();
    kite.expire();
    wait_until("a new token in .env", T, || {
        let t = w.env_token();
        !t.is_empty() && t != old
    });
    wait_until("backend healthy again", T, || {
        w.program("backend")["health"] == "healthy"
    });
    let p = w.program("backend");
    assert_eq!(p["pid"], pid, "signal mode keeps the process");
    assert_eq!(p["restarts"], 0);
    assert_eq!(kite.stats()["sessions_created"], 2, "exactly one new login");
    assert!(
        w.logs().contains("sending SIGHUP for the new token"),
        "{}",
        w.logs()
    );
}

#[test]
fn restart_mode_gives_the_backend_a_new_pid() {
    let kite = KiteSandbox::start(&[]);
    let w = Warden::start(&kite.backend_stack_config("totp", GOOD_TOTP, "restart"));
    let pid = w.wait_state("backend", "running", T)["pid"].clone();
    wait_for_fresh_totp_step();
    kite.expire();
    wait_until("new pid, healthy", T, || {
        let p = w.program("backend");
        p["pid"] != pid && p["health"] == "healthy"
    });
    assert_eq!(kite.stats()["sessions_created"], 2);
}

#[test]
fn a_wrong_totp_is_tried_once_then_needs_login() {
    let kite = KiteSandbox::start(&[]);
    let w = Warden::start(&kite.backend_stack_config("totp", "JBSWY3DPEHPK3PXP", "signal"));
    wait_until("needs_login", T, || {
        w.status()["token"]["state"] == "needs_login"
    });
    // Probes keep failing with 403; none of that may cause another 2FA attempt.
    wait_until("many probes", T, || {
        w.logs().matches("broker token").count() >= 1
    });
    std::thread::sleep(Duration::from_millis(0));
    let (code, _) = http(&w.addr, "GET", "/readyz", &[], "");
    assert_eq!(code, 503);
    let stats = kite.stats();
    assert_eq!(stats["twofa_fail"], 1, "{stats}");
    assert_eq!(stats["locked_users"].as_array().unwrap().len(), 0);
}

#[test]
fn a_restarted_warden_reuses_the_valid_token() {
    let kite = KiteSandbox::start(&[]);
    let cfg = kite.backend_stack_config("totp", GOOD_TOTP, "signal");
    let mut w = Warden::start(&cfg);
    w.wait_state("backend", "running", T);
    let token = w.env_token();
    w.signal(libc::SIGTERM);
    w.wait_exit(T);
    // Same directory, same config: a second warden.
    let dir = w.dir.path().to_path_buf();
    let w2 = Warden::start_with(
        &std::fs::read_to_string(&w.config).unwrap(),
        |d| {
            for f in [".env", ".warden/token.json"] {
                std::fs::create_dir_all(d.join(".warden")).unwrap();
                std::fs::copy(dir.join(f), d.join(f)).unwrap();
            }
        },
        Vec::new(),
    );
    w2.wait_state("backend", "running", T);
    assert_eq!(w2.env_token(), token);
    assert_eq!(kite.stats()["sessions_created"], 1, "no second login");
    assert!(w2.logs().contains("reusing the stored token"));
}

#[test]
fn manual_login_through_login_and_callback() {
    let kite = KiteSandbox::start(&[]);
    let w = Warden::start(&kite.backend_stack_config("manual", GOOD_TOTP, "signal"));
    wait_until("needs_login", T, || {
        w.status()["token"]["state"] == "needs_login"
    });

    // Wrong or missing state: 400, token untouched.
    let (code, _) = http(
        &w.addr,
        "GET",
        "/kite/callback?request_token=x&action=login&status=success&state=forged",
        &[],
        "",
    );
    assert_eq!(code, 400);
    let (code, _) = http(
        &w.addr,
        "GET",
        "/kite/callback?request_token=x&action=login&status=success",
        &[],
        "",
    );
    assert_eq!(code, 400);

    let (code, _) = http(&w.addr, "GET", "/login", &[], "");
    assert_eq!(code, 302);
    let raw = raw_location(&w.addr, "/login");
    assert!(
        raw.starts_with(&format!(
            "http://{}/connect/login?v=3&api_key=kitefront&redirect_params=state%3D",
            kite.addr
        )),
        "{raw}"
    );
    let nonce = raw.rsplit("state%3D").next().unwrap().to_string();

    // The person logs in at Kite; we drive the same endpoints their browser would.
    let rt_token = kite.request_token();
    let path = format!(
        "/kite/callback?request_token={}&action=login&status=success&state={nonce}",
        rt_token.expose()
    );
    let (code, body) = http(&w.addr, "GET", &path, &[], "");
    assert_eq!(code, 302, "{body}");
    wait_until("valid", T, || w.status()["token"]["state"] == "valid");
    w.wait_state("backend", "running", T);
    wait_until("healthy", T, || w.program("backend")["health"] == "healthy");
    assert_eq!(w.status()["token"]["source"], "manual");
    // The nonce is single-use.
    let (code, _) = http(&w.addr, "GET", &path, &[], "");
    assert_eq!(code, 400);
}

fn raw_location(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or("")
        .trim()
        .to_string()
}

#[test]
fn an_external_env_change_with_a_valid_token_is_adopted() {
    let kite = KiteSandbox::start(&[]);
    let w = Warden::start(&kite.backend_stack_config("totp", GOOD_TOTP, "signal"));
    w.wait_state("backend", "running", T);
    wait_for_fresh_totp_step();
    // Someone runs their own refresh script: a new session, written into .env by hand. warden
    // is paused meanwhile: it re-logs in through its web session within milliseconds of its
    // token dying, which would race a script slower than this test's few lines. Resumed, it
    // must find and adopt the script's token (never log in over it).
    w.signal(libc::SIGSTOP);
    let rt_tok = kite.request_token();
    let kcfg = kite.kite_config();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = rt.block_on(async {
        let client = warden::token::kite::KiteClient::new(&kcfg);
        client
            .exchange(rt_tok.expose(), &kcfg.api_secret)
            .await
            .unwrap()
            .access_token
    });
    let env = w.dir.path().join(".env");
    let text = std::fs::read_to_string(&env).unwrap();
    let old = w.env_token();
    std::fs::write(&env, text.replace(&old, token.expose())).unwrap();
    w.signal(libc::SIGCONT);
    wait_until("adopted", T, || w.status()["token"]["source"] == "env_file");
    w.wait_log("sending SIGHUP for the new token", T);
    wait_until("backend healthy", T, || {
        w.program("backend")["health"] == "healthy"
    });
    assert_eq!(
        kite.stats()["sessions_created"],
        2,
        "warden itself did not log in again"
    );
}

#[test]
fn a_callback_for_another_user_is_refused_logged_out_and_changes_nothing() {
    let kite = KiteSandbox::start(&[]);
    // warden expects ZZ9999; the only user who can log in at the sandbox is AB1234.
    let cfg = kite
        .backend_stack_config("manual", GOOD_TOTP, "signal")
        .replace("user_id = \"AB1234\"", "user_id = \"ZZ9999\"");
    let w = Warden::start(&cfg);
    wait_until("needs_login", T, || {
        w.status()["token"]["state"] == "needs_login"
    });
    let location = raw_location(&w.addr, "/login");
    let nonce = location.rsplit("state%3D").next().unwrap().to_string();
    let rt_token = kite.request_token();
    let path = format!(
        "/kite/callback?request_token={}&action=login&status=success&state={nonce}",
        rt_token.expose()
    );
    let (code, body) = http(&w.addr, "GET", &path, &[], "");
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        kite.stats()["logouts"],
        1,
        "the foreign session was logged out"
    );
    assert_eq!(w.status()["token"]["state"], "needs_login");
    assert!(w.env_token().is_empty(), "the env file was not touched");
}

#[test]
fn a_signalled_program_that_does_not_recover_within_verify_timeout_is_restarted() {
    let kite = KiteSandbox::start(&[]);
    // The backend reads a private copy of .env taken at start, so a SIGHUP cannot give it the
    // new token; only a restart (which copies .env again) can.
    let cfg = kite.backend_stack_config("totp", GOOD_TOTP, "signal").replacen(
        &format!("command = [\"{BIN}\", \"sandbox\", \"backend\""),
        &format!("command = [\"sh\", \"-c\", \"cp .env stale.env && exec \\\"$0\\\" \\\"$@\\\"\", \"{BIN}\", \"sandbox\", \"backend\""),
        1,
    ).replace("--env-file\", \".env\"", "--env-file\", \"stale.env\"");
    let w = Warden::start(&cfg);
    let pid = w.wait_state("backend", "running", T)["pid"].clone();
    wait_for_fresh_totp_step();
    kite.expire();
    w.wait_log("sending SIGHUP for the new token", T);
    wait_until("restart after verify_timeout", T, || {
        let p = w.program("backend");
        p["pid"] != pid && p["health"] == "healthy"
    });
    assert!(
        w.logs().contains("after the token hand-over; restarting"),
        "{}",
        w.logs()
    );
    let (_, metrics) = http(&w.addr, "GET", "/metrics", &[], "");
    assert!(
        metrics.contains(r#"warden_program_restarts_total{program="backend",reason="token"} 1"#),
        "{metrics}"
    );
}
