//! The provider `[token] provider` names, switchable by a config reload: `kite`, `command`
//! (the operator's script obtains, Kite validates when `[token.kite]` is there), or `upstox`.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Secret, TokenConfig, TokenProviderKind};
use crate::reaper::Reaper;
use crate::token::broker::{Broker, KiteBroker};
use crate::token::kite::BrokerError;

use super::command::{CommandProvider, CommandProviderError};
use super::kite::KiteProvider;
use super::upstox::{UpstoxError, UpstoxProvider};
use super::{
    DeliveryRefused, Failure, Grant, Identity, LoginKind, Obtained, PendingApproval, Provider,
    ProviderError, SessionProbe,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfiguredError {
    #[error(transparent)]
    Kite(#[from] BrokerError),
    #[error(transparent)]
    Command(#[from] CommandProviderError),
    #[error(transparent)]
    Upstox(#[from] UpstoxError),
}

impl ProviderError for ConfiguredError {
    fn failure(&self) -> Failure {
        match self {
            ConfiguredError::Kite(e) => e.failure(),
            ConfiguredError::Command(e) => e.failure(),
            ConfiguredError::Upstox(e) => e.failure(),
        }
    }
}

/// The broker whose callback route (`/{name}/callback`) completes a manual login for this
/// token, when it has one.
pub fn manual_login_provider(cfg: &TokenConfig) -> Option<&'static str> {
    match cfg.provider {
        TokenProviderKind::Kite | TokenProviderKind::Command => cfg.kite.as_ref().map(|_| "kite"),
        TokenProviderKind::None => None,
        TokenProviderKind::Upstox => cfg.upstox.as_ref().map(|_| "upstox"),
    }
}

/// The configured provider. Both are kept so a reload can switch between them; Kite also
/// validates the command's tokens.
pub struct Configured<B: Broker = KiteBroker> {
    kind: TokenProviderKind,
    kite: KiteProvider<B>,
    command: CommandProvider,
    upstox: UpstoxProvider,
}

impl<B: Broker> Configured<B> {
    pub fn new(cfg: &TokenConfig, broker: B, reaper: Reaper, config_dir: PathBuf) -> Self {
        Configured {
            kind: cfg.provider,
            kite: KiteProvider::new(broker, cfg.kite.clone()),
            command: CommandProvider::new(cfg.command.clone(), reaper, config_dir),
            upstox: UpstoxProvider::new(cfg.upstox.clone()),
        }
    }

    /// `[http] public_url`: where brokers that are told a redirect (Upstox) send the browser.
    pub fn set_public_url(&mut self, public_url: &str) {
        self.upstox.set_public_url(public_url);
    }

    fn upstox(&self) -> bool {
        self.kind == TokenProviderKind::Upstox
    }

    fn scripted(&self) -> bool {
        self.kind == TokenProviderKind::Command
    }
}

impl<B: Broker> Provider for Configured<B> {
    type Error = ConfiguredError;

    fn name(&self) -> &'static str {
        if self.upstox() {
            self.upstox.name()
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
            TokenProviderKind::Upstox => self.upstox.login_kind(),
        }
    }

    fn expected_user(&self) -> &str {
        if self.upstox() {
            return self.upstox.expected_user();
        }
        self.kite.expected_user()
    }

    fn credentials(&self) -> Vec<&str> {
        if self.upstox() {
            self.upstox.credentials()
        } else if self.scripted() && self.command.configured() {
            self.command.credentials()
        } else {
            self.kite.credentials()
        }
    }

    fn can_validate(&self) -> bool {
        if self.upstox() {
            return self.upstox.can_validate();
        }
        self.kite.can_validate()
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, ConfiguredError> {
        if self.upstox() {
            return Ok(self.upstox.validate(token).await?);
        }
        Ok(self.kite.validate(token).await?)
    }

    async fn resume_session(&mut self) -> Result<SessionProbe, ConfiguredError> {
        if self.scripted() || self.upstox() {
            return Ok(SessionProbe::default());
        }
        Ok(self.kite.resume_session().await?)
    }

    async fn login(
        &mut self,
        step: Option<u64>,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, ConfiguredError> {
        if self.upstox() {
            Ok(self.upstox.login(step, record).await?)
        } else if self.scripted() {
            Ok(self.command.login(step, record).await?)
        } else {
            Ok(self.kite.login(step, record).await?)
        }
    }

    /// A manual login's code is Kite's, whichever provider obtains the daily token.
    async fn exchange(&mut self, code: &str) -> Result<Obtained, ConfiguredError> {
        if self.upstox() {
            return Ok(self.upstox.exchange(code).await?);
        }
        Ok(self.kite.exchange(code).await?)
    }

    fn login_url(&self, state: Option<&str>) -> Option<String> {
        if self.upstox() {
            return self.upstox.login_url(state);
        }
        self.kite.login_url(state)
    }

    fn callback_code(
        &self,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<String, &'static str> {
        if self.upstox() {
            return self.upstox.callback_code(query);
        }
        self.kite.callback_code(query)
    }

    fn remember(&mut self, companions: &super::Companions) {
        if self.upstox() {
            return self.upstox.remember(companions);
        }
        self.kite.remember(companions);
    }

    async fn logout(&mut self, token: &Secret) -> Result<(), ConfiguredError> {
        if self.upstox() {
            return Ok(self.upstox.logout(token).await?);
        }
        Ok(self.kite.logout(token).await?)
    }

    fn fresh_code_in(&self) -> Option<Duration> {
        if self.upstox() {
            return self.upstox.fresh_code_in();
        }
        self.kite.fresh_code_in()
    }

    fn pending_approval(&self) -> Option<PendingApproval> {
        if self.upstox() {
            return self.upstox.pending_approval();
        }
        None
    }

    fn take_delivery(&mut self, body: &[u8]) -> Result<Obtained, DeliveryRefused> {
        if self.upstox() {
            return self.upstox.take_delivery(body);
        }
        Err(DeliveryRefused::NotSupported)
    }

    fn approval_settled(&mut self) {
        self.upstox.approval_settled();
    }

    fn rearm(&mut self) {
        if self.upstox() {
            return self.upstox.rearm();
        }
        self.kite.rearm();
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        self.kind = cfg.provider;
        self.kite.reconfigure(cfg);
        self.command.reconfigure(cfg);
        self.upstox.reconfigure(cfg);
    }
}
