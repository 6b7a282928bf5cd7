//! Alone or in a fleet (README "Fleet mode"): the one place the keeper asks which.
//!
//! Alone, this warden logs in whenever the rules allow. In a fleet (`token.store.kind =
//! "redis"`), several wardens share one token and only the leader talks to the login
//! endpoints; the others ask it and take what it shares.

use tokio::sync::mpsc::UnboundedReceiver;

use crate::token::fleet::{Fleet, FleetEvent, Role};

pub(super) enum Coordination {
    Solo,
    Fleet {
        fleet: Fleet,
        events: UnboundedReceiver<FleetEvent>,
    },
}

impl Coordination {
    pub(super) fn new(fleet: Option<(Fleet, UnboundedReceiver<FleetEvent>)>) -> Coordination {
        match fleet {
            Some((fleet, events)) => Coordination::Fleet { fleet, events },
            None => Coordination::Solo,
        }
    }

    pub(super) fn fleet(&self) -> Option<&Fleet> {
        match self {
            Coordination::Solo => None,
            Coordination::Fleet { fleet, .. } => Some(fleet),
        }
    }

    /// Fleet mode, and another warden does the logging in.
    pub(super) fn following(&self) -> Option<Fleet> {
        self.fleet().filter(|f| f.role() != Role::Leader).cloned()
    }

    /// Whether this warden may create a broker session now. Alone: yes. In a fleet only a
    /// confirmed leader: the lock may have lapsed while it was busy or paused, and a login by
    /// a former leader would kill its successor's token.
    pub(super) async fn may_log_in(&self) -> bool {
        match self.fleet() {
            None => true,
            Some(f) => {
                let leading = f.confirm_leader().await.is_some();
                if !leading {
                    tracing::warn!("no longer leading the fleet; leaving the login to the leader");
                }
                leading
            }
        }
    }

    /// Whether this warden tells people about the token (one message per fleet, not one per
    /// warden: the leader's).
    pub(super) fn announces(&self) -> bool {
        self.following().is_none()
    }

    /// Every warden's page then offers the login, not only the leader's.
    pub(super) fn share_needs_login(&self, reason: &str) {
        if let Some(f) = self.fleet() {
            f.share_needs_login(reason.to_string());
        }
    }

    /// warden is stopping: give up the fleet lock.
    pub(super) async fn release(&self) {
        if let Some(f) = self.fleet() {
            f.release().await;
        }
    }

    /// The next event from the fleet; never, alone.
    pub(super) async fn next_event(&mut self) -> Option<FleetEvent> {
        match self {
            Coordination::Solo => std::future::pending().await,
            Coordination::Fleet { events, .. } => events.recv().await,
        }
    }
}
