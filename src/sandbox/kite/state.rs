//! Everything the simulated Kite remembers, and the rules it enforces: password and TOTP
//! checks with 5-strikes lockout, single-use request tokens, one live access token per
//! api_key, token expiry. HTTP lives in `routes.rs`; this file is plain logic under one mutex
//! that is never held across an `.await`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::faults::{Fault, FaultQueue};
use super::SandboxOptions;
use crate::token::login::{unix_now, Totp};

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
    web_sessions: HashMap<String, String>,
    connect_flows: HashMap<String, ConnectFlow>,
    request_tokens: HashMap<String, RequestToken>,
    access_tokens: HashMap<String, AccessToken>,
    faults: FaultQueue,
    stats: SandboxStats,
}

impl Inner {
    /// One more failed attempt; the strike that reaches [`STRIKES`] blocks the account.
    fn strike(&mut self, user_id: &str, twofa: bool, error: ApiError) -> ApiError {
        let strikes = if twofa {
            &mut self.twofa_strikes
        } else {
            &mut self.password_strikes
        };
        let n = strikes.entry(user_id.to_string()).or_insert(0);
        *n += 1;
        if *n >= STRIKES {
            self.locked.insert(user_id.to_string());
            self.web_sessions.retain(|_, u| u != user_id);
            self.pending_logins.retain(|_, p| p.user_id != user_id);
            return ApiError::blocked();
        }
        error
    }

    fn purge(&mut self, now: Instant, request_token_ttl: Duration) {
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
}

fn random_id(len: usize) -> String {
    (0..len).map(|_| fastrand::alphanumeric()).collect()
}

impl Kite {
    pub fn new(opts: SandboxOptions, totp: Totp) -> Kite {
        Kite {
            opts,
            totp,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The lock, with expired entries already gone.
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.purge(Instant::now(), self.opts.request_token_ttl);
        g
    }

    fn known_user(&self, user_id: &str) -> bool {
        user_id == self.opts.user_id
    }

    /// `POST /api/login` → `data` of the success envelope.
    pub fn password_login(&self, user_id: &str, password: &str) -> Result<Value, ApiError> {
        let mut g = self.inner();
        let user_id = user_id.trim().to_ascii_uppercase();
        if g.locked.contains(&user_id) {
            g.stats.password_fail += 1;
            return Err(ApiError::blocked());
        }
        if !self.known_user(&user_id) {
            g.stats.password_fail += 1;
            return Err(ApiError::input(WRONG_PASSWORD));
        }
        if password != self.opts.password {
            g.stats.password_fail += 1;
            return Err(g.strike(&user_id, false, ApiError::input(WRONG_PASSWORD)));
        }
        g.stats.password_ok += 1;
        g.password_strikes.remove(&user_id);
        let request_id = random_id(40);
        g.pending_logins.insert(
            request_id.clone(),
            PendingLogin {
                user_id: user_id.clone(),
                created: Instant::now(),
            },
        );
        Ok(json!({
            "user_id": user_id,
            "request_id": request_id,
            "twofa_type": "totp",
            "twofa_types": ["totp"],
            "twofa_status": "active",
            "profile": {
                "user_name": self.opts.user_name,
                "user_shortname": short_name(&self.opts.user_name),
                "avatar_url": null,
            }
        }))
    }

    /// `POST /api/twofa` → the new web session's cookie value.
    pub fn twofa(
        &self,
        user_id: &str,
        request_id: &str,
        code: &str,
        twofa_type: &str,
    ) -> Result<String, ApiError> {
        let mut g = self.inner();
        let user_id = user_id.trim().to_ascii_uppercase();
        if g.locked.contains(&user_id) {
            g.stats.twofa_fail += 1;
            return Err(ApiError::blocked());
        }
        match g.pending_logins.get(request_id) {
            Some(p) if p.user_id == user_id => {}
            _ => {
                g.stats.twofa_fail += 1;
                return Err(ApiError::input(
                    "Your login request has expired or is invalid. Please log in again.",
                ));
            }
        }
        if twofa_type != "totp" {
            g.stats.twofa_fail += 1;
            return Err(ApiError::input("Invalid `twofa_type`."));
        }
        let now_step = Totp::step_of(unix_now());
        let matched = (now_step.saturating_sub(1)..=now_step + 1)
            .find(|s| self.totp.code_of_step(*s) == code.trim());
        let verdict = match matched {
            None => Err(WRONG_TOTP),
            Some(step) if g.used_steps.contains(&(user_id.clone(), step)) => Err(REPLAYED_TOTP),
            Some(step) => Ok(step),
        };
        let step = match verdict {
            Ok(step) => step,
            Err(message) => {
                g.stats.twofa_fail += 1;
                return Err(g.strike(&user_id, true, ApiError::input(message)));
            }
        };
        g.used_steps.insert((user_id.clone(), step));
        g.used_steps.retain(|(_, s)| *s + 2 >= now_step);
        g.pending_logins.remove(request_id);
        g.twofa_strikes.remove(&user_id);
        g.stats.twofa_ok += 1;
        let cookie = random_id(32);
        g.web_sessions.insert(cookie.clone(), user_id);
        Ok(cookie)
    }

    /// The user of a `kf_session` cookie, if it is a live web session.
    pub fn session_user(&self, cookie: Option<&str>) -> Option<String> {
        let g = self.inner();
        cookie.and_then(|c| g.web_sessions.get(c).cloned())
    }

    fn check_api_key(&self, api_key: &str) -> Result<(), ApiError> {
        if api_key == self.opts.api_key {
            Ok(())
        } else {
            Err(ApiError::input("Invalid `api_key`."))
        }
    }

    /// `GET /connect/login?api_key&v=3[&redirect_params]` → a new `sess_id`.
    pub fn start_connect(
        &self,
        api_key: &str,
        redirect_params: Option<&str>,
    ) -> Result<String, ApiError> {
        self.check_api_key(api_key)?;
        let redirect_params = redirect_params
            .map(|p| {
                url::form_urlencoded::parse(p.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let sess_id = random_id(32);
        self.inner().connect_flows.insert(
            sess_id.clone(),
            ConnectFlow {
                redirect_params,
                created: Instant::now(),
            },
        );
        Ok(sess_id)
    }

    pub fn connect_flow_exists(&self, api_key: &str, sess_id: &str) -> Result<(), ApiError> {
        self.check_api_key(api_key)?;
        if self.inner().connect_flows.contains_key(sess_id) {
            Ok(())
        } else {
            Err(ApiError::input(
                "This login link has expired. Open the app's login link again.",
            ))
        }
    }

    /// The last hop: mint a request token for `user_id` and return the app's redirect URL.
    pub fn finish_connect(
        &self,
        api_key: &str,
        sess_id: &str,
        user_id: &str,
    ) -> Result<String, ApiError> {
        self.connect_flow_exists(api_key, sess_id)?;
        let mut g = self.inner();
        let flow = g
            .connect_flows
            .remove(sess_id)
            .ok_or_else(|| ApiError::input("This login link has expired."))?;
        let token = random_id(32);
        g.request_tokens.insert(
            token.clone(),
            RequestToken {
                user_id: user_id.to_string(),
                created: Instant::now(),
            },
        );
        g.stats.request_tokens_issued += 1;
        let mut url = url::Url::parse(&self.opts.redirect_url)
            .map_err(|_| ApiError::input("The app's redirect URL is invalid."))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("request_token", &token);
            q.append_pair("action", "login");
            q.append_pair("status", "success");
            for (k, v) in &flow.redirect_params {
                q.append_pair(k, v);
            }
        }
        Ok(url.into())
    }

    /// `POST /session/token` → `data` of the generate_session answer. Kills every earlier
    /// access token of the api_key.
    pub fn exchange(
        &self,
        api_key: &str,
        request_token: &str,
        checksum: &str,
    ) -> Result<Value, ApiError> {
        let mut g = self.inner();
        let result = self.exchange_locked(&mut g, api_key, request_token, checksum);
        match &result {
            Ok(_) => g.stats.sessions_created += 1,
            Err(_) => g.stats.exchange_fail += 1,
        }
        result
    }

    fn exchange_locked(
        &self,
        g: &mut Inner,
        api_key: &str,
        request_token: &str,
        checksum: &str,
    ) -> Result<Value, ApiError> {
        for (name, value) in [
            ("api_key", api_key),
            ("request_token", request_token),
            ("checksum", checksum),
        ] {
            if value.is_empty() {
                return Err(ApiError::input(format!("Missing `{name}`.")));
            }
        }
        self.check_api_key(api_key)?;
        // Single use: any attempt spends the request token, even one with a bad checksum.
        let rt = g
            .request_tokens
            .remove(request_token)
            .ok_or_else(|| ApiError::token(STALE_REQUEST_TOKEN))?;
        let want = crate::token::kite::checksum(api_key, request_token, &self.opts.api_secret);
        if !checksum.eq_ignore_ascii_case(&want) {
            return Err(ApiError::token("Invalid `checksum`."));
        }
        Ok(self.create_session(g, api_key, &rt.user_id))
    }

    /// A new access token for `user_id`; every earlier token of `api_key` dies (one valid
    /// token per api_key).
    fn create_session(&self, g: &mut Inner, api_key: &str, user_id: &str) -> Value {
        g.access_tokens.retain(|_, t| t.api_key != api_key);
        let access_token = random_id(32);
        g.access_tokens.insert(
            access_token.clone(),
            AccessToken {
                api_key: api_key.to_string(),
                user_id: user_id.to_string(),
                expires: Instant::now() + self.opts.token_ttl,
            },
        );
        let mut data = self.profile_json(user_id);
        let extra = json!({
            "api_key": api_key,
            "access_token": access_token,
            "public_token": random_id(32),
            "enctoken": random_id(48),
            "refresh_token": "",
            "silo": "",
            "login_time": ist_now(),
        });
        if let (Some(d), Value::Object(e)) = (data.as_object_mut(), extra) {
            d.extend(e);
        }
        data
    }

    /// A session as if the user had just logged in and the app exchanged the request token
    /// (counted in `sessions_created`, kills earlier tokens). For tests that need a valid
    /// token without a login, e.g. several within one TOTP step. Returns the access token.
    pub fn issue_session(&self) -> String {
        let mut g = self.inner();
        let data = self.create_session(&mut g, &self.opts.api_key, &self.opts.user_id);
        g.stats.sessions_created += 1;
        data["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `GET /user/profile` with its two headers.
    pub fn profile(
        &self,
        version: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut g = self.inner();
        let result = (|| {
            if version.map(str::trim) != Some("3") {
                return Err(ApiError::input(
                    "Missing or invalid `X-Kite-Version` header; send `X-Kite-Version: 3`.",
                ));
            }
            let user = self.authorized(&g, authorization)?;
            Ok(self.profile_json(&user))
        })();
        match &result {
            Ok(_) => g.stats.profile_ok += 1,
            Err(_) => g.stats.profile_fail += 1,
        }
        result
    }

    fn authorized(&self, g: &Inner, authorization: Option<&str>) -> Result<String, ApiError> {
        let (key, token) = authorization
            .and_then(|h| h.trim().strip_prefix("token "))
            .and_then(|kt| kt.split_once(':'))
            .ok_or_else(|| ApiError::token(BAD_TOKEN))?;
        match g.access_tokens.get(token.trim()) {
            Some(t) if t.api_key == key.trim() => Ok(t.user_id.clone()),
            _ => Err(ApiError::token(BAD_TOKEN)),
        }
    }

    /// `DELETE /session/token?api_key&access_token`.
    pub fn logout(&self, api_key: &str, access_token: &str) -> Result<(), ApiError> {
        let mut g = self.inner();
        match g.access_tokens.get(access_token) {
            Some(t) if t.api_key == api_key => {
                g.access_tokens.remove(access_token);
                g.stats.logouts += 1;
                Ok(())
            }
            _ => Err(ApiError::token(BAD_TOKEN)),
        }
    }

    fn profile_json(&self, user_id: &str) -> Value {
        json!({
            "user_id": user_id,
            "user_type": "individual",
            "email": format!("{}@sandbox.invalid", user_id.to_ascii_lowercase()),
            "user_name": self.opts.user_name,
            "user_shortname": short_name(&self.opts.user_name),
            "broker": "ZERODHA",
            "exchanges": ["NSE", "NFO", "BSE", "BFO", "CDS", "BCD", "MCX", "MF"],
            "products": ["CNC", "NRML", "MIS", "BO", "CO"],
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
            "avatar_url": null,
            "meta": { "demat_consent": "physical" },
        })
    }

    /// `POST /_sandbox/expire`: every access token dies now (the morning expiry, a master
    /// logout). Web sessions and request tokens are untouched.
    pub fn expire_all(&self) -> usize {
        let mut g = self.inner();
        let n = g.access_tokens.len();
        g.access_tokens.clear();
        n
    }

    /// `POST /_sandbox/reset`: back to a fresh start (locks, strikes, sessions, tokens,
    /// faults and counters).
    pub fn reset(&self) {
        *self.inner() = Inner::default();
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
        s
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
