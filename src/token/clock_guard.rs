//! The clock guard (SPEC §4.1): a TOTP code is computed from the local clock, so before one is
//! submitted the local clock is compared with the broker's (`Date` of a fresh response). A
//! skewed clock would only produce wrong codes, and every wrong code is a strike.

use jiff::Timestamp;

/// More than this apart and no code is submitted.
pub const MAX_SKEW_SECS: f64 = 15.0;
/// A broker `Date` older than this (by the local clock's reckoning) is not a reading.
pub const READING_MAX_AGE_SECS: i64 = 60;

/// What a broker response said about the broker's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerClock {
    /// No HTTP broker behind this login (simulations, command providers): nothing to compare.
    #[default]
    NotApplicable,
    /// The broker answered without a usable `Date` header.
    Missing,
    /// `Date` of the broker's answer, and the local time the answer arrived.
    Read { broker: Timestamp, local: Timestamp },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClockError {
    #[error(
        "the local clock is {} s {} the broker's (its Date header); no TOTP code was submitted, \
         since a code from a skewed clock is a wrong code and a strike: sync the clock (NTP, \
         e.g. `timedatectl set-ntp true`) or log in manually",
        .skew.abs().round(), if *.skew > 0.0 { "ahead of" } else { "behind" }
    )]
    Skewed { skew: f64 },
    #[error(
        "the broker's answer had no usable Date header, so the local clock cannot be checked \
         before a TOTP code is submitted; log in manually"
    )]
    Missing,
}

/// `Date: Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's IMF-fixdate; the RFC 2822 parser also
/// takes the older forms Kite never sends).
pub fn parse_http_date(value: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value.trim())
        .ok()
}

/// `Date` header value for `t`.
pub fn http_date(t: Timestamp) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&t)
        .unwrap_or_default()
}

/// Local minus broker, in seconds (`Date` has whole seconds, so ±1 s is noise).
pub fn skew_secs(broker: Timestamp, local: Timestamp) -> f64 {
    (local.as_millisecond() - broker.as_millisecond()) as f64 / 1000.0
}

/// `Ok(Some(skew))` when the clocks agree closely enough to submit a code, `Ok(None)` when
/// there is nothing to compare with.
pub fn check(reading: BrokerClock) -> Result<Option<f64>, ClockError> {
    match reading {
        BrokerClock::NotApplicable => Ok(None),
        BrokerClock::Missing => Err(ClockError::Missing),
        BrokerClock::Read { broker, local } => {
            let skew = skew_secs(broker, local);
            if skew.abs() > MAX_SKEW_SECS {
                Err(ClockError::Skewed { skew })
            } else {
                Ok(Some(skew))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_http_dates() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.to_string(), "1994-11-06T08:49:37Z");
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(parse_http_date("yesterday").is_none());
    }

    #[test]
    fn skew_beyond_fifteen_seconds_refuses() {
        let broker: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| BrokerClock::Read {
            broker,
            local: broker
                .checked_add(jiff::SignedDuration::from_secs(s))
                .unwrap(),
        };
        assert_eq!(check(at(3)), Ok(Some(3.0)));
        assert_eq!(check(at(-15)), Ok(Some(-15.0)));
        let e = check(at(60)).unwrap_err();
        assert!(e.to_string().contains("60 s ahead of"), "{e}");
        let e = check(at(-20)).unwrap_err();
        assert!(e.to_string().contains("20 s behind"), "{e}");
        assert_eq!(check(BrokerClock::Missing), Err(ClockError::Missing));
        assert_eq!(check(BrokerClock::NotApplicable), Ok(None));
    }
}
