//! What can go wrong talking to Upstox, classified by the error code in the body (the HTTP
//! status only where there is no code to read). Facts: `brokers/upstox.md` §4.

use std::fmt;
use std::time::Duration;

use crate::token::provider::{Failure, ProviderError};

/// Which Upstox call an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST /v3/login/auth/token/request/{client_id}` (the Access Token Request)
    TokenRequest,
    /// `POST /v2/login/authorization/token` (the code exchange)
    Exchange,
    /// `GET /v2/user/profile`
    Profile,
    /// `DELETE /v2/logout`
    Logout,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::TokenRequest => "access token request (POST /v3/login/auth/token/request)",
            Step::Exchange => "code exchange (POST /v2/login/authorization/token)",
            Step::Profile => "profile (GET /v2/user/profile)",
            Step::Logout => "logout (DELETE /v2/logout)",
        })
    }
}

/// Every way an Upstox call can fail. No variant ever holds a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum UpstoxError {
    /// Upstox answered with its error envelope; `code` is `UDAPI…`.
    #[error("Upstox {step}: HTTP {status} {code}: {message}")]
    Rejected {
        step: Step,
        status: u16,
        code: String,
        message: String,
    },
    /// A non-2xx answer without Upstox's envelope (a proxy's or a CDN's page).
    #[error("Upstox {step}: HTTP {status} without an Upstox error body")]
    HttpStatus { step: Step, status: u16 },
    /// A 2xx answer that is not what the API documents.
    #[error("Upstox {step}: unexpected answer (HTTP {status}): {detail}")]
    Garbage {
        step: Step,
        status: u16,
        detail: String,
    },
    #[error("Upstox {step}: no answer from {url} within {timeout:?}")]
    Timeout {
        step: Step,
        url: String,
        timeout: Duration,
    },
    #[error("Upstox {step}: cannot reach {url}: {detail}")]
    Network {
        step: Step,
        url: String,
        detail: String,
    },
    /// The configuration cannot work (no `[token.upstox]`, a mode that cannot do this).
    #[error("{0}")]
    Config(String),
}

/// Codes that say the token (or the one-time code) is dead: get a new one.
const TOKEN_BAD: [&str; 3] = [
    "UDAPI100050", // invalid or expired token
    "UDAPI100067", // an extended (read-only) token on an API it does not allow
    "UDAPI100057", // invalid authorization code (a code works once)
];
/// Codes that say who we are was refused, or the API changed under us: never retried.
const CREDENTIAL: [&str; 6] = [
    "UDAPI100016", // invalid credentials (client_id / client_secret)
    "UDAPI100068", // client_id or redirect_uri wrong
    "UDAPI100073", // client_id inactive
    "UDAPI100058", // no segments active: the account is blocked
    "UDAPI100015", // Api-Version missing: the API changed
    "UDAPI10000",  // unsupported URL: the API changed
];
/// Rate limit and Upstox's own trouble: retried later.
const TRANSIENT: [&str; 2] = ["UDAPI10005", "UDAPI100500"];

impl UpstoxError {
    /// What the keeper should do. Unknown codes take the safe reading (SPEC §9.2): a
    /// credential rejection, except server trouble (5xx, 429) and a 401 from the profile
    /// call, which can only be about the token it carried.
    pub fn classify(&self) -> Failure {
        match self {
            UpstoxError::Rejected {
                step, status, code, ..
            } => {
                let code = code.as_str();
                if TOKEN_BAD.contains(&code) {
                    Failure::TokenBad
                } else if CREDENTIAL.contains(&code) {
                    Failure::Credential
                } else if TRANSIENT.contains(&code) || *status >= 500 || *status == 429 {
                    Failure::Transient
                } else if *step == Step::Profile && *status == 401 {
                    Failure::TokenBad
                } else {
                    Failure::Credential
                }
            }
            // Cloudflare's 403 pages (error 1010) reach users now and then: trouble on the way,
            // not an answer about us.
            UpstoxError::HttpStatus { status, .. }
                if *status >= 500 || matches!(status, 403 | 429) =>
            {
                Failure::Transient
            }
            UpstoxError::HttpStatus {
                step: Step::Profile,
                status: 401,
            } => Failure::TokenBad,
            UpstoxError::HttpStatus { .. } => Failure::Credential,
            UpstoxError::Garbage { status, .. } if *status >= 500 => Failure::Transient,
            // A 2xx we cannot read: the API changed; retrying would not help.
            UpstoxError::Garbage { .. } => Failure::Credential,
            UpstoxError::Timeout { .. } | UpstoxError::Network { .. } => Failure::Transient,
            UpstoxError::Config(_) => Failure::Config,
        }
    }
}

impl ProviderError for UpstoxError {
    fn failure(&self) -> Failure {
        self.classify()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(step: Step, status: u16, code: &str) -> UpstoxError {
        UpstoxError::Rejected {
            step,
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn the_body_code_decides_not_the_status() {
        let cases = [
            (
                rejected(Step::Profile, 401, "UDAPI100050"),
                Failure::TokenBad,
            ),
            // The same code under another status is still a dead token.
            (
                rejected(Step::Profile, 400, "UDAPI100050"),
                Failure::TokenBad,
            ),
            (
                rejected(Step::Profile, 403, "UDAPI100067"),
                Failure::TokenBad,
            ),
            (
                rejected(Step::Exchange, 400, "UDAPI100057"),
                Failure::TokenBad,
            ),
            (
                rejected(Step::Exchange, 401, "UDAPI100016"),
                Failure::Credential,
            ),
            (
                rejected(Step::TokenRequest, 400, "UDAPI100016"),
                Failure::Credential,
            ),
            (
                rejected(Step::TokenRequest, 401, "UDAPI100073"),
                Failure::Credential,
            ),
            (
                rejected(Step::Exchange, 400, "UDAPI100068"),
                Failure::Credential,
            ),
            (
                rejected(Step::Profile, 403, "UDAPI100058"),
                Failure::Credential,
            ),
            (
                rejected(Step::Profile, 400, "UDAPI100015"),
                Failure::Credential,
            ),
            (
                rejected(Step::Profile, 429, "UDAPI10005"),
                Failure::Transient,
            ),
            (
                rejected(Step::TokenRequest, 200, "UDAPI10005"),
                Failure::Transient,
            ),
            (
                rejected(Step::Profile, 500, "UDAPI100500"),
                Failure::Transient,
            ),
            // Unknown codes: server trouble is transient, a 401 on the profile is the token,
            // the rest is the safe reading (never retried).
            (rejected(Step::Profile, 503, "UDAPI999"), Failure::Transient),
            (rejected(Step::Profile, 401, "UDAPI999"), Failure::TokenBad),
            (
                rejected(Step::Exchange, 400, "UDAPI100069"),
                Failure::Credential,
            ),
            (
                rejected(Step::TokenRequest, 401, "UDAPI999"),
                Failure::Credential,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.failure(), want, "{e}");
        }
    }

    #[test]
    fn answers_without_a_code_fall_back_to_the_status() {
        let http = |step, status| UpstoxError::HttpStatus { step, status };
        assert_eq!(http(Step::Profile, 502).failure(), Failure::Transient);
        assert_eq!(
            http(Step::Profile, 403).failure(),
            Failure::Transient,
            "a CDN page"
        );
        assert_eq!(http(Step::Profile, 401).failure(), Failure::TokenBad);
        assert_eq!(http(Step::Exchange, 401).failure(), Failure::Credential);
        assert_eq!(http(Step::TokenRequest, 404).failure(), Failure::Credential);
        let garbage = |status| UpstoxError::Garbage {
            step: Step::Profile,
            status,
            detail: String::new(),
        };
        assert_eq!(garbage(200).failure(), Failure::Credential);
        assert_eq!(garbage(503).failure(), Failure::Transient);
        assert_eq!(UpstoxError::Config("x".into()).failure(), Failure::Config);
    }
}
