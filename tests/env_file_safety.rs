//! Issue 12, the files: the token's env file is resolved once (a symlink only to a regular
//! file, reported at start), never chowned, and a readable-by-others file or a cleartext
//! credential URL is a warning in `warden check`, at start and (the file) on the status page.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

fn command_config(extra: &str) -> String {
    format!(
        r#"
[token]
provider = "command"
env_file = ".env"
min_interval = "0s"
[token.command]
command = ["sh", "-c", "echo tok_from_the_script_$$$$"]
{extra}
"#
    )
}

fn check(dir: &Path, config: &str) -> (i32, String) {
    let path = dir.join("supervisor.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_symlinked_env_file_is_written_through_the_link_and_never_chowned() {
    let root = nix::unistd::geteuid().is_root();
    let w = Warden::start_with(
        &command_config(""),
        |d| {
            std::fs::create_dir(d.join("shared")).unwrap();
            let real = d.join("shared/real.env");
            std::fs::write(&real, "A=1\n").unwrap();
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
            if root {
                std::os::unix::fs::chown(&real, Some(4321), Some(4322)).unwrap();
            }
            std::os::unix::fs::symlink("shared/real.env", d.join(".env")).unwrap();
        },
        Vec::new(),
    );
    let dir = w.dir.path();
    let real = dir.join("shared/real.env");
    wait_until("the token in the link's target", T, || {
        std::fs::read_to_string(&real).is_ok_and(|t| t.contains("KITE_ACCESS_TOKEN="))
    });
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(
        text.starts_with("A=1\nKITE_ACCESS_TOKEN=tok_from_the_script_")
            && text.lines().count() == 2,
        "{text}"
    );
    let link = std::fs::symlink_metadata(dir.join(".env")).unwrap();
    assert!(link.file_type().is_symlink(), "the link was replaced");
    let m = std::fs::metadata(&real).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
    // The new file is warden's (this test's user): never handed to the old owner.
    assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
    // The resolution is reported at start.
    let real_abs = real.canonicalize().unwrap();
    w.wait_log(&format!("token env file: {}", real_abs.display()), T);
    assert!(w.logs().contains("(the symlink "), "{}", w.logs());
}

#[test]
fn a_dangling_or_non_file_symlink_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("nowhere/real.env", dir.path().join(".env")).unwrap();
    let (code, err) = check(dir.path(), &command_config(""));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("token.env_file: ")
            && err.contains("nowhere/real.env")
            && err.contains("does not exist"),
        "{err}"
    );
    // `warden run` refuses it the same way, before starting anything.
    let out = Command::new(BIN)
        .args(["run", "-c"])
        .arg(dir.path().join("supervisor.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token.env_file"));
    assert!(!dir.path().join("nowhere").exists());

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::os::unix::fs::symlink("d", dir.path().join(".env")).unwrap();
    let (code, err) = check(dir.path(), &command_config(""));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn a_readable_env_file_is_a_warning_in_check_in_the_log_and_on_the_status_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "A=1\n").unwrap();
    std::fs::set_permissions(
        dir.path().join(".env"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, err) = check(dir.path(), &command_config(""));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: token.env_file: ")
            && err.contains("(mode 0644) can be read by everyone")
            && err.contains("chmod 600"),
        "{err}"
    );

    let w = Warden::start_with(
        &command_config(""),
        |d| {
            std::fs::write(d.join(".env"), "A=1\n").unwrap();
            std::fs::set_permissions(d.join(".env"), std::fs::Permissions::from_mode(0o640))
                .unwrap();
        },
        Vec::new(),
    );
    w.wait_log("token.env_file: ", T);
    assert!(
        w.logs().contains("token.env_file: ") && w.logs().contains("can be read by its group"),
        "{}",
        w.logs()
    );
    wait_until("the token to be written", T, || {
        w.env_token().starts_with("tok_from_the_script_")
    });
    // warden keeps the mode it finds, and keeps saying so.
    let mode = std::fs::metadata(w.dir.path().join(".env")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o640);
    wait_until("the warning in the status", T, || {
        w.status()["token"]["env_file_warning"]
            .as_str()
            .is_some_and(|s| s.contains("chmod 600"))
    });
    let (status, page) = http(&w.addr, "GET", "/", &[], "");
    assert_eq!(status, 200);
    assert!(
        page.contains("Token file:") && page.contains("chmod 600"),
        "{page}"
    );

    // Fixed by hand: the warning goes away with the next write.
    std::fs::set_permissions(
        w.dir.path().join(".env"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    w.signal(libc::SIGUSR1);
    wait_until("the warning to clear", T, || {
        w.status()["token"].get("env_file_warning").is_none()
    });
}

#[test]
fn cleartext_credentials_to_other_hosts_are_warnings_in_check_and_at_start() {
    let extra = r#"
[token.kite]
api_key = "k"
api_secret = "s"
user_id = "AB1234"
login_base = "http://192.0.2.10"
api_base = "http://127.0.0.1:9"
"#;
    let dir = tempfile::tempdir().unwrap();
    let notify = "[notify]\nwebhook_url = \"http://hooks.example/T000/very-secret-path\"\n";
    let (code, err) = check(dir.path(), &format!("{}{notify}", command_config(extra)));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: token.kite.login_base: http:// to 192.0.2.10"),
        "{err}"
    );
    assert!(
        !err.contains("token.kite.api_base"),
        "loopback is fine: {err}"
    );
    assert!(
        err.contains("warning: notify.webhook_url: http://"),
        "{err}"
    );
    assert!(!err.contains("very-secret-path"), "{err}");

    let w = Warden::start(&command_config(extra));
    w.wait_log("token.kite.login_base: http:// to 192.0.2.10", T);
}
