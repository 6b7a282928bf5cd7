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
use crate::config::{self, Config, ProgramConfig};
use crate::health::{HealthEvent, ProbeHandle};
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifyEvent};
use crate::program::actor::ProgramActor;
use crate::program::{Control, ProgramEvent, RestartReason};
use crate::reaper::Reaper;
use crate::token::keeper::{Keeper, KeeperEvent, KeeperHandle, KeeperMsg, KeeperSetup, Trigger};
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
    /// The token keeper's peers; `None` when warden keeps no token.
    pub token: Option<TokenParts>,
    /// The event history (issue 16), already wired to the notifier.
    pub journal: crate::journal::Journal,
}

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
    token_generation: Arc<AtomicU64>,
    keeper: Option<KeeperHandle>,
    keeper_tx: UnboundedSender<KeeperEvent>,
    keeper_rx: UnboundedReceiver<KeeperEvent>,
    /// Taken when the keeper starts.
    token_parts: Option<TokenParts>,
    listener: Option<tokio::net::TcpListener>,
    signals: Option<UnboundedReceiver<i32>>,
    health_tx: UnboundedSender<HealthEvent>,
    health_rx: UnboundedReceiver<HealthEvent>,
    journal: crate::journal::Journal,
}

fn verify_timeout(cfg: &Config) -> Duration {
    cfg.token
        .as_ref()
        .map_or(Duration::from_secs(30), |t| t.verify_timeout)
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
            token,
            journal,
        } = parts;
        let mut sup = Supervisor {
            core: Core::new(verify_timeout(&cfg)),
            metrics,
            notifier,
            token_parts: token,
            listener: Some(listener),
            signals: Some(signals),
            token_generation: Arc::new(AtomicU64::new(0)),
            keeper: None,
            keeper_tx,
            keeper_rx,
            probe_client: crate::health::client(),
            health_tx,
            health_rx,
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
                    self.to_keeper(KeeperMsg::Trigger(Trigger::ProbeAuth(program)));
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
        if new.token != self.cfg.token {
            match &new.token {
                Some(t) if self.keeper.is_some() => {
                    self.to_keeper(KeeperMsg::Reconfigure(Box::new(t.clone())))
                }
                _ => tracing::warn!("[token] provider added or removed: restart warden to apply"),
            }
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
            crate::control::Request::RefreshToken => self.request_refresh(Trigger::Api),
        }
    }

    fn to_keeper(&self, msg: KeeperMsg) {
        if let Some(k) = &self.keeper {
            let _ = k.tx.send(msg);
        }
    }

    fn request_refresh(&self, t: Trigger) {
        if self.keeper.is_none() {
            tracing::info!("token refresh requested, but no token provider is configured");
        }
        self.to_keeper(KeeperMsg::Trigger(t));
    }

    fn on_keeper_event(&mut self, ev: KeeperEvent) {
        match ev {
            KeeperEvent::Settled => {
                self.handle(Event::TokenSettled);
                self.start_ready();
            }
            KeeperEvent::TokenChanged { generation } => {
                self.handle(Event::TokenChanged { generation })
            }
        }
    }

    fn start_keeper(&mut self) {
        let Some(tcfg) = self.cfg.token.clone() else {
            return;
        };
        let Some(TokenParts { broker, fleet }) = self.token_parts.take() else {
            return;
        };
        let config_dir = self
            .cfg
            .source
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let setup = KeeperSetup {
            fleet,
            cfg: tcfg,
            state_dir: self.cfg.supervisor.state_dir.clone(),
            config_dir,
            login_url: format!("{}/login", self.cfg.http.public_url()),
            reaper: self.reaper.clone(),
            metrics: self.metrics.clone(),
            notifier: self.notifier.clone(),
            generation: self.token_generation.clone(),
            clock: crate::token::clock::Clock::System,
            watch_env_file: true,
            journal: self.journal.clone(),
        };
        self.keeper = Some(Keeper::spawn(setup, broker, self.keeper_tx.clone()));
        self.core.set_token_kept(true);
    }

    /// Fleet mode: hand the lock over now, so a successor need not wait for its TTL.
    fn release_fleet_lock(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let k = self.keeper.as_ref().filter(|k| k.fleet.is_some())?;
        let (done, rx) = tokio::sync::oneshot::channel();
        k.tx.send(KeeperMsg::Shutdown(done)).ok()?;
        Some(rx)
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
        self.start_keeper();
        let (req_tx, mut requests) = unbounded_channel();
        let app = crate::http::AppState {
            views: crate::control::Views {
                programs: self.view(),
                token: self.keeper.as_ref().map(|k| k.status.clone()),
                store: self.keeper.as_ref().and_then(|k| k.fleet.clone()),
                orphans: self.reaper.orphan_counter(),
            },
            control: crate::control::Control::new(
                req_tx,
                self.keeper.as_ref().map(|k| k.tx.clone()),
            ),
            api_token: self.cfg.http.api_token().cloned(),
            metrics: self.metrics.clone(),
            login: self.cfg.token.as_ref().and_then(|t| {
                let provider = crate::token::provider::configured::manual_login_provider(t)?;
                Some(crate::http::login::LoginRoute {
                    provider,
                    carries_state: provider != "dhan",
                })
            }),
            login_states: std::sync::Arc::new(crate::token::login_state::LoginStates::new(
                self.cfg.token.as_ref().and_then(|t| t.kite.as_ref()),
                self.keeper.as_ref().and_then(|k| k.fleet_store.clone()),
            )),
            events: crate::http::events::EventsState::new(
                self.journal.clone(),
                self.cfg.token.as_ref().map(|t| t.timezone.as_str()),
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
        crate::sdnotify::spawn(
            self.view(),
            self.keeper.as_ref().map(|k| k.status.clone()),
            &self.cfg,
        );
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
        let released = self.release_fleet_lock();
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
        if let Some(rx) = released {
            // Bounded: a keeper busy with a login must not hold the exit up.
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
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
