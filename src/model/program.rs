//! Program status: SPEC §5 states and health, and one row of `/api/v1/status`'s `programs`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

/// SPEC §5 program states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgramState {
    Starting,
    Running,
    Backoff,
    Stopping,
    Stopped,
    Exited,
    Fatal,
}

impl ProgramState {
    pub const ALL: [ProgramState; 7] = [
        ProgramState::Starting,
        ProgramState::Running,
        ProgramState::Backoff,
        ProgramState::Stopping,
        ProgramState::Stopped,
        ProgramState::Exited,
        ProgramState::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProgramState::Starting => "starting",
            ProgramState::Running => "running",
            ProgramState::Backoff => "backoff",
            ProgramState::Stopping => "stopping",
            ProgramState::Stopped => "stopped",
            ProgramState::Exited => "exited",
            ProgramState::Fatal => "fatal",
        }
    }

    /// A process is up: `running`, or `starting` until its health check first passes. Only
    /// these get probes, signals and token hand-overs.
    pub fn is_up(self) -> bool {
        matches!(self, ProgramState::Running | ProgramState::Starting)
    }
}

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

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::AuthFailed => "auth_failed",
        }
    }

    /// Not known to be failing: healthy, or no verdict (yet, or no health check at all).
    pub fn is_ok(self) -> bool {
        matches!(self, Health::Healthy | Health::Unknown)
    }
}

/// How a process ended. Serialises as `{"code": N}` or `{"signal": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => match nix::sys::signal::Signal::try_from(*s) {
                Ok(sig) => write!(f, "signal {sig}"),
                Err(_) => write!(f, "signal {s}"),
            },
        }
    }
}

/// One row of `/api/v1/status`'s `programs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramStatus {
    pub name: String,
    pub state: ProgramState,
    pub pid: Option<i32>,
    pub restarts: u64,
    pub health: Health,
    /// The last state change (RFC 3339 in JSON).
    #[serde(serialize_with = "super::time::rfc3339")]
    pub since: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitStatus>,
}

impl ProgramStatus {
    /// A program that has not run yet.
    pub fn new(name: &str, since: Timestamp) -> ProgramStatus {
        ProgramStatus {
            name: name.to_string(),
            state: ProgramState::Stopped,
            pid: None,
            restarts: 0,
            health: Health::Unknown,
            since,
            last_exit: None,
        }
    }

    /// The pid of a process that is up, the only ones signals reach.
    pub fn running_pid(&self) -> Option<i32> {
        self.pid.filter(|_| self.state.is_up())
    }

    /// A dependency is satisfied by a program that is running (and healthy, when it has a
    /// health check: it is `starting` until then) or that ran to a successful end.
    pub fn satisfies_dependency(&self) -> bool {
        self.state == ProgramState::Running
            || (self.state == ProgramState::Exited
                && self.last_exit.is_some_and(ExitStatus::success))
    }
}

/// Every program's status, by name.
pub type ProgramsView = BTreeMap<String, ProgramStatus>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_keeps_its_shape() {
        let mut s = ProgramStatus::new("api", Timestamp::from_second(1_714_557_600).unwrap());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "api", "state": "stopped", "pid": null, "restarts": 0,
                "health": "unknown", "since": "2024-05-01T10:00:00Z"})
        );
        s.last_exit = Some(ExitStatus::Signal(9));
        s.health = Health::AuthFailed;
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["last_exit"], serde_json::json!({"signal": 9}));
        assert_eq!(v["health"], "auth_failed");
    }

    #[test]
    fn dependencies_and_signals() {
        let mut s = ProgramStatus::new("db", Timestamp::UNIX_EPOCH);
        s.pid = Some(7);
        assert_eq!(s.running_pid(), None, "stopped with a stale pid");
        s.state = ProgramState::Starting;
        assert_eq!(s.running_pid(), Some(7));
        assert!(!s.satisfies_dependency(), "starting is not yet healthy");
        s.state = ProgramState::Exited;
        s.last_exit = Some(ExitStatus::Code(1));
        assert!(!s.satisfies_dependency());
        s.last_exit = Some(ExitStatus::Code(0));
        assert!(s.satisfies_dependency());
    }
}
