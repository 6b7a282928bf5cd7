//! Zerodha Kite Connect as a [`Provider`]: validation by `GET /user/profile`, the automated
//! login (password + TOTP through the broker's web login, reusing its web session when it
//! still lives), the manual login's redirect, and `POST /session/token` as the exchange.
//!
//! The HTTP work is behind [`Broker`] (the real client, or an in-memory Kite in simulations);
//! this module maps it onto the provider shape and Kite's errors onto [`Failure`].

use crate::config::{KiteConfig, LoginMode, Secret, TokenConfig};
use crate::token::broker::{Broker, KiteBroker};
use crate::token::kite::{BrokerError, ErrorClass, KiteClient};

use super::{Failure, Grant, Identity, LoginKind, Obtained, Provider, ProviderError, SessionProbe};

impl ProviderError for BrokerError {
    fn failure(&self) -> Failure {
        match (self, self.class()) {
            (BrokerError::Config(_), _) => Failure::Config,
            (_, ErrorClass::TokenBad) => Failure::TokenBad,
            (_, ErrorClass::Credential) => Failure::Credential,
            (_, ErrorClass::Transient) => Failure::Transient,
        }
    }
}

/// `[token.kite]` over a [`Broker`].
pub struct KiteProvider<B: Broker = KiteBroker> {
    broker: B,
    cfg: Option<KiteConfig>,
}

impl<B: Broker> KiteProvider<B> {
    pub fn new(broker: B, cfg: Option<KiteConfig>) -> KiteProvider<B> {
        KiteProvider { broker, cfg }
    }
}

impl<B: Broker> Provider for KiteProvider<B> {
    type Error = BrokerError;

    fn name(&self) -> &'static str {
        "kite"
    }

    fn login_kind(&self) -> LoginKind {
        match &self.cfg {
            Some(k) if k.login == LoginMode::Manual => LoginKind::Manual,
            // Without `[token.kite]` the login fails with a config error, as a TOTP login.
            _ => LoginKind::Totp,
        }
    }

    fn expected_user(&self) -> &str {
        self.cfg.as_ref().map_or("", |k| k.user_id.as_str())
    }

    fn credentials(&self) -> Vec<&str> {
        match &self.cfg {
            Some(k) => vec![
                "kite",
                &k.user_id,
                k.password.expose(),
                k.totp_secret.expose(),
            ],
            None => vec!["none"],
        }
    }

    fn can_validate(&self) -> bool {
        self.broker.configured()
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, BrokerError> {
        let profile = self.broker.profile(token).await?;
        Ok(Identity {
            user_id: profile.user_id,
            // Kite's tokens are opaque: the daily hint (`expires_at`) applies.
            expires_at: None,
        })
    }

    async fn resume_session(&mut self) -> Result<SessionProbe, BrokerError> {
        self.broker.resume_session().await
    }

    async fn login(
        &mut self,
        step: Option<u64>,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, BrokerError> {
        let request_token = self.broker.login(step.unwrap_or_default(), record).await?;
        Ok(Grant::Code(request_token))
    }

    async fn exchange(&mut self, code: &str) -> Result<Obtained, BrokerError> {
        let session = self.broker.exchange(code).await?;
        Ok(Obtained {
            access_token: session.access_token,
            user_id: session.user_id,
            companions: Default::default(),
        })
    }

    fn login_url(&self, state: Option<&str>) -> Option<String> {
        let cfg = self.cfg.as_ref()?;
        let redirect = state.map(|s| format!("state={s}"));
        Some(KiteClient::new(cfg).login_url(redirect.as_deref()))
    }

    fn callback_code(
        &self,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<String, &'static str> {
        if query.get("status").is_some_and(|s| s != "success") {
            return Err("Kite reports the login did not succeed; try again from /login");
        }
        query
            .get("request_token")
            .filter(|t| !t.is_empty())
            .cloned()
            .ok_or("missing request_token")
    }

    async fn logout(&mut self, token: &Secret) -> Result<(), BrokerError> {
        self.broker.logout(token).await
    }

    fn fresh_code_in(&self) -> Option<std::time::Duration> {
        self.broker.fresh_code_in()
    }

    fn rearm(&mut self) {
        self.broker.rearm();
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        self.broker.reconfigure(cfg.kite.clone());
        self.cfg = cfg.kite.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::kite::Step;

    fn kite(login: LoginMode) -> KiteProvider {
        KiteProvider::new(
            KiteBroker::new(None),
            Some(KiteConfig {
                api_key: "kitefront".into(),
                user_id: "AB1234".into(),
                login,
                ..Default::default()
            }),
        )
    }

    #[test]
    fn login_kind_user_and_credentials_come_from_the_kite_table() {
        assert_eq!(kite(LoginMode::Manual).login_kind(), LoginKind::Manual);
        assert_eq!(kite(LoginMode::Totp).login_kind(), LoginKind::Totp);
        let p = kite(LoginMode::Totp);
        assert_eq!(p.name(), "kite");
        assert_eq!(p.expected_user(), "AB1234");
        assert_eq!(p.credentials()[..2], ["kite", "AB1234"]);
        let none = KiteProvider::new(KiteBroker::new(None), None);
        assert_eq!(none.credentials(), ["none"]);
        assert_eq!(none.login_url(None), None);
    }

    #[test]
    fn the_manual_login_url_carries_the_state_back() {
        let url = kite(LoginMode::Manual).login_url(Some("abc")).unwrap();
        assert!(
            url.contains("/connect/login?v=3&api_key=kitefront"),
            "{url}"
        );
        assert!(url.contains("redirect_params=state%3Dabc"), "{url}");
    }

    #[test]
    fn kite_errors_map_to_one_failure_each() {
        let rejected = |step, status, error_type: &str| BrokerError::Rejected {
            step,
            status,
            error_type: error_type.into(),
            message: String::new(),
        };
        let cases = [
            (
                rejected(Step::Profile, 403, "TokenException"),
                Failure::TokenBad,
            ),
            (
                rejected(Step::Twofa, 403, "TokenException"),
                Failure::Credential,
            ),
            (
                rejected(Step::Login, 400, "InputException"),
                Failure::Credential,
            ),
            (
                rejected(Step::Exchange, 503, "NetworkException"),
                Failure::Transient,
            ),
            (
                BrokerError::Config("bad TOTP secret".into()),
                Failure::Config,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.failure(), want, "{e}");
        }
    }
}
