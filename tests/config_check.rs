//! `warden check -c FILE` run as a real process on real files.

use std::path::Path;
use std::process::{Command, Output};

/// Every SPEC §3 section and key, with the SPEC's own values where they are valid as written.
const FULL: &str = r#"
[supervisor]
shutdown_timeout = "20s"
log_format = "text"
state_dir = ".warden"

[http]
listen = "127.0.0.1:9180"
api_token = "${WARDEN_API_TOKEN:-}"
public_url = "http://127.0.0.1:9180"

[token]
provider = "kite"
env_file = ".env"
env_key = "KITE_ACCESS_TOKEN"
timezone = "Asia/Kolkata"
expires_at = "06:00"
refresh_at = "06:05"
check_interval = "5m"
min_interval = "30s"
max_attempts = 3
attempt_window = "1h"
verify_timeout = "30s"

[token.store]
kind = "file"

[token.kite]
api_key = "${KITE_API_KEY}"
api_secret = "${KITE_API_SECRET}"
user_id = "${KITE_USER_ID}"
login = "totp"
password = "${KITE_PASSWORD}"
totp_secret = "${KITE_TOTP_SECRET}"
login_base = "https://kite.zerodha.com"
api_base = "https://api.kite.trade"

[token.command]
command = ["python3", "auto_token_refresh.py"]
timeout = "120s"

[notify]
webhook_url = "${WARDEN_WEBHOOK_URL:-}"
telegram_bot_token = ""
telegram_chat_id = ""

[programs.backend]
command = ["uvicorn", "app.main:app", "--port", "8000"]
cwd = "backend"
env = { PYTHONUNBUFFERED = "1" }
env_file = ".env"
depends_on = []
restart = "always"
backoff_initial = "1s"
backoff_max = "60s"
max_restarts = 10
restart_window = "5m"
stop_signal = "SIGTERM"
stop_timeout = "10s"
on_token_change = "signal"
reload_signal = "SIGHUP"

[programs.backend.health]
url = "http://127.0.0.1:8000/api/system/health"
interval = "5s"
timeout = "2s"
initial_delay = "5s"
failure_threshold = 3
auth_status = [403]
auth_body = '"auth"\s*:\s*"EXPIRED"'

[programs.frontend]
command = "npm run start"
depends_on = ["backend"]
on_token_change = "none"
"#;

const SECRET_VARS: &[(&str, &str)] = &[
    ("KITE_API_KEY", "kitefront"),
    ("KITE_API_SECRET", "api-secret-XYZZY-1"),
    ("KITE_USER_ID", "AB1234"),
    ("KITE_PASSWORD", "password-XYZZY-2"),
    ("KITE_TOTP_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
];

/// Run `warden check -c FILE` with only `vars` in its environment (plus PATH), so the result
/// does not depend on whoever runs the tests.
fn check(file: &Path, vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.arg("check").arg("-c").arg(file).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run warden")
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

/// 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in fixture"))
        + 1
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn full_valid_config_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "supervisor.toml", FULL);
    let out = check(&file, SECRET_VARS);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(stdout.trim(), format!("{}: ok", file.display()));
    for (_, v) in SECRET_VARS
        .iter()
        .filter(|(k, _)| *k != "KITE_USER_ID" && *k != "KITE_API_KEY")
    {
        assert!(!stdout.contains(v) && !stderr.contains(v));
    }
}

#[test]
fn typo_unknown_key_and_unset_variable_are_all_reported_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = FULL
        .replace(
            "restart = \"always\"",
            "restart = \"always\"\nrestrat = \"on-failure\"",
        )
        .replace(
            "listen = \"127.0.0.1:9180\"",
            "listen = \"127.0.0.1:9180\"\nlisten_adress = \"x\"",
        )
        .replace("${KITE_USER_ID}", "${WARDEN_TEST_UNSET_USER}");
    let file = write(dir.path(), "supervisor.toml", &config);
    let out = check(&file, SECRET_VARS);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
    let f = file.display();
    let expect = [
        format!(
            "{f}:{}: programs.backend.restrat: ",
            line_of(&config, "restrat")
        ),
        format!(
            "{f}:{}: http.listen_adress: ",
            line_of(&config, "listen_adress")
        ),
        format!(
            "{f}:{}: token.kite.user_id: ",
            line_of(&config, "WARDEN_TEST_UNSET_USER")
        ),
    ];
    for e in &expect {
        assert!(stderr.contains(e.as_str()), "missing {e:?} in:\n{stderr}");
    }
    assert!(stderr.contains("did you mean `restart`"), "{stderr}");
    assert!(stderr.contains("WARDEN_TEST_UNSET_USER"), "{stderr}");
    assert!(stderr.contains("3 problems"), "{stderr}");
    assert_eq!(stderr.lines().count(), 4, "{stderr}");
}

#[test]
fn dependency_cycle_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[programs.a]
command = "true"
depends_on = ["b"]

[programs.b]
command = "true"
depends_on = ["c"]

[programs.c]
command = "true"
depends_on = ["a"]

[programs.d]
command = "true"
depends_on = ["a"]
"#;
    let file = write(dir.path(), "cycle.toml", config);
    let out = check(&file, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4: programs.a.depends_on: dependency cycle: a -> b -> c -> a",
            file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("1 problem found"), "{stderr}");
}

#[test]
fn secrets_from_files_are_used_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    let secret = "file-secret-PLUGH-3";
    write(
        &dir.path().join("secrets"),
        "api_secret",
        &format!("{secret}\n"),
    );
    write(
        &dir.path().join("secrets"),
        "password",
        "password-PLUGH-4\n",
    );
    let valid = FULL
        .replace(
            "api_secret = \"${KITE_API_SECRET}\"",
            "api_secret_file = \"secrets/api_secret\"",
        )
        .replace(
            "password = \"${KITE_PASSWORD}\"",
            "password = \"\"\npassword_file = \"secrets/password\"",
        );
    let file = write(dir.path(), "supervisor.toml", &valid);
    let vars: Vec<_> = SECRET_VARS
        .iter()
        .copied()
        .filter(|(k, _)| *k != "KITE_API_SECRET" && *k != "KITE_PASSWORD")
        .collect();
    let out = check(&file, &vars);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret));

    // Now break things around the secrets: both forms at once, a secret of the wrong type,
    // a malformed reference inside a secret, a missing file. Still no value in the output.
    let invalid = valid
        .replace(
            "api_secret_file = \"secrets/api_secret\"",
            "api_secret_file = \"secrets/api_secret\"\napi_secret = \"inline-PLUGH-5\"",
        )
        .replace("password = \"\"", "password = 424242424242")
        .replace(
            "totp_secret = \"${KITE_TOTP_SECRET}\"",
            "totp_secret = \"${PLUGH 6}\"",
        )
        .replace(
            "webhook_url = \"${WARDEN_WEBHOOK_URL:-}\"",
            "webhook_url = \"ftp://hook-PLUGH-7\"\ntelegram_bot_token_file = \"secrets/missing\"",
        );
    let file = write(dir.path(), "invalid.toml", &invalid);
    let out = check(&file, &vars);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "secrets/missing",
        "token.kite.api_secret_file",
        "token.kite.password",
        "token.kite.totp_secret",
        "notify.webhook_url",
    ] {
        assert!(stderr.contains(needle), "missing {needle} in:\n{stderr}");
    }
    for leaked in [
        secret,
        "password-PLUGH-4",
        "inline-PLUGH-5",
        "424242424242",
        "PLUGH 6",
        "hook-PLUGH-7",
    ] {
        assert!(
            !stdout.contains(leaked) && !stderr.contains(leaked),
            "{leaked} leaked:\n{stderr}"
        );
    }
}

#[test]
fn missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(&dir.path().join("nope.toml"), &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("cannot read"), "{stderr}");
}
