//! Which program events go into the event history (issue 16): starts, exits and restarts.
//! State changes are the status page's business; `fatal` is recorded where it is decided.

use crate::journal::{programs, Journal};
use crate::program::ProgramEvent;

pub(super) fn record(journal: &Journal, name: &str, event: &ProgramEvent) {
    match event {
        ProgramEvent::Spawned { pid, .. } => programs::started(journal, name, *pid),
        ProgramEvent::Exited { pid, status } => programs::exited(journal, name, *pid, *status),
        ProgramEvent::Restarting { reason } => programs::restarting(journal, name, reason.as_str()),
        _ => {}
    }
}
