//! The accept loop. Our own rather than `axum::serve` for one reason: a `drop` fault must
//! close the connection without an answer, which only the connection layer can do (a hyper
//! service that fails makes hyper abort the connection).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::faults::FaultKind;
use super::routes::router;
use super::state::Kite;

/// What a `drop` fault returns to hyper so that it hangs up.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose by a sandbox fault")]
struct DroppedOnPurpose;

/// Serve until the task running this is aborted; the connections live in a `JoinSet` owned
/// here, so aborting the loop also cuts every open (keep-alive) connection, like a broker
/// that went away.
pub(super) async fn serve(listener: TcpListener, kite: Arc<Kite>) {
    let app = router(kite.clone());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (kite, app) = (kite.clone(), app.clone());
        connections.spawn(async move {
            let svc = hyper::service::service_fn(move |req| answer(kite.clone(), app.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// Every answer carries the sandbox's own clock in `Date` (skewed on request), as a broker's
/// does: warden compares it with its clock before submitting a TOTP code.
async fn answer(
    kite: Arc<Kite>,
    app: axum::Router,
    req: Request<Incoming>,
) -> Result<Response<Body>, DroppedOnPurpose> {
    let skew = kite.clock_skew();
    let mut resp = route(kite, app, req).await?;
    let now = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(skew))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    if let Ok(v) = axum::http::HeaderValue::from_str(&crate::token::clock_guard::http_date(now)) {
        resp.headers_mut().insert(axum::http::header::DATE, v);
    }
    Ok(resp)
}

async fn route(
    kite: Arc<Kite>,
    app: axum::Router,
    req: Request<Incoming>,
) -> Result<Response<Body>, DroppedOnPurpose> {
    if let Some(fault) = kite.take_fault(req.uri().path()) {
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        match fault.kind {
            FaultKind::Drop => return Err(DroppedOnPurpose),
            FaultKind::Delay => {}
            FaultKind::Status | FaultKind::Garbage => return Ok(fault.response()),
        }
    }
    let resp: Result<Response<Body>, Infallible> = TowerToHyperService::new(app).call(req).await;
    match resp {
        Ok(r) => Ok(r),
        Err(never) => match never {},
    }
}
