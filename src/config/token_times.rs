//! The token's daily times, parsed once for the code that schedules refreshes.

use super::schema::TokenConfig;

/// `"HH:MM"` (24-hour; `"6:05"` is accepted too) → `(hour, minute)`.
pub fn parse_hhmm(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("{s:?} is not a 24-hour time: write \"HH:MM\", like \"06:05\"");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let digits = |t: &str, max_len: usize| {
        !t.is_empty() && t.len() <= max_len && t.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u8, u8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

impl TokenConfig {
    /// `timezone` as a jiff zone. The loader has checked it; a hand-built config with a bad
    /// name falls back to the SPEC default, Asia/Kolkata.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.timezone)
            .or_else(|_| jiff::tz::TimeZone::get("Asia/Kolkata"))
            .unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// `expires_at` as (hour, minute); 06:00 if unparsable (the loader rejects that).
    pub fn expiry_time(&self) -> (u8, u8) {
        parse_hhmm(&self.expires_at).unwrap_or((6, 0))
    }

    /// `refresh_at` as (hour, minute); 06:05 if unparsable (the loader rejects that).
    pub fn refresh_time(&self) -> (u8, u8) {
        parse_hhmm(&self.refresh_at).unwrap_or((6, 5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hh_mm() {
        assert_eq!(parse_hhmm("06:05"), Ok((6, 5)));
        assert_eq!(parse_hhmm("6:05"), Ok((6, 5)));
        assert_eq!(parse_hhmm("23:59"), Ok((23, 59)));
        assert_eq!(parse_hhmm("00:00"), Ok((0, 0)));
        for bad in [
            "24:00", "12:60", "6", "06:5", "06:005", "a:bc", "", ":", "06-05", "+6:05",
        ] {
            assert!(parse_hhmm(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_helpers_read_the_config() {
        let t = TokenConfig {
            refresh_at: "07:45".into(),
            ..TokenConfig::default()
        };
        assert_eq!(t.refresh_time(), (7, 45));
        assert_eq!(t.expiry_time(), (6, 0));
        assert_eq!(t.time_zone().iana_name(), Some("Asia/Kolkata"));
    }
}
