//! The accept loop, the `/_sandbox/*` controls and the running-sandbox handle, shared by every
//! broker. Our own loop rather than `axum::serve` so that a `drop` fault can close the
//! connection without an answer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::core::{Core, Kind};
use super::faults::{Fault, FaultKind};
use crate::sandbox::SandboxError;

/// What the shared machinery needs from a broker.
pub trait Broker: Send + Sync + 'static {
    fn core(&self) -> &Core;
    /// The broker's own error envelope for an injected `status` fault.
    fn fault_response(&self, fault: &Fault) -> axum::response::Response;
    /// Forget the broker's own state (codes, pending requests) on `/_sandbox/reset`.
    fn reset(&self) {}
}

/// The body of a `garbage` fault: what a proxy in trouble sends.
const GARBAGE: &str = "<html><body>upstream hiccup: this is not JSON</body></html>";

/// `/_sandbox/expire|fault|stats|reset` for any broker, to merge into its router.
pub fn controls<B: Broker>(broker: Arc<B>) -> Router {
    Router::new()
        .route("/_sandbox/expire", post(ctl_expire::<B>))
        .route("/_sandbox/fault", post(ctl_fault::<B>))
        .route("/_sandbox/stats", get(ctl_stats::<B>))
        .route("/_sandbox/reset", post(ctl_reset::<B>))
        .with_state(broker)
}

/// `?what=access` (default), `refresh` or `all`.
async fn ctl_expire<B: Broker>(
    State(b): State<Arc<B>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    let kinds: &[Kind] = match q.get("what").map(String::as_str) {
        None | Some("access") => &[Kind::Access],
        Some("refresh") => &[Kind::Refresh],
        Some("all") => &[Kind::Access, Kind::Refresh, Kind::Side],
        Some(other) => {
            let msg = format!("what={other}: expected access, refresh or all");
            return (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response();
        }
    };
    Json(json!({"expired": b.core().expire(kinds)})).into_response()
}

async fn ctl_fault<B: Broker>(State(b): State<Arc<B>>, body: Bytes) -> axum::response::Response {
    queue_fault(&body, |f| b.core().add_fault(f))
}

/// The `/_sandbox/fault` answer: the posted rule (an empty body: the default one) handed to
/// `add` and echoed back, or 400 naming what is wrong with it.
pub fn queue_fault(body: &[u8], add: impl FnOnce(Fault)) -> axum::response::Response {
    let fault: Fault = if body.iter().all(u8::is_ascii_whitespace) {
        Fault::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(f) => f,
            Err(e) => {
                let msg = format!("bad fault: {e}");
                return (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response();
            }
        }
    };
    add(fault.clone());
    Json(json!({"queued": fault})).into_response()
}

async fn ctl_stats<B: Broker>(State(b): State<Arc<B>>) -> Json<Value> {
    Json(b.core().stats())
}

async fn ctl_reset<B: Broker>(State(b): State<Arc<B>>) -> Json<Value> {
    b.core().reset();
    b.reset();
    Json(json!({"reset": true}))
}

/// A running broker sandbox. Dropping it stops it.
pub struct Running<B: Broker> {
    addr: SocketAddr,
    pub broker: Arc<B>,
    task: tokio::task::JoinHandle<()>,
}

impl<B: Broker> Drop for Running<B> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<B: Broker> Running<B> {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`: every host of the broker is served here.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Bind `listen` and serve `routes` (plus the controls) in the background.
pub async fn spawn<B: Broker>(
    listen: SocketAddr,
    broker: Arc<B>,
    routes: Router,
) -> Result<Running<B>, SandboxError> {
    let (listener, addr) = bind(listen).await?;
    let app = routes.merge(controls(broker.clone()));
    let task = tokio::spawn(serve(listener, broker.clone(), app));
    Ok(Running { addr, broker, task })
}

/// Bind `listen`; the listener and the address it got (the port, when `listen` asks for 0).
pub async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), SandboxError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(SandboxError::Serve)?;
    Ok((listener, addr))
}

/// Print `lines` after `listening on …` and the note that ends the start-up block, then serve
/// until SIGTERM/SIGINT.
pub async fn run_until_stopped<B: Broker>(
    running: Running<B>,
    lines: Vec<String>,
) -> Result<(), SandboxError> {
    let stop = crate::sandbox::termination()?;
    let mut all = vec![format!("listening on {}", running.base_url())];
    all.extend(lines);
    all.push(
        "(fake sandbox credentials; controls: POST /_sandbox/expire|fault|reset, GET /_sandbox/stats)"
            .to_string(),
    );
    crate::sandbox::say(&all);
    stop.await;
    drop(running);
    Ok(())
}

async fn serve<B: Broker>(listener: TcpListener, broker: Arc<B>, app: Router) {
    accept_loop(listener, move |req| {
        let (broker, app) = (broker.clone(), app.clone());
        async move {
            let fault = broker.core().take_fault(req.uri().path());
            route_unless_faulted(fault, |f| broker.fault_response(f), app, req).await
        }
    })
    .await
}

/// What a `drop` fault returns to hyper so that it hangs up.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose by a sandbox fault")]
pub struct DroppedOnPurpose;

/// Serve every connection on `listener` with `answer` until the task running this is aborted.
/// The connections live in a `JoinSet` owned here, so aborting the loop also cuts every open
/// (keep-alive) connection, like a broker that went away. Upgrades (the Kite ticker's
/// WebSocket) are allowed on every connection.
pub async fn accept_loop<A, F>(listener: TcpListener, answer: A)
where
    A: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, DroppedOnPurpose>> + Send + 'static,
{
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
        let answer = answer.clone();
        connections.spawn(async move {
            let svc = hyper::service::service_fn(answer);
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// Fail the request the way `fault` says (after its delay), or hand it to `app`. A `status`
/// fault answers with `status_response`, the broker's own error envelope.
pub async fn route_unless_faulted(
    fault: Option<Fault>,
    status_response: impl FnOnce(&Fault) -> axum::response::Response,
    app: Router,
    req: Request<Incoming>,
) -> Result<Response<Body>, DroppedOnPurpose> {
    if let Some(fault) = fault {
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        match fault.kind {
            FaultKind::Drop => return Err(DroppedOnPurpose),
            FaultKind::Delay => {}
            FaultKind::Garbage => {
                return Ok((
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    GARBAGE,
                )
                    .into_response())
            }
            FaultKind::Status => return Ok(status_response(&fault)),
        }
    }
    let resp: Result<Response<Body>, Infallible> = TowerToHyperService::new(app).call(req).await;
    match resp {
        Ok(r) => Ok(r),
        Err(never) => match never {},
    }
}
