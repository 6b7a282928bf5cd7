//! How many automated logins the keeper may make, and when (SPEC §3 `max_attempts`,
//! `attempt_window`, `min_interval`; SPEC §4.1 credential blocks).
//!
//! The decisions are pure: they read the attempt history and the block that
//! [`super::login_memory::LoginMemory`] keeps across restarts and say "go" or "not before
//! …". The keeper records an attempt in that memory before it submits anything, so the budget
//! holds across restarts; nothing here touches the disk or a clock.

use std::time::Duration;

use crate::config::TokenConfig;

/// Attempts dated this far in the future are ignored (a clock that was set back must not
/// block logins for hours; a little slack covers a step of NTP).
const FUTURE_SLACK_SECS: i64 = 60;

/// What the budget says about an automated login with credentials now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Automated login is off for these credentials (a credential rejection, a lost memory).
    Blocked {
        reason: String,
    },
    /// `max_attempts` within `attempt_window`: a person should log in, or the window pass.
    Capped {
        attempts: usize,
        retry_in: Duration,
    },
    /// The last attempt was less than `min_interval` ago.
    TooSoon {
        retry_in: Duration,
    },
}

/// The caps, plus the one extra attempt `warden token unblock` grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptBudget {
    max_attempts: u32,
    window: Duration,
    min_interval: Duration,
    /// `warden token unblock` allows one automated attempt beyond the caps.
    granted: bool,
}

impl AttemptBudget {
    pub fn new(max_attempts: u32, window: Duration, min_interval: Duration) -> AttemptBudget {
        AttemptBudget {
            max_attempts,
            window,
            min_interval,
            granted: false,
        }
    }

    pub fn from_config(cfg: &TokenConfig) -> AttemptBudget {
        AttemptBudget::new(cfg.max_attempts, cfg.attempt_window, cfg.min_interval)
    }

    /// New caps after a config reload; a granted attempt stays granted.
    pub fn reconfigure(&mut self, cfg: &TokenConfig) {
        let granted = self.granted;
        *self = AttemptBudget::from_config(cfg);
        self.granted = granted;
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// One attempt beyond the caps (the credential block itself is lifted in the memory).
    pub fn grant_one(&mut self) {
        self.granted = true;
    }

    /// An attempt was recorded: a granted extra one is used up.
    pub fn spend(&mut self) {
        self.granted = false;
    }

    /// The attempts of `history` (unix seconds, any order) that count at `now`, oldest first.
    pub fn recent(&self, history: &[i64], now: i64) -> Vec<i64> {
        let window = self.window.as_secs() as i64;
        let mut recent: Vec<i64> = history
            .iter()
            .copied()
            .filter(|t| now - *t < window && *t <= now + FUTURE_SLACK_SECS)
            .collect();
        recent.sort_unstable();
        recent
    }

    /// May an automated login submit credentials at `now` (unix seconds)? `history` is the
    /// persisted attempt times, `block` the credential block of the configured credentials.
    pub fn check(&self, now: i64, history: &[i64], block: Option<&str>) -> Verdict {
        if let Some(reason) = block {
            return Verdict::Blocked {
                reason: reason.to_string(),
            };
        }
        let window = self.window.as_secs() as i64;
        let recent = self.recent(history, now);
        if !self.granted && recent.len() as u32 >= self.max_attempts {
            let oldest = recent.first().copied().unwrap_or(now);
            return Verdict::Capped {
                attempts: recent.len(),
                retry_in: secs((oldest + window - now).max(1)),
            };
        }
        let min = self.min_interval.as_secs() as i64;
        if let Some(last) = history.iter().copied().max() {
            if now - last < min {
                return Verdict::TooSoon {
                    retry_in: secs((last + min - now).max(1)),
                };
            }
        }
        Verdict::Allowed
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> AttemptBudget {
        // 3 per hour, 30 s apart: the defaults.
        AttemptBudget::new(3, Duration::from_secs(3600), Duration::from_secs(30))
    }

    #[test]
    fn allows_until_the_cap_then_waits_for_the_oldest_to_leave_the_window() {
        let b = budget();
        assert_eq!(b.check(1000, &[], None), Verdict::Allowed);
        assert_eq!(b.check(1100, &[1000], None), Verdict::Allowed);
        assert_eq!(b.check(1200, &[1000, 1100], None), Verdict::Allowed);
        assert_eq!(
            b.check(1300, &[1100, 1000, 1200], None),
            Verdict::Capped {
                attempts: 3,
                retry_in: Duration::from_secs(1000 + 3600 - 1300),
            }
        );
        // The oldest leaves the window: one more is allowed.
        assert_eq!(b.check(4600, &[1000, 1100, 1200], None), Verdict::Allowed);
    }

    #[test]
    fn min_interval_spaces_attempts() {
        let b = budget();
        assert_eq!(
            b.check(1010, &[1000], None),
            Verdict::TooSoon {
                retry_in: Duration::from_secs(20)
            }
        );
        assert_eq!(b.check(1030, &[1000], None), Verdict::Allowed);
    }

    #[test]
    fn a_block_wins_over_everything() {
        let b = budget();
        assert_eq!(
            b.check(1000, &[], Some("login rejected")),
            Verdict::Blocked {
                reason: "login rejected".into()
            }
        );
        let mut granted = budget();
        granted.grant_one();
        assert!(matches!(
            granted.check(1000, &[], Some("still blocked")),
            Verdict::Blocked { .. }
        ));
    }

    #[test]
    fn an_unblock_grants_one_attempt_beyond_the_cap() {
        let mut b = budget();
        let history = [1000, 1100, 1200];
        assert!(matches!(
            b.check(1300, &history, None),
            Verdict::Capped { .. }
        ));
        b.grant_one();
        assert_eq!(b.check(1300, &history, None), Verdict::Allowed);
        b.spend();
        assert!(matches!(
            b.check(1400, &[1000, 1100, 1200, 1300], None),
            Verdict::Capped { .. }
        ));
        // The grant survives a config reload, which must not hand out a second one.
        b.grant_one();
        b.reconfigure(&TokenConfig::default());
        assert_eq!(b.check(1300, &history, None), Verdict::Allowed);
    }

    #[test]
    fn the_grant_does_not_skip_min_interval() {
        let mut b = budget();
        b.grant_one();
        assert!(matches!(
            b.check(1210, &[1000, 1100, 1200], None),
            Verdict::TooSoon { .. }
        ));
    }

    #[test]
    fn attempts_far_in_the_future_do_not_count() {
        let b = budget();
        // A clock set back by a day: the "future" attempts do not count towards the cap, but
        // the last one still spaces the next (the conservative reading of min_interval).
        let history = [90_000, 90_100, 90_200];
        assert_eq!(b.recent(&history, 1000), Vec::<i64>::new());
        assert!(matches!(
            b.check(1000, &history, None),
            Verdict::TooSoon { .. }
        ));
        assert_eq!(b.recent(&[1050, 1000], 1000), vec![1000, 1050]);
    }
}
