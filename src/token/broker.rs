//! What the token keeper needs from a broker, as a trait: the real Kite Connect client and
//! TOTP login in production, an in-memory model in simulations.

use std::future::Future;
use std::time::Duration;

use super::kite::{BrokerError, KiteClient, Profile, Session};
pub use super::login::SessionProbe;
use super::login::TotpLogin;
use crate::config::{KiteConfig, Secret};

pub trait Broker: Send + 'static {
    /// Whether a broker is configured at all (a command provider may run without one; then
    /// tokens cannot be validated and are taken as they come).
    fn configured(&self) -> bool;
    /// Ask the broker's login entry (`/connect/login`) with the web session of the last
    /// automated login, submitting no credentials: a request token when the session is still
    /// good, and the broker's clock either way. Brokers without web sessions answer nothing.
    fn resume_session(&mut self) -> impl Future<Output = Result<SessionProbe, BrokerError>> + Send {
        async { Ok(SessionProbe::default()) }
    }
    /// One automated login (password + the TOTP code of step `step`) → a request token.
    /// `record` must run right before the code is sent (it persists that the step is used;
    /// `false`: send nothing). Never retries itself.
    fn login(
        &mut self,
        step: u64,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> impl Future<Output = Result<Secret, BrokerError>> + Send;
    /// `Some(wait)` while the current TOTP code was already submitted.
    fn fresh_code_in(&self) -> Option<Duration>;
    /// A person asked for a new attempt after a credential rejection.
    fn rearm(&mut self);
    fn exchange(
        &mut self,
        request_token: &str,
    ) -> impl Future<Output = Result<Session, BrokerError>> + Send;
    fn profile(
        &mut self,
        token: &Secret,
    ) -> impl Future<Output = Result<Profile, BrokerError>> + Send;
    fn logout(&mut self, token: &Secret) -> impl Future<Output = Result<(), BrokerError>> + Send;
    /// New `[token.kite]` settings after a config reload.
    fn reconfigure(&mut self, cfg: Option<KiteConfig>);
}

/// Kite Connect over HTTPS. The client and the TOTP login are built on first use: the TLS
/// stack and its root store cost about a megabyte of RSS.
pub struct KiteBroker {
    cfg: Option<KiteConfig>,
    client: Option<KiteClient>,
    totp: Option<TotpLogin>,
    /// After the login settings change, a fresh `TotpLogin` does not know which codes the old
    /// one submitted: it waits one TOTP step before its first attempt.
    not_before: Option<tokio::time::Instant>,
}

impl KiteBroker {
    pub fn new(cfg: Option<KiteConfig>) -> KiteBroker {
        KiteBroker {
            cfg,
            client: None,
            totp: None,
            not_before: None,
        }
    }

    fn client(&mut self) -> Result<&KiteClient, BrokerError> {
        let cfg = self
            .cfg
            .as_ref()
            .ok_or_else(|| BrokerError::Config("[token.kite] is missing".into()))?;
        Ok(self.client.get_or_insert_with(|| KiteClient::new(cfg)))
    }

    fn totp(&mut self) -> Result<&mut TotpLogin, BrokerError> {
        if self.totp.is_none() {
            let cfg = self
                .cfg
                .as_ref()
                .ok_or_else(|| BrokerError::Config("[token.kite] is missing".into()))?;
            self.totp = Some(TotpLogin::new(cfg)?);
        }
        Ok(self.totp.as_mut().expect("just set"))
    }
}

impl Broker for KiteBroker {
    fn configured(&self) -> bool {
        self.cfg.is_some()
    }

    async fn resume_session(&mut self) -> Result<SessionProbe, BrokerError> {
        self.totp()?.resume_session().await
    }

    async fn login(
        &mut self,
        step: u64,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Secret, BrokerError> {
        self.totp()?.login_at(step, record).await
    }

    fn fresh_code_in(&self) -> Option<Duration> {
        let pending = self
            .not_before
            .and_then(|t| t.checked_duration_since(tokio::time::Instant::now()));
        pending.or_else(|| self.totp.as_ref().and_then(TotpLogin::fresh_code_in))
    }

    fn rearm(&mut self) {
        if let Some(t) = self.totp.as_mut() {
            t.rearm();
        }
    }

    async fn exchange(&mut self, request_token: &str) -> Result<Session, BrokerError> {
        let secret = self
            .cfg
            .as_ref()
            .map(|c| c.api_secret.clone())
            .unwrap_or_default();
        self.client()?.exchange(request_token, &secret).await
    }

    async fn profile(&mut self, token: &Secret) -> Result<Profile, BrokerError> {
        self.client()?.profile(token).await
    }

    async fn logout(&mut self, token: &Secret) -> Result<(), BrokerError> {
        self.client()?.logout(token).await
    }

    fn reconfigure(&mut self, cfg: Option<KiteConfig>) {
        if cfg != self.cfg {
            self.client = None;
            if self.totp.take().is_some() {
                self.not_before = Some(tokio::time::Instant::now() + Duration::from_secs(31));
            }
            self.cfg = cfg;
        }
    }
}
