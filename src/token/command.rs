//! `provider = "command"`: the operator's own refresh script (SPEC §3 `[token.command]`).
//!
//! This module only builds the command and reads its answer. Spawning, the timeout and the
//! wait belong to the caller, because warden's reaper owns every `waitpid` (a second waiter
//! would steal exit statuses). The script runs in its own process group so the whole group can
//! be killed when it overruns `timeout`.
//!
//! The answer is the last non-empty stdout line: the token itself, or a JSON object with an
//! `access_token` string. Anything earlier on stdout (progress messages) is ignored.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::config::{CommandProviderConfig, Secret};

/// Longest accepted token. Kite tokens are 32 characters; anything near this is a script
/// printing something else.
pub const MAX_TOKEN_LEN: usize = 512;

/// How much stdout the caller should keep (the tail); more is a misbehaving script.
pub const MAX_STDOUT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error(
        "the token command printed nothing on stdout; it must print the access token (or \
         JSON {{\"access_token\": \"…\"}}) as its last stdout line"
    )]
    NoOutput,
    #[error(
        "the last stdout line of the token command looks like JSON but {problem}; print \
         {{\"access_token\": \"…\"}} or the bare token"
    )]
    BadJson { problem: &'static str },
    #[error(
        "the last stdout line of the token command is not an access token: {problem}; print \
         only the token (or JSON {{\"access_token\": \"…\"}}) as the last line, and send \
         messages to stderr"
    )]
    NotAToken { problem: &'static str },
}

/// The command for `cfg`: argv as configured, run in `cfg.cwd` (relative to `config_dir`;
/// empty = `config_dir`), stdin closed, stdout and stderr piped, in a new process group.
///
/// The config loader rejects an empty `command`; if one slips through, the program name is
/// empty and spawning fails with "not found".
pub fn build_command(cfg: &CommandProviderConfig, config_dir: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let argv = &cfg.command.0;
    let mut cmd = Command::new(argv.first().map(String::as_str).unwrap_or(""));
    cmd.args(argv.iter().skip(1))
        .current_dir(config_dir.join(&cfg.cwd))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SPEC §7.1, as the loader decided for the token command (see `withheld_env`).
    for var in &cfg.withheld_env {
        cmd.env_remove(var);
    }
    cmd
}

/// The token printed by the command. Errors describe what is wrong and never repeat the
/// output (it may be a token, or something worse, printed by mistake).
pub fn parse_output(stdout: &[u8]) -> Result<Secret, CommandError> {
    let last = stdout
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .rfind(|l| !l.is_empty())
        .ok_or(CommandError::NoOutput)?;
    let token = if last.starts_with(b"{") {
        let doc: serde_json::Value =
            serde_json::from_slice(last).map_err(|_| CommandError::BadJson {
                problem: "it is not valid JSON",
            })?;
        match doc.get("access_token") {
            Some(serde_json::Value::String(s)) => s.as_bytes().to_vec(),
            Some(_) => {
                return Err(CommandError::BadJson {
                    problem: "its `access_token` is not a string",
                })
            }
            None => {
                return Err(CommandError::BadJson {
                    problem: "it has no `access_token` field",
                })
            }
        }
    } else {
        last.to_vec()
    };
    check_token(&token)?;
    let token = String::from_utf8(token).expect("checked: printable ASCII");
    Ok(Secret::new(token))
}

fn check_token(token: &[u8]) -> Result<(), CommandError> {
    let problem = if token.is_empty() {
        "it is empty"
    } else if token.len() > MAX_TOKEN_LEN {
        "it is too long"
    } else if token.iter().any(u8::is_ascii_whitespace) {
        "it contains whitespace"
    } else if !token.iter().all(u8::is_ascii_graphic) {
        "it contains characters other than printable ASCII"
    } else {
        return Ok(());
    };
    Err(CommandError::NotAToken { problem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommandLine;
    use std::time::Duration;

    /// Run to end of stdout without waiting for the child: in warden the reaper owns every
    /// wait, and another test in this binary may be running one. The zombie lasts until the
    /// test process exits.
    #[allow(clippy::zombie_processes)]
    fn stdout_to_eof(cmd: &mut std::process::Command) -> Vec<u8> {
        use std::io::Read;
        let mut child = cmd.spawn().unwrap();
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        out
    }

    fn ok(out: &str) -> String {
        parse_output(out.as_bytes()).unwrap().expose().to_string()
    }

    #[test]
    fn last_non_empty_line_wins() {
        assert_eq!(ok("logging in...\nok\nabc123\n\n  \n"), "abc123");
        assert_eq!(ok("abc123"), "abc123");
        assert_eq!(ok("progress\r\nTOKEN_xyz\r\n"), "TOKEN_xyz");
        assert_eq!(ok("  padded  \n"), "padded");
    }

    #[test]
    fn json_line() {
        assert_eq!(
            ok("starting\n{\"access_token\": \"tok42\", \"user_id\": \"AB1234\"}\n"),
            "tok42"
        );
    }

    #[test]
    fn rejections_never_echo_the_output() {
        let cases: &[(&str, CommandError)] = &[
            ("", CommandError::NoOutput),
            ("\n \n\t\n", CommandError::NoOutput),
            (
                "Token: s3cr3tvalue\n",
                CommandError::NotAToken {
                    problem: "it contains whitespace",
                },
            ),
            (
                "{\"access_token\": \"\"}",
                CommandError::NotAToken {
                    problem: "it is empty",
                },
            ),
            (
                "{\"access_token\": \"a b\"}",
                CommandError::NotAToken {
                    problem: "it contains whitespace",
                },
            ),
            (
                "{\"access_token\": 12345}",
                CommandError::BadJson {
                    problem: "its `access_token` is not a string",
                },
            ),
            (
                "{\"token\": \"s3cr3tvalue\"}",
                CommandError::BadJson {
                    problem: "it has no `access_token` field",
                },
            ),
            (
                "{s3cr3tvalue",
                CommandError::BadJson {
                    problem: "it is not valid JSON",
                },
            ),
            (
                "tökén",
                CommandError::NotAToken {
                    problem: "it contains characters other than printable ASCII",
                },
            ),
        ];
        for (out, want) in cases {
            let err = parse_output(out.as_bytes()).unwrap_err();
            assert_eq!(&err, want, "{out:?}");
            assert!(!err.to_string().contains("s3cr3tvalue"));
        }
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            parse_output(long.as_bytes()).unwrap_err(),
            CommandError::NotAToken {
                problem: "it is too long"
            }
        );
        assert!(parse_output("x".repeat(MAX_TOKEN_LEN).as_bytes()).is_ok());
    }

    #[test]
    fn builds_argv_cwd_pipes_and_group() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        let cfg = CommandProviderConfig {
            command: CommandLine(vec![
                "sh".into(),
                "-c".into(),
                // pwd, then our pgid == our pid (leader of a new group), then the token.
                "pwd; cut -d' ' -f5 /proc/$$/stat; echo $$; echo tok_1".into(),
            ]),
            timeout: Duration::from_secs(5),
            cwd: "scripts".into(),
            withheld_env: Vec::new(),
        };
        let mut cmd = build_command(&cfg, dir.path());
        assert_eq!(cmd.get_program(), "sh");
        let stdout = stdout_to_eof(&mut cmd);
        let text = String::from_utf8(stdout.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            std::path::Path::new(lines[0]).canonicalize().unwrap(),
            dir.path().join("scripts").canonicalize().unwrap()
        );
        assert_eq!(lines[1], lines[2], "the script leads its own process group");
        assert_eq!(parse_output(&stdout).unwrap().expose(), "tok_1");
    }

    #[test]
    fn empty_cwd_means_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CommandProviderConfig {
            command: CommandLine(vec!["pwd".into()]),
            ..Default::default()
        };
        let pwd = String::from_utf8(stdout_to_eof(&mut build_command(&cfg, dir.path()))).unwrap();
        assert_eq!(
            std::path::Path::new(pwd.trim()).canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }
}
