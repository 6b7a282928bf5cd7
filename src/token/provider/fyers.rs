//! Fyers API v3 as a [`Provider`] (SPEC §9.2): a person logs in (`manual`, the only mode:
//! Fyers documents no automated login), warden redeems the auth code for an access token and
//! a 15-day refresh token; with `pin` set, the refresh token renews the daily token without a
//! person until it lapses or Fyers switches the refresh API off.
//!
//! The refresh token lives in token.json (the keeper's state file, 0600) and comes back
//! through [`Provider::remember`]; it is never written to the env file. Once Fyers says it
//! cannot be used (lapsed, invalid, the API disabled), it is dropped, so the keeper asks a
//! person instead of asking Fyers again at every validation.

mod client;
mod error;

pub use super::jwt::expires_at as jwt_expires_at;
pub use client::{app_id_hash, FyersClient};
pub use error::{FyersError, Step};

use crate::config::{FyersConfig, Secret, TokenConfig};

use super::{Companions, Grant, Identity, LoginKind, Obtained, Provider};

/// `[token.fyers]` and the refresh token of the last login.
pub struct FyersProvider {
    cfg: Option<FyersConfig>,
    client: Option<FyersClient>,
    refresh_token: Option<Secret>,
}

impl FyersProvider {
    pub fn new(cfg: Option<FyersConfig>) -> FyersProvider {
        let client = cfg.as_ref().map(FyersClient::new);
        FyersProvider {
            cfg,
            client,
            refresh_token: None,
        }
    }

    fn client(&self) -> Result<&FyersClient, FyersError> {
        self.client
            .as_ref()
            .ok_or_else(|| FyersError::Config("provider = \"fyers\" needs [token.fyers]".into()))
    }

    /// The PIN, when the refresh-token path is enabled.
    fn pin(&self) -> Option<&Secret> {
        self.cfg.as_ref().map(|c| &c.pin).filter(|p| !p.is_empty())
    }
}

impl Provider for FyersProvider {
    type Error = FyersError;

    fn name(&self) -> &'static str {
        "fyers"
    }

    fn login_kind(&self) -> LoginKind {
        LoginKind::Manual
    }

    fn expected_user(&self) -> &str {
        self.cfg.as_ref().map_or("", |c| c.user_id.as_str())
    }

    /// What the refresh endpoint submits: a wrong PIN blocks these, and a new PIN (or app)
    /// is a new fingerprint.
    fn credentials(&self) -> Vec<&str> {
        match &self.cfg {
            Some(c) => vec![
                "fyers",
                &c.client_id,
                &c.user_id,
                c.secret_key.expose(),
                c.pin.expose(),
            ],
            None => vec!["none"],
        }
    }

    fn can_validate(&self) -> bool {
        self.client.is_some()
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, FyersError> {
        let user_id = self.client()?.profile(token).await?;
        Ok(Identity {
            user_id,
            expires_at: super::jwt::expires_at(token.expose()),
        })
    }

    async fn login(
        &mut self,
        _step: Option<u64>,
        _record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, FyersError> {
        Err(FyersError::NoAutomatedLogin)
    }

    /// The auth code from the callback → tokens, then the profile: the session's user is
    /// what Fyers says it is, not what the token's claims say.
    async fn exchange(&mut self, code: &str) -> Result<Obtained, FyersError> {
        let client = self.client()?;
        let tokens = client.exchange(code).await?;
        let user_id = client.profile(&tokens.access_token).await?;
        Ok(Obtained {
            access_token: tokens.access_token,
            user_id,
            companions: Companions {
                env: Vec::new(),
                refresh_token: tokens.refresh_token,
            },
        })
    }

    fn can_refresh(&self) -> bool {
        self.pin().is_some() && self.refresh_token.is_some() && self.client.is_some()
    }

    async fn refresh(&mut self) -> Option<Result<Obtained, FyersError>> {
        let pin = self.pin()?.clone();
        let refresh_token = self.refresh_token.clone()?;
        let client = self.client.as_ref()?;
        match client.refresh(&refresh_token, &pin).await {
            Ok(access_token) => Some(Ok(Obtained {
                access_token,
                // The keeper validates it and takes the user from the profile.
                user_id: String::new(),
                companions: Companions {
                    env: Vec::new(),
                    // Fyers sends no new one: the same refresh token lives on (15 days
                    // from the login).
                    refresh_token: Some(refresh_token),
                },
            })),
            Err(e) => {
                if e.failure_class() == super::Failure::TokenBad {
                    // Lapsed, invalid or switched off: a person logs in, which brings a new
                    // one. Asking again at every validation would only repeat the answer.
                    self.refresh_token = None;
                }
                Some(Err(e))
            }
        }
    }

    fn login_url(&self, state: Option<&str>) -> Option<String> {
        let cfg = self.cfg.as_ref()?;
        Some(self.client.as_ref()?.login_url(&cfg.redirect_uri, state))
    }

    fn callback_code(
        &self,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<String, &'static str> {
        if query.get("s").is_some_and(|s| s != "ok") {
            return Err("Fyers reports the login did not succeed; try again from /login");
        }
        query
            .get("auth_code")
            .filter(|c| !c.is_empty())
            .cloned()
            .ok_or("missing auth_code")
    }

    async fn logout(&mut self, token: &Secret) -> Result<(), FyersError> {
        self.client()?.logout(token).await
    }

    fn remember(&mut self, companions: &Companions) {
        // A token that came without one (adopted from the env file) leaves the kept one: the
        // refresh token belongs to the login, not to one access token.
        if let Some(r) = &companions.refresh_token {
            self.refresh_token = Some(r.clone());
        }
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        let same_app = match (&self.cfg, &cfg.fyers) {
            (Some(old), Some(new)) => old.client_id == new.client_id && old.user_id == new.user_id,
            _ => false,
        };
        if !same_app {
            // A refresh token belongs to one app and user.
            self.refresh_token = None;
        }
        self.client = cfg.fyers.as_ref().map(FyersClient::new);
        self.cfg = cfg.fyers.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::provider::{Failure, ProviderError};
    use std::collections::HashMap;

    fn cfg(pin: &str) -> FyersConfig {
        FyersConfig {
            client_id: "APP1-100".into(),
            secret_key: Secret::new("s3cret"),
            user_id: "XF01234".into(),
            pin: Secret::new(pin),
            api_base: "http://127.0.0.1:9/api/v3".into(),
            redirect_uri: "http://127.0.0.1:9180/fyers/callback".into(),
            ..Default::default()
        }
    }

    fn with_refresh(p: &mut FyersProvider) {
        p.remember(&Companions {
            env: Vec::new(),
            refresh_token: Some(Secret::new("rt")),
        });
    }

    #[test]
    fn manual_login_user_and_credentials_come_from_the_table() {
        let p = FyersProvider::new(Some(cfg("1234")));
        assert_eq!(p.name(), "fyers");
        assert_eq!(p.login_kind(), LoginKind::Manual);
        assert_eq!(p.expected_user(), "XF01234");
        assert_eq!(p.credentials()[..3], ["fyers", "APP1-100", "XF01234"]);
        let url = p.login_url(Some("st8")).unwrap();
        assert!(url.starts_with("http://127.0.0.1:9/api/v3/generate-authcode?client_id=APP1-100&redirect_uri=http%3A%2F%2F127.0.0.1%3A9180%2Ffyers%2Fcallback&response_type=code"), "{url}");
        assert!(url.ends_with("&state=st8"), "{url}");
        let none = FyersProvider::new(None);
        assert_eq!(none.credentials(), ["none"]);
        assert_eq!(none.login_url(None), None);
        assert!(!none.can_validate());
    }

    #[test]
    fn the_callback_code_is_auth_code_not_code() {
        let p = FyersProvider::new(Some(cfg("")));
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            p.callback_code(&q(&[
                ("s", "ok"),
                ("code", "200"),
                ("auth_code", "AC"),
                ("state", "x")
            ])),
            Ok("AC".into())
        );
        assert!(p
            .callback_code(&q(&[("s", "ok"), ("code", "200")]))
            .is_err());
        assert!(p
            .callback_code(&q(&[("s", "error"), ("auth_code", "AC")]))
            .is_err());
    }

    #[test]
    fn the_refresh_path_needs_a_pin_and_a_refresh_token() {
        let mut without_pin = FyersProvider::new(Some(cfg("")));
        with_refresh(&mut without_pin);
        assert!(!without_pin.can_refresh());
        let mut p = FyersProvider::new(Some(cfg("1234")));
        assert!(!p.can_refresh(), "no login yet");
        // A token adopted without companions keeps nothing new, and loses nothing.
        p.remember(&Companions::default());
        assert!(!p.can_refresh());
        with_refresh(&mut p);
        assert!(p.can_refresh());
        p.remember(&Companions::default());
        assert!(p.can_refresh());
        // A new PIN keeps it; another app or user drops it.
        let mut t = TokenConfig {
            fyers: Some(cfg("5678")),
            ..Default::default()
        };
        p.reconfigure(&t);
        assert!(p.can_refresh());
        t.fyers.as_mut().unwrap().client_id = "APP2-100".into();
        p.reconfigure(&t);
        assert!(!p.can_refresh());
    }

    #[tokio::test]
    async fn an_unreachable_refresh_endpoint_keeps_the_refresh_token() {
        // Port 9 (discard) on loopback: refused.
        let mut p = FyersProvider::new(Some(cfg("1234")));
        with_refresh(&mut p);
        let e = p.refresh().await.unwrap().unwrap_err();
        assert_eq!(e.failure(), Failure::Transient, "{e}");
        assert!(p.can_refresh());
        assert!(!e.to_string().contains("1234") && !e.to_string().contains("s3cret"));
    }

    #[tokio::test]
    async fn there_is_no_automated_login() {
        let mut p = FyersProvider::new(Some(cfg("1234")));
        let e = p.login(None, &mut || true).await.unwrap_err();
        assert_eq!(e.failure(), Failure::Config);
    }
}
