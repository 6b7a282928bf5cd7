//! The lifecycle of one program: spawn, watch, back off, stop. One task per program.
//!
//! The actor owns its process and nothing else. It takes [`Control`] messages from the
//! supervisor and reports [`ProgramEvent`]s back; all decisions that involve other programs
//! (dependencies, health, tokens) are the supervisor's.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::backoff::{Backoff, RestartBudget};
use super::group::{signal_group, wait_group_empty};
use super::{spawn, Control, ProgramEvent, ProgramState, RestartReason};
use crate::config::{ProgramConfig, RestartPolicy};
use crate::reaper::{ExitStatus, Reaper};

/// How often the log names a program that is holding up a stop.
const STOP_NAG: Duration = Duration::from_secs(2);
/// After SIGKILL, how long to wait for the kernel to tear the group down.
const KILL_GRACE: Duration = Duration::from_secs(5);

pub type EventSender = UnboundedSender<(String, ProgramEvent)>;

struct Running {
    pid: i32,
    exit: oneshot::Receiver<ExitStatus>,
    started: Instant,
}

enum Phase {
    Idle,
    Spawn,
    Running(Running),
    Backoff(Instant),
    Fatal,
}

pub struct ProgramActor {
    name: String,
    cfg: Arc<ProgramConfig>,
    reaper: Reaper,
    events: EventSender,
    control: UnboundedReceiver<Control>,
    backoff: Backoff,
    budget: RestartBudget,
    /// With a health check the program is `starting` until the supervisor sees it healthy.
    starts_as: ProgramState,
    token_generation: Arc<std::sync::atomic::AtomicU64>,
}

impl ProgramActor {
    pub fn new(
        name: String,
        cfg: Arc<ProgramConfig>,
        reaper: Reaper,
        events: EventSender,
        control: UnboundedReceiver<Control>,
        token_generation: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        ProgramActor {
            backoff: Backoff::new(cfg.backoff_initial, cfg.backoff_max),
            budget: RestartBudget::new(cfg.max_restarts, cfg.restart_window),
            starts_as: if cfg.health.is_some() {
                ProgramState::Starting
            } else {
                ProgramState::Running
            },
            name,
            cfg,
            reaper,
            events,
            control,
            token_generation,
        }
    }

    fn report(&self, ev: ProgramEvent) {
        // The supervisor outlives every actor; a closed channel means it is gone too.
        let _ = self.events.send((self.name.clone(), ev));
    }

    fn state(&self, state: ProgramState, pid: Option<i32>) {
        self.report(ProgramEvent::State { state, pid });
    }

    pub async fn run(mut self) {
        let mut phase = Phase::Idle;
        loop {
            phase = match phase {
                Phase::Idle => match self.control.recv().await {
                    Some(Control::Start) | Some(Control::Restart(_)) => Phase::Spawn,
                    Some(Control::Stop) | Some(Control::Signal(_)) => Phase::Idle,
                    Some(Control::Shutdown) | Some(Control::Kill) | None => break,
                },
                Phase::Fatal => match self.control.recv().await {
                    Some(Control::Start) | Some(Control::Restart(_)) => {
                        self.budget.clear();
                        self.backoff.reset();
                        Phase::Spawn
                    }
                    Some(Control::Stop) => {
                        self.state(ProgramState::Stopped, None);
                        Phase::Idle
                    }
                    Some(Control::Signal(_)) => Phase::Fatal,
                    Some(Control::Shutdown) | Some(Control::Kill) | None => break,
                },
                Phase::Spawn => self.spawn(),
                Phase::Backoff(until) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => Phase::Spawn,
                        ctl = self.control.recv() => match ctl {
                            Some(Control::Start) | Some(Control::Restart(_)) => Phase::Spawn,
                            Some(Control::Stop) => {
                                self.state(ProgramState::Stopped, None);
                                Phase::Idle
                            }
                            Some(Control::Signal(_)) => Phase::Backoff(until),
                            Some(Control::Shutdown) | Some(Control::Kill) | None => break,
                        },
                    }
                }
                Phase::Running(mut run) => {
                    tokio::select! {
                        status = &mut run.exit => {
                            let status = status.unwrap_or(ExitStatus::Signal(libc::SIGKILL));
                            self.after_exit(run.pid, run.started, status).await
                        }
                        ctl = self.control.recv() => match ctl {
                            Some(Control::Start) => Phase::Running(run),
                            Some(Control::Signal(sig)) => {
                                signal_group(run.pid, sig);
                                self.report(ProgramEvent::Signalled { pid: run.pid, signal: sig });
                                Phase::Running(run)
                            }
                            Some(Control::Stop) => {
                                self.stop(run).await;
                                self.state(ProgramState::Stopped, None);
                                Phase::Idle
                            }
                            Some(Control::Restart(reason)) => {
                                self.stop(run).await;
                                self.restart_now(reason)
                            }
                            Some(Control::Kill) => {
                                self.kill(run).await;
                                break;
                            }
                            Some(Control::Shutdown) | None => {
                                self.stop(run).await;
                                self.state(ProgramState::Stopped, None);
                                break;
                            }
                        },
                    }
                }
            };
        }
        self.report(ProgramEvent::Gone);
    }

    fn spawn(&mut self) -> Phase {
        // Read before the spawn: the keeper bumps it only after the env file holds the new
        // token, so a child spawned after this read sees at least this generation.
        let generation = self
            .token_generation
            .load(std::sync::atomic::Ordering::SeqCst);
        match spawn::spawn(&self.reaper, &self.cfg) {
            Ok(sp) => {
                tracing::info!(program = %self.name, pid = sp.pid, "started");
                if let Some(fd) = sp.stdout {
                    crate::logs::pump(self.name.clone(), "stdout", fd);
                }
                if let Some(fd) = sp.stderr {
                    crate::logs::pump(self.name.clone(), "stderr", fd);
                }
                self.report(ProgramEvent::Spawned {
                    pid: sp.pid,
                    generation,
                });
                self.state(self.starts_as, Some(sp.pid));
                Phase::Running(Running {
                    pid: sp.pid,
                    exit: sp.exit,
                    started: Instant::now(),
                })
            }
            Err(e) => {
                tracing::error!(program = %self.name, "cannot start: {e}");
                self.after_failure(Duration::ZERO)
            }
        }
    }

    /// A restart the supervisor asked for: budgeted if automatic, then immediate.
    fn restart_now(&mut self, reason: RestartReason) -> Phase {
        if reason.counts_against_budget() && !self.budget.allow(std::time::Instant::now()) {
            return self.go_fatal();
        }
        self.report(ProgramEvent::Restarting { reason });
        Phase::Spawn
    }

    async fn after_exit(&mut self, pid: i32, started: Instant, status: ExitStatus) -> Phase {
        let ran_for = started.elapsed();
        tracing::warn!(program = %self.name, pid, "exited with {status} after {:.1?}", ran_for);
        self.report(ProgramEvent::Exited { pid, status });
        // The leader is gone; members it left behind in its group must not outlive it
        // (they would hold its port and its token across the restart).
        self.clear_group(pid).await;
        let restart = match self.cfg.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !status.success(),
            RestartPolicy::Never => false,
        };
        if !restart {
            self.state(ProgramState::Exited, None);
            return Phase::Idle;
        }
        self.after_failure(ran_for)
    }

    /// Schedule the next start after a failure, or give up when over budget.
    fn after_failure(&mut self, ran_for: Duration) -> Phase {
        if !self.budget.allow(std::time::Instant::now()) {
            return self.go_fatal();
        }
        let delay = self.backoff.next_delay(ran_for);
        self.report(ProgramEvent::Restarting {
            reason: RestartReason::Exit,
        });
        if delay.is_zero() {
            return Phase::Spawn;
        }
        tracing::info!(program = %self.name, "restarting in {:.1?}", delay);
        self.state(ProgramState::Backoff, None);
        Phase::Backoff(Instant::now() + delay)
    }

    fn go_fatal(&mut self) -> Phase {
        tracing::error!(
            program = %self.name,
            "restarted {} times within {:?}; giving up (state fatal) until `warden restart {}` or a config change",
            self.budget.used(),
            self.cfg.restart_window,
            self.name
        );
        self.state(ProgramState::Fatal, None);
        Phase::Fatal
    }

    /// stop_signal to the group, then SIGKILL after stop_timeout; returns when the whole
    /// group is gone.
    async fn stop(&mut self, mut run: Running) {
        self.state(ProgramState::Stopping, Some(run.pid));
        let sig = self.cfg.stop_signal.0;
        signal_group(run.pid, sig);
        // A stopped (SIGSTOP) group would never act on the signal.
        signal_group(run.pid, Signal::SIGCONT);
        let deadline = Instant::now() + self.cfg.stop_timeout;
        let mut leader_done = false;
        let mut nag = Instant::now() + STOP_NAG;
        loop {
            if leader_done && wait_group_empty(&self.reaper, run.pid, Instant::now()).await {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(program = %self.name, pid = run.pid, "did not stop within {:?} after {sig}; sending SIGKILL to its process group", self.cfg.stop_timeout);
                signal_group(run.pid, Signal::SIGKILL);
                if !leader_done {
                    let _ = tokio::time::timeout(KILL_GRACE, &mut run.exit).await;
                }
                wait_group_empty(&self.reaper, run.pid, Instant::now() + KILL_GRACE).await;
                break;
            }
            if now >= nag {
                let who = if leader_done {
                    "its process group"
                } else {
                    "it"
                };
                tracing::info!(program = %self.name, pid = run.pid, "waiting for {who} to exit after {sig}; SIGKILL in {:.0?}", deadline - now);
                nag = now + STOP_NAG;
            }
            let wake = nag.min(deadline);
            if leader_done {
                wait_group_empty(&self.reaper, run.pid, wake).await;
            } else {
                tokio::select! {
                    status = &mut run.exit => {
                        leader_done = true;
                        let status = status.unwrap_or(ExitStatus::Signal(libc::SIGKILL));
                        tracing::info!(program = %self.name, pid = run.pid, "stopped ({status})");
                        self.report(ProgramEvent::Exited { pid: run.pid, status });
                    }
                    _ = tokio::time::sleep_until(wake) => {}
                }
            }
        }
    }

    async fn kill(&mut self, mut run: Running) {
        signal_group(run.pid, Signal::SIGKILL);
        if let Ok(Ok(status)) = tokio::time::timeout(KILL_GRACE, &mut run.exit).await {
            self.report(ProgramEvent::Exited {
                pid: run.pid,
                status,
            });
        }
        wait_group_empty(&self.reaper, run.pid, Instant::now() + KILL_GRACE).await;
        self.state(ProgramState::Stopped, None);
    }

    /// Stop what is left of a group whose leader already exited.
    async fn clear_group(&mut self, pgid: i32) {
        if wait_group_empty(&self.reaper, pgid, Instant::now()).await {
            return;
        }
        signal_group(pgid, self.cfg.stop_signal.0);
        signal_group(pgid, Signal::SIGCONT);
        if !wait_group_empty(&self.reaper, pgid, Instant::now() + self.cfg.stop_timeout).await {
            signal_group(pgid, Signal::SIGKILL);
            wait_group_empty(&self.reaper, pgid, Instant::now() + KILL_GRACE).await;
        }
    }
}
