//! The CLI client (`warden status|restart|token|login-url`) against a running warden, the
//! bearer auth of the mutating endpoints, and the refusal to serve a non-loopback address
//! without an api_token.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);
const API_TOKEN: &str = "cli-test-api-token-4f1c";

/// Run the CLI with a clean environment for the variables it reads.
fn cli(args: &[&str], config: &Path) -> Output {
    cli_in(args, Some(config), None, &[])
}

fn cli_in(
    args: &[&str],
    config: Option<&Path>,
    cwd: Option<&Path>,
    env: &[(&str, &str)],
) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    if let Some(cfg) = config {
        c.arg("-c").arg(cfg);
    }
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    c.env_remove("WARDEN_API_TOKEN").env_remove("WARDEN_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

fn two_programs(port: u16, api_token: Option<&str>) -> String {
    let token = api_token
        .map(|t| format!("api_token = \"{t}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[http]
listen = "127.0.0.1:{port}"
{token}
[programs.web]
command = ["sleep", "300"]
[programs.worker]
command = ["sleep", "300"]
"#
    )
}

#[test]
fn status_prints_a_table_and_json() {
    let w = Warden::start(&two_programs(free_port(), None));
    let web = w.wait_state("web", "running", T)["pid"].as_i64().unwrap();
    w.wait_state("worker", "running", T);

    let o = cli(&["status"], &w.config);
    assert_exit(&o, 0);
    let out = stdout(&o);
    let header = out.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["PROGRAM", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS"]
    );
    let row = out.lines().find(|l| l.starts_with("web ")).expect(&out);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "running", "{out}");
    assert_eq!(cols[3], web.to_string(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("worker ") && l.contains("running")),
        "{out}"
    );
    assert!(out.contains("token: not managed"), "{out}");

    let o = cli(&["status", "--json"], &w.config);
    assert_exit(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    let names: Vec<&str> = v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "worker"]);
    assert_eq!(v["programs"][0]["pid"], web);

    // $WARDEN_CONFIG, then ./supervisor.toml, like `warden run`.
    let o = cli_in(
        &["status"],
        None,
        None,
        &[("WARDEN_CONFIG", w.config.to_str().unwrap())],
    );
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("worker"));
    let o = cli_in(&["status"], None, Some(w.dir.path()), &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("worker"));

    let o = cli(&["token", "status"], &w.config);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("not managed"), "{}", stdout(&o));
    let o = cli(&["token", "refresh"], &w.config);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("manages no token"), "{}", stderr(&o));
    let o = cli(&["login-url"], &w.config);
    assert_exit(&o, 1);
}

#[test]
fn restart_needs_the_api_token_and_gives_the_program_a_new_pid() {
    let w = Warden::start(&two_programs(free_port(), Some(API_TOKEN)));
    let old = w.wait_state("web", "running", T)["pid"].as_i64().unwrap();
    let path = "/api/v1/programs/web/restart";

    // The endpoint itself: 401 without or with a wrong bearer, nothing restarted.
    let r = request(&w.addr, "POST", path, &[], "");
    assert_eq!(r.status, 401, "{}", r.body);
    let r = request(
        &w.addr,
        "POST",
        path,
        &[("Authorization", "Bearer nope")],
        "",
    );
    assert_eq!(r.status, 401, "{}", r.body);
    let r = request(&w.addr, "POST", "/api/v1/token/refresh", &[], "");
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(!r.body.contains(API_TOKEN));
    assert_eq!(w.pid_of("web"), Some(old as i32));

    // The CLI reads the token from the config and restarts.
    let o = cli(&["restart", "web"], &w.config);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "restarting web\n");
    wait_until("web has a new pid", T, || {
        let p = w.program("web");
        p["state"] == "running" && p["pid"].as_i64().is_some_and(|p| p != old)
    });
    assert_eq!(w.program("web")["restarts"], 1);

    // And with the bearer by hand: 202.
    let bearer = format!("Bearer {API_TOKEN}");
    let r = request(&w.addr, "POST", path, &[("Authorization", &bearer)], "");
    assert_eq!(r.status, 202, "{}", r.body);

    let o = cli(&["restart", "nope"], &w.config);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("no program named \"nope\" (programs: web, worker)"),
        "{}",
        stderr(&o)
    );

    // A config with another api_token (a stale copy, say): refused, exit 1, clear message.
    let other = w.dir.path().join("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&w.config)
            .unwrap()
            .replace(API_TOKEN, "wrong"),
    )
    .unwrap();
    let o = cli(&["restart", "web"], &other);
    assert_exit(&o, 1);
    assert!(
        stderr(&o)
            .contains("warden refused the API token; set [http] api_token / WARDEN_API_TOKEN"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("wrong"),
        "the token is not echoed: {}",
        stderr(&o)
    );
    // ... which $WARDEN_API_TOKEN fixes when the config has none.
    let none = w.dir.path().join("none.toml");
    std::fs::write(
        &none,
        two_programs(w.addr.rsplit(':').next().unwrap().parse().unwrap(), None),
    )
    .unwrap();
    let o = cli_in(
        &["restart", "worker"],
        Some(&none),
        None,
        &[("WARDEN_API_TOKEN", API_TOKEN)],
    );
    assert_exit(&o, 0);

    // Nothing secret in what warden serves.
    for path in ["/api/v1/status", "/metrics", "/", "/readyz", "/healthz"] {
        let r = request(&w.addr, "GET", path, &[], "");
        assert!(!r.body.contains(API_TOKEN), "{path} shows the api_token");
    }
}

#[test]
fn token_status_and_login_url_with_the_sandbox() {
    let stack = ManualLoginStack::start(
        Some(API_TOKEN),
        "[programs.web]\ncommand = [\"sleep\", \"300\"]\n",
    );
    let w = &stack.warden;
    let port = stack.port;

    let o = cli(&["login-url"], &w.config);
    assert_exit(&o, 0);
    let url = format!("http://127.0.0.1:{port}/login");
    assert_eq!(stdout(&o), format!("{url}\n"));
    let o = cli(&["token", "status"], &w.config);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.starts_with("state:        needs_login\n"), "{out}");
    assert!(out.contains(&format!("log in at:    {url}\n")), "{out}");

    let totp = warden::sandbox::kite::current_totp(SANDBOX_TOTP).unwrap();
    assert_eq!(manual_login(&w.addr, &totp).status, 302);
    wait_until("valid", T, || w.status()["token"]["state"] == "valid");

    let o = cli(&["token", "status"], &w.config);
    assert_exit(&o, 0);
    let out = stdout(&o);
    for line in [
        "state:        valid\n",
        "user:         AB1234\n",
        "login:        manual\n",
        "source:       manual\n",
        "last error:   -\n",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    for field in ["obtained:", "expires:", "next refresh:"] {
        let line = out.lines().find(|l| l.starts_with(field)).expect(field);
        assert!(line.contains(" ago)") || line.contains("(in "), "{line}");
    }
    assert!(!out.contains("log in at"), "{out}");
    let env = std::fs::read_to_string(w.dir.path().join(".env")).unwrap();
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("KITE_ACCESS_TOKEN="))
        .unwrap();
    assert!(!out.contains(token), "token status shows the token");
    let o = cli(&["status"], &w.config);
    assert!(
        stdout(&o).contains("token: valid, user AB1234, expires "),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains(token));
    let o = cli(&["status", "--json"], &w.config);
    assert!(!stdout(&o).contains(token));

    let o = cli(&["token", "refresh"], &w.config);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("token refresh started"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains(&url),
        "manual mode points at the login: {}",
        stdout(&o)
    );
}

#[test]
fn not_running_is_exit_1_with_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("supervisor.toml");
    std::fs::write(&cfg, two_programs(port, None)).unwrap();
    for args in [
        &["status"][..],
        &["restart", "web"],
        &["token", "status"],
        &["token", "refresh"],
        &["login-url"],
    ] {
        let o = cli(args, &cfg);
        assert_exit(&o, 1);
        let want = format!(
            "warden is not running at 127.0.0.1:{port} (connection refused); start it with `warden run -c {}`",
            cfg.display()
        );
        assert!(stderr(&o).contains(&want), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn config_problems_are_exit_2_but_unrelated_ones_do_not_hide_warden() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let o = cli(&["status"], &missing);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("cannot read the config file"),
        "{}",
        stderr(&o)
    );

    let zero = dir.path().join("zero.toml");
    std::fs::write(&zero, "[http]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let o = cli(&["status"], &zero);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("port 0"), "{}", stderr(&o));

    // The shell running the CLI may lack warden's secrets: [http] is enough to find it.
    let w = Warden::start(&two_programs(free_port(), Some(API_TOKEN)));
    w.wait_state("web", "running", T);
    let partial = dir.path().join("partial.toml");
    let text = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace(API_TOKEN, "${WARDEN_CLI_TEST_TOKEN:-x}")
        .replace(
            "[programs.web]",
            "[programs.web]\nenv = { SECRET = \"${WARDEN_CLI_TEST_UNSET}\" }",
        );
    std::fs::write(&partial, text).unwrap();
    let o = cli(&["check"], &partial);
    assert_exit(&o, 2);
    let o = cli(&["status"], &partial);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("web"));
    let o = cli_in(
        &["restart", "web"],
        Some(&partial),
        None,
        &[("WARDEN_CLI_TEST_TOKEN", API_TOKEN)],
    );
    assert_exit(&o, 0);
}

#[test]
fn run_refuses_a_public_listen_address_without_an_api_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("supervisor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"0.0.0.0:{}\"\n\n[programs.web]\ncommand = [\"sleep\", \"300\"]\n",
            free_port()
        ),
    )
    .unwrap();
    // Bounded: should the check ever go, this fails instead of serving forever.
    let mut child = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&cfg)
        .env_remove("WARDEN_API_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until("warden run to exit", T, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.unwrap().code(), Some(2), "{err}");
    assert!(err.contains("http.api_token"), "{err}");
    let o = cli(&["check"], &cfg);
    assert_exit(&o, 2);
}

/// `status --watch` with stdout a pipe: whole tables, each followed by a blank line, no screen
/// clearing; after warden stops it says so and keeps asking.
#[test]
fn status_watch_redraws_and_outlives_warden() {
    let mut w = Warden::start(&two_programs(free_port(), None));
    w.wait_state("web", "running", T);
    let mut watch = Command::new(BIN)
        .args(["status", "--watch", "-c"])
        .arg(&w.config)
        .env_remove("WARDEN_API_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_channel(watch.stdout.take().unwrap());
    let mut seen: Vec<String> = Vec::new();
    fn read_until(
        lines: &std::sync::mpsc::Receiver<String>,
        what: &str,
        done: &dyn Fn(&[String]) -> bool,
        seen: &mut Vec<String>,
    ) {
        let deadline = std::time::Instant::now() + T;
        while !done(seen) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(e) => panic!("waiting for {what} ({e}); got {seen:#?}"),
            }
        }
    }
    let tables = |s: &[String]| s.iter().filter(|l| l.starts_with("PROGRAM")).count();
    read_until(&lines, "two tables", &|s| tables(s) >= 2, &mut seen);
    assert!(seen.iter().all(|l| !l.contains('\x1b')), "{seen:#?}");
    // Each table ends with a blank line before the next header.
    let second = seen.iter().rposition(|l| l.starts_with("PROGRAM")).unwrap();
    assert_eq!(seen[second - 1], "", "{seen:#?}");
    assert!(seen.iter().any(|l| l.starts_with("web ")), "{seen:#?}");

    w.signal(libc::SIGTERM);
    w.wait_exit(T);
    let gone = |s: &[String]| s.iter().filter(|l| l.contains("not reachable")).count();
    read_until(
        &lines,
        "two not-reachable rounds",
        &|s| gone(s) >= 2,
        &mut seen,
    );
    assert!(watch.try_wait().unwrap().is_none(), "watch exited early");
    watch.kill().unwrap();
    watch.wait().unwrap();
}
