//! What can go wrong talking to Fyers, and what the keeper should do about it.
//!
//! Fyers answers `{"s":"error","code":<negative>,"message"}`, and the HTTP status of each code
//! is UNCONFIRMED (brokers/fyers.md §3), so the body's `code` decides, read per endpoint: `-16`
//! is a dead token on the profile but "the refresh API is disabled" on the refresh endpoint.

use std::fmt;
use std::time::Duration;

use crate::token::provider::{Failure, ProviderError};

/// Which Fyers call an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST {api_base}/validate-authcode`
    Exchange,
    /// `POST {api_base}/validate-refresh-token`
    Refresh,
    /// `GET {api_base}/profile`
    Profile,
    /// `POST {api_base}/logout`
    Logout,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Exchange => "auth-code exchange (POST /validate-authcode)",
            Step::Refresh => "token refresh (POST /validate-refresh-token)",
            Step::Profile => "profile (GET /profile)",
            Step::Logout => "logout (POST /logout)",
        })
    }
}

/// Every way a Fyers call can fail. Messages carry Fyers' own short text and URLs without
/// their query, never a token, the secret key or the PIN.
#[derive(Debug, thiserror::Error)]
pub enum FyersError {
    /// Fyers' error envelope.
    #[error("{step}: HTTP {status}, Fyers code {code}: {message}")]
    Rejected {
        step: Step,
        status: u16,
        code: i64,
        message: String,
    },
    /// A body that is not Fyers' JSON (a proxy page, Cloudflare's rate-limit page).
    #[error("{step}: unreadable answer (HTTP {status}): {detail}")]
    Garbage {
        step: Step,
        status: u16,
        detail: String,
    },
    #[error("{step}: no answer from {url} within {timeout:?}")]
    Timeout {
        step: Step,
        url: String,
        timeout: Duration,
    },
    #[error("{step}: cannot talk to {url}: {detail}")]
    Network {
        step: Step,
        url: String,
        detail: String,
    },
    /// Fyers has no documented automated login: only a person can log in.
    #[error("Fyers has no automated login: a person must log in through warden's /login page")]
    NoAutomatedLogin,
    /// Unusable configuration (no `[token.fyers]`, a client that cannot be built).
    #[error("fyers config: {0}")]
    Config(String),
}

/// Codes meaning the token presented is expired or invalid (profile, logout).
const DEAD_TOKEN: [i64; 4] = [-8, -15, -16, -17];
/// The refresh endpoint: disabled by Fyers (`-16`), a lapsed (`-8`) or invalid refresh token:
/// "log in instead".
const REFRESH_UNAVAILABLE: [i64; 4] = [-8, -15, -16, -17];
/// Rate limits (`-429`, older `-353`), "an unexpected error" (`-96`), connection errors.
const TRANSIENT: [i64; 7] = [-429, -353, -96, -201, -202, -204, -205];

impl FyersError {
    /// How to react, in this order:
    /// - HTTP 429 or 5xx, or a transient code → `Transient`;
    /// - profile/logout: `-8`/`-15`/`-16`/`-17` or HTTP 401 → `TokenBad`;
    /// - refresh: `-8`/`-15`/`-16`/`-17` → `TokenBad` (the refresh token cannot be used: a
    ///   person logs in instead);
    /// - exchange: `-374` (a spent or expired auth code) and the dead-token codes → `TokenBad`;
    /// - any other code (`-1006` wrong PIN, `-371` wrong secret key, `-352` unknown app,
    ///   `-373` no permission, codes not seen before) → `Credential`: never retried. The
    ///   refresh endpoint takes the PIN, and an unknown answer there must not be repeated.
    /// - unreadable bodies, timeouts, network errors → `Transient`.
    pub fn failure_class(&self) -> Failure {
        match self {
            FyersError::Rejected {
                step, status, code, ..
            } => {
                if *status == 429 || *status >= 500 || TRANSIENT.contains(code) {
                    return Failure::Transient;
                }
                let token_bad = match step {
                    Step::Profile | Step::Logout => DEAD_TOKEN.contains(code) || *status == 401,
                    Step::Refresh => REFRESH_UNAVAILABLE.contains(code),
                    Step::Exchange => *code == -374 || DEAD_TOKEN.contains(code),
                };
                if token_bad {
                    Failure::TokenBad
                } else {
                    Failure::Credential
                }
            }
            FyersError::Garbage { .. }
            | FyersError::Timeout { .. }
            | FyersError::Network { .. } => Failure::Transient,
            FyersError::NoAutomatedLogin | FyersError::Config(_) => Failure::Config,
        }
    }

    /// Fyers switched the refresh API off ("disabled to comply with SEBI regulations").
    pub fn refresh_disabled(&self) -> bool {
        matches!(
            self,
            FyersError::Rejected {
                step: Step::Refresh,
                code: -16,
                ..
            }
        )
    }
}

impl ProviderError for FyersError {
    fn failure(&self) -> Failure {
        self.failure_class()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(step: Step, status: u16, code: i64) -> FyersError {
        FyersError::Rejected {
            step,
            status,
            code,
            message: String::new(),
        }
    }

    #[test]
    fn the_body_code_decides_per_endpoint() {
        let cases = [
            // Dead tokens on the profile, whatever the status (one 3P test saw 200 for -15).
            (rejected(Step::Profile, 401, -8), Failure::TokenBad),
            (rejected(Step::Profile, 200, -15), Failure::TokenBad),
            (rejected(Step::Profile, 401, -16), Failure::TokenBad),
            (rejected(Step::Profile, 401, -17), Failure::TokenBad),
            (rejected(Step::Logout, 401, -17), Failure::TokenBad),
            (rejected(Step::Profile, 401, -300), Failure::TokenBad),
            // -16 on the refresh endpoint is "disabled": log in instead, not a credential.
            (rejected(Step::Refresh, 400, -16), Failure::TokenBad),
            (rejected(Step::Refresh, 400, -8), Failure::TokenBad),
            (rejected(Step::Refresh, 400, -17), Failure::TokenBad),
            // A wrong PIN or secret key is never retried.
            (rejected(Step::Refresh, 400, -1006), Failure::Credential),
            (rejected(Step::Refresh, 200, -1006), Failure::Credential),
            (rejected(Step::Refresh, 400, -371), Failure::Credential),
            (rejected(Step::Refresh, 400, -9999), Failure::Credential),
            (rejected(Step::Exchange, 400, -371), Failure::Credential),
            (rejected(Step::Exchange, 400, -352), Failure::Credential),
            (rejected(Step::Profile, 403, -373), Failure::Credential),
            // A spent or expired auth code: get a new one.
            (rejected(Step::Exchange, 400, -374), Failure::TokenBad),
            // Rate limits and outages, by status or by code.
            (rejected(Step::Refresh, 429, -429), Failure::Transient),
            (rejected(Step::Refresh, 400, -429), Failure::Transient),
            (rejected(Step::Exchange, 503, -201), Failure::Transient),
            (rejected(Step::Profile, 200, -96), Failure::Transient),
            (rejected(Step::Profile, 400, -353), Failure::Transient),
            (
                FyersError::Garbage {
                    step: Step::Profile,
                    status: 403,
                    detail: "not JSON".into(),
                },
                Failure::Transient,
            ),
            (FyersError::NoAutomatedLogin, Failure::Config),
        ];
        for (e, want) in cases {
            assert_eq!(e.failure(), want, "{e}");
        }
    }

    #[test]
    fn only_minus_16_on_the_refresh_endpoint_is_disabled() {
        assert!(rejected(Step::Refresh, 400, -16).refresh_disabled());
        assert!(!rejected(Step::Profile, 401, -16).refresh_disabled());
        assert!(!rejected(Step::Refresh, 400, -8).refresh_disabled());
    }
}
