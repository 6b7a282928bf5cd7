//! Health probes through the real binary against a real HTTP server child.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

fn web_program(port: u16, path: &str, extra: &str) -> String {
    format!(
        r#"
[programs.web]
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
backoff_initial = "50ms"
{extra}
[programs.web.health]
url = "http://127.0.0.1:{port}{path}"
interval = "100ms"
timeout = "1s"
initial_delay = "1500ms"
failure_threshold = 3
"#
    )
}

#[test]
fn a_healthy_program_goes_from_starting_to_running() {
    let port = free_port();
    let w = Warden::start(&web_program(port, "/", ""));
    let st = w.wait_state("web", "running", T);
    assert_eq!(st["health"], "healthy", "{st}");
    assert_eq!(st["restarts"], 0);
    let (code, body) = http(&w.addr, "GET", "/readyz", &[], "");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn consecutive_failures_restart_the_program() {
    let port = free_port();
    // The server answers 404 on this path: a plain failure, not an auth problem.
    let w = Warden::start(&web_program(port, "/missing", "max_restarts = 100"));
    let first = w.wait_state("web", "starting", T)["pid"].clone();
    wait_until("a liveness restart", T, || {
        let p = w.program("web");
        p["restarts"].as_u64().unwrap_or(0) >= 1 && p["pid"] != first
    });
    assert!(w.logs().contains("unhealthy (HTTP 404)"), "{}", w.logs());
}

#[test]
fn an_auth_status_marks_auth_failed_and_never_restarts() {
    let port = free_port();
    let extra = "";
    let cfg = web_program(port, "/missing", extra).replace(
        "failure_threshold = 3",
        "failure_threshold = 1\nauth_status = [404]",
    );
    let w = Warden::start(&cfg);
    wait_until("auth_failed", T, || {
        w.program("web")["health"] == "auth_failed"
    });
    let pid = w.pid_of("web");
    // Many probe intervals later: same process, no restart.
    wait_until("20 more probes", T, || {
        w.logs().matches("web | ").count() >= 20
    });
    let p = w.program("web");
    assert_eq!(p["restarts"], 0, "{p}");
    assert_eq!(w.pid_of("web"), pid);
    let (code, body) = http(&w.addr, "GET", "/readyz", &[], "");
    assert_eq!(code, 503, "{body}");
}
