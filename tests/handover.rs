//! Token hand-over and its verification (SPEC §3.1), through the real binary: the example
//! FastAPI backend under real uvicorn with the sandbox Kite, and a health endpoint whose
//! answers the test controls (tests/python/handover_backend.py).

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(60);

/// Kite (and the sandbox) refuse a TOTP code twice: a second login needs the next 30 s step.
fn wait_for_fresh_totp_step() {
    let step = warden::token::login::Totp::step_of(warden::token::login::unix_now());
    wait_until("the next TOTP step", Duration::from_secs(31), || {
        warden::token::login::Totp::step_of(warden::token::login::unix_now()) != step
    });
}

/// The value of one `/metrics` series (`name{labels}`), 0 when it is not there.
fn metric(w: &Warden, series: &str) -> f64 {
    let (code, text) = http(&w.addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn token_restarts(w: &Warden, program: &str) -> f64 {
    metric(
        w,
        &format!(r#"warden_program_restarts_total{{program="{program}",reason="token"}}"#),
    )
}

/// Lines of warden's log (child output included, as `program | line`) containing `needle`.
fn count(w: &Warden, needle: &str) -> usize {
    w.logs().lines().filter(|l| l.contains(needle)).count()
}

// ---- the example backend under real uvicorn --------------------------------------------------

/// warden + sandbox Kite + the example backend in `on_change` mode; the token is validated
/// every second, so an expiry is found by validation while the backend's cached broker check
/// (60 s) still answers 200.
fn example_stack(test: &str, on_change: &str) -> Option<(KiteSandbox, Warden)> {
    if let Err(why) = python_modules(EXAMPLE_BACKEND_MODULES) {
        skip(test, &why);
        return None;
    }
    let kite = KiteSandbox::start(&[]);
    let base = kite.warden_config(free_port(), "totp", None);
    let token = base.replace(
        "check_interval = \"1h\"\n",
        "check_interval = \"1s\"\nverify_timeout = \"20s\"\n",
    );
    assert_ne!(token, base, "the sandbox config sets check_interval");
    let program = example_backend_program("backend", free_port(), &kite.url(), on_change, "500ms");
    let w = Warden::start(&format!("{token}\n{program}"));
    Some((kite, w))
}

/// Expire the token at the sandbox and wait until warden has found it by validation, logged in
/// once and verified the hand-over. Returns the backend's pid before and after.
fn expire_and_wait_for_the_verified_hand_over(kite: &KiteSandbox, w: &Warden) -> (i32, i32) {
    let st = w.wait_state("backend", "running", T);
    assert_eq!(st["health"], "healthy", "{st}");
    let pid = w.pid_of("backend").unwrap();
    let old = w.env_token();
    wait_for_fresh_totp_step();
    kite.expire();
    wait_until("a new token in .env", T, || {
        let t = w.env_token();
        !t.is_empty() && t != old
    });
    w.wait_log("token hand-over verified", T);
    (pid, w.pid_of("backend").unwrap())
}

fn assert_no_restart(kite: &KiteSandbox, w: &Warden, pid_before: i32, pid_after: i32) {
    let logs = w.logs();
    assert_eq!(
        pid_after, pid_before,
        "the backend kept its process\n{logs}"
    );
    assert_eq!(w.program("backend")["restarts"], 0, "{logs}");
    assert_eq!(token_restarts(w, "backend"), 0.0);
    assert!(
        !logs.contains("after the token hand-over; restarting"),
        "{logs}"
    );
    assert_eq!(kite.stats()["sessions_created"], 2, "exactly one new login");
    // It works with the new token: its check was reset by the reload and asked Kite again.
    assert_eq!(w.program("backend")["health"], "healthy");
    // The bug's setting: the probes never saw the expiry (the backend's check is cached), the
    // periodic validation found it.
    assert!(!logs.contains("probe reports an auth failure"), "{logs}");
    assert!(!logs.contains("unhealthy"), "{logs}");
}

#[test]
fn the_example_backend_is_signalled_once_and_keeps_its_pid_after_a_validation_found_expiry() {
    let test = "the_example_backend_is_signalled_once_and_keeps_its_pid";
    let Some((kite, w)) = example_stack(test, "signal") else {
        return;
    };
    let (before, after) = expire_and_wait_for_the_verified_hand_over(&kite, &w);
    assert_no_restart(&kite, &w, before, after);
    let logs = w.logs();
    assert_eq!(count(&w, "sending SIGHUP for the new token"), 1, "{logs}");
    assert_eq!(
        count(&w, "token reloaded (cause=signal, changed="),
        1,
        "the backend saw exactly one SIGHUP\n{logs}"
    );
}

#[test]
fn the_example_backend_in_watch_mode_picks_the_token_up_itself_and_keeps_its_pid() {
    let test = "the_example_backend_in_watch_mode_picks_the_token_up_itself";
    let Some((kite, w)) = example_stack(test, "watch") else {
        return;
    };
    let (before, after) = expire_and_wait_for_the_verified_hand_over(&kite, &w);
    assert_no_restart(&kite, &w, before, after);
    let logs = w.logs();
    assert!(
        logs.contains("token reloaded (cause=watch, changed=yes)"),
        "its file watcher read the new token\n{logs}"
    );
    assert_eq!(
        count(&w, "sending SIGHUP"),
        0,
        "watch sends nothing\n{logs}"
    );
    assert_eq!(
        count(&w, "cause=signal"),
        0,
        "the backend got no SIGHUP\n{logs}"
    );
    assert!(
        logs.contains("the new token is in the env file it watches; sending nothing"),
        "{logs}"
    );
}

// ---- a health endpoint the test controls ------------------------------------------------------

const REFRESH_SH: &str =
    "n=$(cat counter 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > counter\necho tok$n\n";

/// warden with the command provider (a new token per SIGUSR1) and one program: the switchable
/// endpoint, which holds every probe until the hand-over's SIGHUP (at most `hold` seconds) and
/// then answers `after` (see the script). Probes time out after `hold` + 1 s.
fn switch_stack(after: &str, hold: u64, verify_timeout: &str) -> Option<Warden> {
    switch_stack_in(after, hold, verify_timeout, "signal")
}

/// [`switch_stack`] with `on_token_change = "{mode}"`; in `watch` mode the endpoint watches
/// `.env` instead of waiting for a SIGHUP.
fn switch_stack_in(after: &str, hold: u64, verify_timeout: &str, mode: &str) -> Option<Warden> {
    if python_modules(&["http.server"]).is_err() {
        skip("handover switch backend", "no python3");
        return None;
    }
    let port = free_port();
    let script = python_script("handover_backend.py");
    let script = script.display();
    let config = format!(
        r#"
[token]
provider = "command"
env_file = ".env"
min_interval = "0s"
max_attempts = 10
attempt_window = "1s"
verify_timeout = "{verify_timeout}"
[token.command]
command = ["sh", "refresh.sh"]
timeout = "10s"

[programs.app]
command = ["python3", "{script}", "{port}", "{hold}", "{after}"{watch_arg}]
on_token_change = "{mode}"
backoff_initial = "100ms"
[programs.app.health]
url = "http://127.0.0.1:{port}/health"
interval = "200ms"
timeout = "{probe_timeout}s"
initial_delay = "200ms"
failure_threshold = 50
"#,
        probe_timeout = hold + 1,
        watch_arg = if mode == "watch" { ", \".env\"" } else { "" },
    );
    let w = Warden::start_with(
        &config,
        |d| std::fs::write(d.join("refresh.sh"), REFRESH_SH).unwrap(),
        Vec::new(),
    );
    w.wait_state("app", "running", T);
    Some(w)
}

/// A new token (SIGUSR1 → the command provider), handed over while a probe is held in flight.
fn hand_over_with_a_probe_in_flight(w: &Warden) {
    hand_over_while_a_probe_is_held(w);
    w.wait_log(
        "app | 200 after the hand-over to a probe received before it",
        T,
    );
}

fn hand_over_while_a_probe_is_held(w: &Warden) {
    w.signal(libc::SIGUSR1);
    w.wait_log("app | SIGHUP with ", T);
    let logs = w.logs();
    let line = logs.lines().find(|l| l.contains("SIGHUP with ")).unwrap();
    assert!(
        !line.contains("with 0 probe"),
        "a probe was in flight at the hand-over: {line}"
    );
}

#[test]
fn a_probe_in_flight_at_the_hand_over_does_not_verify_it_and_no_2xx_means_a_token_restart() {
    let Some(w) = switch_stack("fail", 3, "2s") else {
        return;
    };
    let pid = w.pid_of("app").unwrap();
    hand_over_with_a_probe_in_flight(&w);
    wait_until("the app restarted", T, || {
        w.pid_of("app").is_some_and(|p| p != pid)
    });
    let logs = w.logs();
    assert!(
        logs.contains("no 2xx answer to a probe within 2s after the token hand-over; restarting"),
        "{logs}"
    );
    assert!(!logs.contains("token hand-over verified"), "{logs}");
    assert_eq!(token_restarts(&w, "app"), 1.0, "{logs}");
    assert_eq!(
        metric(
            &w,
            r#"warden_program_restarts_total{program="app",reason="unhealthy"}"#
        ),
        0.0
    );
    // The new process started with the new token: nothing more to hand over or verify.
    w.wait_state("app", "running", T);
    assert_eq!(count(&w, "sending SIGHUP for the new token"), 1);
}

#[test]
fn a_program_that_stays_healthy_is_verified_by_a_probe_sent_after_the_hand_over() {
    let Some(w) = switch_stack("ok", 3, "2s") else {
        return;
    };
    let pid = w.pid_of("app").unwrap();
    hand_over_with_a_probe_in_flight(&w);
    w.wait_log("token hand-over verified", T);
    // Never unhealthy, so no "became healthy" transition: verified all the same.
    let logs = w.logs();
    assert_eq!(w.pid_of("app"), Some(pid), "{logs}");
    assert_eq!(w.program("app")["restarts"], 0);
    assert_eq!(token_restarts(&w, "app"), 0.0);
    assert!(
        !logs.contains("after the token hand-over; restarting"),
        "{logs}"
    );
}

#[test]
fn a_slow_probe_from_before_the_hand_over_does_not_hold_up_the_one_after_it() {
    // Probes held for 9 s, and the SIGHUP does not release them; 1 s to verify. Waiting for
    // the held probe would miss the deadline: the hand-over's own probe must go out at once.
    let Some(w) = switch_stack("ok-unreleased", 9, "1s") else {
        return;
    };
    let pid = w.pid_of("app").unwrap();
    hand_over_while_a_probe_is_held(&w);
    w.wait_log("token hand-over verified", T);
    let logs = w.logs();
    assert_eq!(w.pid_of("app"), Some(pid), "{logs}");
    assert_eq!(token_restarts(&w, "app"), 0.0, "{logs}");
    assert!(
        !logs.contains("after the token hand-over; restarting"),
        "{logs}"
    );
}

#[test]
fn a_watching_program_gets_no_signal_and_is_restarted_only_when_no_2xx_follows() {
    let Some(w) = switch_stack_in("fail", 3, "2s", "watch") else {
        return;
    };
    let pid = w.pid_of("app").unwrap();
    w.signal(libc::SIGUSR1);
    w.wait_log("app | env file change with ", T);
    wait_until("the app restarted", T, || {
        w.pid_of("app").is_some_and(|p| p != pid)
    });
    let logs = w.logs();
    assert_eq!(
        count(&w, "sending SIGHUP"),
        0,
        "watch sends nothing\n{logs}"
    );
    assert_eq!(count(&w, "app | SIGHUP with"), 0, "{logs}");
    assert!(
        logs.contains("no 2xx answer to a probe within 2s after the token hand-over; restarting"),
        "{logs}"
    );
    assert_eq!(token_restarts(&w, "app"), 1.0, "{logs}");
    w.wait_state("app", "running", T);
}
