//! `[notify] quiet_hours` and `timezone`, parsed once for the code that holds notifications.

use jiff::civil::Time;

use super::schema::NotifyConfig;

/// A daily span of wall-clock time in which nothing is sent. `start` is inside, `end` is not;
/// a span whose end is before its start runs over midnight (`22:00-07:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: Time,
    pub end: Time,
}

impl QuietHours {
    /// `"22:00-07:00"`; seconds are allowed (`"22:00:30-07:00"`) for spans that must end at a
    /// precise moment (tests, scripted maintenance).
    pub fn parse(s: &str) -> Result<QuietHours, String> {
        let (a, b) = s.split_once('-').ok_or_else(|| {
            format!("{s:?} is not a span of hours: write \"START-END\", like \"22:00-07:00\"")
        })?;
        let (start, end) = (clock_time(a)?, clock_time(b)?);
        if start == end {
            return Err(format!(
                "{s:?} starts where it ends: leave quiet_hours empty for none, or give a span \
                 like \"22:00-07:00\""
            ));
        }
        Ok(QuietHours { start, end })
    }

    /// Whether `t` (wall-clock time in the configured zone) is quiet.
    pub fn contains(&self, t: Time) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// `"HH:MM"` or `"HH:MM:SS"`, 24-hour.
fn clock_time(s: &str) -> Result<Time, String> {
    let bad = || {
        format!(
            "{:?} is not a 24-hour time: write \"HH:MM\", like \"07:00\"",
            s.trim()
        )
    };
    let parts: Vec<&str> = s.trim().split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad());
    }
    let mut nums = [0i8; 3];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if i > 0 && p.len() != 2 {
            return Err(bad());
        }
        nums[i] = p.parse().map_err(|_| bad())?;
    }
    Time::new(nums[0], nums[1], nums[2], 0).map_err(|_| bad())
}

impl NotifyConfig {
    /// `quiet_hours`, `None` when empty. The loader has checked it; a hand-built config with a
    /// bad span has none.
    pub fn quiet(&self) -> Option<QuietHours> {
        let s = self.quiet_hours.trim();
        (!s.is_empty()).then(|| QuietHours::parse(s).ok()).flatten()
    }

    /// `timezone` as a jiff zone; Asia/Kolkata (the default) when the name is unknown.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.timezone)
            .or_else(|_| jiff::tz::TimeZone::get("Asia/Kolkata"))
            .unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::time;

    #[test]
    fn parses_spans() {
        let q = QuietHours::parse("22:00-07:00").unwrap();
        assert_eq!((q.start, q.end), (time(22, 0, 0, 0), time(7, 0, 0, 0)));
        let q = QuietHours::parse(" 1:30 - 06:00:15 ").unwrap();
        assert_eq!((q.start, q.end), (time(1, 30, 0, 0), time(6, 0, 15, 0)));
        for bad in [
            "",
            "22:00",
            "22:00-",
            "-07:00",
            "24:00-07:00",
            "22:60-07:00",
            "22:00-07:00:60",
            "22-07",
            "22:0-07:00",
            "07:00-07:00",
            "22:00-07:00-08:00",
            "ab:cd-07:00",
        ] {
            assert!(QuietHours::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spans_over_midnight_wrap() {
        let night = QuietHours::parse("22:00-07:00").unwrap();
        for (h, m, quiet) in [
            (21, 59, false),
            (22, 0, true),
            (23, 59, true),
            (0, 0, true),
            (6, 59, true),
            (7, 0, false),
            (12, 0, false),
        ] {
            assert_eq!(night.contains(time(h, m, 0, 0)), quiet, "{h}:{m}");
        }
        let day = QuietHours::parse("12:00-13:00").unwrap();
        assert!(day.contains(time(12, 30, 0, 0)));
        assert!(!day.contains(time(13, 0, 0, 0)) && !day.contains(time(11, 59, 59, 0)));
    }
}
