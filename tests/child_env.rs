//! SPEC §7.1: what programs inherit. The variables warden read a secret from are not passed
//! on (unless a program lists them in `pass_env`), and warden is non-dumpable, so a program
//! running as the same user cannot read them from `/proc/<warden>/environ`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;

const SECRETS: [(&str, &str); 5] = [
    ("KITE_API_SECRET", "apisecret-7f3a"),
    ("KITE_PASSWORD", "password-91c2"),
    ("KITE_TOTP_SECRET", "JBSWY3DPEHPK3PXP"),
    ("TG_BOT_TOKEN", "123456:tg-token-5d1e"),
    ("WARDEN_API_TOKEN", "api-token-0b7c"),
];

/// `env` as a command prefix: warden starts with the secrets (and one harmless variable) in
/// its environment, as it would from a systemd `EnvironmentFile=` or a container's env.
fn with_secrets() -> Vec<String> {
    let mut p = vec!["env".to_string(), "PLAIN_SETTING=plain-value".to_string()];
    p.extend(SECRETS.iter().map(|(k, v)| format!("{k}={v}")));
    p
}

/// The `KEY=value` lines a child wrote with `env > FILE`.
fn env_dump(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn wait_dump(path: &Path, w: &Warden) -> BTreeMap<String, String> {
    wait_until(
        &format!("{} to be written; logs:\n{}", path.display(), w.logs()),
        Duration::from_secs(15),
        || env_dump(path).contains_key("PATH"),
    );
    env_dump(path)
}

const CONFIG: &str = r#"
[http]
listen = "127.0.0.1:0"
api_token = "${WARDEN_API_TOKEN}"

[token]
provider = "command"
[token.command]
command = ["sh", "-c", "env > cmd.env.txt; echo tok_from_the_command_0123456789"]
[token.kite]
api_key = "k"
user_id = "AB1234"
api_secret = "${KITE_API_SECRET}"
password = "${KITE_PASSWORD}"
totp_secret = "${KITE_TOTP_SECRET}"

[notify]
telegram_bot_token = "${TG_BOT_TOKEN}"
telegram_chat_id = "1"
telegram_api_base = "http://127.0.0.1:9"

[programs.plain]
command = ["sh", "-c", "env > plain.env.txt; exec sleep 60"]

[programs.passing]
command = ["sh", "-c", "env > passing.env.txt; exec sleep 60"]
pass_env = ["KITE_API_SECRET"]

[programs.explicit]
command = ["sh", "-c", "env > explicit.env.txt; exec sleep 60"]
env = { KITE_PASSWORD = "given-by-name" }
"#;

#[test]
fn programs_do_not_inherit_secret_variables_unless_they_pass_them() {
    let w = Warden::start_with(CONFIG, |_| {}, with_secrets());
    let dir = w.dir.path();

    let plain = wait_dump(&dir.join("plain.env.txt"), &w);
    for (k, v) in SECRETS {
        assert!(!plain.contains_key(k), "plain inherited {k}");
        assert!(
            !plain.values().any(|x| x.contains(v)),
            "plain sees the value of {k}"
        );
    }
    assert_eq!(
        plain.get("PLAIN_SETTING").map(String::as_str),
        Some("plain-value")
    );

    let passing = wait_dump(&dir.join("passing.env.txt"), &w);
    assert_eq!(
        passing.get("KITE_API_SECRET").map(String::as_str),
        Some("apisecret-7f3a")
    );
    for k in [
        "KITE_PASSWORD",
        "KITE_TOTP_SECRET",
        "TG_BOT_TOKEN",
        "WARDEN_API_TOKEN",
    ] {
        assert!(!passing.contains_key(k), "passing inherited {k}");
    }

    // A program's own `env` table is applied as written, after the removal.
    let explicit = wait_dump(&dir.join("explicit.env.txt"), &w);
    assert_eq!(
        explicit.get("KITE_PASSWORD").map(String::as_str),
        Some("given-by-name")
    );
    assert!(!explicit.contains_key("KITE_TOTP_SECRET"));

    // The token command is the operator's login script: it keeps the broker credentials
    // ([token.kite]) and loses warden's own API token and the notification token.
    let cmd = wait_dump(&dir.join("cmd.env.txt"), &w);
    assert_eq!(
        cmd.get("KITE_PASSWORD").map(String::as_str),
        Some("password-91c2")
    );
    assert!(cmd.contains_key("KITE_TOTP_SECRET") && cmd.contains_key("KITE_API_SECRET"));
    assert!(!cmd.contains_key("WARDEN_API_TOKEN"));
    assert!(!cmd.contains_key("TG_BOT_TOKEN"));
}

#[test]
fn a_reload_recomputes_what_is_withheld() {
    let config = |pass: &str| {
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\napi_token = \"${{WARDEN_API_TOKEN}}\"\n\
             [programs.p]\ncommand = [\"sh\", \"-c\", \"env > p.env.txt; exec sleep 60\"]\n\
             pass_env = [{pass}]\n"
        )
    };
    let w = Warden::start_with(&config(""), |_| {}, with_secrets());
    let dump = w.dir.path().join("p.env.txt");
    assert!(!wait_dump(&dump, &w).contains_key("WARDEN_API_TOKEN"));
    std::fs::remove_file(&dump).unwrap();
    w.write_config(&config("\"WARDEN_API_TOKEN\""));
    // The program's environment changed, so the reload restarts it.
    let env = wait_dump(&dump, &w);
    assert_eq!(
        env.get("WARDEN_API_TOKEN").map(String::as_str),
        Some("api-token-0b7c")
    );
}

#[test]
fn pass_env_of_a_variable_that_holds_no_secret_is_a_check_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("supervisor.toml");
    std::fs::write(
        &cfg,
        "[programs.p]\ncommand = \"true\"\npass_env = [\"HOME\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(":3: warning: programs.p.pass_env: HOME is not a variable"),
        "{stderr}"
    );
}

/// Read `/proc/{pid}/environ` as `uid` (or as this process when `uid` is `None`).
fn read_environ(pid: i32, uid: Option<u32>) -> Result<String, String> {
    let path = format!("/proc/{pid}/environ");
    match uid {
        None => std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| e.to_string()),
        Some(uid) => {
            let out = std::process::Command::new("setpriv")
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .args(["--clear-groups", "cat", &path])
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        }
    }
}

#[test]
fn a_program_of_the_same_user_cannot_read_wardens_environ() {
    // As root every /proc file is readable, so warden and the reader both run as another
    // (unprivileged) user; otherwise both run as this test's user.
    let root = nix::unistd::geteuid().is_root();
    let uid = 65534u32;
    let mut prefix = Vec::new();
    if root {
        if std::process::Command::new("setpriv")
            .arg("--help")
            .output()
            .is_err()
        {
            skip(
                "a_program_of_the_same_user_cannot_read_wardens_environ",
                "setpriv (util-linux) is not installed",
            );
            return;
        }
        prefix = vec![
            "setpriv".to_string(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_string(),
        ];
    }
    prefix.extend(with_secrets());
    let config = "[http]\nlisten = \"127.0.0.1:0\"\napi_token = \"${WARDEN_API_TOKEN}\"\n\
                  [programs.p]\ncommand = [\"sleep\", \"60\"]\n";
    let w = Warden::start_with(
        config,
        |dir| {
            if root {
                std::os::unix::fs::chown(dir, Some(uid), Some(uid)).unwrap();
            }
        },
        prefix,
    );
    let reader = root.then_some(uid);
    let warden_pid = w.child.id() as i32;
    let p = w.wait_state("p", "running", Duration::from_secs(10));
    let child_pid = p["pid"].as_i64().unwrap() as i32;

    // The check can pass: the same user reads its own dumpable program's environ.
    let child_env = read_environ(child_pid, reader).expect("a program's environ is readable");
    assert!(child_env.contains("PLAIN_SETTING=plain-value"));
    // warden's is refused, though it holds the API token.
    match read_environ(warden_pid, reader) {
        Ok(text) => panic!(
            "read warden's environ as the same user ({} bytes, token inside: {})",
            text.len(),
            text.contains("api-token-0b7c")
        ),
        Err(e) => assert!(e.contains("ermission denied"), "{e}"),
    }
}
