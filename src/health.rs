//! HTTP health probes: one task per running program with a `[programs.X.health]` section.
//!
//! A probe classifies each answer (SPEC §3): a 2xx is `ok`; a status in `auth_status`, or a
//! body matching `auth_body`, is `auth` — the broker token is bad, which a restart cannot fix;
//! anything else is `fail`, and a request that outlives `timeout` is `timeout`. After
//! `failure_threshold` consecutive fail/timeout results the program is unhealthy (liveness).
//! Probes only report transitions, so a healthy steady state costs the supervisor nothing.

use std::time::Duration;

use bytes_limit::read_limited;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use regex::Regex;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::config::HealthConfig;
use crate::supervisor::Health;

pub type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

/// One client for every probe: plain HTTP, no TLS (probes target local programs).
pub fn client() -> ProbeClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(connector)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Ok,
    Fail,
    Timeout,
    Auth,
}

impl ProbeResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Ok => "ok",
            ProbeResult::Fail => "fail",
            ProbeResult::Timeout => "timeout",
            ProbeResult::Auth => "auth",
        }
    }
}

/// A change of a program's health, reported to the supervisor.
#[derive(Debug, Clone)]
pub struct HealthEvent {
    pub program: String,
    /// The pid the probe was started for; stale events of an old process are ignored.
    pub pid: i32,
    pub health: Health,
    /// A short, secret-free description of the last result.
    pub detail: String,
}

/// Observer of every single probe result (metrics).
pub type ResultHook = std::sync::Arc<dyn Fn(&str, ProbeResult, Duration) + Send + Sync>;

/// Longest body read when matching `auth_body`.
const BODY_LIMIT: usize = 64 * 1024;

mod bytes_limit {
    use http_body_util::BodyExt;
    use hyper::body::Incoming;

    /// Read at most `limit` bytes of a body; the rest is dropped with the connection.
    pub async fn read_limited(mut body: Incoming, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data[..data.len().min(limit - out.len())]);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out
    }
}

async fn probe_once(
    client: &ProbeClient,
    cfg: &HealthConfig,
    uri: &hyper::Uri,
    auth_body: Option<&Regex>,
) -> (ProbeResult, String) {
    let req = match hyper::Request::get(uri.clone())
        .header("user-agent", "warden-probe")
        .body(Empty::new())
    {
        Ok(r) => r,
        Err(e) => return (ProbeResult::Fail, format!("bad request: {e}")),
    };
    let fut = async {
        let resp = client.request(req).await.map_err(|e| format!("{e}"))?;
        let status = resp.status().as_u16();
        let body = if auth_body.is_some() {
            read_limited(resp.into_body(), BODY_LIMIT).await
        } else {
            Vec::new()
        };
        Ok::<_, String>((status, body))
    };
    match tokio::time::timeout(cfg.timeout, fut).await {
        Err(_) => (
            ProbeResult::Timeout,
            format!("no answer within {:?}", cfg.timeout),
        ),
        Ok(Err(e)) => (ProbeResult::Fail, e),
        Ok(Ok((status, body))) => {
            let auth_match =
                auth_body.is_some_and(|re| re.is_match(&String::from_utf8_lossy(&body)));
            if cfg.auth_status.contains(&status) || auth_match {
                (
                    ProbeResult::Auth,
                    format!("HTTP {status}: broker token rejected"),
                )
            } else if (200..300).contains(&status) {
                (ProbeResult::Ok, format!("HTTP {status}"))
            } else {
                (ProbeResult::Fail, format!("HTTP {status}"))
            }
        }
    }
}

/// Probe `program` (process `pid`) until the returned task is aborted.
pub fn spawn_probe(
    program: String,
    pid: i32,
    cfg: HealthConfig,
    client: ProbeClient,
    events: UnboundedSender<HealthEvent>,
    on_result: Option<ResultHook>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let uri: hyper::Uri = match cfg.url.parse() {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(program = %program, "health.url {:?} is not a URL: {e}", cfg.url);
                return;
            }
        };
        let auth_body = (!cfg.auth_body.is_empty())
            .then(|| Regex::new(&cfg.auth_body).ok())
            .flatten();
        tokio::time::sleep(cfg.initial_delay).await;
        let mut reported = Health::Unknown;
        let mut failures = 0u32;
        let mut next = tokio::time::Instant::now();
        loop {
            let started = tokio::time::Instant::now();
            let (result, detail) = probe_once(&client, &cfg, &uri, auth_body.as_ref()).await;
            if let Some(hook) = &on_result {
                hook(&program, result, started.elapsed());
            }
            let health = match result {
                ProbeResult::Ok => {
                    failures = 0;
                    Health::Healthy
                }
                ProbeResult::Auth => {
                    failures = 0;
                    Health::AuthFailed
                }
                ProbeResult::Fail | ProbeResult::Timeout => {
                    failures += 1;
                    if failures >= cfg.failure_threshold.max(1) {
                        Health::Unhealthy
                    } else {
                        reported
                    }
                }
            };
            // Unhealthy is re-reported at every threshold crossing: each one is a restart request.
            let crossing = health == Health::Unhealthy && failures == cfg.failure_threshold.max(1);
            if health != reported || crossing {
                reported = health;
                let ev = HealthEvent {
                    program: program.clone(),
                    pid,
                    health,
                    detail,
                };
                if events.send(ev).is_err() {
                    return;
                }
            }
            next += cfg.interval;
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
            tokio::time::sleep_until(next).await;
        }
    })
}
