//! Verifying a token hand-over (SPEC §3.1): when a program that was handed a new token has shown
//! that it works, and when it must be restarted instead.
//!
//! After a `signal` or `watch` program with a health check gets a new token, the first 2xx
//! answer to a probe *sent after* the hand-over completes it; no such answer within
//! `verify_timeout` means a restart (reason `token`). Two mistakes this rules out:
//! - counting an answer to a probe that was already on its way when the signal went out: it
//!   says nothing about the new token;
//! - waiting for a healthy *transition*: a backend that caches its broker check stays healthy
//!   throughout, and must never be restarted for that.

use std::time::Duration;

use tokio::time::Instant;

/// One hand-over to one process, from the moment warden decided it until it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// When the program had the token: the reload signal was delivered to it (`signal`), or
    /// the file it watches was written (`watch`). `None` while the signal is on its way.
    handed_at: Option<Instant>,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep probing.
    Pending,
    /// A probe sent after the hand-over was answered 2xx: done, nothing to do.
    Verified,
    /// `verify_timeout` passed without such an answer: restart the program.
    Restart,
}

impl Verification {
    /// The program has had the token since `at` (`watch`: the env file was written by then).
    pub fn handed(at: Instant, timeout: Duration) -> Self {
        Verification {
            handed_at: Some(at),
            deadline: at + timeout,
        }
    }

    /// The reload signal was asked for at `now`; the hand-over instant is known once the
    /// program's actor confirms the delivery ([`Verification::signal_delivered`]).
    pub fn signal_pending(now: Instant, timeout: Duration) -> Self {
        Verification {
            handed_at: None,
            deadline: now + timeout,
        }
    }

    /// The reload signal reached the program at `at`. Only the first confirmation counts: a
    /// later delivery of the same signal (forwarded by hand) does not move the hand-over.
    pub fn signal_delivered(&mut self, at: Instant) {
        self.handed_at.get_or_insert(at);
    }

    /// When the program had the token, once known; probes sent from then on count.
    pub fn handed_at(&self) -> Option<Instant> {
        self.handed_at
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A 2xx answer to the probe sent at `sent`. An answer that arrives a moment after the
    /// deadline still verifies: the program did answer, and a restart would only hurt.
    pub fn on_ok(&self, sent: Instant) -> Verdict {
        match self.handed_at {
            Some(at) if sent >= at => Verdict::Verified,
            _ => Verdict::Pending,
        }
    }

    /// The time is `now`, and no qualifying 2xx has been seen.
    pub fn on_tick(&self, now: Instant) -> Verdict {
        if now >= self.deadline {
            Verdict::Restart
        } else {
            Verdict::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_probe_sent_after_a_watch_hand_over_verifies_it() {
        let t0 = Instant::now();
        let v = Verification::handed(t0, TIMEOUT);
        assert_eq!(v.on_ok(t0), Verdict::Verified);
        assert_eq!(v.on_ok(t0 + 10 * MS), Verdict::Verified);
    }

    #[test]
    fn a_probe_in_flight_at_the_hand_over_does_not_count() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let v = Verification::handed(t0, TIMEOUT);
        assert_eq!(v.on_ok(t0 - MS), Verdict::Pending);
    }

    #[test]
    fn nothing_counts_until_the_signal_is_delivered() {
        let t0 = Instant::now();
        let mut v = Verification::signal_pending(t0, TIMEOUT);
        assert_eq!(v.handed_at(), None);
        // Sent after warden asked for the signal, but before the program got it.
        assert_eq!(v.on_ok(t0 + MS), Verdict::Pending);
        v.signal_delivered(t0 + 2 * MS);
        assert_eq!(v.on_ok(t0 + MS), Verdict::Pending);
        assert_eq!(v.on_ok(t0 + 2 * MS), Verdict::Verified);
        // A second delivery (someone forwarded the same signal) does not move the hand-over.
        v.signal_delivered(t0 + 100 * MS);
        assert_eq!(v.handed_at(), Some(t0 + 2 * MS));
        assert_eq!(v.on_ok(t0 + 50 * MS), Verdict::Verified);
    }

    #[test]
    fn the_deadline_counts_from_the_decision_and_only_then_restarts() {
        let t0 = Instant::now();
        let v = Verification::signal_pending(t0, TIMEOUT);
        assert_eq!(v.deadline(), t0 + TIMEOUT);
        assert_eq!(v.on_tick(t0), Verdict::Pending);
        assert_eq!(v.on_tick(t0 + TIMEOUT - MS), Verdict::Pending);
        assert_eq!(v.on_tick(t0 + TIMEOUT), Verdict::Restart);
        let w = Verification::handed(t0, TIMEOUT);
        assert_eq!(w.on_tick(t0 + TIMEOUT + MS), Verdict::Restart);
    }

    #[test]
    fn a_late_answer_to_a_probe_sent_in_time_still_verifies() {
        let t0 = Instant::now();
        let v = Verification::handed(t0, TIMEOUT);
        assert_eq!(v.on_ok(t0 + TIMEOUT - MS), Verdict::Verified);
    }
}
