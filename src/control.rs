//! The typed handle front ends act and read through (HTTP today).
//!
//! [`Control`] is the write side: one method per thing a person may ask for, and nothing else
//! (no way to shut the keeper down or reconfigure it from a request handler). Restarts and
//! refreshes go to the supervisor loop, which decides; a manual login's request token goes to
//! the keeper, which owns the token. [`Views`] is the read side: `watch` receivers of the
//! model that the supervisor and the keeper publish.

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, watch};

use crate::model::{ProgramsView, TokenStatus};
use crate::reaper::OrphanCounter;
use crate::token::fleet::FleetStatus;
use crate::token::keeper::{CallbackError, KeeperMsg};

/// What front ends ask the supervisor loop.
#[derive(Debug)]
pub enum Request {
    /// Restart a program; the reply says whether it exists.
    Restart {
        name: String,
        reply: oneshot::Sender<bool>,
    },
    /// Refresh the token now (single-flight in the keeper).
    RefreshToken,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("warden is shutting down")]
    ShuttingDown,
    #[error("no program named {0:?}")]
    NoSuchProgram(String),
    #[error("no token provider configured")]
    NoToken,
    /// The keeper could not complete a manual login (never carries the token).
    #[error(transparent)]
    Login(#[from] CallbackError),
}

/// The write side. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    supervisor: UnboundedSender<Request>,
    /// `None` when warden keeps no token.
    keeper: Option<UnboundedSender<KeeperMsg>>,
}

impl Control {
    pub fn new(
        supervisor: UnboundedSender<Request>,
        keeper: Option<UnboundedSender<KeeperMsg>>,
    ) -> Control {
        Control { supervisor, keeper }
    }

    /// Restart one program (leaves `fatal` with a fresh budget).
    pub async fn restart(&self, name: &str) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        let name = name.to_string();
        self.supervisor
            .send(Request::Restart {
                name: name.clone(),
                reply,
            })
            .map_err(|_| ControlError::ShuttingDown)?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ControlError::NoSuchProgram(name)),
            Err(_) => Err(ControlError::ShuttingDown),
        }
    }

    /// Ask for a token refresh now; the keeper's rules decide whether one happens.
    pub fn refresh(&self) -> Result<(), ControlError> {
        self.supervisor
            .send(Request::RefreshToken)
            .map_err(|_| ControlError::ShuttingDown)
    }

    /// Lift a credential block (SPEC §4.1); the keeper answers `Err(reason)` when nothing is
    /// blocked or the block cannot be lifted this way. The caller bounds the wait.
    pub fn unblock(&self) -> Result<oneshot::Receiver<Result<(), String>>, ControlError> {
        let keeper = self.keeper.as_ref().ok_or(ControlError::NoToken)?;
        let (reply, rx) = oneshot::channel();
        keeper
            .send(KeeperMsg::Unblock(reply))
            .map_err(|_| ControlError::ShuttingDown)?;
        Ok(rx)
    }

    /// The broker page a manual login starts at (`Ok(None)`: this token has no manual login;
    /// `Err` with the broker's refusal when it had to be asked first).
    pub async fn login_url(
        &self,
        state: String,
    ) -> Result<Result<Option<String>, String>, ControlError> {
        let keeper = self.keeper.as_ref().ok_or(ControlError::NoToken)?;
        let (reply, rx) = oneshot::channel();
        keeper
            .send(KeeperMsg::LoginUrl { state, reply })
            .map_err(|_| ControlError::ShuttingDown)?;
        rx.await.map_err(|_| ControlError::ShuttingDown)
    }

    /// Hand a manual login's callback (its query parameters) to the keeper and wait for its
    /// verdict.
    pub async fn complete_login(
        &self,
        query: std::collections::HashMap<String, String>,
    ) -> Result<(), ControlError> {
        let keeper = self.keeper.as_ref().ok_or(ControlError::NoToken)?;
        let (reply, rx) = oneshot::channel();
        keeper
            .send(KeeperMsg::Callback { query, reply })
            .map_err(|_| ControlError::ShuttingDown)?;
        rx.await.map_err(|_| ControlError::ShuttingDown)??;
        Ok(())
    }
}

/// The read side: live snapshots of the model. Cheap to clone.
#[derive(Clone)]
pub struct Views {
    pub programs: watch::Receiver<ProgramsView>,
    /// `None` when warden keeps no token.
    pub token: Option<watch::Receiver<TokenStatus>>,
    /// Fleet mode only: the shared store and this warden's role.
    pub store: Option<watch::Receiver<FleetStatus>>,
    pub orphans: OrphanCounter,
    /// Market hours and each token's continuity; `None` where nothing tracks them.
    pub market: Option<watch::Receiver<crate::market::tracker::MarketView>>,
}

/// Everything a front end shows, taken at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub programs: ProgramsView,
    pub token: Option<TokenStatus>,
    pub store: Option<FleetStatus>,
    pub orphans_reaped: u64,
    pub market: Option<crate::market::tracker::MarketView>,
}

impl Views {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            programs: self.programs.borrow().clone(),
            token: self.token.as_ref().map(|t| t.borrow().clone()),
            store: self.store.as_ref().map(|s| s.borrow().clone()),
            orphans_reaped: self.orphans.get(),
            market: self.market.as_ref().map(|m| m.borrow().clone()),
        }
    }
}
