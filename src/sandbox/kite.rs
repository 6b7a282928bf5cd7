//! `warden sandbox kite`: a local Kite Connect simulator (SPEC §8), one listener serving both
//! the login host and the API host paths, so `login_base` = `api_base` = `http://ADDR`.
//!
//! In-process use (tests): [`spawn`] a [`SandboxOptions`] on `127.0.0.1:0` and talk to
//! [`SandboxHandle::base_url`]; the handle also offers the `/_sandbox/` controls directly.
//! See docs/sandbox.md for endpoints, lockout and fault behaviour.

mod faults;
mod page;
mod routes;
mod server;
mod state;
mod ticker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use faults::{Fault, FaultKind};
pub use state::{SandboxStats, BLOCKED_MESSAGE, STRIKES};

/// Kept reachable here, where it first lived.
pub use super::SandboxError;
use super::{parse_duration, say, termination};
use crate::config::{KiteConfig, LoginMode, Secret};
use crate::token::login::{InvalidTotpSecret, Totp};

// Fixed demo credentials: fake sandbox values, printed at start on purpose so the shipped
// supervisor.toml (and a person at a browser) can use them.
pub const DEFAULT_API_KEY: &str = "kitefront";
pub const DEFAULT_API_SECRET: &str = "kitefront-sandbox-secret";
pub const DEFAULT_USER_ID: &str = "AB1234";
pub const DEFAULT_USER_NAME: &str = "Sandbox Trader";
pub const DEFAULT_PASSWORD: &str = "sandbox-password";
pub const DEFAULT_TOTP_SECRET: &str = "WARDENSANDBOXTOTPSECRETKITEAB234";
pub const DEFAULT_REDIRECT_URL: &str = "http://127.0.0.1:9180/kite/callback";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9190";

/// Command-line options of `warden sandbox kite`.
#[derive(Debug, Clone, clap::Args)]
pub struct KiteArgs {
    /// Address to listen on (port 0 picks a free port; the real one is printed)
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Lifetime of an access token from its creation
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub token_ttl: Duration,
    /// Lifetime of a request token (single-use anyway)
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub request_token_ttl: Duration,
    /// The app's api_key
    #[arg(long, default_value = DEFAULT_API_KEY)]
    pub api_key: String,
    /// The app's api_secret (checksum verification)
    #[arg(long, default_value = DEFAULT_API_SECRET)]
    pub api_secret: String,
    /// The one user who can log in
    #[arg(long, default_value = DEFAULT_USER_ID)]
    pub user_id: String,
    /// That user's password
    #[arg(long, default_value = DEFAULT_PASSWORD)]
    pub password: String,
    /// That user's TOTP secret (base32)
    #[arg(long, default_value = DEFAULT_TOTP_SECRET)]
    pub totp_secret: String,
    /// The app's registered redirect URL (where /connect/login finally sends the browser)
    #[arg(long, default_value = DEFAULT_REDIRECT_URL)]
    pub redirect_url: String,
    /// Run the broker's clock this far ahead of the real one ("60s"; "-60s" for behind): its
    /// Date header and its TOTP check use it (also `POST /_sandbox/clock`)
    #[arg(long, default_value = "0s", value_parser = parse_signed_secs, allow_hyphen_values = true)]
    pub clock_skew: i64,
    /// How often the ticker WebSocket sends ticks (and the prices move)
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub tick_interval: Duration,
}

/// `"60s"`, `"-1m30s"` → seconds.
fn parse_signed_secs(s: &str) -> Result<i64, String> {
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, s),
    };
    Ok(sign * parse_duration(rest)?.as_secs() as i64)
}

/// Everything a sandbox needs. `Default` uses the demo credentials on `127.0.0.1:0`.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub listen: SocketAddr,
    pub api_key: String,
    pub api_secret: String,
    pub user_id: String,
    pub user_name: String,
    pub password: String,
    pub totp_secret: String,
    pub redirect_url: String,
    pub token_ttl: Duration,
    pub request_token_ttl: Duration,
    /// Seconds the broker's clock runs ahead of the real one.
    pub clock_skew_secs: i64,
    /// Ticker: one binary message of ticks per interval; prices take one step per interval.
    pub tick_interval: Duration,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: DEFAULT_API_KEY.into(),
            api_secret: DEFAULT_API_SECRET.into(),
            user_id: DEFAULT_USER_ID.into(),
            user_name: DEFAULT_USER_NAME.into(),
            password: DEFAULT_PASSWORD.into(),
            totp_secret: DEFAULT_TOTP_SECRET.into(),
            redirect_url: DEFAULT_REDIRECT_URL.into(),
            token_ttl: Duration::from_secs(24 * 3600),
            request_token_ttl: Duration::from_secs(300),
            clock_skew_secs: 0,
            tick_interval: Duration::from_secs(1),
        }
    }
}

impl From<KiteArgs> for SandboxOptions {
    fn from(a: KiteArgs) -> Self {
        SandboxOptions {
            listen: a.listen,
            api_key: a.api_key,
            api_secret: a.api_secret,
            user_id: a.user_id,
            password: a.password,
            totp_secret: a.totp_secret,
            redirect_url: a.redirect_url,
            token_ttl: a.token_ttl,
            request_token_ttl: a.request_token_ttl,
            clock_skew_secs: a.clock_skew,
            tick_interval: a.tick_interval,
            ..SandboxOptions::default()
        }
    }
}

/// A running sandbox. Dropping it stops accepting connections.
pub struct SandboxHandle {
    addr: SocketAddr,
    kite: Arc<state::Kite>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        // Ticker WebSockets run outside the accept loop's tasks: killing the tokens closes
        // them too, so a dropped sandbox is a broker gone away on every connection.
        self.kite.expire_all();
        self.task.abort();
    }
}

impl SandboxHandle {
    /// The bound address (the real port when `listen` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR`: the ticker's root, `KiteTicker(..., root=ws_url())`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// `http://ADDR`: both `login_base` and `api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn options(&self) -> &SandboxOptions {
        &self.kite.opts
    }

    /// A `[token.kite]` config pointing at this sandbox with its credentials, TOTP login.
    pub fn kite_config(&self) -> KiteConfig {
        let o = &self.kite.opts;
        KiteConfig {
            api_key: o.api_key.clone(),
            api_secret: Secret::new(o.api_secret.clone()),
            user_id: o.user_id.clone(),
            login: LoginMode::Totp,
            password: Secret::new(o.password.clone()),
            totp_secret: Secret::new(o.totp_secret.clone()),
            login_base: self.base_url(),
            api_base: self.base_url(),
        }
    }

    /// The user's TOTP code right now.
    pub fn current_totp(&self) -> String {
        current_totp(&self.kite.opts.totp_secret).unwrap_or_default()
    }

    /// Same as `GET /_sandbox/stats`.
    pub fn stats(&self) -> SandboxStats {
        self.kite.stats()
    }

    /// In-process only: a valid access token as if the user had logged in and the app had
    /// exchanged the request token (no login, no TOTP step spent). Like any new session it
    /// kills every earlier token of the api_key.
    pub fn issue_session(&self) -> Secret {
        Secret::new(self.kite.issue_session())
    }

    /// Same as `POST /_sandbox/expire`; returns how many tokens died.
    pub fn expire_all(&self) -> usize {
        self.kite.expire_all()
    }

    /// Same as `POST /_sandbox/reset`.
    pub fn reset(&self) {
        self.kite.reset()
    }

    /// Same as `POST /_sandbox/fault`.
    pub fn inject(&self, fault: Fault) {
        self.kite.add_fault(fault)
    }

    /// Same as `POST /_sandbox/clock`: the broker's clock runs `secs` ahead of the real one.
    pub fn set_clock_skew(&self, secs: i64) {
        self.kite.set_clock_skew(secs)
    }

    /// Same as `POST /_sandbox/logout_web`: every web session ends.
    pub fn end_web_sessions(&self) -> usize {
        self.kite.end_web_sessions()
    }
}

/// The current 6-digit code for a base32 TOTP secret (RFC 6238, SHA-1, 30 s).
pub fn current_totp(secret_base32: &str) -> Result<String, InvalidTotpSecret> {
    Ok(Totp::from_base32(secret_base32)?.current())
}

/// The code of the step after the current one: the sandbox (like most TOTP servers) accepts
/// ±1 step, so tests can log in twice within 30 s without replaying a code.
pub fn next_totp(secret_base32: &str) -> Result<String, InvalidTotpSecret> {
    let t = Totp::from_base32(secret_base32)?;
    Ok(t.code_at(crate::token::login::unix_now() + Totp::STEP_SECS))
}

/// Bind and serve in the background of the current tokio runtime.
pub async fn spawn(mut opts: SandboxOptions) -> Result<SandboxHandle, SandboxError> {
    // Kite user ids are upper case; logins are matched that way.
    opts.user_id = opts.user_id.trim().to_ascii_uppercase();
    let totp = Totp::from_base32(&opts.totp_secret)
        .map_err(|e| SandboxError::Config(format!("--totp-secret: {e}")))?;
    url::Url::parse(&opts.redirect_url)
        .map_err(|e| SandboxError::Config(format!("--redirect-url: {e}")))?;
    let (listener, addr) = crate::sandbox::common::server::bind(opts.listen).await?;
    let kite = Arc::new(state::Kite::new(opts, totp));
    let task = tokio::spawn(server::serve(listener, kite.clone()));
    Ok(SandboxHandle { addr, kite, task })
}

/// `warden sandbox kite`: serve until SIGTERM/SIGINT, then exit 0.
pub async fn run(args: KiteArgs) -> Result<(), SandboxError> {
    let stop = termination()?;
    let handle = spawn(args.into()).await?;
    let o = handle.options();
    say(&[
        format!("listening on {}", handle.base_url()),
        format!("ticker: ws://{}/?api_key=K&access_token=T", handle.addr()),
        format!("user_id: {}", o.user_id),
        format!("password: {}", o.password),
        format!("totp_secret: {}", o.totp_secret),
        format!("api_key: {}", o.api_key),
        format!("api_secret: {}", o.api_secret),
        format!("redirect_url: {}", o.redirect_url),
        format!(
            "token_ttl: {}",
            humantime::format_duration(o.token_ttl)
        ),
        "(fake sandbox credentials; controls: POST /_sandbox/expire|fault|reset|clock|logout_web, GET /_sandbox/stats)"
            .to_string(),
    ]);
    stop.await;
    Ok(())
}
