//! The lifecycle of one program: spawn, watch, back off, stop. One task per program.
//!
//! # Theory of operation
//!
//! **Who owns what.** The actor owns its program's process and process group and nothing else:
//! only the actor sends signals to that group (the supervisor never does, not even SIGKILL at
//! the end of a shutdown). Decisions that involve other programs (dependencies, health, tokens,
//! shutdown order) are the supervisor's. The actor's own decisions (restart policy, backoff,
//! restart budget, stop escalation) live in [`Lifecycle`], a synchronous state machine with no
//! I/O; this file is the async shell around it that waits and acts.
//!
//! **Messages.** In: [`Control`] from the supervisor (`Start`, `Stop`, `Restart`, `Signal`,
//! `Shutdown`, `Kill`), the leader's exit status from the reaper (a oneshot registered at
//! spawn), the group becoming empty (woken by every reap), and one timer. Out:
//! [`ProgramEvent`]s to the supervisor (`State`, `Spawned`, `Exited`, `Restarting`,
//! `Signalled`, and `Gone` last).
//!
//! **The loop.** One `select!` over the control channel, the leader's exit, the group emptying
//! (only while the machine waits for it) and the machine's timer; each wake-up becomes one
//! [`Input`], and the returned [`Effect`]s are carried out in order. Every control message is
//! heard in every phase: there is no await anywhere else.
//!
//! **A stop.** `stop_signal` and SIGCONT go to the group and the phase becomes `stopping` with
//! a deadline `stop_timeout` away; every 2 s the log names the program still holding it up.
//! The leader's exit is reported (`Exited`); then the group must empty. At the deadline SIGKILL
//! goes to the group, and 5 s after that the stop gives up on it. `Kill` (second SIGINT, the
//! shutdown budget running out) sends SIGKILL at once, in any phase of the stop. `Restart`,
//! `Stop`, `Start`, `Shutdown` arriving during a stop only change what follows it. When a
//! leader exits on its own and leaves members in its group, they are stopped the same way
//! before the restart policy is applied.
//!
//! **Signals.** A `Signal` names the pid the supervisor saw running; it is delivered only while
//! that very process is `running` (or `starting`), and dropped otherwise: a signal forwarded
//! while a program is being stopped for a restart never reaches the replacement, and a
//! stopping group (no longer running, SPEC §7) is not disturbed in its graceful stop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use super::lifecycle::{Effect, Input, Lifecycle};
use super::{spawn, Control, ProgramEvent};
use crate::config::ProgramConfig;
use crate::process_group::{group_alive, signal_group, wait_group_empty};
use crate::reaper::{ExitStatus, Reaper};

pub type EventSender = UnboundedSender<(String, ProgramEvent)>;

/// The running leader: its pid and the reaper's answer for it.
struct Leader {
    pid: i32,
    exit: oneshot::Receiver<ExitStatus>,
}

pub struct ProgramActor {
    name: String,
    cfg: Arc<ProgramConfig>,
    reaper: Reaper,
    events: EventSender,
    control: UnboundedReceiver<Control>,
    machine: Lifecycle,
    leader: Option<Leader>,
    token_generation: Arc<AtomicU64>,
}

impl ProgramActor {
    pub fn new(
        name: String,
        cfg: Arc<ProgramConfig>,
        reaper: Reaper,
        events: EventSender,
        control: UnboundedReceiver<Control>,
        token_generation: Arc<AtomicU64>,
    ) -> Self {
        ProgramActor {
            machine: Lifecycle::new(name.clone(), cfg.clone()),
            leader: None,
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

    pub async fn run(mut self) {
        let mut control_open = true;
        while !self.machine.ended() {
            let waits = self.machine.waits();
            let input = tokio::select! {
                ctl = self.control.recv(), if control_open => match ctl {
                    Some(ctl) => Input::Control(ctl),
                    None => {
                        // The supervisor is gone: stop gracefully and end.
                        control_open = false;
                        Input::Control(Control::Shutdown)
                    }
                },
                (pid, status) = leader_exit(&mut self.leader) => {
                    self.leader = None;
                    Input::LeaderExited { pid, status, group_alive: group_alive(pid) }
                }
                () = group_gone(&self.reaper, waits.group) => Input::GroupGone,
                () = sleep_until(waits.timer) => Input::Timer,
            };
            self.apply(input);
        }
        self.report(ProgramEvent::Gone);
    }

    /// Feed one input to the machine and carry out what it decides.
    fn apply(&mut self, input: Input) {
        let mut effects: VecDeque<Effect> = self.machine.handle(input, Instant::now()).into();
        while let Some(effect) = effects.pop_front() {
            match effect {
                Effect::Spawn => {
                    let answer = self.spawn();
                    effects.extend(self.machine.handle(answer, Instant::now()));
                }
                Effect::Signal { pgid, signal } => signal_group(pgid, signal),
                Effect::Report(ev) => self.report(ev),
                Effect::End => {}
            }
        }
    }

    fn spawn(&mut self) -> Input {
        // Read before the spawn: the keeper bumps it only after the env file holds the new
        // token, so a child spawned after this read sees at least this generation.
        let generation = self.token_generation.load(Ordering::SeqCst);
        match spawn::spawn(&self.reaper, &self.cfg) {
            Ok(sp) => {
                if let Some(fd) = sp.stdout {
                    crate::logs::pump(self.name.clone(), "stdout", fd);
                }
                if let Some(fd) = sp.stderr {
                    crate::logs::pump(self.name.clone(), "stderr", fd);
                }
                self.leader = Some(Leader {
                    pid: sp.pid,
                    exit: sp.exit,
                });
                Input::Spawned {
                    pid: sp.pid,
                    generation,
                }
            }
            Err(e) => Input::SpawnFailed(e.to_string()),
        }
    }
}

/// The leader's exit, or never when there is no leader.
async fn leader_exit(leader: &mut Option<Leader>) -> (i32, ExitStatus) {
    match leader {
        Some(l) => {
            // The reaper dropping the sender means it is gone; treat the process as killed.
            let status = (&mut l.exit)
                .await
                .unwrap_or(ExitStatus::Signal(libc::SIGKILL));
            (l.pid, status)
        }
        None => std::future::pending().await,
    }
}

/// The group emptying, or never when nothing waits for one.
async fn group_gone(reaper: &Reaper, group: Option<i32>) {
    match group {
        Some(pgid) => {
            // No deadline here: the machine's timer bounds the wait.
            let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
            wait_group_empty(reaper, pgid, far).await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
