//! Several tokens in one warden (SPEC §9.1), through the real binary, with two real
//! `warden sandbox kite` processes standing in for two brokers.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use warden::sandbox::kite::{DEFAULT_API_SECRET, DEFAULT_PASSWORD};

const T: Duration = Duration::from_secs(30);
/// A refresh after an expiry may wait for the next TOTP step (a code is never submitted twice).
const REFRESH: Duration = Duration::from_secs(60);

/// `[tokens.NAME]` and `[tokens.NAME.kite]` for `kite`, writing `env_key` into `.env`.
fn token_table(name: &str, env_key: &str, kite: &KiteSandbox, check_interval: &str) -> String {
    token_table_login(name, env_key, kite, check_interval, "totp")
}

fn token_table_login(
    name: &str,
    env_key: &str,
    kite: &KiteSandbox,
    check_interval: &str,
    login: &str,
) -> String {
    let url = kite.url();
    format!(
        r#"
[tokens.{name}]
provider = "kite"
env_file = ".env"
env_key = "{env_key}"
min_interval = "0s"
check_interval = "{check_interval}"
[tokens.{name}.kite]
api_key = "kitefront"
api_secret = "{DEFAULT_API_SECRET}"
user_id = "AB1234"
login = "{login}"
password = "{DEFAULT_PASSWORD}"
totp_secret = "{SANDBOX_TOTP}"
login_base = "{url}"
api_base = "{url}"
"#
    )
}

/// A program that appends a line to `{name}.hups` for every SIGHUP it gets.
fn hup_counter(name: &str, tokens: &str) -> String {
    format!(
        r#"
[programs.{name}]
command = ["sh", "-c", "trap 'echo hup >> {name}.hups' HUP; while :; do sleep 0.2; done"]
on_token_change = "signal"
tokens = {tokens}
"#
    )
}

fn http_section(port: u16) -> String {
    format!("[http]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n")
}

/// The value of `key` in the warden's `.env` ("" when absent).
fn env_value(dir: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join(".env")).unwrap_or_default();
    let prefix = format!("{key}=");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or("")
        .to_string()
}

fn hups(dir: &Path, program: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{program}.hups")))
        .unwrap_or_default()
        .lines()
        .count()
}

fn wait_valid(w: &Warden, names: &[&str]) {
    wait_until(&format!("tokens {names:?} valid"), T, || {
        let st = w.status();
        names.iter().all(|n| st["tokens"][*n]["state"] == "valid")
    });
}

#[test]
fn both_tokens_are_kept_in_one_env_file_with_their_own_state_files_status_and_metrics() {
    let kite_a = KiteSandbox::start(&[]);
    let kite_b = KiteSandbox::start(&[]);
    let config = format!(
        "{}{}",
        token_table("a", "A_TOKEN", &kite_a, "1h"),
        token_table("b", "B_TOKEN", &kite_b, "1h")
    );
    let w = Warden::start(&format!("# tokens of two brokers\n{config}"));
    wait_valid(&w, &["a", "b"]);
    let dir = w.dir.path();
    let (a, b) = (env_value(dir, "A_TOKEN"), env_value(dir, "B_TOKEN"));
    assert!(!a.is_empty() && !b.is_empty() && a != b, "A={a:?} B={b:?}");
    let env = std::fs::read_to_string(dir.join(".env")).unwrap();
    assert!(
        !env.contains("KITE_ACCESS_TOKEN"),
        "only the configured keys: {env}"
    );
    assert_eq!(kite_a.stats()["sessions_created"], 1);
    assert_eq!(kite_b.stats()["sessions_created"], 1);

    use std::os::unix::fs::PermissionsExt;
    for name in ["a", "b"] {
        let file = dir.join(format!(".warden/tokens/{name}.json"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    let own: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".warden/tokens/b.json")).unwrap())
            .unwrap();
    assert_eq!(own["access_token"], b.as_str(), "b.json holds b's token");
    assert!(!dir.join(".warden/token.json").exists());

    let st = w.status();
    let names: Vec<&String> = st["tokens"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(st["token"], st["tokens"]["a"], "token is the first token");
    assert_eq!(st["tokens"]["b"]["user_id"], "AB1234");
    assert!(!st.to_string().contains(&a) && !st.to_string().contains(&b));

    let (_, metrics) = http(&w.addr, "GET", "/metrics", &[], "");
    assert!(
        metrics.contains(r#"warden_token_valid{token="a"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"warden_token_valid{token="b"} 1"#));
    assert!(metrics.contains(r#"warden_token_login_attempts_total{kind="totp",token="b"} 1"#));
    assert!(!metrics.contains(&a) && !metrics.contains(&b));
    assert!(!w.logs().contains(&a) && !w.logs().contains(&b));
}

#[test]
fn a_hanging_broker_never_delays_the_other_token_and_programs_get_only_their_tokens() {
    let kite_a = KiteSandbox::start(&[]);
    let kite_b = KiteSandbox::start(&[]);
    let config = format!(
        "{}{}{}{}",
        token_table("a", "A_TOKEN", &kite_a, "2s"),
        token_table("b", "B_TOKEN", &kite_b, "2s"),
        hup_counter("uses_a", r#"["a"]"#),
        hup_counter("uses_b", r#"["b"]"#),
    );
    let w = Warden::start(&config);
    wait_valid(&w, &["a", "b"]);
    let pid_a = w.wait_state("uses_a", "running", T)["pid"].clone();
    w.wait_state("uses_b", "running", T);
    let dir = w.dir.path();
    let (a, b) = (env_value(dir, "A_TOKEN"), env_value(dir, "B_TOKEN"));

    // A's broker stops answering (every request hangs for minutes); then B's token dies.
    kite_a.fault(r#"{"kind": "delay", "delay_ms": 300000, "count": 1000}"#);
    wait_until("a validation of A to hang", T, || {
        kite_a.stats()["pending_faults"]
            .as_u64()
            .is_some_and(|n| n < 1000)
    });
    kite_b.expire();
    wait_until("B's new token in .env", REFRESH, || {
        let now = env_value(dir, "B_TOKEN");
        !now.is_empty() && now != b
    });
    wait_until("uses_b got SIGHUP", T, || hups(dir, "uses_b") == 1);
    assert_eq!(env_value(dir, "A_TOKEN"), a, "A's key is untouched");
    assert_eq!(hups(dir, "uses_a"), 0, "uses_a does not use token b");
    assert_eq!(w.program("uses_a")["pid"], pid_a);
    assert_eq!(kite_a.stats()["sessions_created"], 1);
}

#[test]
fn each_token_is_refreshed_by_name_over_http_and_the_cli() {
    let kite_a = KiteSandbox::start(&[]);
    let kite_b = KiteSandbox::start(&[]);
    let port = free_port();
    let config = format!(
        "{}{}{}",
        http_section(port),
        token_table("a", "A_TOKEN", &kite_a, "1h"),
        token_table("b", "B_TOKEN", &kite_b, "1h"),
    );
    let w = Warden::start(&config);
    wait_valid(&w, &["a", "b"]);
    let dir = w.dir.path();
    let (a, b) = (env_value(dir, "A_TOKEN"), env_value(dir, "B_TOKEN"));

    let (code, body) = http(&w.addr, "POST", "/api/v1/tokens/nope/refresh", &[], "");
    assert_eq!(code, 404, "{body}");
    let (code, body) = http(&w.addr, "POST", "/api/v1/tokens/nope/unblock", &[], "");
    assert_eq!(code, 404, "{body}");
    let (code, body) = http(&w.addr, "POST", "/api/v1/token/refresh", &[], "");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"a\"") && body.contains("\"b\""), "{body}");
    let (code, body) = http(&w.addr, "POST", "/api/v1/tokens/a/unblock", &[], "");
    assert_eq!(code, 409, "nothing is blocked: {body}");

    let out = warden_cli(&["token", "refresh"], &w.config);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("several tokens"));
    let out = warden_cli(&["token", "refresh", "nope"], &w.config);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = warden_cli(&["token", "status", "b"], &w.config);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("state:        valid"));
    let out = warden_cli(&["token", "status"], &w.config);
    let all = String::from_utf8_lossy(&out.stdout);
    assert!(
        all.contains("token a:") && all.contains("token b:"),
        "{all}"
    );
    // SPEC §9.2: with a NAME, the redirect URL to register with the broker comes too.
    let out = warden_cli(&["login-url", "b"], &w.config);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "http://127.0.0.1:{port}/login/b\n\
             redirect URL to register with the broker: http://127.0.0.1:{port}/kite/callback\n"
        )
    );

    // B's token dies; `warden token refresh b` renews B alone.
    kite_b.expire();
    let out = warden_cli(&["token", "refresh", "b"], &w.config);
    assert!(out.status.success(), "{out:?}");
    wait_until("B's new token in .env", REFRESH, || {
        let now = env_value(dir, "B_TOKEN");
        !now.is_empty() && now != b
    });
    assert_eq!(env_value(dir, "A_TOKEN"), a);
    assert_eq!(kite_a.stats()["sessions_created"], 1);
    assert_eq!(kite_b.stats()["sessions_created"], 2);
}

#[test]
fn login_routes_name_the_token_and_the_callback_reaches_it() {
    let kite_a = KiteSandbox::start(&[]);
    let kite_b = KiteSandbox::start(&[]);
    let port = free_port();
    let config = format!(
        "{}{}{}",
        http_section(port),
        token_table("a", "A_TOKEN", &kite_a, "1h"),
        token_table("b", "B_TOKEN", &kite_b, "1h"),
    );
    let w = Warden::start(&config);
    wait_valid(&w, &["a", "b"]);
    let r = request(&w.addr, "GET", "/login/b", &[], "");
    assert_eq!(r.status, 302, "{}", r.body);
    let to = r.header("location").unwrap().to_string();
    assert!(to.starts_with(&kite_b.url()), "{to}");
    assert!(
        to.contains("state%3Db~") || to.contains("state%3Db%7E"),
        "the state names its token: {to}"
    );
    assert_eq!(request(&w.addr, "GET", "/login/nope", &[], "").status, 404);
    // No token waits for a login: /login lists them.
    let r = request(&w.addr, "GET", "/login", &[], "");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("/login/a") && r.body.contains("/login/b"));
    // A state naming a token that does not exist, or none at all, is refused.
    let (code, _) = http(
        &w.addr,
        "GET",
        "/kite/callback?request_token=x&state=zz~1",
        &[],
        "",
    );
    assert_eq!(code, 400);
    let (code, _) = http(
        &w.addr,
        "GET",
        "/kite/callback?request_token=x&state=abc",
        &[],
        "",
    );
    assert_eq!(code, 400);
    let (_, page) = http(&w.addr, "GET", "/", &[], "");
    assert!(
        page.contains("Token a") && page.contains("Token b"),
        "{page}"
    );
}

#[test]
fn a_manual_login_started_for_one_token_completes_that_token_only() {
    let port = free_port();
    let kite_a = KiteSandbox::with().redirect_to_warden(port).start();
    let kite_b = KiteSandbox::with().redirect_to_warden(port).start();
    let config = format!(
        "{}{}{}",
        http_section(port),
        token_table_login("a", "A_TOKEN", &kite_a, "1h", "manual"),
        token_table_login("b", "B_TOKEN", &kite_b, "1h", "manual"),
    );
    let w = Warden::start(&config);
    wait_until("both tokens need a login", T, || {
        let st = w.status();
        ["a", "b"]
            .iter()
            .all(|n| st["tokens"][*n]["state"] == "needs_login")
    });
    // Two tokens wait: /login asks which.
    let r = request(&w.addr, "GET", "/login", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("/login/a") && r.body.contains("/login/b"));
    let (_, page) = http(&w.addr, "GET", "/", &[], "");
    assert!(page.contains(r#"href="/login/a""#) && page.contains(r#"href="/login/b""#));

    let done = manual_login_from(&w.addr, "/login/b", &totp_code(SANDBOX_TOTP, 0));
    assert_eq!(done.status, 302, "{}", done.body);
    wait_valid(&w, &["b"]);
    let dir = w.dir.path();
    assert!(!env_value(dir, "B_TOKEN").is_empty());
    assert_eq!(env_value(dir, "A_TOKEN"), "");
    assert_eq!(w.status()["tokens"]["a"]["state"], "needs_login");
    assert_eq!(kite_a.stats()["sessions_created"], 0);
    assert_eq!(kite_b.stats()["sessions_created"], 1);
    // Now only a waits: /login goes straight to its broker.
    let r = request(&w.addr, "GET", "/login", &[], "");
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().starts_with(&kite_a.url()));
}

#[test]
fn a_reload_adds_a_token_without_touching_the_first() {
    let kite_a = KiteSandbox::start(&[]);
    let kite_b = KiteSandbox::start(&[]);
    let first = format!(
        "{}{}",
        token_table("a", "A_TOKEN", &kite_a, "1h"),
        hup_counter("uses_a", r#"["a"]"#)
    );
    let w = Warden::start(&first);
    wait_valid(&w, &["a"]);
    let pid = w.wait_state("uses_a", "running", T)["pid"].clone();
    let dir = w.dir.path();
    let a = env_value(dir, "A_TOKEN");
    w.write_config(&format!(
        "{first}{}",
        token_table("b", "B_TOKEN", &kite_b, "1h")
    ));
    wait_until("token b kept after the reload", T, || {
        w.status()["tokens"]["b"]["state"] == "valid"
    });
    assert!(!env_value(dir, "B_TOKEN").is_empty());
    assert!(dir.join(".warden/tokens/b.json").exists());
    assert_eq!(env_value(dir, "A_TOKEN"), a);
    assert_eq!(kite_a.stats()["sessions_created"], 1);
    assert_eq!(w.program("uses_a")["pid"], pid);
    assert_eq!(hups(dir, "uses_a"), 0, "uses_a does not use token b");

    // And removed again: its keeper and its series go, a is not touched.
    w.write_config(&first);
    wait_until("token b gone after the reload", T, || {
        w.status()["tokens"].get("b").is_none()
    });
    let (_, metrics) = http(&w.addr, "GET", "/metrics", &[], "");
    assert!(
        !metrics.contains(r#"warden_token_valid{token="b"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"warden_token_valid{token="a"} 1"#));
    assert_eq!(w.status()["tokens"]["a"]["state"], "valid");
    assert_eq!(env_value(dir, "A_TOKEN"), a);
    assert_eq!(w.program("uses_a")["pid"], pid);
}

#[test]
fn token_and_tokens_together_or_two_tokens_on_one_key_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        "[token]\nprovider = \"none\"\n\n[tokens.x]\nprovider = \"none\"\nenv_key = \"X\"\n",
    )
    .unwrap();
    let out = warden_cli(&["check"], &config);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("supervisor.toml:4: tokens:") && err.contains("[token] and [tokens.NAME]"),
        "{err}"
    );

    std::fs::write(
        &config,
        "[tokens.x]\nprovider = \"none\"\n[tokens.y]\nprovider = \"none\"\n",
    )
    .unwrap();
    let out = warden_cli(&["check"], &config);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokens.y: has no env_key"), "{err}");
}

/// A throwaway redis-server on a free port (`None` after a visible SKIP when not installed).
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    fn start(test: &str) -> Option<Redis> {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else {
            skip(
                test,
                "redis-server is not installed (apt-get install redis-server)",
            );
            return None;
        };
        let r = Redis { child, port };
        wait_until("redis answers", Duration::from_secs(10), || {
            r.keys().is_some()
        });
        Some(r)
    }

    /// Every key, by `KEYS *` over the wire protocol (`None` while it does not answer).
    fn keys(&self) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"KEYS *\r\n").ok()?;
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).to_string())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_wardens_sharing_two_tokens_through_redis_log_in_once_per_broker() {
    let Some(redis) = Redis::start("two_wardens_sharing_two_tokens_through_redis") else {
        return;
    };
    let kite_a = KiteSandbox::start(&[]);
    let kite_b = KiteSandbox::start(&[]);
    let store = format!(
        "kind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\nlock_ttl = \"3s\"\n",
        redis.port
    );
    let config = format!(
        "{}[tokens.a.store]\n{store}{}[tokens.b.store]\n{store}",
        token_table("a", "A_TOKEN", &kite_a, "1h"),
        token_table("b", "B_TOKEN", &kite_b, "1h"),
    );
    let w1 = Warden::start(&config);
    let w2 = Warden::start(&config);
    for w in [&w1, &w2] {
        wait_valid(w, &["a", "b"]);
    }
    wait_until("both wardens hold the same two tokens", T, || {
        ["A_TOKEN", "B_TOKEN"].iter().all(|k| {
            let one = env_value(w1.dir.path(), k);
            !one.is_empty() && one == env_value(w2.dir.path(), k)
        })
    });
    assert_eq!(
        kite_a.stats()["sessions_created"],
        1,
        "one login for broker a"
    );
    assert_eq!(
        kite_b.stats()["sessions_created"],
        1,
        "one login for broker b"
    );
    // Each token has its own lock (keys under its name), hence its own leader.
    let keys = redis.keys().unwrap();
    assert!(
        keys.contains("warden:a:kitefront:lock") && keys.contains("warden:b:kitefront:lock"),
        "{keys}"
    );
    let leads = |token: &str| {
        [&w1, &w2]
            .iter()
            .filter(|w| w.status()["tokens"][token]["store"]["role"] == "leader")
            .count()
    };
    wait_until("one leader per token", T, || {
        leads("a") == 1 && leads("b") == 1
    });
    let (_, metrics) = http(&w1.addr, "GET", "/metrics", &[], "");
    assert!(
        metrics.contains(r#"warden_token_store_up{token="a"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"warden_token_store_up{token="b"} 1"#));
}
