//! `provider = "upstox"` (SPEC §9.2) end to end: the real warden against the real
//! `warden sandbox upstox`, a tiny program that validates its token with the sandbox.
//!
//! - `approve`: one Access Token Request, nothing re-sent while it waits (not by a refresh
//!   request, not by validation), the person's approval posted to `/upstox/notify`, the
//!   token checked, written, handed over; an expired token seen by validation (the body's
//!   `UDAPI100050`) sends exactly one new request;
//! - refusals at `/upstox/notify`: a notification for another user, a token whose profile is
//!   another user, and a valid token posted while no request is pending; nothing is written;
//! - `manual`: `/login` → Upstox's authorization dialog → `/upstox/callback` → the token; a
//!   session of another user refused (403) and logged out;
//! - a refused app secret (`UDAPI100016`): one request, then blocked (refresh answers 409).
//!
//! What does not apply to Upstox (PROVIDER.md's list): there is no automated TOTP/PIN login
//! (Upstox has no official one, `brokers/upstox.md` §1), so no TOTP step is ever submitted by
//! warden: the wrong-PIN/TOTP block and the restart-inside-a-TOTP-step cases have nothing to
//! test; the credential rejection Upstox does have (the app's secret) is the last test.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const ASK: &str = "approve the request in the Upstox app / WhatsApp";

fn counter(s: &BrokerSandbox, name: &str) -> u64 {
    s.stats()[name].as_u64().unwrap_or(0)
}

/// `UPSTOX_ACCESS_TOKEN` in warden's `.env` ("" when absent).
fn env_token(w: &Warden) -> String {
    let text = std::fs::read_to_string(w.dir.path().join(".env")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("UPSTOX_ACCESS_TOKEN="))
        .unwrap_or("")
        .to_string()
}

fn token_json(w: &Warden) -> Value {
    let text = std::fs::read_to_string(w.dir.path().join(".warden/token.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every body POSTed to the returned URL, answered 200 (a notification webhook).
fn webhook_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len || n == 0 {
                        sink.lock().unwrap().push(body.to_string());
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
        }
    });
    (url, got)
}

/// warden on a known port (the sandbox must know its callback and notifier URLs first) with
/// `[token.upstox]` for `user_id`, and the health-checked program.
struct Stack {
    // Field order is drop order: warden stops before its broker goes.
    warden: Warden,
    upstox: BrokerSandbox,
    hook: Arc<Mutex<Vec<String>>>,
}

impl Stack {
    fn start(login: &str, user_id: &str) -> Option<Stack> {
        Stack::start_with(login, user_id, None)
    }

    /// `api_secret`: another secret than the sandbox's (`None`: the right one).
    fn start_with(login: &str, user_id: &str, api_secret: Option<&str>) -> Option<Stack> {
        if let Err(why) = python_modules(&["json"]) {
            skip("provider_upstox", &why);
            return None;
        }
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let upstox = BrokerSandbox::start(
            "upstox",
            &[
                "--redirect-url",
                &format!("{base}/upstox/callback"),
                "--notifier-url",
                &format!("{base}/upstox/notify"),
            ],
        );
        let (hook_url, hook) = webhook_receiver();
        let app_port = free_port();
        let app = python_script("upstox_app.py");
        let config = format!(
            r#"[http]
listen = "127.0.0.1:{port}"
public_url = "{base}"

[token]
provider = "upstox"
env_file = ".env"
check_interval = "1s"
min_interval = "0s"
max_attempts = 3

[token.upstox]
api_key = "{api_key}"
api_secret = "{api_secret}"
user_id = "{user_id}"
login = "{login}"
api_base = "{api_base}"

[notify]
webhook_url = "{hook_url}"

[programs.app]
command = ["python3", "{app}", "{app_port}", "{api_base}", ".env"]
on_token_change = "signal"
backoff_initial = "100ms"
[programs.app.health]
url = "http://127.0.0.1:{app_port}/health"
interval = "200ms"
timeout = "3s"
initial_delay = "0s"
failure_threshold = 25
"#,
            api_key = upstox.printed("client_id"),
            api_secret = api_secret.unwrap_or(upstox.printed("client_secret")),
            api_base = upstox.url(),
            app = app.display(),
        );
        let warden = Warden::start(&config);
        // The program answers (403: no token yet) once its SIGHUP handler is in place.
        wait_until("the program listening", WAIT, || {
            warden.program("app")["health"] == "auth_failed"
        });
        Some(Stack {
            warden,
            upstox,
            hook,
        })
    }

    fn token(&self) -> Value {
        self.warden.status()["token"].clone()
    }

    fn wait_token_state(&self, state: &str) -> Value {
        let mut last = Value::Null;
        wait_until(&format!("token {state}"), WAIT, || {
            last = self.token();
            last["state"] == state
        });
        last
    }

    /// The person taps Approve: the sandbox posts the token to warden's `/upstox/notify`;
    /// returns the HTTP status warden answered the post with.
    fn approve(&self) -> u64 {
        let (status, v) = self.upstox.json("POST", "/_sandbox/approve", &[], "");
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["notified"], true, "{v}");
        v["notifier_status"].as_u64().unwrap()
    }

    /// A token of the sandbox's user, by the authorization dialog and the code exchange done
    /// here (as another app instance of the same user would).
    fn token_by_hand(&self) -> String {
        let s = &self.upstox;
        // The step before the current one: a later login in the test uses a later step (the
        // sandbox refuses a TOTP code used before).
        let code = dialog_login(s, &dialog_path(s, "by-hand"), -1);
        let form = format!(
            "code={code}&client_id={}&client_secret={}&redirect_uri={}&grant_type=authorization_code",
            s.printed("client_id"),
            s.printed("client_secret"),
            enc(s.printed("redirect_url"))
        );
        let ct = ("Content-Type", "application/x-www-form-urlencoded");
        let (status, t) = s.json(
            "POST",
            "/v2/login/authorization/token",
            &[ct, ("Api-Version", "2.0")],
            &form,
        );
        assert_eq!(status, 200, "{t}");
        t["access_token"].as_str().unwrap().to_string()
    }

    fn notify(&self, body: &Value) -> Resp {
        request(
            &self.warden.addr,
            "POST",
            "/upstox/notify",
            &[("Content-Type", "application/json")],
            &body.to_string(),
        )
    }

    fn notification(&self, user_id: &str, token: &str) -> Value {
        json!({
            "client_id": self.upstox.printed("client_id"),
            "user_id": user_id,
            "access_token": token,
            "token_type": "Bearer",
            "expires_at": "1765059000000",
            "issued_at": "1765000000000",
            "message_type": "access_token",
        })
    }

    fn hooks(&self) -> Vec<String> {
        self.hook.lock().unwrap().clone()
    }
}

/// `/v2/login/authorization/dialog?…` for the sandbox's registered redirect.
fn dialog_path(s: &BrokerSandbox, state: &str) -> String {
    format!(
        "/v2/login/authorization/dialog?response_type=code&client_id={}&redirect_uri={}&state={state}",
        s.printed("client_id"),
        enc(s.printed("redirect_url"))
    )
}

/// Open the dialog at `path_and_query` and log in as the sandbox user with PIN and the TOTP
/// code `step` steps from now; returns the redirect's `code` (the `state` must come back).
fn dialog_login(s: &BrokerSandbox, path_and_query: &str, step: i64) -> String {
    let page = s.call("GET", path_and_query, &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    let q = url::Url::parse(&format!("http://x{path_and_query}")).unwrap();
    let param = |k: &str| {
        q.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let form = format!(
        "client_id={}&redirect_uri={}&state={}&user_id={}&pin={}&totp={}",
        enc(&param("client_id")),
        enc(&param("redirect_uri")),
        enc(&param("state")),
        s.printed("user_id"),
        s.printed("pin"),
        totp_code(s.printed("totp_secret"), step)
    );
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    let r = s.call("POST", "/v2/login/authorization/dialog", &[ct], &form);
    assert_eq!(r.status, 302, "{}", r.body);
    let loc = r.header("location").unwrap();
    assert_eq!(query_param(loc, "state"), Some(param("state")), "{loc}");
    query_param(loc, "code").unwrap()
}

/// The program answers its probe with 200: it has the token and Upstox accepts it.
fn wait_healthy(w: &Warden) {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if w.program("app")["health"] == "healthy" {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "the program is not healthy: {}\nlogs:\n{}",
        w.program("app"),
        w.logs()
    );
}

#[test]
fn approve_sends_one_request_and_takes_the_posted_token() {
    let Some(st) = Stack::start("approve", "UX1234") else {
        return;
    };
    let w = &st.warden;
    // No token anywhere: one Access Token Request, and a person is asked to approve it.
    let t = st.wait_token_state("needs_login");
    assert!(t["last_error"].as_str().unwrap_or("").contains(ASK), "{t}");
    assert_eq!(t["login"], "approve", "{t}");
    wait_until("the request reached Upstox", WAIT, || {
        counter(&st.upstox, "token_requests") == 1
    });
    let pending = st.upstox.json("GET", "/_sandbox/pending", &[], "").1;
    assert_eq!(pending["pending"], true);
    wait_until("the notification asks for the approval", WAIT, || {
        st.hooks().iter().any(|h| {
            let v: Value = serde_json::from_str(h).unwrap_or_default();
            v["event"] == "token_needs_login" && v["text"].as_str().unwrap_or("").contains(ASK)
        })
    });
    // A refresh request while the request waits sends nothing new.
    let (code, _) = http(&w.addr, "POST", "/api/v1/token/refresh", &[], "");
    assert_eq!(code, 202);
    w.wait_log("token refresh requested", WAIT);
    // The keeper handles one message at a time: once it answers /login, the refresh is done.
    assert_eq!(request(&w.addr, "GET", "/login", &[], "").status, 302);
    assert_eq!(counter(&st.upstox, "token_requests"), 1, "sent once");
    assert_eq!(env_token(w), "", "nothing written yet");

    // The person approves (a while after the request): Upstox posts the token to warden.
    assert_eq!(st.approve(), 200);
    let t = st.wait_token_state("valid");
    assert_eq!(t["source"], "approve", "{t}");
    assert_eq!(t["user_id"], "UX1234", "{t}");
    let token = env_token(w);
    assert!(!token.is_empty());
    let exp = jwt_claims(&token)["exp"].as_i64().unwrap();
    let saved = token_json(w);
    assert_eq!(saved["source"], "approve");
    assert_eq!(saved["access_token"], token.as_str());
    let expires = saved["expires_at"].as_str().unwrap();
    let expires: jiff::Timestamp = expires.parse().unwrap();
    assert_eq!(expires.as_second(), exp, "expires_at is the JWT's exp");
    // Handed over: the program re-read the env file and the broker accepts its token.
    wait_healthy(w);
    let metrics = http(&w.addr, "GET", "/metrics", &[], "").1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("warden_token_login_attempts_total")
                && l.contains("kind=\"approve\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("warden_token_refreshes_total")
                && l.contains("source=\"approve\"")
                && l.contains("result=\"success\"")),
        "{metrics}"
    );
    assert!(!w.logs().contains(&token), "the token is never logged");

    // Settled: the same post again has no request to answer.
    let replay = st.notify(&st.notification("UX1234", &token));
    assert_eq!(replay.status, 409, "{}", replay.body);

    // The token dies: validation reads UDAPI100050 and sends exactly one new request.
    st.upstox.expire("access");
    let t = st.wait_token_state("needs_login");
    assert!(t["last_error"].as_str().unwrap_or("").contains(ASK), "{t}");
    wait_until("one new request", WAIT, || {
        counter(&st.upstox, "token_requests") == 2
    });
    let rejected = |w: &Warden| {
        w.logs()
            .matches("the broker rejected the current token")
            .count()
    };
    let seen = rejected(w);
    wait_until("several more validations of the dead token", WAIT, || {
        rejected(w) >= seen + 3
    });
    assert_eq!(
        counter(&st.upstox, "token_requests"),
        2,
        "validation does not send the request again while it waits"
    );
    assert_eq!(st.approve(), 200);
    wait_until("the second approved token in place", WAIT, || {
        let now = env_token(w);
        !now.is_empty() && now != token && st.token()["state"] == "valid"
    });
    wait_healthy(w);
}

#[test]
fn posts_for_another_user_are_refused_and_nothing_is_written() {
    // warden is configured for UX9999; the sandbox's only user is UX1234.
    let Some(st) = Stack::start("approve", "UX9999") else {
        return;
    };
    let w = &st.warden;
    st.wait_token_state("needs_login");
    wait_until("the request reached Upstox", WAIT, || {
        counter(&st.upstox, "token_requests") == 1
    });
    // Upstox posts UX1234's token: another user than the configured one.
    assert_eq!(st.approve(), 403);
    // A forged post naming the configured user, carrying a real token of UX1234: the profile
    // says whose it is.
    let real = st.token_by_hand();
    let forged = st.notify(&st.notification("UX9999", &real));
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(!forged.body.contains(&real));
    // Garbage and tokens that do not work are refused too.
    let junk = st.notify(&st.notification("UX9999", "not-a-token"));
    assert_eq!(junk.status, 403, "{}", junk.body);
    let bad = request(&w.addr, "POST", "/upstox/notify", &[], "{not json");
    assert_eq!(bad.status, 400, "{}", bad.body);
    // (Posts here and `/login` share a per-client budget of 5 at once: this test spends it.)

    // A manual login by that other user: refused, and its session logged out.
    let r = request(&w.addr, "GET", "/login", &[], "");
    assert_eq!(r.status, 302, "{}", r.body);
    let dialog = r.header("location").unwrap().to_string();
    let state = query_param(&dialog, "state").unwrap();
    let code = dialog_login(&st.upstox, &split_url(&dialog).1, 1);
    let cb = request(
        &w.addr,
        "GET",
        &format!("/upstox/callback?code={code}&state={state}"),
        &[],
        "",
    );
    assert_eq!(cb.status, 403, "{}", cb.body);
    assert_eq!(
        counter(&st.upstox, "logouts"),
        1,
        "that session was logged out"
    );

    assert_eq!(env_token(w), "", "nothing reached the env file");
    assert!(!w.dir.path().join(".warden/token.json").exists());
    let t = st.token();
    assert_eq!(t["state"], "needs_login", "{t}");
    assert_eq!(counter(&st.upstox, "token_requests"), 1);
    assert!(
        !w.logs().contains(&real),
        "the posted token is never logged"
    );
}

#[test]
fn manual_login_through_the_dialog_and_no_notification_without_a_request() {
    let Some(st) = Stack::start("manual", "UX1234") else {
        return;
    };
    let w = &st.warden;
    let t = st.wait_token_state("needs_login");
    assert_eq!(t["login"], "manual", "{t}");
    assert_eq!(
        counter(&st.upstox, "token_requests"),
        0,
        "manual mode asks nobody"
    );

    // A real token of the configured user, posted while no request is pending: refused.
    let real = st.token_by_hand();
    let r = st.notify(&st.notification("UX1234", &real));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(env_token(w), "");

    // /login → Upstox's dialog → /upstox/callback.
    let r = request(&w.addr, "GET", "/login", &[], "");
    assert_eq!(r.status, 302, "{}", r.body);
    let dialog = r.header("location").unwrap().to_string();
    assert!(
        dialog.starts_with(&format!(
            "{}/v2/login/authorization/dialog?",
            st.upstox.url()
        )),
        "{dialog}"
    );
    for k in ["client_id", "redirect_uri", "state"] {
        assert!(query_param(&dialog, k).is_some(), "{k} in {dialog}");
    }
    assert_eq!(
        query_param(&dialog, "response_type").as_deref(),
        Some("code")
    );
    let state = query_param(&dialog, "state").unwrap();
    let (_, path) = split_url(&dialog);
    let code = dialog_login(&st.upstox, &path, 1);
    let cb = request(
        &w.addr,
        "GET",
        &format!("/upstox/callback?code={code}&state={state}"),
        &[],
        "",
    );
    assert_eq!(cb.status, 302, "{}", cb.body);
    let t = st.wait_token_state("valid");
    assert_eq!(t["source"], "manual", "{t}");
    let token = env_token(w);
    assert_eq!(token_json(w)["access_token"], token.as_str());
    assert_eq!(
        token_json(w)["expires_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second(),
        jwt_claims(&token)["exp"].as_i64().unwrap()
    );
    wait_healthy(w);
    // A state works once.
    let again = request(
        &w.addr,
        "GET",
        &format!("/upstox/callback?code={code}&state={state}"),
        &[],
        "",
    );
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(env_token(w), token);
}

#[test]
fn a_refused_app_secret_is_one_request_then_a_block() {
    let Some(st) = Stack::start_with("approve", "UX1234", Some("wrong-secret")) else {
        return;
    };
    let w = &st.warden;
    // UDAPI100016 "Invalid Credentials": a credential rejection, never retried.
    let t = st.wait_token_state("needs_login");
    wait_until("the block in the status", WAIT, || {
        st.token()["blocked"]
            .as_str()
            .is_some_and(|b| b.contains("UDAPI100016"))
    });
    assert_eq!(counter(&st.upstox, "token_request_fail"), 1, "{t}");
    let (code, body) = http(&w.addr, "POST", "/api/v1/token/refresh", &[], "");
    assert_eq!(code, 409, "{body}");
    // The keeper handles one message at a time: once it answers /login, all above is done.
    assert_eq!(request(&w.addr, "GET", "/login", &[], "").status, 302);
    assert_eq!(counter(&st.upstox, "token_request_fail"), 1, "sent once");
    assert_eq!(counter(&st.upstox, "token_requests"), 0);
    assert!(
        !w.logs().contains("wrong-secret"),
        "the secret is never logged"
    );
}
