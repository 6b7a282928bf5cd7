//! Wall-clock rules of Indian brokers: tokens that die at a fixed IST time of day.

use std::time::Duration;

use jiff::{civil::Time, tz::TimeZone, Timestamp, ToSpan};

fn ist() -> TimeZone {
    TimeZone::get("Asia/Kolkata").unwrap_or(TimeZone::fixed(jiff::tz::offset(5)))
}

/// Time left until the next `hh:mm` IST strictly after `now` (Upstox: 03:30, Fyers: 06:00).
pub fn until_next_ist(now: Timestamp, hour: i8, minute: i8) -> Duration {
    let local = now.to_zoned(ist());
    let at = Time::new(hour, minute, 0, 0).unwrap_or(Time::midnight());
    let mut next = local.date().to_datetime(at);
    if next <= local.datetime() {
        next = next.checked_add(1.day()).unwrap_or(next);
    }
    let target = next.to_zoned(ist()).map(|z| z.timestamp()).unwrap_or(now);
    let secs = target.as_second() - now.as_second();
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// `unix` seconds as IST wall clock with `fmt` (strftime), no zone: how brokers print times.
pub fn ist_format(unix: u64, fmt: &str) -> String {
    let ts =
        Timestamp::from_second(i64::try_from(unix).unwrap_or(0)).unwrap_or(Timestamp::UNIX_EPOCH);
    ts.to_zoned(ist()).strftime(fmt).to_string()
}

/// The `token_ttl:` start-up line's value: the flag's duration, or the broker's clock rule.
pub fn ttl_text(flag: Option<Duration>, rule: &str) -> String {
    match flag {
        Some(t) => humantime::format_duration(t).to_string(),
        None => rule.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_0330_ist() {
        // 02:30 IST = 21:00 UTC the day before: dies the same morning, one hour later.
        assert_eq!(
            until_next_ist(ts("2026-01-04T21:00:00Z"), 3, 30),
            Duration::from_secs(3600)
        );
        // 10:00 IST: dies at 03:30 the next day, 17.5 h later.
        assert_eq!(
            until_next_ist(ts("2026-01-05T04:30:00Z"), 3, 30),
            Duration::from_secs(17 * 3600 + 1800)
        );
    }

    #[test]
    fn formats_in_ist() {
        assert_eq!(ist_format(0, "%Y-%m-%dT%H:%M:%S"), "1970-01-01T05:30:00");
    }
}
