//! Trading sessions, as far as notifications need them: is a day a trading day, and when does
//! its session open and close.
//!
//! [`session_on`] is the stand-in (Monday to Friday, 09:15–15:30 in the
//! notification time zone, no holidays) used until the supervisor hands the notifier the
//! market calendar (`[market]`, with the NSE holidays): `window::SendPolicy::session`.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

const OPEN: Time = Time::constant(9, 15, 0, 0);
const CLOSE: Time = Time::constant(15, 30, 0, 0);

/// One trading session, as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub open: Timestamp,
    pub close: Timestamp,
}

/// The session held on `date` (a calendar day in `tz`), `None` when `date` is not a trading day.
pub fn session_on(date: Date, tz: &TimeZone) -> Option<Session> {
    if matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) {
        return None;
    }
    let at = |t: Time| date.to_datetime(t).to_zoned(tz.clone()).ok();
    Some(Session {
        open: at(OPEN)?.timestamp(),
        close: at(CLOSE)?.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn weekdays_trade_from_nine_fifteen() {
        let ist = TimeZone::get("Asia/Kolkata").unwrap();
        // 2026-12-07 is a Monday.
        let s = session_on(date(2026, 12, 7), &ist).unwrap();
        assert_eq!(s.open.to_string(), "2026-12-07T03:45:00Z");
        assert_eq!(s.close.to_string(), "2026-12-07T10:00:00Z");
        assert!(session_on(date(2026, 12, 11), &ist).is_some());
        assert_eq!(session_on(date(2026, 12, 12), &ist), None);
        assert_eq!(session_on(date(2026, 12, 13), &ist), None);
    }
}
