//! A notification held back by quiet hours or a non-trading day (`held_notifications` in
//! `/api/v1/status`, "Held notifications" on the status page).

use jiff::Timestamp;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldNotification {
    /// The webhook's `event` name.
    pub event: &'static str,
    pub token: Option<String>,
    pub program: Option<String>,
    /// One line: what happened.
    pub summary: String,
    /// When the first of its kind was held.
    #[serde(serialize_with = "super::time::rfc3339")]
    pub held_since: Timestamp,
    /// When it will be sent (unless the problem is over first).
    #[serde(serialize_with = "super::time::rfc3339")]
    pub send_at: Timestamp,
    /// `send_at` in `[notify] timezone`, e.g. "Tue 07:00 IST".
    pub send_at_local: String,
    /// `quiet_hours` | `not_a_trading_day`.
    pub reason: &'static str,
    /// How many of its kind were collapsed into it.
    pub count: u32,
}
