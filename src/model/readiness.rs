//! THE readiness rules, used by `/readyz`, `warden status` and sdnotify alike.
//!
//! Two questions, asked by different readers:
//! - *ready* (`/readyz`, a load balancer): may traffic be sent to this stack now? Every program
//!   is settled and not failing its health check, and the token (when warden keeps one) is
//!   valid. Fleet mode's shared store never decides it: a Redis outage leaves every warden
//!   running on its last token, and pulling every replica out of service for it would turn a
//!   store blip into an outage.
//! - *started* (systemd's `READY=1`): has start-up finished? Every program was spawned at
//!   least once or settled where only time or a person moves it on. Health is not required: a
//!   backend that answers 403 while the token waits for a manual login is up.

use super::program::{ProgramState, ProgramStatus, ProgramsView};
use super::token::TokenState;

/// Ready: not fatal, not between starts, and not failing its health check.
pub fn program_ready(p: &ProgramStatus) -> bool {
    !matches!(
        p.state,
        ProgramState::Fatal | ProgramState::Starting | ProgramState::Backoff
    ) && p.health.is_ok()
}

/// The token does not hold readiness up: valid, or no token kept at all.
pub fn token_ready(token: Option<TokenState>) -> bool {
    token.is_none_or(|t| t == TokenState::Valid)
}

/// The answer to "is this stack ready?", with what holds it up.
#[derive(Debug)]
pub struct Readiness<'a> {
    /// Programs that are not ready, in name order.
    pub not_ready: Vec<&'a ProgramStatus>,
    /// The token's state when it holds readiness up.
    pub token_blocking: Option<TokenState>,
}

impl Readiness<'_> {
    pub fn is_ready(&self) -> bool {
        self.not_ready.is_empty() && self.token_blocking.is_none()
    }
}

/// Readiness of the programs and the token (`None`: warden keeps no token).
pub fn readiness(programs: &ProgramsView, token: Option<TokenState>) -> Readiness<'_> {
    Readiness {
        not_ready: programs.values().filter(|p| !program_ready(p)).collect(),
        token_blocking: token.filter(|_| !token_ready(token)),
    }
}

/// Start-up is over: every program is up (spawned at least once: it has a pid), or settled
/// where only time or a person moves it on (`backoff`, `exited`, `fatal`).
pub fn started(programs: &ProgramsView) -> bool {
    programs.values().all(|p| {
        p.pid.is_some()
            || matches!(
                p.state,
                ProgramState::Running
                    | ProgramState::Backoff
                    | ProgramState::Exited
                    | ProgramState::Fatal
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::program::Health;

    fn view(rows: &[(&str, ProgramState, Health, Option<i32>)]) -> ProgramsView {
        rows.iter()
            .map(|&(n, state, health, pid)| {
                let mut s = ProgramStatus::new(n, jiff::Timestamp::UNIX_EPOCH);
                s.state = state;
                s.health = health;
                s.pid = pid;
                (n.to_string(), s)
            })
            .collect()
    }

    #[test]
    fn ready_needs_settled_programs_and_a_valid_token() {
        use ProgramState::*;
        let ok = view(&[
            ("api", Running, Health::Healthy, Some(1)),
            ("job", Exited, Health::Unknown, None),
        ]);
        assert!(readiness(&ok, None).is_ready());
        assert!(readiness(&ok, Some(TokenState::Valid)).is_ready());
        let r = readiness(&ok, Some(TokenState::NeedsLogin));
        assert!(!r.is_ready());
        assert_eq!(r.token_blocking, Some(TokenState::NeedsLogin));
        let sick = view(&[
            ("api", Running, Health::Unhealthy, Some(1)),
            ("web", Starting, Health::Unknown, Some(2)),
            ("db", Stopped, Health::Unknown, None),
        ]);
        let r = readiness(&sick, None);
        let names: Vec<_> = r.not_ready.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
    }

    #[test]
    fn started_means_spawned_or_settled_not_healthy() {
        use ProgramState::*;
        assert!(started(&ProgramsView::new()));
        assert!(started(&view(&[
            ("api", Starting, Health::AuthFailed, Some(1)),
            ("web", Fatal, Health::Unknown, None),
        ])));
        assert!(!started(&view(&[("api", Stopped, Health::Unknown, None)])));
    }
}
