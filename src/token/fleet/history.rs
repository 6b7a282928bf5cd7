//! Fleet leadership in the event history: this warden starting or stopping to lead, and, on a
//! follower, the leader it follows changing. Read from the fleet's status, so the election
//! code records nothing itself.

use tokio::sync::watch;

use super::{FleetStatus, Role};
use crate::journal::{Event, Journal, Kind};

/// Who the fleet events are about.
const SUBJECT: &str = "fleet";

/// Watch `status` for as long as the fleet runs and record each leadership change.
pub fn spawn(mut status: watch::Receiver<FleetStatus>, journal: Journal) {
    if !journal.is_enabled() {
        return;
    }
    tokio::spawn(async move {
        let mut seen = Seen::default();
        loop {
            let message = seen.change(&status.borrow_and_update());
            if let Some(m) = message {
                journal.record(Event::new(Kind::FleetLeader, SUBJECT, m));
            }
            if status.changed().await.is_err() {
                return;
            }
        }
    });
}

/// What was last recorded.
#[derive(Debug, Default)]
struct Seen {
    leading: bool,
    /// The last leader followed (kept while the store is unreachable: the same leader coming
    /// back is no change).
    leader: Option<String>,
}

impl Seen {
    fn change(&mut self, s: &FleetStatus) -> Option<String> {
        match s.role {
            Role::Leader if !self.leading => {
                self.leading = true;
                self.leader = Some(s.id.clone());
                Some(format!(
                    "this warden ({}) leads the fleet now (fence {}): it logs in for all",
                    s.id, s.fence
                ))
            }
            Role::Follower => {
                let leader = s.leader.clone()?;
                let was_leading = std::mem::take(&mut self.leading);
                if !was_leading && self.leader.as_ref() == Some(&leader) {
                    return None;
                }
                self.leader = Some(leader.clone());
                Some(if was_leading {
                    format!("this warden no longer leads the fleet; following {leader}")
                } else {
                    format!("following the fleet leader {leader}")
                })
            }
            Role::Unknown if self.leading => {
                self.leading = false;
                self.leader = None;
                Some(
                    "this warden no longer leads the fleet (the token store is unreachable)".into(),
                )
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(role: Role, leader: Option<&str>) -> FleetStatus {
        FleetStatus {
            kind: "redis",
            up: role != Role::Unknown,
            role,
            id: "me/1".into(),
            leader: leader.map(str::to_string),
            fence: 7,
            ..FleetStatus::default()
        }
    }

    #[test]
    fn records_each_change_of_leader_once() {
        let mut seen = Seen::default();
        let follow_a = status(Role::Follower, Some("a/1"));
        assert_eq!(
            seen.change(&follow_a).as_deref(),
            Some("following the fleet leader a/1")
        );
        assert_eq!(seen.change(&follow_a), None, "a renewal is no change");
        assert_eq!(seen.change(&status(Role::Unknown, None)), None);
        assert_eq!(
            seen.change(&follow_a),
            None,
            "the same leader after an outage"
        );
        let lead = status(Role::Leader, Some("me/1"));
        assert!(seen
            .change(&lead)
            .unwrap()
            .contains("leads the fleet now (fence 7)"));
        assert_eq!(seen.change(&lead), None);
        assert_eq!(
            seen.change(&status(Role::Follower, Some("b/1"))).as_deref(),
            Some("this warden no longer leads the fleet; following b/1")
        );
        seen.change(&lead);
        assert!(seen
            .change(&status(Role::Unknown, None))
            .unwrap()
            .contains("unreachable"));
    }
}
