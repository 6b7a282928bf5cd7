//! Restart pacing: jittered exponential backoff and the restart budget.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A run this long counts as "stable": the next failure starts the backoff from the beginning.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Exponential backoff between `initial` and `max`, with jitter so that many programs failing
/// together (a broker outage) do not restart in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    consecutive: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            consecutive: 0,
        }
    }

    /// Delay before the next start after a failure. `ran_for` is how long the last run lasted.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= STABLE_AFTER {
            self.consecutive = 0;
        }
        let exp = self.consecutive.min(30);
        self.consecutive = self.consecutive.saturating_add(1);
        let ceiling = self
            .initial
            .saturating_mul(1u32 << exp.min(20))
            .min(self.max);
        if ceiling.is_zero() {
            return Duration::ZERO;
        }
        // Jitter within [ceiling/2, ceiling], never below `initial`.
        let low = (ceiling / 2).max(self.initial);
        let span = ceiling.saturating_sub(low);
        low + span.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.consecutive = 0;
    }
}

/// Counts automatic restarts inside a sliding window; over budget means `fatal`.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    max: u32,
    window: Duration,
    history: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(max: u32, window: Duration) -> Self {
        RestartBudget {
            max,
            window,
            history: VecDeque::new(),
        }
    }

    /// Record a restart at `now`; false when this one would exceed the budget.
    pub fn allow(&mut self, now: Instant) -> bool {
        while let Some(&t) = self.history.front() {
            if now.duration_since(t) > self.window {
                self.history.pop_front();
            } else {
                break;
            }
        }
        if self.history.len() as u32 >= self.max {
            return false;
        }
        self.history.push_back(now);
        true
    }

    /// Restarts counted in the current window.
    pub fn used(&self) -> u32 {
        self.history.len() as u32
    }

    pub fn clear(&mut self) {
        self.history.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delay_stays_within_bounds(initial_ms in 0u64..5_000, max_ms in 0u64..120_000, steps in 1usize..40) {
            let (initial, max) = (Duration::from_millis(initial_ms), Duration::from_millis(max_ms));
            let mut b = Backoff::new(initial, max);
            for _ in 0..steps {
                let d = b.next_delay(Duration::ZERO);
                prop_assert!(d >= initial.min(max.max(initial)));
                prop_assert!(d <= max.max(initial));
            }
        }
    }

    #[test]
    fn grows_then_resets_after_a_stable_run() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let first = b.next_delay(Duration::ZERO);
        for _ in 0..10 {
            b.next_delay(Duration::ZERO);
        }
        let late = b.next_delay(Duration::ZERO);
        assert!(first <= Duration::from_millis(100));
        assert!(late >= Duration::from_secs(5), "{late:?}");
        let after_stable = b.next_delay(STABLE_AFTER);
        assert!(
            after_stable <= Duration::from_millis(100),
            "{after_stable:?}"
        );
    }

    #[test]
    fn zero_backoff_is_immediate() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.next_delay(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn budget_counts_within_window_only() {
        let mut budget = RestartBudget::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(budget.allow(t0));
        assert!(budget.allow(t0 + Duration::from_secs(1)));
        assert!(!budget.allow(t0 + Duration::from_secs(2)));
        assert!(budget.allow(t0 + Duration::from_secs(12)));
    }
}
