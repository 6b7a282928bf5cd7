//! Stops through the real binary, with programs that take their time to stop: every control
//! is heard while a stop is under way (Kill interrupts it), a forwarded signal reaches only
//! the process it was meant for, and the supervisor's kills go through the program actors.

mod common;

use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(15);

/// `warden restart NAME`, as a person would type it.
fn restart(w: &Warden, name: &str) {
    let o = warden_cli(&["restart", name], &w.config);
    assert!(
        o.status.success(),
        "warden restart {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `body` with a fixed loopback port, so the CLI can find this warden from the config.
fn with_port(body: &str) -> String {
    format!("[http]\nlisten = \"127.0.0.1:{}\"\n{body}", free_port())
}

fn running_pid(w: &Warden, name: &str) -> i32 {
    w.wait_state(name, "running", T)["pid"].as_i64().unwrap() as i32
}

#[test]
fn a_signal_forwarded_during_a_restart_stop_does_not_reach_the_replacement() {
    // Takes 2 s to stop after SIGTERM; has no handler for SIGUSR2, so SIGUSR2 would kill it
    // (the old process mid-stop, or its replacement right after it starts).
    let w = Warden::start(&with_port(
        r#"
[programs.slow]
command = ["sh", "-c", "trap 'echo got term; sleep 2; echo bye; exit 0' TERM; trap 'echo got winch' WINCH; echo ready; while true; do sleep 0.05; done"]
stop_timeout = "30s"
"#,
    ));
    let old = running_pid(&w, "slow");
    w.wait_log("slow | ready", T);
    restart(&w, "slow");
    w.wait_log("slow | got term", T);
    w.signal(libc::SIGUSR2);
    let seen = w.program("slow");
    assert_eq!(seen["state"], "stopping", "{seen}");
    assert_eq!(seen["pid"], old, "{seen}");

    let mut new = old;
    wait_until("the replacement to run", T, || {
        let p = w.program("slow");
        new = p["pid"].as_i64().unwrap_or(0) as i32;
        p["state"] == "running" && new != old
    });
    wait_until("the replacement's trap to be set", T, || {
        w.logs().matches("slow | ready").count() == 2
    });
    // Signals reach the program in the order warden got them: once the replacement answers
    // SIGWINCH, a SIGUSR2 queued for it would have arrived already.
    w.signal(libc::SIGWINCH);
    w.wait_log("slow | got winch", T);

    let logs = w.logs();
    assert!(alive(new), "the replacement died:\n{logs}");
    assert_eq!(w.pid_of("slow"), Some(new), "{logs}");
    assert_eq!(w.program("slow")["restarts"], 1, "{logs}");
    assert!(
        logs.contains("slow | bye") && logs.contains("stopped (exit code 0)"),
        "the old process did not finish its graceful stop:\n{logs}"
    );
    assert!(!logs.contains("SIGUSR2"), "{logs}");
}

#[test]
fn second_sigint_interrupts_a_restart_stop_and_nothing_is_started_again() {
    let mut w = Warden::start(&with_port(
        r#"
[supervisor]
shutdown_timeout = "60s"
[programs.stubborn]
command = ["sh", "-c", "trap '' TERM INT; echo ready; while true; do sleep 0.05; done"]
stop_timeout = "60s"
"#,
    ));
    let pid = running_pid(&w, "stubborn");
    w.wait_log("stubborn | ready", T);
    restart(&w, "stubborn");
    w.wait_state("stubborn", "stopping", T);
    // The stop is alive and talking while it waits.
    w.wait_log("waiting for it to exit after SIGTERM; SIGKILL in", T);
    w.signal(libc::SIGINT);
    w.wait_log("SIGINT received: stopping all programs", T);
    let killed_at = Instant::now();
    w.signal(libc::SIGINT);
    let st = w.wait_exit(T);
    let logs = w.logs();
    assert_eq!(st.code(), Some(0), "{logs}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(10),
        "the 60 s stop was not interrupted:\n{logs}"
    );
    assert!(!alive(pid));
    assert!(group_members(pid).is_empty(), "group members survived");
    assert!(
        logs.contains("kill requested while stopping"),
        "the kill did not go through the actor:\n{logs}"
    );
    assert_eq!(
        logs.matches("started program=stubborn").count(),
        1,
        "a replacement was started during shutdown:\n{logs}"
    );
}

#[test]
fn the_end_of_the_shutdown_budget_kills_a_program_in_its_graceful_stop() {
    let mut w = Warden::start(&with_port(
        r#"
[supervisor]
shutdown_timeout = "1s"
[programs.stubborn]
command = ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.05; done"]
stop_timeout = "60s"
"#,
    ));
    let pid = running_pid(&w, "stubborn");
    w.wait_log("stubborn | ready", T);
    w.signal(libc::SIGTERM);
    let st = w.wait_exit(T);
    let logs = w.logs();
    assert_eq!(st.code(), Some(0), "{logs}");
    assert!(logs.contains("shutdown_timeout (1s) passed"), "{logs}");
    assert!(logs.contains("kill requested while stopping"), "{logs}");
    assert!(!alive(pid));
    assert!(group_members(pid).is_empty(), "group members survived");
}

#[test]
fn a_restart_requested_during_a_slow_restart_is_one_restart_ending_in_sigkill() {
    let w = Warden::start(&with_port(
        r#"
[programs.stubborn]
command = ["sh", "-c", "trap '' TERM; trap 'echo got winch' WINCH; echo ready; while true; do sleep 0.05; done"]
stop_timeout = "3s"
"#,
    ));
    let old = running_pid(&w, "stubborn");
    w.wait_log("stubborn | ready", T);
    restart(&w, "stubborn");
    w.wait_log("waiting for it to exit after SIGTERM", T);
    // Heard while stopping (the CLI answers at once), and folded into the restart under way.
    restart(&w, "stubborn");
    assert_eq!(w.program("stubborn")["state"], "stopping");

    let mut new = old;
    wait_until("the replacement to run", T, || {
        let p = w.program("stubborn");
        new = p["pid"].as_i64().unwrap_or(0) as i32;
        p["state"] == "running" && new != old
    });
    wait_until("the replacement's trap to be set", T, || {
        w.logs().matches("stubborn | ready").count() == 2
    });
    w.signal(libc::SIGWINCH);
    w.wait_log("stubborn | got winch", T);
    let logs = w.logs();
    assert!(
        logs.contains("did not stop within 3s after SIGTERM; sending SIGKILL"),
        "{logs}"
    );
    assert!(group_members(old).is_empty(), "the old group survived");
    assert_eq!(w.pid_of("stubborn"), Some(new), "{logs}");
    assert_eq!(w.program("stubborn")["restarts"], 1, "{logs}");
    assert_eq!(w.program("stubborn")["last_exit"]["signal"], 9, "{logs}");
}
