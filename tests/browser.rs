//! A real browser does the manual login: headless Chromium, driven through chromedriver's W3C
//! WebDriver HTTP API, opens warden's status page while the token needs a login, clicks
//! "Log in with Kite", fills the sandbox's Kite login form (user id, password, TOTP code) and
//! lands back on warden's page with a valid token.
//!
//! Needs `chromium` and `chromedriver` on PATH (Debian: chromium, chromium-driver); else a skip.
//! Set WARDEN_TEST_SCREENSHOT_DIR to keep screenshots of each step.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn a_person_logs_in_with_kite_from_the_status_page() {
    let name = "a_person_logs_in_with_kite_from_the_status_page";
    if which("chromium").is_none() || which("chromedriver").is_none() {
        skip(
            name,
            "chromium/chromedriver not on PATH (apt-get install chromium chromium-driver)",
        );
        return;
    }
    let stack = ManualLoginStack::start(
        None,
        "[programs.web]\ncommand = [\"sleep\", \"300\"]\non_token_change = \"none\"\n",
    );
    let w = &stack.warden;
    let kite = &stack.kite;
    let port = stack.port;

    let s = Browser::start_with_args(&["--disable-quic", "--window-size=420,900"])
        .expect("chromium and chromedriver (checked before)");
    let home = format!("http://127.0.0.1:{port}/");
    s.go(&home);
    let button = s.find("a.login");
    assert_eq!(s.text(&button), "Log in with Kite");
    s.screenshot("1-needs-login.png");
    s.click(&button);

    // Kite's (the sandbox's) login form.
    s.find("input[name=twofa_value]");
    assert!(
        s.url()
            .starts_with(&format!("http://{}/connect/login", kite.addr)),
        "{}",
        s.url()
    );
    s.type_into("input[name=user_id]", "AB1234");
    s.type_into("input[name=password]", "sandbox-password");
    let code = warden::sandbox::kite::current_totp(SANDBOX_TOTP).unwrap();
    s.type_into("input[name=twofa_value]", &code);
    s.screenshot("2-kite-form.png");
    let submit = s.find("button[type=submit]");
    s.click(&submit);

    // Back on warden's page, through /kite/callback, with the token valid.
    wait_until("back on warden's status page", T, || s.url() == home);
    wait_until("token valid", T, || w.status()["token"]["state"] == "valid");
    s.go(&home);
    let badge = s.find("#token .badge");
    assert_eq!(s.text(&badge), "valid");
    let html = s.source();
    assert!(!html.contains("Log in with Kite"), "{html}");
    assert!(html.contains("AB1234"));
    s.screenshot("3-valid.png");
    assert_eq!(kite.stats()["sessions_created"], 1);
    assert_eq!(w.status()["token"]["source"], "manual");
}
