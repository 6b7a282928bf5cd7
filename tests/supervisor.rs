//! Supervisor core through the real binary: restarts, backoff, fatal, stop, groups, reload,
//! signals, logs.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(15);

#[test]
fn kill_9_of_a_child_restarts_it() {
    let w = Warden::start(
        r#"
[programs.worker]
command = ["sleep", "1000"]
backoff_initial = "50ms"
"#,
    );
    let first = w.wait_state("worker", "running", T)["pid"]
        .as_i64()
        .unwrap() as i32;
    unsafe { libc::kill(first, libc::SIGKILL) };
    wait_until("a new worker pid", T, || {
        w.pid_of("worker").is_some_and(|p| p != first)
    });
    let st = w.wait_state("worker", "running", T);
    assert_eq!(st["restarts"], 1, "{st}");
    assert!(
        w.logs().contains("exited with signal SIGKILL"),
        "{}",
        w.logs()
    );
}

#[test]
fn crash_loop_backs_off_then_goes_fatal_with_the_right_count() {
    let w = Warden::start(
        r#"
[programs.crasher]
command = "sh -c 'echo boom; exit 3'"
backoff_initial = "20ms"
backoff_max = "80ms"
max_restarts = 4
restart_window = "1m"
"#,
    );
    let st = w.wait_state("crasher", "fatal", T);
    assert_eq!(st["restarts"], 4, "{st}");
    assert_eq!(st["last_exit"]["code"], 3, "{st}");
    let logs = w.logs();
    assert_eq!(
        logs.matches("crasher | boom").count(),
        5,
        "one first start + 4 restarts:\n{logs}"
    );
    assert!(logs.contains("restarting in"), "backoff is logged:\n{logs}");
    // fatal keeps warden up and /readyz says so
    let (code, body) = http(&w.addr, "GET", "/readyz", &[], "");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("crasher"), "{body}");
    // a manual restart leaves fatal with a fresh budget
    let (code, _) = http(&w.addr, "POST", "/api/v1/programs/crasher/restart", &[], "");
    assert_eq!(code, 202);
    wait_until("crasher restarted by hand", T, || {
        w.logs().matches("crasher | boom").count() > 5
    });
}

#[test]
fn on_failure_policy_leaves_a_clean_exit_alone() {
    let w = Warden::start(
        r#"
[programs.job]
command = ["true"]
restart = "on-failure"
[programs.once]
command = ["sh", "-c", "exit 1"]
restart = "never"
"#,
    );
    let job = w.wait_state("job", "exited", T);
    assert_eq!(job["restarts"], 0);
    assert_eq!(job["last_exit"]["code"], 0);
    let once = w.wait_state("once", "exited", T);
    assert_eq!(once["last_exit"]["code"], 1);
    assert_eq!(once["restarts"], 0);
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_stop_timeout_and_warden_exits_0() {
    let mut w = Warden::start(
        r#"
[supervisor]
shutdown_timeout = "10s"
[programs.stubborn]
command = ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.05; done"]
stop_timeout = "700ms"
"#,
    );
    let pid = w.wait_state("stubborn", "running", T)["pid"]
        .as_i64()
        .unwrap() as i32;
    w.wait_log("stubborn | ready", T);
    let started = std::time::Instant::now();
    w.signal(libc::SIGTERM);
    let st = w.wait_exit(T);
    assert_eq!(st.code(), Some(0), "{}", w.logs());
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "SIGKILL came before stop_timeout"
    );
    assert!(!alive(pid));
    assert!(group_members(pid).is_empty(), "group members survived");
    assert!(w.logs().contains("sending SIGKILL"), "{}", w.logs());
}

#[test]
fn grandchildren_in_the_group_are_stopped_too() {
    let mut w = Warden::start(
        r#"
[programs.forker]
command = ["sh", "-c", "sleep 1000 & sleep 1000 & echo forked; wait"]
backoff_initial = "50ms"
"#,
    );
    let pid = w.wait_state("forker", "running", T)["pid"]
        .as_i64()
        .unwrap() as i32;
    wait_until("3 processes in the group", T, || {
        group_members(pid).len() == 3
    });
    // The leader dying must not leave its children running beside the restarted program.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("the old group to be gone", T, || {
        group_members(pid).is_empty()
    });
    let new_pid = {
        let mut p = 0;
        wait_until("restart", T, || {
            p = w.pid_of("forker").unwrap_or(pid);
            p != pid
        });
        p
    };
    wait_until("3 processes in the new group", T, || {
        group_members(new_pid).len() == 3
    });
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait_exit(T).code(), Some(0));
    assert!(
        group_members(new_pid).is_empty(),
        "grandchildren survived warden's stop"
    );
}

#[test]
fn second_sigint_kills_at_once() {
    let mut w = Warden::start(
        r#"
[supervisor]
shutdown_timeout = "60s"
[programs.stubborn]
command = ["sh", "-c", "trap '' TERM INT; echo ready; while true; do sleep 0.05; done"]
stop_timeout = "60s"
"#,
    );
    let pid = w.wait_state("stubborn", "running", T)["pid"]
        .as_i64()
        .unwrap() as i32;
    w.wait_log("stubborn | ready", T);
    w.signal(libc::SIGINT);
    w.wait_log("waiting for it to exit after SIGTERM", T);
    w.signal(libc::SIGINT);
    let st = w.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "{}", w.logs());
    assert!(!alive(pid));
}

#[test]
fn dependencies_start_first_and_stop_last() {
    let mut w = Warden::start(
        r#"
[programs.db]
command = ["sh", "-c", "echo db up; exec sleep 1000"]
[programs.api]
command = ["sh", "-c", "echo api up; exec sleep 1000"]
depends_on = ["db"]
[programs.web]
command = ["sh", "-c", "echo web up; exec sleep 1000"]
depends_on = ["api"]
"#,
    );
    w.wait_state("web", "running", T);
    let logs = w.logs();
    let pos = |s: &str| {
        logs.find(s)
            .unwrap_or_else(|| panic!("{s} missing:\n{logs}"))
    };
    assert!(pos("started program=db") < pos("started program=api"));
    assert!(pos("started program=api") < pos("started program=web"));
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait_exit(T).code(), Some(0));
    let logs = w.logs();
    let stop = |p: &str| {
        logs.find(&format!("stopped (signal SIGTERM) program={p}"))
            .unwrap_or_else(|| panic!("{p}:\n{logs}"))
    };
    assert!(
        stop("web") < stop("api") && stop("api") < stop("db"),
        "{logs}"
    );
}

#[test]
fn reload_adds_changes_and_removes_exactly_the_right_programs() {
    let base = r#"
[programs.keep]
command = ["sleep", "1000"]
[programs.change]
command = ["sleep", "1000"]
[programs.drop]
command = ["sleep", "1000"]
"#;
    let w = Warden::start(base);
    let keep = w.wait_state("keep", "running", T)["pid"].as_i64().unwrap();
    let change = w.wait_state("change", "running", T)["pid"]
        .as_i64()
        .unwrap();
    let drop_pid = w.wait_state("drop", "running", T)["pid"].as_i64().unwrap() as i32;

    // An invalid file changes nothing.
    w.write_config("[programs.keep]\ncommand = [\"sleep\", \"1000\"]\nrestrat = \"always\"\n");
    w.wait_log("config reload rejected", T);
    assert!(w.logs().contains("programs.keep.restrat"), "{}", w.logs());
    assert_eq!(w.program("keep")["pid"], keep);
    assert_eq!(w.program("drop")["pid"], drop_pid);

    w.write_config(
        r#"
[programs.keep]
command = ["sleep", "1000"]
[programs.change]
command = ["sleep", "1001"]
[programs.added]
command = ["sleep", "1000"]
"#,
    );
    w.wait_state("added", "running", T);
    wait_until("change restarted", T, || {
        let p = w.program("change");
        p["state"] == "running" && p["pid"] != change
    });
    wait_until("drop removed", T, || w.program("drop").is_null());
    assert!(!alive(drop_pid));
    assert_eq!(
        w.program("keep")["pid"],
        keep,
        "unchanged program kept its pid"
    );

    // SIGHUP reloads too (no change here: every pid stays).
    let before = w.status();
    w.signal(libc::SIGHUP);
    w.wait_log("SIGHUP received", T);
    wait_until("reload after SIGHUP", T, || {
        w.logs().matches("config reloaded").count() >= 2
    });
    let after = w.status();
    assert_eq!(before["programs"], after["programs"]);
}

#[test]
fn other_signals_are_forwarded_to_program_groups() {
    let w = Warden::start(
        r#"
[programs.listener]
command = ["sh", "-c", "trap 'echo got usr2' USR2; echo ready; while true; do sleep 0.05; done"]
"#,
    );
    w.wait_log("listener | ready", T);
    w.signal(libc::SIGUSR2);
    w.wait_log("listener | got usr2", T);
}

#[test]
fn child_output_is_tagged_line_by_line_and_survives_binary_and_partial_lines() {
    let w = Warden::start(
        r#"
[programs.noisy]
command = ["sh", "-c", "printf 'one\\ntwo\\n'; printf '\\377\\376bin\\n'; printf 'partial'"]
restart = "never"
"#,
    );
    w.wait_state("noisy", "exited", T);
    w.wait_log("noisy | partial", T);
    let logs = w.logs();
    assert!(
        logs.contains("noisy | one") && logs.contains("noisy | two"),
        "{logs}"
    );
    assert!(logs.contains("noisy | \u{fffd}\u{fffd}bin"), "{logs}");
}

#[test]
fn json_logs_carry_the_program_name() {
    let w = Warden::start(
        r#"
[supervisor]
log_format = "json"
[programs.jp]
command = ["sh", "-c", "echo hello json"]
restart = "never"
"#,
    );
    w.wait_state("jp", "exited", T);
    wait_until("json line", T, || w.logs().contains("hello json"));
    let line = w
        .logs()
        .lines()
        .find(|l| l.contains("hello json"))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).expect(&line);
    assert_eq!(v["program"], "jp");
    assert_eq!(v["stream"], "stdout");
    assert_eq!(v["message"], "hello json");
}

#[test]
fn a_thousand_children_that_exit_at_once_all_have_their_status_observed() {
    let mut cfg = String::new();
    for i in 0..1000 {
        cfg.push_str(&format!(
            "[programs.p{i}]\ncommand = [\"sh\", \"-c\", \"exit {}\"]\nrestart = \"never\"\n",
            i % 100 + 1
        ));
    }
    let w = Warden::start(&cfg);
    wait_until("all 1000 exited", Duration::from_secs(60), || {
        w.status()["programs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["state"] == "exited")
            .count()
            == 1000
    });
    for p in w.status()["programs"].as_array().unwrap() {
        let i: i64 = p["name"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(p["last_exit"]["code"], i % 100 + 1, "{p}");
    }
}
