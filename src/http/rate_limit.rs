//! `/login` (and `/login/…`, and Upstox's notifier webhook `/upstox/notify`) per client address: a token bucket of 5, refilled at 10 a minute.
//! Every `/login` creates a state that must be remembered until it expires, so an
//! unauthenticated client must not be able to create them at will. Beyond the limit: 429 with
//! `Retry-After`.
//!
//! The client is the peer address of the connection (an IPv6 client is its /64: one host
//! usually owns all of it); `X-Forwarded-For` is not trusted, so behind a reverse proxy every
//! browser shares the proxy's bucket. Memory is bounded: at most `MAX_CLIENTS` buckets; past
//! that, full buckets are forgotten (a full bucket is the same as none) and, if still too many,
//! the newcomers share one overflow bucket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Requests a client may make at once.
const BURST: f64 = 5.0;
/// Then this many per minute.
const PER_MINUTE: f64 = 10.0;
const MAX_CLIENTS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    Ip(IpAddr),
    /// Everyone once `MAX_CLIENTS` distinct clients hold partly used buckets, and connections
    /// whose peer address is not known.
    Overflow,
}

impl Client {
    fn of(addr: Option<IpAddr>) -> Client {
        match addr {
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::Ip(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Client::Ip(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
            Some(v4) => Client::Ip(v4),
            None => Client::Overflow,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn level(&self, now: Instant) -> f64 {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * PER_MINUTE / 60.0;
        (self.tokens + refill).min(BURST)
    }
}

#[derive(Default)]
pub struct LoginRateLimit {
    buckets: Mutex<HashMap<Client, Bucket>>,
}

impl LoginRateLimit {
    /// Take one request from `addr`'s bucket: `Err(retry_after)` when it is empty.
    fn take(&self, addr: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut client = Client::of(addr);
        if !buckets.contains_key(&client) && buckets.len() >= MAX_CLIENTS {
            buckets.retain(|_, b| b.level(now) < BURST);
            if buckets.len() >= MAX_CLIENTS {
                client = Client::Overflow;
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let level = bucket.level(now);
        if level >= 1.0 {
            *bucket = Bucket {
                tokens: level - 1.0,
                at: now,
            };
            return Ok(());
        }
        let secs = ((1.0 - level) * 60.0 / PER_MINUTE).ceil().max(1.0);
        Err(Duration::from_secs(secs as u64))
    }
}

fn limited(path: &str) -> bool {
    // The unauthenticated notifier webhook makes warden ask the broker about each post.
    path == "/login" || path.starts_with("/login/") || path == super::notify::UPSTOX_NOTIFY
}

/// The middleware: only `/login` paths are counted.
pub async fn login_rate_limit(
    State(limit): State<Arc<LoginRateLimit>>,
    req: Request,
    next: Next,
) -> Response {
    if !limited(req.uri().path()) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match limit.take(peer, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(retry_after) => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::RETRY_AFTER, retry_after.as_secs().to_string()),
                (
                    header::CONTENT_TYPE,
                    "text/plain; charset=utf-8".to_string(),
                ),
            ],
            format!(
                "too many login requests from this address; try again in {}s\n",
                retry_after.as_secs()
            ),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_burst_of_five_then_ten_a_minute() {
        let l = LoginRateLimit::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.take(ip("10.0.0.1"), t0).is_ok());
        }
        let wait = l.take(ip("10.0.0.1"), t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(6));
        assert!(l.take(ip("10.0.0.2"), t0).is_ok(), "another client");
        assert!(l.take(ip("10.0.0.1"), t0 + Duration::from_secs(6)).is_ok());
        assert!(l.take(ip("10.0.0.1"), t0 + Duration::from_secs(6)).is_err());
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let l = LoginRateLimit::default();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(l.take(ip(&format!("2001:db8::{i}")), t0).is_ok());
        }
        assert!(l.take(ip("2001:db8::ffff"), t0).is_err());
        assert!(l.take(ip("2001:db8:0:1::1"), t0).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let l = LoginRateLimit::default();
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 100) {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let _ = l.take(Some(IpAddr::V4(a)), t0);
        }
        assert!(l.buckets.lock().unwrap().len() <= MAX_CLIENTS + 1);
        // Once the early buckets refill they make room again.
        let later = t0 + Duration::from_secs(60);
        assert!(l.take(ip("192.168.0.1"), later).is_ok());
        assert!(l.buckets.lock().unwrap().len() <= MAX_CLIENTS + 1);
    }

    #[test]
    fn only_login_paths_are_limited() {
        assert!(limited("/login"));
        assert!(limited("/login/kite"));
        assert!(!limited("/loginx"));
        assert!(!limited("/kite/callback"));
        assert!(limited("/upstox/notify"));
        assert!(!limited("/"));
    }
}
