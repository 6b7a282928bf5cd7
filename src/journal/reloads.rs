//! Config reloads, in the journal's words.

use super::{Event, Journal, Kind};
use crate::config::ConfigError;

/// Who the config events are about.
const SUBJECT: &str = "config";

/// An invalid file was refused; nothing changed. The reason is the first problem (key path,
/// line and message: the loader's messages never quote a secret's value).
pub fn rejected(journal: &Journal, e: &ConfigError) {
    let n = e.problems.len();
    let first = e
        .problems
        .first()
        .map(|p| p.located(&e.file, ""))
        .unwrap_or_default();
    journal.record(
        Event::new(
            Kind::ConfigRejected,
            SUBJECT,
            format!(
                "reload rejected, nothing changed: {n} problem{} ({first})",
                if n == 1 { "" } else { "s" }
            ),
        )
        .with_reason(first),
    );
}

pub fn reloaded(journal: &Journal, added: &[String], removed: &[String], changed: &[String]) {
    let mut parts = Vec::new();
    for (what, names) in [("added", added), ("removed", removed), ("changed", changed)] {
        if !names.is_empty() {
            parts.push(format!("{what} {}", names.join(", ")));
        }
    }
    let summary = if parts.is_empty() {
        "no program changed".to_string()
    } else {
        parts.join("; ")
    };
    journal.record(Event::new(
        Kind::ConfigReloaded,
        SUBJECT,
        format!("reloaded: {summary}"),
    ));
}
