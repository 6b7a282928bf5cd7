//! Notifications waiting for their window: collapsed (the newest of each kind per token or
//! program), dropped when the problem they report is over, and kept in
//! `{state_dir}/notify-held.json` so that a restart loses none of them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::window::HoldReason;
use super::NotifyEvent;
use crate::model::HeldNotification;

pub const FILE_NAME: &str = "notify-held.json";

/// One held event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldEvent {
    /// The newest of its kind.
    pub event: NotifyEvent,
    /// When the first of its kind was held.
    pub first_at: Timestamp,
    /// How many were collapsed into this one.
    pub count: u32,
    pub send_at: Timestamp,
    pub reason: HoldReason,
}

impl HeldEvent {
    /// A line for the message itself: since when it waited, and why.
    pub fn note(&self, tz: &jiff::tz::TimeZone) -> String {
        let since = self.first_at.to_zoned(tz.clone()).strftime("%a %H:%M %Z");
        let times = if self.count > 1 {
            format!("; {} times", self.count)
        } else {
            String::new()
        };
        format!("(held since {since}: {}{times})", self.reason.phrase())
    }
}

/// On disk: seconds since the epoch, so the file needs no time-format agreement.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    event: NotifyEvent,
    first_at: i64,
    count: u32,
    send_at: i64,
    /// Not `reason`: the flattened event has a field of that name.
    held_because: String,
}

#[derive(Serialize, Deserialize, Default)]
struct StoredFile {
    held: Vec<Stored>,
}

#[derive(Debug, Default)]
pub struct Held {
    items: Vec<HeldEvent>,
    /// `None`: kept in memory only.
    file: Option<PathBuf>,
}

impl Held {
    /// The held events of a previous run in `state_dir` (none when there is no file; an
    /// unreadable one is reported and set aside, never fatal).
    pub fn load(state_dir: Option<&Path>) -> Held {
        let file = state_dir.map(|d| d.join(FILE_NAME));
        let mut held = Held {
            items: Vec::new(),
            file,
        };
        let Some(path) = &held.file else {
            return held;
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return held,
            Err(e) => {
                tracing::warn!(
                    "cannot read {}: {e}; held notifications lost",
                    path.display()
                );
                return held;
            }
        };
        match serde_json::from_str::<StoredFile>(&text) {
            Ok(f) => {
                held.items = f
                    .held
                    .into_iter()
                    .filter_map(|s| {
                        Some(HeldEvent {
                            event: s.event,
                            first_at: Timestamp::from_second(s.first_at).ok()?,
                            count: s.count.max(1),
                            send_at: Timestamp::from_second(s.send_at).ok()?,
                            reason: HoldReason::from_name(&s.held_because),
                        })
                    })
                    .collect()
            }
            Err(e) => tracing::warn!(
                "{} is not a held-notifications file ({e}); ignoring it",
                path.display()
            ),
        }
        held
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[HeldEvent] {
        &self.items
    }

    /// Hold `ev`; an earlier one of its kind is replaced by it and counted.
    pub fn hold(
        &mut self,
        event: NotifyEvent,
        now: Timestamp,
        send_at: Timestamp,
        reason: HoldReason,
    ) {
        match self.items.iter_mut().find(|h| h.event.key() == event.key()) {
            Some(h) => {
                h.event = event;
                h.count += 1;
                h.send_at = send_at;
                h.reason = reason;
            }
            None => self.items.push(HeldEvent {
                event,
                first_at: now,
                count: 1,
                send_at,
                reason,
            }),
        }
    }

    /// Take out the held event of `ev`'s kind, if any (it is about to be sent).
    pub fn take(&mut self, ev: &NotifyEvent) -> Option<HeldEvent> {
        let i = self.items.iter().position(|h| h.event.key() == ev.key())?;
        Some(self.items.remove(i))
    }

    /// Drop the held events that report a problem now over; returns them.
    pub fn drop_where(&mut self, over: impl Fn(&NotifyEvent) -> bool) -> Vec<HeldEvent> {
        let (over, keep) = std::mem::take(&mut self.items)
            .into_iter()
            .partition(|h| over(&h.event));
        self.items = keep;
        over
    }

    /// Everything due at `now`, oldest first.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<HeldEvent> {
        let (mut due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.items)
            .into_iter()
            .partition(|h| h.send_at <= now);
        self.items = keep;
        due.sort_by_key(|h| h.first_at);
        due
    }

    /// When the next one is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.items.iter().map(|h| h.send_at).min()
    }

    /// Set each one's release time again (the rules may differ from the previous run's).
    pub fn reschedule(
        &mut self,
        mut when: impl FnMut(&NotifyEvent) -> (Timestamp, Option<HoldReason>),
    ) {
        for h in &mut self.items {
            let (at, reason) = when(&h.event);
            h.send_at = at;
            if let Some(r) = reason {
                h.reason = r;
            }
        }
    }

    /// What the status page and `/api/v1/status` show, soonest first.
    pub fn notices(&self, tz: &jiff::tz::TimeZone) -> Vec<HeldNotification> {
        let mut out: Vec<HeldNotification> = self
            .items
            .iter()
            .map(|h| HeldNotification {
                event: h.event.name(),
                token: h.event.token().map(str::to_string),
                program: h.event.program().map(str::to_string),
                summary: h.event.summary(),
                held_since: h.first_at,
                send_at: h.send_at,
                send_at_local: h
                    .send_at
                    .to_zoned(tz.clone())
                    .strftime("%a %H:%M %Z")
                    .to_string(),
                reason: h.reason.as_str(),
                count: h.count,
            })
            .collect();
        out.sort_by_key(|n| n.send_at);
        out
    }

    /// Write the file (0600, whole or not at all). Removes it when nothing is held.
    pub fn save(&self) {
        let Some(path) = &self.file else { return };
        let result = if self.items.is_empty() {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            let stored = StoredFile {
                held: self
                    .items
                    .iter()
                    .map(|h| Stored {
                        event: h.event.clone(),
                        first_at: h.first_at.as_second(),
                        count: h.count,
                        send_at: h.send_at.as_second(),
                        held_because: h.reason.as_str().to_string(),
                    })
                    .collect(),
            };
            let text = serde_json::to_vec_pretty(&stored).unwrap_or_default();
            write_whole(path, &text)
        };
        if let Err(e) = result {
            tracing::warn!(
                "cannot write {} ({e}); held notifications would not survive a restart",
                path.display()
            );
        }
    }
}

/// Temp file beside `path`, fsynced, renamed over it: a reader sees the old file or the new.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        // The state directory, as SPEC §3 creates it, when nothing else has yet.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_796_000_000 + s).unwrap()
    }

    fn login(token: &str, reason: &str) -> NotifyEvent {
        NotifyEvent::TokenNeedsLogin {
            token: token.into(),
            login_url: "http://h/login".into(),
            reason: reason.into(),
        }
    }

    fn failed(token: &str) -> NotifyEvent {
        NotifyEvent::TokenRefreshFailed {
            token: token.into(),
            reason: "timeout".into(),
            retry_in_secs: Some(60),
        }
    }

    fn refreshed(token: &str) -> NotifyEvent {
        NotifyEvent::TokenRefreshed {
            token: token.into(),
            user_id: None,
            expires_at: None,
        }
    }

    #[test]
    fn collapses_to_the_newest_per_kind_and_token() {
        let mut h = Held::default();
        let q = HoldReason::QuietHours;
        h.hold(login("kite", "first"), t(0), t(100), q);
        h.hold(login("kite", "second"), t(10), t(100), q);
        h.hold(login("upstox", "other token"), t(20), t(100), q);
        h.hold(failed("kite"), t(30), t(100), q);
        assert_eq!(h.items().len(), 3);
        let kite = &h.items()[0];
        assert_eq!(kite.event, login("kite", "second"));
        assert_eq!((kite.first_at, kite.count), (t(0), 2));
    }

    #[test]
    fn good_news_drops_the_problems_of_its_token_only() {
        let mut h = Held::default();
        let q = HoldReason::QuietHours;
        h.hold(login("kite", "x"), t(0), t(100), q);
        h.hold(failed("kite"), t(0), t(100), q);
        h.hold(login("upstox", "x"), t(0), t(100), q);
        h.hold(
            NotifyEvent::ProgramFatal {
                program: "kite".into(),
            },
            t(0),
            t(100),
            q,
        );
        let good = refreshed("kite");
        let dropped = h.drop_where(|e| good.resolves(e));
        assert_eq!(dropped.len(), 2);
        assert_eq!(h.items().len(), 2);
        let dropped = h.drop_where(|e| e.program() == Some("kite"));
        assert_eq!(dropped.len(), 1);
        assert_eq!(h.items()[0].event, login("upstox", "x"));
    }

    #[test]
    fn due_ones_come_out_oldest_first() {
        let mut h = Held::default();
        let q = HoldReason::QuietHours;
        h.hold(failed("b"), t(5), t(100), q);
        h.hold(login("a", "x"), t(1), t(100), q);
        h.hold(login("c", "x"), t(2), t(200), q);
        assert_eq!(h.next_due(), Some(t(100)));
        assert!(h.take_due(t(99)).is_empty());
        let due = h.take_due(t(100));
        assert_eq!(
            due.iter().map(|d| d.first_at).collect::<Vec<_>>(),
            [t(1), t(5)]
        );
        assert_eq!(h.next_due(), Some(t(200)));
    }

    #[test]
    fn survives_a_restart_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut h = Held::load(Some(dir.path()));
        assert!(h.is_empty());
        h.hold(login("kite", "x"), t(0), t(100), HoldReason::NotATradingDay);
        h.hold(login("kite", "y"), t(1), t(100), HoldReason::NotATradingDay);
        h.save();
        let file = dir.path().join(FILE_NAME);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Held::load(Some(dir.path()));
        assert_eq!(again.items(), h.items());
        h.take_due(t(100));
        h.save();
        assert!(!file.exists());
        std::fs::write(&file, "not json").unwrap();
        assert!(Held::load(Some(dir.path())).is_empty());
    }
}
