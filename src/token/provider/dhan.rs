//! DhanHQ v2 as a [`Provider`] (SPEC §9.2, brokers/dhan.md).
//!
//! - `totp`: the official `generateAccessToken` (client id + PIN + TOTP code) answers with the
//!   token itself. Dhan keeps one live token per client and mints at most one every 2 minutes,
//!   so this provider never mints while the token it knows still validates, and never sooner
//!   than 2 minutes after the last mint it knows of ([`Provider::fresh_code_in`] makes the
//!   keeper wait instead). The last mint is its own submission, or the `iat` of any token of
//!   this client it has seen, which is how a restarted warden knows it: the keeper validates
//!   the stored token at start.
//! - `manual`: the consent flow. `/login` asks Dhan for a consent (`generate-consent`) and
//!   sends the browser to its login page; Dhan sends the browser back to `/dhan/callback` with
//!   a `tokenId` and no `state`, so a `tokenId` is taken only while a consent this provider
//!   started is pending; `consumeApp-consent` turns it into the token.
//! - validation: `GET {api_base}/profile` (DH-901/DH-906: a bad token); the keeper compares
//!   the profile's dhanClientId with `client_id`. `expires_at` is the JWT's `exp`.
//!
//! Dhan has no logout endpoint (brokers/dhan.md §5): [`Provider::logout`] does nothing.

mod client;
mod error;
mod jwt;

use std::time::{Duration, Instant};

pub use client::{DhanClient, Minted, Profile};
pub use error::{DhanError, Step};
pub use jwt::{claims, Claims};

use crate::config::{DhanConfig, LoginMode, Secret, TokenConfig};
use crate::token::login::{unix_now, Totp};

use super::{Failure, Grant, Identity, LoginKind, Obtained, Provider, ProviderError, SessionProbe};

/// "Token can be generated once every 2 minutes."
pub const MINT_SPACING: Duration = Duration::from_secs(120);
/// Added to the 2 minutes: a token's `iat` is the broker's clock, which may be a few seconds
/// off ours (the clock guard allows 15 s; a refused mint only costs a wait, never a strike).
const MINT_MARGIN: Duration = Duration::from_secs(3);
/// How long a consent started by `/login` waits for its callback.
pub const CONSENT_TTL: Duration = Duration::from_secs(15 * 60);

struct PendingConsent {
    /// The consentAppId (what the login page was opened with).
    id: String,
    started: Instant,
}

/// `[token.dhan]`.
pub struct DhanProvider {
    cfg: Option<DhanConfig>,
    client: Option<DhanClient>,
    /// Unix seconds of the latest mint known for this client.
    last_mint: Option<i64>,
    /// The token that last validated for the configured client: a new mint would kill it.
    current: Option<Secret>,
    consent: Option<PendingConsent>,
}

impl DhanProvider {
    pub fn new(cfg: Option<DhanConfig>) -> DhanProvider {
        DhanProvider {
            cfg,
            client: None,
            last_mint: None,
            current: None,
            consent: None,
        }
    }

    fn cfg(&self) -> Result<&DhanConfig, DhanError> {
        self.cfg
            .as_ref()
            .ok_or_else(|| DhanError::Config("[token.dhan] is missing".into()))
    }

    fn client(&mut self) -> Result<&DhanClient, DhanError> {
        let cfg = self
            .cfg
            .as_ref()
            .ok_or_else(|| DhanError::Config("[token.dhan] is missing".into()))?;
        Ok(self.client.get_or_insert_with(|| DhanClient::new(cfg)))
    }

    /// Whether the consent flow can be started (the API key is configured).
    fn has_consent_app(&self) -> bool {
        self.cfg
            .as_ref()
            .is_some_and(|c| !c.app_id.trim().is_empty() && !c.app_secret.is_empty())
    }

    /// A mint happened at `at` (unix seconds): none before `at` + 2 minutes.
    fn note_mint(&mut self, at: i64) {
        self.last_mint = Some(self.last_mint.map_or(at, |t| t.max(at)));
    }

    /// What a token says about when it was minted, if it is this client's.
    fn note_token(&mut self, token: &Secret) {
        let Some(c) = claims(token.expose()) else {
            return;
        };
        let ours = match (&c.client_id, &self.cfg) {
            (Some(id), Some(cfg)) => *id == cfg.client_id,
            _ => true,
        };
        if let (true, Some(iat)) = (ours, c.iat) {
            self.note_mint(iat);
        }
    }

    /// How long until a mint is allowed again, if it is not now.
    fn mint_wait(&self, now: i64) -> Option<Duration> {
        let next = self.last_mint? + (MINT_SPACING + MINT_MARGIN).as_secs() as i64;
        (next > now).then(|| Duration::from_secs((next - now) as u64))
    }

    fn pending_consent(&self) -> Option<&PendingConsent> {
        self.consent
            .as_ref()
            .filter(|c| c.started.elapsed() < CONSENT_TTL)
    }

    /// The token this provider knows, if Dhan still accepts it for the configured client.
    /// `Err` when Dhan could not say (then nothing is minted: it could kill a live token).
    async fn current_still_valid(&mut self) -> Result<Option<Obtained>, DhanError> {
        let Some(token) = self.current.clone() else {
            return Ok(None);
        };
        match self.validate(&token).await {
            Ok(identity) if identity.user_id == self.cfg()?.client_id => Ok(Some(Obtained {
                access_token: token,
                user_id: identity.user_id,
                companions: Default::default(),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.failure() == Failure::TokenBad => {
                self.current = None;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

impl Provider for DhanProvider {
    type Error = DhanError;

    fn name(&self) -> &'static str {
        "dhan"
    }

    fn login_kind(&self) -> LoginKind {
        match &self.cfg {
            Some(c) if c.login == LoginMode::Manual => LoginKind::Manual,
            // Without `[token.dhan]` the login fails with a config error, as a TOTP login.
            _ => LoginKind::Totp,
        }
    }

    fn expected_user(&self) -> &str {
        self.cfg.as_ref().map_or("", |c| c.client_id.as_str())
    }

    fn credentials(&self) -> Vec<&str> {
        match &self.cfg {
            Some(c) => vec!["dhan", &c.client_id, c.pin.expose(), c.totp_secret.expose()],
            None => vec!["none"],
        }
    }

    fn can_validate(&self) -> bool {
        self.cfg.is_some()
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, DhanError> {
        // Whatever Dhan answers, the token says when a mint happened.
        self.note_token(token);
        let profile = self.client()?.profile(token).await?;
        if profile.client_id == self.cfg()?.client_id {
            self.current = Some(token.clone());
        }
        Ok(Identity {
            user_id: profile.client_id,
            expires_at: claims(token.expose()).and_then(|c| c.exp),
        })
    }

    /// No web session to reuse; the broker's clock, for the guard before a TOTP code.
    async fn resume_session(&mut self) -> Result<SessionProbe, DhanError> {
        let clock = self.client()?.probe_clock().await?;
        Ok(SessionProbe {
            request_token: None,
            clock,
        })
    }

    async fn login(
        &mut self,
        step: Option<u64>,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, DhanError> {
        let cfg = self.cfg()?.clone();
        if cfg.login != LoginMode::Totp {
            return Err(DhanError::Config(
                "login = \"manual\": Dhan tokens come from the consent login at /login".into(),
            ));
        }
        // One live token per client: a mint now would kill a token that still works.
        if let Some(current) = self.current_still_valid().await? {
            tracing::info!(
                "the current Dhan token still validates: keeping it (a new one would end it)"
            );
            return Ok(Grant::Token(current));
        }
        if let Some(retry_in) = self.mint_wait(unix_now() as i64) {
            return Err(DhanError::MintTooSoon { retry_in });
        }
        let step = step.ok_or_else(|| DhanError::Config("no TOTP step to use".into()))?;
        let code = Totp::from_base32(cfg.totp_secret.expose())
            .map_err(|_| DhanError::Config("totp_secret is not valid base32".into()))?
            .code_of_step(step);
        if !record() {
            return Err(DhanError::StepNotRecorded);
        }
        // Counted from the moment it is sent: even an unread answer may have minted.
        self.note_mint(unix_now() as i64);
        let minted = self.client()?.mint(&cfg.client_id, &cfg.pin, &code).await?;
        Ok(Grant::Token(Obtained {
            access_token: minted.access_token,
            user_id: minted.client_id,
            companions: Default::default(),
        }))
    }

    /// `code` is the consent's `tokenId`.
    async fn exchange(&mut self, code: &str) -> Result<Obtained, DhanError> {
        if self.pending_consent().is_none() {
            return Err(DhanError::NoConsent);
        }
        let cfg = self.cfg()?.clone();
        let minted = self
            .client()?
            .consume_consent(code, &cfg.app_id, &cfg.app_secret)
            .await?;
        // The consent is spent: a second callback with any tokenId is refused.
        self.consent = None;
        self.note_token(&minted.access_token);
        Ok(Obtained {
            access_token: minted.access_token,
            user_id: minted.client_id,
            companions: Default::default(),
        })
    }

    /// The consent login page (with the pending consent, if any). `None` without an API key:
    /// no manual login then.
    fn login_url(&self, _state: Option<&str>) -> Option<String> {
        if !self.has_consent_app() {
            return None;
        }
        let client = DhanClient::new(self.cfg.as_ref()?);
        Some(match self.pending_consent() {
            Some(c) => client.consent_login_url(&c.id),
            None => client.consent_login_base(),
        })
    }

    /// Dhan's consent cannot carry `state`: the consent started here is what the callback is
    /// matched with.
    async fn start_manual_login(&mut self, _state: &str) -> Result<Option<String>, DhanError> {
        if !self.has_consent_app() {
            return Ok(None);
        }
        let cfg = self.cfg()?.clone();
        let client = self.client()?;
        let id = client
            .generate_consent(&cfg.client_id, &cfg.app_id, &cfg.app_secret)
            .await?;
        let url = client.consent_login_url(&id);
        self.consent = Some(PendingConsent {
            id,
            started: Instant::now(),
        });
        Ok(Some(url))
    }

    fn callback_code(
        &self,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<String, &'static str> {
        if self.pending_consent().is_none() {
            return Err(
                "no Dhan consent started by this warden is pending (or it expired): start the login again from /login",
            );
        }
        query
            .get("tokenId")
            .filter(|t| !t.is_empty())
            .cloned()
            .ok_or("missing tokenId")
    }

    fn callback_carries_state(&self) -> bool {
        false
    }

    async fn logout(&mut self, _token: &Secret) -> Result<(), DhanError> {
        // Dhan has no logout endpoint; a token dies with the next mint or its `exp`.
        Ok(())
    }

    fn fresh_code_in(&self) -> Option<Duration> {
        if self.login_kind() != LoginKind::Totp {
            return None;
        }
        self.mint_wait(unix_now() as i64)
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        if cfg.dhan == self.cfg {
            return;
        }
        let same_client = match (&cfg.dhan, &self.cfg) {
            (Some(new), Some(old)) => new.client_id == old.client_id,
            _ => false,
        };
        if !same_client {
            self.current = None;
            self.consent = None;
        }
        // The last mint stays: Dhan's 2-minute rule does not care about our settings.
        self.client = None;
        self.cfg = cfg.dhan.clone();
    }
}

#[cfg(test)]
mod tests;
