//! How long each token was not valid while the market was open: a pure accumulator fed with
//! token-state transitions and clock ticks. Nothing here reads a clock; the caller says when.
//!
//! Between two observations a token is in the state it was last given; the market-open part of
//! that interval (split by trading day, [`MarketCalendar::open_time_between`]) is added to the
//! day's `watched` time and, unless the token was `valid`, to its `invalid` time. Time before a
//! token's first observation (warden not running) is neither: the strip shows such a day as
//! unwatched rather than green. Milliseconds inside, so that no rounding is ever lost.

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::calendar::MarketCalendar;

/// The number of trading days the strip shows (and the state file keeps).
pub const STRIP_DAYS: usize = 7;

/// One trading day of one token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DayTotals {
    /// Market-open time warden was running and knew the token's state.
    pub watched_ms: u64,
    /// The part of `watched_ms` the token was not valid.
    pub invalid_ms: u64,
}

/// What one cell of the strip says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DayVerdict {
    /// Watched, never invalid while open (so far, for today).
    Ok,
    /// Invalid for `invalid_seconds` while open.
    Lost,
    /// warden was not running during that day's session (or it has not opened yet).
    Unwatched,
}

/// One cell of the strip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StripDay {
    #[serde(serialize_with = "date_string")]
    pub date: Date,
    pub verdict: DayVerdict,
    /// Whole seconds, rounded down.
    pub invalid_seconds: u64,
    pub watched_seconds: u64,
}

fn date_string<S: serde::Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

#[derive(Debug, Clone, Default)]
struct TokenLedger {
    /// The state since `since`; `None` before the first observation.
    valid: Option<bool>,
    since: Option<Timestamp>,
    /// Since this process started (the counter's value, in ms).
    invalid_total_ms: u64,
    days: BTreeMap<Date, DayTotals>,
}

#[derive(Debug, Clone)]
pub struct Continuity {
    calendar: MarketCalendar,
    tokens: BTreeMap<String, TokenLedger>,
}

impl Continuity {
    pub fn new(calendar: MarketCalendar) -> Self {
        Continuity {
            calendar,
            tokens: BTreeMap::new(),
        }
    }

    pub fn calendar(&self) -> &MarketCalendar {
        &self.calendar
    }

    /// A reloaded `[market]`: time already accounted stays as it was.
    pub fn set_calendar(&mut self, calendar: MarketCalendar) {
        self.calendar = calendar;
    }

    /// Per-day totals read back from the state file (a restart keeps the strip). Days this
    /// process has already accounted keep the larger value.
    pub fn restore(&mut self, token: &str, days: BTreeMap<Date, DayTotals>) {
        let ledger = self.tokens.entry(token.to_string()).or_default();
        for (d, t) in days {
            let mine = ledger.days.entry(d).or_default();
            mine.watched_ms = mine.watched_ms.max(t.watched_ms);
            mine.invalid_ms = mine.invalid_ms.max(t.invalid_ms);
        }
    }

    /// The token is `valid` (or not) from `at` on. Time up to `at` is accounted in the state
    /// it had before.
    pub fn observe(&mut self, token: &str, at: Timestamp, valid: bool) {
        let ledger = self.tokens.entry(token.to_string()).or_default();
        advance(&self.calendar, ledger, at);
        ledger.valid = Some(valid);
        if ledger.since.is_none() {
            ledger.since = Some(at);
        }
    }

    /// Account every token up to `at` in its current state.
    pub fn tick(&mut self, at: Timestamp) {
        for ledger in self.tokens.values_mut() {
            advance(&self.calendar, ledger, at);
        }
    }

    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.tokens.keys().map(String::as_str)
    }

    /// Milliseconds the token was not valid while the market was open, since this process
    /// started accounting.
    pub fn invalid_total_ms(&self, token: &str) -> u64 {
        self.tokens.get(token).map_or(0, |l| l.invalid_total_ms)
    }

    /// The per-day totals kept for `token` (what the state file holds).
    pub fn days(&self, token: &str) -> BTreeMap<Date, DayTotals> {
        self.tokens
            .get(token)
            .map(|l| l.days.clone())
            .unwrap_or_default()
    }

    /// The last [`STRIP_DAYS`] trading days up to and including `today`, oldest first.
    pub fn strip(&self, token: &str, today: Date) -> Vec<StripDay> {
        let days = self.tokens.get(token).map(|l| &l.days);
        self.calendar
            .trading_days_through(today, STRIP_DAYS)
            .into_iter()
            .map(|date| {
                let t = days.and_then(|d| d.get(&date)).copied().unwrap_or_default();
                let verdict = if t.invalid_ms > 0 {
                    DayVerdict::Lost
                } else if t.watched_ms > 0 {
                    DayVerdict::Ok
                } else {
                    DayVerdict::Unwatched
                };
                StripDay {
                    date,
                    verdict,
                    invalid_seconds: t.invalid_ms / 1000,
                    watched_seconds: t.watched_ms / 1000,
                }
            })
            .collect()
    }

    /// Forget days older than the strip shows.
    pub fn prune(&mut self, today: Date) {
        let Some(&oldest) = self
            .calendar
            .trading_days_through(today, STRIP_DAYS)
            .first()
        else {
            return;
        };
        for ledger in self.tokens.values_mut() {
            ledger.days.retain(|d, _| *d >= oldest);
        }
    }
}

fn advance(calendar: &MarketCalendar, ledger: &mut TokenLedger, at: Timestamp) {
    let (Some(valid), Some(since)) = (ledger.valid, ledger.since) else {
        return;
    };
    // A clock stepped back: nothing to add, and nothing counted twice later.
    if at <= since {
        return;
    }
    for (date, span) in calendar.open_time_between(since, at) {
        let ms = span.as_millis().max(0) as u64;
        let day = ledger.days.entry(date).or_default();
        day.watched_ms += ms;
        if !valid {
            day.invalid_ms += ms;
            ledger.invalid_total_ms += ms;
        }
    }
    ledger.since = Some(at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use jiff::tz::TimeZone;

    /// Asia/Kolkata wall-clock time in the simulated week of Monday 21 to Sunday 27 December
    /// 2026 (Friday the 25th is Christmas, a trading holiday).
    fn ist(d: i8, h: i8, m: i8, s: i8) -> Timestamp {
        date(2026, 12, d)
            .at(h, m, s, 0)
            .to_zoned(TimeZone::get("Asia/Kolkata").unwrap())
            .unwrap()
            .timestamp()
    }

    /// Feed the accumulator like the tracker does: each transition at its moment, and a tick
    /// every `step` seconds in between (ticks must not change the result).
    fn simulate(events: &[(Timestamp, bool)], until: Timestamp, step: i64) -> Continuity {
        let mut c = Continuity::new(MarketCalendar::nse());
        let mut tick = events[0].0;
        let mut next = events.iter().peekable();
        while tick <= until {
            while let Some(&&(at, valid)) = next.peek().filter(|(at, _)| *at <= tick) {
                c.observe("kite", at, valid);
                next.next();
            }
            c.tick(tick);
            tick = tick
                .checked_add(jiff::SignedDuration::from_secs(step))
                .unwrap();
        }
        for &(at, valid) in next {
            c.observe("kite", at, valid);
        }
        c.tick(until);
        c
    }

    fn secs(c: &Continuity, d: i8) -> u64 {
        c.days("kite")
            .get(&date(2026, 12, d))
            .map_or(0, |t| t.invalid_ms / 1000)
    }

    #[test]
    fn a_simulated_trading_week() {
        let events = [
            // Warden starts on Monday before the open with a valid token.
            (ist(21, 8, 0, 0), true),
            // Monday: invalid 10:00:00–10:02:30 inside the session: 150 s.
            (ist(21, 10, 0, 0), false),
            (ist(21, 10, 2, 30), true),
            // Monday night: invalid 20:00–Tuesday 06:00, entirely closed: 0 s.
            (ist(21, 20, 0, 0), false),
            (ist(22, 6, 0, 0), true),
            // Wednesday: invalid from 09:00, valid at 09:20:07: counted from 09:15, 307 s.
            (ist(23, 9, 0, 0), false),
            (ist(23, 9, 20, 7), true),
            // Thursday: invalid from 15:29:00 to 16:10: 60 s until the close.
            (ist(24, 15, 29, 0), false),
            (ist(24, 16, 10, 0), true),
            // Friday is Christmas: invalid all day, 0 s.
            (ist(25, 8, 0, 0), false),
            (ist(25, 18, 0, 0), true),
            // Saturday: invalid, closed: 0 s.
            (ist(26, 10, 0, 0), false),
            (ist(26, 11, 0, 0), true),
        ];
        let c = simulate(&events, ist(27, 23, 0, 0), 7);
        assert_eq!(secs(&c, 21), 150);
        assert_eq!(secs(&c, 22), 0);
        assert_eq!(secs(&c, 23), 307);
        assert_eq!(secs(&c, 24), 60);
        assert_eq!(secs(&c, 25), 0);
        assert_eq!(secs(&c, 26), 0);
        assert_eq!(c.invalid_total_ms("kite"), (150 + 307 + 60) * 1000);
        // Every trading day's session was watched in full: 6 h 15 min.
        let full = 6 * 3600 + 15 * 60;
        for d in [21, 22, 23, 24] {
            assert_eq!(
                c.days("kite")[&date(2026, 12, d)].watched_ms / 1000,
                full,
                "{d}"
            );
        }
        assert!(!c.days("kite").contains_key(&date(2026, 12, 25)));

        let strip = c.strip("kite", date(2026, 12, 27));
        let cells: Vec<(String, DayVerdict, u64)> = strip
            .iter()
            .map(|s| (s.date.to_string(), s.verdict, s.invalid_seconds))
            .collect();
        assert_eq!(
            cells,
            [
                ("2026-12-16".into(), DayVerdict::Unwatched, 0),
                ("2026-12-17".into(), DayVerdict::Unwatched, 0),
                ("2026-12-18".into(), DayVerdict::Unwatched, 0),
                ("2026-12-21".into(), DayVerdict::Lost, 150),
                ("2026-12-22".into(), DayVerdict::Ok, 0),
                ("2026-12-23".into(), DayVerdict::Lost, 307),
                ("2026-12-24".into(), DayVerdict::Lost, 60),
            ]
        );
    }

    #[test]
    fn ticks_do_not_change_the_result() {
        let events = [
            (ist(21, 9, 0, 0), true),
            (ist(21, 9, 30, 0), false),
            (ist(21, 9, 31, 1), true),
        ];
        for step in [1, 13, 600, 86_400] {
            let c = simulate(&events, ist(21, 16, 0, 0), step);
            assert_eq!(c.invalid_total_ms("kite"), 61_000, "step {step}");
        }
    }

    #[test]
    fn an_outage_at_the_start_counts_from_the_first_observation() {
        // Warden starts at 11:00 with an unknown (not valid) token, valid at 11:00:04.
        let mut c = Continuity::new(MarketCalendar::nse());
        c.tick(ist(21, 10, 0, 0));
        c.observe("kite", ist(21, 11, 0, 0), false);
        c.observe("kite", ist(21, 11, 0, 4), true);
        c.tick(ist(21, 12, 0, 0));
        assert_eq!(c.invalid_total_ms("kite"), 4000);
        assert_eq!(c.days("kite")[&date(2026, 12, 21)].watched_ms, 3600 * 1000);
    }

    #[test]
    fn a_clock_stepping_back_counts_nothing_twice() {
        let mut c = Continuity::new(MarketCalendar::nse());
        c.observe("kite", ist(21, 10, 0, 0), false);
        c.tick(ist(21, 10, 1, 0));
        c.tick(ist(21, 10, 0, 30));
        c.tick(ist(21, 10, 1, 0));
        assert_eq!(c.invalid_total_ms("kite"), 60_000);
    }

    #[test]
    fn restored_days_survive_and_old_ones_are_pruned() {
        let mut c = Continuity::new(MarketCalendar::nse());
        let mut days = BTreeMap::new();
        days.insert(
            date(2026, 12, 1),
            DayTotals {
                watched_ms: 1,
                invalid_ms: 1,
            },
        );
        days.insert(
            date(2026, 12, 24),
            DayTotals {
                watched_ms: 22_500_000,
                invalid_ms: 5000,
            },
        );
        c.restore("kite", days);
        c.observe("kite", ist(28, 9, 15, 0), true);
        c.tick(ist(28, 9, 20, 0));
        c.prune(date(2026, 12, 28));
        let kept: Vec<Date> = c.days("kite").into_keys().collect();
        assert_eq!(kept, [date(2026, 12, 24), date(2026, 12, 28)]);
        let strip = c.strip("kite", date(2026, 12, 28));
        assert_eq!(strip.len(), STRIP_DAYS);
        assert_eq!(strip[5].verdict, DayVerdict::Lost);
        assert_eq!(strip[5].invalid_seconds, 5);
        assert_eq!(strip[6].verdict, DayVerdict::Ok);
        // The counter is this process's: restored days are not in it.
        assert_eq!(c.invalid_total_ms("kite"), 0);
    }
}
