//! The toolkit the broker sandboxes (Angel One, Dhan, Upstox, Fyers) are built on, so each
//! broker module only says what differs: its paths, field names, envelopes and rules. The
//! Kite sandbox keeps its own state and controls but uses the fault queue, the accept loop
//! and the login form from here.
//!
//! - [`core`]: the user's PIN + TOTP checks with lockout, the token store, counters;
//! - [`jwt`]: HS256 tokens with an `exp` claim;
//! - [`clock`]: IST time-of-day expiry (03:30, 06:00);
//! - [`faults`]: the `/_sandbox/fault` queue;
//! - [`server`]: the accept loop, the `/_sandbox/*` controls, start-up printing;
//! - [`page`]: the browser login form and request helpers.

pub mod clock;
pub mod core;
pub mod faults;
pub mod jwt;
pub mod page;
pub mod server;

pub use self::core::{Check, Core, Denied, Kind, User, STRIKES};
pub use faults::{Fault, FaultKind};
pub use server::{Broker, Running};

/// The demo user every broker sandbox has, under the broker's own name for the id.
pub fn user(id: &str, pin: &str, totp_secret: &str) -> User {
    User {
        id: id.to_string(),
        name: "Sandbox Trader".into(),
        pin: pin.to_string(),
        totp_secret: totp_secret.to_string(),
    }
}

/// A flag whose value must be a URL (`--redirect-url`, `--notifier-url`).
pub fn require_url(flag: &str, value: &str) -> Result<(), crate::sandbox::SandboxError> {
    url::Url::parse(value)
        .map(|_| ())
        .map_err(|e| crate::sandbox::SandboxError::Config(format!("{flag}: {e}")))
}
