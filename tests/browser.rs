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

/// The status page's market strip at phone width (390 px): seven cells in one row, no sideways
/// scrolling, green for a day without loss, red with the time for a day with, grey when warden
/// did not watch. The history comes from `{state_dir}/market.json`, as after a restart.
#[test]
fn the_market_strip_fits_a_phone_and_colours_each_trading_day() {
    let name = "the_market_strip_fits_a_phone_and_colours_each_trading_day";
    if which("chromium").is_none() || which("chromedriver").is_none() {
        skip(
            name,
            "chromium/chromedriver not on PATH (apt-get install chromium chromium-driver)",
        );
        return;
    }
    // A one-minute session twelve hours from now, in UTC, no holidays: closed now, so the
    // cells are exactly the history written below.
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let m = ((i32::from(now.hour()) * 60 + i32::from(now.minute()) + 12 * 60) % (24 * 60))
        .min(23 * 60 + 58);
    let market = warden::config::MarketConfig {
        timezone: "UTC".into(),
        open: format!("{:02}:{:02}", m / 60, m % 60),
        close: format!("{:02}:{:02}", (m + 1) / 60, (m + 1) % 60),
        builtin_holidays: false,
        ..Default::default()
    };
    let calendar = warden::market::MarketCalendar::from_config(&market);
    let days = calendar.trading_days_through(calendar.date_of(jiff::Timestamp::now()), 7);
    let lost = [None, Some(0u64), Some(45), Some(150), Some(3960)];
    let mut history = serde_json::Map::new();
    for (day, l) in days.iter().zip(lost) {
        if let Some(secs) = l {
            history.insert(
                day.to_string(),
                serde_json::json!({"watched_ms": 60_000, "invalid_ms": secs * 1000}),
            );
        }
    }
    let file = serde_json::json!({"version": 1, "tokens": {"kite": history}}).to_string();

    let kite = KiteSandbox::start(&[]);
    let port = free_port();
    let config = format!(
        "{}\n[market]\ntimezone = \"UTC\"\nopen = \"{}\"\nclose = \"{}\"\nbuiltin_holidays = false\n",
        kite.warden_config(port, "manual", None),
        market.open,
        market.close
    );
    let _w = Warden::start_with(
        &config,
        |dir| {
            std::fs::create_dir_all(dir.join(".warden")).unwrap();
            std::fs::write(dir.join(".warden/market.json"), &file).unwrap();
        },
        Vec::new(),
    );

    let s = Browser::start_with_args(&["--disable-quic"])
        .expect("chromium and chromedriver (checked before)");
    s.emulate_phone(390, 844);
    let home = format!("http://127.0.0.1:{port}/");
    s.go(&home);
    s.find("#market .strip[data-token=kite] li.day");
    s.screenshot("market-strip-390.png");
    let page = s.eval(
        r#"var cells = Array.from(document.querySelectorAll('#market .strip[data-token=kite] li.day'));
        return {
          width: window.innerWidth,
          scroll: document.documentElement.scrollWidth,
          cells: cells.map(function (e) {
            var r = e.getBoundingClientRect();
            return {date: e.dataset.date, verdict: e.dataset.verdict,
                    text: e.querySelector('.dval').textContent,
                    top: r.top, left: r.left, right: r.right,
                    bg: getComputedStyle(e).backgroundColor};
          })
        };"#,
    );
    let width = page["width"].as_f64().unwrap();
    assert_eq!(width, 390.0, "not a phone-width viewport: {page}");
    assert!(
        page["scroll"].as_f64().unwrap() <= width,
        "the page scrolls sideways at {width} px: {page}"
    );
    let cells = page["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 7, "{page}");
    let expected = [
        ("unwatched", "–"),
        ("ok", "✓"),
        ("lost", "45s"),
        ("lost", "2m"),
        ("lost", "1h06"),
        ("unwatched", "–"),
        ("unwatched", "–"),
    ];
    for ((cell, day), (verdict, text)) in cells.iter().zip(&days).zip(expected) {
        assert_eq!(cell["date"], day.to_string(), "{page}");
        assert_eq!(cell["verdict"], verdict, "{day}: {page}");
        assert_eq!(cell["text"], text, "{day}: {page}");
        assert_eq!(cell["top"], cells[0]["top"], "one row: {page}");
        assert!(cell["right"].as_f64().unwrap() <= width, "{page}");
    }
    for pair in cells.windows(2) {
        assert!(
            pair[0]["right"].as_f64().unwrap() <= pair[1]["left"].as_f64().unwrap(),
            "cells overlap: {page}"
        );
    }
    let rgb = |c: &serde_json::Value| -> Vec<u32> {
        c["bg"]
            .as_str()
            .unwrap()
            .trim_start_matches("rgba(")
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .take(3)
            .map(|x| x.trim().parse().unwrap())
            .collect()
    };
    let (ok, bad, grey) = (rgb(&cells[1]), rgb(&cells[2]), rgb(&cells[0]));
    assert!(
        ok[1] > ok[0] && ok[1] > ok[2],
        "the ok cell is green: {ok:?}"
    );
    assert!(
        bad[0] > bad[1] && bad[0] > bad[2],
        "a lost cell is red: {bad:?}"
    );
    assert!(
        grey.iter().max().unwrap() - grey.iter().min().unwrap() < 16,
        "an unwatched cell is grey: {grey:?}"
    );
}
