//! `[token] provider = "dhan"` (SPEC §9.2) through the real binary against the real
//! `warden sandbox dhan`, with a small program whose health check asks the sandbox whether the
//! token in its env file still works.
//!
//! Covered: the PIN + TOTP login writes DHAN_ACCESS_TOKEN and token.json (source, JWT `exp`);
//! an expired token is seen by validation (DH-901 in the body) and, with two refresh requests
//! in between, replaced by exactly one mint no sooner than 2 minutes after the last
//! (Dhan's rule, which warden keeps itself: the sandbox never has to refuse); a restarted
//! warden learns the last mint from the stored token and waits out the same 2 minutes (this
//! is stricter than "no TOTP code of the same step again", which the keeper's login.json
//! gives every provider); a wrong PIN or TOTP is submitted once, then refresh requests get
//! 409; the manual consent flow `/login` → the sandbox's consent page → `/dhan/callback/`
//! puts the token in the env file; a tokenId without a pending consent (or replayed) is
//! refused; a token of another Dhan client is never adopted; a refresh request while the
//! token still validates keeps it (one live token per client: a mint would end it).
//!
//! Not here, and why: Dhan's consent login can only produce a token for the client that
//! generated the consent (and the sandbox has one client), so "a manual login by another
//! user" is covered by the env-file token of another client instead; Dhan has no logout
//! endpoint, so there is no session to log out.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
/// Dhan's 2 minutes, plus the start-up and the polling around them.
const MINT_WAIT: Duration = Duration::from_secs(180);
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// A program with a health URL: it reads DHAN_ACCESS_TOKEN from `.env` at start and on SIGHUP
/// and answers 200 while the sandbox's profile accepts that token, 403 otherwise.
const APP: &str = r#"
import http.server, json, signal, sys, urllib.request
port, api = int(sys.argv[1]), sys.argv[2]
token = [None]
def load(*_):
    token[0] = None
    try:
        for line in open(".env"):
            if line.startswith("DHAN_ACCESS_TOKEN="):
                token[0] = line.split("=", 1)[1].strip()
    except FileNotFoundError:
        pass
signal.signal(signal.SIGHUP, load)
load()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = False
        if token[0]:
            req = urllib.request.Request(api + "/profile", headers={"access-token": token[0]})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    ok = r.status == 200
            except Exception:
                ok = False
        body = json.dumps({"auth": "VALID" if ok else "EXPIRED"}).encode()
        self.send_response(200 if ok else 403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

fn write_app(dir: &Path) {
    std::fs::write(dir.join("app.py"), APP).unwrap();
}

/// `[token]` + `[token.dhan]` for the sandbox `s` in `login` mode, and the app program.
/// `dhan_extra` goes at the end of `[token.dhan]` (or replaces a key when it names one).
fn config(s: &BrokerSandbox, login: &str, dhan_extra: &str, http: &str) -> String {
    let app_port = free_port();
    format!(
        r#"{http}
[token]
provider = "dhan"
env_file = ".env"
check_interval = "1s"
min_interval = "0s"
max_attempts = 5

[token.dhan]
client_id = "{client}"
login = "{login}"
pin = "{pin}"
totp_secret = "{totp}"
app_id = "{app_id}"
app_secret = "{app_secret}"
auth_base = "{base}"
api_base = "{base}/v2"
{dhan_extra}

[programs.app]
command = ["python3", "app.py", "{app_port}", "{base}/v2"]
on_token_change = "signal"
[programs.app.health]
url = "http://127.0.0.1:{app_port}/health"
interval = "1s"
initial_delay = "0s"
"#,
        client = s.printed("client_id"),
        pin = s.printed("pin"),
        totp = s.printed("totp_secret"),
        app_id = s.printed("app_id"),
        app_secret = s.printed("app_secret"),
        base = s.url(),
    )
}

fn start(cfg: &str) -> Warden {
    Warden::start_with(cfg, write_app, Vec::new())
}

fn python_or_skip(test: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(test, "python3 is not installed");
    }
    ok
}

fn env_token(w: &Warden) -> String {
    let text = std::fs::read_to_string(w.dir.path().join(".env")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("DHAN_ACCESS_TOKEN="))
        .unwrap_or("")
        .to_string()
}

fn token_json(w: &Warden) -> Value {
    let text = std::fs::read_to_string(w.dir.path().join(".warden/token.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn stat(s: &BrokerSandbox, key: &str) -> i64 {
    s.stats()[key].as_i64().unwrap_or(0)
}

fn post(w: &Warden, path: &str) -> (u16, Value) {
    let (code, body) = http(&w.addr, "POST", path, &[], "");
    (code, serde_json::from_str(&body).unwrap_or_default())
}

fn unix(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .as_second()
}

fn iat(token: &str) -> i64 {
    jwt_claims(token)["iat"].as_i64().unwrap()
}

/// The secrets of the sandbox's client must appear in no log line.
fn assert_no_secrets(w: &Warden, s: &BrokerSandbox, tokens: &[&str]) {
    let logs = w.logs();
    for secret in [
        s.printed("pin"),
        s.printed("totp_secret"),
        s.printed("app_secret"),
    ]
    .into_iter()
    .chain(tokens.iter().copied())
    {
        assert!(
            !secret.is_empty() && !logs.contains(secret),
            "a secret leaked into the logs:\n{logs}"
        );
    }
}

fn wait_healthy(w: &Warden) {
    wait_until("the app healthy", T, || {
        w.program("app")["health"] == "healthy"
    });
}

#[test]
fn totp_login_writes_the_token_and_token_json_dated_by_the_jwt() {
    if !python_or_skip("totp_login_writes_the_token_and_token_json_dated_by_the_jwt") {
        return;
    }
    let s = BrokerSandbox::start("dhan", &[]);
    let w = start(&config(&s, "totp", "", ""));
    wait_until("a token in .env", T, || !env_token(&w).is_empty());
    wait_healthy(&w);
    let token = env_token(&w);
    let claims = jwt_claims(&token);
    assert_eq!(claims["dhanClientId"], s.printed("client_id"));
    let rec = token_json(&w);
    assert_eq!(rec["source"], "totp", "{rec}");
    assert_eq!(rec["user_id"], s.printed("client_id"), "{rec}");
    assert_eq!(rec["access_token"], token.as_str());
    assert_eq!(
        unix(rec["expires_at"].as_str().unwrap()),
        claims["exp"].as_i64().unwrap(),
        "expires_at is the JWT's exp: {rec}"
    );
    let status = w.status();
    assert_eq!(status["token"]["state"], "valid", "{status}");
    assert_eq!(status["token"]["login"], "totp", "{status}");
    assert_eq!(
        unix(status["token"]["expires_at"].as_str().unwrap()),
        claims["exp"].as_i64().unwrap()
    );
    assert_eq!(stat(&s, "access_tokens_issued"), 1);
    assert_eq!(stat(&s, "mint_fail"), 0);
    assert_no_secrets(&w, &s, &[&token]);
}

#[test]
fn an_expired_token_is_replaced_by_one_mint_two_minutes_after_the_last() {
    if !python_or_skip("an_expired_token_is_replaced_by_one_mint_two_minutes_after_the_last") {
        return;
    }
    let s = BrokerSandbox::start("dhan", &[]);
    let w = start(&config(&s, "totp", "", ""));
    wait_until("a token in .env", T, || !env_token(&w).is_empty());
    wait_healthy(&w);
    let first = env_token(&w);
    let app_pid = w.pid_of("app").unwrap();

    s.expire("access");
    // Validation reads DH-901 from the profile's body.
    wait_until("the keeper sees the expired token", T, || {
        w.status()["token"]["state"] == "expired"
    });
    // Two requests well inside Dhan's 2 minutes: both wait for the same one mint.
    assert_eq!(post(&w, "/api/v1/token/refresh").0, 202);
    assert_eq!(post(&w, "/api/v1/token/refresh").0, 202);
    wait_until("a new token in .env", MINT_WAIT, || env_token(&w) != first);
    let second = env_token(&w);
    assert!(
        iat(&second) >= iat(&first) + 120,
        "minted {} s after the last mint",
        iat(&second) - iat(&first)
    );
    wait_healthy(&w);
    assert_eq!(
        w.pid_of("app"),
        Some(app_pid),
        "the app got the token by signal"
    );
    let stats = s.stats();
    assert_eq!(
        stats["access_tokens_issued"], 2,
        "exactly one new mint: {stats}"
    );
    assert!(
        stats.get("mint_too_soon").is_none(),
        "warden asked before the 2 minutes were up: {stats}"
    );
    assert!(stats.get("mint_fail").is_none(), "{stats}");
    let logs = w.logs();
    assert!(
        logs.contains("rejected the current token") && logs.contains("DH-901"),
        "validation read DH-901:\n{logs}"
    );
    let rec = token_json(&w);
    assert_eq!(rec["source"], "totp");
    assert_eq!(
        unix(rec["expires_at"].as_str().unwrap()),
        jwt_claims(&second)["exp"].as_i64().unwrap()
    );
    assert_no_secrets(&w, &s, &[&first, &second]);
}

#[test]
fn a_refresh_request_never_mints_over_a_token_that_still_validates() {
    if !python_or_skip("a_refresh_request_never_mints_over_a_token_that_still_validates") {
        return;
    }
    let s = BrokerSandbox::start("dhan", &[]);
    let w = start(&config(&s, "totp", "", ""));
    wait_until("a token in .env", T, || !env_token(&w).is_empty());
    wait_healthy(&w);
    let token = env_token(&w);
    let app_pid = w.pid_of("app").unwrap();
    assert_eq!(post(&w, "/api/v1/token/refresh").0, 202);
    w.signal(libc::SIGUSR1);
    // Both wait out the 2 minutes, then find the token still good: a mint would end it.
    w.wait_log("still validates: keeping it", MINT_WAIT);
    assert_eq!(env_token(&w), token);
    assert_eq!(w.status()["token"]["state"], "valid");
    assert_eq!(
        w.pid_of("app"),
        Some(app_pid),
        "no hand-over for the same token"
    );
    let stats = s.stats();
    assert_eq!(stats["access_tokens_issued"], 1, "{stats}");
    assert!(stats.get("mint_too_soon").is_none(), "{stats}");
}

#[test]
fn a_restarted_warden_waits_out_the_two_minutes_of_the_token_it_finds() {
    if !python_or_skip("a_restarted_warden_waits_out_the_two_minutes_of_the_token_it_finds") {
        return;
    }
    let s = BrokerSandbox::start("dhan", &[]);
    let cfg = config(&s, "totp", "", "");
    let mut w = start(&cfg);
    wait_until("a token in .env", T, || !env_token(&w).is_empty());
    let first = env_token(&w);
    w.signal(libc::SIGTERM);
    w.wait_exit(T);

    s.expire("access");
    let old = w.dir.path().to_path_buf();
    let w2 = Warden::start_with(
        &cfg,
        |d| {
            write_app(d);
            std::fs::create_dir_all(d.join(".warden")).unwrap();
            for f in [".env", ".warden/token.json", ".warden/login.json"] {
                std::fs::copy(old.join(f), d.join(f)).unwrap();
            }
        },
        Vec::new(),
    );
    wait_until("a new token in .env", MINT_WAIT, || env_token(&w2) != first);
    let second = env_token(&w2);
    assert!(
        iat(&second) >= iat(&first) + 120,
        "the restarted warden minted {} s after the last mint",
        iat(&second) - iat(&first)
    );
    let stats = s.stats();
    assert_eq!(stats["access_tokens_issued"], 2, "{stats}");
    assert!(stats.get("mint_too_soon").is_none(), "{stats}");
    assert!(stats.get("mint_fail").is_none(), "{stats}");
    assert_eq!(token_json(&w2)["source"], "totp");
}

#[test]
fn a_wrong_pin_or_totp_is_submitted_once_then_refresh_requests_get_409() {
    if !python_or_skip("a_wrong_pin_or_totp_is_submitted_once_then_refresh_requests_get_409") {
        return;
    }
    for (what, wrong, message) in [
        ("pin", "pin = \"000000\"", "Invalid Pin"),
        (
            "totp_secret",
            "totp_secret = \"JBSWY3DPEHPK3PXP\"",
            "Invalid TOTP",
        ),
    ] {
        let s = BrokerSandbox::start("dhan", &[]);
        let cfg = config(&s, "totp", "", "");
        let key = format!("{what} = ");
        let cfg: String = cfg
            .lines()
            .map(|l| if l.starts_with(&key) { wrong } else { l })
            .collect::<Vec<_>>()
            .join("\n");
        let w = start(&cfg);
        wait_until("blocked", T, || w.status()["token"]["blocked"].is_string());
        let status = w.status();
        assert_eq!(status["token"]["state"], "needs_login", "{status}");
        assert!(
            status["token"]["blocked"]
                .as_str()
                .unwrap()
                .contains(message),
            "{what}: {status}"
        );
        for _ in 0..3 {
            let (code, body) = post(&w, "/api/v1/token/refresh");
            assert_eq!(code, 409, "{what}: {body}");
            assert!(body["reason"].as_str().unwrap().contains(message), "{body}");
        }
        w.signal(libc::SIGUSR1);
        wait_until("SIGUSR1 handled", T, || {
            w.logs().contains("automated login is blocked")
        });
        let stats = s.stats();
        assert_eq!(
            stats["mint_fail"], 1,
            "{what}: one submission only: {stats}"
        );
        assert!(stats.get("access_tokens_issued").is_none(), "{stats}");
        assert_eq!(stats["locked_users"].as_array().unwrap().len(), 0);
        assert!(env_token(&w).is_empty());
        assert_no_secrets(&w, &s, &[]);
    }
}

#[test]
fn the_manual_consent_login_puts_the_token_in_the_env_file() {
    if !python_or_skip("the_manual_consent_login_puts_the_token_in_the_env_file") {
        return;
    }
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/dhan/callback");
    let s = BrokerSandbox::start("dhan", &["--redirect-url", &callback]);
    let http_section = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n"
    );
    let w = start(&config(&s, "manual", "", &http_section));
    wait_until("needs_login", T, || {
        w.status()["token"]["state"] == "needs_login"
    });
    assert_eq!(w.status()["token"]["login"], "manual");

    // Before any consent: a tokenId is refused, on both routes, and nothing is consumed.
    for path in [
        "/dhan/callback?tokenId=forged",
        "/dhan/callback/?tokenId=forged",
    ] {
        let r = request(&w.addr, "GET", path, &[], "");
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains("no Dhan consent"), "{}", r.body);
    }

    // /login → the consent login page on the sandbox.
    let r = request(&w.addr, "GET", "/login", &[], "");
    assert_eq!(r.status, 302, "{}", r.body);
    let page_url = r.header("location").unwrap().to_string();
    let consent = query_param(&page_url, "consentAppId").expect("a consentAppId");
    assert!(
        page_url.starts_with(&format!("{}/login/consentApp-login?", s.url())),
        "{page_url}"
    );
    let (addr, path) = split_url(&page_url);
    let page = request(&addr, "GET", &path, &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    // The person logs in on Dhan's page.
    let form = format!(
        "consentAppId={consent}&user_id={}&pin={}&totp={}",
        s.printed("client_id"),
        s.printed("pin"),
        totp_code(s.printed("totp_secret"), 0)
    );
    let r = request(&addr, "POST", "/login/consentApp-login", &[FORM], &form);
    assert_eq!(r.status, 302, "{}", r.body);
    let back = r.header("location").unwrap().to_string();
    assert!(back.starts_with(&format!("{callback}/?tokenId=")), "{back}");
    let (warden_addr, callback_path) = split_url(&back);
    assert_eq!(warden_addr, w.addr);
    let r = request(&w.addr, "GET", &callback_path, &[], "");
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.header("location"), Some("/"));

    let token = env_token(&w);
    assert!(!token.is_empty());
    assert_eq!(jwt_claims(&token)["dhanClientId"], s.printed("client_id"));
    let rec = token_json(&w);
    assert_eq!(rec["source"], "manual", "{rec}");
    assert_eq!(
        unix(rec["expires_at"].as_str().unwrap()),
        jwt_claims(&token)["exp"].as_i64().unwrap()
    );
    wait_until("valid", T, || w.status()["token"]["state"] == "valid");
    wait_healthy(&w);

    // The consent is spent: the same callback again is refused and changes nothing.
    let r = request(&w.addr, "GET", &callback_path, &[], "");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(env_token(&w), token);
    assert_eq!(stat(&s, "access_tokens_issued"), 1);
    // The manual mode never mints by itself.
    assert_eq!(stat(&s, "mint_fail") + stat(&s, "mint_too_soon"), 0);
    assert_no_secrets(&w, &s, &[&token]);
}

#[test]
fn a_token_of_another_dhan_client_is_never_adopted() {
    if !python_or_skip("a_token_of_another_dhan_client_is_never_adopted") {
        return;
    }
    let s = BrokerSandbox::start("dhan", &["--client-id", "1100005678"]);
    let mint = format!(
        "/app/generateAccessToken?dhanClientId=1100005678&pin={}&totp={}",
        s.printed("pin"),
        totp_code(s.printed("totp_secret"), 0)
    );
    let (code, v) = s.json("POST", &mint, &[], "");
    assert_eq!(code, 200);
    let foreign = v["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    // warden is configured for another client, in manual mode: it never mints by itself.
    let cfg = config(&s, "manual", "", "")
        .replace("client_id = \"1100005678\"", "client_id = \"1100001234\"");
    let env = format!("DHAN_ACCESS_TOKEN={foreign}\n");
    let w = Warden::start_with(
        &cfg,
        |d| {
            write_app(d);
            std::fs::write(d.join(".env"), &env).unwrap();
        },
        Vec::new(),
    );
    wait_until("needs_login", T, || {
        w.status()["token"]["state"] == "needs_login"
    });
    w.wait_log("belongs to user 1100005678", T);
    let status = w.status();
    assert!(status["token"]["user_id"].is_null(), "{status}");
    assert!(!w.dir.path().join(".warden/token.json").exists());
    assert_eq!(
        stat(&s, "access_tokens_issued"),
        1,
        "only the test's own mint"
    );
    assert_no_secrets(&w, &s, &[&foreign]);
}
