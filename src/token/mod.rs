//! The broker access token: obtaining it, validating it, storing it, handing it to programs.

pub mod attempt_budget;
pub mod broker;
pub mod broker_text;
pub mod clock;
pub mod clock_guard;
pub mod command;
pub mod command_run;
pub mod dotenv;
mod env_watch;
pub mod fleet;
pub mod keeper;
pub mod kite;
pub mod login;
pub mod login_memory;
pub mod login_state;
pub mod provider;
pub mod schedule;
pub mod store;
pub mod writable;

use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// Where a token came from (`token.json`'s `source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    Totp,
    /// The broker web session of the last automated login, reused (no credentials sent).
    Session,
    Manual,
    /// A person approved the broker's login request on their phone (Upstox).
    Approve,
    /// The broker's longer-lived refresh token (Fyers, Angel One).
    RefreshToken,
    Command,
    EnvFile,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Totp => "totp",
            TokenSource::Session => "session",
            TokenSource::Manual => "manual",
            TokenSource::Approve => "approve",
            TokenSource::RefreshToken => "refresh_token",
            TokenSource::Command => "command",
            TokenSource::EnvFile => "env_file",
        }
    }
}

/// What a login can yield beside the access token. `Debug` redacts every value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Companions {
    /// Values written into the env file beside the token, each under its own key (Angel One's
    /// feed token): programs need them with the token they belong to.
    pub env: Vec<(String, Secret)>,
    /// A longer-lived refresh token (Fyers, Angel One): kept in the state file only (0600),
    /// never in the env file, handed back to the provider after a restart.
    pub refresh_token: Option<Secret>,
}

/// A token plus what warden knows about it. `Debug` redacts the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub access_token: Secret,
    pub user_id: String,
    /// Unix seconds.
    pub obtained_at: i64,
    /// Unix seconds: the next daily expiry after `obtained_at` (a hint).
    pub expires_at: i64,
    pub source: TokenSource,
    pub companions: Companions,
}
