//! Orphans and zombies: warden as PID 1 in a fresh PID namespace, and as a subreaper.

mod common;

use std::time::Duration;

use common::*;

const ORPHANS: usize = 2000;

fn orphan_maker() -> String {
    // Each `( true & )` subshell exits at once and leaves `true` to be re-parented to warden.
    format!(
        r#"
[programs.orphaner]
command = ["sh", "-c", "i=0; while [ $i -lt {ORPHANS} ]; do ( true & ); i=$((i+1)); done; echo spawned; exec sleep 1000"]
"#
    )
}

fn zombies_under(pid: i32) -> usize {
    processes()
        .iter()
        .filter(|p| p.2 == pid && p.1 == 'Z')
        .count()
}

fn assert_all_reaped(w: &Warden, warden_pid: i32) {
    w.wait_log("orphaner | spawned", Duration::from_secs(60));
    wait_until("every orphan reaped", Duration::from_secs(10), || {
        w.status()["warden"]["orphans_reaped"].as_u64().unwrap_or(0) >= ORPHANS as u64
    });
    wait_until(
        "no zombie left under warden",
        Duration::from_secs(1),
        || zombies_under(warden_pid) == 0,
    );
}

#[test]
fn as_pid_1_in_a_new_pid_namespace_every_orphan_is_reaped() {
    if unsafe { libc::geteuid() } != 0
        || std::process::Command::new("unshare")
            .arg("--version")
            .output()
            .is_err()
    {
        return skip(
            "as_pid_1_in_a_new_pid_namespace_every_orphan_is_reaped",
            "needs root and unshare(1)",
        );
    }
    let prefix = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
        .map(String::from)
        .to_vec();
    let mut w = Warden::start_with(&orphan_maker(), |_| {}, prefix);
    assert_eq!(
        w.status()["warden"]["pid"],
        1,
        "warden must be PID 1 in the namespace"
    );
    // warden's pid as seen from here: the child of `unshare`.
    let unshare_pid = w.child.id() as i32;
    let warden_pid = processes()
        .iter()
        .find(|p| p.2 == unshare_pid)
        .map(|p| p.0)
        .expect("warden under unshare");
    assert_all_reaped(&w, warden_pid);
    // unshare ignores SIGTERM itself; signal warden as its PID 1 would be signalled.
    unsafe { libc::kill(warden_pid, libc::SIGTERM) };
    assert_eq!(
        w.wait_exit(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        w.logs()
    );
}

#[test]
fn as_a_subreaper_every_orphan_is_reaped() {
    let w = Warden::start(&orphan_maker());
    let pid = w.child.id() as i32;
    assert_all_reaped(&w, pid);
}
