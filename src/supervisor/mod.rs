//! The supervisor: one owner of all state, a `select!` loop over events.
//!
//! Observers (the reaper via program actors, signals, the config watcher, probes, the token
//! keeper and HTTP) send events here. The decisions are made by [`decide::Core`], a synchronous
//! state machine (`handle(event) -> effects`, unit-tested without processes); this async shell
//! only turns messages into events and carries the effects out: [`Control`] messages to
//! program actors, probe tasks, keeper triggers, notifications. Nothing else mutates program
//! state. Readers (HTTP, CLI, sdnotify) see the core's projection, published through a `watch`
//! channel; the supervisor never reads its own published view.

pub mod decide;
mod history;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::Instant;

use self::decide::{Core, Effect, Event, Now};
use crate::config::{self, Config, ProgramConfig, TokenConfig, TokenProviderKind};
use crate::control::{TokenEntry, TokenTable};
use crate::health::{HealthEvent, ProbeHandle};
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifyEvent};
use crate::program::actor::ProgramActor;
use crate::program::{Control, ProgramEvent, RestartReason};
use crate::reaper::Reaper;
use crate::token::keeper::{
    Keeper, KeeperEvent, KeeperHandle, KeeperMsg, KeeperSetup, TokenStatus, Trigger,
};
use std::sync::atomic::AtomicU64;

/// Bursts of writes to the config file (editors write several times) become one reload.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(200);
/// After the shutdown budget, how long SIGKILLed groups get to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

use crate::model::ProgramsView;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

/// What `main` (the composition root) builds and hands in: the supervisor builds none of it.
pub struct Parts {
    pub reaper: Reaper,
    /// Already wired to the reaper and the notifier.
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
    /// The HTTP listener, bound by the caller (a busy port fails start-up before anything runs).
    pub listener: tokio::net::TcpListener,
    /// Signal numbers from `crate::signals::listen`, installed by the caller.
    pub signals: UnboundedReceiver<i32>,
    /// Builds the peers of one token's keeper (at start, and for a token a reload adds);
    /// `None` when that token cannot be kept (the reason is logged by the factory).
    pub token_parts: TokenPartsFactory,
    /// The event history (issue 16), already wired to the notifier.
    pub journal: crate::journal::Journal,
}

/// See [`Parts::token_parts`].
pub type TokenPartsFactory = Box<dyn FnMut(&TokenConfig) -> Option<TokenParts> + Send>;

/// The broker client and, in fleet mode, the started fleet the keeper works with.
pub struct TokenParts {
    pub broker: crate::token::broker::KiteBroker,
    pub fleet: Option<(
        crate::token::fleet::Fleet,
        UnboundedReceiver<crate::token::fleet::FleetEvent>,
    )>,
}

/// What the shell holds for one program: the ways to reach its tasks.
struct Entry {
    control: UnboundedSender<Control>,
    /// The running health probe of the current process.
    probe: Option<ProbeHandle>,
}

pub struct Supervisor {
    cfg: Config,
    reaper: Reaper,
    events_tx: UnboundedSender<(String, ProgramEvent)>,
    events: UnboundedReceiver<(String, ProgramEvent)>,
    /// The decisions and the records behind them.
    core: Core,
    entries: BTreeMap<String, Entry>,
    /// Changed programs whose old actor is still stopping; started with this config once gone.
    replacing: BTreeMap<String, ProgramConfig>,
    view: watch::Sender<ProgramsView>,
    probe_client: crate::health::ProbeClient,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    /// One sequence for every keeper (program actors read it right before each spawn).
    token_generation: Arc<AtomicU64>,
    /// One keeper per token (SPEC §9.1), by name, with what front ends reach it by.
    keepers: BTreeMap<String, (KeeperHandle, TokenEntry)>,
    /// The front ends' view of `keepers`, republished when a reload changes the set.
    token_table: watch::Sender<TokenTable>,
    keeper_tx: UnboundedSender<KeeperEvent>,
    keeper_rx: UnboundedReceiver<KeeperEvent>,
    token_parts: TokenPartsFactory,
    listener: Option<tokio::net::TcpListener>,
    signals: Option<UnboundedReceiver<i32>>,
    health_tx: UnboundedSender<HealthEvent>,
    health_rx: UnboundedReceiver<HealthEvent>,
    /// `[market]` as a calendar; a reload sends the new one to its followers.
    market: watch::Sender<crate::market::MarketCalendar>,
    journal: crate::journal::Journal,
}

/// The longest of the tokens' `verify_timeout`s: the hand-over check is one per program.
fn verify_timeout(cfg: &Config) -> Duration {
    cfg.token_list()
        .iter()
        .map(|t| t.verify_timeout)
        .max()
        .unwrap_or(Duration::from_secs(30))
}

/// What front ends reach one token by: its status, its keeper, its manual login.
fn token_entry(name: &str, t: &TokenConfig, handle: &KeeperHandle) -> TokenEntry {
    let login = crate::token::provider::configured::manual_login_provider(t).map(|provider| {
        crate::control::LoginRoute {
            provider,
            carries_state: provider != "dhan",
        }
    });
    TokenEntry {
        name: name.to_string(),
        status: handle.status.clone(),
        keeper: handle.tx.clone(),
        login,
        login_states: Arc::new(crate::token::login_state::LoginStates::new(
            t.kite.as_ref(),
            handle.fleet_store.clone(),
        )),
        store: handle.fleet.clone(),
    }
}

/// Tokens a keeper runs for, by name (`provider = "none"` has none).
fn kept_tokens(cfg: &Config) -> BTreeMap<String, TokenConfig> {
    cfg.token_list()
        .into_iter()
        .filter(|t| t.provider != TokenProviderKind::None)
        .map(|t| (t.display_name(), t.clone()))
        .collect()
}

impl Supervisor {
    pub fn new(cfg: Config, parts: Parts) -> Self {
        let (events_tx, events) = unbounded_channel();
        let (view, _) = watch::channel(ProgramsView::new());
        let (health_tx, health_rx) = unbounded_channel();
        let (keeper_tx, keeper_rx) = unbounded_channel();
        let Parts {
            reaper,
            metrics,
            notifier,
            listener,
            signals,
            token_parts,
            journal,
        } = parts;
        let mut sup = Supervisor {
            core: Core::new(verify_timeout(&cfg)),
            metrics,
            notifier,
            token_parts,
            listener: Some(listener),
            signals: Some(signals),
            token_generation: Arc::new(AtomicU64::new(0)),
            keepers: BTreeMap::new(),
            token_table: watch::channel(Arc::new(Vec::new())).0,
            keeper_tx,
            keeper_rx,
            probe_client: crate::health::client(),
            health_tx,
            health_rx,
            market: watch::channel(crate::market::MarketCalendar::from_config(&cfg.market)).0,
            cfg,
            reaper,
            events_tx,
            events,
            entries: BTreeMap::new(),
            replacing: BTreeMap::new(),
            view,
            journal,
        };
        let programs: Vec<_> = sup
            .cfg
            .programs
            .iter()
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        for (name, cfg) in programs {
            sup.add_program(name, cfg);
        }
        sup.publish();
        sup
    }

    /// A live view of every program's status, for HTTP and tests.
    pub fn view(&self) -> watch::Receiver<ProgramsView> {
        self.view.subscribe()
    }

    /// Publish the core's projection (readers are only woken when it changed).
    fn publish(&self) {
        let next = self.core.view();
        self.view.send_if_modified(|v| {
            let changed = *v != next;
            if changed {
                *v = next;
            }
            changed
        });
    }

    fn add_program(&mut self, name: String, cfg: ProgramConfig) {
        let cfg = Arc::new(cfg);
        let (tx, rx) = unbounded_channel();
        let actor = ProgramActor::new(
            name.clone(),
            cfg.clone(),
            self.reaper.clone(),
            self.events_tx.clone(),
            rx,
            self.token_generation.clone(),
        );
        self.metrics.init_program(&name, cfg.health.is_some());
        tokio::spawn(actor.run());
        self.core.add(&name, cfg, crate::model::time::now_second());
        self.entries.insert(
            name,
            Entry {
                control: tx,
                probe: None,
            },
        );
    }

    /// Carry out what the core decided.
    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { program, control } => {
                    if let Some(e) = self.entries.get(&program) {
                        let _ = e.control.send(control);
                    }
                }
                Effect::StartProbe { program, pid } => self.start_probe(&program, pid),
                Effect::StopProbe { program } => self.stop_probe(&program),
                Effect::ProbeHandedOver { program, at } => {
                    if let Some(p) = self.entries.get(&program).and_then(|e| e.probe.as_ref()) {
                        p.handed_over(at);
                    }
                }
                Effect::TokenRejected { program } => {
                    // The program's tokens: each keeper validates before it logs in.
                    let uses = self.core.config(&program).cloned();
                    for (name, (k, _)) in &self.keepers {
                        if uses.as_ref().is_none_or(|c| c.uses_token(name)) {
                            let _ =
                                k.tx.send(KeeperMsg::Trigger(Trigger::ProbeAuth(program.clone())));
                        }
                    }
                }
                Effect::Fatal { program } => {
                    tracing::error!(program = %program, "program is fatal");
                    crate::journal::programs::fatal(&self.journal, &program);
                    self.notifier.notify(NotifyEvent::ProgramFatal { program });
                }
            }
        }
    }

    fn handle(&mut self, event: Event) {
        let effects = self.core.handle(Now::read(), event);
        self.apply(effects);
        self.publish();
    }

    fn start_ready(&mut self) {
        let effects = self.core.start_ready();
        self.apply(effects);
    }

    fn on_program_event(&mut self, name: String, ev: ProgramEvent) {
        history::record(&self.journal, &name, &ev);
        match &ev {
            ProgramEvent::State { state, .. } => {
                self.metrics.set_program_state(&name, state.as_str());
                self.metrics.set_program_up(&name, state.is_up());
                if *state == crate::model::ProgramState::Running {
                    self.notifier.program_recovered(&name);
                }
            }
            ProgramEvent::Restarting { reason } => {
                tracing::debug!(program = %name, reason = reason.as_str(), "restarting");
                self.metrics.inc_restart(&name, reason.as_str());
            }
            _ => {}
        }
        let gone = ev == ProgramEvent::Gone;
        self.handle(Event::Program {
            name: name.clone(),
            event: ev,
        });
        if gone {
            self.on_gone(name);
        }
        self.start_ready();
        self.publish();
    }

    fn start_probe(&mut self, name: &str, pid: i32) {
        let client = self.probe_client.clone();
        let events = self.health_tx.clone();
        let metrics = self.metrics.clone();
        let hook: crate::health::ResultHook = Arc::new(
            move |program: &str, result: crate::health::ProbeResult, took: Duration| {
                metrics.observe_health(program, result.as_str(), took.as_secs_f64());
            },
        );
        let health = self.core.config(name).and_then(|c| c.health.clone());
        if let Some(e) = self.entries.get_mut(name) {
            if let Some(old) = e.probe.take() {
                old.abort();
            }
            if let Some(h) = health {
                e.probe = Some(crate::health::spawn_probe(
                    name.to_string(),
                    pid,
                    h,
                    client,
                    events,
                    Some(hook),
                ));
            }
        }
    }

    fn stop_probe(&mut self, name: &str) {
        if let Some(p) = self.entries.get_mut(name).and_then(|e| e.probe.take()) {
            p.abort();
        }
    }

    fn on_health(&mut self, ev: HealthEvent) {
        self.handle(Event::Health {
            name: ev.program,
            pid: ev.pid,
            health: ev.health,
            sent: ev.sent,
            detail: ev.detail,
        });
        self.start_ready();
        self.publish();
    }

    /// The actor has ended: start a changed program's replacement, forget a removed one.
    fn on_gone(&mut self, name: String) {
        if let Some(cfg) = self.replacing.remove(&name) {
            let restarts = self.core.status(&name).map_or(0, |s| s.restarts + 1);
            self.core.remove(&name);
            self.entries.remove(&name);
            self.add_program(name.clone(), cfg);
            self.core.set_restarts(&name, restarts);
        } else if !self.cfg.programs.contains_key(&name) {
            self.core.remove(&name);
            self.entries.remove(&name);
            self.metrics.remove_program(&name);
        }
    }

    fn reload(&mut self) {
        let path = self.cfg.source.clone();
        let new = match config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("config reload rejected, nothing changed:\n{e}");
                crate::journal::reloads::rejected(&self.journal, &e);
                self.metrics.inc_config_reload(false);
                return;
            }
        };
        self.metrics.inc_config_reload(true);
        for w in &new.warnings {
            tracing::warn!("{}", w.located(&path, ""));
        }
        self.reload_tokens(&new);
        self.notifier.reconfigure(&self.cfg.notify, &new.notify);
        if new.market != self.cfg.market {
            let calendar = crate::market::MarketCalendar::from_config(&new.market);
            self.notifier.set_calendar(calendar.clone());
            self.market.send_replace(calendar);
        }
        let d = config::diff(&self.cfg, &new);
        tracing::info!(
            added = ?d.added, removed = ?d.removed, changed = ?d.changed,
            "config reloaded from {}", path.display()
        );
        crate::journal::reloads::reloaded(&self.journal, &d.added, &d.removed, &d.changed);
        for name in &d.removed {
            if self.core.unwant(name) {
                self.send(name, Control::Shutdown);
            }
            self.replacing.remove(name);
        }
        for name in &d.changed {
            let cfg = new.programs[name].clone();
            if self.core.unwant(name) {
                self.send(name, Control::Shutdown);
                self.replacing.insert(name.clone(), cfg);
            } else {
                self.core.remove(name);
                self.entries.remove(name);
                self.add_program(name.clone(), cfg);
            }
        }
        for name in &d.added {
            self.add_program(name.clone(), new.programs[name].clone());
        }
        self.core.set_verify_timeout(verify_timeout(&new));
        self.cfg = new;
        self.start_ready();
        self.publish();
    }

    fn send(&self, name: &str, control: Control) {
        if let Some(e) = self.entries.get(name) {
            let _ = e.control.send(control);
        }
    }

    fn on_request(&mut self, req: crate::control::Request) {
        match req {
            crate::control::Request::Restart { name, reply } => {
                let ok = self.restart(&name, RestartReason::Manual);
                if ok {
                    tracing::info!(program = %name, "restart requested");
                }
                let _ = reply.send(ok);
            }
        }
    }

    /// SIGUSR1: every token.
    fn request_refresh(&self, t: Trigger) {
        if self.keepers.is_empty() {
            tracing::info!("token refresh requested, but no token provider is configured");
        }
        for (k, _) in self.keepers.values() {
            let _ = k.tx.send(KeeperMsg::Trigger(t.clone()));
        }
    }

    fn on_keeper_event(&mut self, ev: KeeperEvent) {
        match ev {
            KeeperEvent::Settled { token } => {
                self.handle(Event::TokenSettled { token });
                self.start_ready();
            }
            KeeperEvent::TokenChanged { token, generation } => {
                self.handle(Event::TokenChanged { token, generation })
            }
        }
    }

    /// A keeper for every token of the config, each its own task (SPEC §9.1).
    fn start_keepers(&mut self) {
        for (name, t) in kept_tokens(&self.cfg) {
            self.start_keeper(name, t);
        }
        self.publish_tokens();
    }

    fn start_keeper(&mut self, name: String, tcfg: TokenConfig) {
        let Some(TokenParts { broker, fleet }) = (self.token_parts)(&tcfg) else {
            return;
        };
        let config_dir = self
            .cfg
            .source
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let login_path = if tcfg.named {
            format!("/login/{name}")
        } else {
            "/login".to_string()
        };
        let entry_cfg = tcfg.clone();
        let setup = KeeperSetup {
            fleet,
            cfg: tcfg,
            state_dir: self.cfg.supervisor.state_dir.clone(),
            config_dir,
            login_url: format!("{}{login_path}", self.cfg.http.public_url()),
            reaper: self.reaper.clone(),
            metrics: Arc::new(self.metrics.for_token(&name)),
            notifier: self.notifier.clone(),
            generation: self.token_generation.clone(),
            clock: crate::token::clock::Clock::System,
            watch_env_file: true,
            journal: self.journal.clone(),
        };
        let handle = Keeper::spawn(setup, broker, self.keeper_tx.clone());
        let entry = token_entry(&name, &entry_cfg, &handle);
        self.core.keep_token(&name);
        self.keepers.insert(name, (handle, entry));
    }

    /// Follow the tokens against the market calendar (README "Market hours"). The tokens are
    /// those kept at start; one added by a reload is followed from the next start.
    fn start_market_tracker(&self) -> watch::Receiver<crate::market::tracker::MarketView> {
        let tokens = self
            .keepers
            .iter()
            .map(|(name, (k, _))| (name.clone(), k.status.clone()))
            .collect();
        crate::market::tracker::spawn(crate::market::tracker::TrackerSetup {
            calendar: self.market.subscribe(),
            tokens,
            state_dir: self.cfg.supervisor.state_dir.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// Give the front ends the current set of tokens.
    fn publish_tokens(&self) {
        let table: Vec<TokenEntry> = self.keepers.values().map(|(_, e)| e.clone()).collect();
        self.token_table.send_replace(Arc::new(table));
    }

    /// Apply a reload to the tokens: each added one gets a keeper, each removed one loses its
    /// keeper, each changed one is reconfigured; the others are not touched (SPEC §9.1).
    fn reload_tokens(&mut self, new: &Config) {
        let before = kept_tokens(&self.cfg);
        let after = kept_tokens(new);
        let mut changed_set = false;
        for name in before.keys().filter(|n| !after.contains_key(*n)) {
            if let Some((k, _)) = self.keepers.remove(name) {
                tracing::info!(token = %name, "token removed from the config: its keeper stops");
                // Fleet mode gives up the lock; dropping the last sender ends the keeper.
                let (done, _) = tokio::sync::oneshot::channel();
                let _ = k.tx.send(KeeperMsg::Shutdown(done));
            }
            self.core.forget_token(name);
            self.metrics.remove_token(name);
            changed_set = true;
        }
        for (name, t) in &after {
            match before.get(name) {
                None => {
                    tracing::info!(token = %name, "token added to the config: starting its keeper");
                    // Its keeper reads this warden's settings (state_dir, public_url) from the new
                    // config, which is not in place yet.
                    let old = std::mem::replace(&mut self.cfg, new.clone());
                    self.start_keeper(name.clone(), t.clone());
                    self.cfg = old;
                    changed_set = true;
                }
                Some(old) if old != t => {
                    if let Some((k, entry)) = self.keepers.get_mut(name) {
                        let _ = k.tx.send(KeeperMsg::Reconfigure(Box::new(t.clone())));
                        // The manual login follows the new settings (its broker, its key).
                        *entry = token_entry(name, t, k);
                        changed_set = true;
                    }
                }
                Some(_) => {}
            }
        }
        if changed_set {
            self.publish_tokens();
        }
    }

    /// Fleet mode: hand the locks over now, so a successor need not wait for their TTL.
    fn release_fleet_locks(&self) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        self.keepers
            .values()
            .filter(|(k, _)| k.fleet.is_some())
            .filter_map(|(k, _)| {
                let (done, rx) = tokio::sync::oneshot::channel();
                k.tx.send(KeeperMsg::Shutdown(done)).ok()?;
                Some(rx)
            })
            .collect()
    }

    /// The only or first token's status (sdnotify's summary line).
    fn first_token_status(&self) -> Option<watch::Receiver<TokenStatus>> {
        self.keepers.values().next().map(|(k, _)| k.status.clone())
    }

    /// Restart one program on request (HTTP, CLI). Leaves `fatal` with a fresh budget.
    pub fn restart(&mut self, name: &str, reason: RestartReason) -> bool {
        match self.core.restart(name, reason) {
            Some(effects) => {
                self.apply(effects);
                true
            }
            None => false,
        }
    }

    /// Run until SIGTERM/SIGINT, then stop everything in reverse dependency order.
    pub async fn run(mut self) -> Result<(), SupervisorError> {
        // `run` consumes the supervisor, so the receiver is always there to take.
        let mut signals = self.signals.take().unwrap_or_else(|| unbounded_channel().1);
        let (watch_tx, mut config_changes) = unbounded_channel();
        let _watch = match crate::config_watch::watch(&self.cfg.source, watch_tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} for changes ({e}); reload with SIGHUP",
                    self.cfg.source.display()
                );
                None
            }
        };
        self.start_keepers();
        self.notifier.set_calendar(self.market.borrow().clone());
        let market = self.start_market_tracker();
        let (req_tx, mut requests) = unbounded_channel();
        let app = crate::http::AppState {
            views: crate::control::Views {
                programs: self.view(),
                tokens: self.token_table.subscribe(),
                orphans: self.reaper.orphan_counter(),
                held: self.notifier.held_view(),
                market: Some(market),
            },
            control: crate::control::Control::new(req_tx, self.token_table.subscribe()),
            api_token: self.cfg.http.api_token().cloned(),
            metrics: self.metrics.clone(),
            events: crate::http::events::EventsState::new(
                self.journal.clone(),
                self.cfg.token_list().first().map(|t| t.timezone.as_str()),
            ),
        };
        if let Some(listener) = self.listener.take() {
            crate::http::serve(listener, &self.cfg.http.public_url, app)?;
        }
        tracing::info!(
            programs = self.entries.len(),
            "warden {} supervising",
            env!("CARGO_PKG_VERSION")
        );
        crate::journal::warden::started(&self.journal, self.entries.len());
        self.start_ready();
        crate::sdnotify::spawn(self.view(), self.first_token_status(), &self.cfg);
        let mut reload_at: Option<Instant> = None;
        loop {
            let verify_at = self.core.next_deadline();
            tokio::select! {
                Some((name, ev)) = self.events.recv() => self.on_program_event(name, ev),
                Some(sig) = signals.recv() => match sig {
                    libc::SIGTERM | libc::SIGINT => {
                        let first = Signal::try_from(sig).map(|s| s.to_string()).unwrap_or_default();
                        tracing::info!("{first} received: stopping all programs");
                        crate::journal::warden::stopping(&self.journal, &first);
                        crate::sdnotify::stopping();
                        self.shutdown(&mut signals).await;
                        return Ok(());
                    }
                    libc::SIGHUP => {
                        tracing::info!("SIGHUP received: reloading config");
                        reload_at = None;
                        self.reload();
                    }
                    libc::SIGUSR1 => self.request_refresh(Trigger::Signal),
                    other => {
                        if let Ok(s) = Signal::try_from(other) {
                            self.handle(Event::Forward(s));
                        }
                    }
                },
                Some(req) = requests.recv() => self.on_request(req),
                Some(ev) = self.health_rx.recv() => self.on_health(ev),
                Some(ev) = self.keeper_rx.recv() => self.on_keeper_event(ev),
                _ = sleep_until_opt(verify_at) => self.handle(Event::Tick),
                Some(()) = config_changes.recv() => {
                    reload_at = Some(Instant::now() + RELOAD_DEBOUNCE);
                }
                _ = sleep_until_opt(reload_at) => {
                    reload_at = None;
                    self.reload();
                }
            }
        }
    }

    /// Graceful stop within `shutdown_timeout`: a program is stopped only once every program
    /// that depends on it has stopped. A second SIGINT, or the budget running out, has every
    /// remaining actor SIGKILL its group at once, graceful stop under way or not.
    async fn shutdown(&mut self, signals: &mut UnboundedReceiver<i32>) {
        let deadline = Instant::now() + self.cfg.supervisor.shutdown_timeout;
        let released = self.release_fleet_locks();
        let mut killed_at: Option<Instant> = None;
        self.replacing.clear();
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in &names {
            self.core.unwant(name);
        }
        let mut stop_sent = BTreeSet::new();
        loop {
            let live = self.core.live();
            if live.is_empty() {
                break;
            }
            for name in &live {
                if stop_sent.contains(name) {
                    continue;
                }
                let has_live_dependent = live.iter().any(|other| {
                    other != name
                        && self
                            .core
                            .config(other)
                            .is_some_and(|c| c.depends_on.iter().any(|d| d == name))
                });
                if !has_live_dependent {
                    self.send(name, Control::Shutdown);
                    stop_sent.insert(name.clone());
                }
            }
            let give_up = killed_at.map(|t| t + KILL_WAIT);
            tokio::select! {
                Some((name, ev)) = self.events.recv() => {
                    history::record(&self.journal, &name, &ev);
                    self.core.observe_during_shutdown(&name, &ev);
                    self.publish();
                }
                Some(sig) = signals.recv() => {
                    if sig == libc::SIGINT && killed_at.is_none() {
                        tracing::warn!("second SIGINT: killing all programs now");
                        self.kill_all();
                        killed_at = Some(Instant::now());
                    }
                }
                _ = tokio::time::sleep_until(deadline), if killed_at.is_none() => {
                    let waiting: Vec<_> = live.iter().cloned().collect();
                    tracing::warn!(?waiting, "shutdown_timeout ({:?}) passed: killing what is left", self.cfg.supervisor.shutdown_timeout);
                    self.kill_all();
                    killed_at = Some(Instant::now());
                }
                _ = sleep_until_opt(give_up) => {
                    tracing::error!("some programs did not go away after SIGKILL; exiting anyway");
                    break;
                }
            }
        }
        self.reaper.drain();
        tracing::info!("all programs stopped");
        // Bounded: a keeper busy with a login must not hold the exit up.
        let released_by = Instant::now() + Duration::from_secs(2);
        for rx in released {
            let _ = tokio::time::timeout_at(released_by, rx).await;
        }
    }

    /// Each actor SIGKILLs its own group at once, even in the middle of a graceful stop.
    fn kill_all(&mut self) {
        for name in self.core.live() {
            self.send(&name, Control::Kill);
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
