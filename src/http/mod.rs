//! The one HTTP listener (SPEC §5): metrics, health, the control API, the status page and the
//! Kite login callback. Handlers read snapshots and send commands; they never own state.

pub mod api;
pub mod guard;
pub mod listener;
pub mod login;
pub mod page;
pub mod rate_limit;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, watch};

use crate::config::Secret;
use crate::model::ProgramsView;

/// Requests from HTTP handlers to the supervisor loop.
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

#[derive(Clone)]
pub struct AppState {
    pub programs: watch::Receiver<ProgramsView>,
    pub requests: UnboundedSender<Request>,
    pub api_token: Option<Secret>,
    pub reaper: crate::reaper::Reaper,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub keeper: Option<crate::token::keeper::KeeperHandle>,
    pub kite: Option<crate::config::KiteConfig>,
    /// Manual-login `state`s: issued by `/login`, spent by `/kite/callback`.
    pub login_states: std::sync::Arc<crate::token::login_state::LoginStates>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source} (set [http] listen to a free address)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub fn router(state: AppState) -> Router {
    let login_limit = std::sync::Arc::new(rate_limit::LoginRateLimit::default());
    api::routes()
        .merge(login::routes())
        .merge(page::routes())
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            login_limit,
            rate_limit::login_rate_limit,
        ))
}

/// Bind now (so a busy port fails start-up), serve in the background. Returns the bound address.
/// `public_url` is the configured one ("" when unset): its origin counts as warden's own.
pub async fn serve(
    addr: SocketAddr,
    public_url: &str,
    state: AppState,
) -> Result<SocketAddr, HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    let app = router(state);
    let guard = guard::Guard::new(local, public_url);
    tokio::spawn(listener::serve(listener, app, guard));
    tracing::info!("http listening on {local}");
    Ok(local)
}
