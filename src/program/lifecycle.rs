//! The decisions of one program's lifecycle, as a synchronous state machine.
//!
//! [`Lifecycle::handle`] takes one [`Input`] (a control message, a spawn result, the leader's
//! exit, the group emptying, a timer) and the current time, changes the phase and returns the
//! [`Effect`]s the actor's async shell must carry out (spawn, signal a group, report an event,
//! end). It does no I/O and reads no clock, so every path, including the ones that take
//! minutes with real processes (a stop that ends in SIGKILL, a crash loop going fatal), is
//! unit-tested below in microseconds. [`Lifecycle::waits`] tells the shell what to wait for
//! next: the group to empty, and the one timer (backoff end, stop deadline, nag).
//!
//! A stop is a phase, not a function call: while the group is being stopped every control
//! message is still heard. `Kill` escalates to SIGKILL at once; `Stop`, `Restart`, `Start`,
//! `Shutdown` only change what happens once the group is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::backoff::{Backoff, RestartBudget};
use super::{Control, ProgramEvent, ProgramState, RestartReason};
use crate::config::{ProgramConfig, RestartPolicy};
use crate::reaper::ExitStatus;

/// How often the log names a program that is holding up a stop.
pub const STOP_NAG: Duration = Duration::from_secs(2);
/// After SIGKILL, how long to wait for the kernel to tear the group down before giving up on it.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// `now + d`, saturating far in the future (a config may ask for absurd durations).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Something the shell observed.
#[derive(Debug)]
pub enum Input {
    Control(Control),
    /// The process the last [`Effect::Spawn`] asked for runs as `pid` (also its group id);
    /// `generation` is the token generation read just before the spawn.
    Spawned {
        pid: i32,
        generation: u64,
    },
    /// The last [`Effect::Spawn`] failed.
    SpawnFailed(String),
    /// The group leader `pid` was reaped; `group_alive`: members of its group remain.
    LeaderExited {
        pid: i32,
        status: ExitStatus,
        group_alive: bool,
    },
    /// The group named by [`Waits::group`] is empty.
    GroupGone,
    /// [`Waits::timer`] has passed.
    Timer,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Spawn the program and answer with [`Input::Spawned`] or [`Input::SpawnFailed`] at once.
    Spawn,
    /// Send `signal` to the process group `pgid`.
    Signal { pgid: i32, signal: Signal },
    /// Tell the supervisor.
    Report(ProgramEvent),
    /// The actor is done (its group is gone, or there never was one).
    End,
}

/// What the shell should wait for besides control messages and the leader's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Waits {
    /// Feed [`Input::GroupGone`] once this process group is empty.
    pub group: Option<i32>,
    /// Feed [`Input::Timer`] at this instant.
    pub timer: Option<Instant>,
}

/// What to do once a stopping group is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Stay stopped.
    Stay,
    /// Start again (a `Start` came after a `Stop`).
    Start,
    /// Start again, counted as a restart for `reason`.
    Restart(RestartReason),
    /// The leader exited on its own and left members behind: apply the restart policy.
    Policy {
        status: ExitStatus,
        ran_for: Duration,
    },
    /// End the actor (`Shutdown`, `Kill`).
    End,
}

#[derive(Debug, Clone, Copy)]
struct Stop {
    pgid: i32,
    leader_alive: bool,
    signal: Signal,
    /// Before SIGKILL: when it is sent. After: when the stop gives up on the group.
    deadline: Instant,
    killed: bool,
    /// When the log next names the program holding the stop up (requested stops only).
    nag: Option<Instant>,
    then: Then,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Not started yet, stopped, or exited for good.
    Idle,
    /// An [`Effect::Spawn`] is out; its answer comes before anything else.
    Spawning,
    Running {
        pid: i32,
        started: Instant,
    },
    Stopping(Stop),
    Backoff {
        until: Instant,
    },
    Fatal,
    Ended,
}

pub struct Lifecycle {
    name: String,
    cfg: Arc<ProgramConfig>,
    phase: Phase,
    backoff: Backoff,
    budget: RestartBudget,
    /// With a health check the program is `starting` until the supervisor sees it healthy.
    starts_as: ProgramState,
}

impl Lifecycle {
    pub fn new(name: String, cfg: Arc<ProgramConfig>) -> Self {
        Lifecycle {
            backoff: Backoff::new(cfg.backoff_initial, cfg.backoff_max),
            budget: RestartBudget::new(cfg.max_restarts, cfg.restart_window),
            starts_as: if cfg.health.is_some() {
                ProgramState::Starting
            } else {
                ProgramState::Running
            },
            phase: Phase::Idle,
            name,
            cfg,
        }
    }

    pub fn waits(&self) -> Waits {
        match self.phase {
            Phase::Backoff { until } => Waits {
                group: None,
                timer: Some(until),
            },
            Phase::Stopping(s) => Waits {
                group: (!s.leader_alive).then_some(s.pgid),
                timer: Some(s.nag.map_or(s.deadline, |n| n.min(s.deadline))),
            },
            _ => Waits::default(),
        }
    }

    pub fn ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        let phase = self.phase;
        self.phase = match input {
            Input::Control(ctl) => self.on_control(phase, ctl, now, &mut fx),
            Input::Spawned { pid, generation } => {
                tracing::info!(program = %self.name, pid, "started");
                fx.push(Effect::Report(ProgramEvent::Spawned { pid, generation }));
                fx.push(self.state(self.starts_as, Some(pid)));
                Phase::Running { pid, started: now }
            }
            Input::SpawnFailed(e) => {
                tracing::error!(program = %self.name, "cannot start: {e}");
                self.after_failure(Duration::ZERO, now, &mut fx)
            }
            Input::LeaderExited {
                pid,
                status,
                group_alive,
            } => self.on_leader_exit(phase, pid, status, group_alive, now, &mut fx),
            Input::GroupGone => match phase {
                Phase::Stopping(s) if !s.leader_alive => self.finish(s.then, now, &mut fx),
                other => other,
            },
            Input::Timer => self.on_timer(phase, now, &mut fx),
        };
        fx
    }

    fn state(&self, state: ProgramState, pid: Option<i32>) -> Effect {
        Effect::Report(ProgramEvent::State { state, pid })
    }

    fn spawn(&self, fx: &mut Vec<Effect>) -> Phase {
        fx.push(Effect::Spawn);
        Phase::Spawning
    }

    fn on_control(
        &mut self,
        phase: Phase,
        ctl: Control,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Phase {
        match (phase, ctl) {
            (Phase::Ended, _) | (Phase::Spawning, _) => phase,
            (_, Control::Signal { signal, pid }) => self.on_signal(phase, signal, pid, fx),
            (Phase::Running { pid, .. }, ctl) => match ctl {
                Control::Start | Control::Signal { .. } => phase,
                Control::Stop => self.begin_stop(pid, Then::Stay, now, fx),
                Control::Restart(reason) => self.begin_stop(pid, Then::Restart(reason), now, fx),
                Control::Shutdown => self.begin_stop(pid, Then::End, now, fx),
                Control::Kill => {
                    fx.push(self.state(ProgramState::Stopping, Some(pid)));
                    let mut stop = Stop {
                        pgid: pid,
                        leader_alive: true,
                        signal: Signal::SIGKILL,
                        deadline: now,
                        killed: false,
                        nag: None,
                        then: Then::End,
                    };
                    self.kill(&mut stop, now, fx);
                    Phase::Stopping(stop)
                }
            },
            (Phase::Stopping(mut stop), ctl) => {
                stop.then = match (stop.then, ctl) {
                    (_, Control::Kill) => {
                        if !stop.killed {
                            tracing::warn!(program = %self.name, pgid = stop.pgid, "kill requested while stopping: sending SIGKILL to its process group now");
                            self.kill(&mut stop, now, fx);
                        }
                        Then::End
                    }
                    (_, Control::Shutdown) | (Then::End, _) => Then::End,
                    (_, Control::Stop) => Then::Stay,
                    (_, Control::Restart(reason)) => Then::Restart(reason),
                    (Then::Stay, Control::Start) => Then::Start,
                    (then, _) => then,
                };
                Phase::Stopping(stop)
            }
            (Phase::Idle, Control::Start | Control::Restart(_)) => self.spawn(fx),
            (Phase::Fatal, Control::Start | Control::Restart(_)) => {
                self.budget.clear();
                self.backoff.reset();
                self.spawn(fx)
            }
            (Phase::Backoff { .. }, Control::Start | Control::Restart(_)) => self.spawn(fx),
            (Phase::Idle, Control::Stop) => Phase::Idle,
            (Phase::Fatal | Phase::Backoff { .. }, Control::Stop) => {
                fx.push(self.state(ProgramState::Stopped, None));
                Phase::Idle
            }
            (
                Phase::Idle | Phase::Fatal | Phase::Backoff { .. },
                Control::Shutdown | Control::Kill,
            ) => {
                fx.push(Effect::End);
                Phase::Ended
            }
        }
    }

    /// A signal for the process `target` (as the supervisor saw it running) reaches the group
    /// only if that process is still the running one: never a replacement spawned since,
    /// never a group that is being stopped (it is no longer running, and a default-fatal signal
    /// like SIGUSR2 would cut its graceful stop short).
    fn on_signal(&self, phase: Phase, signal: Signal, target: i32, fx: &mut Vec<Effect>) -> Phase {
        match phase {
            Phase::Running { pid, .. } if pid == target => {
                fx.push(Effect::Signal { pgid: pid, signal });
                fx.push(Effect::Report(ProgramEvent::Signalled { pid, signal }));
            }
            _ => {
                tracing::debug!(program = %self.name, target, "{signal} not delivered: process {target} is no longer running");
            }
        }
        phase
    }

    /// stop_signal to the group, and SIGCONT (a stopped group would never act on it).
    fn begin_stop(&self, pid: i32, then: Then, now: Instant, fx: &mut Vec<Effect>) -> Phase {
        fx.push(self.state(ProgramState::Stopping, Some(pid)));
        let signal = self.cfg.stop_signal.0;
        fx.push(Effect::Signal { pgid: pid, signal });
        fx.push(Effect::Signal {
            pgid: pid,
            signal: Signal::SIGCONT,
        });
        Phase::Stopping(Stop {
            pgid: pid,
            leader_alive: true,
            signal,
            deadline: later(now, self.cfg.stop_timeout),
            killed: false,
            nag: Some(now + STOP_NAG),
            then,
        })
    }

    fn kill(&self, stop: &mut Stop, now: Instant, fx: &mut Vec<Effect>) {
        fx.push(Effect::Signal {
            pgid: stop.pgid,
            signal: Signal::SIGKILL,
        });
        stop.killed = true;
        stop.deadline = now + KILL_GRACE;
        stop.nag = None;
    }

    fn on_timer(&mut self, phase: Phase, now: Instant, fx: &mut Vec<Effect>) -> Phase {
        match phase {
            Phase::Backoff { until } if now >= until => self.spawn(fx),
            Phase::Stopping(mut stop) => {
                if now >= stop.deadline {
                    if stop.killed {
                        tracing::error!(program = %self.name, pgid = stop.pgid, "process group still there {KILL_GRACE:?} after SIGKILL; giving up on it");
                        return self.finish(stop.then, now, fx);
                    }
                    tracing::warn!(program = %self.name, pid = stop.pgid, "did not stop within {:?} after {}; sending SIGKILL to its process group", self.cfg.stop_timeout, stop.signal);
                    self.kill(&mut stop, now, fx);
                } else if let Some(nag) = stop.nag.filter(|n| now >= *n) {
                    let who = if stop.leader_alive {
                        "it"
                    } else {
                        "its process group"
                    };
                    tracing::info!(program = %self.name, pid = stop.pgid, "waiting for {who} to exit after {}; SIGKILL in {:.0?}", stop.signal, stop.deadline - now);
                    stop.nag = Some(nag.max(now) + STOP_NAG);
                }
                Phase::Stopping(stop)
            }
            other => other,
        }
    }

    fn on_leader_exit(
        &mut self,
        phase: Phase,
        pid: i32,
        status: ExitStatus,
        group_alive: bool,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Phase {
        match phase {
            Phase::Running { pid: p, started } if p == pid => {
                let ran_for = now.saturating_duration_since(started);
                tracing::warn!(program = %self.name, pid, "exited with {status} after {:.1?}", ran_for);
                fx.push(Effect::Report(ProgramEvent::Exited { pid, status }));
                if !group_alive {
                    return self.apply_policy(status, ran_for, now, fx);
                }
                // Members the leader left behind must not outlive it (they would hold its port
                // and its token across the restart): stop them the same way first.
                let signal = self.cfg.stop_signal.0;
                fx.push(Effect::Signal { pgid: pid, signal });
                fx.push(Effect::Signal {
                    pgid: pid,
                    signal: Signal::SIGCONT,
                });
                Phase::Stopping(Stop {
                    pgid: pid,
                    leader_alive: false,
                    signal,
                    deadline: later(now, self.cfg.stop_timeout),
                    killed: false,
                    nag: None,
                    then: Then::Policy { status, ran_for },
                })
            }
            Phase::Stopping(mut stop) if stop.pgid == pid && stop.leader_alive => {
                tracing::info!(program = %self.name, pid, "stopped ({status})");
                fx.push(Effect::Report(ProgramEvent::Exited { pid, status }));
                stop.leader_alive = false;
                if group_alive {
                    Phase::Stopping(stop)
                } else {
                    self.finish(stop.then, now, fx)
                }
            }
            other => other,
        }
    }

    /// The stopping group is gone (or given up on).
    fn finish(&mut self, then: Then, now: Instant, fx: &mut Vec<Effect>) -> Phase {
        match then {
            Then::Stay => {
                fx.push(self.state(ProgramState::Stopped, None));
                Phase::Idle
            }
            Then::Start => {
                fx.push(self.state(ProgramState::Stopped, None));
                self.spawn(fx)
            }
            Then::Restart(reason) => {
                if reason.counts_against_budget() && !self.budget.allow(now) {
                    return self.go_fatal(fx);
                }
                fx.push(Effect::Report(ProgramEvent::Restarting { reason }));
                self.spawn(fx)
            }
            Then::Policy { status, ran_for } => self.apply_policy(status, ran_for, now, fx),
            Then::End => {
                fx.push(self.state(ProgramState::Stopped, None));
                fx.push(Effect::End);
                Phase::Ended
            }
        }
    }

    fn apply_policy(
        &mut self,
        status: ExitStatus,
        ran_for: Duration,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Phase {
        let restart = match self.cfg.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !status.success(),
            RestartPolicy::Never => false,
        };
        if !restart {
            fx.push(self.state(ProgramState::Exited, None));
            return Phase::Idle;
        }
        self.after_failure(ran_for, now, fx)
    }

    /// Schedule the next start after a failure, or give up when over budget.
    fn after_failure(&mut self, ran_for: Duration, now: Instant, fx: &mut Vec<Effect>) -> Phase {
        if !self.budget.allow(now) {
            return self.go_fatal(fx);
        }
        let delay = self.backoff.next_delay(ran_for);
        fx.push(Effect::Report(ProgramEvent::Restarting {
            reason: RestartReason::Exit,
        }));
        if delay.is_zero() {
            return self.spawn(fx);
        }
        tracing::info!(program = %self.name, "restarting in {:.1?}", delay);
        fx.push(self.state(ProgramState::Backoff, None));
        Phase::Backoff {
            until: later(now, delay),
        }
    }

    fn go_fatal(&mut self, fx: &mut Vec<Effect>) -> Phase {
        tracing::error!(
            program = %self.name,
            "restarted {} times within {:?}; giving up (state fatal) until `warden restart {}` or a config change",
            self.budget.used(),
            self.cfg.restart_window,
            self.name
        );
        fx.push(self.state(ProgramState::Fatal, None));
        Phase::Fatal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Signal::{SIGCONT, SIGKILL, SIGTERM, SIGUSR2};

    const PID: i32 = 4242;

    fn machine(edit: impl FnOnce(&mut ProgramConfig)) -> Lifecycle {
        let mut cfg = ProgramConfig {
            backoff_initial: Duration::ZERO,
            backoff_max: Duration::ZERO,
            stop_timeout: Duration::from_secs(10),
            ..ProgramConfig::default()
        };
        edit(&mut cfg);
        Lifecycle::new("app".into(), Arc::new(cfg))
    }

    fn state(state: ProgramState, pid: Option<i32>) -> Effect {
        Effect::Report(ProgramEvent::State { state, pid })
    }

    fn sig(pgid: i32, signal: Signal) -> Effect {
        Effect::Signal { pgid, signal }
    }

    fn exited(pid: i32, status: ExitStatus) -> Effect {
        Effect::Report(ProgramEvent::Exited { pid, status })
    }

    fn restarting(reason: RestartReason) -> Effect {
        Effect::Report(ProgramEvent::Restarting { reason })
    }

    fn ctl(m: &mut Lifecycle, c: Control, now: Instant) -> Vec<Effect> {
        m.handle(Input::Control(c), now)
    }

    fn leader_exit(
        m: &mut Lifecycle,
        pid: i32,
        status: ExitStatus,
        group_alive: bool,
        now: Instant,
    ) -> Vec<Effect> {
        m.handle(
            Input::LeaderExited {
                pid,
                status,
                group_alive,
            },
            now,
        )
    }

    /// A machine whose program runs as `pid`, started at `t0`.
    fn running(m: &mut Lifecycle, pid: i32, t0: Instant) {
        assert_eq!(ctl(m, Control::Start, t0), vec![Effect::Spawn]);
        let fx = m.handle(Input::Spawned { pid, generation: 7 }, t0);
        assert_eq!(
            fx,
            vec![
                Effect::Report(ProgramEvent::Spawned { pid, generation: 7 }),
                state(ProgramState::Running, Some(pid)),
            ]
        );
    }

    #[test]
    fn a_graceful_stop_nags_then_kills_at_the_deadline_and_waits_for_the_group() {
        let t0 = Instant::now();
        let mut m = machine(|_| {});
        running(&mut m, PID, t0);
        assert_eq!(
            ctl(&mut m, Control::Stop, t0),
            vec![
                state(ProgramState::Stopping, Some(PID)),
                sig(PID, SIGTERM),
                sig(PID, SIGCONT)
            ]
        );
        // The first wake-up is the nag, then every STOP_NAG until the deadline.
        assert_eq!(m.waits().timer, Some(t0 + STOP_NAG));
        assert_eq!(m.waits().group, None, "the leader is still alive");
        assert!(m.handle(Input::Timer, t0 + STOP_NAG).is_empty());
        assert_eq!(m.waits().timer, Some(t0 + 2 * STOP_NAG));
        let deadline = t0 + Duration::from_secs(10);
        assert_eq!(m.handle(Input::Timer, deadline), vec![sig(PID, SIGKILL)]);
        assert_eq!(m.waits().timer, Some(deadline + KILL_GRACE));
        let killed = ExitStatus::Signal(libc::SIGKILL);
        // The leader is gone but a member is not: wait for the group.
        assert_eq!(
            leader_exit(&mut m, PID, killed, true, deadline),
            vec![exited(PID, killed)]
        );
        assert_eq!(m.waits().group, Some(PID));
        assert_eq!(
            m.handle(Input::GroupGone, deadline),
            vec![state(ProgramState::Stopped, None)]
        );
        assert_eq!(m.waits(), Waits::default());
        assert!(!m.ended());
    }

    #[test]
    fn kill_interrupts_a_graceful_stop_at_once() {
        let t0 = Instant::now();
        let mut m = machine(|c| c.stop_timeout = Duration::from_secs(60));
        running(&mut m, PID, t0);
        ctl(&mut m, Control::Restart(RestartReason::Manual), t0);
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(ctl(&mut m, Control::Kill, t1), vec![sig(PID, SIGKILL)]);
        // A second Kill sends nothing more.
        assert!(ctl(&mut m, Control::Kill, t1).is_empty());
        let killed = ExitStatus::Signal(libc::SIGKILL);
        assert_eq!(
            leader_exit(&mut m, PID, killed, false, t1),
            vec![
                exited(PID, killed),
                state(ProgramState::Stopped, None),
                Effect::End
            ],
            "Kill wins over the restart that was under way"
        );
        assert!(m.ended());
    }

    #[test]
    fn kill_of_a_running_program_ends_without_a_graceful_signal() {
        let t0 = Instant::now();
        let mut m = machine(|_| {});
        running(&mut m, PID, t0);
        assert_eq!(
            ctl(&mut m, Control::Kill, t0),
            vec![state(ProgramState::Stopping, Some(PID)), sig(PID, SIGKILL)]
        );
        // A group that does not go away is given up on after KILL_GRACE.
        assert_eq!(m.waits().timer, Some(t0 + KILL_GRACE));
        assert_eq!(
            m.handle(Input::Timer, t0 + KILL_GRACE),
            vec![state(ProgramState::Stopped, None), Effect::End]
        );
        assert!(m.ended());
    }

    #[test]
    fn a_signal_reaches_only_the_process_it_was_meant_for() {
        let t0 = Instant::now();
        let mut m = machine(|_| {});
        running(&mut m, PID, t0);
        let usr2 = |pid| Control::Signal {
            signal: SIGUSR2,
            pid,
        };
        assert_eq!(
            ctl(&mut m, usr2(PID), t0),
            vec![
                sig(PID, SIGUSR2),
                Effect::Report(ProgramEvent::Signalled {
                    pid: PID,
                    signal: SIGUSR2
                })
            ]
        );
        ctl(&mut m, Control::Restart(RestartReason::Manual), t0);
        // Forwarded while the old process is stopping: not running any more, dropped.
        assert!(ctl(&mut m, usr2(PID), t0).is_empty());
        let fx = leader_exit(&mut m, PID, ExitStatus::Signal(15), false, t0);
        assert_eq!(fx.last(), Some(&Effect::Spawn));
        m.handle(
            Input::Spawned {
                pid: PID + 1,
                generation: 7,
            },
            t0,
        );
        // Meant for the old process, arriving after the replacement started: dropped too.
        assert!(ctl(&mut m, usr2(PID), t0).is_empty());
        assert_eq!(ctl(&mut m, usr2(PID + 1), t0)[0], sig(PID + 1, SIGUSR2));
    }

    #[test]
    fn signals_are_dropped_when_nothing_runs() {
        let t0 = Instant::now();
        let mut m = machine(|c| c.backoff_initial = Duration::from_secs(1));
        let usr2 = Control::Signal {
            signal: SIGUSR2,
            pid: PID,
        };
        assert!(ctl(&mut m, usr2, t0).is_empty(), "idle");
        running(&mut m, PID, t0);
        leader_exit(&mut m, PID, ExitStatus::Code(1), false, t0);
        assert!(m.waits().timer.is_some(), "in backoff");
        let usr2 = Control::Signal {
            signal: SIGUSR2,
            pid: PID,
        };
        assert!(ctl(&mut m, usr2, t0).is_empty(), "backoff");
    }

    #[test]
    fn controls_during_a_stop_change_what_follows_it() {
        let t0 = Instant::now();
        let done = ExitStatus::Signal(15);
        // Stop, then Restart: restarts.
        let mut m = machine(|_| {});
        running(&mut m, PID, t0);
        ctl(&mut m, Control::Stop, t0);
        assert!(ctl(&mut m, Control::Restart(RestartReason::Manual), t0).is_empty());
        let fx = leader_exit(&mut m, PID, done, false, t0);
        assert_eq!(fx[1..], [restarting(RestartReason::Manual), Effect::Spawn]);
        // Restart, then Shutdown: ends; a later Restart does not revive it.
        let mut m = machine(|_| {});
        running(&mut m, PID, t0);
        ctl(&mut m, Control::Restart(RestartReason::Token), t0);
        ctl(&mut m, Control::Shutdown, t0);
        ctl(&mut m, Control::Restart(RestartReason::Manual), t0);
        let fx = leader_exit(&mut m, PID, done, false, t0);
        assert_eq!(fx[1..], [state(ProgramState::Stopped, None), Effect::End]);
        // Stop, then Start: stopped, then started again.
        let mut m = machine(|_| {});
        running(&mut m, PID, t0);
        ctl(&mut m, Control::Stop, t0);
        ctl(&mut m, Control::Start, t0);
        let fx = leader_exit(&mut m, PID, done, false, t0);
        assert_eq!(fx[1..], [state(ProgramState::Stopped, None), Effect::Spawn]);
    }

    #[test]
    fn members_left_by_a_dead_leader_are_stopped_before_the_restart() {
        let t0 = Instant::now();
        let mut m = machine(|_| {});
        running(&mut m, PID, t0);
        let status = ExitStatus::Signal(libc::SIGKILL);
        assert_eq!(
            leader_exit(&mut m, PID, status, true, t0 + Duration::from_secs(3)),
            vec![exited(PID, status), sig(PID, SIGTERM), sig(PID, SIGCONT)]
        );
        assert_eq!(m.waits().group, Some(PID));
        // A forwarded signal for the dead leader's pid goes nowhere meanwhile.
        let usr2 = Control::Signal {
            signal: SIGUSR2,
            pid: PID,
        };
        assert!(ctl(&mut m, usr2, t0).is_empty());
        assert_eq!(
            m.handle(Input::GroupGone, t0 + Duration::from_secs(4)),
            vec![restarting(RestartReason::Exit), Effect::Spawn]
        );
    }

    #[test]
    fn a_clean_exit_under_on_failure_is_left_alone() {
        let t0 = Instant::now();
        let mut m = machine(|c| c.restart = RestartPolicy::OnFailure);
        running(&mut m, PID, t0);
        assert_eq!(
            leader_exit(&mut m, PID, ExitStatus::Code(0), false, t0),
            vec![
                exited(PID, ExitStatus::Code(0)),
                state(ProgramState::Exited, None)
            ]
        );
    }

    #[test]
    fn a_crash_loop_backs_off_then_goes_fatal_and_a_manual_restart_revives_it() {
        let t0 = Instant::now();
        let mut m = machine(|c| {
            c.max_restarts = 2;
            c.backoff_initial = Duration::from_millis(100);
            c.backoff_max = Duration::from_secs(1);
        });
        running(&mut m, PID, t0);
        let crash = ExitStatus::Code(3);
        for i in 0..2 {
            let fx = leader_exit(&mut m, PID + i, crash, false, t0);
            assert_eq!(fx.last(), Some(&state(ProgramState::Backoff, None)));
            let until = m.waits().timer.expect("a backoff timer");
            assert!(until >= t0 + Duration::from_millis(100));
            assert!(m.handle(Input::Timer, t0).is_empty(), "too early");
            assert_eq!(m.handle(Input::Timer, until), vec![Effect::Spawn]);
            m.handle(
                Input::Spawned {
                    pid: PID + i + 1,
                    generation: 0,
                },
                until,
            );
        }
        let fx = leader_exit(&mut m, PID + 2, crash, false, t0);
        assert_eq!(fx.last(), Some(&state(ProgramState::Fatal, None)));
        assert_eq!(m.waits(), Waits::default());
        assert_eq!(
            ctl(&mut m, Control::Restart(RestartReason::Manual), t0),
            vec![Effect::Spawn]
        );
    }

    #[test]
    fn unhealthy_restarts_spend_the_budget_manual_ones_do_not() {
        let t0 = Instant::now();
        let mut m = machine(|c| c.max_restarts = 1);
        running(&mut m, PID, t0);
        let done = ExitStatus::Signal(15);
        for _ in 0..3 {
            ctl(&mut m, Control::Restart(RestartReason::Manual), t0);
            let fx = leader_exit(&mut m, PID, done, false, t0);
            assert_eq!(fx.last(), Some(&Effect::Spawn));
            m.handle(
                Input::Spawned {
                    pid: PID,
                    generation: 0,
                },
                t0,
            );
        }
        ctl(&mut m, Control::Restart(RestartReason::Unhealthy), t0);
        let fx = leader_exit(&mut m, PID, done, false, t0);
        assert_eq!(fx.last(), Some(&Effect::Spawn));
        m.handle(
            Input::Spawned {
                pid: PID,
                generation: 0,
            },
            t0,
        );
        ctl(&mut m, Control::Restart(RestartReason::Unhealthy), t0);
        let fx = leader_exit(&mut m, PID, done, false, t0);
        assert_eq!(fx.last(), Some(&state(ProgramState::Fatal, None)));
    }

    #[test]
    fn shutdown_or_kill_without_a_process_ends_at_once() {
        let t0 = Instant::now();
        for c in [Control::Shutdown, Control::Kill] {
            let mut m = machine(|_| {});
            assert_eq!(ctl(&mut m, c, t0), vec![Effect::End]);
            assert!(m.ended());
        }
        let mut m = machine(|c| c.backoff_initial = Duration::from_secs(5));
        running(&mut m, PID, t0);
        leader_exit(&mut m, PID, ExitStatus::Code(1), false, t0);
        assert_eq!(ctl(&mut m, Control::Kill, t0), vec![Effect::End]);
    }

    #[test]
    fn a_failed_spawn_counts_as_a_failure() {
        let t0 = Instant::now();
        let mut m = machine(|c| c.max_restarts = 0);
        assert_eq!(ctl(&mut m, Control::Start, t0), vec![Effect::Spawn]);
        assert_eq!(
            m.handle(Input::SpawnFailed("no such file".into()), t0),
            vec![state(ProgramState::Fatal, None)]
        );
    }
}
