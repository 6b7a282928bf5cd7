//! Angel One SmartAPI as a [`Provider`] (SPEC §9.2, brokers/angelone.md):
//!
//! - `totp` mode: the official `loginByPassword` (client code + PIN + one TOTP code) answers
//!   the JWT, a refresh token and the feed token in one go ([`Grant::Token`]);
//! - while a refresh token is known, [`Provider::refresh`] calls `generateTokens` first (no
//!   credentials, not a login attempt); a dead refresh token means "log in instead";
//! - `manual` mode: the publisher login sends the browser back to
//!   `{public_url}/angelone/callback` with the JWT itself (`auth_token`) and the feed token,
//!   so [`Provider::callback_code`] packs those and [`Provider::exchange`] unpacks them and
//!   validates the JWT before anything is kept;
//! - validation by `getProfile`, whose HTTP 200 can still mean "dead token" (`AG8001`): the
//!   body's error code decides ([`error`]); `expires_at` is the JWT's `exp`.
//!
//! The JWT goes under `env_key` (raw, no `Bearer `), the feed token beside it under
//! `feed_env_key`, the refresh token only into token.json.

mod client;
mod error;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

pub use client::{AngelClient, Profile, Session};
pub use error::{AngelError, Call};
pub use wire::jwt_exp;

use crate::config::{AngelOneConfig, LoginMode, Secret, TokenConfig};
use crate::token::login::{unix_now, Totp};
use crate::token::Companions;

use super::{Failure, Grant, Identity, LoginKind, Obtained, Provider, ProviderError, SessionProbe};

/// How many submitted TOTP codes to remember (a few minutes' worth is plenty).
const REMEMBERED_CODES: usize = 16;

/// What `callback_code` packs from the publisher login's redirect. It is a token, not a
/// one-time code: it is handled as a secret and never logged.
#[derive(serde::Serialize, serde::Deserialize)]
struct CallbackTokens {
    auth_token: String,
    #[serde(default)]
    feed_token: String,
}

/// `[token.angelone]` and what the provider remembers between calls.
#[derive(Default)]
pub struct AngelOneProvider {
    cfg: Option<AngelOneConfig>,
    client: Option<AngelClient>,
    /// TOTP codes already submitted (accepted, refused or lost), newest last: none is ever
    /// sent twice, whatever the keeper asks.
    submitted: VecDeque<String>,
    /// Set by a credential rejection; only [`Provider::rearm`] or new settings clear it.
    disabled: Option<String>,
    /// The newest refresh token (from a login, a refresh, or token.json through `remember`).
    refresh_token: Option<Secret>,
    /// The newest JWT seen working: `generateTokens` sends it along.
    last_jwt: Option<Secret>,
    /// The client code a manual login's JWT belongs to, so that a session of another user
    /// is logged out under its own client code.
    callback_user: Option<(Secret, String)>,
}

impl std::fmt::Debug for AngelOneProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AngelOneProvider")
            .field("cfg", &self.cfg)
            .field("disabled", &self.disabled)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

impl AngelOneProvider {
    pub fn new(cfg: Option<AngelOneConfig>) -> AngelOneProvider {
        AngelOneProvider {
            cfg,
            ..Default::default()
        }
    }

    fn cfg(&self) -> Result<&AngelOneConfig, AngelError> {
        self.cfg
            .as_ref()
            .ok_or_else(|| AngelError::Config("[token.angelone] is missing".into()))
    }

    fn client(&mut self) -> Result<&AngelClient, AngelError> {
        let cfg = self
            .cfg
            .as_ref()
            .ok_or_else(|| AngelError::Config("[token.angelone] is missing".into()))?;
        Ok(self.client.get_or_insert_with(|| AngelClient::new(cfg)))
    }

    /// The client code as configured when Angel One names the same one in another case.
    fn user_of(&self, profile: Profile) -> String {
        match &self.cfg {
            Some(c) if profile.clientcode.eq_ignore_ascii_case(&c.client_code) => {
                c.client_code.clone()
            }
            _ => profile.clientcode,
        }
    }

    /// The feed token under `feed_env_key`, and the refresh token, of a login or refresh.
    fn companions(&self, session: &Session) -> Companions {
        let key = self
            .cfg
            .as_ref()
            .map(|c| c.feed_env_key.clone())
            .unwrap_or_else(|| "ANGELONE_FEED_TOKEN".into());
        Companions {
            env: feed_companion(key, &session.feed_token),
            refresh_token: (!session.refresh_token.is_empty())
                .then(|| session.refresh_token.clone()),
        }
    }

    fn remember_code(&mut self, code: String) {
        if self.submitted.len() == REMEMBERED_CODES {
            self.submitted.pop_front();
        }
        self.submitted.push_back(code);
    }

    /// After a login or a refresh: the tokens the next refresh needs.
    fn keep(&mut self, session: &Session) {
        if !session.refresh_token.is_empty() {
            self.refresh_token = Some(session.refresh_token.clone());
        }
        self.last_jwt = Some(session.jwt.clone());
    }
}

/// The feed token's env entry; none when the broker sent none (a stale value is better left
/// to the program than replaced by nothing).
fn feed_companion(key: String, feed: &Secret) -> Vec<(String, Secret)> {
    if feed.is_empty() {
        Vec::new()
    } else {
        vec![(key, feed.clone())]
    }
}

fn seconds_left_in_step() -> Duration {
    Duration::from_secs(Totp::STEP_SECS - unix_now() % Totp::STEP_SECS)
}

impl Provider for AngelOneProvider {
    type Error = AngelError;

    fn name(&self) -> &'static str {
        "angelone"
    }

    fn login_kind(&self) -> LoginKind {
        match &self.cfg {
            Some(c) if c.login == LoginMode::Manual => LoginKind::Manual,
            // Without `[token.angelone]` the login fails with a config error, as a TOTP login.
            _ => LoginKind::Totp,
        }
    }

    fn expected_user(&self) -> &str {
        self.cfg.as_ref().map_or("", |c| c.client_code.as_str())
    }

    fn credentials(&self) -> Vec<&str> {
        match &self.cfg {
            Some(c) => vec![
                "angelone",
                &c.client_code,
                c.pin.expose(),
                c.totp_secret.expose(),
            ],
            None => vec!["none"],
        }
    }

    fn can_validate(&self) -> bool {
        self.cfg.is_some()
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, AngelError> {
        let profile = self.client()?.profile(token).await?;
        self.last_jwt = Some(token.clone());
        Ok(Identity {
            user_id: self.user_of(profile),
            expires_at: jwt_exp(token.expose()),
        })
    }

    /// No web session to reuse: only the broker's clock, read before a TOTP code is sent.
    async fn resume_session(&mut self) -> Result<SessionProbe, AngelError> {
        let clock = self.client()?.clock().await?;
        Ok(SessionProbe {
            request_token: None,
            clock,
        })
    }

    async fn login(
        &mut self,
        step: Option<u64>,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, AngelError> {
        if let Some(reason) = &self.disabled {
            return Err(AngelError::LoginDisabled {
                reason: reason.clone(),
            });
        }
        let cfg = self.cfg()?;
        let missing = [
            ("api_key", cfg.api_key.is_empty()),
            ("client_code", cfg.client_code.is_empty()),
            ("pin", cfg.pin.is_empty()),
            ("totp_secret", cfg.totp_secret.is_empty()),
        ];
        if let Some((name, _)) = missing.iter().find(|(_, empty)| *empty) {
            return Err(AngelError::Config(format!(
                "token.angelone.{name} is required for login = \"totp\""
            )));
        }
        let totp = Totp::from_base32(cfg.totp_secret.expose())
            .map_err(|e| AngelError::Config(format!("token.angelone.totp_secret: {e}")))?;
        let (client_code, pin) = (cfg.client_code.clone(), cfg.pin.clone());
        let step = step.unwrap_or_else(|| Totp::step_of(unix_now()));
        let code = totp.code_of_step(step);
        if self.submitted.contains(&code) {
            return Err(AngelError::TotpCodeUsed {
                retry_in: seconds_left_in_step(),
            });
        }
        // Remembered before it is sent: a lost answer must not lead to a second submission.
        self.remember_code(code.clone());
        if !record() {
            return Err(AngelError::StepNotRecorded);
        }
        let result = self.client()?.login(&client_code, &pin, &code).await;
        let session = match result {
            Ok(s) => s,
            Err(e) => {
                if e.failure() == Failure::Credential {
                    self.disabled = Some(e.to_string());
                }
                return Err(e);
            }
        };
        self.keep(&session);
        Ok(Grant::Token(Obtained {
            access_token: session.jwt.clone(),
            // Validation reads it from getProfile.
            user_id: String::new(),
            companions: self.companions(&session),
        }))
    }

    /// A manual login's callback tokens (packed by [`Provider::callback_code`]): the JWT is
    /// validated through getProfile before anything is kept.
    async fn exchange(&mut self, code: &str) -> Result<Obtained, AngelError> {
        let tokens: CallbackTokens =
            serde_json::from_str(code).map_err(|_| AngelError::BadCallbackCode)?;
        let jwt = Secret::new(wire::raw_token(&tokens.auth_token));
        if jwt.is_empty() {
            return Err(AngelError::BadCallbackCode);
        }
        let profile = self.client()?.profile(&jwt).await?;
        let user_id = self.user_of(profile);
        self.callback_user = Some((jwt.clone(), user_id.clone()));
        let feed_key = self.cfg()?.feed_env_key.clone();
        Ok(Obtained {
            access_token: jwt,
            user_id,
            companions: Companions {
                env: feed_companion(feed_key, &Secret::new(tokens.feed_token.trim())),
                // The publisher login documents no refresh token.
                refresh_token: None,
            },
        })
    }

    fn can_refresh(&self) -> bool {
        self.cfg.is_some() && self.refresh_token.is_some()
    }

    async fn refresh(&mut self) -> Option<Result<Obtained, AngelError>> {
        let refresh_token = self.refresh_token.clone()?;
        let jwt = self.last_jwt.clone();
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        match client.generate_tokens(&refresh_token, jwt.as_ref()).await {
            Ok(session) => {
                self.keep(&session);
                Some(Ok(Obtained {
                    access_token: session.jwt.clone(),
                    user_id: String::new(),
                    companions: self.companions(&session),
                }))
            }
            Err(e) => {
                if e.failure() == Failure::TokenBad {
                    // Lapsed or revoked: the keeper logs in instead, and it is not tried again.
                    self.refresh_token = None;
                }
                Some(Err(e))
            }
        }
    }

    fn login_url(&self, state: Option<&str>) -> Option<String> {
        let cfg = self.cfg.as_ref()?;
        Some(AngelClient::new(cfg).publisher_login_url(state))
    }

    fn callback_code(&self, query: &HashMap<String, String>) -> Result<String, &'static str> {
        let auth_token = query
            .get("auth_token")
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or(
                "missing auth_token: Angel One did not complete the login; try again from /login",
            )?;
        let tokens = CallbackTokens {
            auth_token: auth_token.to_string(),
            feed_token: query.get("feed_token").cloned().unwrap_or_default(),
        };
        serde_json::to_string(&tokens).map_err(|_| "the callback's tokens cannot be read")
    }

    async fn logout(&mut self, token: &Secret) -> Result<(), AngelError> {
        let client_code = match &self.callback_user {
            Some((jwt, user)) if jwt == token => user.clone(),
            _ => self.cfg()?.client_code.clone(),
        };
        self.client()?.logout(&client_code, token).await
    }

    fn fresh_code_in(&self) -> Option<Duration> {
        let cfg = self.cfg.as_ref()?;
        let totp = Totp::from_base32(cfg.totp_secret.expose()).ok()?;
        self.submitted
            .contains(&totp.current())
            .then(seconds_left_in_step)
    }

    fn remember(&mut self, companions: &Companions) {
        if let Some(r) = &companions.refresh_token {
            self.refresh_token = Some(r.clone());
        }
    }

    fn rearm(&mut self) {
        self.disabled = None;
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        let new = cfg.angelone.clone();
        if new == self.cfg {
            return;
        }
        let same_account = |a: &AngelOneConfig, b: &AngelOneConfig| {
            (&a.api_key, &a.client_code, &a.api_base) == (&b.api_key, &b.client_code, &b.api_base)
        };
        let kept = match (&self.cfg, &new) {
            (Some(old), Some(new)) => same_account(old, new),
            _ => false,
        };
        if !kept {
            self.refresh_token = None;
            self.last_jwt = None;
        }
        // New settings get their chance; the memory of submitted codes stays.
        self.disabled = None;
        self.client = None;
        self.cfg = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "JBSWY3DPEHPK3PXP";

    fn angel(login: LoginMode) -> AngelOneProvider {
        AngelOneProvider::new(Some(AngelOneConfig {
            api_key: "angelsbx".into(),
            client_code: "S123456".into(),
            login,
            pin: Secret::new("1357"),
            totp_secret: Secret::new(SECRET),
            // Nothing listens here: a test that reached the network would fail.
            api_base: "http://127.0.0.1:9".into(),
            login_base: "https://smartapi.example".into(),
            ..Default::default()
        }))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn kind_user_credentials_and_login_url_come_from_the_table() {
        let p = angel(LoginMode::Totp);
        assert_eq!(p.name(), "angelone");
        assert_eq!(p.login_kind(), LoginKind::Totp);
        assert_eq!(angel(LoginMode::Manual).login_kind(), LoginKind::Manual);
        assert_eq!(p.expected_user(), "S123456");
        assert_eq!(p.credentials(), ["angelone", "S123456", "1357", SECRET]);
        assert_eq!(
            p.login_url(Some("n0nce")).unwrap(),
            "https://smartapi.example/publisher-login?api_key=angelsbx&state=n0nce"
        );
        let none = AngelOneProvider::new(None);
        assert_eq!(none.credentials(), ["none"]);
        assert_eq!(none.login_url(None), None);
        assert!(!none.can_validate());
        assert!(format!("{p:?}").contains("S123456"));
        assert!(!format!("{p:?}").contains("1357"));
    }

    #[test]
    fn the_callback_packs_both_tokens_and_needs_the_jwt() {
        let p = angel(LoginMode::Manual);
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let code = p
            .callback_code(&q(&[
                ("auth_token", "eyJ.a.b"),
                ("feed_token", "f1"),
                ("state", "s"),
            ]))
            .unwrap();
        let back: CallbackTokens = serde_json::from_str(&code).unwrap();
        assert_eq!(
            (back.auth_token.as_str(), back.feed_token.as_str()),
            ("eyJ.a.b", "f1")
        );
        assert!(p.callback_code(&q(&[("feed_token", "f1")])).is_err());
        assert!(p.callback_code(&q(&[("auth_token", " ")])).is_err());
        // A code that is not what callback_code packs is refused before any request.
        let mut p = p;
        let e = block_on(p.exchange("request-token-of-another-broker")).unwrap_err();
        assert!(matches!(e, AngelError::BadCallbackCode), "{e}");
    }

    #[test]
    fn a_code_is_sent_at_most_once_and_only_after_it_is_recorded() {
        let mut p = angel(LoginMode::Totp);
        let step = Totp::step_of(unix_now()) + 100;
        // `record` refuses: nothing is sent, and the code is spent all the same.
        let e = block_on(p.login(Some(step), &mut || false)).unwrap_err();
        assert!(matches!(e, AngelError::StepNotRecorded), "{e}");
        let mut recorded = 0;
        let e = block_on(p.login(Some(step), &mut || {
            recorded += 1;
            true
        }))
        .unwrap_err();
        assert!(matches!(e, AngelError::TotpCodeUsed { .. }), "{e}");
        assert_eq!(recorded, 0, "a used code is refused before it is recorded");
        // The next step's code is sent (to a closed port here: a transient failure).
        let e = block_on(p.login(Some(step + 1), &mut || true)).unwrap_err();
        assert_eq!(e.failure(), Failure::Transient, "{e}");
        assert!(p.disabled.is_none());
    }

    #[test]
    fn a_credential_rejection_disables_logins_until_rearmed() {
        let mut p = angel(LoginMode::Totp);
        p.disabled = Some("AB1007".into());
        let e = block_on(p.login(None, &mut || panic!("nothing may be recorded"))).unwrap_err();
        assert_eq!(e.failure(), Failure::Credential);
        p.rearm();
        assert!(p.disabled.is_none());
    }

    #[test]
    fn the_refresh_token_is_remembered_and_forgotten_with_the_account() {
        let mut p = angel(LoginMode::Totp);
        assert!(!p.can_refresh());
        assert!(block_on(p.refresh()).is_none(), "no refresh token: log in");
        p.remember(&Companions {
            env: Vec::new(),
            refresh_token: Some(Secret::new("r1")),
        });
        assert!(p.can_refresh());
        // A manual login brings none: the known one stays.
        p.remember(&Companions::default());
        assert!(p.can_refresh());
        let mut cfg = TokenConfig {
            angelone: p.cfg.clone(),
            ..Default::default()
        };
        cfg.angelone.as_mut().unwrap().login_base = "https://elsewhere.example".into();
        p.reconfigure(&cfg);
        assert!(p.can_refresh(), "same account, other page");
        cfg.angelone.as_mut().unwrap().client_code = "S999999".into();
        p.reconfigure(&cfg);
        assert!(
            !p.can_refresh(),
            "another client's refresh token is not ours"
        );
    }

    #[test]
    fn a_missing_table_is_a_config_failure() {
        let mut p = AngelOneProvider::new(None);
        let e = block_on(p.login(Some(1), &mut || true)).unwrap_err();
        assert_eq!(e.failure(), Failure::Config);
        assert_eq!(p.login_kind(), LoginKind::Totp);
        let mut bad = angel(LoginMode::Totp);
        bad.cfg.as_mut().unwrap().totp_secret = Secret::new("not base32 !");
        let e = block_on(bad.login(Some(1), &mut || true)).unwrap_err();
        assert_eq!(e.failure(), Failure::Config);
        assert!(!e.to_string().contains("not base32 !"), "{e}");
    }
}
