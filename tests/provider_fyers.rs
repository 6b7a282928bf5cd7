//! The Fyers provider (SPEC §9.2) through the real binary against the real `warden sandbox
//! fyers`, with a tiny program that checks the env file's token against the sandbox's profile
//! endpoint at every probe (`tests/python/fyers_health.py`, on_token_change = "watch").
//!
//! Checked: the manual login (`/login` → the sandbox's generate-authcode page →
//! `/fyers/callback`) writes the raw token into the env file and keeps the refresh token in
//! token.json only, with `expires_at` from the JWT; a dead token (seen by validation, by its
//! body code) is renewed through the refresh token with no person, also by a warden restarted
//! after it died; the refresh API switched off (`--refresh-disabled`) or a lapsed refresh token
//! (`--refresh-ttl`) asks a person (needs_login, the webhook with the /login link, the status
//! page's button) and Fyers is not asked again; a wrong PIN is submitted once and then blocks
//! the refresh path (the refresh API answers 409, a restart keeps the block, a new PIN in the
//! config lifts it); an outage of the
//! refresh endpoint is retried with the same refresh token; a session of another user is
//! refused and logged out.
//!
//! Not applicable to Fyers: a TOTP step replayed after a restart (warden never submits a TOTP
//! code to Fyers: its only login is a person's, and the refresh token takes the PIN alone).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
const WRONG_PIN: &str = "PIN-WRONG-31";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// `warden sandbox fyers` whose registered redirect is warden's callback on `port`.
fn sandbox(port: u16, extra: &[&str]) -> BrokerSandbox {
    let redirect = format!("http://127.0.0.1:{port}/fyers/callback");
    let mut args = vec!["--redirect-url", redirect.as_str()];
    args.extend_from_slice(extra);
    BrokerSandbox::start("fyers", &args)
}

/// A warden on `127.0.0.1:{port}` keeping a Fyers token for `user_id` with `pin` (empty: no
/// refresh path), validating every second, with the Fyers program; `extra` is appended.
fn config(s: &BrokerSandbox, port: u16, user_id: &str, pin: &str, extra: &str) -> String {
    let api_base = format!("{}/api/v3", s.url());
    let client_id = s.printed("client_id");
    let secret_key = s.printed("secret_key");
    let app = free_port();
    let script = python_script("fyers_health.py");
    let script = script.display();
    format!(
        r#"[http]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[token]
provider = "fyers"
env_file = ".env"
check_interval = "1s"
min_interval = "0s"
verify_timeout = "10s"

[token.fyers]
client_id = "{client_id}"
secret_key = "{secret_key}"
user_id = "{user_id}"
pin = "{pin}"
api_base = "{api_base}"

[programs.app]
command = ["python3", "{script}", "{app}", ".env", "{api_base}", "{client_id}"]
on_token_change = "watch"
backoff_initial = "100ms"
[programs.app.health]
url = "http://127.0.0.1:{app}/health"
interval = "200ms"
timeout = "2s"
initial_delay = "100ms"
failure_threshold = 100
{extra}"#
    )
}

/// What a person's browser does: warden's `/login`, the sandbox's login page (its hidden
/// fields, the sandbox user's PIN and TOTP code), the redirect back to warden's
/// `/fyers/callback`, with the TOTP code `step` steps from now (the sandbox never takes a
/// code twice). Returns warden's answer to the callback.
fn manual_login(w: &Warden, s: &BrokerSandbox, step: i64) -> Resp {
    let r = request(&w.addr, "GET", "/login", &[], "");
    assert_eq!(r.status, 302, "/login: {}", r.body);
    let login_url = r.header("location").unwrap().to_string();
    let (addr, path) = split_url(&login_url);
    assert_eq!(addr, s.addr, "/login leads to Fyers: {login_url}");
    assert!(
        path.starts_with("/api/v3/generate-authcode?"),
        "{login_url}"
    );
    assert_eq!(
        query_param(&login_url, "client_id").as_deref(),
        Some(s.printed("client_id"))
    );
    assert_eq!(
        query_param(&login_url, "redirect_uri").as_deref(),
        Some(s.printed("redirect_url"))
    );
    assert_eq!(
        query_param(&login_url, "response_type").as_deref(),
        Some("code")
    );
    let page = request(&addr, "GET", &path, &[], "");
    assert_eq!(page.status, 200, "the login page: {}", page.body);
    let hidden = ["client_id", "redirect_uri", "state"]
        .map(|name| format!("{name}={}", enc(&hidden_value(&page.body, name))))
        .join("&");
    let form = format!(
        "{hidden}&user_id={}&pin={}&totp={}",
        s.printed("user_id"),
        s.printed("pin"),
        totp_code(s.printed("totp_secret"), step)
    );
    let r = request(&addr, "POST", "/api/v3/generate-authcode", &[FORM], &form);
    assert_eq!(r.status, 302, "the login form: {}", r.body);
    let back = r.header("location").unwrap().to_string();
    let (addr, path) = split_url(&back);
    assert_eq!(
        addr, w.addr,
        "Fyers sends the browser back to warden: {back}"
    );
    assert!(path.starts_with("/fyers/callback?"), "{back}");
    assert_eq!(
        query_param(&back, "state"),
        query_param(&login_url, "state"),
        "state comes back"
    );
    request(&w.addr, "GET", &path, &[], "")
}

/// The value of the hidden field `name` in the sandbox's login form.
fn hidden_value(html: &str, name: &str) -> String {
    let needle = format!(r#"name="{name}" value=""#);
    let at = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} in the login form:\n{html}"));
    let rest = &html[at + needle.len()..];
    rest[..rest.find('"').unwrap()].replace("&amp;", "&")
}

/// Wait until warden's own validation (every second) has found the dead token `n` more
/// times (the program's probes ask the sandbox's profile endpoint too, so its counters
/// cannot tell).
fn wait_validations(w: &Warden, n: usize) {
    let rejected = |w: &Warden| {
        w.logs()
            .matches("the broker rejected the current token")
            .count()
    };
    let seen = rejected(w);
    wait_until(&format!("{n} more validations"), T, || {
        rejected(w) >= seen + n
    });
}

fn stat(s: &BrokerSandbox, name: &str) -> u64 {
    s.stats()[name].as_u64().unwrap_or(0)
}

fn token_json(w: &Warden) -> Value {
    let text = std::fs::read_to_string(w.dir.path().join(".warden/token.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn env_text(w: &Warden) -> String {
    std::fs::read_to_string(w.dir.path().join(".env")).unwrap_or_default()
}

fn env_token(w: &Warden) -> String {
    env_text(w)
        .lines()
        .find_map(|l| l.strip_prefix("FYERS_ACCESS_TOKEN="))
        .unwrap_or("")
        .to_string()
}

fn token_state(w: &Warden) -> String {
    w.status()["token"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn wait_token_state(w: &Warden, state: &str) {
    wait_until(&format!("token {state}"), T, || token_state(w) == state);
}

/// Stop `w` and start a warden on a copy of its state (the env file, token.json,
/// login.json): what a restart of the same installation sees.
fn restart(w: &mut Warden) -> Warden {
    let config = std::fs::read_to_string(&w.config).unwrap();
    w.signal(libc::SIGTERM);
    w.wait_exit(T);
    let old = w.dir.path().to_path_buf();
    Warden::start_with(
        &config,
        |d| {
            std::fs::create_dir_all(d.join(".warden")).unwrap();
            for f in [".env", ".warden/token.json", ".warden/login.json"] {
                if old.join(f).exists() {
                    std::fs::copy(old.join(f), d.join(f)).unwrap();
                }
            }
        },
        Vec::new(),
    )
}

/// Log in by hand and wait until the program runs healthy on the new token.
fn logged_in(w: &Warden, s: &BrokerSandbox) -> String {
    wait_token_state(w, "needs_login");
    let r = manual_login(w, s, 0);
    assert_eq!(r.status, 302, "callback: {}", r.body);
    assert_eq!(r.header("location"), Some("/"));
    wait_token_state(w, "valid");
    w.wait_state("app", "running", T);
    wait_until("the program is healthy", T, || {
        w.program("app")["health"] == "healthy"
    });
    env_token(w)
}

/// A webhook receiver: every POST body it got, as JSON.
struct Webhook {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let sink = bodies.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        sink.lock().unwrap().push(v);
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Webhook { url, bodies }
    }

    fn events(&self, event: &str) -> Vec<Value> {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .filter(|b| b["event"] == event)
            .cloned()
            .collect()
    }
}

fn python_or_skip(test: &str) -> bool {
    match python_modules(&["json"]) {
        Ok(()) => true,
        Err(why) => {
            skip(test, &why);
            false
        }
    }
}

#[test]
fn manual_login_writes_the_env_file_and_keeps_the_refresh_token_in_token_json() {
    if !python_or_skip("manual_login_writes_the_env_file_and_keeps_the_refresh_token_in_token_json")
    {
        return;
    }
    let port = free_port();
    let s = sandbox(port, &[]);
    let w = Warden::start(&config(
        &s,
        port,
        s.printed("user_id"),
        s.printed("pin"),
        "",
    ));
    wait_token_state(&w, "needs_login");
    let status = w.status();
    assert_eq!(status["token"]["login"], "manual", "{status}");
    // The status page offers the login.
    let (_, page) = http(&w.addr, "GET", "/", &[], "");
    assert!(page.contains(r#"href="/login""#), "{page}");
    // A callback without the state warden issued is refused, and changes nothing.
    let (code, _) = http(&w.addr, "GET", "/fyers/callback?s=ok&auth_code=x", &[], "");
    assert_eq!(code, 400);

    let token = logged_in(&w, &s);
    assert!(
        token.split('.').count() == 3,
        "the raw JWT, no APPID: prefix"
    );
    assert!(stat(&s, "profile_ok") > 0);

    let rec = token_json(&w);
    assert_eq!(rec["source"], "manual", "{rec}");
    assert_eq!(rec["user_id"], s.printed("user_id"));
    assert_eq!(rec["access_token"], token.as_str());
    let refresh = rec["refresh_token"]
        .as_str()
        .expect("token.json keeps the refresh token");
    assert!(!refresh.is_empty());
    // expires_at is the JWT's exp (06:00 IST next day in the sandbox, as at Fyers).
    let exp = jwt_claims(&token)["exp"].as_i64().unwrap();
    let expires_at: jiff::Timestamp = rec["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires_at.as_second(), exp, "{rec}");
    assert_eq!(exp % 86_400, 1_800, "06:00 IST is 00:30 UTC");
    let mode = std::fs::metadata(w.dir.path().join(".warden/token.json"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // The env file has the token and nothing else of the login.
    let env = env_text(&w);
    assert!(
        !env.contains(refresh),
        "the refresh token stays out of the env file"
    );
    assert_eq!(env.trim(), format!("FYERS_ACCESS_TOKEN={token}"));
    assert!(!w.logs().contains(&token) && !w.logs().contains(refresh));
    let status = w.status();
    assert_eq!(status["token"]["user_id"], s.printed("user_id"));
    assert_eq!(stat(&s, "refresh_ok") + stat(&s, "refresh_fail"), 0);
}

#[test]
fn a_dead_token_is_renewed_with_the_refresh_token_without_a_person_also_after_a_restart() {
    if !python_or_skip(
        "a_dead_token_is_renewed_with_the_refresh_token_without_a_person_also_after_a_restart",
    ) {
        return;
    }
    let port = free_port();
    let s = sandbox(port, &[]);
    let mut w = Warden::start(&config(
        &s,
        port,
        s.printed("user_id"),
        s.printed("pin"),
        "",
    ));
    let first = logged_in(&w, &s);
    let refresh = token_json(&w)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();

    s.expire("access");
    wait_until("a token from the refresh token", T, || {
        token_json(&w)["source"] == "refresh_token"
    });
    let second = env_token(&w);
    assert_ne!(second, first);
    assert_eq!(stat(&s, "refresh_ok"), 1);
    let rec = token_json(&w);
    assert_eq!(rec["access_token"], second.as_str());
    assert_eq!(
        rec["refresh_token"],
        refresh.as_str(),
        "the refresh token is kept"
    );
    let expires_at: jiff::Timestamp = rec["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        expires_at.as_second(),
        jwt_claims(&second)["exp"].as_i64().unwrap()
    );
    wait_until("the program is healthy on the new token", T, || {
        w.program("app")["health"] == "healthy"
    });
    assert!(!env_text(&w).contains(&refresh));

    // Stopped, the token dies, started again: the refresh token from token.json renews it.
    let config = std::fs::read_to_string(&w.config).unwrap();
    w.signal(libc::SIGTERM);
    w.wait_exit(T);
    s.expire("access");
    let old = w.dir.path().to_path_buf();
    let w2 = Warden::start_with(
        &config,
        |d| {
            std::fs::create_dir_all(d.join(".warden")).unwrap();
            for f in [".env", ".warden/token.json", ".warden/login.json"] {
                if old.join(f).exists() {
                    std::fs::copy(old.join(f), d.join(f)).unwrap();
                }
            }
        },
        Vec::new(),
    );
    wait_token_state(&w2, "valid");
    let third = env_token(&w2);
    assert_ne!(third, second);
    assert_eq!(token_json(&w2)["source"], "refresh_token");
    assert_eq!(stat(&s, "refresh_ok"), 2);
    wait_until("the program is healthy after the restart", T, || {
        w2.program("app")["health"] == "healthy"
    });
    // Asked once, before the first login; never about a dead token.
    let asked = |w: &Warden| w.logs().matches("a person must log in").count();
    assert_eq!(asked(&w), 1, "{}", w.logs());
    assert_eq!(asked(&w2), 0, "{}", w2.logs());
    let m = http(&w2.addr, "GET", "/metrics", &[], "").1;
    assert!(
        m.lines()
            .any(|l| l.starts_with("warden_token_login_attempts_total")
                && l.contains("kind=\"refresh_token\"")),
        "{m}"
    );
}

/// Log in, kill the token, and wait until warden asks a person, with the webhook and the
/// status page; then several more validations, none of which asks Fyers' refresh endpoint
/// again. `before_expiry` runs once the login is done. Then the person logs in again.
fn person_is_asked_once(
    sandbox_flags: &[&str],
    before_expiry: impl FnOnce(&BrokerSandbox, &Warden),
) {
    let port = free_port();
    let s = sandbox(port, sandbox_flags);
    let hook = Webhook::start();
    let notify = format!("[notify]\nwebhook_url = \"{}\"\n", hook.url);
    let w = Warden::start(&config(
        &s,
        port,
        s.printed("user_id"),
        s.printed("pin"),
        &notify,
    ));
    let token = logged_in(&w, &s);
    before_expiry(&s, &w);

    s.expire("access");
    wait_until("Fyers' refresh endpoint was asked", T, || {
        stat(&s, "refresh_fail") == 1
    });
    wait_token_state(&w, "needs_login");
    wait_until("a token_needs_login notification", T, || {
        !hook.events("token_needs_login").is_empty()
    });
    let asked = &hook.events("token_needs_login")[0];
    assert_eq!(
        asked["login_url"],
        format!("http://127.0.0.1:{port}/login"),
        "{asked}"
    );
    let (_, page) = http(&w.addr, "GET", "/", &[], "");
    assert!(page.contains(r#"href="/login""#), "{page}");
    // Validation runs every second and keeps finding the dead token: Fyers' refresh endpoint
    // is not asked again.
    wait_validations(&w, 3);
    assert_eq!(stat(&s, "refresh_fail"), 1, "no loop of refresh calls");
    assert_eq!(stat(&s, "refresh_ok"), 0);
    assert_eq!(token_state(&w), "needs_login");
    assert_eq!(
        env_token(&w),
        token,
        "the dead token stays until a person logs in"
    );
    assert!(
        w.status()["token"]["blocked"].is_null(),
        "not a credential block"
    );

    // The person logs in: a new token, and the refresh path is back.
    let r = manual_login(&w, &s, 1);
    assert_eq!(r.status, 302, "{}", r.body);
    wait_token_state(&w, "valid");
    assert_eq!(token_json(&w)["source"], "manual");
}

#[test]
fn the_refresh_api_switched_off_asks_a_person_without_a_loop_of_refresh_calls() {
    if !python_or_skip("the_refresh_api_switched_off_asks_a_person_without_a_loop_of_refresh_calls")
    {
        return;
    }
    person_is_asked_once(&["--refresh-disabled"], |_, _| {});
}

#[test]
fn a_lapsed_refresh_token_asks_a_person_without_a_loop_of_refresh_calls() {
    if !python_or_skip("a_lapsed_refresh_token_asks_a_person_without_a_loop_of_refresh_calls") {
        return;
    }
    person_is_asked_once(&["--refresh-ttl", "2s"], |_, w| {
        let refresh = token_json(w)["refresh_token"].as_str().unwrap().to_string();
        let exp = jwt_claims(&refresh)["exp"].as_u64().unwrap();
        wait_until(
            "the refresh token's exp has passed",
            Duration::from_secs(10),
            || warden::token::login::unix_now() > exp,
        );
    });
}

#[test]
fn a_wrong_pin_is_sent_once_then_blocked_across_a_restart_until_the_pin_changes() {
    if !python_or_skip(
        "a_wrong_pin_is_sent_once_then_blocked_across_a_restart_until_the_pin_changes",
    ) {
        return;
    }
    let port = free_port();
    let s = sandbox(port, &[]);
    let mut w = Warden::start(&config(&s, port, s.printed("user_id"), WRONG_PIN, ""));
    logged_in(&w, &s);

    s.expire("access");
    wait_token_state(&w, "needs_login");
    assert_eq!(stat(&s, "refresh_fail"), 1);
    let status = w.status();
    assert!(
        status["token"]["blocked"]
            .as_str()
            .is_some_and(|b| b.contains("-1006")),
        "{status}"
    );
    assert!(!w.logs().contains(WRONG_PIN), "the PIN is never logged");
    // A refresh request never lifts the block.
    let (code, body) = http(&w.addr, "POST", "/api/v1/token/refresh", &[], "");
    assert_eq!(code, 409, "{body}");
    wait_validations(&w, 3);
    assert_eq!(stat(&s, "refresh_fail"), 1, "the wrong PIN went out once");

    // A restart keeps the block.
    let w2 = restart(&mut w);
    wait_token_state(&w2, "needs_login");
    assert_eq!(stat(&s, "refresh_fail"), 1);
    assert!(w2.status()["token"]["blocked"].is_string());
    let (code, _) = http(&w2.addr, "POST", "/api/v1/token/refresh", &[], "");
    assert_eq!(code, 409);
    assert_eq!(s.stats()["locked_users"], serde_json::json!([]));

    // The operator fixes the PIN: new credentials lift the block (SPEC §4.1) and the kept
    // refresh token renews the token with no person.
    let fixed = std::fs::read_to_string(&w2.config)
        .unwrap()
        .replace(WRONG_PIN, s.printed("pin"));
    w2.write_config(&fixed);
    wait_token_state(&w2, "valid");
    assert_eq!(token_json(&w2)["source"], "refresh_token");
    assert_eq!((stat(&s, "refresh_fail"), stat(&s, "refresh_ok")), (1, 1));
    assert!(w2.status()["token"]["blocked"].is_null());
}

#[test]
fn a_session_of_another_user_is_refused_and_logged_out() {
    if !python_or_skip("a_session_of_another_user_is_refused_and_logged_out") {
        return;
    }
    let port = free_port();
    let s = sandbox(port, &["--user-id", "XF99999"]);
    let w = Warden::start(&config(&s, port, "XF01234", s.printed("pin"), ""));
    wait_token_state(&w, "needs_login");
    let r = manual_login(&w, &s, 0);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("another user"), "{}", r.body);
    wait_until("the session was logged out", T, || stat(&s, "logouts") == 1);
    assert_eq!(stat(&s, "live_tokens"), 0);
    assert_eq!(env_token(&w), "", "nothing written");
    assert!(!w.dir.path().join(".warden/token.json").exists());
    assert_eq!(token_state(&w), "needs_login");
}

#[test]
fn an_outage_of_the_refresh_endpoint_is_retried_with_the_same_refresh_token() {
    if !python_or_skip("an_outage_of_the_refresh_endpoint_is_retried_with_the_same_refresh_token") {
        return;
    }
    let port = free_port();
    let s = sandbox(port, &[]);
    let w = Warden::start(&config(
        &s,
        port,
        s.printed("user_id"),
        s.printed("pin"),
        "",
    ));
    let first = logged_in(&w, &s);
    s.fault(r#"{"path":"/api/v3/validate-refresh-token","status":503,"count":2}"#);
    s.expire("access");
    wait_until("a token from the refresh token after the outage", T, || {
        token_json(&w)["source"] == "refresh_token"
    });
    assert_eq!(s.stats()["pending_faults"], 0, "both failures were seen");
    assert_eq!(stat(&s, "refresh_ok"), 1);
    assert_ne!(env_token(&w), first);
    assert!(
        w.logs().contains("Fyers code -201"),
        "the outage was reported: {}",
        w.logs()
    );
    assert_eq!(
        w.logs().matches("a person must log in").count(),
        1,
        "asked only before the first login"
    );
}
