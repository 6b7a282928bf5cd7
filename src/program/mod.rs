//! One supervised program: its states, the messages it takes and the events it reports.

pub mod actor;
pub mod backoff;
pub mod lifecycle;
pub mod spawn;

use crate::model::ExitStatus;
use nix::sys::signal::Signal;

/// SPEC §5 program states (the model owns them).
pub use crate::model::ProgramState;

/// Why a program was restarted (the `reason` label of `warden_program_restarts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    Exit,
    Unhealthy,
    Token,
    Config,
    Manual,
}

impl RestartReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Exit => "exit",
            RestartReason::Unhealthy => "unhealthy",
            RestartReason::Token => "token",
            RestartReason::Config => "config",
            RestartReason::Manual => "manual",
        }
    }

    /// Automatic restarts spend the restart budget; a person's or warden's deliberate ones don't.
    pub fn counts_against_budget(self) -> bool {
        matches!(self, RestartReason::Exit | RestartReason::Unhealthy)
    }
}

/// What the supervisor tells a program actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Start if not running (also leaves `fatal`, with a fresh budget).
    Start,
    /// Stop the process (stop_signal, then SIGKILL after stop_timeout) and stay stopped.
    Stop,
    /// Stop if running, then start again at once.
    Restart(RestartReason),
    /// Deliver `signal` to the process group of `pid`, the process the sender saw running.
    /// Dropped when that process is no longer the running one (it exited, is being stopped,
    /// or was replaced): a signal never reaches a process it was not meant for.
    Signal { signal: Signal, pid: i32 },
    /// Stop the process and end the actor (program removed or warden shutting down).
    Shutdown,
    /// SIGKILL the group now and end the actor; interrupts a graceful stop in progress.
    Kill,
}

/// What a program actor reports. The supervisor is the only reader.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgramEvent {
    State {
        state: ProgramState,
        pid: Option<i32>,
    },
    /// `generation`: the token generation in the env file when the process was spawned.
    Spawned {
        pid: i32,
        generation: u64,
    },
    Exited {
        pid: i32,
        status: ExitStatus,
    },
    Restarting {
        reason: RestartReason,
    },
    /// `signal` was delivered to the group of the running process `pid` (the moment a token
    /// hand-over by signal happens: probes sent after this count for its verification).
    Signalled {
        pid: i32,
        signal: Signal,
    },
    /// The actor has ended; its process group is gone.
    Gone,
}
