//! The accept loop and what one connection may hold (SPEC §5): headers within 10 s, idle
//! keep-alive connections closed, at most 512 connections, bodies of at most 64 KiB.
//!
//! Everything here is async on the one runtime thread and never waits for a client: a slow or
//! silent peer costs a timer and a buffer, not the loop that handles signals and probes. At the
//! connection cap a newcomer displaces the oldest connection that is not inside a request (a
//! half-sent or idle one), so a client holding hundreds of sockets cannot keep `/healthz` out;
//! only when every connection is busy with a request is the newcomer closed at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::guard::Guard;

/// A request's head must arrive within this; it also closes keep-alive connections that stay
/// idle this long after their last answer (hyper starts the same timer for the next request).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must arrive within this once its head has.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_CONNECTIONS: usize = 512;
/// Below this many connections the cap is never taken, whatever the open-file limit.
const MIN_CONNECTIONS: usize = 8;
pub const MAX_BODY: usize = 64 * 1024;
/// hyper's read buffer per connection (memory per slow client); a request head that outgrows
/// it gets 431. hyper checks between reads, so a head of up to twice this may get through.
const MAX_BUF: usize = 64 * 1024;

/// Open connections: whether each is inside a request, and since when it has been idle.
#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Conn>,
}

struct Conn {
    in_request: u32,
    idle_since: Instant,
    /// Told to close; it stays counted until its socket is closed.
    closing: bool,
    close: Arc<Notify>,
}

type Shared = Arc<Mutex<Registry>>;

fn lock(reg: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    // Plain bookkeeping: a panic elsewhere cannot leave it inconsistent.
    reg.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// Tell the connection idle the longest to close; false when every one is inside a
    /// request.
    fn evict_idlest(&mut self) -> bool {
        let oldest = self
            .conns
            .values_mut()
            .filter(|c| c.in_request == 0 && !c.closing)
            .min_by_key(|c| c.idle_since);
        match oldest {
            Some(c) => {
                c.closing = true;
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks a connection busy for the life of one request, idle again when dropped.
struct InRequest(Shared, u64);

impl InRequest {
    fn enter(reg: &Shared, id: u64) -> InRequest {
        if let Some(c) = lock(reg).conns.get_mut(&id) {
            c.in_request += 1;
        }
        InRequest(reg.clone(), id)
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        if let Some(c) = lock(&self.0).conns.get_mut(&self.1) {
            c.in_request = c.in_request.saturating_sub(1);
            c.idle_since = Instant::now();
        }
    }
}

/// Logs a repeated listener problem at most once a minute.
struct Throttle(Option<Instant>);

impl Throttle {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self.0.is_some_and(|t| now < t + Duration::from_secs(60)) {
            return false;
        }
        self.0 = Some(now);
        true
    }
}

/// 512, or half the open-file limit when that is lower: the other half stays for program
/// pipes, probes and restarts, so clients can never starve a program of descriptors.
fn connection_cap() -> usize {
    let limit = crate::rlimit::open_files_limit().unwrap_or(u64::MAX);
    let half = usize::try_from(limit / 2).unwrap_or(usize::MAX);
    let cap = half.clamp(MIN_CONNECTIONS, MAX_CONNECTIONS);
    if cap < MAX_CONNECTIONS {
        tracing::warn!(
            "http: at most {cap} connections, half the open-file limit ({limit}); raise the \
             hard limit (ulimit -Hn) for the full {MAX_CONNECTIONS}"
        );
    }
    cap
}

/// Accept forever, serving `app` behind `guard`.
pub async fn serve(listener: TcpListener, app: axum::Router, guard: Guard) {
    let cap = connection_cap();
    let reg: Shared = Default::default();
    let guard = Arc::new(guard);
    let mut full_log = Throttle(None);
    let mut error_log = Throttle(None);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if error_log.ready() {
                    tracing::warn!("http: cannot accept a connection: {e}");
                }
                // Out of descriptors or memory leaves the peer in the backlog, so the next
                // accept would fail at once: free one and back off instead of spinning. Other
                // errors (a peer that reset before accept) concern one connection only.
                let exhausted = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if exhausted {
                    lock(&reg).evict_idlest();
                }
                tokio::time::sleep(Duration::from_millis(if exhausted { 100 } else { 1 })).await;
                continue;
            }
        };
        let full = lock(&reg).conns.len() >= cap;
        if full {
            if !lock(&reg).evict_idlest() {
                if full_log.ready() {
                    tracing::warn!(
                        "http: {cap} connections are busy with requests; closing new ones"
                    );
                }
                continue; // dropping the stream closes it
            }
            // Let the evicted connection close its socket before taking another descriptor:
            // a burst of accepts must not outrun the closes.
            for _ in 0..16 {
                tokio::task::yield_now().await;
                if lock(&reg).conns.len() < cap {
                    break;
                }
            }
        }
        let close = Arc::new(Notify::new());
        let id = {
            let mut r = lock(&reg);
            r.next_id += 1;
            let id = r.next_id;
            r.conns.insert(
                id,
                Conn {
                    in_request: 0,
                    idle_since: Instant::now(),
                    closing: false,
                    close: close.clone(),
                },
            );
            id
        };
        let _ = stream.set_nodelay(true);
        let (reg, app, guard) = (reg.clone(), app.clone(), guard.clone());
        tokio::spawn(async move {
            let svc = {
                let reg = reg.clone();
                hyper::service::service_fn(move |req| {
                    let busy = InRequest::enter(&reg, id);
                    let (app, guard) = (app.clone(), guard.clone());
                    async move {
                        let answer = answer(app, &guard, peer, req).await;
                        drop(busy);
                        Ok::<_, Infallible>(answer)
                    }
                })
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_BUF)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                // Evicted: dropping the connection closes the socket.
                _ = close.notified() => {}
            }
            lock(&reg).conns.remove(&id);
        });
    }
}

/// Guard, body cap, then the router.
async fn answer(
    app: axum::Router,
    guard: &Guard,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Some(refusal) = guard.check(req.method(), req.uri(), req.headers()) {
        return refuse(refusal.status, &refusal.message);
    }
    let (mut parts, body) = req.into_parts();
    // What `axum::serve(.., into_make_service_with_connect_info)` would provide: `/login` is
    // rate-limited per client address.
    parts.extensions.insert(axum::extract::ConnectInfo(peer));
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let body = if body.is_end_stream() {
        Body::empty()
    } else {
        // No endpoint needs a body; read it (bounded in size and time) so that an oversized
        // chunked one is answered with 413 rather than left on the wire.
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
            Ok(Ok(collected)) => Body::from(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            Ok(Err(_)) => {
                return refuse(StatusCode::BAD_REQUEST, "malformed request body");
            }
            Err(_) => {
                return refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                );
            }
        }
    };
    match TowerToHyperService::new(app)
        .call(Request::from_parts(parts, body))
        .await
    {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

fn too_large() -> Response<Body> {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "request body larger than {} KiB; warden's endpoints take none",
            MAX_BODY / 1024
        ),
    )
}

/// A JSON error, and the connection closed after it: the rest of a refused request (its
/// body) may still be on the wire.
fn refuse(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONNECTION, "close")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
