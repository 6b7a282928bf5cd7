//! warden's own start and stop, so the history shows where a restart fell.

use super::{Event, Journal, Kind};

const SUBJECT: &str = "warden";

pub fn started(journal: &Journal, programs: usize) {
    journal.record(
        Event::new(
            Kind::WardenStarted,
            SUBJECT,
            format!(
                "started (version {}), supervising {programs} program{}",
                env!("CARGO_PKG_VERSION"),
                if programs == 1 { "" } else { "s" }
            ),
        )
        .with_pid(std::process::id() as i32),
    );
}

/// `signal`: the one that asked warden to stop (`SIGTERM`).
pub fn stopping(journal: &Journal, signal: &str) {
    journal.record(
        Event::new(
            Kind::WardenStopping,
            SUBJECT,
            format!("{signal} received: stopping all programs"),
        )
        .with_signal(signal),
    );
}
