//! One line of the journal.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

/// What happened. The names are the `kind` field of the file and of `/api/v1/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    WardenStarted,
    WardenStopping,
    /// A new token is in place (`source` says how it came).
    TokenObtained,
    /// The broker rejected the token in use.
    TokenInvalid,
    TokenRefreshFailed,
    /// Automation cannot go on: a person must log in (`reason`).
    TokenNeedsLogin,
    /// A credential block was lifted.
    TokenUnblocked,
    ProgramStarted,
    /// A process ended (`code` or `signal`).
    ProgramExited,
    /// warden restarts a program (`reason`: exit, unhealthy, token, config, manual).
    ProgramRestarted,
    ProgramFatal,
    ConfigReloaded,
    ConfigRejected,
    NotificationSent,
    NotificationFailed,
    /// This warden started or stopped leading its fleet.
    FleetLeader,
    /// A kind written by a newer warden.
    #[serde(other)]
    Other,
}

/// How an event reads at a glance (the page's colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Ok,
    Info,
    Warn,
    Bad,
}

impl Tone {
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Info => "mute",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
        }
    }
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WardenStarted => "warden_started",
            Kind::WardenStopping => "warden_stopping",
            Kind::TokenObtained => "token_obtained",
            Kind::TokenInvalid => "token_invalid",
            Kind::TokenRefreshFailed => "token_refresh_failed",
            Kind::TokenNeedsLogin => "token_needs_login",
            Kind::TokenUnblocked => "token_unblocked",
            Kind::ProgramStarted => "program_started",
            Kind::ProgramExited => "program_exited",
            Kind::ProgramRestarted => "program_restarted",
            Kind::ProgramFatal => "program_fatal",
            Kind::ConfigReloaded => "config_reloaded",
            Kind::ConfigRejected => "config_rejected",
            Kind::NotificationSent => "notification_sent",
            Kind::NotificationFailed => "notification_failed",
            Kind::FleetLeader => "fleet_leader",
            Kind::Other => "other",
        }
    }

    pub fn tone(self) -> Tone {
        match self {
            Kind::TokenObtained | Kind::TokenUnblocked | Kind::ConfigReloaded => Tone::Ok,
            Kind::TokenInvalid | Kind::ProgramExited | Kind::ProgramRestarted => Tone::Warn,
            Kind::TokenRefreshFailed
            | Kind::TokenNeedsLogin
            | Kind::ProgramFatal
            | Kind::ConfigRejected
            | Kind::NotificationFailed => Tone::Bad,
            _ => Tone::Info,
        }
    }
}

/// One event. `seq` is given by the writer: one more than the last event written to this
/// state_dir, so it keeps growing across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    #[serde(
        serialize_with = "crate::model::time::rfc3339",
        deserialize_with = "timestamp"
    )]
    pub time: Timestamp,
    pub kind: Kind,
    /// The program or token (or `warden`, `config`) the event is about.
    pub subject: String,
    /// A sentence for a person.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// A signal's name (`SIGKILL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How a token came (token.json's `source` values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// A notification's channel (`webhook`, `telegram`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl Event {
    /// An event that happens now (to the second, like every time warden reports).
    pub fn new(kind: Kind, subject: &str, message: impl Into<String>) -> Event {
        Event {
            seq: 0,
            time: crate::model::time::now_second(),
            kind,
            subject: subject.to_string(),
            message: message.into(),
            code: None,
            signal: None,
            reason: None,
            source: None,
            pid: None,
            channel: None,
        }
    }

    pub fn with_code(mut self, code: i32) -> Event {
        self.code = Some(code);
        self
    }

    pub fn with_signal(mut self, signal: impl Into<String>) -> Event {
        self.signal = Some(signal.into());
        self
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Event {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_source(mut self, source: impl Into<String>) -> Event {
        self.source = Some(source.into());
        self
    }

    pub fn with_pid(mut self, pid: i32) -> Event {
        self.pid = Some(pid);
        self
    }

    pub fn with_channel(mut self, channel: impl Into<String>) -> Event {
        self.channel = Some(channel.into());
        self
    }

    /// `2026-12-07 07:21:03 IST  program_exited  backend: exited with exit code 3`: a line
    /// for a terminal, the time in `tz`.
    pub fn human_line(&self, tz: &jiff::tz::TimeZone) -> String {
        format!(
            "{}  {:<20} {}: {}",
            self.time
                .to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S %Z"),
            self.kind.as_str(),
            self.subject,
            self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips_and_leaves_absent_fields_out() {
        let mut e = Event::new(Kind::ProgramExited, "backend", "exited with exit code 3")
            .with_code(3)
            .with_pid(42);
        e.seq = 7;
        e.time = "2026-12-07T01:51:03Z".parse().unwrap();
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"seq":7,"time":"2026-12-07T01:51:03Z","kind":"program_exited","subject":"backend","message":"exited with exit code 3","code":3,"pid":42}"#
        );
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn an_unknown_kind_reads_as_other() {
        let e: Event = serde_json::from_str(
            r#"{"seq":1,"time":"2026-12-07T01:51:03+05:30","kind":"from_the_future","subject":"x","message":"m"}"#,
        )
        .unwrap();
        assert_eq!(e.kind, Kind::Other);
        assert_eq!(e.time.to_string(), "2026-12-06T20:21:03Z");
    }

    #[test]
    fn the_human_line_is_in_the_given_zone() {
        let mut e = Event::new(Kind::TokenObtained, "kite", "new token (totp)");
        e.time = "2026-12-07T01:51:03Z".parse().unwrap();
        let tz = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap();
        assert_eq!(
            e.human_line(&tz),
            "2026-12-07 07:21:03 IST  token_obtained       kite: new token (totp)"
        );
    }

    #[test]
    fn every_kind_names_itself_like_its_json() {
        for k in [
            Kind::WardenStarted,
            Kind::TokenNeedsLogin,
            Kind::ProgramRestarted,
            Kind::NotificationFailed,
            Kind::FleetLeader,
        ] {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.as_str())
            );
        }
    }
}
