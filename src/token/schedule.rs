//! Daily wall-clock times ("06:00" in Asia/Kolkata) as instants.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Parse "HH:MM".
pub fn parse_hhmm(s: &str) -> Option<(i8, i8)> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
}

/// The first time strictly after `after` when the clock in `tz` reads `hhmm`.
pub fn next_after(after: Timestamp, tz: &TimeZone, hhmm: (i8, i8)) -> Timestamp {
    let local = after.to_zoned(tz.clone());
    let mut date = local.date();
    for _ in 0..3 {
        if let Ok(z) = date.at(hhmm.0, hhmm.1, 0, 0).to_zoned(tz.clone()) {
            if z.timestamp() > after {
                return z.timestamp();
            }
        }
        date = date.checked_add(1.day()).unwrap_or(date);
    }
    after + 24.hours()
}

/// The last time at or before `at` when the clock in `tz` read `hhmm`.
pub fn last_before(at: Timestamp, tz: &TimeZone, hhmm: (i8, i8)) -> Timestamp {
    let next = next_after(at, tz, hhmm);
    let prev = next - 24.hours();
    if prev <= at {
        prev
    } else {
        prev - 24.hours()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ist_six_am() {
        let tz = TimeZone::get("Asia/Kolkata").unwrap();
        let t: Timestamp = "2026-11-26T01:00:00Z".parse().unwrap(); // 06:30 IST
        assert_eq!(
            next_after(t, &tz, (6, 0)).to_string(),
            "2026-11-27T00:30:00Z"
        );
        assert_eq!(
            last_before(t, &tz, (6, 0)).to_string(),
            "2026-11-26T00:30:00Z"
        );
        let early: Timestamp = "2026-11-25T23:00:00Z".parse().unwrap(); // 04:30 IST
        assert_eq!(
            next_after(early, &tz, (6, 0)).to_string(),
            "2026-11-26T00:30:00Z"
        );
        assert_eq!(parse_hhmm("06:05"), Some((6, 5)));
        assert_eq!(parse_hhmm("24:00"), None);
    }
}
