//! The provider `[token] provider` names, switchable by a config reload: `kite`, `command`
//! (the operator's script obtains, Kite validates when `[token.kite]` is there), or one of the
//! other brokers (`dhan`, `fyers`, …). Every provider is kept, built from its table, so a
//! reload that changes `provider` only changes which one answers.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Secret, TokenConfig, TokenProviderKind};
use crate::reaper::Reaper;
use crate::token::broker::{Broker, KiteBroker};
use crate::token::kite::BrokerError;

use super::angelone::{AngelError, AngelOneProvider};
use super::command::{CommandProvider, CommandProviderError};
use super::dhan::{DhanError, DhanProvider};
use super::fyers::{FyersError, FyersProvider};
use super::kite::KiteProvider;
use super::upstox::{UpstoxError, UpstoxProvider};
use super::{
    Companions, DeliveryRefused, Failure, Grant, Identity, LoginKind, Obtained, PendingApproval,
    Provider, ProviderError, SessionProbe,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfiguredError {
    #[error(transparent)]
    Kite(#[from] BrokerError),
    #[error(transparent)]
    Command(#[from] CommandProviderError),
    #[error(transparent)]
    Dhan(#[from] DhanError),
    #[error(transparent)]
    Fyers(#[from] FyersError),
    #[error(transparent)]
    Upstox(#[from] UpstoxError),
    #[error(transparent)]
    AngelOne(#[from] AngelError),
}

impl ProviderError for ConfiguredError {
    fn failure(&self) -> Failure {
        match self {
            ConfiguredError::Kite(e) => e.failure(),
            ConfiguredError::Command(e) => e.failure(),
            ConfiguredError::Dhan(e) => e.failure(),
            ConfiguredError::Fyers(e) => e.failure(),
            ConfiguredError::Upstox(e) => e.failure(),
            ConfiguredError::AngelOne(e) => e.failure(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ConfiguredError::Kite(e) => e.retry_after(),
            ConfiguredError::Command(e) => e.retry_after(),
            ConfiguredError::Dhan(e) => e.retry_after(),
            ConfiguredError::Fyers(e) => e.retry_after(),
            ConfiguredError::Upstox(e) => e.retry_after(),
            ConfiguredError::AngelOne(e) => e.retry_after(),
        }
    }
}

/// The broker whose callback route (`/{name}/callback`) completes a manual login for this
/// token, when it has one.
pub fn manual_login_provider(cfg: &TokenConfig) -> Option<&'static str> {
    match cfg.provider {
        TokenProviderKind::Kite | TokenProviderKind::Command => cfg.kite.as_ref().map(|_| "kite"),
        TokenProviderKind::None => None,
        TokenProviderKind::Fyers => cfg.fyers.as_ref().map(|_| "fyers"),
        TokenProviderKind::Upstox => cfg.upstox.as_ref().map(|_| "upstox"),
        TokenProviderKind::Angelone => cfg.angelone.as_ref().map(|_| "angelone"),
        // The consent flow needs the API key (app_id/app_secret), in either login mode.
        TokenProviderKind::Dhan => cfg
            .dhan
            .as_ref()
            .filter(|d| !d.app_id.trim().is_empty())
            .map(|_| "dhan"),
    }
}

/// The configured provider. All are kept so a reload can switch between them; Kite also
/// validates the command's tokens.
pub struct Configured<B: Broker = KiteBroker> {
    kind: TokenProviderKind,
    kite: KiteProvider<B>,
    command: CommandProvider,
    dhan: DhanProvider,
    fyers: FyersProvider,
    upstox: UpstoxProvider,
    angelone: AngelOneProvider,
}

/// Runs `$body` with `$p` bound to the active broker provider other than Kite and the
/// command (`Some(result)`), or gives `None` when Kite or the command answers. `ref` borrows
/// it shared, `mut` exclusively; `try` converts a `Result`'s error into [`ConfiguredError`]
/// (each broker has its own error type).
macro_rules! broker {
    (ref $self:ident, $p:ident => $body:expr) => {
        match $self.kind {
            TokenProviderKind::Dhan => {
                let $p = &$self.dhan;
                Some($body)
            }
            TokenProviderKind::Fyers => {
                let $p = &$self.fyers;
                Some($body)
            }
            TokenProviderKind::Upstox => {
                let $p = &$self.upstox;
                Some($body)
            }
            TokenProviderKind::Angelone => {
                let $p = &$self.angelone;
                Some($body)
            }
            TokenProviderKind::Kite | TokenProviderKind::Command | TokenProviderKind::None => None,
        }
    };
    (mut $self:ident, $p:ident => $body:expr) => {
        match $self.kind {
            TokenProviderKind::Dhan => {
                let $p = &mut $self.dhan;
                Some($body)
            }
            TokenProviderKind::Fyers => {
                let $p = &mut $self.fyers;
                Some($body)
            }
            TokenProviderKind::Upstox => {
                let $p = &mut $self.upstox;
                Some($body)
            }
            TokenProviderKind::Angelone => {
                let $p = &mut $self.angelone;
                Some($body)
            }
            TokenProviderKind::Kite | TokenProviderKind::Command | TokenProviderKind::None => None,
        }
    };
    (try $self:ident, $p:ident => $body:expr) => {
        match $self.kind {
            TokenProviderKind::Dhan => {
                let $p = &mut $self.dhan;
                Some($body.map_err(ConfiguredError::from))
            }
            TokenProviderKind::Fyers => {
                let $p = &mut $self.fyers;
                Some($body.map_err(ConfiguredError::from))
            }
            TokenProviderKind::Upstox => {
                let $p = &mut $self.upstox;
                Some($body.map_err(ConfiguredError::from))
            }
            TokenProviderKind::Angelone => {
                let $p = &mut $self.angelone;
                Some($body.map_err(ConfiguredError::from))
            }
            TokenProviderKind::Kite | TokenProviderKind::Command | TokenProviderKind::None => None,
        }
    };
}

impl<B: Broker> Configured<B> {
    pub fn new(cfg: &TokenConfig, broker: B, reaper: Reaper, config_dir: PathBuf) -> Self {
        Configured {
            kind: cfg.provider,
            kite: KiteProvider::new(broker, cfg.kite.clone()),
            command: CommandProvider::new(cfg.command.clone(), reaper, config_dir),
            dhan: DhanProvider::new(cfg.dhan.clone()),
            fyers: FyersProvider::new(cfg.fyers.clone()),
            upstox: UpstoxProvider::new(cfg.upstox.clone()),
            angelone: AngelOneProvider::new(cfg.angelone.clone()),
        }
    }

    /// `[http] public_url`: where brokers that are told a redirect (Upstox) send the browser.
    pub fn set_public_url(&mut self, public_url: &str) {
        self.upstox.set_public_url(public_url);
    }

    fn scripted(&self) -> bool {
        self.kind == TokenProviderKind::Command
    }
}

impl<B: Broker> Provider for Configured<B> {
    type Error = ConfiguredError;

    fn name(&self) -> &'static str {
        if let Some(name) = broker!(ref self, p => p.name()) {
            return name;
        }
        if self.scripted() {
            self.command.name()
        } else {
            self.kite.name()
        }
    }

    fn login_kind(&self) -> LoginKind {
        if let Some(kind) = broker!(ref self, p => p.login_kind()) {
            return kind;
        }
        match self.kind {
            TokenProviderKind::Command => self.command.login_kind(),
            TokenProviderKind::None => LoginKind::None,
            _ => self.kite.login_kind(),
        }
    }

    fn expected_user(&self) -> &str {
        broker!(ref self, p => p.expected_user()).unwrap_or_else(|| self.kite.expected_user())
    }

    fn credentials(&self) -> Vec<&str> {
        if let Some(c) = broker!(ref self, p => p.credentials()) {
            c
        } else if self.scripted() && self.command.configured() {
            self.command.credentials()
        } else {
            self.kite.credentials()
        }
    }

    fn can_validate(&self) -> bool {
        broker!(ref self, p => p.can_validate()).unwrap_or_else(|| self.kite.can_validate())
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, ConfiguredError> {
        if let Some(r) = broker!(try self, p => p.validate(token).await) {
            return r;
        }
        Ok(self.kite.validate(token).await?)
    }

    async fn resume_session(&mut self) -> Result<SessionProbe, ConfiguredError> {
        if let Some(r) = broker!(try self, p => p.resume_session().await) {
            return r;
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
        if let Some(r) = broker!(try self, p => p.login(step, record).await) {
            return r;
        }
        if self.scripted() {
            Ok(self.command.login(step, record).await?)
        } else {
            Ok(self.kite.login(step, record).await?)
        }
    }

    /// A manual login's code is Kite's for Kite and the command (which Kite validates), the
    /// broker's own for the others.
    async fn exchange(&mut self, code: &str) -> Result<Obtained, ConfiguredError> {
        if let Some(r) = broker!(try self, p => p.exchange(code).await) {
            return r;
        }
        Ok(self.kite.exchange(code).await?)
    }

    fn can_refresh(&self) -> bool {
        broker!(ref self, p => p.can_refresh()).unwrap_or_else(|| self.kite.can_refresh())
    }

    async fn refresh(&mut self) -> Option<Result<Obtained, ConfiguredError>> {
        match self.kind {
            TokenProviderKind::Dhan => Some(self.dhan.refresh().await?.map_err(Into::into)),
            TokenProviderKind::Fyers => Some(self.fyers.refresh().await?.map_err(Into::into)),
            TokenProviderKind::Upstox => Some(self.upstox.refresh().await?.map_err(Into::into)),
            TokenProviderKind::Angelone => Some(self.angelone.refresh().await?.map_err(Into::into)),
            TokenProviderKind::Kite | TokenProviderKind::Command | TokenProviderKind::None => {
                Some(self.kite.refresh().await?.map_err(Into::into))
            }
        }
    }

    fn login_url(&self, state: Option<&str>) -> Option<String> {
        broker!(ref self, p => p.login_url(state)).unwrap_or_else(|| self.kite.login_url(state))
    }

    async fn start_manual_login(&mut self, state: &str) -> Result<Option<String>, ConfiguredError> {
        if let Some(r) = broker!(try self, p => p.start_manual_login(state).await) {
            return r;
        }
        Ok(self.kite.start_manual_login(state).await?)
    }

    fn callback_code(
        &self,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<String, &'static str> {
        broker!(ref self, p => p.callback_code(query))
            .unwrap_or_else(|| self.kite.callback_code(query))
    }

    fn callback_carries_state(&self) -> bool {
        broker!(ref self, p => p.callback_carries_state())
            .unwrap_or_else(|| self.kite.callback_carries_state())
    }

    fn remember(&mut self, companions: &Companions) {
        if broker!(mut self, p => p.remember(companions)).is_none() {
            self.kite.remember(companions);
        }
    }

    async fn logout(&mut self, token: &Secret) -> Result<(), ConfiguredError> {
        if let Some(r) = broker!(try self, p => p.logout(token).await) {
            return r;
        }
        Ok(self.kite.logout(token).await?)
    }

    fn fresh_code_in(&self) -> Option<Duration> {
        broker!(ref self, p => p.fresh_code_in()).unwrap_or_else(|| self.kite.fresh_code_in())
    }

    fn pending_approval(&self) -> Option<PendingApproval> {
        broker!(ref self, p => p.pending_approval()).flatten()
    }

    fn take_delivery(&mut self, body: &[u8]) -> Result<Obtained, DeliveryRefused> {
        broker!(mut self, p => p.take_delivery(body)).unwrap_or(Err(DeliveryRefused::NotSupported))
    }

    fn approval_settled(&mut self) {
        self.upstox.approval_settled();
    }

    fn rearm(&mut self) {
        self.kite.rearm();
        self.dhan.rearm();
        self.fyers.rearm();
        self.upstox.rearm();
        self.angelone.rearm();
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        self.kind = cfg.provider;
        self.kite.reconfigure(cfg);
        self.command.reconfigure(cfg);
        self.dhan.reconfigure(cfg);
        self.fyers.reconfigure(cfg);
        self.upstox.reconfigure(cfg);
        self.angelone.reconfigure(cfg);
    }
}
