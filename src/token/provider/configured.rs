//! The provider `[token] provider` names, switchable by a config reload: `kite`, `dhan`, or
//! `command` (the operator's script obtains, Kite validates when `[token.kite]` is there).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Secret, TokenConfig, TokenProviderKind};
use crate::reaper::Reaper;
use crate::token::broker::{Broker, KiteBroker};
use crate::token::kite::BrokerError;

use super::command::{CommandProvider, CommandProviderError};
use super::dhan::{DhanError, DhanProvider};
use super::kite::KiteProvider;
use super::{Failure, Grant, Identity, LoginKind, Obtained, Provider, ProviderError, SessionProbe};

#[derive(Debug, thiserror::Error)]
pub enum ConfiguredError {
    #[error(transparent)]
    Kite(#[from] BrokerError),
    #[error(transparent)]
    Command(#[from] CommandProviderError),
    #[error(transparent)]
    Dhan(#[from] DhanError),
}

impl ProviderError for ConfiguredError {
    fn failure(&self) -> Failure {
        match self {
            ConfiguredError::Kite(e) => e.failure(),
            ConfiguredError::Command(e) => e.failure(),
            ConfiguredError::Dhan(e) => e.failure(),
        }
    }
}

/// The broker whose callback route (`/{name}/callback`) completes a manual login for this
/// token, when it has one.
pub fn manual_login_provider(cfg: &TokenConfig) -> Option<&'static str> {
    match cfg.provider {
        TokenProviderKind::Kite | TokenProviderKind::Command => cfg.kite.as_ref().map(|_| "kite"),
        TokenProviderKind::None => None,
        // The consent flow needs the API key (app_id/app_secret), in either login mode.
        TokenProviderKind::Dhan => cfg
            .dhan
            .as_ref()
            .filter(|d| !d.app_id.trim().is_empty())
            .map(|_| "dhan"),
    }
}

/// The configured provider. Both are kept so a reload can switch between them; Kite also
/// validates the command's tokens.
pub struct Configured<B: Broker = KiteBroker> {
    kind: TokenProviderKind,
    kite: KiteProvider<B>,
    command: CommandProvider,
    dhan: DhanProvider,
}

impl<B: Broker> Configured<B> {
    pub fn new(cfg: &TokenConfig, broker: B, reaper: Reaper, config_dir: PathBuf) -> Self {
        Configured {
            kind: cfg.provider,
            kite: KiteProvider::new(broker, cfg.kite.clone()),
            command: CommandProvider::new(cfg.command.clone(), reaper, config_dir),
            dhan: DhanProvider::new(cfg.dhan.clone()),
        }
    }

    fn scripted(&self) -> bool {
        self.kind == TokenProviderKind::Command
    }

    fn dhan(&self) -> bool {
        self.kind == TokenProviderKind::Dhan
    }
}

impl<B: Broker> Provider for Configured<B> {
    type Error = ConfiguredError;

    fn name(&self) -> &'static str {
        if self.dhan() {
            self.dhan.name()
        } else if self.scripted() {
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
            TokenProviderKind::Dhan => self.dhan.login_kind(),
        }
    }

    fn expected_user(&self) -> &str {
        if self.dhan() {
            return self.dhan.expected_user();
        }
        self.kite.expected_user()
    }

    fn credentials(&self) -> Vec<&str> {
        if self.dhan() {
            self.dhan.credentials()
        } else if self.scripted() && self.command.configured() {
            self.command.credentials()
        } else {
            self.kite.credentials()
        }
    }

    fn can_validate(&self) -> bool {
        if self.dhan() {
            return self.dhan.can_validate();
        }
        self.kite.can_validate()
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, ConfiguredError> {
        if self.dhan() {
            return Ok(self.dhan.validate(token).await?);
        }
        Ok(self.kite.validate(token).await?)
    }

    async fn resume_session(&mut self) -> Result<SessionProbe, ConfiguredError> {
        if self.dhan() {
            return Ok(self.dhan.resume_session().await?);
        }
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
        if self.dhan() {
            Ok(self.dhan.login(step, record).await?)
        } else if self.scripted() {
            Ok(self.command.login(step, record).await?)
        } else {
            Ok(self.kite.login(step, record).await?)
        }
    }

    /// A manual login's code is Kite's (or Dhan's consent tokenId), whichever provider
    /// obtains the daily token.
    async fn exchange(&mut self, code: &str) -> Result<Obtained, ConfiguredError> {
        if self.dhan() {
            return Ok(self.dhan.exchange(code).await?);
        }
        Ok(self.kite.exchange(code).await?)
    }

    fn login_url(&self, state: Option<&str>) -> Option<String> {
        if self.dhan() {
            return self.dhan.login_url(state);
        }
        self.kite.login_url(state)
    }

    async fn start_manual_login(&mut self, state: &str) -> Result<Option<String>, ConfiguredError> {
        if self.dhan() {
            return Ok(self.dhan.start_manual_login(state).await?);
        }
        Ok(self.kite.start_manual_login(state).await?)
    }

    fn callback_code(
        &self,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<String, &'static str> {
        if self.dhan() {
            return self.dhan.callback_code(query);
        }
        self.kite.callback_code(query)
    }

    fn callback_carries_state(&self) -> bool {
        if self.dhan() {
            return self.dhan.callback_carries_state();
        }
        self.kite.callback_carries_state()
    }

    fn remember(&mut self, companions: &super::Companions) {
        if self.dhan() {
            return self.dhan.remember(companions);
        }
        self.kite.remember(companions);
    }

    async fn logout(&mut self, token: &Secret) -> Result<(), ConfiguredError> {
        if self.dhan() {
            return Ok(self.dhan.logout(token).await?);
        }
        Ok(self.kite.logout(token).await?)
    }

    fn fresh_code_in(&self) -> Option<Duration> {
        if self.dhan() {
            return self.dhan.fresh_code_in();
        }
        self.kite.fresh_code_in()
    }

    fn rearm(&mut self) {
        if self.dhan() {
            return self.dhan.rearm();
        }
        self.kite.rearm();
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        self.kind = cfg.provider;
        self.kite.reconfigure(cfg);
        self.command.reconfigure(cfg);
        self.dhan.reconfigure(cfg);
    }
}
