//! The supervisor: one owner of all state, a `select!` loop over events.
//!
//! Observers (the reaper via program actors, signals, the config watcher, later probes, the
//! token keeper and HTTP) send events here; this loop decides and sends [`Control`] messages to
//! program actors. Nothing else mutates program state. Readers (HTTP, CLI) see a snapshot
//! published through a `watch` channel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::OnTokenChange;
use crate::config::{self, Config, ProgramConfig};
use crate::handover::{Verdict, Verification};
use crate::health::{HealthEvent, ProbeHandle};
use crate::metrics::Metrics;
use crate::model::time::now_second;
use crate::model::ProgramState;
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

pub use crate::model::{Health, ProgramStatus, ProgramsView};

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
}

/// The broker client and, in fleet mode, the started fleet the keeper works with.
pub struct TokenParts {
    pub broker: crate::token::broker::KiteBroker,
    pub fleet: Option<(
        crate::token::fleet::Fleet,
        UnboundedReceiver<crate::token::fleet::FleetEvent>,
    )>,
}

struct Entry {
    cfg: Arc<ProgramConfig>,
    control: UnboundedSender<Control>,
    /// The program should be running (cleared by shutdown and removal).
    wanted: bool,
    /// `Start` was sent since `wanted` was set.
    start_sent: bool,
    /// The actor has ended.
    gone: bool,
    /// The running health probe of the current process.
    probe: Option<ProbeHandle>,
    /// Token generation the current process has (from its spawn or its last hand-over).
    generation: u64,
    /// A token hand-over (signal or watch) that a probe has yet to confirm (SPEC §3.1).
    verification: Option<Verification>,
}

pub struct Supervisor {
    cfg: Config,
    reaper: Reaper,
    events_tx: UnboundedSender<(String, ProgramEvent)>,
    events: UnboundedReceiver<(String, ProgramEvent)>,
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
    /// The keeper finished its start-up check: programs that read the token may start.
    token_settled: bool,
    health_tx: UnboundedSender<HealthEvent>,
    health_rx: UnboundedReceiver<HealthEvent>,
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
        } = parts;
        let mut sup = Supervisor {
            metrics,
            notifier,
            token_parts: token,
            listener: Some(listener),
            signals: Some(signals),
            token_generation: Arc::new(AtomicU64::new(0)),
            keeper: None,
            keeper_tx,
            keeper_rx,
            token_settled: false,
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
        sup
    }

    /// A live view of every program's status, for HTTP and tests.
    pub fn view(&self) -> watch::Receiver<ProgramsView> {
        self.view.subscribe()
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
        self.entries.insert(
            name.clone(),
            Entry {
                cfg,
                control: tx,
                wanted: true,
                start_sent: false,
                gone: false,
                probe: None,
                generation: 0,
                verification: None,
            },
        );
        let status = ProgramStatus::new(&name, now_second());
        self.view.send_modify(|v| {
            v.insert(name, status);
        });
    }

    fn status(&self, name: &str) -> Option<ProgramStatus> {
        self.view.borrow().get(name).cloned()
    }

    fn dependency_ready(&self, name: &str) -> bool {
        self.status(name).is_some_and(|s| s.satisfies_dependency())
    }

    fn start_ready(&mut self) {
        let ready: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.wanted && !e.start_sent && !e.gone)
            .filter(|(_, e)| e.cfg.depends_on.iter().all(|d| self.dependency_ready(d)))
            // Write the token before starting the programs that read it.
            .filter(|(_, e)| {
                self.token_settled
                    || self.keeper.is_none()
                    || e.cfg.on_token_change == OnTokenChange::None
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in ready {
            if let Some(e) = self.entries.get_mut(&name) {
                e.start_sent = true;
                let _ = e.control.send(Control::Start);
            }
        }
    }

    fn on_program_event(&mut self, name: String, ev: ProgramEvent) {
        match ev {
            ProgramEvent::State { state, pid } => {
                if !matches!(state, ProgramState::Running | ProgramState::Starting) {
                    self.stop_probe(&name);
                }
                self.view.send_modify(|v| {
                    if let Some(s) = v.get_mut(&name) {
                        if s.state != state {
                            s.since = now_second();
                        }
                        s.state = state;
                        s.pid = pid;
                        if state != ProgramState::Running && state != ProgramState::Starting {
                            s.health = Health::Unknown;
                        }
                    }
                });
                self.metrics.set_program_state(&name, state.as_str());
                self.metrics.set_program_up(
                    &name,
                    matches!(state, ProgramState::Running | ProgramState::Starting),
                );
                if state == ProgramState::Fatal {
                    tracing::error!(program = %name, "program is fatal");
                    self.notifier.notify(NotifyEvent::ProgramFatal {
                        program: name.clone(),
                    });
                }
            }
            ProgramEvent::Spawned { pid, generation } => {
                if let Some(e) = self.entries.get_mut(&name) {
                    e.generation = generation;
                    e.verification = None;
                }
                self.start_probe(&name, pid);
            }
            ProgramEvent::Exited { status, .. } => {
                self.view.send_modify(|v| {
                    if let Some(s) = v.get_mut(&name) {
                        s.last_exit = Some(status);
                    }
                });
            }
            ProgramEvent::Restarting { reason } => {
                tracing::debug!(program = %name, reason = reason.as_str(), "restarting");
                self.metrics.inc_restart(&name, reason.as_str());
                self.view.send_modify(|v| {
                    if let Some(s) = v.get_mut(&name) {
                        s.restarts += 1;
                    }
                });
            }
            ProgramEvent::Signalled { pid, signal } => self.on_signalled(&name, pid, signal),
            ProgramEvent::Gone => self.on_gone(name),
        }
        self.start_ready();
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
        if let Some(e) = self.entries.get_mut(name) {
            if let Some(old) = e.probe.take() {
                old.abort();
            }
            if let Some(h) = &e.cfg.health {
                e.probe = Some(crate::health::spawn_probe(
                    name.to_string(),
                    pid,
                    h.clone(),
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

    /// A reload signal reached the program: its token hand-over starts now, and the probe
    /// is asked for an answer from after this moment.
    fn on_signalled(&mut self, name: &str, pid: i32, signal: Signal) {
        let current = self.status(name).and_then(|s| s.pid);
        let Some(e) = self.entries.get_mut(name) else {
            return;
        };
        if current != Some(pid) || signal != e.cfg.reload_signal.0 {
            return;
        }
        if let Some(v) = e.verification.as_mut().filter(|v| v.handed_at().is_none()) {
            let at = Instant::now();
            v.signal_delivered(at);
            if let Some(p) = &e.probe {
                p.handed_over(at);
            }
        }
    }

    fn on_health(&mut self, ev: HealthEvent) {
        let Some(current) = self.status(&ev.program) else {
            return;
        };
        if current.pid != Some(ev.pid) {
            return; // a probe result about a process that is already gone
        }
        let name = ev.program.clone();
        let changed = current.health != ev.health;
        self.view.send_modify(|v| {
            if let Some(s) = v.get_mut(&name) {
                s.health = ev.health;
                if ev.health == Health::Healthy && s.state == ProgramState::Starting {
                    s.state = ProgramState::Running;
                    s.since = now_second();
                }
            }
        });
        match ev.health {
            Health::Healthy => {
                if changed {
                    tracing::info!(program = %name, "healthy ({})", ev.detail);
                }
                if let Some(e) = self.entries.get_mut(&name) {
                    let verdict = e.verification.map(|v| (v.on_ok(ev.sent), v.handed_at()));
                    if let Some((Verdict::Verified, Some(at))) = verdict {
                        e.verification = None;
                        tracing::info!(
                            program = %name,
                            "token hand-over verified: {} to a probe sent {}ms after it",
                            ev.detail,
                            ev.sent.saturating_duration_since(at).as_millis()
                        );
                    }
                }
            }
            Health::Unhealthy => {
                tracing::warn!(program = %name, "unhealthy ({}); restarting", ev.detail);
                self.stop_probe(&name);
                if let Some(e) = self.entries.get(&name) {
                    let _ = e.control.send(Control::Restart(RestartReason::Unhealthy));
                }
            }
            Health::AuthFailed => {
                tracing::warn!(program = %name, "health check says the broker token is bad ({})", ev.detail);
                self.to_keeper(KeeperMsg::Trigger(Trigger::ProbeAuth(name.clone())));
            }
            Health::Unknown => {}
        }
        self.start_ready();
    }

    fn on_gone(&mut self, name: String) {
        self.stop_probe(&name);
        if let Some(e) = self.entries.get_mut(&name) {
            e.gone = true;
        }
        if let Some(cfg) = self.replacing.remove(&name) {
            let restarts = self.status(&name).map_or(0, |s| s.restarts + 1);
            self.entries.remove(&name);
            self.add_program(name.clone(), cfg);
            self.view.send_modify(|v| {
                if let Some(s) = v.get_mut(&name) {
                    s.restarts = restarts;
                }
            });
        } else if !self.cfg.programs.contains_key(&name) {
            self.entries.remove(&name);
            self.metrics.remove_program(&name);
            self.view.send_modify(|v| {
                v.remove(&name);
            });
        }
    }

    fn reload(&mut self) {
        let path = self.cfg.source.clone();
        let new = match config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("config reload rejected, nothing changed:\n{e}");
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
        for name in &d.removed {
            if let Some(e) = self.entries.get_mut(name) {
                e.wanted = false;
                let _ = e.control.send(Control::Shutdown);
            }
            self.replacing.remove(name);
        }
        for name in &d.changed {
            let cfg = new.programs[name].clone();
            match self.entries.get_mut(name) {
                Some(e) if !e.gone => {
                    e.wanted = false;
                    let _ = e.control.send(Control::Shutdown);
                    self.replacing.insert(name.clone(), cfg);
                }
                _ => {
                    self.entries.remove(name);
                    self.add_program(name.clone(), cfg);
                }
            }
        }
        for name in &d.added {
            self.add_program(name.clone(), new.programs[name].clone());
        }
        self.cfg = new;
        self.start_ready();
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
                self.token_settled = true;
                self.start_ready();
            }
            KeeperEvent::TokenChanged { generation } => self.hand_over(generation),
        }
    }

    /// Give running programs the new token (SPEC §3.1): reload signal or nothing (`watch`),
    /// then verify with a probe if they have a health check; or restart.
    fn hand_over(&mut self, generation: u64) {
        let view = self.view.borrow().clone();
        let verify_timeout = self.token_verify_timeout();
        for (name, e) in self.entries.iter_mut() {
            let Some(pid) = view.get(name).and_then(ProgramStatus::running_pid) else {
                continue;
            };
            if e.gone || e.generation >= generation {
                continue;
            }
            e.generation = generation;
            match e.cfg.on_token_change {
                OnTokenChange::Signal => {
                    let sig = e.cfg.reload_signal.0;
                    tracing::info!(program = %name, "sending {sig} for the new token");
                    let _ = e.control.send(Control::Signal { signal: sig, pid });
                    // Verified from the moment the actor confirms the delivery (Signalled).
                    if e.cfg.health.is_some() {
                        e.verification =
                            Some(Verification::signal_pending(Instant::now(), verify_timeout));
                    }
                }
                OnTokenChange::Watch => {
                    // The keeper wrote the file before it announced the change: the program
                    // can see the token from now on.
                    tracing::info!(program = %name, "the new token is in the env file it watches; sending nothing");
                    if let Some(p) = e.probe.as_ref().filter(|_| e.cfg.health.is_some()) {
                        let at = Instant::now();
                        e.verification = Some(Verification::handed(at, verify_timeout));
                        p.handed_over(at);
                    }
                }
                OnTokenChange::Restart => {
                    tracing::info!(program = %name, "restarting for the new token");
                    let _ = e.control.send(Control::Restart(RestartReason::Token));
                }
                OnTokenChange::None => {}
            }
        }
    }

    fn token_verify_timeout(&self) -> Duration {
        self.cfg
            .token
            .as_ref()
            .map_or(Duration::from_secs(30), |t| t.verify_timeout)
    }

    /// Programs handed a new token that answered no probe sent since with 2xx within
    /// `verify_timeout` get restarted.
    fn check_verifications(&mut self) {
        let now = Instant::now();
        let timeout = self.token_verify_timeout();
        for (name, e) in self.entries.iter_mut() {
            if e.verification.map(|v| v.on_tick(now)) == Some(Verdict::Restart) {
                e.verification = None;
                tracing::warn!(
                    program = %name,
                    "no 2xx answer to a probe within {} after the token hand-over; restarting",
                    humantime::format_duration(timeout)
                );
                let _ = e.control.send(Control::Restart(RestartReason::Token));
            }
        }
    }

    fn next_verification(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| e.verification.map(|v| v.deadline()))
            .min()
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
        };
        self.keeper = Some(Keeper::spawn(setup, broker, self.keeper_tx.clone()));
    }

    /// Fleet mode: hand the lock over now, so a successor need not wait for its TTL.
    fn release_fleet_lock(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let k = self.keeper.as_ref().filter(|k| k.fleet.is_some())?;
        let (done, rx) = tokio::sync::oneshot::channel();
        k.tx.send(KeeperMsg::Shutdown(done)).ok()?;
        Some(rx)
    }

    /// SPEC §7: to every running program's process group. Each signal names the process seen
    /// running, so the actor drops it rather than hit a replacement spawned in the meantime.
    fn forward(&self, sig: Signal) {
        let view = self.view.borrow();
        for (name, e) in &self.entries {
            let Some(pid) = view.get(name).and_then(ProgramStatus::running_pid) else {
                continue;
            };
            if !e.gone {
                tracing::debug!(program = %name, pid, "forwarding {sig}");
                let _ = e.control.send(Control::Signal { signal: sig, pid });
            }
        }
    }

    /// Restart one program on request (HTTP, CLI). Leaves `fatal` with a fresh budget.
    pub fn restart(&mut self, name: &str, reason: RestartReason) -> bool {
        match self.entries.get_mut(name) {
            Some(e) if !e.gone => {
                e.wanted = true;
                e.start_sent = true;
                let _ = e.control.send(Control::Restart(reason));
                true
            }
            _ => false,
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
        let kite = self.cfg.token.as_ref().and_then(|t| t.kite.as_ref());
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
            login: kite.map(crate::http::login::LoginLink::from_kite),
            login_states: std::sync::Arc::new(crate::token::login_state::LoginStates::new(
                self.cfg.token.as_ref().and_then(|t| t.kite.as_ref()),
                self.keeper.as_ref().and_then(|k| k.fleet_store.clone()),
            )),
        };
        if let Some(listener) = self.listener.take() {
            crate::http::serve(listener, &self.cfg.http.public_url, app)?;
        }
        tracing::info!(
            programs = self.entries.len(),
            "warden {} supervising",
            env!("CARGO_PKG_VERSION")
        );
        self.start_ready();
        crate::sdnotify::spawn(
            self.view(),
            self.keeper.as_ref().map(|k| k.status.clone()),
            &self.cfg,
        );
        let mut reload_at: Option<Instant> = None;
        loop {
            let verify_at = self.next_verification();
            tokio::select! {
                Some((name, ev)) = self.events.recv() => self.on_program_event(name, ev),
                Some(sig) = signals.recv() => match sig {
                    libc::SIGTERM | libc::SIGINT => {
                        let first = Signal::try_from(sig).map(|s| s.to_string()).unwrap_or_default();
                        tracing::info!("{first} received: stopping all programs");
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
                            self.forward(s);
                        }
                    }
                },
                Some(req) = requests.recv() => self.on_request(req),
                Some(ev) = self.health_rx.recv() => self.on_health(ev),
                Some(ev) = self.keeper_rx.recv() => self.on_keeper_event(ev),
                _ = sleep_until_opt(verify_at) => self.check_verifications(),
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
        for e in self.entries.values_mut() {
            e.wanted = false;
        }
        let mut stop_sent = BTreeSet::new();
        loop {
            let live: BTreeSet<String> = self
                .entries
                .iter()
                .filter(|(_, e)| !e.gone)
                .map(|(n, _)| n.clone())
                .collect();
            if live.is_empty() {
                break;
            }
            for name in &live {
                if stop_sent.contains(name) {
                    continue;
                }
                let has_live_dependent = live.iter().any(|other| {
                    other != name && self.entries[other].cfg.depends_on.iter().any(|d| d == name)
                });
                if !has_live_dependent {
                    let _ = self.entries[name].control.send(Control::Shutdown);
                    stop_sent.insert(name.clone());
                }
            }
            let give_up = killed_at.map(|t| t + KILL_WAIT);
            tokio::select! {
                Some((name, ev)) = self.events.recv() => {
                    if let ProgramEvent::Gone = ev {
                        if let Some(e) = self.entries.get_mut(&name) {
                            e.gone = true;
                        }
                    }
                    self.on_program_event_during_shutdown(name, ev);
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

    fn on_program_event_during_shutdown(&mut self, name: String, ev: ProgramEvent) {
        if let ProgramEvent::State { state, pid } = ev {
            self.view.send_modify(|v| {
                if let Some(s) = v.get_mut(&name) {
                    s.state = state;
                    s.pid = pid;
                }
            });
        }
    }

    /// Each actor SIGKILLs its own group at once, even in the middle of a graceful stop.
    fn kill_all(&mut self) {
        for e in self.entries.values().filter(|e| !e.gone) {
            let _ = e.control.send(Control::Kill);
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
