//! Turning a `ProgramConfig` into a running process in its own process group.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::config::ProgramConfig;
use crate::reaper::{ExitStatus, Reaper};

/// A freshly spawned program: its pid (= its process group id), exit future and output pipes.
pub struct Spawned {
    pub pid: i32,
    pub exit: tokio::sync::oneshot::Receiver<ExitStatus>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot read env_file {path}: {source}")]
    EnvFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start {argv0:?} in {cwd}: {source}")]
    Exec {
        argv0: String,
        cwd: String,
        source: std::io::Error,
    },
    #[error("empty command")]
    EmptyCommand,
}

/// Build the command: argv, cwd, environment (warden's own, then `env_file`, then `env`), its
/// own process group (so stop and kill reach grandchildren) and piped output.
///
/// SPEC §7.1: the variables warden read a secret from are taken out of what the program
/// inherits from warden (`withheld_env`, which already spares `pass_env`). Its own `env_file`
/// and `env` table are applied after that, as written: a value the operator gave this program
/// by name is not inherited by accident.
pub fn command_for(cfg: &ProgramConfig) -> Result<Command, SpawnError> {
    let (argv0, args) = cfg
        .command
        .0
        .split_first()
        .ok_or(SpawnError::EmptyCommand)?;
    let mut cmd = Command::new(argv0);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if !cfg.cwd.as_os_str().is_empty() {
        cmd.current_dir(&cfg.cwd);
    }
    for var in &cfg.withheld_env {
        cmd.env_remove(var);
    }
    if let Some(path) = &cfg.env_file {
        for (k, v) in read_env_file(path)? {
            cmd.env(k, v);
        }
    }
    cmd.envs(&cfg.env);
    Ok(cmd)
}

fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, SpawnError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(crate::token::dotenv::parse_dotenv(&text)),
        // A missing env file is normal before the first token is written.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(SpawnError::EnvFile {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Spawn through the reaper so the exit status is routed to us and nobody else.
pub fn spawn(reaper: &Reaper, cfg: &ProgramConfig) -> Result<Spawned, SpawnError> {
    let mut cmd = command_for(cfg)?;
    crate::rlimit::give_original_open_files(&mut cmd);
    let (mut child, exit) = reaper.spawn(&mut cmd).map_err(|source| SpawnError::Exec {
        argv0: cfg.command.0.first().cloned().unwrap_or_default(),
        cwd: cfg.cwd.display().to_string(),
        source,
    })?;
    Ok(Spawned {
        pid: child.id() as i32,
        exit,
        stdout: child.stdout.take().map(OwnedFd::from),
        stderr: child.stderr.take().map(OwnedFd::from),
    })
}
