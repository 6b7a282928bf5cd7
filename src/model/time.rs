//! Timestamps as the status JSON has always written them: RFC 3339, UTC, `Z`.

use jiff::Timestamp;
use serde::Serializer;

/// Now, to the second: status times never carry fractions (the JSON contract).
pub fn now_second() -> Timestamp {
    let now = Timestamp::now();
    now.round(jiff::Unit::Second).unwrap_or(now)
}

/// `serialize_with` for a [`Timestamp`] field.
pub fn rfc3339<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// `serialize_with` for an `Option<Timestamp>` field (`null` when absent).
pub fn rfc3339_opt<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(t),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Row {
        #[serde(serialize_with = "rfc3339")]
        at: Timestamp,
        #[serde(serialize_with = "rfc3339_opt")]
        maybe: Option<Timestamp>,
    }

    #[test]
    fn serializes_like_the_strings_it_replaced() {
        let at = Timestamp::from_second(1_714_557_600).unwrap();
        let json = serde_json::to_string(&Row { at, maybe: None }).unwrap();
        assert_eq!(json, r#"{"at":"2024-05-01T10:00:00Z","maybe":null}"#);
        let json = serde_json::to_value(Row {
            at,
            maybe: Some(at),
        })
        .unwrap();
        assert_eq!(json["maybe"], "2024-05-01T10:00:00Z");
    }

    #[test]
    fn now_has_no_fraction() {
        assert_eq!(now_second().subsec_nanosecond(), 0);
    }
}
