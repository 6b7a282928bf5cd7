//! `provider = "angelone"` (SPEC §9.2) through the real binary against the real sandbox Angel
//! One (`warden sandbox angelone`), both as processes, with a tiny backend
//! (`tests/python/angelone_backend.py`, standard library only) whose health check asks Angel
//! One with the JWT from the env file.
//!
//! Covered: the TOTP login (`loginByPassword`) writes the JWT under `ANGELONE_JWT` and the
//! feed token under `ANGELONE_FEED_TOKEN`, token.json has `source` and the JWT's `exp`, and
//! keeps the refresh token; an expired JWT, which Angel One answers with HTTP 200 and
//! `AG8002`, is seen by validation and refreshed exactly once through `generateTokens` (no
//! TOTP); a dead refresh token costs exactly one TOTP login; a restarted warden refreshes with
//! the refresh token it stored; a wrong PIN and a wrong TOTP are each submitted once, then
//! refresh requests answer 409; a warden restarted inside a TOTP step submits no code again;
//! the manual publisher login (`/login` → the sandbox's page → `/angelone/callback`) writes
//! both tokens; a callback without a valid state, or with a session of another client, changes
//! nothing (that session is logged out); the official SDK (smartapi-python) reads the profile
//! with the JWT and feed token warden wrote, before and after a refresh; Angel One's rate limit
//! (HTTP 403 with a plain-text body) on the login is retried later, never taken as a rejection.
//!
//! Not here: the clock-skew refusal (the Angel One sandbox has no `--clock-skew`; the guard
//! itself is the keeper's and is tested against Kite in tests/account_safety.rs) and Kite's
//! kept web session (Angel One has none: its refresh token plays that part).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;
use warden::sandbox::angelone::{DEFAULT_CLIENT_CODE, DEFAULT_PIN, DEFAULT_TOTP_SECRET};
use warden::token::login::{unix_now, Totp};

const T: Duration = Duration::from_secs(30);
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// The sandbox, sending publisher logins back to a warden on `127.0.0.1:{warden_port}`.
fn sandbox(warden_port: u16, extra: &[&str]) -> BrokerSandbox {
    let redirect = format!("http://127.0.0.1:{warden_port}/angelone/callback");
    let mut args = vec!["--redirect-url", redirect.as_str()];
    args.extend_from_slice(extra);
    BrokerSandbox::start("angelone", &args)
}

/// What the warden config says about the broker: the login mode and the secrets it submits.
struct Login<'a> {
    mode: &'a str,
    pin: &'a str,
    totp_secret: &'a str,
}

const TOTP: Login<'static> = Login {
    mode: "totp",
    pin: DEFAULT_PIN,
    totp_secret: DEFAULT_TOTP_SECRET,
};

/// A warden on `127.0.0.1:{port}` with `[token] provider = "angelone"` for the sandbox's
/// client, and the backend when `backend` is set.
fn config(s: &BrokerSandbox, port: u16, login: &Login, backend: bool) -> String {
    let api = s.url();
    let key = s.printed("api_key");
    let programs = if backend {
        backend_program(&api, key)
    } else {
        String::new()
    };
    format!(
        r#"[http]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[token]
provider = "angelone"
env_file = ".env"
min_interval = "0s"
check_interval = "1h"
max_attempts = 5
verify_timeout = "5s"

[token.angelone]
api_key = "{key}"
client_code = "{DEFAULT_CLIENT_CODE}"
login = "{mode}"
pin = "{pin}"
totp_secret = "{totp}"
api_base = "{api}"
login_base = "{api}"
{programs}"#,
        mode = login.mode,
        pin = login.pin,
        totp = login.totp_secret,
    )
}

fn backend_program(api: &str, key: &str) -> String {
    let script = python_script("angelone_backend.py");
    let port = free_port();
    format!(
        r#"
[programs.backend]
command = ["python3", "{script}", "{port}", ".env", "{api}", "{key}"]
env = {{ PYTHONDONTWRITEBYTECODE = "1" }}
on_token_change = "signal"
backoff_initial = "100ms"
[programs.backend.health]
url = "http://127.0.0.1:{port}/api/system/health"
interval = "200ms"
timeout = "2s"
initial_delay = "100ms"
failure_threshold = 100
auth_status = [403]
"#,
        script = script.display()
    )
}

/// `KEY`'s value in the warden's `.env` ("" when absent).
fn env_value(w: &Warden, key: &str) -> String {
    let text = std::fs::read_to_string(w.dir.path().join(".env")).unwrap_or_default();
    let prefix = format!("{key}=");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or("")
        .to_string()
}

fn token_json(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join(".warden/token.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A sandbox counter; the sandbox lists only those that were ever bumped.
fn count(stats: &Value, name: &str) -> u64 {
    stats[name].as_u64().unwrap_or(0)
}

fn stat(s: &BrokerSandbox, name: &str) -> u64 {
    count(&s.stats(), name)
}

fn post(w: &Warden, path: &str) -> (u16, Value) {
    let (code, body) = http(&w.addr, "POST", path, &[], "");
    (code, serde_json::from_str(&body).unwrap_or_default())
}

fn token_state(w: &Warden) -> Value {
    w.status()["token"]["state"].clone()
}

/// No token, feed token or refresh token of this run in the log, the status or the metrics.
fn assert_no_leak(w: &Warden, secrets: &[String]) {
    let logs = w.logs();
    let status = w.status().to_string();
    let metrics = http(&w.addr, "GET", "/metrics", &[], "").1;
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!logs.contains(s.as_str()), "a secret leaked into the log");
        assert!(
            !status.contains(s.as_str()),
            "a secret leaked into the status"
        );
        assert!(
            !metrics.contains(s.as_str()),
            "a secret leaked into the metrics"
        );
    }
}

/// `python3` runs the backend; without it the tests that need it are skipped.
fn have_python(test: &str) -> bool {
    match python_modules(&["json", "http.server", "urllib.request"]) {
        Ok(()) => true,
        Err(why) => {
            skip(test, &why);
            false
        }
    }
}

/// A second warden on a copy of `w`'s state (`files`, relative to its directory).
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
fn the_totp_login_writes_the_jwt_and_the_feed_token_and_token_json_dates_it_by_exp() {
    if !have_python("the_totp_login_writes_the_jwt_and_the_feed_token") {
        return;
    }
    // A PIN long enough that no pid, port or timestamp in the log can contain it by chance
    // (Angel One's 4 digits can), so the leak check below cannot be fooled either way.
    const PIN: &str = "58203917";
    let port = free_port();
    let s = sandbox(port, &["--pin", PIN]);
    let login = Login { pin: PIN, ..TOTP };
    let w = Warden::start(&config(&s, port, &login, true));
    let backend = w.wait_state("backend", "running", T);
    wait_until("backend healthy", T, || {
        w.program("backend")["health"] == "healthy"
    });

    let jwt = env_value(&w, "ANGELONE_JWT");
    let feed = env_value(&w, "ANGELONE_FEED_TOKEN");
    assert_eq!(jwt.split('.').count(), 3, "a raw JWT, no Bearer prefix");
    assert!(!feed.is_empty(), "the feed token beside the JWT");
    let saved = token_json(w.dir.path());
    assert_eq!(saved["source"], "totp", "{saved}");
    assert_eq!(saved["user_id"], DEFAULT_CLIENT_CODE);
    assert_eq!(saved["access_token"], jwt.as_str());
    let exp = jwt_claims(&jwt)["exp"].as_i64().unwrap();
    let expires: jiff::Timestamp = saved["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.as_second(), exp, "expires_at is the JWT's exp");
    let refresh = saved["refresh_token"].as_str().unwrap_or("").to_string();
    assert!(!refresh.is_empty(), "the refresh token is kept: {saved}");
    let env_text = std::fs::read_to_string(w.dir.path().join(".env")).unwrap();
    assert!(
        !env_text.contains(&refresh),
        "the refresh token stays out of the env file"
    );

    let status = w.status();
    assert_eq!(status["token"]["state"], "valid", "{status}");
    assert_eq!(status["token"]["user_id"], DEFAULT_CLIENT_CODE);
    let stats = s.stats();
    assert_eq!(count(&stats, "login_ok"), 1, "{stats}");
    assert_eq!(count(&stats, "login_fail"), 0, "{stats}");
    assert_eq!(backend["restarts"], 0);
    assert_no_leak(&w, &[jwt, feed, refresh, PIN.to_string()]);
}

#[test]
fn an_expired_jwt_answered_with_http_200_is_refreshed_once_through_generate_tokens() {
    if !have_python("an_expired_jwt_answered_with_http_200_is_refreshed_once") {
        return;
    }
    let port = free_port();
    let s = sandbox(port, &[]);
    let w = Warden::start(&config(&s, port, &TOTP, true));
    let pid = w.wait_state("backend", "running", T)["pid"].clone();
    wait_until("backend healthy", T, || {
        w.program("backend")["health"] == "healthy"
    });
    let (old_jwt, old_feed) = (
        env_value(&w, "ANGELONE_JWT"),
        env_value(&w, "ANGELONE_FEED_TOKEN"),
    );

    // The JWT dies; getProfile says so with HTTP 200 and AG8002 in the body.
    s.expire("access");
    let r = s.call(
        "GET",
        "/rest/secure/angelbroking/user/v1/getProfile",
        &[
            ("X-PrivateKey", s.printed("api_key")),
            ("Authorization", &format!("Bearer {old_jwt}")),
        ],
        "",
    );
    assert_eq!(r.status, 200);
    assert!(r.body.contains("AG8002"), "{}", r.body);

    wait_until("a new JWT in .env", T, || {
        let t = env_value(&w, "ANGELONE_JWT");
        !t.is_empty() && t != old_jwt
    });
    wait_until("backend healthy again", T, || {
        w.program("backend")["health"] == "healthy"
    });
    let new_feed = env_value(&w, "ANGELONE_FEED_TOKEN");
    assert!(
        !new_feed.is_empty() && new_feed != old_feed,
        "a new feed token too"
    );
    assert_eq!(token_json(w.dir.path())["source"], "refresh_token");
    let p = w.program("backend");
    assert_eq!(p["pid"], pid, "signal mode keeps the process");
    assert_eq!(p["restarts"], 0);
    let stats = s.stats();
    assert_eq!(
        count(&stats, "refresh_ok"),
        1,
        "refreshed exactly once: {stats}"
    );
    assert_eq!(
        count(&stats, "login_ok"),
        1,
        "no TOTP login for a refresh: {stats}"
    );
    assert_eq!(count(&stats, "access_tokens_issued"), 2, "{stats}");
    let metrics = http(&w.addr, "GET", "/metrics", &[], "").1;
    assert!(
        metrics.contains("kind=\"refresh_token\""),
        "the refresh is counted as such:\n{metrics}"
    );
    assert_no_leak(&w, &[old_jwt, env_value(&w, "ANGELONE_JWT"), new_feed]);
}

#[test]
fn a_dead_refresh_token_costs_exactly_one_totp_login() {
    let port = free_port();
    let s = sandbox(port, &[]);
    let w = Warden::start(&config(&s, port, &TOTP, false));
    wait_until("valid", T, || token_state(&w) == "valid");
    let old = env_value(&w, "ANGELONE_JWT");
    s.expire("all");
    let (code, _) = post(&w, "/api/v1/token/refresh");
    assert_eq!(code, 202);
    // The next login needs the next TOTP step: warden waits for it by itself.
    wait_until("a new JWT from a login", Duration::from_secs(45), || {
        let t = env_value(&w, "ANGELONE_JWT");
        !t.is_empty() && t != old && token_state(&w) == "valid"
    });
    let stats = s.stats();
    assert_eq!(count(&stats, "refresh_fail"), 1, "{stats}");
    assert_eq!(count(&stats, "login_ok"), 2, "{stats}");
    assert_eq!(count(&stats, "login_fail"), 0, "{stats}");
    assert_eq!(token_json(w.dir.path())["source"], "totp");
}

#[test]
fn a_restarted_warden_refreshes_with_the_refresh_token_it_stored() {
    let port = free_port();
    let s = sandbox(port, &[]);
    let mut w = Warden::start(&config(&s, port, &TOTP, false));
    wait_until("valid", T, || token_state(&w) == "valid");
    let old = env_value(&w, "ANGELONE_JWT");
    s.expire("access");
    let w2 = restart_on_state(
        &mut w,
        &[".warden/token.json", ".warden/login.json", ".env"],
    );
    wait_until("valid after the restart", T, || token_state(&w2) == "valid");
    let new = env_value(&w2, "ANGELONE_JWT");
    assert!(!new.is_empty() && new != old);
    let stats = s.stats();
    assert_eq!(count(&stats, "refresh_ok"), 1, "{stats}");
    assert_eq!(
        count(&stats, "login_ok"),
        1,
        "no TOTP after the restart: {stats}"
    );
    assert_eq!(token_json(w2.dir.path())["source"], "refresh_token");
}

/// A refused credential: one submission, then every refresh request is refused with 409 and
/// submits nothing; the secret is nowhere in warden's files or output.
fn refused_once(login: Login, code: &str, wrong: &str) {
    let port = free_port();
    let s = sandbox(port, &[]);
    let w = Warden::start(&config(&s, port, &login, false));
    wait_until("needs_login", T, || token_state(&w) == "needs_login");
    assert_eq!(stat(&s, "login_fail"), 1);
    let status = w.status();
    let blocked = status["token"]["blocked"].as_str().unwrap_or("");
    assert!(blocked.contains(code), "{status}");

    let (c, body) = post(&w, "/api/v1/token/refresh");
    assert_eq!(c, 409, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("blocked"),
        "{body}"
    );
    w.signal(libc::SIGUSR1);
    w.wait_log("automated login is blocked", T);
    let o = warden_cli(&["token", "refresh"], &w.config);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let stats = s.stats();
    assert_eq!(count(&stats, "login_fail"), 1, "submitted once: {stats}");
    assert_eq!(count(&stats, "login_ok"), 0, "{stats}");
    assert_eq!(stats["locked_users"].as_array().unwrap().len(), 0);
    let memory = std::fs::read_to_string(w.dir.path().join(".warden/login.json")).unwrap();
    assert!(!memory.contains(wrong), "{memory}");
    assert!(!w.logs().contains(wrong), "the secret leaked into the log");
}

#[test]
fn a_wrong_pin_is_submitted_once_then_refresh_requests_answer_409() {
    let login = Login {
        pin: "9999",
        ..TOTP
    };
    refused_once(login, "AB1007", "9999");
}

#[test]
fn a_wrong_totp_is_submitted_once_then_refresh_requests_answer_409() {
    let login = Login {
        totp_secret: "JBSWY3DPEHPK3PXP",
        ..TOTP
    };
    refused_once(login, "AB1050", "JBSWY3DPEHPK3PXP");
}

#[test]
fn a_warden_restarted_inside_a_totp_step_submits_no_code_again() {
    let port = free_port();
    let s = sandbox(port, &[]);
    let cfg = config(&s, port, &TOTP, false);
    // Start at the beginning of a step so that the login and the restart share it.
    wait_for_fresh_totp_step();
    let mut w = Warden::start(&cfg);
    wait_until("first login", T, || stat(&s, "login_ok") == 1);
    let step = Totp::step_of(unix_now());
    // Only the login memory is carried over: the new warden must log in again.
    let w2 = restart_on_state(&mut w, &[".warden/login.json"]);
    assert_eq!(
        Totp::step_of(unix_now()),
        step,
        "the restart took longer than the TOTP step; the test proves nothing"
    );
    wait_until("a login in a later step", Duration::from_secs(45), || {
        token_state(&w2) == "valid"
    });
    let stats = s.stats();
    assert_eq!(
        count(&stats, "login_fail"),
        0,
        "a TOTP code was replayed: {stats}"
    );
    assert_eq!(count(&stats, "login_ok"), 2, "{stats}");
}

/// The publisher login as a browser walks it: warden's `/login`, the sandbox's page, the form
/// posted as `client`, the redirect to warden's callback. Returns the callback's answer.
fn publisher_login(w: &Warden, s: &BrokerSandbox, client: &str) -> Resp {
    let r = request(&w.addr, "GET", "/login", &[], "");
    assert_eq!(r.status, 302, "/login: {}", r.body);
    let to_broker = r.header("location").unwrap().to_string();
    assert!(
        to_broker.starts_with(&format!("{}/publisher-login?api_key=", s.url())),
        "{to_broker}"
    );
    let state = query_param(&to_broker, "state").expect("the login URL carries a state");
    let (_, path) = split_url(&to_broker);
    let page = s.call("GET", &path, &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    let form = format!(
        "api_key={}&state={}&user_id={client}&pin={}&totp={}",
        enc(s.printed("api_key")),
        enc(&state),
        enc(s.printed("pin")),
        totp_code(s.printed("totp_secret"), 0)
    );
    let r = s.call("POST", "/publisher-login", &[FORM], &form);
    assert_eq!(r.status, 302, "{}", r.body);
    let back = r.header("location").unwrap();
    assert!(
        back.starts_with(&format!("http://{}/angelone/callback?", w.addr)),
        "{back}"
    );
    let (_, path) = split_url(back);
    request(&w.addr, "GET", &path, &[], "")
}

fn manual() -> Login<'static> {
    Login {
        mode: "manual",
        ..TOTP
    }
}

#[test]
fn the_manual_publisher_login_writes_the_jwt_and_the_feed_token() {
    let port = free_port();
    let s = sandbox(port, &[]);
    let w = Warden::start(&config(&s, port, &manual(), false));
    wait_until("needs_login", T, || token_state(&w) == "needs_login");
    assert_eq!(
        stat(&s, "login_ok"),
        0,
        "manual mode never logs in by itself"
    );

    let r = publisher_login(&w, &s, DEFAULT_CLIENT_CODE);
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.header("location"), Some("/"));
    let jwt = env_value(&w, "ANGELONE_JWT");
    let feed = env_value(&w, "ANGELONE_FEED_TOKEN");
    assert_eq!(jwt.split('.').count(), 3);
    assert!(!feed.is_empty());
    let saved = token_json(w.dir.path());
    assert_eq!(saved["source"], "manual", "{saved}");
    let expires: jiff::Timestamp = saved["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        expires.as_second(),
        jwt_claims(&jwt)["exp"].as_i64().unwrap()
    );
    assert_eq!(token_state(&w), "valid");
    assert_eq!(w.status()["token"]["user_id"], DEFAULT_CLIENT_CODE);
    assert_no_leak(&w, &[jwt, feed]);
}

#[test]
fn a_callback_without_its_state_or_with_another_clients_session_changes_nothing() {
    let port = free_port();
    // The sandbox's one client is not the configured one.
    let s = sandbox(port, &["--client-code", "S999999"]);
    let w = Warden::start(&config(&s, port, &manual(), false));
    wait_until("needs_login", T, || token_state(&w) == "needs_login");

    let forged = request(
        &w.addr,
        "GET",
        "/angelone/callback?auth_token=a.b.c&feed_token=f&state=forged",
        &[],
        "",
    );
    assert_eq!(forged.status, 400, "{}", forged.body);
    let missing = request(
        &w.addr,
        "GET",
        "/angelone/callback?auth_token=a.b.c",
        &[],
        "",
    );
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert_eq!(stat(&s, "profile_ok") + stat(&s, "profile_fail"), 0);

    let r = publisher_login(&w, &s, "S999999");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(stat(&s, "logouts"), 1, "the foreign session is logged out");
    assert_eq!(env_value(&w, "ANGELONE_JWT"), "");
    assert_eq!(env_value(&w, "ANGELONE_FEED_TOKEN"), "");
    assert!(!w.dir.path().join(".warden/token.json").exists());
    assert_eq!(token_state(&w), "needs_login");
}

#[test]
fn the_official_sdk_works_with_what_warden_writes_before_and_after_a_refresh() {
    let test = "the_official_sdk_works_with_what_warden_writes";
    let py = match sdk_python("angelone", "SmartApi") {
        Ok(py) => py,
        Err(why) => return skip(test, &why),
    };
    let port = free_port();
    let s = sandbox(port, &[]);
    let w = Warden::start(&config(&s, port, &TOTP, false));
    wait_until("valid", T, || token_state(&w) == "valid");
    let env_file = w.dir.path().join(".env");
    let args = [
        s.url(),
        s.printed("api_key").to_string(),
        DEFAULT_CLIENT_CODE.to_string(),
        env_file.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_sdk_script(&py, "angelone_env_sdk.py", &args);

    let old = env_value(&w, "ANGELONE_JWT");
    s.expire("access");
    let (code, _) = post(&w, "/api/v1/token/refresh");
    assert_eq!(code, 202);
    wait_until("a refreshed JWT", T, || {
        let t = env_value(&w, "ANGELONE_JWT");
        !t.is_empty() && t != old && token_state(&w) == "valid"
    });
    run_sdk_script(&py, "angelone_env_sdk.py", &args);
    assert_eq!(stat(&s, "refresh_ok"), 1);
    assert_eq!(stat(&s, "login_ok"), 1);
}

#[test]
fn the_rate_limits_plain_text_403_on_the_login_is_retried_not_a_rejection() {
    let port = free_port();
    let s = sandbox(port, &[]);
    s.fault(
        r#"{"path": "/rest/auth/angelbroking/user/v1/loginByPassword", "status": 403, "count": 1}"#,
    );
    let w = Warden::start(&config(&s, port, &TOTP, false));
    w.wait_log("exceeding access rate", T);
    assert!(w.status()["token"]["blocked"].is_null(), "{}", w.status());
    // The code of the refused attempt is spent: the retry waits for a later step.
    wait_until("valid after the retry", Duration::from_secs(60), || {
        token_state(&w) == "valid"
    });
    let stats = s.stats();
    assert_eq!(count(&stats, "faults_served"), 1, "{stats}");
    assert_eq!(count(&stats, "login_ok"), 1, "{stats}");
    assert_eq!(count(&stats, "login_fail"), 0, "{stats}");
}
