//! The supervisor's decisions as a synchronous state machine: [`Core::handle`] takes one event
//! and returns the effects to carry out, touching no process, channel or clock of its own.
//!
//! The core keeps the supervisor's private records (what it wants of each program, what it has
//! sent, the token generation each process has, pending hand-over verifications) next to each
//! program's status, and publishes only a projection of them ([`Core::view`]). The async shell
//! in `mod.rs` owns the program actors' channels, the probe tasks, the keeper handle and the
//! `watch` sender, turns messages into [`Event`]s, and executes [`Effect`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use nix::sys::signal::Signal;
use tokio::time::Instant;

use crate::config::{OnTokenChange, ProgramConfig};
use crate::handover::{Verdict, Verification};
use crate::model::{Health, ProgramState, ProgramStatus, ProgramsView};
use crate::program::{Control, ProgramEvent, RestartReason};

/// The two clocks an event is handled at: the monotonic one for deadlines, the wall clock for
/// the `since` the status shows.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: Timestamp,
}

impl Now {
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: crate::model::time::now_second(),
        }
    }
}

/// What happened, as the core sees it.
#[derive(Debug, Clone)]
pub enum Event {
    /// A program actor's report.
    Program { name: String, event: ProgramEvent },
    /// A probe's verdict changed, or a probe sent after a hand-over answered.
    Health {
        name: String,
        /// The process the probe was started for.
        pid: i32,
        health: Health,
        /// When the probe behind this result was sent.
        sent: Instant,
        detail: String,
    },
    /// A keeper finished its start-up check: programs that read its token may start.
    TokenSettled { token: String },
    /// A new token is in the env file (`generation`: one sequence for all tokens).
    TokenChanged { token: String, generation: u64 },
    /// Time passed: verification deadlines may have run out.
    Tick,
    /// A signal warden forwards to every running program (SPEC §7).
    Forward(Signal),
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a control message to a program's actor.
    Send {
        program: String,
        control: Control,
    },
    /// Replace the program's probe with one for `pid` (none when it has no health check).
    StartProbe {
        program: String,
        pid: i32,
    },
    StopProbe {
        program: String,
    },
    /// Tell the running probe that a token hand-over happened at `at`.
    ProbeHandedOver {
        program: String,
        at: Instant,
    },
    /// A health check says the broker rejected the token: ask the keeper for a refresh.
    TokenRejected {
        program: String,
    },
    /// The program is fatal: tell a person.
    Fatal {
        program: String,
    },
}

/// The supervisor's own record of one program; never published as such.
#[derive(Debug)]
struct Record {
    cfg: Arc<ProgramConfig>,
    status: ProgramStatus,
    /// The program should be running (cleared by shutdown and removal).
    wanted: bool,
    /// `Start` was sent since `wanted` was set.
    start_sent: bool,
    /// The actor has ended.
    gone: bool,
    /// A probe task runs for the current process.
    probing: bool,
    /// Token generation at the current process's spawn: it has every token written before.
    generation: u64,
    /// Per token, the generation last handed over to the current process.
    handed: BTreeMap<String, u64>,
    /// A token hand-over (signal or watch) that a probe has yet to confirm (SPEC §3.1).
    verification: Option<Verification>,
}

pub struct Core {
    records: BTreeMap<String, Record>,
    /// The tokens a keeper runs for: programs that read one wait for it to settle.
    kept: BTreeSet<String>,
    settled: BTreeSet<String>,
    verify_timeout: Duration,
}

impl Core {
    pub fn new(verify_timeout: Duration) -> Core {
        Core {
            records: BTreeMap::new(),
            kept: BTreeSet::new(),
            settled: BTreeSet::new(),
            verify_timeout,
        }
    }

    /// A keeper now runs for the token `name` (at start, or added by a reload).
    pub fn keep_token(&mut self, name: &str) {
        self.kept.insert(name.to_string());
    }

    /// The token `name` was removed by a reload: nothing waits for it any more.
    pub fn forget_token(&mut self, name: &str) {
        self.kept.remove(name);
        self.settled.remove(name);
    }

    /// Has every kept token this program uses settled (SPEC §9.1: one token's trouble never
    /// holds up programs that do not use it)?
    fn tokens_settled_for(&self, cfg: &ProgramConfig) -> bool {
        self.kept
            .iter()
            .filter(|t| cfg.uses_token(t))
            .all(|t| self.settled.contains(t))
    }

    pub fn set_verify_timeout(&mut self, timeout: Duration) {
        self.verify_timeout = timeout;
    }

    /// A program whose actor was just started (stopped, not yet told to start).
    pub fn add(&mut self, name: &str, cfg: Arc<ProgramConfig>, wall: Timestamp) {
        self.records.insert(
            name.to_string(),
            Record {
                cfg,
                status: ProgramStatus::new(name, wall),
                wanted: true,
                start_sent: false,
                gone: false,
                probing: false,
                generation: 0,
                handed: BTreeMap::new(),
                verification: None,
            },
        );
    }

    pub fn remove(&mut self, name: &str) {
        self.records.remove(name);
    }

    /// The published projection: every program's status.
    pub fn view(&self) -> ProgramsView {
        self.records
            .iter()
            .map(|(n, r)| (n.clone(), r.status.clone()))
            .collect()
    }

    pub fn status(&self, name: &str) -> Option<&ProgramStatus> {
        self.records.get(name).map(|r| &r.status)
    }

    pub fn config(&self, name: &str) -> Option<&Arc<ProgramConfig>> {
        self.records.get(name).map(|r| &r.cfg)
    }

    pub fn set_restarts(&mut self, name: &str, restarts: u64) {
        if let Some(r) = self.records.get_mut(name) {
            r.status.restarts = restarts;
        }
    }

    /// Programs whose actor has not ended.
    pub fn live(&self) -> BTreeSet<String> {
        self.records
            .iter()
            .filter(|(_, r)| !r.gone)
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn is_gone(&self, name: &str) -> bool {
        self.records.get(name).is_none_or(|r| r.gone)
    }

    /// No longer wanted (removed, replaced or shutting down). True when its actor still runs
    /// and must be told to stop.
    pub fn unwant(&mut self, name: &str) -> bool {
        match self.records.get_mut(name) {
            Some(r) => {
                r.wanted = false;
                !r.gone
            }
            None => false,
        }
    }

    /// During shutdown only state, pid and the end of actors matter.
    pub fn observe_during_shutdown(&mut self, name: &str, ev: &ProgramEvent) {
        let Some(r) = self.records.get_mut(name) else {
            return;
        };
        match *ev {
            ProgramEvent::State { state, pid } => {
                r.status.state = state;
                r.status.pid = pid;
            }
            ProgramEvent::Gone => r.gone = true,
            _ => {}
        }
    }

    /// Restart on request (HTTP, CLI): leaves `fatal` with a fresh budget. `None` for a program
    /// that does not exist (or whose actor has ended).
    pub fn restart(&mut self, name: &str, reason: RestartReason) -> Option<Vec<Effect>> {
        let r = self.records.get_mut(name).filter(|r| !r.gone)?;
        r.wanted = true;
        r.start_sent = true;
        Some(vec![send(name, Control::Restart(reason))])
    }

    /// The earliest verification deadline, when a [`Event::Tick`] is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.records
            .values()
            .filter_map(|r| r.verification.map(|v| v.deadline()))
            .min()
    }

    /// `Start` for every wanted program whose dependencies are satisfied and, if it reads the
    /// token, once the keeper has settled.
    pub fn start_ready(&mut self) -> Vec<Effect> {
        let ready: Vec<String> = self
            .records
            .iter()
            .filter(|(_, r)| r.wanted && !r.start_sent && !r.gone)
            .filter(|(_, r)| {
                r.cfg.depends_on.iter().all(|d| {
                    self.records
                        .get(d)
                        .is_some_and(|dep| dep.status.satisfies_dependency())
                })
            })
            // Write the token before starting the programs that read it.
            .filter(|(_, r)| {
                r.cfg.on_token_change == OnTokenChange::None || self.tokens_settled_for(&r.cfg)
            })
            .map(|(n, _)| n.clone())
            .collect();
        ready
            .into_iter()
            .map(|name| {
                if let Some(r) = self.records.get_mut(&name) {
                    r.start_sent = true;
                }
                send(&name, Control::Start)
            })
            .collect()
    }

    pub fn handle(&mut self, now: Now, event: Event) -> Vec<Effect> {
        match event {
            Event::Program { name, event } => self.on_program(now, &name, event),
            Event::Health {
                name,
                pid,
                health,
                sent,
                detail,
            } => self.on_health(now, &name, pid, health, sent, &detail),
            Event::TokenSettled { token } => {
                self.settled.insert(token);
                Vec::new()
            }
            Event::TokenChanged { token, generation } => self.hand_over(now, &token, generation),
            Event::Tick => self.check_verifications(now),
            Event::Forward(sig) => self.forward(sig),
        }
    }

    fn on_program(&mut self, now: Now, name: &str, ev: ProgramEvent) -> Vec<Effect> {
        let Some(r) = self.records.get_mut(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match ev {
            ProgramEvent::State { state, pid } => {
                if !state.is_up() {
                    if std::mem::take(&mut r.probing) {
                        out.push(Effect::StopProbe {
                            program: name.to_string(),
                        });
                    }
                    // Nothing left to verify: a process that is not up cannot answer, and
                    // the next one gets the token at its spawn.
                    r.verification = None;
                    r.status.health = Health::Unknown;
                }
                if r.status.state != state {
                    r.status.since = now.wall;
                }
                r.status.state = state;
                r.status.pid = pid;
                if state == ProgramState::Fatal {
                    out.push(Effect::Fatal {
                        program: name.to_string(),
                    });
                }
            }
            ProgramEvent::Spawned { pid, generation } => {
                r.generation = generation;
                r.handed.clear();
                r.verification = None;
                r.probing = r.cfg.health.is_some();
                out.push(Effect::StartProbe {
                    program: name.to_string(),
                    pid,
                });
            }
            ProgramEvent::Exited { status, .. } => r.status.last_exit = Some(status),
            ProgramEvent::Restarting { .. } => r.status.restarts += 1,
            ProgramEvent::Signalled { pid, signal } => {
                // A reload signal reached the program: its token hand-over starts now, and
                // the probe is asked for an answer from after this moment.
                if r.status.pid != Some(pid) || signal != r.cfg.reload_signal.0 {
                    return out;
                }
                if let Some(v) = r.verification.as_mut().filter(|v| v.handed_at().is_none()) {
                    v.signal_delivered(now.mono);
                    if r.probing {
                        out.push(Effect::ProbeHandedOver {
                            program: name.to_string(),
                            at: now.mono,
                        });
                    }
                }
            }
            ProgramEvent::Gone => {
                if std::mem::take(&mut r.probing) {
                    out.push(Effect::StopProbe {
                        program: name.to_string(),
                    });
                }
                r.gone = true;
            }
        }
        out
    }

    fn on_health(
        &mut self,
        now: Now,
        name: &str,
        pid: i32,
        health: Health,
        sent: Instant,
        detail: &str,
    ) -> Vec<Effect> {
        let Some(r) = self.records.get_mut(name) else {
            return Vec::new();
        };
        if r.status.pid != Some(pid) {
            return Vec::new(); // a probe result about a process that is already gone
        }
        let changed = r.status.health != health;
        r.status.health = health;
        if health == Health::Healthy && r.status.state == ProgramState::Starting {
            r.status.state = ProgramState::Running;
            r.status.since = now.wall;
        }
        match health {
            Health::Healthy => {
                if changed {
                    tracing::info!(program = %name, "healthy ({detail})");
                }
                let verdict = r.verification.map(|v| (v.on_ok(sent), v.handed_at()));
                if let Some((Verdict::Verified, Some(at))) = verdict {
                    r.verification = None;
                    tracing::info!(
                        program = %name,
                        "token hand-over verified: {detail} to a probe sent {}ms after it",
                        sent.saturating_duration_since(at).as_millis()
                    );
                }
                Vec::new()
            }
            Health::Unhealthy => {
                tracing::warn!(program = %name, "unhealthy ({detail}); restarting");
                r.probing = false;
                vec![
                    Effect::StopProbe {
                        program: name.to_string(),
                    },
                    send(name, Control::Restart(RestartReason::Unhealthy)),
                ]
            }
            Health::AuthFailed => {
                tracing::warn!(program = %name, "health check says the broker token is bad ({detail})");
                vec![Effect::TokenRejected {
                    program: name.to_string(),
                }]
            }
            Health::Unknown => Vec::new(),
        }
    }

    /// Give running programs the new token (SPEC §3.1): reload signal or nothing (`watch`),
    /// then verify with a probe if they have a health check; or restart.
    fn hand_over(&mut self, now: Now, token: &str, generation: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let timeout = self.verify_timeout;
        for (name, r) in self.records.iter_mut() {
            let Some(pid) = r.status.running_pid() else {
                continue;
            };
            // Only the programs that use this token get it (SPEC §9.1). Generations are one
            // sequence for all tokens, but two keepers' announcements may arrive out of order,
            // so what was handed over is remembered per token.
            if r.gone
                || !r.cfg.uses_token(token)
                || r.generation >= generation
                || r.handed.get(token).is_some_and(|g| *g >= generation)
            {
                continue;
            }
            r.handed.insert(token.to_string(), generation);
            match r.cfg.on_token_change {
                OnTokenChange::Signal => {
                    let signal = r.cfg.reload_signal.0;
                    tracing::info!(program = %name, "sending {signal} for the new token");
                    out.push(send(name, Control::Signal { signal, pid }));
                    // Verified from the moment the actor confirms the delivery (Signalled).
                    if r.cfg.health.is_some() {
                        r.verification = Some(Verification::signal_pending(now.mono, timeout));
                    }
                }
                OnTokenChange::Watch => {
                    // The keeper wrote the file before it announced the change: the program
                    // can see the token from now on.
                    tracing::info!(program = %name, "the new token is in the env file it watches; sending nothing");
                    if r.probing && r.cfg.health.is_some() {
                        r.verification = Some(Verification::handed(now.mono, timeout));
                        out.push(Effect::ProbeHandedOver {
                            program: name.clone(),
                            at: now.mono,
                        });
                    }
                }
                OnTokenChange::Restart => {
                    tracing::info!(program = %name, "restarting for the new token");
                    out.push(send(name, Control::Restart(RestartReason::Token)));
                }
                OnTokenChange::None => {}
            }
        }
        out
    }

    /// Programs handed a new token that answered no probe sent since with 2xx within
    /// `verify_timeout` get restarted.
    fn check_verifications(&mut self, now: Now) -> Vec<Effect> {
        let mut out = Vec::new();
        for (name, r) in self.records.iter_mut() {
            if r.verification.map(|v| v.on_tick(now.mono)) == Some(Verdict::Restart) {
                r.verification = None;
                tracing::warn!(
                    program = %name,
                    "no 2xx answer to a probe within {} after the token hand-over; restarting",
                    humantime::format_duration(self.verify_timeout)
                );
                out.push(send(name, Control::Restart(RestartReason::Token)));
            }
        }
        out
    }

    /// SPEC §7: to every running program's process group. Each signal names the process seen
    /// running, so the actor drops it rather than hit a replacement spawned in the meantime.
    fn forward(&self, signal: Signal) -> Vec<Effect> {
        self.records
            .iter()
            .filter(|(_, r)| !r.gone)
            .filter_map(|(name, r)| {
                let pid = r.status.running_pid()?;
                tracing::debug!(program = %name, pid, "forwarding {signal}");
                Some(send(name, Control::Signal { signal, pid }))
            })
            .collect()
    }
}

fn send(program: &str, control: Control) -> Effect {
    Effect::Send {
        program: program.to_string(),
        control,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HealthConfig, SignalName};
    use crate::model::ExitStatus;

    const T: Duration = Duration::from_secs(30);

    fn at(base: Instant, secs: u64) -> Now {
        Now {
            mono: base + Duration::from_secs(secs),
            wall: Timestamp::from_second(1_714_557_600 + secs as i64).unwrap(),
        }
    }

    fn program(on_token_change: OnTokenChange, health: bool, deps: &[&str]) -> Arc<ProgramConfig> {
        Arc::new(ProgramConfig {
            on_token_change,
            reload_signal: SignalName(Signal::SIGHUP),
            health: health.then(HealthConfig::default),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            ..ProgramConfig::default()
        })
    }

    fn ev(name: &str, event: ProgramEvent) -> Event {
        Event::Program {
            name: name.into(),
            event,
        }
    }

    fn state(name: &str, state: ProgramState, pid: Option<i32>) -> Event {
        ev(name, ProgramEvent::State { state, pid })
    }

    fn sent(program: &str, control: Control) -> Effect {
        Effect::Send {
            program: program.into(),
            control,
        }
    }

    fn healthy(name: &str, pid: i32, sent: Instant) -> Event {
        Event::Health {
            name: name.into(),
            pid,
            health: Health::Healthy,
            sent,
            detail: "HTTP 200".into(),
        }
    }

    /// `api` (signal hand-over, health check) spawned as pid 10 with token generation 1 and
    /// healthy.
    fn running_api(base: Instant) -> Core {
        let mut core = Core::new(T);
        core.keep_token("kite");
        core.add(
            "api",
            program(OnTokenChange::Signal, true, &[]),
            at(base, 0).wall,
        );
        core.handle(
            at(base, 0),
            Event::TokenSettled {
                token: "kite".into(),
            },
        );
        assert_eq!(core.start_ready(), vec![sent("api", Control::Start)]);
        core.handle(at(base, 1), state("api", ProgramState::Starting, Some(10)));
        let fx = core.handle(
            at(base, 1),
            ev(
                "api",
                ProgramEvent::Spawned {
                    pid: 10,
                    generation: 1,
                },
            ),
        );
        assert_eq!(
            fx,
            vec![Effect::StartProbe {
                program: "api".into(),
                pid: 10
            }]
        );
        core.handle(at(base, 2), healthy("api", 10, base));
        assert_eq!(core.status("api").unwrap().state, ProgramState::Running);
        core
    }

    #[test]
    fn programs_start_after_their_dependencies_and_token_readers_after_the_keeper() {
        let base = Instant::now();
        let mut core = Core::new(T);
        core.keep_token("kite");
        core.add(
            "db",
            program(OnTokenChange::None, false, &[]),
            at(base, 0).wall,
        );
        core.add(
            "api",
            program(OnTokenChange::Signal, false, &["db"]),
            at(base, 0).wall,
        );
        core.add(
            "job",
            program(OnTokenChange::Restart, false, &[]),
            at(base, 0).wall,
        );
        assert_eq!(core.start_ready(), vec![sent("db", Control::Start)]);
        assert_eq!(core.start_ready(), vec![], "Start is sent once");
        core.handle(at(base, 1), state("db", ProgramState::Running, Some(5)));
        assert_eq!(core.start_ready(), vec![], "api and job wait for the token");
        core.handle(
            at(base, 2),
            Event::TokenSettled {
                token: "kite".into(),
            },
        );
        assert_eq!(
            core.start_ready(),
            vec![sent("api", Control::Start), sent("job", Control::Start)]
        );
    }

    #[test]
    fn a_dependency_that_ran_to_a_successful_end_counts() {
        let base = Instant::now();
        let mut core = Core::new(T);
        core.add(
            "migrate",
            program(OnTokenChange::None, false, &[]),
            at(base, 0).wall,
        );
        core.add(
            "api",
            program(OnTokenChange::None, false, &["migrate"]),
            at(base, 0).wall,
        );
        core.start_ready();
        let exit = |code| {
            ev(
                "migrate",
                ProgramEvent::Exited {
                    pid: 5,
                    status: ExitStatus::Code(code),
                },
            )
        };
        core.handle(at(base, 1), exit(1));
        core.handle(at(base, 1), state("migrate", ProgramState::Exited, None));
        assert_eq!(core.start_ready(), vec![]);
        core.handle(at(base, 2), exit(0));
        assert_eq!(core.start_ready(), vec![sent("api", Control::Start)]);
    }

    #[test]
    fn a_signal_hand_over_is_verified_by_a_probe_sent_after_the_delivery() {
        let base = Instant::now();
        let mut core = running_api(base);
        let fx = core.handle(
            at(base, 10),
            Event::TokenChanged {
                token: "kite".into(),
                generation: 2,
            },
        );
        assert_eq!(
            fx,
            vec![sent(
                "api",
                Control::Signal {
                    signal: Signal::SIGHUP,
                    pid: 10
                }
            )]
        );
        assert_eq!(core.next_deadline(), Some(base + Duration::from_secs(40)));
        let delivered = ev(
            "api",
            ProgramEvent::Signalled {
                pid: 10,
                signal: Signal::SIGHUP,
            },
        );
        assert_eq!(
            core.handle(at(base, 11), delivered),
            vec![Effect::ProbeHandedOver {
                program: "api".into(),
                at: base + Duration::from_secs(11)
            }]
        );
        // A probe sent before the delivery proves nothing.
        core.handle(
            at(base, 12),
            healthy("api", 10, base + Duration::from_secs(10)),
        );
        assert!(core.next_deadline().is_some());
        core.handle(
            at(base, 13),
            healthy("api", 10, base + Duration::from_secs(12)),
        );
        assert_eq!(core.next_deadline(), None, "verified");
        assert_eq!(core.handle(at(base, 60), Event::Tick), vec![]);
        assert_eq!(
            core.handle(
                at(base, 61),
                Event::TokenChanged {
                    token: "kite".into(),
                    generation: 2
                }
            ),
            vec![],
            "a generation is handed over once"
        );
    }

    #[test]
    fn no_2xx_within_verify_timeout_means_a_token_restart() {
        let base = Instant::now();
        let mut core = running_api(base);
        core.handle(
            at(base, 10),
            Event::TokenChanged {
                token: "kite".into(),
                generation: 2,
            },
        );
        assert_eq!(core.handle(at(base, 39), Event::Tick), vec![]);
        assert_eq!(
            core.handle(at(base, 40), Event::Tick),
            vec![sent("api", Control::Restart(RestartReason::Token))]
        );
        assert_eq!(core.next_deadline(), None);
    }

    #[test]
    fn a_program_that_stops_being_up_is_not_restarted_for_an_unverified_hand_over() {
        let base = Instant::now();
        let mut core = running_api(base);
        core.handle(
            at(base, 10),
            Event::TokenChanged {
                token: "kite".into(),
                generation: 2,
            },
        );
        let fx = core.handle(at(base, 11), state("api", ProgramState::Exited, None));
        assert_eq!(
            fx,
            vec![Effect::StopProbe {
                program: "api".into()
            }]
        );
        assert_eq!(core.next_deadline(), None);
        assert_eq!(core.handle(at(base, 100), Event::Tick), vec![]);
    }

    #[test]
    fn health_verdicts_for_the_current_process_only() {
        let base = Instant::now();
        let mut core = running_api(base);
        let verdict = |pid, health| Event::Health {
            name: "api".into(),
            pid,
            health,
            sent: base,
            detail: "HTTP 503".into(),
        };
        assert_eq!(
            core.handle(at(base, 5), verdict(9, Health::Unhealthy)),
            vec![],
            "an old process"
        );
        assert_eq!(
            core.handle(at(base, 5), verdict(10, Health::AuthFailed)),
            vec![Effect::TokenRejected {
                program: "api".into()
            }]
        );
        assert_eq!(core.view()["api"].health, Health::AuthFailed);
        assert_eq!(
            core.handle(at(base, 6), verdict(10, Health::Unhealthy)),
            vec![
                Effect::StopProbe {
                    program: "api".into()
                },
                sent("api", Control::Restart(RestartReason::Unhealthy))
            ]
        );
    }

    #[test]
    fn forwarded_signals_reach_only_programs_that_are_up() {
        let base = Instant::now();
        let mut core = running_api(base);
        core.add(
            "web",
            program(OnTokenChange::None, false, &[]),
            at(base, 0).wall,
        );
        core.handle(at(base, 1), state("web", ProgramState::Backoff, Some(11)));
        assert_eq!(
            core.handle(at(base, 2), Event::Forward(Signal::SIGUSR2)),
            vec![sent(
                "api",
                Control::Signal {
                    signal: Signal::SIGUSR2,
                    pid: 10
                }
            )]
        );
    }

    #[test]
    fn watchers_get_no_signal_and_restarters_a_restart() {
        let base = Instant::now();
        let mut core = Core::new(T);
        for (name, mode) in [
            ("watcher", OnTokenChange::Watch),
            ("restarter", OnTokenChange::Restart),
            ("deaf", OnTokenChange::None),
        ] {
            core.add(name, program(mode, true, &[]), at(base, 0).wall);
            core.handle(at(base, 1), state(name, ProgramState::Running, Some(20)));
            core.handle(
                at(base, 1),
                ev(
                    name,
                    ProgramEvent::Spawned {
                        pid: 20,
                        generation: 1,
                    },
                ),
            );
        }
        let fx = core.handle(
            at(base, 5),
            Event::TokenChanged {
                token: "kite".into(),
                generation: 2,
            },
        );
        assert_eq!(
            fx,
            vec![
                sent("restarter", Control::Restart(RestartReason::Token)),
                Effect::ProbeHandedOver {
                    program: "watcher".into(),
                    at: base + Duration::from_secs(5)
                },
            ]
        );
        assert_eq!(core.next_deadline(), Some(base + Duration::from_secs(35)));
    }

    #[test]
    fn restart_requests_name_a_live_program() {
        let base = Instant::now();
        let mut core = running_api(base);
        assert_eq!(
            core.restart("api", RestartReason::Manual),
            Some(vec![sent("api", Control::Restart(RestartReason::Manual))])
        );
        assert_eq!(core.restart("nope", RestartReason::Manual), None);
        core.handle(at(base, 3), ev("api", ProgramEvent::Gone));
        assert_eq!(core.restart("api", RestartReason::Manual), None);
        assert!(core.live().is_empty());
    }

    /// Two tokens: `a` and `b`; `all` uses both, `only_b` lists `b` alone.
    fn two_token_core(base: Instant) -> Core {
        let mut core = Core::new(T);
        core.keep_token("a");
        core.keep_token("b");
        for (name, tokens) in [("all", None), ("only_b", Some(vec!["b".to_string()]))] {
            core.add(
                name,
                Arc::new(ProgramConfig {
                    tokens,
                    ..ProgramConfig::default()
                }),
                at(base, 0).wall,
            );
        }
        core
    }

    fn spawn(core: &mut Core, base: Instant, name: &str, pid: i32, generation: u64) {
        core.handle(at(base, 1), state(name, ProgramState::Running, Some(pid)));
        core.handle(
            at(base, 1),
            ev(name, ProgramEvent::Spawned { pid, generation }),
        );
    }

    #[test]
    fn a_program_waits_only_for_the_tokens_it_uses() {
        let base = Instant::now();
        let mut core = two_token_core(base);
        assert_eq!(core.start_ready(), vec![]);
        core.handle(at(base, 1), Event::TokenSettled { token: "b".into() });
        assert_eq!(core.start_ready(), vec![sent("only_b", Control::Start)]);
        core.handle(at(base, 2), Event::TokenSettled { token: "a".into() });
        assert_eq!(core.start_ready(), vec![sent("all", Control::Start)]);
    }

    #[test]
    fn a_token_change_reaches_only_the_programs_that_use_it() {
        let base = Instant::now();
        let mut core = two_token_core(base);
        spawn(&mut core, base, "all", 10, 0);
        spawn(&mut core, base, "only_b", 11, 0);
        let signal = |pid| Control::Signal {
            signal: Signal::SIGHUP,
            pid,
        };
        let fx = core.handle(
            at(base, 5),
            Event::TokenChanged {
                token: "a".into(),
                generation: 1,
            },
        );
        assert_eq!(fx, vec![sent("all", signal(10))]);
        let fx = core.handle(
            at(base, 6),
            Event::TokenChanged {
                token: "b".into(),
                generation: 2,
            },
        );
        assert_eq!(
            fx,
            vec![sent("all", signal(10)), sent("only_b", signal(11))]
        );
    }

    #[test]
    fn announcements_of_two_tokens_arriving_out_of_order_both_hand_over() {
        let base = Instant::now();
        let mut core = two_token_core(base);
        spawn(&mut core, base, "all", 10, 0);
        let changed = |token: &str, generation| Event::TokenChanged {
            token: token.into(),
            generation,
        };
        assert_eq!(core.handle(at(base, 5), changed("a", 2)).len(), 1);
        assert_eq!(
            core.handle(at(base, 5), changed("b", 1)).len(),
            1,
            "b's token was written before a's but announced after: still new to the program"
        );
        assert_eq!(core.handle(at(base, 6), changed("b", 1)), vec![]);
    }
}
