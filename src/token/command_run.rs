//! Running the `[token.command]` script: spawned through the reaper (warden owns every wait),
//! bounded by `timeout`, its whole process group killed if it overruns.

use std::path::Path;

use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;

use super::command::{build_command, parse_output, CommandError, MAX_STDOUT_BYTES};
use crate::config::{CommandProviderConfig, Secret};
use crate::process_group::signal_group;
use crate::reaper::Reaper;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the token command {argv0:?}: {source}")]
    Spawn {
        argv0: String,
        source: std::io::Error,
    },
    #[error("the token command did not finish within {0:?}; it was killed")]
    Timeout(std::time::Duration),
    #[error("the token command failed with {0}")]
    Failed(crate::reaper::ExitStatus),
    #[error(transparent)]
    Output(#[from] CommandError),
}

/// Run the command and return the token it printed.
pub async fn run(
    reaper: &Reaper,
    cfg: &CommandProviderConfig,
    config_dir: &Path,
) -> Result<Secret, RunError> {
    let mut cmd = build_command(cfg, config_dir);
    crate::rlimit::give_original_open_files(&mut cmd);
    let argv0 = cfg.command.0.first().cloned().unwrap_or_default();
    let (mut child, exit) = reaper
        .spawn(&mut cmd)
        .map_err(|source| RunError::Spawn { argv0, source })?;
    let pid = child.id() as i32;
    if let Some(err) = child.stderr.take() {
        crate::logs::pump("token.command".into(), "stderr", err.into());
    }
    let stdout = child.stdout.take().map(std::os::fd::OwnedFd::from);
    let work = async move {
        let mut out = Vec::new();
        if let Some(fd) = stdout {
            if let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                    if out.len() > MAX_STDOUT_BYTES {
                        // Keep the tail: the token is the last line.
                        out.drain(..out.len() - MAX_STDOUT_BYTES);
                    }
                }
            }
        }
        let status = exit
            .await
            .unwrap_or(crate::reaper::ExitStatus::Signal(libc::SIGKILL));
        (out, status)
    };
    match tokio::time::timeout(cfg.timeout, work).await {
        Err(_) => {
            signal_group(pid, Signal::SIGKILL);
            Err(RunError::Timeout(cfg.timeout))
        }
        Ok((_, status)) if !status.success() => Err(RunError::Failed(status)),
        Ok((out, _)) => Ok(parse_output(&out)?),
    }
}
