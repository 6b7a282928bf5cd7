//! When a notification may go out: quiet hours, trading days only, and the lead before a
//! session. [`decide`] is a pure function of (event, now, policy); the notifier only acts on it.
//!
//! The rules (docs/notify.md "Quiet hours"):
//! - the window is open at an instant when its local time (in `timezone`) is outside
//!   `quiet_hours` and, with `trading_days_only`, its local date is a trading day;
//! - an event is sent at once while the window is open;
//! - an event that needs a person is also sent at once from `lead` before a session opens until
//!   that session closes, window or not: a dead token must be fixed before the market opens;
//! - anything else is held until the first instant either rule allows it.

use std::time::Duration;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::session::{session_on, Session};
use super::NotifyEvent;
use crate::config::{NotifyConfig, QuietHours};

/// How far ahead a release is looked for. Longer than any run of holidays and weekends.
const SEARCH_DAYS: i64 = 21;

/// The `[notify]` keys that decide when to send.
#[derive(Debug, Clone, PartialEq)]
pub struct SendPolicy {
    pub quiet: Option<QuietHours>,
    pub tz: TimeZone,
    pub trading_days_only: bool,
    pub lead: Duration,
    /// The exchange calendar (`[market]`: holidays, extra sessions); `None` until the
    /// supervisor hands it over, when weekdays 09:15–15:30 stand in.
    pub calendar: Option<crate::market::MarketCalendar>,
}

impl SendPolicy {
    pub fn from_config(cfg: &NotifyConfig) -> SendPolicy {
        SendPolicy {
            quiet: cfg.quiet(),
            tz: cfg.time_zone(),
            trading_days_only: cfg.trading_days_only,
            lead: cfg.lead,
            calendar: None,
        }
    }

    /// The first session on `date` (a day in the notification time zone), `None` when it is
    /// not a trading day.
    fn session(&self, date: Date) -> Option<Session> {
        match &self.calendar {
            Some(c) => c.sessions_on(date).first().map(|s| Session {
                open: s.open,
                close: s.close,
            }),
            None => session_on(date, &self.tz),
        }
    }

    /// Nothing is ever held.
    pub fn always_open(&self) -> bool {
        self.quiet.is_none() && !self.trading_days_only
    }

    fn local(&self, t: Timestamp) -> (Date, Time) {
        let z = t.to_zoned(self.tz.clone());
        (z.date(), z.time())
    }

    /// Why the window is closed at `t`, `None` when it is open.
    pub fn closed_because(&self, t: Timestamp) -> Option<HoldReason> {
        let (date, time) = self.local(t);
        if self.trading_days_only && self.session(date).is_none() {
            return Some(HoldReason::NotATradingDay);
        }
        match self.quiet {
            Some(q) if q.contains(time) => Some(HoldReason::QuietHours),
            _ => None,
        }
    }

    /// From `lead` before a session opens until it closes.
    pub fn session_near(&self, t: Timestamp) -> bool {
        let (date, _) = self.local(t);
        let lead = jiff::SignedDuration::try_from(self.lead).unwrap_or_default();
        [date, date.tomorrow().unwrap_or(date)]
            .into_iter()
            .filter_map(|d| self.session(d))
            .any(|s| s.open.checked_sub(lead).is_ok_and(|from| from <= t) && t < s.close)
    }

    fn may_send(&self, needs_person: bool, t: Timestamp) -> bool {
        self.closed_because(t).is_none() || (needs_person && self.session_near(t))
    }

    /// The first instant at or after `now` when an event may go out; `None` when none comes
    /// within [`SEARCH_DAYS`] (a calendar without trading days).
    fn first_allowed(&self, needs_person: bool, now: Timestamp) -> Option<Timestamp> {
        if self.may_send(needs_person, now) {
            return Some(now);
        }
        // Whether an event may go out changes only at midnight, at the end of quiet hours and
        // at `lead` before a session: the first of those that allows it is the answer.
        let (today, _) = self.local(now);
        let lead = jiff::SignedDuration::try_from(self.lead).unwrap_or_default();
        let mut candidates = Vec::new();
        for day in -1..=SEARCH_DAYS {
            let Ok(d) = today.checked_add(day.days()) else {
                continue;
            };
            let at = |t: Time| {
                d.to_datetime(t)
                    .to_zoned(self.tz.clone())
                    .ok()
                    .map(|z| z.timestamp())
            };
            candidates.extend(at(Time::midnight()));
            if let Some(q) = self.quiet {
                candidates.extend(at(q.end));
            }
            if needs_person {
                if let Some(s) = self.session(d) {
                    candidates.extend(s.open.checked_sub(lead).ok());
                }
            }
        }
        candidates.retain(|t| *t > now);
        candidates.sort();
        candidates
            .into_iter()
            .find(|t| self.may_send(needs_person, *t))
    }
}

/// Why an event waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    QuietHours,
    NotATradingDay,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::QuietHours => "quiet_hours",
            HoldReason::NotATradingDay => "not_a_trading_day",
        }
    }

    pub fn from_name(s: &str) -> HoldReason {
        if s == "not_a_trading_day" {
            HoldReason::NotATradingDay
        } else {
            HoldReason::QuietHours
        }
    }

    pub fn phrase(self) -> &'static str {
        match self {
            HoldReason::QuietHours => "quiet hours",
            HoldReason::NotATradingDay => "not a trading day",
        }
    }
}

/// What to do with an event now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    SendNow,
    Hold {
        until: Timestamp,
        reason: HoldReason,
    },
}

/// THE rule: send `ev` now, or hold it until when.
pub fn decide(ev: &NotifyEvent, now: Timestamp, policy: &SendPolicy) -> Decision {
    if policy.always_open() {
        return Decision::SendNow;
    }
    let needs_person = ev.needs_person();
    match policy.first_allowed(needs_person, now) {
        Some(t) if t > now => Decision::Hold {
            until: t,
            reason: policy.closed_because(now).unwrap_or(HoldReason::QuietHours),
        },
        // Allowed now, or never within the search: a message late by weeks helps nobody, and
        // one never sent is worse.
        _ => Decision::SendNow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ist() -> TimeZone {
        TimeZone::get("Asia/Kolkata").unwrap()
    }

    fn policy(quiet: &str, trading_days_only: bool) -> SendPolicy {
        SendPolicy {
            quiet: (!quiet.is_empty()).then(|| QuietHours::parse(quiet).unwrap()),
            tz: ist(),
            trading_days_only,
            lead: Duration::from_secs(90 * 60),
            calendar: None,
        }
    }

    #[test]
    fn with_the_market_calendar_an_exchange_holiday_is_no_trading_day() {
        // 2026-12-25 (a Friday) is an NSE trading holiday; the stand-in would call it one.
        let mut p = policy("", true);
        assert_eq!(p.closed_because(at("2026-12-25 10:00")), None);
        p.calendar = Some(crate::market::MarketCalendar::nse());
        assert_eq!(
            p.closed_because(at("2026-12-25 10:00")),
            Some(HoldReason::NotATradingDay)
        );
        assert_eq!(p.closed_because(at("2026-12-24 10:00")), None);
        // A person is needed: the lead before Monday's session, not before the holiday's.
        assert!(!p.session_near(at("2026-12-25 08:30")));
        assert!(p.session_near(at("2026-12-28 08:30")));
    }

    /// `"2026-12-07 07:50"` in IST (2026-12-07 is a Monday).
    fn at(s: &str) -> Timestamp {
        let dt: jiff::civil::DateTime = s.parse().unwrap();
        dt.to_zoned(ist()).unwrap().timestamp()
    }

    fn login() -> NotifyEvent {
        NotifyEvent::TokenNeedsLogin {
            token: "kite".into(),
            login_url: "http://h/login".into(),
            reason: "manual login mode".into(),
        }
    }

    fn refreshed() -> NotifyEvent {
        NotifyEvent::TokenRefreshed {
            token: "kite".into(),
            user_id: None,
            expires_at: None,
        }
    }

    fn held_until(ev: &NotifyEvent, now: &str, p: &SendPolicy) -> Option<Timestamp> {
        match decide(ev, at(now), p) {
            Decision::SendNow => None,
            Decision::Hold { until, .. } => Some(until),
        }
    }

    #[test]
    fn no_quiet_hours_sends_everything_at_once() {
        let p = policy("", false);
        for now in ["2026-12-07 03:00", "2026-12-12 23:59"] {
            assert_eq!(decide(&login(), at(now), &p), Decision::SendNow);
            assert_eq!(decide(&refreshed(), at(now), &p), Decision::SendNow);
        }
    }

    #[test]
    fn the_examples_in_the_docs() {
        let p = policy("22:00-08:00", false);
        // A token dying at 07:50 on a trading day: the session opens in 85 minutes.
        assert_eq!(held_until(&login(), "2026-12-07 07:50", &p), None);
        // At 23:10 it waits for 07:45, 90 minutes before the open, not for 08:00.
        assert_eq!(
            held_until(&login(), "2026-12-07 23:10", &p),
            Some(at("2026-12-08 07:45"))
        );
        // News that needs nobody waits for the end of quiet hours.
        assert_eq!(
            held_until(&refreshed(), "2026-12-07 23:10", &p),
            Some(at("2026-12-08 08:00"))
        );
        // Friday night: Saturday has no session, so the end of quiet hours comes first.
        assert_eq!(
            held_until(&login(), "2026-12-11 23:00", &p),
            Some(at("2026-12-12 08:00"))
        );
        // Trading days only: from Friday night to Monday morning.
        let t = policy("22:00-07:00", true);
        assert_eq!(
            held_until(&login(), "2026-12-11 23:00", &t),
            Some(at("2026-12-14 07:00"))
        );
        assert_eq!(
            held_until(&refreshed(), "2026-12-13 12:00", &t),
            Some(at("2026-12-14 07:00"))
        );
        assert!(matches!(
            decide(&refreshed(), at("2026-12-13 12:00"), &t),
            Decision::Hold {
                reason: HoldReason::NotATradingDay,
                ..
            }
        ));
    }

    #[test]
    fn quiet_hours_over_the_session_still_let_problems_through() {
        let p = policy("09:00-16:00", false);
        assert_eq!(held_until(&login(), "2026-12-07 12:00", &p), None);
        assert_eq!(
            held_until(&refreshed(), "2026-12-07 12:00", &p),
            Some(at("2026-12-07 16:00"))
        );
        // After the close, a problem waits like anything else.
        assert_eq!(
            held_until(&login(), "2026-12-07 15:45", &p),
            Some(at("2026-12-07 16:00"))
        );
    }

    /// A simulated week, minute by minute: every decision is consistent with the rules, and a
    /// held event's release time is exactly the first minute at which it would be sent.
    #[test]
    fn a_week_minute_by_minute() {
        for p in [
            policy("22:00-07:00", false),
            policy("22:00-08:30", true),
            policy("00:30-06:00", true),
            policy("", true),
        ] {
            let start = at("2026-12-05 00:00"); // a Saturday
            let minutes: Vec<Timestamp> = (0..10 * 24 * 60)
                .map(|m| start.checked_add((m as i64).minutes()).unwrap())
                .collect();
            for ev in [login(), refreshed()] {
                let sends: Vec<bool> = minutes
                    .iter()
                    .map(|t| decide(&ev, *t, &p) == Decision::SendNow)
                    .collect();
                for (i, t) in minutes.iter().enumerate().take(7 * 24 * 60) {
                    let z = t.to_zoned(ist());
                    let weekday = z.date().weekday().to_monday_one_offset() <= 5;
                    let quiet = p.quiet.is_some_and(|q| q.contains(z.time()));
                    let open = !quiet && (weekday || !p.trading_days_only);
                    let session_soon = weekday
                        && z.time() >= Time::constant(7, 45, 0, 0)
                        && z.time() < Time::constant(15, 30, 0, 0);
                    let expect = open || (ev.needs_person() && session_soon);
                    assert_eq!(sends[i], expect, "{ev:?} at {z}");
                    if let Decision::Hold { until, .. } = decide(&ev, *t, &p) {
                        let first = minutes[i..]
                            .iter()
                            .zip(&sends[i..])
                            .find(|(_, s)| **s)
                            .map(|(m, _)| *m);
                        assert_eq!(Some(until), first, "{ev:?} held at {z}");
                    }
                }
            }
        }
    }
}
