//! What can go wrong talking to Dhan, and which [`Failure`] each answer is.
//!
//! Dhan has two error shapes: the REST API's `{"errorType","errorCode","errorMessage"}` and the
//! auth host's `{"status":"error","message"}`, which `generateAccessToken` sends with HTTP 200.
//! Both are classified by their body first, the HTTP status only when there is no body to read.
//! Where brokers/dhan.md marks a fact UNCONFIRMED, the reading that never retries a credential is
//! taken: an unknown refusal of a login is a credential rejection.

use std::fmt;
use std::time::Duration;

use crate::token::provider::{Failure, ProviderError};

/// Which Dhan call an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST {auth_base}/app/generateAccessToken` (PIN + TOTP)
    Mint,
    /// `POST {auth_base}/app/generate-consent`
    Consent,
    /// `GET {auth_base}/app/consumeApp-consent`
    ConsumeConsent,
    /// `GET {api_base}/profile`
    Profile,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Mint => "Dhan generateAccessToken",
            Step::Consent => "Dhan generate-consent",
            Step::ConsumeConsent => "Dhan consumeApp-consent",
            Step::Profile => "Dhan profile (GET /profile)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DhanError {
    /// The REST error shape.
    #[error("{step}: HTTP {status} {code} {error_type}: {message}")]
    Api {
        step: Step,
        status: u16,
        code: String,
        error_type: String,
        message: String,
    },
    /// The auth host's `{"status":"error","message"}` (HTTP 200 for generateAccessToken).
    #[error("{step}: HTTP {status}: {message}")]
    Refused {
        step: Step,
        status: u16,
        message: String,
    },
    /// An error status with neither shape (a proxy page, a load balancer).
    #[error("{step}: HTTP {status} without a Dhan error body")]
    HttpStatus { step: Step, status: u16 },
    /// A success status with a body that is not what Dhan sends.
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
    /// Connection refused, reset or closed before an answer.
    #[error("{step}: cannot talk to {url}: {detail}")]
    Network {
        step: Step,
        url: String,
        detail: String,
    },
    /// Dhan mints at most one token per client every 2 minutes: warden waits rather than
    /// send a code that would be refused.
    #[error("Dhan mints at most one token per 2 minutes; the next can be minted in {retry_in:?}")]
    MintTooSoon { retry_in: Duration },
    /// The TOTP step could not be recorded in login.json, so its code was not sent.
    #[error("the TOTP step could not be recorded in login.json; no code was submitted")]
    StepNotRecorded,
    /// A consent's `tokenId` arrived while no consent this warden started is pending.
    #[error("no Dhan consent started by this warden is pending (or it expired); start the login again from /login")]
    NoConsent,
    #[error("dhan config: {0}")]
    Config(String),
}

/// `generateAccessToken`'s answer when the client minted less than 2 minutes ago.
fn is_mint_too_soon(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("once every 2 minutes") || m.contains("once in 2 minutes")
}

/// Statuses that say "not now" rather than "no".
fn is_transient_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// The REST API's error codes (DOC annexure, brokers/dhan.md §4).
fn api_code_failure(code: &str) -> Failure {
    match code {
        // Invalid or expired token (DH-906 also for a wrong-environment token).
        "DH-901" | "DH-906" => Failure::TokenBad,
        // Rate limit; internal, network and other server errors.
        "DH-904" | "DH-908" | "DH-909" | "DH-910" => Failure::Transient,
        // DH-902/903 account or entitlement, DH-905/907 input, and any code not known:
        // a person must look (never retried).
        _ => Failure::Credential,
    }
}

impl ProviderError for DhanError {
    fn failure(&self) -> Failure {
        match self {
            DhanError::Config(_) => Failure::Config,
            DhanError::Api { status, .. } if is_transient_status(*status) => Failure::Transient,
            DhanError::Api { code, .. } => api_code_failure(code),
            DhanError::Refused { status, .. } if is_transient_status(*status) => Failure::Transient,
            DhanError::Refused {
                step,
                status,
                message,
            } => match step {
                Step::Mint if is_mint_too_soon(message) => Failure::Transient,
                // "Invalid TOTP", a PIN message (its text is UNCONFIRMED), a locked account,
                // anything else: never submitted again.
                Step::Mint | Step::Consent => Failure::Credential,
                // Wrong app_id/app_secret.
                Step::ConsumeConsent if matches!(status, 401 | 403) => Failure::Credential,
                // A tokenId Dhan no longer knows: the one-time code is spent or stale.
                Step::ConsumeConsent => Failure::TokenBad,
                Step::Profile => Failure::Credential,
            },
            DhanError::HttpStatus { status, .. } if is_transient_status(*status) => {
                Failure::Transient
            }
            DhanError::HttpStatus { step, status } => match (step, status) {
                // The token was refused without Dhan's body (its HTTP status is UNCONFIRMED).
                (Step::Profile, 401 | 403) => Failure::TokenBad,
                (Step::ConsumeConsent, 400 | 404) => Failure::TokenBad,
                _ => Failure::Credential,
            },
            DhanError::Garbage { .. }
            | DhanError::Timeout { .. }
            | DhanError::Network { .. }
            | DhanError::MintTooSoon { .. }
            | DhanError::StepNotRecorded => Failure::Transient,
            DhanError::NoConsent => Failure::TokenBad,
        }
    }

    /// Dhan's window is 2 minutes from the client's last mint, which may have been made
    /// elsewhere (the person on Dhan's web site): a refusal is waited out in full; warden's
    /// own wait is what it computed.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            DhanError::MintTooSoon { retry_in } => Some(*retry_in),
            DhanError::Refused {
                step: Step::Mint,
                message,
                ..
            } if is_mint_too_soon(message) => Some(Duration::from_secs(120)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_mint_is_waited_out_for_the_whole_window() {
        let refused = DhanError::Refused {
            step: Step::Mint,
            status: 200,
            message: "Token can be generated once every 2 minutes.".into(),
        };
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(120)));
        let wrong = DhanError::Refused {
            step: Step::Mint,
            status: 200,
            message: "Invalid TOTP".into(),
        };
        assert_eq!(wrong.retry_after(), None);
    }

    fn api(step: Step, status: u16, code: &str) -> DhanError {
        DhanError::Api {
            step,
            status,
            code: code.into(),
            error_type: "Invalid_Authentication".into(),
            message: String::new(),
        }
    }

    fn refused(step: Step, status: u16, message: &str) -> DhanError {
        DhanError::Refused {
            step,
            status,
            message: message.into(),
        }
    }

    #[test]
    fn profile_codes_are_read_from_the_body() {
        let cases = [
            (api(Step::Profile, 401, "DH-901"), Failure::TokenBad),
            (api(Step::Profile, 403, "DH-906"), Failure::TokenBad),
            // A 200 carrying DH-901 is still a bad token: the body decides.
            (api(Step::Profile, 200, "DH-901"), Failure::TokenBad),
            (api(Step::Profile, 400, "DH-902"), Failure::Credential),
            (api(Step::Profile, 400, "DH-903"), Failure::Credential),
            (api(Step::Profile, 429, "DH-904"), Failure::Transient),
            (api(Step::Profile, 400, "DH-904"), Failure::Transient),
            (api(Step::Profile, 400, "DH-905"), Failure::Credential),
            (api(Step::Profile, 500, "DH-908"), Failure::Transient),
            (api(Step::Profile, 400, "DH-909"), Failure::Transient),
            (api(Step::Profile, 400, "DH-999"), Failure::Credential),
            (api(Step::Profile, 503, "DH-905"), Failure::Transient),
        ];
        for (e, want) in cases {
            assert_eq!(e.failure(), want, "{e}");
        }
    }

    #[test]
    fn mint_refusals_come_with_http_200_and_are_classified_by_message() {
        let cases = [
            (
                refused(Step::Mint, 200, "Invalid TOTP"),
                Failure::Credential,
            ),
            (refused(Step::Mint, 200, "Invalid Pin"), Failure::Credential),
            (
                refused(Step::Mint, 200, "Invalid Client ID"),
                Failure::Credential,
            ),
            (
                refused(
                    Step::Mint,
                    200,
                    "Token can be generated once every 2 minutes.",
                ),
                Failure::Transient,
            ),
            (
                refused(Step::Mint, 200, "Your account is locked"),
                Failure::Credential,
            ),
            // A message never seen before: the safe reading, never retried.
            (
                refused(Step::Mint, 200, "Something new happened"),
                Failure::Credential,
            ),
            (refused(Step::Mint, 502, "Bad gateway"), Failure::Transient),
        ];
        for (e, want) in cases {
            assert_eq!(e.failure(), want, "{e}");
        }
    }

    #[test]
    fn consent_and_transport_failures() {
        let cases = [
            (
                refused(Step::Consent, 401, "Invalid app_id or app_secret"),
                Failure::Credential,
            ),
            (
                refused(Step::ConsumeConsent, 400, "Invalid or already used tokenId"),
                Failure::TokenBad,
            ),
            (
                refused(Step::ConsumeConsent, 401, "Invalid app_id or app_secret"),
                Failure::Credential,
            ),
            (
                DhanError::HttpStatus {
                    step: Step::Profile,
                    status: 401,
                },
                Failure::TokenBad,
            ),
            (
                DhanError::HttpStatus {
                    step: Step::Mint,
                    status: 403,
                },
                Failure::Credential,
            ),
            (
                DhanError::HttpStatus {
                    step: Step::ConsumeConsent,
                    status: 503,
                },
                Failure::Transient,
            ),
            (
                DhanError::Garbage {
                    step: Step::Profile,
                    status: 200,
                    detail: "not JSON".into(),
                },
                Failure::Transient,
            ),
            (
                DhanError::MintTooSoon {
                    retry_in: Duration::from_secs(5),
                },
                Failure::Transient,
            ),
            (DhanError::Config("x".into()), Failure::Config),
            (DhanError::NoConsent, Failure::TokenBad),
        ];
        for (e, want) in cases {
            assert_eq!(e.failure(), want, "{e}");
        }
    }
}
