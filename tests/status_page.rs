//! The status page `GET /` of the real binary: programs, escaping, and the login button that
//! appears while a login is needed and goes away after one (sandbox Kite, `login = "manual"`).

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

fn page(w: &Warden) -> Resp {
    let r = request(&w.addr, "GET", "/", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{:?}",
        r.headers
    );
    r
}

const LOGIN_BUTTON: &str = r#"<a class="login" href="/login">Log in with Kite</a>"#;

#[test]
fn lists_every_program_with_state_and_pid() {
    let w = Warden::start(
        r#"
[programs.alpha-1]
command = ["sleep", "300"]
[programs.beta_2]
command = ["sleep", "300"]
"#,
    );
    let a = w.wait_state("alpha-1", "running", T)["pid"]
        .as_i64()
        .unwrap();
    let b = w.wait_state("beta_2", "running", T)["pid"]
        .as_i64()
        .unwrap();
    let r = page(&w);
    let html = &r.body;
    for name in ["alpha-1", "beta_2"] {
        assert!(
            html.contains(&format!(r#"<span class="name">{name}</span>"#)),
            "{html}"
        );
    }
    assert!(html.contains(&format!("pid {a}")) && html.contains(&format!("pid {b}")));
    assert!(html.contains("2 of 2 running"), "{html}");
    assert!(html.contains(r#"<meta http-equiv="refresh" content="10">"#));
    assert!(html.contains("manages no token"), "{html}");
    assert!(!html.contains("Log in with Kite"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[test]
fn the_login_button_shows_while_a_login_is_needed_and_a_manual_login_removes_it() {
    let stack = ManualLoginStack::start(
        None,
        "[programs.web]\ncommand = [\"sleep\", \"300\"]\non_token_change = \"none\"\n",
    );
    let w = &stack.warden;
    let kite = &stack.kite;
    w.wait_state("web", "running", T);
    let r = request(&w.addr, "GET", "/readyz", &[], "");
    assert_eq!(r.status, 503, "{}", r.body);
    let why: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(why["reason"], "token is needs_login", "{why}");
    let html = page(w).body;
    assert!(html.contains(LOGIN_BUTTON), "{html}");
    assert!(html.contains("needs login"), "{html}");

    // The no-JavaScript path: the button is a plain link; Kite's form; back through the callback.
    let totp = warden::sandbox::kite::current_totp(SANDBOX_TOTP).unwrap();
    let back = manual_login(&w.addr, &totp);
    assert_eq!(back.status, 302, "{}", back.body);
    assert_eq!(back.header("location"), Some("/"));
    wait_until("token valid", T, || w.status()["token"]["state"] == "valid");

    let html = page(w).body;
    assert!(!html.contains("Log in with Kite"), "{html}");
    assert!(html.contains(">valid<"), "{html}");
    assert!(html.contains("AB1234"), "{html}");
    assert!(html.contains("data-until="), "an expiry countdown: {html}");
    let token = std::fs::read_to_string(w.dir.path().join(".env")).unwrap();
    let token = token
        .lines()
        .find_map(|l| l.strip_prefix("KITE_ACCESS_TOKEN="))
        .unwrap();
    assert!(token.len() > 8);
    assert!(!html.contains(token), "the page shows the token");
    for path in ["/api/v1/status", "/metrics", "/readyz", "/healthz"] {
        let r = request(&w.addr, "GET", path, &[], "");
        assert!(!r.body.contains(token), "{path} shows the token");
    }
    let r = request(&w.addr, "GET", "/readyz", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(kite.stats()["sessions_created"], 1);
}

#[test]
fn broker_error_text_is_escaped() {
    let port = free_port();
    let kite = KiteSandbox::with().redirect_to_warden(port).start();
    // The automated login's first step fails with a message carrying markup.
    kite.fault(
        r#"{"path": "/api/login", "status": 400, "count": 3,
            "message": "<script>alert(1)</script> & <img src=x>"}"#,
    );
    let w = Warden::start(&kite.warden_config(port, "totp", None));
    wait_until("a last_error from the login", T, || {
        w.status()["token"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("alert"))
    });
    let html = page(&w).body;
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x>"), "{html}");
    assert!(html.contains(LOGIN_BUTTON), "{html}");
}
