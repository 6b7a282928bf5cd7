//! What can go wrong talking to Kite, and what the caller should do about it.

use std::fmt;
use std::time::Duration;

/// What the caller should do about a failed broker call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The access (or request) token is expired or invalidated: obtain a new one.
    TokenBad,
    /// The broker rejected who we are (password, 2FA, blocked account, permission, api_secret)
    /// or the login flow changed under us: a person must act. Never retry automatically.
    Credential,
    /// Rate limits, broker outages, timeouts, unreadable answers: retry later within a budget.
    Transient,
}

/// Which broker call an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST {login_base}/api/login`
    Login,
    /// `POST {login_base}/api/twofa`
    Twofa,
    /// `GET {login_base}/connect/login` and the redirects after it
    Connect,
    /// `POST {api_base}/session/token`
    Exchange,
    /// `GET {api_base}/user/profile`
    Profile,
    /// `DELETE {api_base}/session/token`
    Logout,
}

impl Step {
    /// Steps that submit credentials: any refusal there is a credential problem.
    fn is_login(self) -> bool {
        matches!(self, Step::Login | Step::Twofa | Step::Connect)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Login => "login (POST /api/login)",
            Step::Twofa => "2FA (POST /api/twofa)",
            Step::Connect => "connect (GET /connect/login)",
            Step::Exchange => "session exchange (POST /session/token)",
            Step::Profile => "profile (GET /user/profile)",
            Step::Logout => "logout (DELETE /session/token)",
        })
    }
}

/// Every way a broker call can fail. See [`BrokerError::class`] for what each means.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Kite answered with its error envelope `{"status":"error","message","error_type"}`.
    #[error("{step}: HTTP {status} {error_type}: {message}")]
    Rejected {
        step: Step,
        status: u16,
        error_type: String,
        message: String,
    },
    /// An error status without Kite's envelope (a proxy page, a load balancer).
    #[error("{step}: HTTP {status} without a Kite error body")]
    HttpStatus { step: Step, status: u16 },
    /// A body that is not the JSON Kite sends.
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
    /// The login flow did not go the way Kite's flow goes (a consent page, a changed flow).
    #[error("{step}: {detail}")]
    UnexpectedFlow { step: Step, detail: String },
    /// [`crate::token::login::TotpLogin`] already submitted the current TOTP code (accepted
    /// or not) and never submits a code twice: wait `retry_in`, then try again.
    #[error("the current TOTP code was already submitted; a fresh code comes in {retry_in:?}")]
    TotpCodeUsed { retry_in: Duration },
    /// The TOTP step about to be used could not be recorded in `login.json`, so its code was
    /// not submitted (a restart must know which codes were sent).
    #[error("the TOTP step could not be recorded in login.json; no code was submitted")]
    StepNotRecorded,
    /// [`crate::token::login::TotpLogin`] refuses to run after a credential rejection.
    #[error("automated login is off after a credential rejection ({reason}); log in manually or fix the config")]
    LoginDisabled { reason: String },
    /// Unusable configuration (bad base URL, TOTP secret that is not base32, …).
    #[error("kite config: {0}")]
    Config(String),
}

impl BrokerError {
    /// The same error with every occurrence of `secrets` in its text replaced by `***`.
    pub fn redact(self, secrets: &[&str]) -> BrokerError {
        let clean = |mut text: String| {
            for s in secrets.iter().filter(|s| s.len() >= 4) {
                text = text.replace(*s, "***");
            }
            text
        };
        match self {
            BrokerError::Rejected {
                step,
                status,
                error_type,
                message,
            } => BrokerError::Rejected {
                step,
                status,
                error_type: clean(error_type),
                message: clean(message),
            },
            BrokerError::Garbage {
                step,
                status,
                detail,
            } => BrokerError::Garbage {
                step,
                status,
                detail: clean(detail),
            },
            BrokerError::UnexpectedFlow { step, detail } => BrokerError::UnexpectedFlow {
                step,
                detail: clean(detail),
            },
            BrokerError::Network { step, url, detail } => BrokerError::Network {
                step,
                url,
                detail: clean(detail),
            },
            other => other,
        }
    }

    /// How to react. The rules, in order:
    /// - HTTP 429 or 5xx (any body) → `Transient`: rate limit or broker trouble.
    /// - `TokenException` → `TokenBad`, except `Invalid checksum` on the exchange (a wrong
    ///   api_secret: `Credential`) and anything during the login steps (`Credential`).
    /// - any other Kite error (`PermissionException`, `InputException`, `UserException` for
    ///   a blocked account, …) → `Credential`.
    /// - a 4xx without Kite's envelope → `Credential` during the login steps (a refused
    ///   credential must never be retried), `Transient` elsewhere.
    /// - timeouts, network errors, unreadable bodies, a reused TOTP code → `Transient`.
    /// - an unexpected login flow, a disabled login, bad config → `Credential`.
    pub fn class(&self) -> ErrorClass {
        use ErrorClass::*;
        match self {
            BrokerError::Rejected {
                step,
                status,
                error_type,
                message,
            } => {
                if *status == 429 || *status >= 500 {
                    Transient
                } else if error_type == "TokenException" {
                    let checksum = message.to_ascii_lowercase().contains("checksum");
                    if step.is_login() || (*step == Step::Exchange && checksum) {
                        Credential
                    } else {
                        TokenBad
                    }
                } else {
                    Credential
                }
            }
            BrokerError::HttpStatus { step, status } => {
                if *status == 429 || *status >= 500 || !step.is_login() {
                    Transient
                } else {
                    Credential
                }
            }
            BrokerError::Garbage { .. }
            | BrokerError::Timeout { .. }
            | BrokerError::Network { .. }
            | BrokerError::TotpCodeUsed { .. }
            | BrokerError::StepNotRecorded => Transient,
            BrokerError::UnexpectedFlow { .. }
            | BrokerError::LoginDisabled { .. }
            | BrokerError::Config(_) => Credential,
        }
    }

    /// The HTTP status, when the broker answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            BrokerError::Rejected { status, .. }
            | BrokerError::HttpStatus { status, .. }
            | BrokerError::Garbage { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Kite's `error_type`, when the broker sent its error envelope.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            BrokerError::Rejected { error_type, .. } => Some(error_type),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let rej = |step, status, et: &str, msg: &str| BrokerError::Rejected {
            step,
            status,
            error_type: et.into(),
            message: msg.into(),
        };
        use ErrorClass::*;
        let cases = [
            (
                rej(Step::Profile, 403, "TokenException", "Incorrect"),
                TokenBad,
            ),
            (
                rej(Step::Profile, 403, "PermissionException", ""),
                Credential,
            ),
            (
                rej(Step::Exchange, 403, "TokenException", "Invalid `checksum`."),
                Credential,
            ),
            (
                rej(
                    Step::Exchange,
                    403,
                    "TokenException",
                    "Token is invalid or has expired.",
                ),
                TokenBad,
            ),
            (
                rej(
                    Step::Login,
                    400,
                    "InputException",
                    "Invalid username or password.",
                ),
                Credential,
            ),
            (
                rej(Step::Twofa, 403, "TokenException", "Request expired"),
                Credential,
            ),
            (
                rej(Step::Login, 403, "UserException", "blocked"),
                Credential,
            ),
            (rej(Step::Profile, 429, "NetworkException", ""), Transient),
            (rej(Step::Profile, 503, "NetworkException", ""), Transient),
            (rej(Step::Login, 502, "DataException", ""), Transient),
            (
                BrokerError::HttpStatus {
                    step: Step::Profile,
                    status: 404,
                },
                Transient,
            ),
            (
                BrokerError::HttpStatus {
                    step: Step::Twofa,
                    status: 400,
                },
                Credential,
            ),
            (
                BrokerError::HttpStatus {
                    step: Step::Twofa,
                    status: 429,
                },
                Transient,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.class(), want, "{e}");
        }
    }
}
