//! systemd's notify protocol (`Type=notify`): tell the service manager when warden is ready,
//! what it is doing, that it is still alive, and that it is stopping.
//!
//! The protocol is one datagram per message, `KEY=VALUE` lines, sent to the unix socket named
//! by `$NOTIFY_SOCKET` (a path, or an abstract socket when it starts with `@`). Without that
//! variable every call here does nothing, so the same binary runs unchanged under Docker, a
//! shell, or systemd.
//!
//! What warden sends:
//! - `READY=1` once every program is up (spawned at least once, or settled in `backoff`,
//!   `exited` or `fatal`), or [`READY_GRACE`] after start at the latest: a stack that waits for
//!   a manual Kite login must not make systemd kill warden for a slow start.
//! - `STATUS=…` whenever the one-line summary changes, e.g.
//!   `3/3 programs running; token valid until 06:00 IST` (shown by `systemctl status`).
//! - `WATCHDOG=1` every `WatchdogSec/2` when `$WATCHDOG_USEC` is set and `$WATCHDOG_PID` is
//!   unset or ours. The pings come from warden's runtime: a hung runtime stops them and systemd
//!   restarts warden.
//! - `STOPPING=1` when a graceful stop begins.
//!
//! Wiring: [`init`] once at start (before any thread: it removes the variables from the
//! environment, so programs do not inherit a socket that is not theirs), [`spawn`] once the
//! supervisor loop is about to run, [`stopping`] on SIGTERM/SIGINT.

use std::ffi::{OsStr, OsString};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jiff::tz::TimeZone;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::model::{ProgramsView, TokenStatus};

/// `READY=1` is sent at the latest this long after [`spawn`], whatever the programs do.
pub const READY_GRACE: Duration = Duration::from_secs(60);

/// The environment variables systemd sets for the notify protocol.
const ENV_SOCKET: &str = "NOTIFY_SOCKET";
const ENV_WATCHDOG_USEC: &str = "WATCHDOG_USEC";
const ENV_WATCHDOG_PID: &str = "WATCHDOG_PID";

#[derive(Debug, thiserror::Error)]
pub enum SdNotifyError {
    #[error("cannot send to the notify socket {socket}: {source}")]
    Send {
        socket: String,
        source: std::io::Error,
    },
}

/// Where the service manager listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    /// Linux abstract namespace; the name without the leading `@`.
    Abstract(Vec<u8>),
}

impl Target {
    fn parse(value: &OsStr) -> Option<Target> {
        let bytes = value.as_bytes();
        match bytes.first() {
            Some(b'/') => Some(Target::Path(PathBuf::from(value))),
            Some(b'@') if bytes.len() > 1 => Some(Target::Abstract(bytes[1..].to_vec())),
            // Empty, relative, or another transport (vsock:…): not something we speak.
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Path(p) => p.display().to_string(),
            Target::Abstract(name) => format!("@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// A handle on the notify socket; a no-op when there is none. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SdNotify {
    target: Option<Target>,
    watchdog: Option<Duration>,
    /// The first failed send is logged as a warning, later ones at debug level.
    warned: Arc<AtomicBool>,
    /// Set by [`SdNotify::stopping`]: no more `READY=1`, and the status says so.
    stopping: Arc<AtomicBool>,
}

impl SdNotify {
    /// From the values of `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`, for the
    /// process `my_pid`. Values that make no sense disable the part they configure.
    pub fn from_values(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        my_pid: u32,
    ) -> SdNotify {
        let target = notify_socket.and_then(Target::parse);
        let for_us = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>().ok() == Some(my_pid));
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us && target.is_some())
            .map(Duration::from_micros);
        SdNotify {
            target,
            watchdog,
            warned: Arc::default(),
            stopping: Arc::default(),
        }
    }

    /// From this process's environment (the variables are left in place).
    pub fn from_env() -> SdNotify {
        let socket: Option<OsString> = std::env::var_os(ENV_SOCKET);
        let usec = std::env::var(ENV_WATCHDOG_USEC).ok();
        let pid = std::env::var(ENV_WATCHDOG_PID).ok();
        SdNotify::from_values(
            socket.as_deref(),
            usec.as_deref(),
            pid.as_deref(),
            std::process::id(),
        )
    }

    /// True when there is a socket to talk to.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `WatchdogSec` as systemd gave it; `None` when no watchdog is armed for us.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    /// How often to send `WATCHDOG=1`: half the timeout, as systemd recommends.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog.map(|t| t / 2)
    }

    /// Send one message (`KEY=VALUE` lines). Without a socket, does nothing and succeeds.
    /// Never blocks: a full socket queue drops the message.
    pub fn send(&self, message: &str) -> Result<(), SdNotifyError> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let fail = |source| SdNotifyError::Send {
            socket: target.describe(),
            source,
        };
        let sock = UnixDatagram::unbound().map_err(fail)?;
        sock.set_nonblocking(true).map_err(fail)?;
        match target {
            Target::Path(p) => sock.send_to(message.as_bytes(), p),
            Target::Abstract(name) => SocketAddr::from_abstract_name(name)
                .and_then(|addr| sock.send_to_addr(message.as_bytes(), &addr)),
        }
        .map(drop)
        .map_err(fail)
    }

    /// `STOPPING=1`, and mark this handle (and its clones) as stopping.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.send_logged("STOPPING=1\nSTATUS=stopping: programs are being stopped");
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Send, and log a failure instead of returning it (for fire-and-forget callers).
    pub fn send_logged(&self, message: &str) {
        if let Err(e) = self.send(message) {
            if self.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!("{e}");
            } else {
                tracing::warn!("{e}; systemd will not see warden's state");
            }
        }
    }
}

static GLOBAL: OnceLock<SdNotify> = OnceLock::new();

/// Capture the notify settings and remove them from the environment so programs don't inherit
/// them (a child that speaks the protocol would otherwise talk for warden). Call once, early,
/// before any other thread exists; later calls return the same handle.
pub fn init() -> &'static SdNotify {
    GLOBAL.get_or_init(|| {
        let sd = SdNotify::from_env();
        for var in [ENV_SOCKET, ENV_WATCHDOG_USEC, ENV_WATCHDOG_PID] {
            std::env::remove_var(var);
        }
        sd
    })
}

/// The process-wide handle: what [`init`] captured, or (without `init`) read from the
/// environment on first use.
pub fn global() -> &'static SdNotify {
    GLOBAL.get_or_init(SdNotify::from_env)
}

/// `STOPPING=1`: a graceful stop has begun. Call when SIGTERM/SIGINT arrives.
pub fn stopping() {
    global().stopping();
}

/// What the status line needs besides the live views.
#[derive(Debug, Clone)]
pub struct StatusContext {
    /// Expiry times are shown in this zone (`[token] timezone`).
    pub tz: TimeZone,
    /// Where a person logs in when the token needs them (`{public_url}/login`).
    pub login_url: String,
    /// `READY=1` at the latest this long after the reporter starts ([`READY_GRACE`]).
    pub ready_grace: Duration,
}

impl StatusContext {
    pub fn from_config(cfg: &Config) -> StatusContext {
        StatusContext {
            tz: cfg.token.as_ref().map_or(TimeZone::UTC, |t| t.time_zone()),
            login_url: format!("{}/login", cfg.http.public_url()),
            ready_grace: READY_GRACE,
        }
    }
}

/// Start the reporter on the process-wide handle: `READY=1`, `STATUS=…` on every change, and
/// `WATCHDOG=1` pings. Does nothing without `$NOTIFY_SOCKET`. Needs a tokio runtime.
pub fn spawn(
    programs: watch::Receiver<ProgramsView>,
    token: Option<watch::Receiver<TokenStatus>>,
    cfg: &Config,
) {
    let sd = global().clone();
    if sd.is_enabled() {
        tokio::spawn(report(sd, programs, token, StatusContext::from_config(cfg)));
    }
}

/// The reporter loop behind [`spawn`], usable with any handle. Ends when the programs view
/// is dropped (the supervisor is gone).
pub async fn report(
    sd: SdNotify,
    mut programs: watch::Receiver<ProgramsView>,
    mut token: Option<watch::Receiver<TokenStatus>>,
    ctx: StatusContext,
) {
    let grace_over = Instant::now() + ctx.ready_grace;
    let mut ready_sent = false;
    let mut last_status = String::new();
    let mut watchdog = sd.watchdog_period().map(|p| {
        let mut i = tokio::time::interval(p);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    loop {
        let stopping = sd.is_stopping();
        let mut message = String::new();
        {
            let view = programs.borrow_and_update();
            let tok = token.as_mut().map(|t| t.borrow_and_update().clone());
            if !ready_sent && !stopping && (all_up(&view) || Instant::now() >= grace_over) {
                message.push_str("READY=1\n");
                ready_sent = true;
            }
            let mut line = status_line(&view, tok.as_ref(), &ctx);
            if stopping {
                line = format!("stopping: {line}");
            }
            if line != last_status {
                message.push_str(&format!("STATUS={line}\n"));
                last_status = line;
            }
        }
        if !message.is_empty() {
            sd.send_logged(&message);
        }
        tokio::select! {
            changed = programs.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            changed = async { token.as_mut()?.changed().await.ok() }, if token.is_some() => {
                if changed.is_none() {
                    token = None; // the keeper is gone; keep reporting programs
                }
            }
            _ = async { watchdog.as_mut()?.tick().await; Some(()) }, if watchdog.is_some() => {
                sd.send_logged("WATCHDOG=1");
            }
            _ = tokio::time::sleep_until(grace_over), if !ready_sent => {}
        }
    }
}

/// Every program is up: spawned at least once (it has a pid), or settled where only time or
/// a person moves it on (`backoff`, `exited`, `fatal`). Health is not required: a backend
/// that answers 403 while the token waits for a manual login is up.
pub fn all_up(programs: &ProgramsView) -> bool {
    crate::model::readiness::started(programs)
}

/// The one-line summary for `STATUS=` (see [`crate::present::summary_line`]).
pub fn status_line(
    programs: &ProgramsView,
    token: Option<&TokenStatus>,
    ctx: &StatusContext,
) -> String {
    crate::present::summary_line(programs, token, &ctx.tz, &ctx.login_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_forms() {
        assert_eq!(
            Target::parse(OsStr::new("/run/systemd/notify")),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            Target::parse(OsStr::new("@sd/x")),
            Some(Target::Abstract(b"sd/x".to_vec()))
        );
        for bad in ["", "@", "relative", "vsock:2:999"] {
            assert_eq!(Target::parse(OsStr::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn watchdog_needs_socket_positive_usec_and_our_pid() {
        let s = Some(OsStr::new("/tmp/x"));
        let on = SdNotify::from_values(s, Some("3000000"), None, 7);
        assert_eq!(on.watchdog_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(on.watchdog_period(), Some(Duration::from_millis(1500)));
        let ours = SdNotify::from_values(s, Some("3000000"), Some("7"), 7);
        assert!(ours.watchdog_period().is_some());
        for (sock, usec, pid) in [
            (s, Some("3000000"), Some("8")),
            (s, Some("0"), None),
            (s, Some("soon"), None),
            (None, Some("3000000"), None),
        ] {
            let sd = SdNotify::from_values(sock, usec, pid, 7);
            assert_eq!(sd.watchdog_period(), None, "{sock:?} {usec:?} {pid:?}");
        }
    }
}
