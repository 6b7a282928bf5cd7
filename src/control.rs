//! The typed handle front ends act and read through (HTTP today).
//!
//! [`Control`] is the write side: one method per thing a person may ask for, and nothing else
//! (no way to shut the keeper down or reconfigure it from a request handler). Restarts and
//! refreshes go to the supervisor loop, which decides; a manual login's request token goes to
//! the keeper, which owns the token. [`Views`] is the read side: `watch` receivers of the
//! model that the supervisor and the keeper publish.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, watch};

use crate::model::{HeldNotification, ProgramsView, TokenState, TokenStatus};
use crate::reaper::OrphanCounter;
use crate::token::fleet::FleetStatus;
use crate::token::keeper::{CallbackError, DeliveryError, KeeperMsg, Trigger};
use crate::token::login_state::LoginStates;
use crate::token::provider::DeliveryRefused;

/// What front ends ask the supervisor loop.
#[derive(Debug)]
pub enum Request {
    /// Restart a program; the reply says whether it exists.
    Restart {
        name: String,
        reply: oneshot::Sender<bool>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("warden is shutting down")]
    ShuttingDown,
    #[error("no program named {0:?}")]
    NoSuchProgram(String),
    #[error("no token provider configured")]
    NoToken,
    #[error("no token named {0:?}")]
    NoSuchToken(String),
    /// Several tokens and the request named none (SPEC §9.1).
    #[error("this warden keeps several tokens ({}): name one", .0.join(", "))]
    NameNeeded(Vec<String>),
    /// The keeper could not complete a manual login (never carries the token).
    #[error(transparent)]
    Login(#[from] CallbackError),
    /// The keeper did not take a token the broker posted (never carries the token).
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// Which broker's callback completes a token's manual login, and whether that broker carries
/// the `state` back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRoute {
    pub provider: &'static str,
    pub carries_state: bool,
}

/// One token as front ends reach it (SPEC §9.1): its status, its keeper, its manual login.
#[derive(Clone)]
pub struct TokenEntry {
    pub name: String,
    pub status: watch::Receiver<TokenStatus>,
    pub keeper: UnboundedSender<KeeperMsg>,
    /// `None` when this token has no manual login.
    pub login: Option<LoginRoute>,
    /// Its manual-login `state`s: issued by `/login`, spent by the callback.
    pub login_states: Arc<LoginStates>,
    /// Fleet mode only: the shared store and this warden's role for this token.
    pub store: Option<watch::Receiver<FleetStatus>>,
}

/// Every token, in order (the first is the one `token` in the status means). Replaced whole
/// when a reload adds or removes tokens.
pub type TokenTable = Arc<Vec<TokenEntry>>;

/// The table's lookup rules, shared by every front end: a name picks that token; no name picks
/// the only one.
pub fn pick<'a>(
    table: &'a [TokenEntry],
    name: Option<&str>,
) -> Result<&'a TokenEntry, ControlError> {
    match name {
        Some(n) => table
            .iter()
            .find(|t| t.name == n)
            .ok_or_else(|| ControlError::NoSuchToken(n.to_string())),
        None => match table {
            [] => Err(ControlError::NoToken),
            [only] => Ok(only),
            several => Err(ControlError::NameNeeded(
                several.iter().map(|t| t.name.clone()).collect(),
            )),
        },
    }
}

/// The write side. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    supervisor: UnboundedSender<Request>,
    tokens: watch::Receiver<TokenTable>,
}

impl Control {
    pub fn new(
        supervisor: UnboundedSender<Request>,
        tokens: watch::Receiver<TokenTable>,
    ) -> Control {
        Control { supervisor, tokens }
    }

    /// The token `name` (or the only one).
    pub fn token(&self, name: Option<&str>) -> Result<TokenEntry, ControlError> {
        pick(&self.tokens.borrow(), name).cloned()
    }

    /// Every token, in order.
    pub fn tokens(&self) -> TokenTable {
        self.tokens.borrow().clone()
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

    /// Ask for a refresh of one token now; its keeper's rules decide whether one happens.
    pub fn refresh(&self, token: &TokenEntry) -> Result<(), ControlError> {
        token
            .keeper
            .send(KeeperMsg::Trigger(Trigger::Api))
            .map_err(|_| ControlError::ShuttingDown)
    }

    /// Lift a credential block (SPEC §4.1); the keeper answers `Err(reason)` when nothing is
    /// blocked or the block cannot be lifted this way. The caller bounds the wait.
    pub fn unblock(
        &self,
        token: &TokenEntry,
    ) -> Result<oneshot::Receiver<Result<(), String>>, ControlError> {
        let (reply, rx) = oneshot::channel();
        token
            .keeper
            .send(KeeperMsg::Unblock(reply))
            .map_err(|_| ControlError::ShuttingDown)?;
        Ok(rx)
    }

    /// The broker page a manual login starts at (`Ok(None)`: this token has no manual login;
    /// `Err` with the broker's refusal when it had to be asked first).
    pub async fn login_url(
        &self,
        token: &TokenEntry,
        state: String,
    ) -> Result<Result<Option<String>, String>, ControlError> {
        let (reply, rx) = oneshot::channel();
        token
            .keeper
            .send(KeeperMsg::LoginUrl { state, reply })
            .map_err(|_| ControlError::ShuttingDown)?;
        rx.await.map_err(|_| ControlError::ShuttingDown)
    }

    /// Hand a manual login's callback (its query parameters) to the token's keeper and wait
    /// for its verdict.
    pub async fn complete_login(
        &self,
        token: &TokenEntry,
        query: std::collections::HashMap<String, String>,
    ) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        token
            .keeper
            .send(KeeperMsg::Callback { query, reply })
            .map_err(|_| ControlError::ShuttingDown)?;
        rx.await.map_err(|_| ControlError::ShuttingDown)??;
        Ok(())
    }
}

impl Control {
    /// Whether any token logs in through `provider` (its callback and webhook routes).
    pub fn has_provider(&self, provider: &str) -> bool {
        self.tokens
            .borrow()
            .iter()
            .any(|t| t.login.as_ref().is_some_and(|r| r.provider == provider))
    }

    /// Hand a token the broker posted (Upstox's notifier webhook, the raw body) to the
    /// keepers of that broker's tokens, one after the other, and wait for their verdict: the
    /// first that takes it wins. When none does, the answer of the one that came closest (a
    /// request pending but the token refused) beats "nothing pending".
    pub async fn deliver_token(&self, provider: &str, body: Vec<u8>) -> Result<(), ControlError> {
        let candidates: Vec<TokenEntry> = self
            .tokens
            .borrow()
            .iter()
            .filter(|t| t.login.as_ref().is_some_and(|r| r.provider == provider))
            .cloned()
            .collect();
        let mut refusal = ControlError::NoToken;
        for token in candidates {
            let (reply, rx) = oneshot::channel();
            token
                .keeper
                .send(KeeperMsg::Delivery {
                    body: body.clone(),
                    reply,
                })
                .map_err(|_| ControlError::ShuttingDown)?;
            match rx.await.map_err(|_| ControlError::ShuttingDown)? {
                Ok(()) => return Ok(()),
                // Another token's closer answer is kept over "nothing pending here".
                Err(DeliveryError::Refused(DeliveryRefused::NotPending))
                    if !matches!(refusal, ControlError::NoToken) => {}
                Err(e) => refusal = ControlError::Delivery(e),
            }
        }
        Err(refusal)
    }
}

/// The read side: live snapshots of the model. Cheap to clone.
#[derive(Clone)]
pub struct Views {
    pub programs: watch::Receiver<ProgramsView>,
    /// Every token warden keeps (empty when none).
    pub tokens: watch::Receiver<TokenTable>,
    pub orphans: OrphanCounter,
    /// Notifications held by quiet hours or a non-trading day.
    pub held: watch::Receiver<Vec<HeldNotification>>,
    /// Market hours and each token's continuity; `None` where nothing tracks them.
    pub market: Option<watch::Receiver<crate::market::tracker::MarketView>>,
}

/// Everything a front end shows, taken at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub programs: ProgramsView,
    /// The only or first token.
    pub token: Option<TokenStatus>,
    /// Every token by name, in order (SPEC §9.1), with its fleet status in fleet mode.
    pub tokens: Vec<(String, TokenStatus, Option<FleetStatus>)>,
    /// Fleet mode: the first token's shared store.
    pub store: Option<FleetStatus>,
    pub orphans_reaped: u64,
    pub held: Vec<HeldNotification>,
    pub market: Option<crate::market::tracker::MarketView>,
}

impl Snapshot {
    /// The token state readiness is judged by: the first token that is not valid, else the
    /// first token's (`None`: no token kept).
    pub fn readiness_token_state(&self) -> Option<TokenState> {
        self.tokens
            .iter()
            .map(|(_, t, _)| t.state)
            .find(|s| *s != TokenState::Valid)
            .or(self.token.as_ref().map(|t| t.state))
    }
}

impl Views {
    pub fn snapshot(&self) -> Snapshot {
        let table = self.tokens.borrow().clone();
        let tokens: Vec<_> = table
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.status.borrow().clone(),
                    t.store.as_ref().map(|s| s.borrow().clone()),
                )
            })
            .collect();
        Snapshot {
            programs: self.programs.borrow().clone(),
            token: tokens.first().map(|(_, t, _)| t.clone()),
            store: tokens.first().and_then(|(_, _, s)| s.clone()),
            tokens,
            orphans_reaped: self.orphans.get(),
            held: self.held.borrow().clone(),
            market: self.market.as_ref().map(|m| m.borrow().clone()),
        }
    }
}
