//! What the token keeper needs from a broker (or a script) to obtain and validate a token.
//!
//! A provider knows its broker: its endpoints, its login steps, how to read its errors. It
//! knows nothing about programs, env files or HTTP routes. The keeper applies the account
//! safety rules of SPEC §4.1 the same way to every provider: the attempt budget, the
//! credential block and its memory, the TOTP step recorded before a code is sent, the clock
//! guard, the exchange retried with the same code, a token in hand never thrown away.
//!
//! A login ends in one of three ways ([`Grant`]): a one-time code the keeper exchanges (Kite's
//! request token, an OAuth authorization code), the token itself (a script, a broker whose
//! login answers with the token), or nothing yet (a broker that asks the person to approve on
//! their phone and later posts the token to warden). The manual login is the same exchange,
//! started by a person through [`Provider::login_url`] and completed by the callback.
//!
//! Adding a broker: one module in `provider/` implementing this trait, with its own error type
//! mapped to a [`Failure`]; see README "How to add a broker".

pub mod angelone;
pub mod command;
pub mod configured;
pub mod dhan;
pub mod fyers;
pub mod jwt;
pub mod kite;
pub mod upstox;

use std::future::Future;
use std::time::Duration;

use crate::config::{Secret, TokenConfig};
pub use crate::token::login::SessionProbe;
pub use crate::token::Companions;

/// What the keeper does about a failed provider call. Every provider error maps to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The token (or the one-time code) is expired or invalidated: obtain a new one.
    TokenBad,
    /// The broker refused who we are (password, PIN, TOTP, blocked account) or the login flow
    /// changed: never retried; blocks automated login for these credentials (SPEC §4.1).
    Credential,
    /// Outage, rate limit, timeout, a script that failed: retried later within the budget.
    Transient,
    /// The configuration cannot work (a missing table, a secret that cannot be used). Nothing
    /// is retried until the config changes; treated like a credential rejection.
    Config,
}

/// A provider's error: readable (and free of secrets) through `Display`, classified by
/// [`ProviderError::failure`].
pub trait ProviderError: std::error::Error + Send + Sync + 'static {
    fn failure(&self) -> Failure;

    /// For a [`Failure::Transient`] refusal whose end the broker's rules fix (Dhan's "one
    /// token per 2 minutes", a 429 with `Retry-After`): how long until a login can succeed.
    /// The keeper waits exactly that long and does not count the refused login against the
    /// attempt cap: the broker refused it for the clock, not for the credentials.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// How this token is obtained (`login` in `/api/v1/status`; the `kind` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    /// Automated: password/PIN plus a TOTP code (Kite, Angel One, Dhan).
    Totp,
    /// A person logs in through the broker's page; the callback completes it.
    Manual,
    /// A person approves a request on their phone; the broker posts the token (Upstox).
    Approve,
    /// The operator's script (`provider = "command"`).
    Command,
    /// No provider: the keeper only watches the env file.
    None,
}

impl LoginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginKind::Totp => "totp",
            LoginKind::Manual => "manual",
            LoginKind::Approve => "approve",
            LoginKind::Command => "command",
            LoginKind::None => "none",
        }
    }

    /// Whether the keeper may log in by itself (within the budget).
    pub fn automated(self) -> bool {
        matches!(self, LoginKind::Totp | LoginKind::Command)
    }
}

/// What the broker says about a token it accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The user the token belongs to (empty when the provider cannot tell).
    pub user_id: String,
    /// Unix seconds, when the token says when it dies (a JWT's `exp`); `None` for opaque
    /// tokens, whose expiry is the configured daily hint.
    pub expires_at: Option<i64>,
}

/// A token a provider obtained. `Debug` redacts the secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obtained {
    pub access_token: Secret,
    /// Who the broker issued it to (empty when unknown; validation tells).
    pub user_id: String,
    /// What came with it: env values beside the token, a refresh token.
    pub companions: Companions,
}

/// How a login ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A one-time code to redeem with [`Provider::exchange`] (Kite's request token).
    Code(Secret),
    /// The token itself.
    Token(Obtained),
    /// The broker will deliver the token later (an approve-style login): the keeper waits for
    /// it to arrive through the provider's callback.
    Pending,
}

/// An approve-style login in flight ([`Grant::Pending`]): the broker keeps the request open
/// until `expires_at` (Unix seconds) and delivers the token once a person approves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    pub expires_at: i64,
    /// What the person must do (the status's `last_error` and the notification say it).
    pub ask: &'static str,
}

/// Why a token the broker delivered (Upstox's notifier webhook) was refused before anyone was
/// asked about it. The texts never quote what was posted: anyone can post.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryRefused {
    #[error("this token is not obtained by approval: nothing is delivered here")]
    NotSupported,
    #[error("no access token request is pending")]
    NotPending,
    #[error("the notification is for another user than the configured user_id")]
    OtherUser,
    #[error("not a usable notification: {0}")]
    Invalid(&'static str),
}

/// A broker, or the operator's script, as the keeper sees it.
///
/// Every call that talks to the broker is async and `Send` (the keeper runs on a tokio task).
/// None of them retries by itself: the keeper decides what is retried and when.
pub trait Provider: Send + 'static {
    type Error: ProviderError;

    /// The provider's name: `kite`, `command`, … (metric labels, log lines).
    fn name(&self) -> &'static str;

    fn login_kind(&self) -> LoginKind;

    /// The configured broker user (empty: any). A token of another user is refused.
    fn expected_user(&self) -> &str;

    /// What identifies the credentials automation submits (user, password/PIN, TOTP secret,
    /// the script's argv): the keyed fingerprint of the login memory is made from these, so a
    /// credential block follows the credentials, never the secrets' text.
    fn credentials(&self) -> Vec<&str>;

    /// Whether [`Provider::validate`] can ask anyone (a script without a broker table
    /// cannot: its tokens are taken as they come).
    fn can_validate(&self) -> bool;

    /// Ask the broker whether it accepts `token` (its profile endpoint).
    fn validate(
        &mut self,
        token: &Secret,
    ) -> impl Future<Output = Result<Identity, Self::Error>> + Send;

    /// Reuse what the last automated login left (Kite's web session) to get a code without
    /// submitting credentials, and read the broker's clock. Default: nothing to reuse.
    fn resume_session(&mut self) -> impl Future<Output = Result<SessionProbe, Self::Error>> + Send {
        async { Ok(SessionProbe::default()) }
    }

    /// One automated login. For a TOTP login, `step` is the TOTP step whose code may be
    /// sent and `record` must run right before the code goes out (it persists the step;
    /// `false`: send nothing).
    fn login(
        &mut self,
        step: Option<u64>,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> impl Future<Output = Result<Grant, Self::Error>> + Send;

    /// Redeem a one-time code (from [`Grant::Code`] or a manual login's callback).
    fn exchange(
        &mut self,
        code: &str,
    ) -> impl Future<Output = Result<Obtained, Self::Error>> + Send;

    /// Whether [`Provider::refresh`] may have a refresh token to try.
    fn can_refresh(&self) -> bool {
        false
    }

    /// A longer-lived refresh token, where the broker has one (Fyers, Angel One's
    /// `generateTokens`): `None` when there is none to try, so the keeper logs in instead.
    /// Like a kept web session it submits no credentials and is not a login attempt; a
    /// `TokenBad` answer (the refresh token lapsed or was disabled) means "log in instead".
    fn refresh(&mut self) -> impl Future<Output = Option<Result<Obtained, Self::Error>>> + Send {
        async { None }
    }

    /// The broker's login page for a manual login, carrying `state` back to the callback
    /// where the broker allows it. `None`: this provider has no manual login.
    fn login_url(&self, _state: Option<&str>) -> Option<String> {
        None
    }

    /// Start a manual login: the page `/login` sends the browser to. Default: the sync
    /// [`Provider::login_url`]; a broker that must be asked first (Dhan's consent) overrides.
    fn start_manual_login(
        &mut self,
        state: &str,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send {
        let url = self.login_url(Some(state));
        async move { Ok(url) }
    }

    /// End a session (a manual login by the wrong user is logged out again).
    fn logout(&mut self, token: &Secret) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// `Some(wait)` while the current TOTP code was already submitted.
    fn fresh_code_in(&self) -> Option<Duration> {
        None
    }

    /// What the token in use came with (after a login, a refresh, or read back from the state
    /// file at start): a provider with a refresh token keeps it for [`Provider::refresh`].
    fn remember(&mut self, _companions: &Companions) {}

    /// The one-time code a manual login's callback carries, taken from its query parameters
    /// (Kite: `request_token`); `Err` names what is missing. The code then goes to
    /// [`Provider::exchange`], the same way in fleet mode when the callback lands on a follower.
    fn callback_code(
        &self,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<String, &'static str> {
        query
            .get("request_token")
            .filter(|t| !t.is_empty())
            .cloned()
            .ok_or("missing request_token")
    }

    /// Whether the broker carries the one-time `state` from [`Provider::login_url`] back to
    /// the callback (when not, the provider correlates the callback itself, as Dhan's consent
    /// flow does).
    fn callback_carries_state(&self) -> bool {
        true
    }

    /// The approve-style request sent last ([`Grant::Pending`]) while no token settled it.
    fn pending_approval(&self) -> Option<PendingApproval> {
        None
    }

    /// A token the broker posted to warden after a person approved the request: checked
    /// against the request in flight (this app, the configured user). The keeper validates
    /// it with the broker before anything is written.
    fn take_delivery(&mut self, _body: &[u8]) -> Result<Obtained, DeliveryRefused> {
        Err(DeliveryRefused::NotSupported)
    }

    /// A token is in place: the request in flight, if any, is moot.
    fn approval_settled(&mut self) {}

    /// A person lifted a credential block: the provider may log in again.
    fn rearm(&mut self) {}

    /// New `[token]` settings after a config reload.
    fn reconfigure(&mut self, cfg: &TokenConfig);
}
