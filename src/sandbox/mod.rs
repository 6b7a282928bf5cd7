//! `warden sandbox …`: local stand-ins for Kite Connect and a trading backend (SPEC §8).
//!
//! - [`kite`]: a faithful local Kite Connect (login, 2FA, redirects, session exchange,
//!   profile, logout, lockout, expiry) with test controls under `/_sandbox/`.
//! - [`backend`]: the demo child that reads its token from a dotenv file and reports whether
//!   Kite accepts it on `GET /api/system/health`.
//! - [`angelone`], [`dhan`], [`upstox`], [`fyers`]: the other brokers (SPEC §9.3), thin
//!   modules over the shared [`common`] toolkit.

pub mod angelone;
pub mod backend;
pub mod common;
pub mod dhan;
pub mod fyers;
pub mod kite;
pub mod upstox;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a sandbox could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid option: {0}")]
    Config(String),
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// clap parser for `"24h"`, `"500ms"`, `"1m30s"`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::duration::parse(s)
}

/// Print lines to stdout and flush at once: a parent reading our stdout through a pipe (a
/// test, a supervisor) must see them now, not when a buffer fills.
pub(crate) fn say(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed by the call, before the future
/// is first polled, so a signal that arrives right after start-up is not lost.
pub(crate) fn termination(
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, SandboxError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(SandboxError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SandboxError::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
