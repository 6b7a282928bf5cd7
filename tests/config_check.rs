//! `warden check -c FILE` run as a real process on real files; and the config warnings that
//! `warden run` logs.

mod common;

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

/// `[token]` for the Kite provider with every credential in place; each case below breaks it.
const KITE: &str = r#"[token]
provider = "kite"

[token.kite]
api_key = "kitefront"
api_secret = "api-secret-XYZZY-1"
user_id = "AB1234"
"#;

/// Assert exit 2 and that each `(key, line_needle, needle)` is reported as
/// `FILE:LINE: key: …needle…`, LINE being the line of `line_needle` in `config`; and nothing
/// else.
fn assert_rejected(config: &str, expected: &[(&str, &str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "supervisor.toml", config);
    assert_rejected_file(&file, config, expected);
}

/// [`assert_rejected`] for a config already written to `file` (next to its secret files).
fn assert_rejected_file(file: &Path, config: &str, expected: &[(&str, &str, &str)]) {
    let out = check(file, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{config}\nstdout:\n{stdout}\n{stderr}"
    );
    for (key, line_needle, needle) in expected {
        let head = format!(
            "{}:{}: {key}: ",
            file.display(),
            line_of(config, line_needle)
        );
        let found = stderr
            .lines()
            .find(|l| l.starts_with(&head))
            .unwrap_or_else(|| panic!("no {head:?} in:\n{stderr}"));
        assert!(found.contains(needle), "{needle:?} not in {found:?}");
    }
    let n = expected.len();
    assert!(
        stderr.contains(&format!(
            "{n} problem{} found",
            if n == 1 { "" } else { "s" }
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("api-secret-XYZZY-1"), "{stderr}");
}

fn assert_valid(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "supervisor.toml", config);
    let out = check(&file, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{config}\n{stderr}");
    assert_eq!(stdout.trim(), format!("{}: ok", file.display()));
    stderr
}

#[test]
fn command_provider_needs_a_program_to_run() {
    for command in ["[]", "\"\"", "[\"  \", \"refresh.py\"]"] {
        let config =
            format!("[token]\nprovider = \"command\"\n\n[token.command]\ncommand = {command}\n");
        assert_rejected(
            &config,
            &[(
                "token.command.command",
                "command = ",
                "must name the program to run",
            )],
        );
    }
    // No command key at all: located at its table.
    assert_rejected(
        "[token]\nprovider = \"command\"\n\n[token.command]\ntimeout = \"5s\"\n",
        &[(
            "token.command.command",
            "[token.command]",
            "must name the program",
        )],
    );
    assert_valid(
        "[token]\nprovider = \"command\"\n\n[token.command]\ncommand = [\"python3\", \"r.py\"]\n",
    );
}

#[test]
fn kite_provider_needs_every_credential() {
    let empty = KITE
        .replace("\"kitefront\"", "\"\"")
        .replace("\"api-secret-XYZZY-1\"", "\"  \"")
        .replace("\"AB1234\"", "\"${WARDEN_TEST_EMPTY_USER:-}\"");
    assert_rejected(
        &empty,
        &[
            ("token.kite.api_key", "api_key", "must not be empty"),
            ("token.kite.api_secret", "api_secret", "api_secret_file"),
            ("token.kite.user_id", "user_id", "must not be empty"),
        ],
    );
    assert_valid(KITE);
}

#[test]
fn kite_provider_needs_its_table() {
    // provider = "kite" is also the default.
    for token in [
        "[token]\nprovider = \"kite\"\n",
        "[token]\nenv_key = \"T\"\n",
    ] {
        assert_rejected(
            token,
            &[("token.kite", "[token]", "needs a [token.kite] section")],
        );
    }
}

#[test]
fn totp_login_needs_password_and_totp_secret_in_either_form() {
    let totp = format!("{KITE}login = \"totp\"\n");
    assert_rejected(
        &totp,
        &[
            ("token.kite.password", "[token.kite]", "password_file"),
            ("token.kite.totp_secret", "[token.kite]", "totp_secret_file"),
        ],
    );
    assert_rejected(
        &format!("{totp}password = \"pw-XYZZY-8\"\n"),
        &[(
            "token.kite.totp_secret",
            "[token.kite]",
            "needs the TOTP secret",
        )],
    );
    assert_rejected(
        &format!("{totp}totp_secret = \"JBSWY3DPEHPK3PXP\"\n"),
        &[("token.kite.password", "[token.kite]", "needs the password")],
    );

    // The `_file` forms count, relative to the config's directory.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "password", "pw-XYZZY-8\n");
    write(dir.path(), "totp", "JBSWY3DPEHPK3PXP\n");
    let config = format!("{totp}password_file = \"password\"\ntotp_secret_file = \"totp\"\n");
    let file = write(dir.path(), "supervisor.toml", &config);
    let out = check(&file, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("pw-XYZZY-8") && !stderr.contains("pw-XYZZY-8"));
    // An empty file is no password: reported at the key that names the file.
    write(dir.path(), "password", "\n");
    assert_rejected_file(
        &file,
        &config,
        &[("token.kite.password_file", "password_file", "secret file ")],
    );
}

#[test]
fn api_token_file_protects_a_non_loopback_listen_like_an_inline_api_token() {
    let dir = tempfile::tempdir().unwrap();
    let http = "[http]\nlisten = \"0.0.0.0:9180\"\npublic_url = \"http://warden.example\"\n";
    let with = |extra: &str| {
        let config = format!("{http}{extra}");
        (write(dir.path(), "supervisor.toml", &config), config)
    };

    let (file, _) = with("api_token = \"inline-TOKEN-15\"\n");
    let out = check(&file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);

    write(dir.path(), "api_token", "file-TOKEN-16\n");
    let (file, _) = with("api_token_file = \"api_token\"\n");
    let out = check(&file, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("file-TOKEN-16") && !stderr.contains("file-TOKEN-16"));

    // Neither form: refused, at http.api_token, and the message says both ways out.
    let (file, config) = with("");
    assert_rejected_file(
        &file,
        &config,
        &[("http.api_token", "[http]", "required because http.listen")],
    );
    assert!(text(&check(&file, &[])).1.contains("api_token_file"));

    // A file that gives no token is no token.
    for (contents, expected) in [
        (
            "",
            ("http.api_token_file", "api_token_file", "secret file "),
        ),
        ("\n", ("http.api_token_file", "api_token_file", "is empty")),
        ("   \n", ("http.api_token", "[http]", "is only whitespace")),
    ] {
        write(dir.path(), "api_token", contents);
        let (file, config) = with("api_token_file = \"api_token\"\n");
        assert_rejected_file(&file, &config, &[expected]);
    }
}

#[test]
fn fleet_mode_store_is_checked() {
    let store = r#"
[token.store]
kind = "redis"
url = "redis://:URL-PASS-17@127.0.0.1:6379/0"
password = "KEY-PASS-18"
key_prefix = "my app:"
lock_ttl = "1s"
"#;
    let config = format!("{KITE}{store}");
    assert_rejected(
        &config,
        &[
            ("token.store.password", "password = ", "one place"),
            ("token.store.key_prefix", "key_prefix", "whitespace"),
            ("token.store.lock_ttl", "lock_ttl", "between 3s and 10m"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "supervisor.toml", &config);
    let (stdout, stderr) = text(&check(&file, &[]));
    for secret in ["URL-PASS-17", "KEY-PASS-18"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }

    // Without a Kite api_key there is nothing to elect a refresher for.
    let none = config.replace("provider = \"kite\"", "provider = \"none\"");
    let out = check(&write(dir.path(), "none.toml", &none), &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("token.store.kind: ") && stderr.contains("one refresher per Kite api_key"),
        "{stderr}"
    );

    assert_valid(&format!(
        "{KITE}\n[token.store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n\
         password = \"KEY-PASS-18\"\nlock_ttl = \"10m\"\n"
    ));
}

#[test]
fn public_url_warning_is_printed_and_the_config_is_still_ok() {
    let config = format!("[http]\nlisten = \"0.0.0.0:9180\"\napi_token = \"t\"\n\n{KITE}");
    let stderr = assert_valid(&config);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(
            ":1: warning: http.public_url: not set, so it defaults to \
                           http://0.0.0.0:9180"
        ) && lines[0].contains("login links"),
        "{stderr}"
    );
    // Set public_url and the warning goes.
    let fixed = config.replace("api_token", "public_url = \"https://w.example\"\napi_token");
    assert_eq!(assert_valid(&fixed), "");
}

#[test]
fn warnings_are_logged_at_start_up_and_on_reload() {
    use std::time::Duration;
    // Port 0 and no public_url; a broker nobody listens on (manual login: warden only waits).
    let w = common::Warden::start(&format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n{KITE}\
         api_base = \"http://127.0.0.1:9\"\nlogin_base = \"http://127.0.0.1:9\"\n"
    ));
    let warning = "http.public_url: not set, so it defaults to http://127.0.0.1:0";
    let count = || w.logs().matches(warning).count();
    // The harness reads warden's stderr on its own thread: wait for the line, then count.
    common::wait_until(
        "the warning logged at start",
        Duration::from_secs(20),
        || count() >= 1,
    );
    assert_eq!(count(), 1, "{}", w.logs());
    assert!(w.logs().contains(" WARN "), "{}", w.logs());
    w.signal(libc::SIGHUP);
    w.wait_log("config reloaded", Duration::from_secs(20));
    assert_eq!(count(), 2, "{}", w.logs());
}

#[test]
fn check_and_run_reject_the_same_store_url() {
    // The loader accepts the shape; only the Redis client can tell the database is no number.
    let config =
        format!("{KITE}\n[token.store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379/abc\"\n");
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "supervisor.toml", &config);
    let checked = check(&file, &[]);
    let (_, check_err) = text(&checked);
    assert_eq!(checked.status.code(), Some(2), "{check_err}");
    assert!(
        check_err.contains("token.store: ") && check_err.contains("database"),
        "{check_err}"
    );
    let ran = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("run")
        .arg("-c")
        .arg(&file)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run warden");
    let (_, run_err) = text(&ran);
    assert_eq!(ran.status.code(), Some(2), "{run_err}");
    assert_eq!(run_err, check_err);
}
