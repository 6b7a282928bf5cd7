//! When the exchange trades: regular sessions on weekdays that are not holidays, plus extra
//! sessions (Muhurat trading) on any date. Pure: no clock, no I/O; every question takes the
//! moment it is about.
//!
//! A session opens at `open` (inclusive) and closes at `close` (exclusive) on one civil date in
//! the calendar's time zone; sessions never cross midnight (the loader refuses `close <= open`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::config::{parse_market_date, parse_market_time, MarketConfig};

/// How far `next_open` and friends look ahead before giving up (a calendar with every day a
/// holiday has no next session).
const HORIZON_DAYS: usize = 400;

/// One trading session, as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The trading day it belongs to, in the calendar's time zone.
    pub date: Date,
    pub open: Timestamp,
    pub close: Timestamp,
}

impl Session {
    pub fn contains(&self, at: Timestamp) -> bool {
        self.open <= at && at < self.close
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MarketCalendar {
    tz: TimeZone,
    open: Time,
    close: Time,
    holidays: BTreeSet<Date>,
    extra: BTreeMap<Date, Vec<(Time, Time)>>,
}

impl Default for MarketCalendar {
    fn default() -> Self {
        Self::from_config(&MarketConfig::default())
    }
}

impl MarketCalendar {
    /// NSE's equity market: 09:15–15:30 Asia/Kolkata, the built-in holidays.
    pub fn nse() -> Self {
        Self::default()
    }

    /// A calendar with regular sessions `open`–`close` on weekdays except `holidays`.
    pub fn new(
        tz: TimeZone,
        open: Time,
        close: Time,
        holidays: impl IntoIterator<Item = Date>,
    ) -> Self {
        MarketCalendar {
            tz,
            open,
            close,
            holidays: holidays.into_iter().collect(),
            extra: BTreeMap::new(),
        }
    }

    /// Adds a session on `date` (any date, a holiday or weekend included).
    pub fn with_extra_session(mut self, date: Date, open: Time, close: Time) -> Self {
        let day = self.extra.entry(date).or_default();
        day.push((open, close));
        day.sort();
        self
    }

    /// The `[market]` section. The loader has checked it; a hand-built config with a bad value
    /// falls back to the default for that value (and an unparsable date is skipped).
    pub fn from_config(m: &MarketConfig) -> Self {
        let tz = TimeZone::get(&m.timezone)
            .or_else(|_| TimeZone::get("Asia/Kolkata"))
            .unwrap_or(TimeZone::UTC);
        let time = |s: &str, fallback: Time| parse_market_time(s).unwrap_or(fallback);
        let open = time(&m.open, jiff::civil::time(9, 15, 0, 0));
        let close = time(&m.close, jiff::civil::time(15, 30, 0, 0));
        let builtin = super::nse_holidays::NSE_HOLIDAYS
            .iter()
            .filter(|_| m.builtin_holidays)
            .map(|&(y, mo, d, _)| jiff::civil::date(y, mo, d));
        let own = m.holidays.iter().filter_map(|d| parse_market_date(d).ok());
        let mut cal = MarketCalendar::new(tz, open, close, builtin.chain(own));
        for s in &m.extra_sessions {
            if let (Ok(d), Ok(o), Ok(c)) = (
                parse_market_date(&s.date),
                parse_market_time(&s.open),
                parse_market_time(&s.close),
            ) {
                cal = cal.with_extra_session(d, o, c);
            }
        }
        cal
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The civil date `at` falls on in the calendar's time zone.
    pub fn date_of(&self, at: Timestamp) -> Date {
        at.to_zoned(self.tz.clone()).date()
    }

    /// A listed holiday (built-in or configured). Weekends are closed without being listed.
    pub fn is_holiday(&self, date: Date) -> bool {
        self.holidays.contains(&date)
    }

    /// True when any holiday is listed in `year`: a year without one is most likely a year
    /// whose exchange calendar nobody has entered yet.
    pub fn lists_holidays_in(&self, year: i16) -> bool {
        self.holidays.iter().any(|d| d.year() == year)
    }

    /// True when `date` has at least one session (a Muhurat-only day counts).
    pub fn is_trading_day(&self, date: Date) -> bool {
        self.has_regular_session(date) || self.extra.contains_key(&date)
    }

    /// The sessions of `date`, earliest first.
    pub fn sessions_on(&self, date: Date) -> Vec<Session> {
        let regular = Some((self.open, self.close)).filter(|_| self.has_regular_session(date));
        let extra = self.extra.get(&date).into_iter().flatten().copied();
        let mut out: Vec<Session> = regular
            .into_iter()
            .chain(extra)
            .filter_map(|(o, c)| {
                Some(Session {
                    date,
                    open: self.instant(date, o)?,
                    close: self.instant(date, c)?,
                })
            })
            .filter(|s| s.open < s.close)
            .collect();
        out.sort_by_key(|s| s.open);
        // An extra session overlapping the regular one (or another) is one stretch of trading:
        // merged, so that no second is counted twice.
        let mut merged: Vec<Session> = Vec::with_capacity(out.len());
        for s in out {
            match merged.last_mut() {
                Some(last) if s.open <= last.close => last.close = last.close.max(s.close),
                _ => merged.push(s),
            }
        }
        merged
    }

    /// The session `at` is inside, if any.
    pub fn session_at(&self, at: Timestamp) -> Option<Session> {
        self.sessions_on(self.date_of(at))
            .into_iter()
            .find(|s| s.contains(at))
    }

    pub fn is_open(&self, at: Timestamp) -> bool {
        self.session_at(at).is_some()
    }

    /// The first session that opens strictly after `after` (while the market is open, the
    /// next one, not the current one). `None` when none opens within about a year.
    pub fn next_open(&self, after: Timestamp) -> Option<Timestamp> {
        self.sessions_from(after)
            .map(|s| s.open)
            .find(|&open| open > after)
    }

    /// The first close strictly after `after` (the current session's while open).
    pub fn next_close(&self, after: Timestamp) -> Option<Timestamp> {
        self.sessions_from(after)
            .map(|s| s.close)
            .find(|&close| close > after)
    }

    /// The first moment after `after` at which the market opens or closes.
    pub fn next_change(&self, after: Timestamp) -> Option<Timestamp> {
        match (self.next_open(after), self.next_close(after)) {
            (Some(o), Some(c)) => Some(o.min(c)),
            (o, c) => o.or(c),
        }
    }

    /// The last `n` trading days up to and including `through`, oldest first.
    pub fn trading_days_through(&self, through: Date, n: usize) -> Vec<Date> {
        let mut out = Vec::with_capacity(n);
        let mut d = through;
        for _ in 0..HORIZON_DAYS {
            if out.len() == n {
                break;
            }
            if self.is_trading_day(d) {
                out.push(d);
            }
            match d.yesterday() {
                Ok(y) => d = y,
                Err(_) => break,
            }
        }
        out.reverse();
        out
    }

    /// How much of `[from, to)` the market was open, per trading day, oldest first (days with
    /// no overlap left out).
    pub fn open_time_between(&self, from: Timestamp, to: Timestamp) -> Vec<(Date, SignedDuration)> {
        let mut out: Vec<(Date, SignedDuration)> = Vec::new();
        if to <= from {
            return out;
        }
        let last = self.date_of(to);
        let mut d = self.date_of(from);
        while d <= last {
            for s in self.sessions_on(d) {
                let start = s.open.max(from);
                let end = s.close.min(to);
                if start < end {
                    let span = end.duration_since(start);
                    match out.last_mut() {
                        Some((day, total)) if *day == d => *total += span,
                        _ => out.push((d, span)),
                    }
                }
            }
            match d.tomorrow() {
                Ok(t) => d = t,
                Err(_) => break,
            }
        }
        out
    }

    fn has_regular_session(&self, date: Date) -> bool {
        !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
            && !self.holidays.contains(&date)
    }

    fn instant(&self, date: Date, time: Time) -> Option<Timestamp> {
        date.to_datetime(time)
            .to_zoned(self.tz.clone())
            .ok()
            .map(|z| z.timestamp())
    }

    /// Sessions from the day before `after` onwards (a session may still be running), for
    /// about a year.
    fn sessions_from(&self, after: Timestamp) -> impl Iterator<Item = Session> + '_ {
        let first = self.date_of(after);
        let first = first.yesterday().unwrap_or(first);
        (0..HORIZON_DAYS as i64)
            .filter_map(move |i| first.checked_add(jiff::Span::new().days(i)).ok())
            .flat_map(|d| self.sessions_on(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    fn ist(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
        date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned(TimeZone::get("Asia/Kolkata").unwrap())
            .unwrap()
            .timestamp()
    }

    #[test]
    fn nse_regular_hours_on_a_weekday() {
        let c = MarketCalendar::nse();
        // Monday 7 December 2026.
        assert!(!c.is_open(ist(2026, 12, 7, 9, 14)));
        assert!(c.is_open(ist(2026, 12, 7, 9, 15)));
        assert!(c.is_open(ist(2026, 12, 7, 15, 29)));
        assert!(!c.is_open(ist(2026, 12, 7, 15, 30)));
        assert!(c.is_trading_day(date(2026, 12, 7)));
    }

    #[test]
    fn weekends_and_holidays_are_closed() {
        let c = MarketCalendar::nse();
        assert!(!c.is_trading_day(date(2026, 12, 5)), "Saturday");
        assert!(!c.is_trading_day(date(2026, 12, 6)), "Sunday");
        assert!(!c.is_trading_day(date(2026, 12, 25)), "Christmas");
        assert!(!c.is_open(ist(2026, 12, 25, 11, 0)));
        assert!(
            c.is_holiday(date(2026, 1, 15)),
            "the extra closure of CMTR72260"
        );
    }

    #[test]
    fn every_builtin_holiday_is_a_weekday() {
        for &(y, m, d, name) in crate::market::nse_holidays::NSE_HOLIDAYS {
            let wd = date(y, m, d).weekday();
            assert!(
                !matches!(wd, Weekday::Saturday | Weekday::Sunday),
                "{y}-{m}-{d} {name} is a {wd:?}"
            );
        }
    }

    #[test]
    fn next_open_skips_the_weekend_and_a_holiday() {
        let c = MarketCalendar::nse();
        // Thursday 24 December 2026 after the close → Friday is Christmas → Monday 28th.
        assert_eq!(
            c.next_open(ist(2026, 12, 24, 16, 0)),
            Some(ist(2026, 12, 28, 9, 15))
        );
        // While open, the next session's opening.
        assert_eq!(
            c.next_open(ist(2026, 12, 7, 10, 0)),
            Some(ist(2026, 12, 8, 9, 15))
        );
        assert_eq!(
            c.next_close(ist(2026, 12, 7, 10, 0)),
            Some(ist(2026, 12, 7, 15, 30))
        );
        assert_eq!(
            c.next_change(ist(2026, 12, 7, 8, 0)),
            Some(ist(2026, 12, 7, 9, 15))
        );
        assert_eq!(
            c.next_open(ist(2026, 12, 7, 9, 15)),
            Some(ist(2026, 12, 8, 9, 15))
        );
    }

    #[test]
    fn an_extra_session_opens_a_holiday_sunday() {
        let c = MarketCalendar::nse().with_extra_session(
            date(2026, 11, 8),
            time(18, 0, 0, 0),
            time(19, 15, 0, 0),
        );
        assert!(c.is_trading_day(date(2026, 11, 8)));
        assert!(c.is_open(ist(2026, 11, 8, 18, 30)));
        assert!(!c.is_open(ist(2026, 11, 8, 10, 0)));
        assert_eq!(
            c.next_open(ist(2026, 11, 7, 12, 0)),
            Some(ist(2026, 11, 8, 18, 0))
        );
    }

    #[test]
    fn overlapping_sessions_are_one_stretch() {
        let c = MarketCalendar::nse().with_extra_session(
            date(2026, 12, 7),
            time(15, 0, 0, 0),
            time(16, 0, 0, 0),
        );
        let s = c.sessions_on(date(2026, 12, 7));
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].open, s[0].close),
            (ist(2026, 12, 7, 9, 15), ist(2026, 12, 7, 16, 0))
        );
        let open: Vec<_> = c
            .open_time_between(ist(2026, 12, 7, 0, 0), ist(2026, 12, 8, 0, 0))
            .into_iter()
            .map(|(_, d)| d.as_mins())
            .collect();
        assert_eq!(open, [6 * 60 + 45]);
    }

    #[test]
    fn configured_holidays_add_to_the_builtin_list_or_replace_it() {
        let mut m = MarketConfig {
            holidays: vec!["2026-12-07".into()],
            ..MarketConfig::default()
        };
        let c = MarketCalendar::from_config(&m);
        assert!(!c.is_trading_day(date(2026, 12, 7)));
        assert!(!c.is_trading_day(date(2026, 12, 25)));
        m.builtin_holidays = false;
        let c = MarketCalendar::from_config(&m);
        assert!(!c.is_trading_day(date(2026, 12, 7)));
        assert!(c.is_trading_day(date(2026, 12, 25)));
    }

    #[test]
    fn open_time_is_split_by_trading_day() {
        let c = MarketCalendar::nse();
        // Friday 4 Dec 15:00 → Monday 7 Dec 10:00: 30 min on Friday, 45 min on Monday.
        let got = c.open_time_between(ist(2026, 12, 4, 15, 0), ist(2026, 12, 7, 10, 0));
        assert_eq!(
            got,
            [
                (date(2026, 12, 4), SignedDuration::from_mins(30)),
                (date(2026, 12, 7), SignedDuration::from_mins(45)),
            ]
        );
        assert!(c
            .open_time_between(ist(2026, 12, 7, 16, 0), ist(2026, 12, 7, 9, 0))
            .is_empty());
    }

    #[test]
    fn the_last_trading_days_skip_closed_days() {
        let c = MarketCalendar::nse();
        assert_eq!(
            c.trading_days_through(date(2026, 12, 28), 3),
            [date(2026, 12, 23), date(2026, 12, 24), date(2026, 12, 28)]
        );
    }

    #[test]
    fn knows_which_years_have_holidays() {
        let c = MarketCalendar::nse();
        assert!(c.lists_holidays_in(2026));
        assert!(!c.lists_holidays_in(2027));
        let m = MarketConfig {
            holidays: vec!["2027-01-26".into()],
            ..MarketConfig::default()
        };
        assert!(MarketCalendar::from_config(&m).lists_holidays_in(2027));
    }

    #[test]
    fn a_utc_calendar_for_tests() {
        let c = MarketCalendar::new(TimeZone::UTC, time(0, 0, 0, 0), time(23, 59, 0, 0), []);
        let monday = date(2026, 12, 7)
            .at(12, 0, 0, 0)
            .to_zoned(TimeZone::UTC)
            .unwrap();
        assert!(c.is_open(monday.timestamp()));
    }
}
