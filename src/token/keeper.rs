//! The token keeper: one task that owns the broker token (DESIGN "Token keeper rules").
//!
//! Every trigger — a probe's 403, the periodic validation, the daily schedule, SIGUSR1, the
//! API, the manual-login callback, an external `.env` change — arrives here as a message and
//! is handled one at a time, so there is never more than one login in flight: triggers that
//! queue up behind a refresh find a valid token when their turn comes and do nothing.
//! A token is written only after `/user/profile` accepted it, and announced to the supervisor
//! only after it is in the env file, so programs started later never need a signal.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::broker::Broker;
use super::clock::Clock;
use super::kite::{BrokerError, ErrorClass};
use super::schedule::{last_before, next_after, parse_hhmm};
use super::{store, TokenRecord, TokenSource};
use crate::config::{KiteConfig, LoginMode, Secret, TokenConfig, TokenProviderKind};
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifyEvent};
use crate::reaper::Reaper;

/// SPEC §5 token states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Valid,
    Expired,
    Refreshing,
    NeedsLogin,
    #[default]
    Unknown,
}

/// The `token` object of `/api/v1/status`. Never holds the token itself.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TokenStatus {
    pub state: TokenState,
    pub user_id: Option<String>,
    pub obtained_at: Option<String>,
    pub expires_at: Option<String>,
    pub next_refresh_at: Option<String>,
    pub last_error: Option<String>,
    pub source: Option<&'static str>,
    pub login: Option<&'static str>,
}

/// Why a refresh was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A program's health check says the broker rejected the token.
    ProbeAuth(String),
    /// SIGUSR1.
    Signal,
    /// `POST /api/v1/token/refresh` or `warden token refresh`.
    Api,
}

#[derive(Debug)]
pub enum KeeperMsg {
    Trigger(Trigger),
    /// `/kite/callback` with a request token from a manual login.
    Callback {
        request_token: String,
        reply: oneshot::Sender<Result<(), CallbackError>>,
    },
    /// The config was reloaded with different `[token]` settings.
    Reconfigure(Box<TokenConfig>),
}

/// What the keeper tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeeperEvent {
    /// The start-up token check is done (valid token in place, or a person must act).
    Settled,
    /// A new token is in the env file; generation is its sequence number.
    TokenChanged { generation: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error(
        "the session belongs to another Kite user, not the configured user_id; it was logged out"
    )]
    WrongUser,
    #[error("token exchange failed: {0}")]
    Broker(#[from] BrokerError),
    #[error("cannot store the token: {0}")]
    Store(#[from] store::StoreError),
    #[error("this warden has no [token.kite] configured")]
    NotKite,
}

/// Retries after transient broker trouble: 1 s doubling up to 5 min (never sooner than
/// `min_interval`).
const TRANSIENT_FIRST: Duration = Duration::from_secs(1);
const TRANSIENT_MAX: Duration = Duration::from_secs(300);

/// Shared, cheap view of the keeper for HTTP and the supervisor.
#[derive(Clone)]
pub struct KeeperHandle {
    pub tx: UnboundedSender<KeeperMsg>,
    pub status: watch::Receiver<TokenStatus>,
    /// Incremented right after each new token is written to the env file.
    pub generation: Arc<AtomicU64>,
}

pub struct Keeper<B: Broker> {
    broker: B,
    clock: Clock,
    cfg: TokenConfig,
    state_dir: PathBuf,
    config_dir: PathBuf,
    login_url: String,
    tz: TimeZone,
    current: Option<TokenRecord>,
    status: watch::Sender<TokenStatus>,
    generation: Arc<AtomicU64>,
    events: UnboundedSender<KeeperEvent>,
    rx: UnboundedReceiver<KeeperMsg>,
    reaper: Reaper,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    attempts: VecDeque<Instant>,
    last_attempt: Option<Instant>,
    retry_at: Option<Instant>,
    transient_failures: u32,
    /// Set by a credential rejection: no automated login until a person acts.
    blocked: Option<String>,
    env_watch: Option<store::EnvFileWatcher>,
    env_rx: Option<tokio::sync::mpsc::Receiver<Secret>>,
}

pub struct KeeperSetup {
    pub cfg: TokenConfig,
    pub state_dir: PathBuf,
    pub config_dir: PathBuf,
    /// `{public_url}/login`: what a person opens to log in by hand.
    pub login_url: String,
    pub reaper: Reaper,
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
    /// Shared with program actors, which read it right before each spawn.
    pub generation: Arc<AtomicU64>,
    pub clock: Clock,
    /// Watch the env file for tokens written by someone else (off in simulations).
    pub watch_env_file: bool,
}

fn rfc3339(t: i64) -> Option<String> {
    Timestamp::from_second(t).ok().map(|t| t.to_string())
}

impl<B: Broker> Keeper<B> {
    pub fn spawn(
        setup: KeeperSetup,
        broker: B,
        events: UnboundedSender<KeeperEvent>,
    ) -> KeeperHandle {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (status, status_rx) = watch::channel(TokenStatus::default());
        let generation = setup.generation.clone();
        let tz = TimeZone::get(&setup.cfg.timezone).unwrap_or(TimeZone::UTC);
        let watch_env_file = setup.watch_env_file;
        let keeper = Keeper {
            broker,
            clock: setup.clock,
            cfg: setup.cfg,
            state_dir: setup.state_dir,
            config_dir: setup.config_dir,
            login_url: setup.login_url,
            tz,
            current: None,
            status,
            generation: generation.clone(),
            events,
            rx,
            reaper: setup.reaper,
            metrics: setup.metrics,
            notifier: setup.notifier,
            attempts: VecDeque::new(),
            last_attempt: None,
            retry_at: None,
            transient_failures: 0,
            blocked: None,
            env_watch: None,
            env_rx: None,
        };
        tokio::spawn(keeper.run(watch_env_file));
        KeeperHandle {
            tx,
            status: status_rx,
            generation,
        }
    }

    fn kite(&self) -> Option<&KiteConfig> {
        self.cfg.kite.as_ref()
    }

    fn manual(&self) -> bool {
        self.cfg.provider == TokenProviderKind::Kite
            && self.kite().is_some_and(|k| k.login == LoginMode::Manual)
    }

    fn login_kind(&self) -> &'static str {
        match self.cfg.provider {
            TokenProviderKind::Command => "command",
            _ if self.manual() => "manual",
            _ => "totp",
        }
    }

    fn set_state(&self, state: TokenState, last_error: Option<String>) {
        let next = self.next_refresh_at();
        self.status.send_modify(|s| {
            s.state = state;
            if last_error.is_some() || state == TokenState::Valid {
                s.last_error = last_error;
            }
            s.next_refresh_at = rfc3339(next.as_second());
        });
        self.metrics.set_token_valid(state == TokenState::Valid);
    }

    fn next_refresh_at(&self) -> Timestamp {
        let hhmm = parse_hhmm(&self.cfg.refresh_at).unwrap_or((6, 5));
        next_after(self.clock.now(), &self.tz, hhmm)
    }

    fn expiry_after(&self, t: Timestamp) -> Timestamp {
        next_after(
            t,
            &self.tz,
            parse_hhmm(&self.cfg.expires_at).unwrap_or((6, 0)),
        )
    }

    async fn run(mut self, watch_env_file: bool) {
        self.status
            .send_modify(|s| s.login = Some(self.login_kind()));
        let watcher = if watch_env_file {
            store::EnvFileWatcher::start(&self.cfg.env_file, &self.cfg.env_key).map(Some)
        } else {
            Ok(None)
        };
        match watcher {
            Ok(Some((w, rx))) => {
                self.env_watch = Some(w);
                self.env_rx = Some(rx);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "cannot watch {} ({e}); external token changes will not be seen",
                self.cfg.env_file.display()
            ),
        }
        self.startup().await;
        let _ = self.events.send(KeeperEvent::Settled);
        let mut next_check = Instant::now() + self.cfg.check_interval;
        loop {
            let refresh_in =
                (self.next_refresh_at().as_second() - self.clock.now().as_second()).max(1) as u64;
            let scheduled = Instant::now() + Duration::from_secs(refresh_in);
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    None => return,
                    Some(KeeperMsg::Trigger(t)) => self.on_trigger(t).await,
                    Some(KeeperMsg::Callback { request_token, reply }) => {
                        let r = self.on_callback(&request_token).await;
                        let _ = reply.send(r);
                    }
                    Some(KeeperMsg::Reconfigure(cfg)) => self.reconfigure(*cfg),
                },
                Some(tok) = recv_opt(&mut self.env_rx) => self.on_env_change(tok).await,
                _ = tokio::time::sleep_until(next_check) => {
                    next_check = Instant::now() + self.cfg.check_interval;
                    self.validate_current().await;
                }
                _ = tokio::time::sleep_until(scheduled) => self.on_schedule().await,
                _ = sleep_opt(self.retry_at) => {
                    self.retry_at = None;
                    self.refresh("retry").await;
                }
            }
        }
    }

    fn reconfigure(&mut self, cfg: TokenConfig) {
        self.tz = TimeZone::get(&cfg.timezone).unwrap_or(TimeZone::UTC);
        self.broker.reconfigure(cfg.kite.clone());
        self.cfg = cfg;
        self.blocked = None;
        self.status
            .send_modify(|s| s.login = Some(self.login_kind()));
        tracing::info!("token settings reloaded");
    }

    /// Reuse a still-valid token (token.json, then the env file) rather than logging in again:
    /// a new login would kill the token other copies of the stack may be using.
    async fn startup(&mut self) {
        store::remove_stale_temp_files(&self.cfg.env_file);
        store::remove_stale_temp_files(&store::token_json_path(&self.state_dir));
        let stored = match store::read_token_json(&self.state_dir) {
            Ok(rec) => rec,
            Err(e) => {
                tracing::warn!(
                    "ignoring {}: {e}",
                    store::token_json_path(&self.state_dir).display()
                );
                None
            }
        };
        // The env file is written before token.json, so when they differ the env file is the
        // newer one (or someone else's): try it first, token.json only as a fallback.
        let mut candidates = Vec::new();
        if let Ok(Some(v)) = store::read_env_value(&self.cfg.env_file, &self.cfg.env_key) {
            match &stored {
                Some(rec) if rec.access_token.expose() == v => {}
                _ if v.is_empty() => {}
                _ => {
                    let now = self.clock.now();
                    candidates.push(TokenRecord {
                        access_token: Secret::new(v),
                        user_id: String::new(),
                        obtained_at: now.as_second(),
                        expires_at: self.expiry_after(now).as_second(),
                        source: TokenSource::EnvFile,
                    });
                }
            }
        }
        candidates.extend(stored);
        for rec in candidates {
            match self.check(&rec.access_token).await {
                Ok(user_id) => {
                    let mut rec = rec;
                    if let Some(u) = user_id {
                        rec.user_id = u;
                    }
                    tracing::info!(
                        source = rec.source.as_str(),
                        "reusing the stored token: the broker accepts it"
                    );
                    if let Err(e) = self.install(rec, false) {
                        tracing::error!("cannot store the token: {e}");
                        continue;
                    }
                    return;
                }
                Err(e) if e.class() == ErrorClass::Transient => {
                    // Broker unreachable: keep the token we have, validation will tell later.
                    tracing::warn!("cannot validate the stored token now ({e}); using it until the broker answers");
                    let _ = self.install(rec, false);
                    self.set_state(TokenState::Unknown, Some(e.to_string()));
                    return;
                }
                Err(e) => tracing::info!("stored token is no longer valid ({e})"),
            }
        }
        self.set_state(TokenState::Expired, None);
        self.refresh("startup").await;
    }

    /// Validate a token: `Ok(Some(user_id))` when the broker accepted it (`Ok(None)` when there
    /// is no broker to ask, e.g. a command provider without `[token.kite]`).
    async fn check(&mut self, token: &Secret) -> Result<Option<String>, BrokerError> {
        let expected = self.kite().map(|k| k.user_id.clone()).unwrap_or_default();
        if !self.broker.configured() {
            return Ok(None);
        }
        let profile = self.broker.profile(token).await?;
        if !expected.is_empty() && profile.user_id != expected {
            return Err(BrokerError::UnexpectedFlow {
                step: super::kite::Step::Profile,
                detail: format!(
                    "the token belongs to user {}, not the configured user_id {expected}",
                    profile.user_id
                ),
            });
        }
        Ok(Some(profile.user_id))
    }

    async fn validate_current(&mut self) {
        let Some(tok) = self.current.as_ref().map(|c| c.access_token.clone()) else {
            if self.status.borrow().state != TokenState::NeedsLogin {
                self.refresh("validation").await;
            }
            return;
        };
        match self.check(&tok).await {
            Ok(_) => {
                if self.status.borrow().state != TokenState::Valid {
                    self.set_state(TokenState::Valid, None);
                }
            }
            Err(e) if e.class() == ErrorClass::TokenBad => {
                tracing::warn!("the broker rejected the current token ({e})");
                self.set_state(TokenState::Expired, Some(e.to_string()));
                self.refresh("validation").await;
            }
            Err(e) => tracing::warn!("token validation inconclusive: {e}"),
        }
    }

    async fn on_trigger(&mut self, t: Trigger) {
        match t {
            Trigger::ProbeAuth(program) => {
                // The clock and the probe are hints; the broker is the truth.
                if self.status.borrow().state == TokenState::NeedsLogin {
                    return;
                }
                tracing::info!(program = %program, "probe reports an auth failure; validating the token");
                self.validate_current().await;
            }
            Trigger::Signal | Trigger::Api => {
                tracing::info!("token refresh requested");
                // A person asked: a credential block may be lifted, the attempt caps still hold.
                self.blocked = None;
                self.broker.rearm();
                self.refresh("requested").await;
            }
        }
    }

    async fn on_schedule(&mut self) {
        let boundary = last_before(
            self.clock.now(),
            &self.tz,
            parse_hhmm(&self.cfg.expires_at).unwrap_or((6, 0)),
        );
        let stale = self
            .current
            .as_ref()
            .is_none_or(|c| c.obtained_at < boundary.as_second());
        // In manual mode a person would be asked to log in while the token may still work
        // (Kite's real flush time varies): there, only a rejected token asks for a login.
        if stale && !self.manual() {
            tracing::info!("daily refresh: the token predates today's expiry");
            self.refresh("schedule").await;
        } else {
            self.validate_current().await;
        }
    }

    async fn on_env_change(&mut self, tok: Secret) {
        if self.current.as_ref().is_some_and(|c| c.access_token == tok) {
            return;
        }
        tracing::info!(
            "{} changed by someone else; validating the new token",
            self.cfg.env_file.display()
        );
        match self.check(&tok).await {
            Ok(user_id) => {
                let now = self.clock.now();
                let rec = TokenRecord {
                    access_token: tok,
                    user_id: user_id.unwrap_or_default(),
                    obtained_at: now.as_second(),
                    expires_at: self.expiry_after(now).as_second(),
                    source: TokenSource::EnvFile,
                };
                self.blocked = None;
                if let Err(e) = self.install(rec, true) {
                    tracing::error!("cannot adopt the external token: {e}");
                }
            }
            Err(e) => tracing::warn!("ignoring the external token: {e}"),
        }
    }

    /// One automated attempt, within every cap. Single-flight by construction: this runs
    /// inside the keeper task, and triggers wait in the queue.
    async fn refresh(&mut self, why: &str) {
        if self.cfg.provider == TokenProviderKind::None {
            return;
        }
        if self.manual() {
            self.needs_login("a manual Kite login is needed".into());
            return;
        }
        if let Some(reason) = &self.blocked {
            let reason = reason.clone();
            self.needs_login(reason);
            return;
        }
        let now = Instant::now();
        while self
            .attempts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.cfg.attempt_window)
        {
            self.attempts.pop_front();
        }
        if self.attempts.len() as u32 >= self.cfg.max_attempts {
            let until = self.attempts.front().map(|t| *t + self.cfg.attempt_window);
            self.retry_at = until;
            self.needs_login(format!(
                "{} automated login attempts within {:?}; waiting for a manual login or the window to pass",
                self.attempts.len(),
                self.cfg.attempt_window
            ));
            return;
        }
        if let Some(last) = self.last_attempt {
            if now.duration_since(last) < self.cfg.min_interval {
                self.retry_at = Some(last + self.cfg.min_interval);
                return;
            }
        }
        if let Some(wait) = self.broker.fresh_code_in() {
            self.retry_at = Some(now + wait);
            return;
        }
        self.attempts.push_back(now);
        self.last_attempt = Some(now);
        self.retry_at = None;
        let kind = self.login_kind();
        self.metrics.inc_login_attempt(kind);
        self.set_state(TokenState::Refreshing, None);
        tracing::info!(kind, why, "refreshing the token");
        let started = Instant::now();
        let result = self.obtain().await;
        self.metrics
            .observe_refresh_duration(started.elapsed().as_secs_f64());
        match result {
            Ok(rec) => match self.install(rec, true) {
                Ok(()) => {
                    self.transient_failures = 0;
                    self.metrics.inc_refresh("success", kind);
                }
                Err(e) => {
                    self.metrics.inc_refresh("failure", kind);
                    self.fail_transient(format!("cannot store the new token: {e}"));
                }
            },
            Err(e) => {
                self.metrics.inc_refresh("failure", kind);
                match e.class() {
                    ErrorClass::Credential => {
                        let msg = format!("login rejected: {e}");
                        tracing::error!("{msg}; automated login is off until a person acts");
                        self.blocked = Some(msg.clone());
                        self.notifier.notify(NotifyEvent::TokenRefreshFailed {
                            reason: msg.clone(),
                        });
                        self.needs_login(msg);
                    }
                    _ => self.fail_transient(e.to_string()),
                }
            }
        }
    }

    fn fail_transient(&mut self, msg: String) {
        self.transient_failures += 1;
        let wait = TRANSIENT_FIRST
            .saturating_mul(1 << self.transient_failures.min(8).saturating_sub(1))
            .min(TRANSIENT_MAX)
            .max(self.cfg.min_interval);
        tracing::warn!("token refresh failed ({msg}); retrying in {wait:?}");
        self.retry_at = Some(Instant::now() + wait);
        self.notifier.notify(NotifyEvent::TokenRefreshFailed {
            reason: msg.clone(),
        });
        self.set_state(TokenState::Expired, Some(msg));
    }

    fn needs_login(&mut self, reason: String) {
        if self.status.borrow().state != TokenState::NeedsLogin {
            tracing::warn!("a person must log in: {reason}; open {}", self.login_url);
        }
        self.set_state(TokenState::NeedsLogin, Some(reason));
        self.notifier.notify(NotifyEvent::TokenNeedsLogin {
            login_url: self.login_url.clone(),
        });
    }

    async fn obtain(&mut self) -> Result<TokenRecord, BrokerError> {
        let (token, source) = match self.cfg.provider {
            TokenProviderKind::Command => (self.run_command().await?, TokenSource::Command),
            _ => {
                let request_token = self.broker.login().await?;
                let session = self.broker.exchange(request_token.expose()).await?;
                (session.access_token, TokenSource::Totp)
            }
        };
        let user_id = self.check(&token).await?.unwrap_or_default();
        let now = self.clock.now();
        Ok(TokenRecord {
            access_token: token,
            user_id,
            obtained_at: now.as_second(),
            expires_at: self.expiry_after(now).as_second(),
            source,
        })
    }

    async fn run_command(&mut self) -> Result<Secret, BrokerError> {
        let cfg = self
            .cfg
            .command
            .clone()
            .ok_or_else(|| BrokerError::Config("[token.command] is missing".into()))?;
        // A script failure is retried within the attempt caps (the script owns its own
        // credential handling); only a broker rejection stops automated attempts.
        let out = super::command_run::run(&self.reaper, &cfg, &self.config_dir)
            .await
            .map_err(|e| BrokerError::Network {
                step: super::kite::Step::Login,
                url: "token.command".into(),
                detail: e.to_string(),
            })?;
        Ok(out)
    }

    async fn on_callback(&mut self, request_token: &str) -> Result<(), CallbackError> {
        let kite = self.kite().cloned().ok_or(CallbackError::NotKite)?;
        self.metrics.inc_login_attempt("manual");
        let session = self.broker.exchange(request_token).await?;
        if !kite.user_id.is_empty() && session.user_id != kite.user_id {
            tracing::warn!(got = %session.user_id, "manual login by another Kite user refused; logging that session out");
            let _ = self.broker.logout(&session.access_token).await;
            return Err(CallbackError::WrongUser);
        }
        self.broker.profile(&session.access_token).await?;
        let now = self.clock.now();
        let rec = TokenRecord {
            access_token: session.access_token,
            user_id: session.user_id,
            obtained_at: now.as_second(),
            expires_at: self.expiry_after(now).as_second(),
            source: TokenSource::Manual,
        };
        self.install(rec, true)?;
        self.blocked = None;
        self.attempts.clear();
        self.retry_at = None;
        self.metrics.inc_refresh("success", "manual");
        Ok(())
    }

    /// Write the token (env file, then token.json), publish it, and (when `announce`) tell
    /// the supervisor so programs get it.
    fn install(&mut self, rec: TokenRecord, announce: bool) -> Result<(), store::StoreError> {
        if let Some(w) = &self.env_watch {
            w.set_known(&rec.access_token);
        }
        let on_disk = store::read_env_value(&self.cfg.env_file, &self.cfg.env_key)
            .ok()
            .flatten();
        if on_disk.as_deref() != Some(rec.access_token.expose()) {
            store::rewrite_env_file(
                &self.cfg.env_file,
                &self.cfg.env_key,
                rec.access_token.expose(),
            )?;
        }
        store::write_token_json(&self.state_dir, &rec)?;
        let changed = self
            .current
            .as_ref()
            .is_none_or(|c| c.access_token != rec.access_token);
        self.status.send_modify(|s| {
            s.user_id = Some(rec.user_id.clone()).filter(|u| !u.is_empty());
            s.obtained_at = rfc3339(rec.obtained_at);
            s.expires_at = rfc3339(rec.expires_at);
            s.source = Some(rec.source.as_str());
        });
        self.metrics.set_token_expiry(Some(rec.expires_at));
        let source = rec.source;
        let refreshed = NotifyEvent::TokenRefreshed {
            user_id: Some(rec.user_id.clone()).filter(|u| !u.is_empty()),
            expires_at: Some(rec.expires_at),
        };
        self.current = Some(rec);
        self.set_state(TokenState::Valid, None);
        if changed {
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            if announce {
                tracing::info!(source = source.as_str(), generation, "new token in place");
                self.notifier.notify(refreshed);
                let _ = self.events.send(KeeperEvent::TokenChanged { generation });
            }
        }
        Ok(())
    }
}

async fn recv_opt(rx: &mut Option<tokio::sync::mpsc::Receiver<Secret>>) -> Option<Secret> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
