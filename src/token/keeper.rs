//! The token keeper: one task that owns the broker token (DESIGN "Token keeper rules").
//!
//! Every trigger — a probe's 403, the periodic validation, the daily schedule, SIGUSR1, the
//! API, the manual-login callback, an external `.env` change — arrives here as a message and
//! is handled one at a time, so there is never more than one login in flight: triggers that
//! queue up behind a refresh find a valid token when their turn comes and do nothing.
//! A token is written only after `/user/profile` accepted it, and announced to the supervisor
//! only after it is in the env file, so programs started later never need a signal.

mod login_steps;
mod pending_write;

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

use super::attempt_budget::AttemptBudget;
use super::broker::Broker;
use super::clock::Clock;
use super::fleet::{Fleet, FleetEvent, FleetStatus, Rejection, Reply, Request, Role, SharedToken};
use super::login_memory::LoginMemory;
use super::provider::configured::Configured;
use super::provider::{Failure, Grant, Identity, LoginKind, Provider, ProviderError};
use super::schedule::{last_before, next_after, parse_hhmm};
use super::{store, TokenRecord, TokenSource};
use crate::config::{Secret, TokenConfig, TokenProviderKind};
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
    /// Set while the env file can be read by its group or everyone (issue 12): what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_file_warning: Option<String>,
    /// Why automated login is blocked by a credential rejection (SPEC §4.1), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
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
    /// `warden token unblock`: lift a credential block (the reply says why not, if not).
    Unblock(oneshot::Sender<Result<(), String>>),
    /// warden is stopping: give up the fleet lock (answered when done).
    Shutdown(oneshot::Sender<()>),
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
    Broker(Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot store the token: {0}")]
    Store(#[from] CommitError),
    #[error("this warden has no [token.kite] configured")]
    NotKite,
    /// Fleet mode: the login could not reach the leader, or the leader failed it.
    #[error("{0}")]
    Fleet(String),
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
/// Fleet mode: how often a follower with a rejected token asks the leader again.
const ASK_INTERVAL: Duration = Duration::from_secs(10);
/// Fleet mode: how long a manual login that landed on a follower waits for the leader.
const FORWARD_WAIT: Duration = Duration::from_secs(30);
/// Fleet mode: how long start-up waits for the first election before deciding anything.
const FLEET_SETTLE: Duration = Duration::from_secs(3);
/// Fleet mode: when the broker could not say whether a shared token is good, read it again.
const SHARED_RECHECK: Duration = Duration::from_secs(5);

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
    fleet: Option<Fleet>,
    fleet_rx: Option<UnboundedReceiver<FleetEvent>>,
    /// The fence of the shared token `current` came from (0: found or obtained locally).
    current_fence: u64,
    /// Fleet mode: when this follower last asked the leader for a token.
    last_ask: Option<Instant>,
    /// Fleet mode: this leader obtained a token while the store was unreachable.
    unshared: bool,
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
}

fn rfc3339(t: i64) -> Option<String> {
    Timestamp::from_second(t).ok().map(|t| t.to_string())
}

impl<B: Broker> Keeper<Configured<B>> {
    /// The keeper of `[token] provider` (Kite or a command), talking to Kite through `broker`.
    pub fn spawn(
        setup: KeeperSetup,
        broker: B,
        events: UnboundedSender<KeeperEvent>,
    ) -> KeeperHandle {
        let provider = Configured::new(
            &setup.cfg,
            broker,
            setup.reaper.clone(),
            setup.config_dir.clone(),
        );
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
        let (fleet, fleet_rx) = setup
            .fleet
            .map_or((None, None), |(f, rx)| (Some(f), Some(rx)));
        let fleet_status = fleet.as_ref().map(Fleet::status);
        let fleet_store = fleet.clone();
        let memory = LoginMemory::load(&setup.state_dir);
        let budget = AttemptBudget::from_config(&setup.cfg);
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
            transient_failures: 0,
            memory,
            budget,
            pending: None,
            write_retry_at: None,
            write_failures: 0,
            env_watch: None,
            env_rx: None,
            fleet,
            fleet_rx,
            current_fence: 0,
            last_ask: None,
            unshared: false,
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

    /// Fleet mode, and another warden does the logging in.
    fn following(&self) -> Option<Fleet> {
        self.fleet.clone().filter(|f| f.role() != Role::Leader)
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
                        if let Some(f) = self.following() {
                            // The leader logs in; waiting for it must not stall this loop.
                            tokio::spawn(async move {
                                let _ = reply.send(forward_callback(&f, &request_token).await);
                            });
                        } else {
                            let r = self.on_callback(&request_token).await;
                            let _ = reply.send(r);
                        }
                    }
                    Some(KeeperMsg::Reconfigure(cfg)) => self.reconfigure(*cfg),
                    Some(KeeperMsg::Unblock(reply)) => self.on_unblock(reply).await,
                    Some(KeeperMsg::Shutdown(done)) => {
                        if let Some(f) = &self.fleet {
                            f.release().await;
                        }
                        let _ = done.send(());
                    }
                },
                Some(tok) = recv_opt(&mut self.env_rx) => self.on_env_change(tok).await,
                Some(ev) = recv_fleet(&mut self.fleet_rx) => self.on_fleet(ev).await,
                _ = tokio::time::sleep_until(next_check) => {
                    next_check = Instant::now() + self.cfg.check_interval;
                    self.validate_current().await;
                }
                _ = tokio::time::sleep_until(scheduled) => self.on_schedule().await,
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
            // A login or validation runs the TLS and HTTP client code once and rarely: give
            // those code pages back rather than keep them resident until the next minute's
            // trim (`crate::memtrim`). Real processes only, not simulations.
            if matches!(self.clock, Clock::System) {
                crate::memtrim::trim_own_code();
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

    /// Reuse a still-valid token (token.json, then the env file) rather than logging in again:
    /// a new login would kill the token other copies of the stack may be using.
    async fn startup(&mut self) {
        match &self.cfg.env_file_link {
            Some(link) => tracing::info!(
                "token env file: {} (the symlink {} points at it; warden writes and watches this file)",
                self.cfg.env_file.display(),
                link.display()
            ),
            None => tracing::info!("token env file: {}", self.cfg.env_file.display()),
        }
        self.check_env_file_mode();
        store::remove_stale_temp_files(&self.cfg.env_file);
        store::remove_stale_temp_files(&store::token_json_path(&self.state_dir));
        store::remove_stale_temp_files(self.memory.path());
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
        // Fleet mode: the shared token is the fleet's truth; try it before anything local.
        let mut candidates = Vec::new();
        if let Some(f) = self.fleet.clone() {
            f.settled(FLEET_SETTLE).await;
            match f.read_token().await {
                Ok(Some(shared)) => candidates.push((shared.rec, shared.fence)),
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot read the shared token: {e}"),
            }
        }
        // The env file is written before token.json, so when they differ the env file is the
        // newer one (or someone else's): try it first, token.json only as a fallback.
        if let Ok(Some(v)) = store::read_env_value(&self.cfg.env_file, &self.cfg.env_key) {
            match &stored {
                Some(rec) if rec.access_token.expose() == v => {}
                _ if v.is_empty() => {}
                _ => {
                    let now = self.clock.now();
                    candidates.push((
                        TokenRecord {
                            access_token: Secret::new(v),
                            user_id: String::new(),
                            obtained_at: now.as_second(),
                            expires_at: self.expiry_after(now).as_second(),
                            source: TokenSource::EnvFile,
                        },
                        0,
                    ));
                }
            }
        }
        candidates.extend(stored.map(|rec| (rec, 0)));
        let mut seen: Vec<Secret> = Vec::new();
        for (rec, fence) in candidates {
            if seen.contains(&rec.access_token) {
                continue;
            }
            seen.push(rec.access_token.clone());
            match self.check(&rec.access_token).await {
                Ok(identity) => {
                    let mut rec = rec;
                    if let Some(id) = identity {
                        rec.user_id = id.user_id;
                        if let Some(exp) = id.expires_at {
                            rec.expires_at = exp;
                        }
                    }
                    tracing::info!(
                        source = rec.source.as_str(),
                        "reusing the stored token: the broker accepts it"
                    );
                    if let Err(e) = self.install(rec, false) {
                        tracing::error!("cannot store the token: {e}");
                        continue;
                    }
                    self.current_fence = fence;
                    return;
                }
                Err(e) if e.failure() == Failure::Transient => {
                    // Broker unreachable: keep the token we have, validation will tell later.
                    tracing::warn!("cannot validate the stored token now ({e}); using it until the broker answers");
                    let _ = self.install(rec, false);
                    self.current_fence = fence;
                    self.set_state(TokenState::Unknown, Some(e.to_string()));
                    return;
                }
                Err(e) => tracing::info!("stored token is no longer valid ({e})"),
            }
        }
        self.set_state(TokenState::Expired, None);
        self.refresh(RefreshReason::Startup).await;
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

    async fn on_env_change(&mut self, tok: Secret) {
        if self.current.as_ref().is_some_and(|c| c.access_token == tok) {
            return;
        }
        tracing::info!(
            "{} changed by someone else; validating the new token",
            self.cfg.env_file.display()
        );
        match self.check(&tok).await {
            Ok(identity) => {
                let rec = self.record_of(tok, identity, TokenSource::EnvFile);
                if let Some(f) = self.following() {
                    // Adopt it here now; the leader validates it again and shares it.
                    let req = Request::Adopt {
                        access_token: rec.access_token.expose().to_string(),
                        from: f.id().to_string(),
                    };
                    if let Err(e) = f.request(&req).await {
                        tracing::warn!("cannot hand the external token to the fleet leader: {e}");
                    }
                    if let Err(e) = self.install(rec, true) {
                        tracing::error!("cannot adopt the external token: {e}");
                    }
                } else if let Err(e) = self.commit(rec).await {
                    tracing::error!("cannot adopt the external token: {e}");
                }
            }
            Err(e) => tracing::warn!("ignoring the external token: {e}"),
        }
    }

    /// Someone else (a refresh script) may have just written a new token into the env file,
    /// and the watcher's event may still be on its way: a login now would kill that token.
    /// Adopt it instead when the broker accepts it.
    async fn adopt_external_token(&mut self) -> bool {
        let Ok(Some(v)) = store::read_env_value(&self.cfg.env_file, &self.cfg.env_key) else {
            return false;
        };
        let known = self
            .current
            .as_ref()
            .is_some_and(|c| c.access_token.expose() == v);
        if v.is_empty() || known {
            return false;
        }
        let tok = Secret::new(v);
        if self.check(&tok).await.is_err() {
            return false;
        }
        self.on_env_change(tok).await;
        self.current
            .as_ref()
            .is_some_and(|c| c.source == TokenSource::EnvFile)
            && self.status.borrow().state == TokenState::Valid
    }

    /// One automated attempt, within every cap. Single-flight by construction: this runs
    /// inside the keeper task, and triggers wait in the queue.
    async fn refresh(&mut self, why: RefreshReason) {
        if self.cfg.provider == TokenProviderKind::None {
            return;
        }
        if self.manual() {
            self.needs_login("a manual Kite login is needed".into());
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
        // The kept web session first: no credentials, not an attempt (SPEC §4.1). It creates
        // a session all the same, so in a fleet only a confirmed leader may use it.
        if self.login_kind() == LoginKind::Totp {
            if let Some(f) = &self.fleet {
                if f.confirm_leader().await.is_none() {
                    tracing::warn!("no longer leading the fleet; leaving the login to the leader");
                    return;
                }
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
        if let Some(f) = &self.fleet {
            // The lock may have lapsed while this leader was busy or paused: a login by a
            // former leader would kill its successor's token.
            if f.confirm_leader().await.is_none() {
                tracing::warn!("no longer leading the fleet; leaving the login to the leader");
                return;
            }
            if self.login_kind() == LoginKind::Totp {
                let unix = self.clock.now().as_second().max(0) as u64;
                let step = unix / super::login::Totp::STEP_SECS;
                match f.claim_totp_steps(step).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // A leader may have used this step's code: wait for the next step.
                        let wait =
                            super::login::Totp::STEP_SECS - unix % super::login::Totp::STEP_SECS;
                        self.retry_at = Some(now + Duration::from_secs(wait));
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "cannot reserve a TOTP code in the fleet ({e}); not logging in"
                        );
                        self.retry_at = Some(now + ASK_INTERVAL);
                        return;
                    }
                }
            }
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
                self.needs_login(LoginError::<P::Error>::AwaitingApproval.to_string());
            }
            Err(e) => {
                self.metrics.inc_refresh("failure", kind);
                if is_rejection(e.failure()) {
                    self.on_rejection(&e);
                } else {
                    self.fail_transient(e.to_string());
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
        if let Some(f) = &self.fleet {
            f.share_needs_login(reason.clone());
        }
        self.set_state(TokenState::NeedsLogin, Some(reason));
        // One message per fleet, not one per warden.
        if self.following().is_none() {
            self.notifier.notify(NotifyEvent::TokenNeedsLogin {
                login_url: self.login_url.clone(),
            });
        }
    }

    /// One automated login with the provider, then the exchange and validation it needs.
    async fn obtain(&mut self, step: Option<u64>) -> Result<TokenRecord, LoginError<P::Error>> {
        let source = match self.login_kind() {
            LoginKind::Command => TokenSource::Command,
            LoginKind::Approve => TokenSource::Approve,
            LoginKind::Manual => TokenSource::Manual,
            LoginKind::Totp | LoginKind::None => TokenSource::Totp,
        };
        let user = self.provider.expected_user().to_string();
        let memory = &mut self.memory;
        let mut record = || {
            let Some(step) = step else { return true };
            memory.record_totp_step(&user, step);
            match memory.save() {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!("not submitting a TOTP code: {e}");
                    false
                }
            }
        };
        let grant = self
            .provider
            .login(step, &mut record)
            .await
            .map_err(LoginError::Provider)?;
        match grant {
            Grant::Code(code) => self.redeem(&code, source).await,
            Grant::Token(obtained) => self.record(obtained.access_token, source).await,
            Grant::Pending => Err(LoginError::AwaitingApproval),
        }
    }

    /// Exchange a one-time code (retrying transient failures with the same code) and
    /// validate the token.
    async fn redeem(
        &mut self,
        code: &Secret,
        source: TokenSource,
    ) -> Result<TokenRecord, LoginError<P::Error>> {
        let obtained = self
            .exchange_with_retry(code.expose())
            .await
            .map_err(LoginError::Provider)?;
        self.record(obtained.access_token, source).await
    }

    async fn record(
        &mut self,
        token: Secret,
        source: TokenSource,
    ) -> Result<TokenRecord, LoginError<P::Error>> {
        let identity = self.check(&token).await?;
        Ok(self.record_of(token, identity, source))
    }

    /// A token the broker accepted (or that nobody can check), dated now.
    fn record_of(
        &self,
        token: Secret,
        identity: Option<Identity>,
        source: TokenSource,
    ) -> TokenRecord {
        let now = self.clock.now();
        let identity = identity.unwrap_or_default();
        TokenRecord {
            access_token: token,
            user_id: identity.user_id,
            obtained_at: now.as_second(),
            expires_at: identity
                .expires_at
                .unwrap_or_else(|| self.expiry_after(now).as_second()),
            source,
        }
    }

    async fn on_callback(&mut self, request_token: &str) -> Result<(), CallbackError> {
        if self.provider.login_url(None).is_none() {
            return Err(CallbackError::NotKite);
        }
        self.metrics.inc_login_attempt("manual");
        let provider_error = |e: P::Error| CallbackError::Broker(Box::new(e));
        let obtained = self
            .exchange_with_retry(request_token)
            .await
            .map_err(provider_error)?;
        let expected = self.provider.expected_user().to_string();
        if !expected.is_empty() && obtained.user_id != expected {
            tracing::warn!(got = %obtained.user_id, "manual login by another broker user refused; logging that session out");
            let _ = self.provider.logout(&obtained.access_token).await;
            return Err(CallbackError::WrongUser);
        }
        let identity = self
            .provider
            .validate(&obtained.access_token)
            .await
            .map_err(provider_error)?;
        let now = self.clock.now();
        let rec = TokenRecord {
            access_token: obtained.access_token,
            user_id: obtained.user_id,
            obtained_at: now.as_second(),
            expires_at: identity
                .expires_at
                .unwrap_or_else(|| self.expiry_after(now).as_second()),
            source: TokenSource::Manual,
        };
        self.commit(rec).await?;
        self.lift_after_manual_login();
        self.retry_at = None;
        self.metrics.inc_refresh("success", "manual");
        Ok(())
    }

    /// Put a token this warden obtained (or adopted) in place. In fleet mode the leader shares
    /// it first, under its fence: refused means a newer leader exists, and the token is dropped.
    async fn commit(&mut self, rec: TokenRecord) -> Result<(), CommitError> {
        if let Some(f) = self.fleet.clone() {
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

    /// A follower whose token is rejected asks the leader (at most every ASK_INTERVAL, unless
    /// a person asked), and reminds it until a token arrives.
    async fn ask_leader(&mut self, f: &Fleet, force: bool) {
        let now = Instant::now();
        // The leader already waits for a person; asking again changes nothing.
        if !force && self.status.borrow().state == TokenState::NeedsLogin {
            return;
        }
        if !force
            && self
                .last_ask
                .is_some_and(|t| now.duration_since(t) < ASK_INTERVAL)
        {
            return;
        }
        self.last_ask = Some(now);
        let req = Request::Refresh {
            force,
            from: f.id().to_string(),
        };
        let msg = match f.request(&req).await {
            Ok(()) => {
                tracing::info!("asked the fleet leader for a new token");
                "waiting for the fleet leader to refresh the token".to_string()
            }
            Err(e) => format!("{e}; in fleet mode this warden does not log in by itself"),
        };
        let state = self.status.borrow().state;
        if state != TokenState::Valid {
            self.set_state(state, Some(msg));
            self.retry_at = Some(now + ASK_INTERVAL);
        }
    }

    async fn on_fleet(&mut self, ev: FleetEvent) {
        match ev {
            FleetEvent::Token(shared) => self.on_shared(shared).await,
            FleetEvent::Leading(true) => self.lead().await,
            FleetEvent::Leading(false) => {}
            FleetEvent::LeaderNeedsLogin(reason) => {
                // Every warden's page then offers the login, not only the leader's.
                if self.following().is_some() && self.status.borrow().state != TokenState::Valid {
                    self.set_state(
                        TokenState::NeedsLogin,
                        Some(format!(
                            "the fleet leader needs a person to log in: {reason}"
                        )),
                    );
                }
            }
            FleetEvent::Requests(reqs) => {
                for r in reqs {
                    self.on_request(r).await;
                }
            }
        }
    }

    /// A token from the shared store (its signature already verified by the fleet). It must be
    /// newer than ours (an old genuine record put back is a replay) and the broker must accept
    /// it for the configured user before anything is written (README "Trusting Redis").
    async fn on_shared(&mut self, shared: SharedToken) {
        if let Some(c) = &self.current {
            if c.access_token == shared.rec.access_token {
                self.current_fence = self.current_fence.max(shared.fence);
                return;
            }
        }
        let Some(f) = self.fleet.clone() else { return };
        let replay = self.current.as_ref().is_some_and(|c| {
            shared.fence <= self.current_fence && shared.rec.obtained_at <= c.obtained_at
        });
        if replay {
            f.reject(
                Rejection::Replay,
                &format!(
                    "its fence {} and obtained_at are not newer than those of the token in use \
                     (fence {}): an old record put back",
                    shared.fence, self.current_fence
                ),
            );
            return;
        }
        if !self.vet_shared(&f, &shared).await {
            return;
        }
        tracing::info!(fence = shared.fence, writer = %shared.writer, "new token from the fleet");
        self.current_fence = shared.fence;
        self.retry_at = None;
        if let Err(e) = self.install(shared.rec, true) {
            tracing::error!("cannot store the fleet's token: {e}");
        }
    }

    /// Ask the broker about a shared token before it is installed: `true` when it accepts it
    /// for the configured user (and the user the record names). A token of another user is a
    /// bad token, reported; a broker that cannot answer now means "look again shortly".
    async fn vet_shared(&mut self, f: &Fleet, shared: &SharedToken) -> bool {
        if !self.provider.can_validate() {
            tracing::warn!("ignoring the fleet's token: no [token.kite] to validate it with");
            return false;
        }
        let expected = self.provider.expected_user().to_string();
        match self.provider.validate(&shared.rec.access_token).await {
            Ok(p) => {
                let wrong = (!expected.is_empty() && p.user_id != expected)
                    || (!shared.rec.user_id.is_empty() && p.user_id != shared.rec.user_id);
                if wrong {
                    f.reject(
                        Rejection::User,
                        &format!(
                            "the broker says its token belongs to {} user {}, not {}",
                            self.provider.name(),
                            p.user_id,
                            if expected.is_empty() {
                                &shared.rec.user_id
                            } else {
                                &expected
                            }
                        ),
                    );
                    return false;
                }
                true
            }
            Err(e) if e.failure() == Failure::Transient => {
                tracing::warn!(
                    "cannot validate the fleet's new token now ({e}); looking again in {}s",
                    SHARED_RECHECK.as_secs()
                );
                f.resync_later(SHARED_RECHECK);
                false
            }
            Err(e) => {
                tracing::info!("ignoring the fleet's token: the broker does not accept it ({e})");
                false
            }
        }
    }

    /// This warden just became the leader: make sure the fleet has a good token.
    async fn lead(&mut self) {
        let Some(f) = self.fleet.clone() else { return };
        let shared = f.read_token().await.ok().flatten();
        let in_store = match (&shared, &self.current) {
            (Some(s), Some(c)) => s.rec.access_token == c.access_token,
            _ => false,
        };
        if let (Some(s), false) = (shared, in_store) {
            // The store may hold a newer token than this warden saw.
            self.on_shared(s).await;
        }
        self.validate_current().await;
        let in_store = match (f.read_token().await.ok().flatten(), &self.current) {
            (Some(s), Some(c)) => s.rec.access_token == c.access_token,
            (_, None) => true,
            (None, Some(_)) => false,
        };
        if (self.unshared || !in_store) && self.status.borrow().state == TokenState::Valid {
            if let Some(rec) = self.current.clone() {
                tracing::info!("sharing this warden's valid token with the fleet");
                if let Err(e) = f.publish(&rec).await {
                    tracing::warn!("cannot share the token: {e}");
                } else {
                    self.unshared = false;
                }
            }
        }
    }

    async fn on_request(&mut self, req: Request) {
        let Some(f) = self.fleet.clone() else { return };
        match req {
            Request::Refresh { force, from } => {
                tracing::info!(from = %from, force, "a follower asks for a token");
                let fresh = self.current.as_ref().is_some_and(|c| {
                    self.clock.now().as_second() - c.obtained_at
                        < self.cfg.min_interval.as_secs() as i64
                });
                if force && !fresh {
                    self.on_trigger(Trigger::Api).await;
                } else {
                    // The broker is the truth: a follower's 403 may be about an old token.
                    self.validate_current().await;
                    if self.status.borrow().state == TokenState::Valid {
                        if let Some(rec) = self.current.clone() {
                            let _ = f.publish(&rec).await;
                        }
                    }
                }
            }
            Request::Callback {
                request_token,
                reply,
                from,
                deadline,
            } => {
                if self.clock.now().as_second() > deadline {
                    tracing::info!(from = %from, "dropping a forwarded login nobody waits for");
                    return;
                }
                tracing::info!(from = %from, "completing a manual login forwarded by a follower");
                let r = self.on_callback(&request_token).await;
                let answer = Reply {
                    ok: r.is_ok(),
                    wrong_user: matches!(r, Err(CallbackError::WrongUser)),
                    error: r.err().map(|e| e.to_string()).unwrap_or_default(),
                };
                f.answer(&reply, &answer).await;
            }
            Request::Adopt { access_token, from } => {
                tracing::info!(from = %from, "a follower found a new token in its env file");
                self.on_env_change(Secret::new(access_token)).await;
            }
        }
    }

    /// Keep the status page's warning about a group- or world-readable env file current (the
    /// config check and the start-up log say it too; the file's mode can change any time).
    fn check_env_file_mode(&self) {
        let warning = crate::config::env_file::readable_by_others(&self.cfg.env_file);
        self.status.send_if_modified(|s| {
            let changed = s.env_file_warning != warning;
            s.env_file_warning = warning;
            changed
        });
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
        self.check_env_file_mode();
        if let Err(e) = store::write_token_json(&self.state_dir, &rec) {
            // The env file has it, which is what programs need; token.json only saves a
            // validation at the next start.
            tracing::warn!("the new token is in place, but {e}");
        }
        self.pending = None;
        self.write_retry_at = None;
        self.write_failures = 0;
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

async fn recv_fleet(rx: &mut Option<UnboundedReceiver<FleetEvent>>) -> Option<FleetEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A manual login that landed on a follower: the leader exchanges the request token (only
/// the leader talks to the login endpoints) and answers through Redis.
async fn forward_callback(f: &Fleet, request_token: &str) -> Result<(), CallbackError> {
    match f.forward_callback(request_token, FORWARD_WAIT).await {
        Ok(Some(r)) if r.ok => Ok(()),
        Ok(Some(r)) if r.wrong_user => Err(CallbackError::WrongUser),
        Ok(Some(r)) => Err(CallbackError::Fleet(format!(
            "the fleet leader could not complete the login: {}",
            r.error
        ))),
        Ok(None) => Err(CallbackError::Fleet(format!(
            "no fleet leader answered within {}s; try again from /login",
            FORWARD_WAIT.as_secs()
        ))),
        Err(e) => Err(CallbackError::Fleet(format!(
            "{e}: in fleet mode only the leader may log in; try again when the store is back"
        ))),
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
