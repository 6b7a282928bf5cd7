//! The provider `[token] provider` names, switchable by a config reload: `kite`, or
//! `command` (the operator's script obtains, Kite validates when `[token.kite]` is there).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Secret, TokenConfig, TokenProviderKind};
use crate::reaper::Reaper;
use crate::token::broker::{Broker, KiteBroker};
use crate::token::kite::BrokerError;

use super::command::{CommandProvider, CommandProviderError};
use super::kite::KiteProvider;
use super::{Failure, Grant, Identity, LoginKind, Obtained, Provider, ProviderError, SessionProbe};

#[derive(Debug, thiserror::Error)]
pub enum ConfiguredError {
    #[error(transparent)]
    Kite(#[from] BrokerError),
    #[error(transparent)]
    Command(#[from] CommandProviderError),
}

impl ProviderError for ConfiguredError {
    fn failure(&self) -> Failure {
        match self {
            ConfiguredError::Kite(e) => e.failure(),
            ConfiguredError::Command(e) => e.failure(),
        }
    }
}

/// The broker whose callback route (`/{name}/callback`) completes a manual login for this
/// token, when it has one.
pub fn manual_login_provider(cfg: &TokenConfig) -> Option<&'static str> {
    match cfg.provider {
        TokenProviderKind::Kite | TokenProviderKind::Command => cfg.kite.as_ref().map(|_| "kite"),
        TokenProviderKind::None => None,
    }
}

/// The token's name (the `token` label of its metrics): what [`Configured::name`] answers for
/// this config.
pub fn token_name(cfg: &TokenConfig) -> &'static str {
    match cfg.provider {
        TokenProviderKind::Command => "command",
        TokenProviderKind::Kite | TokenProviderKind::None => "kite",
    }
}

/// The configured provider. Both are kept so a reload can switch between them; Kite also
/// validates the command's tokens.
pub struct Configured<B: Broker = KiteBroker> {
    kind: TokenProviderKind,
    kite: KiteProvider<B>,
    command: CommandProvider,
}

impl<B: Broker> Configured<B> {
    pub fn new(cfg: &TokenConfig, broker: B, reaper: Reaper, config_dir: PathBuf) -> Self {
        Configured {
            kind: cfg.provider,
            kite: KiteProvider::new(broker, cfg.kite.clone()),
            command: CommandProvider::new(cfg.command.clone(), reaper, config_dir),
        }
    }

    fn scripted(&self) -> bool {
        self.kind == TokenProviderKind::Command
    }
}

impl<B: Broker> Provider for Configured<B> {
    type Error = ConfiguredError;

    fn name(&self) -> &'static str {
        if self.scripted() {
            self.command.name()
        } else {
            self.kite.name()
        }
    }

    fn login_kind(&self) -> LoginKind {
        match self.kind {
            TokenProviderKind::Command => self.command.login_kind(),
            TokenProviderKind::Kite => self.kite.login_kind(),
            TokenProviderKind::None => LoginKind::None,
        }
    }

    fn expected_user(&self) -> &str {
        self.kite.expected_user()
    }

    fn credentials(&self) -> Vec<&str> {
        if self.scripted() && self.command.configured() {
            self.command.credentials()
        } else {
            self.kite.credentials()
        }
    }

    fn can_validate(&self) -> bool {
        self.kite.can_validate()
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, ConfiguredError> {
        Ok(self.kite.validate(token).await?)
    }

    async fn resume_session(&mut self) -> Result<SessionProbe, ConfiguredError> {
        if self.scripted() {
            return Ok(SessionProbe::default());
        }
        Ok(self.kite.resume_session().await?)
    }

    async fn login(
        &mut self,
        step: Option<u64>,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, ConfiguredError> {
        if self.scripted() {
            Ok(self.command.login(step, record).await?)
        } else {
            Ok(self.kite.login(step, record).await?)
        }
    }

    /// A manual login's code is Kite's, whichever provider obtains the daily token.
    async fn exchange(&mut self, code: &str) -> Result<Obtained, ConfiguredError> {
        Ok(self.kite.exchange(code).await?)
    }

    fn login_url(&self, state: Option<&str>) -> Option<String> {
        self.kite.login_url(state)
    }

    fn callback_code(
        &self,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<String, &'static str> {
        self.kite.callback_code(query)
    }

    fn remember(&mut self, companions: &super::Companions) {
        self.kite.remember(companions);
    }

    async fn logout(&mut self, token: &Secret) -> Result<(), ConfiguredError> {
        Ok(self.kite.logout(token).await?)
    }

    fn fresh_code_in(&self) -> Option<Duration> {
        self.kite.fresh_code_in()
    }

    fn rearm(&mut self) {
        self.kite.rearm();
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        self.kind = cfg.provider;
        self.kite.reconfigure(cfg);
        self.command.reconfigure(cfg);
    }
}
