//! HTTP health probes: one task per running program with a `[programs.X.health]` section.
//!
//! A probe classifies each answer (SPEC §3): a 2xx is `ok`; a status in `auth_status`, or a
//! body matching `auth_body`, is `auth` — the broker token is bad, which a restart cannot fix;
//! anything else is `fail`, and a request that outlives `timeout` is `timeout`. After
//! `failure_threshold` consecutive fail/timeout results the program is unhealthy (liveness).
//! Probes report transitions, so a healthy steady state costs the supervisor nothing; after a
//! token hand-over they also report the first ok answer to a probe sent after it (SPEC §3.1).

use std::time::Duration;

use bytes_limit::read_limited;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use regex_lite::Regex;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::HealthConfig;

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

/// SPEC §5 health states (the model owns them; probes produce them).
pub use crate::model::Health;

/// A change of a program's health, reported to the supervisor.
#[derive(Debug, Clone)]
pub struct HealthEvent {
    pub program: String,
    /// The pid the probe was started for; stale events of an old process are ignored.
    pub pid: i32,
    pub health: Health,
    /// A short, secret-free description of the last result.
    pub detail: String,
    /// When the probe behind this result was sent (token hand-overs count only later probes).
    pub sent: Instant,
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

/// The running probe task of one process, and the way to tell it about token hand-overs.
pub struct ProbeHandle {
    task: JoinHandle<()>,
    handovers: UnboundedSender<Instant>,
}

impl ProbeHandle {
    /// The program was handed a new token at `at` (SPEC §3.1): probe it within
    /// [`FIRST_PROBE_AFTER_HANDOVER`] (or `interval`, if shorter), and report the first 2xx
    /// answer to a probe sent at or after `at` even if the program was healthy all along.
    pub fn handed_over(&self, at: Instant) {
        let _ = self.handovers.send(at);
    }

    pub fn abort(&self) {
        self.task.abort();
    }
}

/// How soon after a hand-over the first probe goes out. Not at once: a signal handler or a
/// file watcher needs a moment to re-read the file, and SPEC §3.1 allows up to 1 s.
pub const FIRST_PROBE_AFTER_HANDOVER: Duration = Duration::from_millis(250);

/// What the probe task knows about the latest hand-over.
#[derive(Default)]
struct HandoverWatch {
    /// The latest hand-over; the first ok answer to a probe sent since is reported.
    since: Option<Instant>,
    /// A probe must go out by then (cleared once one has been sent after `since`).
    probe_by: Option<Instant>,
    /// The first auth failure to a probe sent after this hand-over is reported even when the
    /// program was already `auth_failed`: the token it was just handed is bad too, and only a
    /// report makes the keeper look again (transitions alone would stay silent).
    auth_owed: Option<Instant>,
}

impl HandoverWatch {
    fn note(&mut self, at: Instant, interval: Duration) {
        self.since = Some(self.since.map_or(at, |s| s.max(at)));
        self.auth_owed = self.since;
        let by = at + interval.min(FIRST_PROBE_AFTER_HANDOVER);
        self.probe_by = Some(self.probe_by.map_or(by, |b| b.min(by)));
    }

    /// The next probe's time, moved earlier if a hand-over wants one sooner.
    fn next(&self, scheduled: Instant) -> Instant {
        self.probe_by.map_or(scheduled, |b| b.min(scheduled))
    }

    /// When a probe sent at `sent`, still unanswered, is to be abandoned: it was sent before
    /// the latest hand-over, whose own probe is due then.
    fn overdue(&self, sent: Instant) -> Option<Instant> {
        self.probe_by
            .filter(|_| self.since.is_some_and(|s| sent < s))
    }

    /// A probe went out at `sent`.
    fn sent(&mut self, sent: Instant) {
        if self.since.is_some_and(|s| sent >= s) {
            self.probe_by = None;
        }
    }

    /// Whether an ok answer to the probe sent at `sent` must be reported; reported once.
    fn take_ok(&mut self, sent: Instant) -> bool {
        let counts = self.since.is_some_and(|s| sent >= s);
        if counts {
            self.since = None;
            self.auth_owed = None;
        }
        counts
    }

    /// Whether an auth failure of the probe sent at `sent` must be reported although it is no
    /// change: the first one after a hand-over; reported once.
    fn take_auth(&mut self, sent: Instant) -> bool {
        let counts = self.auth_owed.is_some_and(|s| sent >= s);
        if counts {
            self.auth_owed = None;
        }
        counts
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
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
) -> ProbeHandle {
    let (handovers, mut handover_rx) = unbounded_channel::<Instant>();
    let task = tokio::spawn(async move {
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
        // Hand-overs during the initial delay wait in the channel: the first probe is after
        // them anyway.
        tokio::time::sleep(cfg.initial_delay).await;
        let mut reported = Health::Unknown;
        let mut failures = 0u32;
        let mut watch = HandoverWatch::default();
        let mut supervisor_here = true;
        let mut next = Instant::now();
        loop {
            loop {
                tokio::select! {
                    biased;
                    at = handover_rx.recv(), if supervisor_here => match at {
                        Some(at) => watch.note(at, cfg.interval),
                        None => supervisor_here = false,
                    },
                    _ = tokio::time::sleep_until(watch.next(next)) => break,
                }
            }
            let sent = Instant::now();
            watch.sent(sent);
            let probe = probe_once(&client, &cfg, &uri, auth_body.as_ref());
            tokio::pin!(probe);
            let outcome = loop {
                let overdue = watch.overdue(sent);
                tokio::select! {
                    out = &mut probe => break Some(out),
                    at = handover_rx.recv(), if supervisor_here => match at {
                        Some(at) => watch.note(at, cfg.interval),
                        None => supervisor_here = false,
                    },
                    // A slow probe from before a hand-over must not hold up the one it needs.
                    _ = sleep_until_opt(overdue) => break None,
                }
            };
            let Some((result, detail)) = outcome else {
                continue;
            };
            if let Some(hook) = &on_result {
                hook(&program, result, sent.elapsed());
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
            let verifies = result == ProbeResult::Ok && watch.take_ok(sent);
            let handed_a_bad_token = result == ProbeResult::Auth && watch.take_auth(sent);
            if health != reported || crossing || verifies || handed_a_bad_token {
                reported = health;
                let ev = HealthEvent {
                    program: program.clone(),
                    pid,
                    health,
                    detail,
                    sent,
                };
                if events.send(ev).is_err() {
                    return;
                }
            }
            next += cfg.interval;
            let now = Instant::now();
            if next < now {
                next = now;
            }
        }
    });
    ProbeHandle { task, handovers }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const INTERVAL: Duration = Duration::from_secs(5);

    #[test]
    fn a_hand_over_brings_the_next_probe_forward_but_never_delays_it() {
        let t0 = Instant::now();
        let mut w = HandoverWatch::default();
        assert_eq!(w.next(t0 + INTERVAL), t0 + INTERVAL);
        w.note(t0, INTERVAL);
        assert_eq!(w.next(t0 + INTERVAL), t0 + FIRST_PROBE_AFTER_HANDOVER);
        assert_eq!(w.next(t0 + MS), t0 + MS, "an earlier scheduled probe stays");
        // A short interval wins over the grace.
        let mut fast = HandoverWatch::default();
        fast.note(t0, 100 * MS);
        assert_eq!(fast.next(t0 + INTERVAL), t0 + 100 * MS);
    }

    #[test]
    fn only_a_probe_sent_after_the_hand_over_is_reported_and_only_once() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut w = HandoverWatch::default();
        assert!(!w.take_ok(t0), "no hand-over: nothing to report");
        w.note(t0, INTERVAL);
        // In flight when the hand-over happened.
        w.sent(t0 - MS);
        assert!(
            w.probe_by.is_some(),
            "still owes a probe after the hand-over"
        );
        assert!(!w.take_ok(t0 - MS));
        assert_eq!(w.overdue(t0 - MS), Some(t0 + FIRST_PROBE_AFTER_HANDOVER));
        w.sent(t0 + MS);
        assert!(w.probe_by.is_none());
        assert_eq!(w.overdue(t0 - MS), None, "the hand-over's probe is out");
        assert_eq!(w.overdue(t0 + MS), None);
        assert!(w.take_ok(t0 + MS));
        assert!(!w.take_ok(t0 + 2 * MS), "reported once");
    }

    #[test]
    fn the_first_auth_failure_after_a_hand_over_is_reported_once() {
        let mut w = HandoverWatch::default();
        let t0 = Instant::now();
        assert!(
            !w.take_auth(t0),
            "no hand-over: only transitions are reported"
        );
        w.note(t0 + MS, Duration::from_secs(5));
        assert!(!w.take_auth(t0), "a probe sent before the hand-over");
        assert!(w.take_auth(t0 + 2 * MS), "the hand-over's token is bad too");
        assert!(!w.take_auth(t0 + 3 * MS), "reported once");
        w.note(t0 + 4 * MS, Duration::from_secs(5));
        assert!(w.take_ok(t0 + 5 * MS));
        assert!(!w.take_auth(t0 + 6 * MS), "verified: nothing owed");
    }

    #[test]
    fn a_second_hand_over_moves_the_start_later() {
        let t0 = Instant::now();
        let mut w = HandoverWatch::default();
        w.note(t0, INTERVAL);
        w.note(t0 + 10 * MS, INTERVAL);
        assert!(!w.take_ok(t0 + 5 * MS));
        assert!(w.take_ok(t0 + 10 * MS));
    }
}
