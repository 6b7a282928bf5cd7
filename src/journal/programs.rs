//! What the programs did, in the journal's words.
//!
//! The supervisor says when (it owns the program events); this module only words them, and
//! imports nothing of the program module, which reaches the token keeper, which records here.

use super::{Event, Journal, Kind};
use crate::model::ExitStatus;

pub fn started(journal: &Journal, name: &str, pid: i32) {
    journal.record(
        Event::new(Kind::ProgramStarted, name, format!("started (pid {pid})")).with_pid(pid),
    );
}

pub fn exited(journal: &Journal, name: &str, pid: i32, status: ExitStatus) {
    journal.record(exit_event(name, pid, status));
}

/// `reason`: the restart reason's name (`exit`, `unhealthy`, `token`, `config`, `manual`).
pub fn restarting(journal: &Journal, name: &str, reason: &str) {
    journal.record(
        Event::new(
            Kind::ProgramRestarted,
            name,
            format!("restarting (reason: {reason})"),
        )
        .with_reason(reason),
    );
}

fn exit_event(name: &str, pid: i32, status: ExitStatus) -> Event {
    let e = Event::new(
        Kind::ProgramExited,
        name,
        format!("exited with {status} (pid {pid})"),
    )
    .with_pid(pid);
    match status {
        ExitStatus::Code(c) => e.with_code(c),
        ExitStatus::Signal(s) => e.with_signal(
            nix::sys::signal::Signal::try_from(s)
                .map(|sig| sig.as_str().to_string())
                .unwrap_or_else(|_| s.to_string()),
        ),
    }
}

/// The program is `fatal`: warden stopped restarting it.
pub fn fatal(journal: &Journal, name: &str) {
    journal.record(Event::new(
        Kind::ProgramFatal,
        name,
        format!(
            "fatal: it kept failing and is no longer restarted; fix it, then `warden restart {name}`"
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_carry_their_code_or_signal_name() {
        let e = exit_event("backend", 7, ExitStatus::Code(3));
        assert_eq!((e.code, e.signal.as_deref()), (Some(3), None));
        assert_eq!(e.message, "exited with exit code 3 (pid 7)");
        let e = exit_event("backend", 7, ExitStatus::Signal(libc::SIGKILL));
        assert_eq!((e.code, e.signal.as_deref()), (None, Some("SIGKILL")));
        assert_eq!(e.message, "exited with signal SIGKILL (pid 7)");
    }
}
