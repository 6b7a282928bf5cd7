//! Market-hours continuity through the real binary against the real sandbox Kite: a `[market]`
//! whose session is open now (UTC), a token that is not valid (manual login pending), and the
//! seconds it loses while open, in `/metrics` and `/api/v1/status`; they stop when a manual
//! login makes it valid, and the per-day strip survives a restart (`{state_dir}/market.json`).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// A `[market]` open from a minute ago to an hour from now, today, in UTC, on any day of the
/// week: the same window as the regular session and as an extra session on today's date (a
/// weekend or a holiday has only the latter; overlapping sessions count once).
fn market_open_now() -> (String, String) {
    // Too close to midnight for a window around now: wait for the new day.
    let minute_of_day = || {
        let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
        i32::from(now.hour()) * 60 + i32::from(now.minute())
    };
    if minute_of_day() >= 23 * 60 + 56 {
        wait_until("midnight UTC", Duration::from_secs(300), || {
            minute_of_day() < 23 * 60
        });
    }
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let m = minute_of_day();
    let hhmm = |m: i32| format!("{:02}:{:02}", m / 60, m % 60);
    let (open, close) = (hhmm((m - 1).max(0)), hhmm((m + 60).min(23 * 60 + 59)));
    let today = now.date().to_string();
    let section = format!(
        "[market]\ntimezone = \"UTC\"\nopen = \"{open}\"\nclose = \"{close}\"\n\
         extra_sessions = [{{date = \"{today}\", open = \"{open}\", close = \"{close}\"}}]\n"
    );
    (section, today)
}

/// `warden_market_open` and the token's invalid-market seconds from `/metrics`.
fn market_metrics(w: &Warden) -> (Option<f64>, Option<f64>) {
    let (code, text) = http(&w.addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    let value = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().parse::<f64>().unwrap())
    };
    (
        value("warden_market_open "),
        value("warden_token_invalid_market_seconds_total{token=\"kite\"} "),
    )
}

/// Today's cell of the token's strip in `/api/v1/status`.
fn today_cell(status: &Value, today: &str) -> Value {
    let strip = status["market"]["tokens"]["kite"]["strip"]
        .as_array()
        .unwrap_or_else(|| panic!("no strip: {status}"));
    assert_eq!(strip.len(), 7, "{status}");
    let last = strip.last().unwrap().clone();
    assert_eq!(last["date"], today, "today is the newest cell: {status}");
    last
}

#[test]
fn invalid_seconds_grow_while_the_market_is_open_and_stop_when_the_token_is_valid() {
    let (market, today) = market_open_now();
    let stack = ManualLoginStack::start(None, &market);
    let w = &stack.warden;

    // No token yet (a manual login is pending): the market is open, seconds are lost.
    wait_until("warden_market_open 1", T, || {
        market_metrics(w).0 == Some(1.0)
    });
    wait_until("over 3 s lost while open", T, || {
        market_metrics(w).1.is_some_and(|s| s > 3.0)
    });
    let st = w.status();
    assert_eq!(st["market"]["open"], true, "{st}");
    assert_eq!(st["market"]["timezone"], "UTC", "{st}");
    let cell = today_cell(&st, &today);
    assert_eq!(cell["verdict"], "lost", "{st}");
    assert!(cell["invalid_seconds"].as_u64().unwrap() >= 3, "{st}");

    // The page shows the strip with today's cell lost.
    let page = request(&w.addr, "GET", "/", &[], "").body;
    assert!(
        page.contains(&format!(r#"data-date="{today}" data-verdict="lost""#)),
        "{page}"
    );

    // A manual login: valid, and the count stops while the market stays open.
    let totp = warden::sandbox::kite::current_totp(SANDBOX_TOTP).unwrap();
    let back = manual_login(&w.addr, &totp);
    assert_eq!(back.status, 302, "{}", back.body);
    wait_until("token valid", T, || w.status()["token"]["state"] == "valid");
    let at_login = w.status();
    let lost = at_login["market"]["tokens"]["kite"]["invalid_market_seconds_total"]
        .as_f64()
        .unwrap();
    let watched = today_cell(&at_login, &today)["watched_seconds"]
        .as_u64()
        .unwrap();
    // Wait on the market clock itself: 3 more seconds watched with the token valid.
    wait_until("3 s more of market time watched", T, || {
        today_cell(&w.status(), &today)["watched_seconds"]
            .as_u64()
            .unwrap()
            >= watched + 3
    });
    let (open, after) = market_metrics(w);
    assert_eq!(open, Some(1.0));
    let after = after.unwrap();
    assert!(
        (after - lost).abs() < 0.001,
        "the count went on while valid: {lost} then {after}"
    );
    let saved_invalid = today_cell(&w.status(), &today)["invalid_seconds"]
        .as_u64()
        .unwrap();
    assert!(saved_invalid >= 3);

    // The strip survives a restart: a new warden on the same state_dir file starts its counter
    // at 0 but shows today's seconds lost before.
    let file = w.dir.path().join(".warden/market.json");
    wait_until("market.json written", T, || file.is_file());
    let kept = std::fs::read(&file).unwrap();
    drop(stack);
    let kite = KiteSandbox::start(&[]);
    let config = format!(
        "{}\n{market}",
        kite.warden_config(free_port(), "manual", None)
    );
    let w2 = Warden::start_with(
        &config,
        |dir| {
            std::fs::create_dir_all(dir.join(".warden")).unwrap();
            std::fs::write(dir.join(".warden/market.json"), &kept).unwrap();
        },
        Vec::new(),
    );
    wait_until("the restored strip", T, || {
        w2.status()["market"]["tokens"]["kite"]["strip"].is_array()
    });
    let st = w2.status();
    let cell = today_cell(&st, &today);
    let total = st["market"]["tokens"]["kite"]["invalid_market_seconds_total"]
        .as_f64()
        .unwrap();
    let shown = cell["invalid_seconds"].as_u64().unwrap();
    assert!(shown >= saved_invalid, "{st}");
    assert!(
        shown as f64 - total >= saved_invalid as f64 - 1.0,
        "today's cell holds the restored seconds besides this process's {total}: {st}"
    );
}

#[test]
fn a_closed_market_counts_nothing_until_a_reload_opens_it() {
    // A one-minute session twelve hours away from now: closed, whatever the day.
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let m = (i32::from(now.hour()) * 60 + i32::from(now.minute()) + 12 * 60) % (24 * 60);
    let m = m.min(23 * 60 + 58);
    let kite = KiteSandbox::start(&[]);
    let config = format!(
        "{}\n[market]\ntimezone = \"UTC\"\nopen = \"{:02}:{:02}\"\nclose = \"{:02}:{:02}\"\n",
        kite.warden_config(free_port(), "manual", None),
        m / 60,
        m % 60,
        (m + 1) / 60,
        (m + 1) % 60
    );
    let w = Warden::start(&config);
    wait_until("token needs_login", T, || {
        w.status()["token"]["state"] == "needs_login"
    });
    wait_until("warden_market_open 0", T, || {
        market_metrics(&w).0 == Some(0.0)
    });
    let st = w.status();
    assert_eq!(st["market"]["open"], false, "{st}");
    assert!(st["market"]["next_open"].is_string(), "{st}");
    // Not valid since the start, but the market was never open: the series is there, at 0.
    assert_eq!(market_metrics(&w).1, Some(0.0));
    assert_eq!(
        st["market"]["tokens"]["kite"]["invalid_market_seconds_total"], 0.0,
        "{st}"
    );

    // A reload that opens the market now: applied at once, and the seconds start to count.
    let (open_now, _) = market_open_now();
    let config = config[..config.find("[market]").unwrap()].to_string() + &open_now;
    w.write_config(&config);
    w.signal(libc::SIGHUP);
    wait_until("warden_market_open 1 after the reload", T, || {
        market_metrics(&w).0 == Some(1.0)
    });
    wait_until("seconds lost once open", T, || {
        market_metrics(&w).1.is_some_and(|s| s >= 1.0)
    });
}
