//! `warden doctor` against a good set-up (the sandbox Kite, a running warden) and broken ones:
//! each problem is a ✗ with its fix and exit 1, `--json` says the same, no secret is printed.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;
use warden::sandbox::kite::{DEFAULT_API_SECRET, DEFAULT_PASSWORD};

const T: Duration = Duration::from_secs(20);
const API_TOKEN: &str = "doctor-test-api-token-7d2e";

fn doctor(config: &Path, json: bool) -> Output {
    let mut c = Command::new(BIN);
    c.arg("doctor").arg("-c").arg(config);
    if json {
        c.arg("--json");
    }
    c.current_dir(config.parent().unwrap())
        .env_remove("WARDEN_API_TOKEN")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Neither the sandbox's password, its TOTP secret, its api_secret nor warden's api_token.
fn assert_no_secret(out: &str) {
    for secret in [
        DEFAULT_PASSWORD,
        SANDBOX_TOTP,
        DEFAULT_API_SECRET,
        API_TOKEN,
    ] {
        assert!(!out.contains(secret), "secret {secret:?} printed:\n{out}");
    }
}

/// The `✗ CHECK: …` line and the fix under it.
fn failed(out: &str, check: &str) -> (String, String) {
    let lines: Vec<&str> = out.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(&format!("✗ {check}:")))
        .unwrap_or_else(|| panic!("no ✗ {check}:\n{out}"));
    let fix = lines
        .get(i + 1)
        .and_then(|l| l.strip_prefix("    fix: "))
        .unwrap_or_else(|| panic!("no fix under ✗ {check}:\n{out}"));
    (lines[i].to_string(), fix.to_string())
}

/// `check` → `status` of `doctor --json`.
fn verdicts(o: &Output) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|c| {
            for key in ["check", "status", "detail", "fix"] {
                assert!(c[key].is_string(), "{key} in {c}");
            }
            (
                c["check"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["fix"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn status_of(v: &[(String, String, String)], check: &str) -> String {
    v.iter()
        .find(|c| c.0 == check)
        .unwrap_or_else(|| panic!("no {check} in {v:?}"))
        .1
        .clone()
}

#[test]
fn a_good_set_up_is_all_ticks() {
    let port = free_port();
    let kite = KiteSandbox::with().redirect_to_warden(port).start();
    let config = format!(
        "{}\n[programs.app]\ncommand = [\"sleep\", \"300\"]\n",
        kite.warden_config(port, "totp", Some(API_TOKEN))
    );
    let w = Warden::start(&config);
    w.wait_state("app", "running", T);
    wait_until("the token written", T, || {
        std::fs::read_to_string(w.dir.path().join(".env")).is_ok_and(|s| s.contains("KITE_"))
    });

    let o = doctor(&w.config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let checks: Vec<&str> = out.lines().take_while(|l| !l.is_empty()).collect();
    assert!(checks.len() >= 8, "{out}");
    for line in &checks {
        assert!(line.starts_with("✓ "), "not a ✓: {line}\n{out}");
    }
    for check in [
        "config",
        "token.env_file writable",
        "supervisor.state_dir writable",
        "supervisor.state_dir mode",
        "token.env_file mode",
        "credentials",
        "kite reachable",
        "kite clock",
        "http.listen",
        "redirect url",
        "programs.app.command",
    ] {
        assert!(out.contains(&format!("✓ {check}: ")), "{check}:\n{out}");
    }
    assert!(
        out.contains(&format!("http://127.0.0.1:{port}/kite/callback")),
        "{out}"
    );
    assert_no_secret(&out);

    let j = doctor(&w.config, true);
    assert_eq!(j.status.code(), Some(0), "{}", text(&j));
    let v = verdicts(&j);
    assert!(v.iter().all(|c| c.1 == "ok"), "{v:?}");
    assert_no_secret(&text(&j));
}

#[test]
fn a_broken_set_up_gets_a_cross_and_a_fix_for_each_problem() {
    let kite = KiteSandbox::start(&["--clock-skew", "60s"]);
    let dir = tempfile::tempdir().unwrap();
    // A file where state_dir's parent should be a directory: unwritable even for root.
    std::fs::write(dir.path().join("occupied"), "not a directory\n").unwrap();
    // An env file everyone may read: a warning (warden keeps the mode it finds).
    let env = dir.path().join(".env");
    std::fs::write(&env, "OTHER=1\n").unwrap();
    std::fs::set_permissions(&env, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[supervisor]\nstate_dir = \"occupied/state\"\n\
             [programs.app]\ncommand = [\"./bin/no-such-server\"]\n\
             [programs.app.health]\nurl = \"http://127.0.0.1:{}/health\"\n",
            kite.warden_config(free_port(), "totp", None),
            free_port()
        ),
    )
    .unwrap();

    let o = doctor(&config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let (line, fix) = failed(&out, "kite clock");
    assert!(line.contains("behind"), "{line}");
    assert!(fix.contains("NTP"), "{fix}");
    let (line, fix) = failed(&out, "supervisor.state_dir writable");
    assert!(line.contains("occupied"), "{line}");
    assert!(fix.contains("supervisor.state_dir"), "{fix}");
    let (line, fix) = failed(&out, "programs.app.command");
    assert!(line.contains("no-such-server"), "{line}");
    assert!(fix.contains("path"), "{fix}");
    assert!(out.contains("! token.env_file mode: "), "{out}");
    assert!(out.contains("    fix: chmod 600 "), "{out}");
    // Reachable and answering like Kite: only its clock is off.
    assert!(out.contains("✓ kite reachable: "), "{out}");
    // Warden is not running: a silent health URL is a note, not a problem.
    assert!(
        out.contains("· programs.app.health: ") && out.contains("not running"),
        "{out}"
    );
    assert_no_secret(&out);

    let j = doctor(&config, true);
    assert_eq!(j.status.code(), Some(1), "{}", text(&j));
    let v = verdicts(&j);
    for check in [
        "kite clock",
        "supervisor.state_dir writable",
        "programs.app.command",
    ] {
        assert_eq!(status_of(&v, check), "fail", "{check}: {v:?}");
        assert!(v.iter().any(|c| c.0 == check && !c.2.is_empty()), "{v:?}");
    }
    assert_eq!(status_of(&v, "kite reachable"), "ok");
    assert_eq!(status_of(&v, "token.env_file mode"), "warn");
    assert_eq!(status_of(&v, "programs.app.health"), "info");
    assert_no_secret(&text(&j));
}

#[test]
fn an_unreachable_broker_is_a_cross() {
    let kite = KiteSandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        kite.warden_config(free_port(), "manual", None)
            .replace(&kite.url(), &closed),
    )
    .unwrap();
    let o = doctor(&config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let (line, fix) = failed(&out, "kite reachable");
    assert!(line.contains(&closed), "{line}");
    assert!(fix.contains("api_base"), "{fix}");
    assert_no_secret(&out);
    let v = verdicts(&doctor(&config, true));
    assert_eq!(status_of(&v, "kite reachable"), "fail");
}

#[test]
fn missing_totp_credentials_are_a_cross_not_a_broken_config() {
    let kite = KiteSandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supervisor.toml");
    let text_cfg = kite
        .warden_config(free_port(), "totp", None)
        .lines()
        .filter(|l| !l.starts_with("password") && !l.starts_with("totp_secret"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text_cfg).unwrap();
    let o = doctor(&config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let (line, fix) = failed(&out, "credentials");
    assert!(line.contains("token.kite."), "{line}");
    assert!(
        out.contains("password_file") && out.contains("totp_secret_file"),
        "both missing keys named with their fix:\n{out}"
    );
    assert!(fix.contains("login = \"totp\""), "{fix}");
    assert_no_secret(&out);
    let v = verdicts(&doctor(&config, true));
    assert_eq!(status_of(&v, "credentials"), "fail");
}

#[test]
fn an_invalid_config_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supervisor.toml");
    std::fs::write(&config, "[programs.a]\ncomand = [\"x\"]\n").unwrap();
    let o = doctor(&config, false);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn a_network_listen_address_without_an_api_token_is_a_cross() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supervisor.toml");
    let write = |listen: &str, api_token: &str| {
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"{listen}:{}\"\npublic_url = \"https://stack.example.com\"\n\
                 {api_token}\n[programs.app]\ncommand = [\"sleep\", \"300\"]\n",
                free_port()
            ),
        )
        .unwrap();
    };
    write("0.0.0.0", "");
    let o = doctor(&config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let (_, fix) = failed(&out, "http.listen");
    assert!(fix.contains("api_token"), "{fix}");
    let v = verdicts(&doctor(&config, true));
    assert_eq!(status_of(&v, "http.listen"), "fail");

    // Loopback, but published through a proxy without a token: a warning.
    write("127.0.0.1", "");
    let o = doctor(&config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("✓ http.listen: "), "{out}");
    assert!(out.contains("! http.public_url: "), "{out}");
    assert!(out.contains("✓ programs.app.command: "), "{out}");
    let v = verdicts(&doctor(&config, true));
    assert_eq!(status_of(&v, "http.public_url"), "warn");

    // With a token both are fine.
    write("0.0.0.0", &format!("api_token = \"{API_TOKEN}\"\n"));
    let o = doctor(&config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("✓ http.listen: "), "{out}");
    assert!(!out.contains("http.public_url"), "{out}");
    assert_no_secret(&out);
}

/// `[tokens.zerodha]` for the Kite sandbox (TOTP) and `[tokens.dhanhq]` for the Dhan one
/// (PIN + TOTP), one shared `.env`.
fn two_tokens(kite: &KiteSandbox, dhan: &BrokerSandbox, port: u16) -> String {
    let k = kite.url();
    format!(
        r#"[http]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
api_token = "{API_TOKEN}"

[tokens.zerodha]
provider = "kite"
env_file = ".env"
env_key = "KITE_ACCESS_TOKEN"
min_interval = "0s"
check_interval = "1h"
[tokens.zerodha.kite]
api_key = "kitefront"
api_secret = "{DEFAULT_API_SECRET}"
user_id = "AB1234"
login = "totp"
password = "{DEFAULT_PASSWORD}"
totp_secret = "{SANDBOX_TOTP}"
login_base = "{k}"
api_base = "{k}"

[tokens.dhanhq]
provider = "dhan"
env_file = ".env"
env_key = "DHAN_ACCESS_TOKEN"
min_interval = "0s"
check_interval = "1h"
[tokens.dhanhq.dhan]
client_id = "{client}"
login = "totp"
pin = "{pin}"
totp_secret = "{totp}"
auth_base = "{d}"
api_base = "{d}/v2"
"#,
        client = dhan.printed("client_id"),
        pin = dhan.printed("pin"),
        totp = dhan.printed("totp_secret"),
        d = dhan.url(),
    )
}

/// Each `(check, status)` of `doctor --json` about the token `name`.
fn token_verdicts(o: &Output, name: &str) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .filter(|c| c["token"] == name)
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["provider"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn two_tokens_of_two_brokers_each_get_their_ticks() {
    let port = free_port();
    let kite = KiteSandbox::with().redirect_to_warden(port).start();
    let dhan = BrokerSandbox::start("dhan", &[]);
    let config = format!(
        "{}\n[programs.app]\ncommand = [\"sleep\", \"300\"]\n",
        two_tokens(&kite, &dhan, port)
    );
    let w = Warden::start(&config);
    w.wait_state("app", "running", T);

    let o = doctor(&w.config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for line in out.lines().take_while(|l| !l.is_empty()) {
        assert!(line.starts_with("✓ "), "not a ✓: {line}\n{out}");
    }
    for (token, what) in [
        ("zerodha (kite)", "env_file writable"),
        ("zerodha (kite)", "credentials"),
        ("zerodha (kite)", "reachable"),
        ("zerodha (kite)", "clock"),
        ("zerodha (kite)", "redirect url"),
        ("dhanhq (dhan)", "env_file writable"),
        ("dhanhq (dhan)", "credentials"),
        ("dhanhq (dhan)", "reachable"),
        ("dhanhq (dhan)", "clock"),
    ] {
        assert!(
            out.contains(&format!("✓ token {token} {what}: ")),
            "{token} {what}:\n{out}"
        );
    }
    // Both of Dhan's base URLs were tried; its totp login has no callback to register.
    let reachable = out
        .lines()
        .find(|l| l.starts_with("✓ token dhanhq (dhan) reachable: "))
        .unwrap();
    assert!(
        reachable.contains(&format!("{}/v2", dhan.url()))
            && reachable.matches("answered").count() == 2,
        "{reachable}"
    );
    assert!(!out.contains("dhanhq (dhan) redirect url"), "{out}");
    assert!(
        out.contains("pin, totp_secret set (not submitted by doctor)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("register http://127.0.0.1:{port}/kite/callback")),
        "{out}"
    );
    assert_no_secret(&out);
    for secret in [dhan.printed("pin"), dhan.printed("totp_secret")] {
        assert!(!out.contains(secret), "a Dhan secret printed:\n{out}");
    }

    let j = doctor(&w.config, true);
    assert_eq!(j.status.code(), Some(0), "{}", text(&j));
    assert!(verdicts(&j).iter().all(|c| c.1 == "ok"), "{}", text(&j));
    for (name, provider) in [("zerodha", "kite"), ("dhanhq", "dhan")] {
        let v = token_verdicts(&j, name);
        assert!(v.len() >= 4, "{name}: {v:?}");
        assert!(v.iter().all(|c| c.2 == provider), "{name}: {v:?}");
        assert!(v.iter().any(|c| c.0.ends_with(" clock")), "{name}: {v:?}");
    }
}

#[test]
fn each_tokens_problem_is_a_cross_named_with_its_token() {
    let kite = KiteSandbox::start(&["--clock-skew", "60s"]);
    let dhan = BrokerSandbox::start("dhan", &[]);
    let angel = BrokerSandbox::start("angelone", &[]);
    let upstox = BrokerSandbox::start("upstox", &[]);
    let dir = tempfile::tempdir().unwrap();
    // Dhan's auth_base on a port nobody listens on.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        format!(
            r#"{}
[tokens.angel]
provider = "angelone"
env_file = ".env"
env_key = "ANGEL_JWT"
[tokens.angel.angelone]
api_key = "{angel_key}"
client_code = "S123456"
login = "totp"
totp_secret = "{angel_totp}"
feed_env_key = "ANGEL_FEED"
api_base = "{a}"
login_base = "{a}"

[tokens.phone]
provider = "upstox"
env_file = ".env"
[tokens.phone.upstox]
api_key = "upstox-app"
api_secret = "upstox-secret-9f1c"
user_id = "UP1234"
login = "approve"
api_base = "{u}"
"#,
            two_tokens(&kite, &dhan, free_port()).replace(
                &format!("auth_base = \"{}\"", dhan.url()),
                &format!("auth_base = \"{closed}\"")
            ),
            angel_key = angel.printed("api_key"),
            angel_totp = angel.printed("totp_secret"),
            a = angel.url(),
            u = upstox.url(),
        ),
    )
    .unwrap();

    let o = doctor(&config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let (line, fix) = failed(&out, "token zerodha (kite) clock");
    assert!(line.contains("behind"), "{line}");
    assert!(fix.contains("NTP"), "{fix}");
    let (line, fix) = failed(&out, "token dhanhq (dhan) reachable");
    assert!(line.contains(&closed), "{line}");
    assert!(fix.contains("tokens.dhanhq.dhan.auth_base"), "{fix}");
    let (line, fix) = failed(&out, "token angel (angelone) credentials");
    assert!(
        line.contains("tokens.angel.angelone.pin is missing"),
        "{line}"
    );
    assert!(fix.contains("pin_file"), "{fix}");
    // The rest of each token is fine: only its own problem is a cross.
    for ok in [
        "token zerodha (kite) reachable",
        "token zerodha (kite) credentials",
        "token dhanhq (dhan) credentials",
        "token angel (angelone) reachable",
        "token angel (angelone) clock",
        "token phone (upstox) reachable",
        "token phone (upstox) credentials",
    ] {
        assert!(out.contains(&format!("✓ {ok}: ")), "{ok}:\n{out}");
    }
    // Upstox must post the approved token to warden: a loopback public_url cannot be reached.
    assert!(out.contains("! token phone (upstox) notify url: "), "{out}");
    assert!(out.contains("/upstox/notify"), "{out}");
    assert!(!out.contains("phone (upstox) redirect url"), "{out}");
    assert_no_secret(&out);
    for secret in [
        angel.printed("totp_secret"),
        "upstox-secret-9f1c",
        dhan.printed("pin"),
    ] {
        assert!(!out.contains(secret), "a secret printed:\n{out}");
    }

    let j = doctor(&config, true);
    assert_eq!(j.status.code(), Some(1), "{}", text(&j));
    let status = |token: &str, check: &str| {
        token_verdicts(&j, token)
            .into_iter()
            .find(|c| c.0 == check)
            .unwrap_or_else(|| panic!("no {check} for {token}: {}", text(&j)))
            .1
    };
    assert_eq!(status("zerodha", "token zerodha (kite) clock"), "fail");
    assert_eq!(status("dhanhq", "token dhanhq (dhan) reachable"), "fail");
    assert_eq!(
        status("angel", "token angel (angelone) credentials"),
        "fail"
    );
    assert_eq!(status("phone", "token phone (upstox) notify url"), "warn");
    assert_eq!(status("angel", "token angel (angelone) reachable"), "ok");
    assert_no_secret(&text(&j));
}

#[test]
fn a_lone_dhan_consent_token_has_its_callback_checked_without_reaching_dhan() {
    let port = free_port();
    let dhan = BrokerSandbox::start("dhan", &[]);
    let config = format!(
        r#"[http]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[token]
provider = "dhan"
env_file = ".env"
min_interval = "0s"
check_interval = "1h"
[token.dhan]
client_id = "{client}"
login = "manual"
app_id = "{app_id}"
app_secret = "{app_secret}"
auth_base = "{d}"
api_base = "{d}/v2"

[programs.app]
command = ["sleep", "300"]
"#,
        client = dhan.printed("client_id"),
        app_id = dhan.printed("app_id"),
        app_secret = dhan.printed("app_secret"),
        d = dhan.url(),
    );
    let w = Warden::start(&config);
    w.wait_state("app", "running", T);
    let before = dhan.stats();

    let o = doctor(&w.config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    // A lone [token] keeps the short names, with its provider's.
    for check in [
        "token.env_file writable",
        "credentials",
        "dhan reachable",
        "dhan clock",
    ] {
        assert!(out.contains(&format!("✓ {check}: ")), "{check}:\n{out}");
    }
    assert!(
        out.contains("login = \"manual\": client_id, app_id, app_secret set"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "✓ redirect url: register http://127.0.0.1:{port}/dhan/callback in the Dhan app; \
             warden answers on it"
        )),
        "{out}"
    );
    assert!(!out.contains(dhan.printed("app_secret")), "{out}");
    // Doctor's callback probe went no further than warden: Dhan saw no consent traffic.
    assert_eq!(
        dhan.stats(),
        before,
        "doctor reached Dhan's login endpoints"
    );
}

#[test]
fn a_command_tokens_refresh_program_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        "[token]\nprovider = \"command\"\nenv_file = \".env\"\n\
         [token.command]\ncommand = [\"./refresh-token.sh\"]\n",
    )
    .unwrap();
    let o = doctor(&config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let (line, fix) = failed(&out, "token.command");
    assert!(line.contains("refresh-token.sh"), "{line}");
    assert!(fix.contains("chmod +x"), "{fix}");

    let script = dir.path().join("refresh-token.sh");
    std::fs::write(&script, "#!/bin/sh\necho tok\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = doctor(&config, false);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("✓ token.command: "), "{out}");
    let v = verdicts(&doctor(&config, true));
    assert_eq!(status_of(&v, "token.command"), "ok");
}
