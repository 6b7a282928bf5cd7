//! Notification deliveries, in the journal's words.

use super::{Event, Journal, Kind};

/// One delivery of notification `name` (`token_needs_login`, …) on `channel`. The subject is
/// the program it is about, else `notify`. `outcome`'s error never holds the URL (webhook URLs
/// and bot tokens are secrets: the notifier strips them).
pub fn record(
    journal: Option<&Journal>,
    name: &str,
    subject: Option<&str>,
    channel: &str,
    outcome: Result<(), String>,
) {
    let Some(journal) = journal else { return };
    // The program or token it is about; "notify" for one about neither.
    let subject = subject.unwrap_or("notify");
    let ev = match outcome {
        Ok(()) => Event::new(
            Kind::NotificationSent,
            subject,
            format!("{name} sent via {channel}"),
        ),
        Err(e) => Event::new(
            Kind::NotificationFailed,
            subject,
            format!("{name} not delivered via {channel}: {e}"),
        )
        .with_reason(e),
    };
    journal.record(ev.with_channel(channel));
}
