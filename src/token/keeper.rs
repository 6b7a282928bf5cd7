//! The token keeper: one task that owns the broker token (DESIGN "Token keeper rules").
//!
//! Every trigger — a probe's 403, the periodic validation, the daily schedule, SIGUSR1, the
//! API, the manual-login callback, an external `.env` change — arrives here as a message and
//! is handled one at a time, so there is never more than one login in flight: triggers that
//! queue up behind a refresh find a valid token when their turn comes and do nothing.
//! A token is written only after `/user/profile` accepted it, and announced to the supervisor
//! only after it is in the env file, so programs started later never need a signal.

mod approval;
mod coordination;
mod external_token;
mod fleet_protocol;
mod install;
mod login_steps;
mod notifications;
mod obtain;
mod pending_write;
mod startup;

use coordination::Coordination;
use fleet_protocol::forward_callback;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::attempt_budget::AttemptBudget;
use super::broker::Broker;
use super::clock::Clock;
use super::fleet::{Fleet, FleetEvent, FleetStatus};
use super::login_memory::LoginMemory;
use super::provider::configured::Configured;
use super::provider::{Failure, Identity, LoginKind, Provider, ProviderError};
use super::schedule::{last_before, next_after, parse_hhmm};
use super::{store, TokenRecord};
use crate::config::{Secret, TokenConfig, TokenProviderKind};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::reaper::Reaper;

/// The token's status types live in the model (kept importable from here).
pub use crate::model::{TokenState, TokenStatus};

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
    /// `/{provider}/callback` from a manual login: its query parameters.
    Callback {
        query: std::collections::HashMap<String, String>,
        reply: oneshot::Sender<Result<(), CallbackError>>,
    },
    /// `/login`: the broker page a manual login starts at, carrying `state` back.
    LoginUrl {
        state: String,
        reply: oneshot::Sender<Result<Option<String>, String>>,
    },
    /// The config was reloaded with different `[token]` settings.
    Reconfigure(Box<TokenConfig>),
    /// `warden token unblock`: lift a credential block (the reply says why not, if not).
    Unblock(oneshot::Sender<Result<(), String>>),
    /// `POST /upstox/notify`: a token the broker posted after a person approved the request
    /// (the raw body; anyone can post, so it is checked before anything is written).
    Delivery {
        body: Vec<u8>,
        reply: oneshot::Sender<Result<(), DeliveryError>>,
    },
    /// warden is stopping: give up the fleet lock (answered when done).
    Shutdown(oneshot::Sender<()>),
}

/// What the keeper tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeeperEvent {
    /// The start-up token check of the token called `token` is done (valid token in place,
    /// or a person must act).
    Settled { token: String },
    /// A new token is in the env file; generation is its sequence number (one sequence shared
    /// by every keeper of this warden).
    TokenChanged { token: String, generation: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error(
        "the session belongs to another broker user, not the configured user (user_id, client_code or client_id); it was logged out"
    )]
    WrongUser,
    #[error("token exchange failed: {0}")]
    Broker(Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot store the token: {0}")]
    Store(#[from] CommitError),
    #[error("this token has no manual login (its broker table, such as [token.kite], is missing)")]
    NotKite,
    /// The callback lacks what the broker should have sent (or reports a failed login).
    #[error("{0}")]
    BadCallback(&'static str),
    /// Fleet mode: the login could not reach the leader, or the leader failed it.
    #[error("{0}")]
    Fleet(String),
}

/// Why a delivered token (`POST /upstox/notify`) was not taken. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Refused(#[from] super::provider::DeliveryRefused),
    /// The broker says the token belongs to someone else.
    #[error("the token belongs to another user than the configured user_id")]
    WrongUser,
    /// The broker does not accept the token.
    #[error("the broker does not accept the token: {0}")]
    TokenRefused(String),
    /// The broker could not be asked (outage): the token was not taken.
    #[error("cannot check the token with the broker now: {0}")]
    Unavailable(String),
    #[error("cannot store the token: {0}")]
    Store(#[from] CommitError),
    /// Fleet mode: only the refresher takes delivered tokens.
    #[error("this warden does not refresh the token (fleet follower)")]
    Follower,
}

/// Why the keeper is about to log in (log lines; a person's request may reach a fleet leader
/// sooner than a reminder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshReason {
    Startup,
    Validation,
    Requested,
    Schedule,
    Retry,
    Unblock,
}

impl RefreshReason {
    fn as_str(self) -> &'static str {
        match self {
            RefreshReason::Startup => "startup",
            RefreshReason::Validation => "validation",
            RefreshReason::Requested => "requested",
            RefreshReason::Schedule => "schedule",
            RefreshReason::Retry => "retry",
            RefreshReason::Unblock => "unblock",
        }
    }
}

/// Why a login or a validation produced no usable token.
#[derive(Debug, thiserror::Error)]
enum LoginError<E: ProviderError> {
    #[error(transparent)]
    Provider(E),
    #[error("the token belongs to user {got}, not the configured user_id {expected}")]
    WrongUser { got: String, expected: String },
    #[error("the login request waits for a person to approve it")]
    AwaitingApproval,
}

impl<E: ProviderError> LoginError<E> {
    /// The broker's own "not before" for a transient refusal (see [`ProviderError::retry_after`]).
    fn retry_after(&self) -> Option<Duration> {
        match self {
            LoginError::Provider(e) if e.failure() == Failure::Transient => e.retry_after(),
            _ => None,
        }
    }

    fn failure(&self) -> Failure {
        match self {
            LoginError::Provider(e) => e.failure(),
            // Another user's token is a changed login, never retried by itself.
            LoginError::WrongUser { .. } => Failure::Credential,
            LoginError::AwaitingApproval => Failure::Transient,
        }
    }
}

/// Failures that stop automated login for these credentials (SPEC §4.1): a configuration
/// that cannot work is treated like a rejection (nothing is retried until it changes).
fn is_rejection(f: Failure) -> bool {
    matches!(f, Failure::Credential | Failure::Config)
}

/// Why a new token was not put in place.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("a newer fleet leader took over; this warden's token was not shared or used")]
    Fenced,
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
    /// Fleet mode only: the shared store and this warden's role.
    pub fleet: Option<watch::Receiver<FleetStatus>>,
    /// Fleet mode only: the fleet itself (manual-login states are spent fleet-wide).
    pub fleet_store: Option<Fleet>,
}

pub struct Keeper<P: Provider> {
    provider: P,
    clock: Clock,
    cfg: TokenConfig,
    state_dir: PathBuf,
    login_url: String,
    tz: TimeZone,
    current: Option<TokenRecord>,
    status: watch::Sender<TokenStatus>,
    generation: Arc<AtomicU64>,
    events: UnboundedSender<KeeperEvent>,
    rx: UnboundedReceiver<KeeperMsg>,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    retry_at: Option<Instant>,
    /// The broker refuses logins until then (its own rule, see `ProviderError::retry_after`):
    /// nothing, not even a validation that finds the token dead, logs in before.
    broker_not_before: Option<Instant>,
    transient_failures: u32,
    /// `{state_dir}/login.json`: blocks, attempt history, submitted TOTP steps.
    memory: LoginMemory,
    /// `max_attempts`, `attempt_window`, `min_interval` (history in `memory`).
    budget: AttemptBudget,
    /// A token obtained but not yet written to the env file, and when to try again.
    pending: Option<TokenRecord>,
    write_retry_at: Option<Instant>,
    write_failures: u32,
    env_watch: Option<store::EnvFileWatcher>,
    env_rx: Option<tokio::sync::mpsc::Receiver<Secret>>,
    /// Alone, or one of a fleet sharing the token.
    coordination: Coordination,
    /// The fence of the shared token `current` came from (0: found or obtained locally).
    current_fence: u64,
    /// Fleet mode: when this follower last asked the leader for a token.
    last_ask: Option<Instant>,
    /// Fleet mode: this leader obtained a token while the store was unreachable.
    unshared: bool,
    /// The event history, its events named after this token.
    journal: crate::journal::TokenJournal,
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
    /// Fleet mode (`token.store.kind = "redis"`): the started fleet and its events.
    pub fleet: Option<(Fleet, UnboundedReceiver<FleetEvent>)>,
    /// The event history (issue 16).
    pub journal: crate::journal::Journal,
}

fn rfc3339(t: i64) -> Option<Timestamp> {
    Timestamp::from_second(t).ok()
}

impl<B: Broker> Keeper<Configured<B>> {
    /// The keeper of `[token] provider` (Kite or a command), talking to Kite through `broker`.
    pub fn spawn(
        setup: KeeperSetup,
        broker: B,
        events: UnboundedSender<KeeperEvent>,
    ) -> KeeperHandle {
        let mut provider = Configured::new(
            &setup.cfg,
            broker,
            setup.reaper.clone(),
            setup.config_dir.clone(),
        );
        // `login_url` is `{public_url}/login…`: the broker redirect lives beside it.
        let public_url = setup
            .login_url
            .rfind("/login")
            .map_or(setup.login_url.as_str(), |i| &setup.login_url[..i]);
        provider.set_public_url(public_url);
        Keeper::start(setup, provider, events)
    }
}

impl<P: Provider> Keeper<P> {
    /// Start the keeper task with any provider.
    pub fn start(
        setup: KeeperSetup,
        provider: P,
        events: UnboundedSender<KeeperEvent>,
    ) -> KeeperHandle {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (status, status_rx) = watch::channel(TokenStatus::default());
        let generation = setup.generation.clone();
        let tz = TimeZone::get(&setup.cfg.timezone).unwrap_or(TimeZone::UTC);
        let watch_env_file = setup.watch_env_file;
        let coordination = Coordination::new(setup.fleet);
        let fleet_status = coordination.fleet().map(Fleet::status);
        if let Some(status) = &fleet_status {
            super::fleet::history::spawn(status.clone(), setup.journal.clone());
        }
        let fleet_store = coordination.fleet().cloned();
        let memory = LoginMemory::load_file(setup.cfg.login_json_path(&setup.state_dir));
        let budget = AttemptBudget::from_config(&setup.cfg);
        let journal = setup.journal.for_token(&setup.cfg.display_name());
        let keeper = Keeper {
            provider,
            clock: setup.clock,
            cfg: setup.cfg,
            state_dir: setup.state_dir,
            login_url: setup.login_url,
            tz,
            current: None,
            status,
            generation: generation.clone(),
            events,
            rx,
            metrics: setup.metrics,
            notifier: setup.notifier,
            retry_at: None,
            broker_not_before: None,
            transient_failures: 0,
            memory,
            budget,
            pending: None,
            write_retry_at: None,
            write_failures: 0,
            env_watch: None,
            env_rx: None,
            coordination,
            current_fence: 0,
            last_ask: None,
            unshared: false,
            journal,
        };
        tokio::spawn(keeper.run(watch_env_file));
        KeeperHandle {
            tx,
            status: status_rx,
            generation,
            fleet: fleet_status,
            fleet_store,
        }
    }

    fn manual(&self) -> bool {
        self.login_kind() == LoginKind::Manual
    }

    fn login_kind(&self) -> LoginKind {
        self.provider.login_kind()
    }

    fn manual_login_needed(&self) -> String {
        match self.provider.name() {
            "kite" => "a manual Kite login is needed".into(),
            other => format!("a manual {other} login is needed"),
        }
    }

    /// Fleet mode, and another warden does the logging in.
    fn following(&self) -> Option<Fleet> {
        self.coordination.following()
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
            .send_modify(|s| s.login = Some(self.login_kind().as_str()));
        self.publish_block();
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
        let _ = self.events.send(KeeperEvent::Settled {
            token: self.cfg.display_name(),
        });
        let mut next_check = Instant::now() + self.cfg.check_interval;
        // Fixed until it has fired (or the settings change): recomputed "next after now" at
        // every turn of the loop, a turn that lands on the refresh time itself (a validation
        // due the same instant, a message) would move it to tomorrow and skip today's refresh.
        let mut refresh_due = self.next_refresh_at();
        let mut refresh_settings = (self.cfg.refresh_at.clone(), self.cfg.timezone.clone());
        loop {
            if (&self.cfg.refresh_at, &self.cfg.timezone)
                != (&refresh_settings.0, &refresh_settings.1)
            {
                refresh_settings = (self.cfg.refresh_at.clone(), self.cfg.timezone.clone());
                refresh_due = self.next_refresh_at();
            }
            let refresh_in = (refresh_due.as_second() - self.clock.now().as_second()).max(0) as u64;
            let scheduled = Instant::now() + Duration::from_secs(refresh_in);
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    None => return,
                    Some(KeeperMsg::Trigger(t)) => self.on_trigger(t).await,
                    Some(KeeperMsg::Callback { query, reply }) => {
                        let request_token = match self.provider.callback_code(&query) {
                            Ok(code) => code,
                            Err(why) => {
                                let _ = reply.send(Err(CallbackError::BadCallback(why)));
                                continue;
                            }
                        };
                        if let Some(f) = self.following() {
                            // The leader logs in; waiting for it must not stall this loop.
                            let now = self.clock.now().as_second();
                            tokio::spawn(async move {
                                let _ = reply.send(forward_callback(&f, &request_token, now).await);
                            });
                        } else {
                            let r = self.on_callback(&request_token).await;
                            let _ = reply.send(r);
                        }
                    }
                    Some(KeeperMsg::LoginUrl { state, reply }) => {
                        let url = self.provider.start_manual_login(&state).await;
                        let _ = reply.send(url.map_err(|e| e.to_string()));
                    }
                    Some(KeeperMsg::Delivery { body, reply }) => {
                        let r = self.on_delivery(&body).await;
                        let _ = reply.send(r);
                    }
                    Some(KeeperMsg::Reconfigure(cfg)) => self.reconfigure(*cfg),
                    Some(KeeperMsg::Unblock(reply)) => self.on_unblock(reply).await,
                    Some(KeeperMsg::Shutdown(done)) => {
                        self.coordination.release().await;
                        let _ = done.send(());
                    }
                },
                Some(tok) = recv_opt(&mut self.env_rx) => self.on_env_change(tok).await,
                Some(ev) = self.coordination.next_event() => self.on_fleet(ev).await,
                _ = tokio::time::sleep_until(next_check) => {
                    next_check = Instant::now() + self.cfg.check_interval;
                    self.validate_current().await;
                }
                _ = tokio::time::sleep_until(scheduled) => {
                    self.on_schedule().await;
                    refresh_due = self.next_refresh_at();
                }
                _ = sleep_opt(self.write_retry_at) => {
                    self.write_retry_at = None;
                    self.retry_write().await;
                }
                _ = sleep_opt(self.retry_at) => {
                    self.retry_at = None;
                    // A follower's retry is a reminder to the leader, moot once a token came.
                    if self.following().is_none() || self.status.borrow().state != TokenState::Valid {
                        self.refresh(RefreshReason::Retry).await;
                    }
                }
            }
        }
    }

    fn reconfigure(&mut self, mut cfg: TokenConfig) {
        if cfg.store != self.cfg.store {
            tracing::warn!(
                "[token.store] changed: restart warden to apply it (keeping the current store)"
            );
            cfg.store = self.cfg.store.clone();
        }
        // The env file was resolved once, at start: writes and the watch stay on that file.
        if (&cfg.env_file, &cfg.env_file_link) != (&self.cfg.env_file, &self.cfg.env_file_link) {
            tracing::warn!(
                "[token] env_file changed or now resolves to another file: restart warden to apply it (keeping {})",
                self.cfg.env_file.display()
            );
            cfg.env_file = self.cfg.env_file.clone();
            cfg.env_file_link = self.cfg.env_file_link.clone();
        }
        self.tz = TimeZone::get(&cfg.timezone).unwrap_or(TimeZone::UTC);
        let was_blocked = self.block().is_some();
        self.budget.reconfigure(&cfg);
        self.provider.reconfigure(&cfg);
        self.cfg = cfg;
        // Changed credentials have another fingerprint, so their block (if any) is their own;
        // fixed ones get their chance at once.
        self.publish_block();
        if was_blocked && self.block().is_none() && self.status.borrow().state != TokenState::Valid
        {
            tracing::info!("the credentials changed: automated login is allowed again");
            self.retry_at = Some(Instant::now());
        }
        self.status
            .send_modify(|s| s.login = Some(self.login_kind().as_str()));
        tracing::info!("token settings reloaded");
    }

    /// Validate a token: `Ok(Some(identity))` when the broker accepted it for the configured
    /// user (`Ok(None)` when there is no broker to ask, e.g. a command provider without
    /// `[token.kite]`).
    async fn check(&mut self, token: &Secret) -> Result<Option<Identity>, LoginError<P::Error>> {
        if !self.provider.can_validate() {
            return Ok(None);
        }
        let identity = self
            .provider
            .validate(token)
            .await
            .map_err(LoginError::Provider)?;
        let expected = self.provider.expected_user();
        if !expected.is_empty() && identity.user_id != expected {
            return Err(LoginError::WrongUser {
                got: identity.user_id,
                expected: expected.to_string(),
            });
        }
        Ok(Some(identity))
    }

    async fn validate_current(&mut self) {
        self.check_env_file_mode();
        let Some(tok) = self.current.as_ref().map(|c| c.access_token.clone()) else {
            if self.status.borrow().state != TokenState::NeedsLogin {
                self.refresh(RefreshReason::Validation).await;
            }
            return;
        };
        match self.check(&tok).await {
            Ok(_) => {
                if self.status.borrow().state != TokenState::Valid {
                    self.set_state(TokenState::Valid, None);
                }
            }
            Err(e) if e.failure() == Failure::TokenBad => {
                tracing::warn!("the broker rejected the current token ({e})");
                self.journal.record(
                    crate::journal::Kind::TokenInvalid,
                    format!("the broker rejected the token in use ({e})"),
                );
                // Already asked a person to approve a new one: keep asking, send nothing.
                if self.awaiting_approval() {
                    return;
                }
                self.set_state(TokenState::Expired, Some(e.to_string()));
                self.refresh(RefreshReason::Validation).await;
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
                // A refresh request never lifts a credential block (SPEC §4.1): only changed
                // credentials, a manual login or `warden token unblock` do.
                if let Some(b) = self.block() {
                    tracing::warn!(
                        "token refresh requested, but automated login is blocked: {}; fix the cause, then run `warden token unblock` (or log in manually)",
                        b.reason
                    );
                    return;
                }
                tracing::info!("token refresh requested");
                self.refresh(RefreshReason::Requested).await;
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
        if stale && !self.manual() && self.following().is_none() {
            tracing::info!("daily refresh: the token predates today's expiry");
            self.refresh(RefreshReason::Schedule).await;
        } else {
            self.validate_current().await;
        }
    }

    /// One automated attempt, within every cap. Single-flight by construction: this runs
    /// inside the keeper task, and triggers wait in the queue.
    async fn refresh(&mut self, why: RefreshReason) {
        if self.cfg.provider == TokenProviderKind::None {
            return;
        }
        // A manual provider with a refresh token (Fyers) tries it before asking a person.
        if self.manual() && !self.provider.can_refresh() {
            self.needs_login(self.manual_login_needed());
            return;
        }
        // A request a person has yet to approve is not sent again until it lapses.
        if self.awaiting_approval() {
            return;
        }
        if let Some(f) = self.following() {
            self.ask_leader(&f, why == RefreshReason::Requested).await;
            return;
        }
        if self.pending.is_some() {
            // A token is in hand: a new login would kill it. Write it instead.
            self.retry_write().await;
            return;
        }
        if self.adopt_external_token().await {
            return;
        }
        if let Some(b) = self.block() {
            self.needs_login(login_steps::blocked_message(&b.reason));
            return;
        }
        if let Some(until) = self.broker_not_before.filter(|t| Instant::now() < *t) {
            // The retry is already set for that moment.
            self.retry_at = Some(self.retry_at.map_or(until, |r| r.max(until)));
            return;
        }
        if !self.try_refresh_token().await {
            return;
        }
        if self.manual() {
            self.needs_login(self.manual_login_needed());
            return;
        }
        // The kept web session first: no credentials, not an attempt (SPEC §4.1). It creates
        // a session all the same, so in a fleet only a confirmed leader may use it.
        if self.login_kind() == LoginKind::Totp {
            if !self.coordination.may_log_in().await {
                return;
            }
            if !self.try_session().await {
                return;
            }
        }
        if !self.within_caps() {
            return;
        }
        let now = Instant::now();
        if let Some(wait) = self.provider.fresh_code_in() {
            self.retry_at = Some(now + wait);
            return;
        }
        let step = match self.login_kind() {
            LoginKind::Totp => match self.totp_step().await {
                Some(step) => Some(step),
                None => return,
            },
            _ => None,
        };
        if !self.coordination.may_log_in().await {
            return;
        }
        if self.login_kind() == LoginKind::Totp && !self.claim_fleet_totp_step(now).await {
            return;
        }
        if !self.record_attempt() {
            return;
        }
        self.retry_at = None;
        let kind = self.login_kind().as_str();
        self.metrics.inc_login_attempt(kind);
        self.set_state(TokenState::Refreshing, None);
        tracing::info!(kind, why = why.as_str(), "refreshing the token");
        let started = Instant::now();
        let result = self.obtain(step).await;
        self.metrics
            .observe_refresh_duration(started.elapsed().as_secs_f64());
        self.conclude(kind, result).await;
    }

    /// The outcome of one login (automated or through the web session).
    async fn conclude(
        &mut self,
        kind: &'static str,
        result: Result<TokenRecord, LoginError<P::Error>>,
    ) {
        match result {
            Ok(rec) => match self.commit(rec).await {
                Ok(()) => {
                    self.transient_failures = 0;
                    self.metrics.inc_refresh("success", kind);
                }
                Err(e) => {
                    self.metrics.inc_refresh("failure", kind);
                    self.fail_transient(format!("cannot store the new token: {e}"));
                }
            },
            Err(LoginError::AwaitingApproval) => {
                if !self.awaiting_approval() {
                    self.needs_login(LoginError::<P::Error>::AwaitingApproval.to_string());
                }
            }
            Err(e) => {
                self.metrics.inc_refresh("failure", kind);
                if is_rejection(e.failure()) {
                    self.on_rejection(&e);
                } else if let Some(wait) = e.retry_after() {
                    self.wait_out_broker_window(wait, e.to_string());
                } else {
                    self.fail_transient(e.to_string());
                }
            }
        }
    }

    /// Put a token this warden obtained (or adopted) in place. In fleet mode the leader shares
    /// it first, under its fence: refused means a newer leader exists, and the token is dropped.
    async fn commit(&mut self, rec: TokenRecord) -> Result<(), CommitError> {
        if let Some(f) = self.coordination.fleet().cloned() {
            match f.publish(&rec).await {
                Ok(true) => {
                    self.unshared = false;
                    self.current_fence = f.status().borrow().fence;
                }
                Ok(false) => {
                    tracing::warn!(
                        "the shared store refused this warden's token: a newer leader took over"
                    );
                    return Err(CommitError::Fenced);
                }
                Err(e) => {
                    tracing::warn!("cannot share the new token ({e}); using it here and sharing it when the store is back");
                    self.unshared = true;
                }
            }
        }
        if let Err(e) = self.install(rec.clone(), true) {
            // The broker already made this the one live token: keep it and write it later.
            self.keep_unwritten(rec, e);
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
