//! Wall-clock time for the token keeper, real or simulated.
//!
//! The keeper's timers are tokio timers; its calendar (expiry at 06:00 IST, refresh at 06:05)
//! needs wall time. A simulated clock derives wall time from tokio's clock, so a test that
//! pauses tokio time can run a year of mornings in seconds with both clocks in step.

use jiff::Timestamp;

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// Wall time = `base` + time elapsed on tokio's (possibly paused) clock since `start`.
    Simulated {
        base: Timestamp,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A simulated clock that reads `base` now.
    pub fn simulated(base: Timestamp) -> Clock {
        Clock::Simulated {
            base,
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Simulated { base, start } => {
                let elapsed = tokio::time::Instant::now().duration_since(*start);
                base.checked_add(elapsed).unwrap_or(*base)
            }
        }
    }
}
