//! What a notification says: the events, their `text` (the token or program, what happened,
//! what warden does next, the fix) and the webhook's JSON.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Something a person should know about. Every message names the token (or program), what
/// happened, what warden does next and the one link or command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NotifyEvent {
    /// Automated refresh is impossible or exhausted: someone must log in at `login_url`.
    /// `reason` says why (manual mode, a credential block, out of attempts); no secrets.
    TokenNeedsLogin {
        token: String,
        login_url: String,
        reason: String,
    },
    /// A refresh failed; `reason` must not contain secrets. `retry_in_secs`: when warden tries
    /// again by itself, `None` when it will not (a credential rejection).
    TokenRefreshFailed {
        token: String,
        reason: String,
        retry_in_secs: Option<u64>,
    },
    /// A new token is in place. `expires_at` in unix seconds.
    TokenRefreshed {
        token: String,
        user_id: Option<String>,
        expires_at: Option<i64>,
    },
    /// A program is in state `fatal`: warden stopped restarting it.
    ProgramFatal { program: String },
}

impl NotifyEvent {
    /// The `event` field.
    pub fn name(&self) -> &'static str {
        match self {
            NotifyEvent::TokenNeedsLogin { .. } => "token_needs_login",
            NotifyEvent::TokenRefreshFailed { .. } => "token_refresh_failed",
            NotifyEvent::TokenRefreshed { .. } => "token_refreshed",
            NotifyEvent::ProgramFatal { .. } => "program_fatal",
        }
    }

    pub fn program(&self) -> Option<&str> {
        match self {
            NotifyEvent::ProgramFatal { program } => Some(program),
            _ => None,
        }
    }

    pub fn token(&self) -> Option<&str> {
        match self {
            NotifyEvent::TokenNeedsLogin { token, .. }
            | NotifyEvent::TokenRefreshFailed { token, .. }
            | NotifyEvent::TokenRefreshed { token, .. } => Some(token),
            NotifyEvent::ProgramFatal { .. } => None,
        }
    }

    pub fn login_url(&self) -> Option<&str> {
        match self {
            NotifyEvent::TokenNeedsLogin { login_url, .. } => Some(login_url),
            _ => None,
        }
    }

    /// Whether a person must act: such events may wake someone before a session (the `lead`).
    pub fn needs_person(&self) -> bool {
        !matches!(self, NotifyEvent::TokenRefreshed { .. })
    }

    /// What dedup and collapsing count as "the same": the event and its token or program.
    pub fn key(&self) -> (&'static str, Option<&str>) {
        (self.name(), self.token().or(self.program()))
    }

    /// Whether this (good) news means `problem`, still held, no longer needs anyone.
    pub fn resolves(&self, problem: &NotifyEvent) -> bool {
        match self {
            NotifyEvent::TokenRefreshed { token, .. } => {
                problem.needs_person() && problem.token() == Some(token)
            }
            _ => false,
        }
    }

    /// One line for the status page.
    pub fn summary(&self) -> String {
        match self {
            NotifyEvent::TokenNeedsLogin { token, reason, .. } => {
                format!("token {token} needs a login: {reason}")
            }
            NotifyEvent::TokenRefreshFailed { token, reason, .. } => {
                format!("token {token} refresh failed: {reason}")
            }
            NotifyEvent::TokenRefreshed { token, .. } => {
                format!("token {token}: new access token in place")
            }
            NotifyEvent::ProgramFatal { program } => {
                format!("program {program} is fatal (no longer restarted)")
            }
        }
    }

    /// A message for a human, prefixed with the host so several machines can share a channel:
    /// what happened, what warden does next, and what fixes it.
    pub fn text(&self, host: &str) -> String {
        let body = match self {
            NotifyEvent::TokenNeedsLogin {
                token,
                login_url,
                reason,
            } => format!(
                "token {token} needs a person to log in ({reason}). warden will not log in by \
                 itself until then. Fix: open {login_url} and log in; warden then writes the \
                 new token and hands it to the programs."
            ),
            NotifyEvent::TokenRefreshFailed {
                token,
                reason,
                retry_in_secs,
            } => match retry_in_secs {
                Some(secs) => format!(
                    "token {token}: the refresh failed: {reason}. warden tries again in {} by \
                     itself. If it keeps failing, run `warden token status` to see why.",
                    humantime::format_duration(Duration::from_secs(*secs))
                ),
                None => format!(
                    "token {token}: the refresh failed: {reason}. warden will not try these \
                     credentials again (a retry could lock the account). Fix: correct the \
                     credentials in the config, then run `warden token unblock`."
                ),
            },
            NotifyEvent::TokenRefreshed {
                token,
                user_id,
                expires_at,
            } => {
                let mut s = format!("token {token}: new access token in place");
                if let Some(u) = user_id {
                    s.push_str(&format!(" for {u}"));
                }
                if let Some(ts) = expires_at.and_then(|t| jiff::Timestamp::from_second(t).ok()) {
                    s.push_str(&format!(", expected to expire at {ts}"));
                }
                s.push_str(". warden has handed it to the programs; nothing to do.");
                s
            }
            NotifyEvent::ProgramFatal { program } => format!(
                "program {program} is fatal: it kept failing and warden no longer restarts it. \
                 Fix the cause (its output is in warden's log), then run \
                 `warden restart {program}` (or change its config)."
            ),
        };
        format!("warden on {host}: {body}")
    }

    /// The webhook body: `{"event","text","login_url","program"}`, null where not applicable.
    pub fn to_json(&self, host: &str) -> serde_json::Value {
        Outgoing::now(self.clone()).to_json(host)
    }
}

/// An event on its way out, with a note when it was held.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    pub(super) event: NotifyEvent,
    /// "(held since …)", for one that waited.
    pub(super) note: Option<String>,
}

impl Outgoing {
    fn now(event: NotifyEvent) -> Outgoing {
        Outgoing { event, note: None }
    }

    pub(super) fn text(&self, host: &str) -> String {
        let text = self.event.text(host);
        match &self.note {
            Some(n) => format!("{text} {n}"),
            None => text,
        }
    }

    pub(super) fn to_json(&self, host: &str) -> serde_json::Value {
        serde_json::json!({
            "event": self.event.name(),
            "text": self.text(host),
            "login_url": self.event.login_url(),
            "program": self.event.program(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::held::HeldEvent;
    use crate::notify::window;
    use jiff::Timestamp;

    #[test]
    fn json_shape_per_event() {
        let cases = [
            (
                NotifyEvent::TokenNeedsLogin {
                    token: "kite".into(),
                    login_url: "http://h/login".into(),
                    reason: "manual login mode".into(),
                },
                "token_needs_login",
                Some("http://h/login"),
                None,
            ),
            (
                NotifyEvent::TokenRefreshFailed {
                    token: "kite".into(),
                    reason: "broker said no".into(),
                    retry_in_secs: Some(120),
                },
                "token_refresh_failed",
                None,
                None,
            ),
            (
                NotifyEvent::TokenRefreshed {
                    token: "kite".into(),
                    user_id: Some("AB1234".into()),
                    expires_at: Some(1_700_000_000),
                },
                "token_refreshed",
                None,
                None,
            ),
            (
                NotifyEvent::ProgramFatal {
                    program: "backend".into(),
                },
                "program_fatal",
                None,
                Some("backend"),
            ),
        ];
        for (ev, name, url, program) in cases {
            let j = ev.to_json("box");
            assert_eq!(j.as_object().unwrap().len(), 4);
            assert_eq!(j["event"], name);
            assert_eq!(j["login_url"].as_str(), url);
            assert_eq!(j["program"].as_str(), program);
            assert!(j["text"].as_str().unwrap().starts_with("warden on box: "));
        }
        let text = NotifyEvent::TokenRefreshed {
            token: "kite".into(),
            user_id: Some("AB1234".into()),
            expires_at: Some(1_700_000_000),
        }
        .text("box");
        assert!(
            text.contains("AB1234") && text.contains("2023-11-14T22:13:20Z"),
            "{text}"
        );
    }

    /// Each message names its subject, what happened, what warden does next and the fix.
    #[test]
    fn every_message_says_what_next_and_how_to_fix() {
        let cases = [
            (
                NotifyEvent::TokenNeedsLogin {
                    token: "kite".into(),
                    login_url: "http://h:9180/login".into(),
                    reason: "login rejected: wrong TOTP".into(),
                },
                [
                    "token kite",
                    "wrong TOTP",
                    "will not log in by itself",
                    "open http://h:9180/login",
                ],
            ),
            (
                NotifyEvent::TokenRefreshFailed {
                    token: "kite".into(),
                    reason: "connection refused".into(),
                    retry_in_secs: Some(120),
                },
                [
                    "token kite",
                    "connection refused",
                    "tries again in 2m",
                    "`warden token status`",
                ],
            ),
            (
                NotifyEvent::TokenRefreshFailed {
                    token: "upstox".into(),
                    reason: "login rejected: bad PIN".into(),
                    retry_in_secs: None,
                },
                [
                    "token upstox",
                    "bad PIN",
                    "will not try these credentials again",
                    "`warden token unblock`",
                ],
            ),
            (
                NotifyEvent::TokenRefreshed {
                    token: "kite".into(),
                    user_id: None,
                    expires_at: None,
                },
                [
                    "token kite",
                    "new access token in place",
                    "handed it to the programs",
                    "nothing to do",
                ],
            ),
            (
                NotifyEvent::ProgramFatal {
                    program: "backend".into(),
                },
                [
                    "program backend",
                    "is fatal",
                    "no longer restarts it",
                    "`warden restart backend`",
                ],
            ),
        ];
        for (ev, parts) in cases {
            let text = ev.text("box");
            for p in parts {
                assert!(text.contains(p), "{p:?} missing from {text:?}");
            }
        }
    }

    #[test]
    fn a_held_message_says_since_when_and_why() {
        let ist = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap();
        let ev = NotifyEvent::ProgramFatal {
            program: "backend".into(),
        };
        let h = HeldEvent {
            event: ev.clone(),
            // 2026-12-07 23:10 IST
            first_at: Timestamp::from_second(1_796_665_200).unwrap(),
            count: 3,
            send_at: Timestamp::from_second(1_796_691_300).unwrap(),
            reason: window::HoldReason::QuietHours,
        };
        let out = Outgoing {
            event: ev,
            note: Some(h.note(&ist)),
        };
        let j = out.to_json("box");
        assert_eq!(j.as_object().unwrap().len(), 4);
        let text = j["text"].as_str().unwrap();
        assert!(
            text.ends_with("(held since Mon 23:10 IST: quiet hours; 3 times)"),
            "{text}"
        );
    }
}
