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
use serde::Serialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{self, Config, ProgramConfig};
use crate::health::HealthEvent;
use crate::program::actor::ProgramActor;
use crate::program::group::signal_group;
use crate::program::{Control, ProgramEvent, ProgramState, RestartReason};
use crate::reaper::{ExitStatus, Reaper};

/// Bursts of writes to the config file (editors write several times) become one reload.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(200);
/// After the shutdown budget, how long SIGKILLed groups get to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// SPEC §5 health states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
    AuthFailed,
}

/// One row of `/api/v1/status`'s `programs`.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramStatus {
    pub name: String,
    pub state: ProgramState,
    pub pid: Option<i32>,
    pub restarts: u64,
    pub health: Health,
    /// RFC 3339 time of the last state change.
    pub since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitStatus>,
}

pub type ProgramsView = BTreeMap<String, ProgramStatus>;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the reaper: {0}")]
    Reaper(std::io::Error),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
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
    probe: Option<tokio::task::JoinHandle<()>>,
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
    health_tx: UnboundedSender<HealthEvent>,
    health_rx: UnboundedReceiver<HealthEvent>,
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Supervisor {
    pub fn new(cfg: Config, reaper: Reaper) -> Self {
        let (events_tx, events) = unbounded_channel();
        let (view, _) = watch::channel(ProgramsView::new());
        let (health_tx, health_rx) = unbounded_channel();
        let mut sup = Supervisor {
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
        );
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
            },
        );
        let status = ProgramStatus {
            name: name.clone(),
            state: ProgramState::Stopped,
            pid: None,
            restarts: 0,
            health: Health::Unknown,
            since: now_rfc3339(),
            last_exit: None,
        };
        self.view.send_modify(|v| {
            v.insert(name, status);
        });
    }

    fn status(&self, name: &str) -> Option<ProgramStatus> {
        self.view.borrow().get(name).cloned()
    }

    /// A dependency is satisfied by a program that is running (and healthy, when it has a
    /// health check: it is `starting` until then) or that ran to a successful end.
    fn dependency_ready(&self, name: &str) -> bool {
        match self.status(name) {
            Some(s) => {
                s.state == ProgramState::Running
                    || (s.state == ProgramState::Exited
                        && s.last_exit.is_some_and(ExitStatus::success))
            }
            None => false,
        }
    }

    fn start_ready(&mut self) {
        let ready: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.wanted && !e.start_sent && !e.gone)
            .filter(|(_, e)| e.cfg.depends_on.iter().all(|d| self.dependency_ready(d)))
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
                            s.since = now_rfc3339();
                        }
                        s.state = state;
                        s.pid = pid;
                        if state != ProgramState::Running && state != ProgramState::Starting {
                            s.health = Health::Unknown;
                        }
                    }
                });
                if state == ProgramState::Fatal {
                    tracing::error!(program = %name, "program is fatal");
                }
            }
            ProgramEvent::Spawned { pid } => self.start_probe(&name, pid),
            ProgramEvent::Exited { status, .. } => {
                self.view.send_modify(|v| {
                    if let Some(s) = v.get_mut(&name) {
                        s.last_exit = Some(status);
                    }
                });
            }
            ProgramEvent::Restarting { reason } => {
                tracing::debug!(program = %name, reason = reason.as_str(), "restarting");
                self.view.send_modify(|v| {
                    if let Some(s) = v.get_mut(&name) {
                        s.restarts += 1;
                    }
                });
            }
            ProgramEvent::Gone => self.on_gone(name),
        }
        self.start_ready();
    }

    fn start_probe(&mut self, name: &str, pid: i32) {
        let client = self.probe_client.clone();
        let events = self.health_tx.clone();
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
                    None,
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
        let Some(current) = self.status(&ev.program) else {
            return;
        };
        if current.pid != Some(ev.pid) {
            return; // a probe result about a process that is already gone
        }
        let name = ev.program.clone();
        self.view.send_modify(|v| {
            if let Some(s) = v.get_mut(&name) {
                s.health = ev.health;
                if ev.health == Health::Healthy && s.state == ProgramState::Starting {
                    s.state = ProgramState::Running;
                    s.since = now_rfc3339();
                }
            }
        });
        match ev.health {
            Health::Healthy => tracing::info!(program = %name, "healthy ({})", ev.detail),
            Health::Unhealthy => {
                tracing::warn!(program = %name, "unhealthy ({}); restarting", ev.detail);
                self.stop_probe(&name);
                if let Some(e) = self.entries.get(&name) {
                    let _ = e.control.send(Control::Restart(RestartReason::Unhealthy));
                }
            }
            Health::AuthFailed => {
                tracing::warn!(program = %name, "health check says the broker token is bad ({})", ev.detail)
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
                return;
            }
        };
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

    fn on_request(&mut self, req: crate::http::Request) {
        match req {
            crate::http::Request::Restart { name, reply } => {
                let ok = self.restart(&name, RestartReason::Manual);
                if ok {
                    tracing::info!(program = %name, "restart requested");
                }
                let _ = reply.send(ok);
            }
            crate::http::Request::RefreshToken => {
                tracing::info!("token refresh requested: no token provider configured")
            }
        }
    }

    fn forward(&self, sig: Signal) {
        for (name, e) in &self.entries {
            if !e.gone {
                tracing::debug!(program = %name, "forwarding {sig}");
                let _ = e.control.send(Control::Signal(sig));
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
        let (sig_tx, mut signals) = unbounded_channel();
        crate::signals::listen(sig_tx).map_err(SupervisorError::Signals)?;
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
        let (req_tx, mut requests) = unbounded_channel();
        let app = crate::http::AppState {
            programs: self.view(),
            requests: req_tx,
            api_token: self.cfg.http.api_token().cloned(),
            reaper: self.reaper.clone(),
        };
        crate::http::serve(self.cfg.http.listen, app).await?;
        tracing::info!(
            programs = self.entries.len(),
            "warden {} supervising",
            env!("CARGO_PKG_VERSION")
        );
        self.start_ready();
        let mut reload_at: Option<Instant> = None;
        loop {
            tokio::select! {
                Some((name, ev)) = self.events.recv() => self.on_program_event(name, ev),
                Some(sig) = signals.recv() => match sig {
                    libc::SIGTERM | libc::SIGINT => {
                        let first = Signal::try_from(sig).map(|s| s.to_string()).unwrap_or_default();
                        tracing::info!("{first} received: stopping all programs");
                        self.shutdown(&mut signals).await;
                        return Ok(());
                    }
                    libc::SIGHUP => {
                        tracing::info!("SIGHUP received: reloading config");
                        reload_at = None;
                        self.reload();
                    }
                    libc::SIGUSR1 => tracing::info!("SIGUSR1 received: no token provider configured"),
                    other => {
                        if let Ok(s) = Signal::try_from(other) {
                            self.forward(s);
                        }
                    }
                },
                Some(req) = requests.recv() => self.on_request(req),
                Some(ev) = self.health_rx.recv() => self.on_health(ev),
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
    /// that depends on it has stopped. A second SIGINT, or the budget running out, kills the
    /// remaining process groups at once.
    async fn shutdown(&mut self, signals: &mut UnboundedReceiver<i32>) {
        let deadline = Instant::now() + self.cfg.supervisor.shutdown_timeout;
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

    fn kill_all(&mut self) {
        let pids: Vec<i32> = self.view.borrow().values().filter_map(|s| s.pid).collect();
        for pid in pids {
            signal_group(pid, Signal::SIGKILL);
        }
        for e in self.entries.values() {
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
