//! The one HTTP listener (SPEC §5): metrics, health, the control API, the status page and the
//! Kite login callback. Handlers read snapshots and send commands; they never own state.

pub mod api;
pub mod events;
pub mod guard;
mod held_card;
pub mod listener;
pub mod login;
pub mod market_card;
pub mod notify;
pub mod page;
pub mod rate_limit;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Secret;
use crate::control::{Control, Views};

/// Kept importable from here; the control handle owns it.
pub use crate::control::Request;

/// What handlers hold: the model's views, the typed control handle, and what rendering and
/// the login flow need. No supervisor, reaper or keeper internals.
#[derive(Clone)]
pub struct AppState {
    pub views: Views,
    pub control: Control,
    /// Bearer token the mutating endpoints require, when configured.
    pub api_token: Option<Secret>,
    /// Rendered by `/metrics`.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The event history: `/api/v1/events` and the page's card.
    pub events: events::EventsState,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the HTTP listener has no local address: {source}")]
    Local { source: std::io::Error },
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
        .merge(notify::routes())
        .merge(page::routes())
        .merge(events::routes())
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            login_limit,
            rate_limit::login_rate_limit,
        ))
}

/// Bind `[http] listen` (the composition root does, so a busy port fails start-up).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serve on a bound listener in the background. Returns its address.
/// `public_url` is the configured one ("" when unset): its origin counts as warden's own.
pub fn serve(
    listener: TcpListener,
    public_url: &str,
    state: AppState,
) -> Result<SocketAddr, HttpError> {
    let local = listener
        .local_addr()
        .map_err(|source| HttpError::Local { source })?;
    let app = router(state);
    let guard = guard::Guard::new(local, public_url);
    tokio::spawn(listener::serve(listener, app, guard));
    tracing::info!("http listening on {local}");
    Ok(local)
}
