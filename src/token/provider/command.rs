//! `provider = "command"` as a [`Provider`]: the operator's script prints the token (SPEC §3
//! `[token.command]`). It cannot validate a token by itself; the keeper pairs it with the
//! broker's validation when `[token.kite]` is configured (see [`super::configured`]).

use std::path::PathBuf;

use crate::config::{CommandProviderConfig, Secret, TokenConfig};
use crate::reaper::Reaper;
use crate::token::command_run::{self, RunError};

use super::{Failure, Grant, Identity, LoginKind, Obtained, Provider, ProviderError};

#[derive(Debug, thiserror::Error)]
pub enum CommandProviderError {
    #[error("[token.command] is missing")]
    Missing,
    /// The script could not run, timed out, failed or printed no token. It owns its own
    /// credential handling, so this is retried within the attempt caps.
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("a token command has no one-time code to exchange; its output is the token")]
    NoExchange,
}

impl ProviderError for CommandProviderError {
    fn failure(&self) -> Failure {
        match self {
            CommandProviderError::Missing | CommandProviderError::NoExchange => Failure::Config,
            CommandProviderError::Run(_) => Failure::Transient,
        }
    }
}

/// Runs `[token.command]` through the reaper (warden owns every wait), in `config_dir`.
pub struct CommandProvider {
    cfg: Option<CommandProviderConfig>,
    reaper: Reaper,
    config_dir: PathBuf,
}

impl CommandProvider {
    pub fn new(
        cfg: Option<CommandProviderConfig>,
        reaper: Reaper,
        config_dir: PathBuf,
    ) -> CommandProvider {
        CommandProvider {
            cfg,
            reaper,
            config_dir,
        }
    }

    pub fn configured(&self) -> bool {
        self.cfg.is_some()
    }
}

impl Provider for CommandProvider {
    type Error = CommandProviderError;

    fn name(&self) -> &'static str {
        "command"
    }

    fn login_kind(&self) -> LoginKind {
        LoginKind::Command
    }

    fn expected_user(&self) -> &str {
        ""
    }

    fn credentials(&self) -> Vec<&str> {
        let mut parts = vec!["command"];
        if let Some(c) = &self.cfg {
            parts.extend(c.command.0.iter().map(String::as_str));
        }
        parts
    }

    fn can_validate(&self) -> bool {
        false
    }

    /// A script has no broker to ask: its token is taken as it comes.
    async fn validate(&mut self, _token: &Secret) -> Result<Identity, CommandProviderError> {
        Ok(Identity::default())
    }

    async fn login(
        &mut self,
        _step: Option<u64>,
        _record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, CommandProviderError> {
        let cfg = self.cfg.as_ref().ok_or(CommandProviderError::Missing)?;
        let token = command_run::run(&self.reaper, cfg, &self.config_dir).await?;
        Ok(Grant::Token(Obtained {
            access_token: token,
            user_id: String::new(),
            companions: Default::default(),
        }))
    }

    async fn exchange(&mut self, _code: &str) -> Result<Obtained, CommandProviderError> {
        Err(CommandProviderError::NoExchange)
    }

    async fn logout(&mut self, _token: &Secret) -> Result<(), CommandProviderError> {
        Ok(())
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        self.cfg = cfg.command.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_script_is_transient_and_says_so() {
        let e = CommandProviderError::from(RunError::Timeout(std::time::Duration::from_secs(5)));
        assert_eq!(e.failure(), Failure::Transient);
        assert!(e.to_string().contains("token command"), "{e}");
        assert!(!e.to_string().contains("network"), "{e}");
        assert_eq!(CommandProviderError::Missing.failure(), Failure::Config);
    }
}
