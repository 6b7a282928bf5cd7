//! Kite's answers on the shared accept loop (`sandbox::common::server`), which is our own
//! rather than `axum::serve` because a `drop` fault must close the connection without an
//! answer. The loop allows upgrades, which the ticker's WebSocket needs.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::routes::router;
use super::state::Kite;
use crate::sandbox::common::server::{accept_loop, route_unless_faulted, DroppedOnPurpose};

/// Serve until the task running this is aborted (which also cuts every open connection).
pub(super) async fn serve(listener: TcpListener, kite: Arc<Kite>) {
    let app = router(kite.clone());
    accept_loop(listener, move |req| answer(kite.clone(), app.clone(), req)).await
}

/// Every answer carries the sandbox's own clock in `Date` (skewed on request), as a broker's
/// does: warden compares it with its clock before submitting a TOTP code.
async fn answer(
    kite: Arc<Kite>,
    app: axum::Router,
    req: Request<Incoming>,
) -> Result<Response<Body>, DroppedOnPurpose> {
    let skew = kite.clock_skew();
    let fault = kite.take_fault(req.uri().path());
    let mut resp = route_unless_faulted(fault, |f| f.response(), app, req).await?;
    let now = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(skew))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    if let Ok(v) = axum::http::HeaderValue::from_str(&crate::token::clock_guard::http_date(now)) {
        resp.headers_mut().insert(axum::http::header::DATE, v);
    }
    Ok(resp)
}
