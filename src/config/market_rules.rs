//! `[market]` checks: every time and date parses, each session closes after it opens.

use jiff::civil::{Date, Time};

use super::keypath::{at, Found, Seg};
use super::schema::MarketConfig;
use super::token_times::parse_hhmm;

/// `"YYYY-MM-DD"` → a civil date.
pub fn parse_market_date(s: &str) -> Result<Date, String> {
    s.trim()
        .parse::<Date>()
        .ok()
        .filter(|_| s.trim().len() == 10)
        .ok_or_else(|| format!("{s:?} is not a date: write \"YYYY-MM-DD\", like \"2026-11-08\""))
}

/// `"HH:MM"` → a civil time.
pub fn parse_market_time(s: &str) -> Result<Time, String> {
    let (h, m) = parse_hhmm(s)?;
    Ok(jiff::civil::time(h as i8, m as i8, 0, 0))
}

pub(crate) fn market(m: &MarketConfig, v: &mut Vec<Found>) {
    if jiff::tz::TimeZone::get(&m.timezone).is_err() {
        v.push(Found::new(
            at(&["market", "timezone"]),
            format!(
                "unknown time zone {:?}: use an IANA name like \"Asia/Kolkata\"",
                m.timezone
            ),
        ));
    }
    session(&m.open, &m.close, at(&["market"]), v);
    for (i, d) in m.holidays.iter().enumerate() {
        if let Err(e) = parse_market_date(d) {
            v.push(Found::new(indexed("holidays", i, None), e));
        }
    }
    for (i, s) in m.extra_sessions.iter().enumerate() {
        if let Err(e) = parse_market_date(&s.date) {
            v.push(Found::new(indexed("extra_sessions", i, Some("date")), e));
        }
        session(&s.open, &s.close, indexed("extra_sessions", i, None), v);
    }
}

fn indexed(list: &str, i: usize, key: Option<&str>) -> Vec<Seg> {
    let mut p = at(&["market", list]);
    p.push(Seg::Index(i));
    if let Some(k) = key {
        p.push(Seg::Key(k.to_string()));
    }
    p
}

/// `open` and `close` under `base`: both times, `close` later the same day.
fn session(open: &str, close: &str, base: Vec<Seg>, v: &mut Vec<Found>) {
    let key = |k: &str| {
        let mut p = base.clone();
        p.push(Seg::Key(k.to_string()));
        p
    };
    let o = parse_market_time(open).map_err(|e| v.push(Found::new(key("open"), e)));
    let c = parse_market_time(close).map_err(|e| v.push(Found::new(key("close"), e)));
    if let (Ok(o), Ok(c)) = (o, c) {
        if c <= o {
            v.push(Found::new(
                key("close"),
                format!(
                    "{close:?} is not after open ({open:?}): a session opens and closes on the \
                     same day, like open = \"09:15\", close = \"15:30\""
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::ExtraSession;

    fn problems(m: &MarketConfig) -> Vec<(String, String)> {
        let mut v = Vec::new();
        market(m, &mut v);
        v.into_iter()
            .map(|f| (super::super::keypath::render(&f.path), f.message))
            .collect()
    }

    #[test]
    fn the_default_is_valid() {
        assert!(problems(&MarketConfig::default()).is_empty());
    }

    #[test]
    fn each_bad_value_is_named_by_its_key() {
        let m = MarketConfig {
            timezone: "Mars/Olympus".into(),
            open: "15:30".into(),
            close: "09:15".into(),
            holidays: vec!["2026-01-26".into(), "26/01/2026".into()],
            builtin_holidays: true,
            extra_sessions: vec![ExtraSession {
                date: "2026-11-8".into(),
                open: "18:00".into(),
                close: "7pm".into(),
            }],
        };
        let keys: Vec<String> = problems(&m).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "market.timezone",
                "market.close",
                "market.holidays[1]",
                "market.extra_sessions[0].date",
                "market.extra_sessions[0].close",
            ]
        );
        let all = problems(&m);
        assert!(all[1].1.contains("is not after open"), "{}", all[1].1);
        assert!(all[2].1.contains("YYYY-MM-DD"), "{}", all[2].1);
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(
            parse_market_date("2026-11-08"),
            Ok(jiff::civil::date(2026, 11, 8))
        );
        for bad in ["2026-13-01", "2026-02-30", "2026-1-1", "", "tomorrow"] {
            assert!(parse_market_date(bad).is_err(), "{bad}");
        }
    }
}
