//! The provider `[token] provider` names, switchable by a config reload: `kite`, `angelone`,
//! or `command` (the operator's script obtains, Kite validates when `[token.kite]` is there).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Secret, TokenConfig, TokenProviderKind};
use crate::reaper::Reaper;
use crate::token::broker::{Broker, KiteBroker};
use crate::token::kite::BrokerError;

use super::angelone::{AngelError, AngelOneProvider};
use super::command::{CommandProvider, CommandProviderError};
use super::kite::KiteProvider;
use super::{Failure, Grant, Identity, LoginKind, Obtained, Provider, ProviderError, SessionProbe};

#[derive(Debug, thiserror::Error)]
pub enum ConfiguredError {
    #[error(transparent)]
    Kite(#[from] BrokerError),
    #[error(transparent)]
    Command(#[from] CommandProviderError),
    #[error(transparent)]
    AngelOne(#[from] AngelError),
}

impl ProviderError for ConfiguredError {
    fn failure(&self) -> Failure {
        match self {
            ConfiguredError::Kite(e) => e.failure(),
            ConfiguredError::Command(e) => e.failure(),
            ConfiguredError::AngelOne(e) => e.failure(),
        }
    }
}

/// The broker whose callback route (`/{name}/callback`) completes a manual login for this
/// token, when it has one.
pub fn manual_login_provider(cfg: &TokenConfig) -> Option<&'static str> {
    match cfg.provider {
        TokenProviderKind::Kite | TokenProviderKind::Command => cfg.kite.as_ref().map(|_| "kite"),
        TokenProviderKind::None => None,
        TokenProviderKind::Angelone => cfg.angelone.as_ref().map(|_| "angelone"),
    }
}

/// The configured provider. Both are kept so a reload can switch between them; Kite also
/// validates the command's tokens.
pub struct Configured<B: Broker = KiteBroker> {
    kind: TokenProviderKind,
    kite: KiteProvider<B>,
    command: CommandProvider,
    angelone: AngelOneProvider,
}

impl<B: Broker> Configured<B> {
    pub fn new(cfg: &TokenConfig, broker: B, reaper: Reaper, config_dir: PathBuf) -> Self {
        Configured {
            kind: cfg.provider,
            kite: KiteProvider::new(broker, cfg.kite.clone()),
            command: CommandProvider::new(cfg.command.clone(), reaper, config_dir),
            angelone: AngelOneProvider::new(cfg.angelone.clone()),
        }
    }

    fn scripted(&self) -> bool {
        self.kind == TokenProviderKind::Command
    }

    /// The Angel One provider, when it is the configured one.
    fn angel(&mut self) -> Option<&mut AngelOneProvider> {
        (self.kind == TokenProviderKind::Angelone).then_some(&mut self.angelone)
    }

    fn is_angel(&self) -> bool {
        self.kind == TokenProviderKind::Angelone
    }
}

impl<B: Broker> Provider for Configured<B> {
    type Error = ConfiguredError;

    fn name(&self) -> &'static str {
        if self.is_angel() {
            return self.angelone.name();
        }
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
            TokenProviderKind::Angelone => self.angelone.login_kind(),
        }
    }

    fn expected_user(&self) -> &str {
        if self.is_angel() {
            return self.angelone.expected_user();
        }
        self.kite.expected_user()
    }

    fn credentials(&self) -> Vec<&str> {
        if self.is_angel() {
            return self.angelone.credentials();
        }
        if self.scripted() && self.command.configured() {
            self.command.credentials()
        } else {
            self.kite.credentials()
        }
    }

    fn can_validate(&self) -> bool {
        if self.is_angel() {
            return self.angelone.can_validate();
        }
        self.kite.can_validate()
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, ConfiguredError> {
        if let Some(a) = self.angel() {
            return Ok(a.validate(token).await?);
        }
        Ok(self.kite.validate(token).await?)
    }

    async fn resume_session(&mut self) -> Result<SessionProbe, ConfiguredError> {
        if let Some(a) = self.angel() {
            return Ok(a.resume_session().await?);
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
        if let Some(a) = self.angel() {
            return Ok(a.login(step, record).await?);
        }
        if self.scripted() {
            Ok(self.command.login(step, record).await?)
        } else {
            Ok(self.kite.login(step, record).await?)
        }
    }

    /// A manual login's code is the broker's: Angel One's for `angelone`, else Kite's,
    /// whichever provider obtains the daily token.
    async fn exchange(&mut self, code: &str) -> Result<Obtained, ConfiguredError> {
        if let Some(a) = self.angel() {
            return Ok(a.exchange(code).await?);
        }
        Ok(self.kite.exchange(code).await?)
    }

    fn can_refresh(&self) -> bool {
        self.is_angel() && self.angelone.can_refresh()
    }

    async fn refresh(&mut self) -> Option<Result<Obtained, ConfiguredError>> {
        let a = self.angel()?;
        Some(a.refresh().await?.map_err(ConfiguredError::from))
    }

    fn login_url(&self, state: Option<&str>) -> Option<String> {
        if self.is_angel() {
            return self.angelone.login_url(state);
        }
        self.kite.login_url(state)
    }

    fn callback_code(
        &self,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<String, &'static str> {
        if self.is_angel() {
            return self.angelone.callback_code(query);
        }
        self.kite.callback_code(query)
    }

    fn callback_carries_state(&self) -> bool {
        if self.is_angel() {
            return self.angelone.callback_carries_state();
        }
        self.kite.callback_carries_state()
    }

    fn remember(&mut self, companions: &super::Companions) {
        if let Some(a) = self.angel() {
            return a.remember(companions);
        }
        self.kite.remember(companions);
    }

    async fn logout(&mut self, token: &Secret) -> Result<(), ConfiguredError> {
        if let Some(a) = self.angel() {
            return Ok(a.logout(token).await?);
        }
        Ok(self.kite.logout(token).await?)
    }

    fn fresh_code_in(&self) -> Option<Duration> {
        if self.is_angel() {
            return self.angelone.fresh_code_in();
        }
        self.kite.fresh_code_in()
    }

    fn rearm(&mut self) {
        if let Some(a) = self.angel() {
            return a.rearm();
        }
        self.kite.rearm();
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        self.kind = cfg.provider;
        self.kite.reconfigure(cfg);
        self.command.reconfigure(cfg);
        self.angelone.reconfigure(cfg);
    }
}
