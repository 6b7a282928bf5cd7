//! Everything the simulated Kite remembers, and the rules it enforces: password and TOTP
//! checks with 5-strikes lockout, single-use request tokens, one live access token per
//! api_key, token expiry. HTTP lives in `routes.rs`; this is plain logic under one mutex that
//! is never held across an `.await`. The data and the controls are here; `login.rs` has the
//! credential checks, `session.rs` the redirects and tokens.

mod feed;
mod login;
mod session;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::faults::Fault;
use super::ticker::market::Market;
use super::SandboxOptions;
use crate::sandbox::common::faults::FaultQueue;
use crate::token::login::Totp;

/// Failed passwords, or failed 2FA codes, that block an account (Zerodha's rule).
pub const STRIKES: u32 = 5;
pub const BLOCKED_MESSAGE: &str =
    "Your account has been blocked after too many failed login attempts. Reset your password to unblock it.";
const WRONG_PASSWORD: &str = "Invalid username or password.";
const WRONG_TOTP: &str = "Invalid TOTP.";
const REPLAYED_TOTP: &str = "This TOTP has already been used. Wait for the next one.";
const BAD_TOKEN: &str = "Incorrect `api_key` or `access_token`.";
const STALE_REQUEST_TOKEN: &str = "Token is invalid or has expired.";
/// A login request (password accepted, 2FA pending) lives this long.
const LOGIN_REQUEST_TTL: Duration = Duration::from_secs(300);
/// A `/connect/login` flow (sess_id) lives this long.
const CONNECT_FLOW_TTL: Duration = Duration::from_secs(600);

/// A Kite error envelope to send: `{"status":"error","message","data":null,"error_type"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn input(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            error_type: "InputException",
            message: message.into(),
        }
    }
    fn token(message: &str) -> ApiError {
        ApiError {
            status: 403,
            error_type: "TokenException",
            message: message.into(),
        }
    }
    fn blocked() -> ApiError {
        ApiError {
            status: 403,
            error_type: "UserException",
            message: BLOCKED_MESSAGE.into(),
        }
    }
}

/// Counters of `GET /_sandbox/stats`. Counts and user ids only: never a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    pub password_ok: u64,
    pub password_fail: u64,
    pub twofa_ok: u64,
    pub twofa_fail: u64,
    pub request_tokens_issued: u64,
    pub sessions_created: u64,
    pub exchange_fail: u64,
    pub profile_ok: u64,
    pub profile_fail: u64,
    pub logouts: u64,
    pub faults_served: u64,
    pub pending_faults: u32,
    pub locked_users: Vec<String>,
    pub live_tokens: usize,
    /// 2FA codes refused because their step was already used ("already used").
    #[serde(default)]
    pub twofa_replayed: u64,
    /// `/connect/login` answered with a request token for a web session that had already
    /// been through the connect flow once: a re-login without credentials.
    #[serde(default)]
    pub session_resumes: u64,
    #[serde(default)]
    pub live_web_sessions: usize,
    /// The sandbox's clock minus the real one (`--clock-skew`, `POST /_sandbox/clock`).
    #[serde(default)]
    pub clock_skew_secs: i64,
    /// Ticker WebSockets open right now.
    #[serde(default)]
    pub ticker_open: u64,
    /// Ticker upgrades refused with 403 (dead or foreign token).
    #[serde(default)]
    pub ticker_refused: u64,
}

/// A logged-in browser (the cookie `/api/twofa` sets).
struct WebSession {
    user_id: String,
    created: Instant,
    /// How many connect flows it finished: the first belongs to its own login.
    connects: u32,
}

struct PendingLogin {
    user_id: String,
    created: Instant,
}

struct ConnectFlow {
    redirect_params: Vec<(String, String)>,
    created: Instant,
}

struct RequestToken {
    user_id: String,
    created: Instant,
}

struct AccessToken {
    api_key: String,
    user_id: String,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    pending_logins: HashMap<String, PendingLogin>,
    password_strikes: HashMap<String, u32>,
    twofa_strikes: HashMap<String, u32>,
    locked: BTreeSet<String>,
    /// (user, TOTP step) already accepted: RFC 6238 §5.2 forbids accepting a code twice.
    used_steps: HashSet<(String, u64)>,
    /// `kf_session` cookie → user_id.
    web_sessions: HashMap<String, WebSession>,
    connect_flows: HashMap<String, ConnectFlow>,
    request_tokens: HashMap<String, RequestToken>,
    access_tokens: HashMap<String, AccessToken>,
    faults: FaultQueue,
    stats: SandboxStats,
}

impl Inner {
    fn purge(&mut self, now: Instant, request_token_ttl: Duration, session_ttl: Duration) {
        // Kite's web sessions end with the day's sessions, like the access tokens.
        self.web_sessions
            .retain(|_, s| now.duration_since(s.created) < session_ttl);
        self.pending_logins
            .retain(|_, p| now.duration_since(p.created) < LOGIN_REQUEST_TTL);
        self.connect_flows
            .retain(|_, f| now.duration_since(f.created) < CONNECT_FLOW_TTL);
        self.request_tokens
            .retain(|_, r| now.duration_since(r.created) < request_token_ttl);
        self.access_tokens.retain(|_, t| now < t.expires);
    }
}

/// The simulated broker: one app (api_key) and one user.
pub struct Kite {
    pub opts: SandboxOptions,
    totp: Totp,
    inner: Mutex<Inner>,
    /// Seconds this broker's clock is ahead of the real one.
    skew: AtomicI64,
    /// Bumped whenever access tokens die before their TTL (a new session, logout, expire,
    /// reset): open ticker connections re-check their token on each bump.
    token_deaths: tokio::sync::watch::Sender<u64>,
    /// The ticker's prices, shared by every connection.
    pub market: Mutex<Market>,
}

fn random_id(len: usize) -> String {
    (0..len).map(|_| fastrand::alphanumeric()).collect()
}

impl Kite {
    pub fn new(opts: SandboxOptions, totp: Totp) -> Kite {
        Kite {
            skew: AtomicI64::new(opts.clock_skew_secs),
            market: Mutex::new(Market::new(opts.tick_interval)),
            opts,
            totp,
            inner: Mutex::new(Inner::default()),
            token_deaths: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The lock, with expired entries already gone.
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.purge(
            Instant::now(),
            self.opts.request_token_ttl,
            self.opts.token_ttl,
        );
        g
    }

    /// logout). Web sessions and request tokens are untouched.
    pub fn expire_all(&self) -> usize {
        let mut g = self.inner();
        let n = g.access_tokens.len();
        g.access_tokens.clear();
        drop(g);
        self.tokens_died();
        n
    }

    /// `POST /_sandbox/reset`: back to a fresh start (locks, strikes, sessions, tokens,
    /// faults and counters).
    pub fn reset(&self) {
        let ticker_open = self.inner().stats.ticker_open;
        *self.inner() = Inner::default();
        // Open connections are not undone by a reset; they close as their tokens die.
        self.inner().stats.ticker_open = ticker_open;
        self.tokens_died();
    }

    fn tokens_died(&self) {
        self.token_deaths.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn add_fault(&self, fault: Fault) {
        self.inner().faults.push(fault);
    }

    /// The fault that applies to a request on `path`, if any (counted as served).
    pub fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut g = self.inner();
        let f = g.faults.take(path);
        if f.is_some() {
            g.stats.faults_served += 1;
        }
        f
    }

    pub fn stats(&self) -> SandboxStats {
        let g = self.inner();
        let mut s = g.stats.clone();
        s.pending_faults = g.faults.pending();
        s.locked_users = g.locked.iter().cloned().collect();
        s.live_tokens = g.access_tokens.len();
        s.live_web_sessions = g.web_sessions.len();
        s.clock_skew_secs = self.clock_skew();
        s
    }

    /// Seconds the sandbox's clock (its `Date` header, its TOTP check) is ahead of the real one.
    pub fn clock_skew(&self) -> i64 {
        self.skew.load(Ordering::Relaxed)
    }

    pub fn set_clock_skew(&self, secs: i64) {
        self.skew.store(secs, Ordering::Relaxed);
    }

    /// Unix seconds by the sandbox's (possibly skewed) clock.
    pub fn unix_now(&self) -> u64 {
        (crate::token::login::unix_now() as i64 + self.clock_skew()).max(0) as u64
    }

    /// End every web session (a logout everywhere): the next login needs credentials.
    pub fn end_web_sessions(&self) -> usize {
        let mut g = self.inner();
        let n = g.web_sessions.len();
        g.web_sessions.clear();
        n
    }
}

fn short_name(name: &str) -> String {
    name.split_whitespace().next().unwrap_or(name).to_string()
}

/// Kite's `login_time`: IST wall clock, no zone.
fn ist_now() -> String {
    let now = jiff::Timestamp::now();
    match now.in_tz("Asia/Kolkata") {
        Ok(z) => z.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => now.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    }
}
