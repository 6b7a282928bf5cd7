//! What can go wrong talking to Angel One, and what the keeper should do about it. Angel One
//! answers most failures with HTTP 200 and an error code in the body, so the code decides,
//! not the status (brokers/angelone.md §3, §4).

use std::fmt;
use std::time::Duration;

use crate::token::provider::{Failure, ProviderError};

/// Which SmartAPI call an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `POST /rest/auth/angelbroking/user/v1/loginByPassword` (client code, PIN, TOTP).
    Login,
    /// `POST /rest/auth/angelbroking/jwt/v1/generateTokens` (the refresh token).
    GenerateTokens,
    /// `GET /rest/secure/angelbroking/user/v1/getProfile`.
    Profile,
    /// `POST /rest/secure/angelbroking/user/v1/logout`.
    Logout,
    /// An unauthenticated request made only to read the broker's `Date` header.
    Clock,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Login => "login (POST loginByPassword)",
            Call::GenerateTokens => "token refresh (POST generateTokens)",
            Call::Profile => "profile (GET getProfile)",
            Call::Logout => "logout (POST logout)",
            Call::Clock => "clock check",
        })
    }
}

/// The token (or refresh token) is dead: obtain a new one.
const TOKEN_BAD: &[&str] = &[
    "AG8001", // Invalid Token
    "AG8002", // Token Expired
    "AG8003", // Token missing
    "AB1010", // AMX Session Expired
    "AB1011", // Client not login
    "AB8050", // Invalid Refresh Token
    "AB8051", // Refresh Token Expired
];

/// Angel One's own trouble: retried later within the budget.
const BROKER_TROUBLE: &[&str] = &[
    "AB1004", // Something Went Wrong
    "AB2000", // Error not specified
    "AB2001", // Internal Error
];

/// Every way a SmartAPI call can fail. No variant carries a token, a PIN or a TOTP code.
#[derive(Debug, thiserror::Error)]
pub enum AngelError {
    /// A JSON answer that says no (`status`/`success` false), with its `errorcode`.
    #[error("{call}: Angel One refused ({code}): {message}")]
    Rejected {
        call: Call,
        status: u16,
        code: String,
        message: String,
    },
    /// An answer that is not JSON: Angel One's rate limit (HTTP 403, plain text), a proxy
    /// page, a gateway in trouble.
    #[error("{call}: HTTP {status} without a SmartAPI body ({detail})")]
    NotJson {
        call: Call,
        status: u16,
        detail: String,
    },
    /// JSON that says yes but lacks what the call needs.
    #[error("{call}: unreadable answer (HTTP {status}): {detail}")]
    Garbage {
        call: Call,
        status: u16,
        detail: String,
    },
    #[error("{call}: no answer from {url} within {timeout:?}")]
    Timeout {
        call: Call,
        url: String,
        timeout: Duration,
    },
    /// Connection refused, reset or closed before an answer.
    #[error("{call}: cannot talk to {url}: {detail}")]
    Network {
        call: Call,
        url: String,
        detail: String,
    },
    /// This TOTP code was already submitted (accepted or not): a code is never sent twice.
    #[error("the current TOTP code was already submitted; a fresh code comes in {retry_in:?}")]
    TotpCodeUsed { retry_in: Duration },
    /// The TOTP step could not be recorded in login.json, so its code was not sent.
    #[error("the TOTP step could not be recorded in login.json; no code was submitted")]
    StepNotRecorded,
    /// Automated login is off after a credential rejection until a person re-arms it.
    #[error("automated login is off after a credential rejection ({reason}); log in manually or fix the config")]
    LoginDisabled { reason: String },
    /// The publisher login's callback did not carry what warden packed from it.
    #[error("the Angel One callback code is not one this warden issued")]
    BadCallbackCode,
    /// Unusable configuration (a missing table, a TOTP secret that is not base32, …).
    #[error("angelone config: {0}")]
    Config(String),
}

impl AngelError {
    /// The broker's error code, when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AngelError::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The same error with every occurrence of `secrets` in its text replaced by `***`
    /// (a broker or a proxy that quotes the request back must not put it into a log).
    pub fn redact(self, secrets: &[&str]) -> AngelError {
        let clean = |mut text: String| {
            for s in secrets.iter().filter(|s| s.len() >= 4) {
                text = text.replace(*s, "***");
            }
            text
        };
        match self {
            AngelError::Rejected {
                call,
                status,
                code,
                message,
            } => AngelError::Rejected {
                call,
                status,
                code: clean(code),
                message: clean(message),
            },
            AngelError::Garbage {
                call,
                status,
                detail,
            } => AngelError::Garbage {
                call,
                status,
                detail: clean(detail),
            },
            AngelError::NotJson {
                call,
                status,
                detail,
            } => AngelError::NotJson {
                call,
                status,
                detail: clean(detail),
            },
            AngelError::Network { call, url, detail } => AngelError::Network {
                call,
                url,
                detail: clean(detail),
            },
            other => other,
        }
    }
}

impl ProviderError for AngelError {
    /// The rules, in order:
    /// - HTTP 429 or 5xx (any body), a body that is not JSON (the rate limit's plain-text
    ///   403), `AB1004`/`AB2000`/`AB2001`, timeouts, resets, unreadable answers, a reused
    ///   TOTP code → `Transient`;
    /// - on the login call, every other refusal → `Credential`: it submitted the PIN and a
    ///   TOTP code, and the wrong-TOTP code is UNCONFIRMED (AB1050 or AB1007), so nothing
    ///   refused there is ever retried;
    /// - `AG8001`/`AG8002`/`AG8003`, `AB1010`/`AB1011`, `AB8050`/`AB8051` → `TokenBad`;
    /// - any other code (`AB1000`, `AB1007`, `AB1032`, `AB1006` blocked, an invalid API key,
    ///   a code nobody documented) → `Credential`: the safe reading of SPEC §9.2;
    /// - a disabled login or an unusable config → `Credential` / `Config`.
    fn failure(&self) -> Failure {
        match self {
            AngelError::Rejected {
                call, status, code, ..
            } => {
                let code = code.trim().to_ascii_uppercase();
                if *status == 429 || *status >= 500 || BROKER_TROUBLE.contains(&code.as_str()) {
                    Failure::Transient
                } else if *call == Call::Login {
                    Failure::Credential
                } else if TOKEN_BAD.contains(&code.as_str()) {
                    Failure::TokenBad
                } else {
                    Failure::Credential
                }
            }
            AngelError::NotJson { .. }
            | AngelError::Garbage { .. }
            | AngelError::Timeout { .. }
            | AngelError::Network { .. }
            | AngelError::TotpCodeUsed { .. }
            | AngelError::StepNotRecorded => Failure::Transient,
            AngelError::BadCallbackCode => Failure::TokenBad,
            AngelError::LoginDisabled { .. } => Failure::Credential,
            AngelError::Config(_) => Failure::Config,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(call: Call, status: u16, code: &str) -> AngelError {
        AngelError::Rejected {
            call,
            status,
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn every_code_of_the_facts_file_has_its_class() {
        use Failure::*;
        let cases = [
            (rejected(Call::Profile, 200, "AG8001"), TokenBad),
            (rejected(Call::Profile, 200, "AG8002"), TokenBad),
            (rejected(Call::Profile, 200, "AG8003"), TokenBad),
            (rejected(Call::Profile, 401, "ag8001"), TokenBad),
            (rejected(Call::Profile, 200, "AB1010"), TokenBad),
            (rejected(Call::Profile, 200, "AB1011"), TokenBad),
            (rejected(Call::GenerateTokens, 200, "AB8050"), TokenBad),
            (rejected(Call::GenerateTokens, 200, "AB8051"), TokenBad),
            (rejected(Call::Login, 200, "AB1007"), Credential),
            (rejected(Call::Login, 200, "AB1000"), Credential),
            (rejected(Call::Login, 200, "AB1032"), Credential),
            (rejected(Call::Login, 200, "AB1050"), Credential),
            (rejected(Call::Login, 200, "AB1006"), Credential),
            (rejected(Call::Login, 200, "AG8004"), Credential),
            // Never a "token" answer on the call that submits the PIN: never retried.
            (rejected(Call::Login, 200, "AG8001"), Credential),
            (rejected(Call::Login, 200, "XX9999"), Credential),
            (rejected(Call::Login, 200, ""), Credential),
            (rejected(Call::Profile, 200, "AG8004"), Credential),
            (rejected(Call::Profile, 200, "ZZ0000"), Credential),
            (rejected(Call::GenerateTokens, 200, "AB1006"), Credential),
            (rejected(Call::Login, 200, "AB1004"), Transient),
            (rejected(Call::Profile, 200, "AB2001"), Transient),
            (rejected(Call::GenerateTokens, 200, "AB2000"), Transient),
            (rejected(Call::Login, 503, "AB1007"), Transient),
            (rejected(Call::Login, 429, "AB1007"), Transient),
            (
                AngelError::NotJson {
                    call: Call::Login,
                    status: 403,
                    detail: "Access denied because of exceeding access rate".into(),
                },
                Transient,
            ),
            (
                AngelError::Garbage {
                    call: Call::Profile,
                    status: 200,
                    detail: "no data".into(),
                },
                Transient,
            ),
            (
                AngelError::TotpCodeUsed {
                    retry_in: Duration::from_secs(3),
                },
                Transient,
            ),
            (AngelError::StepNotRecorded, Transient),
            (AngelError::LoginDisabled { reason: "r".into() }, Credential),
            (AngelError::BadCallbackCode, TokenBad),
            (AngelError::Config("x".into()), Config),
        ];
        for (e, want) in cases {
            assert_eq!(e.failure(), want, "{e}");
        }
    }

    #[test]
    fn redaction_hides_quoted_secrets() {
        let e = AngelError::Rejected {
            call: Call::Login,
            status: 200,
            code: "AB1007".into(),
            message: "PIN 135790 is invalid".into(),
        }
        .redact(&["135790"]);
        assert!(!e.to_string().contains("135790"), "{e}");
        assert_eq!(e.code(), Some("AB1007"));
        let echoed = AngelError::NotJson {
            call: Call::Profile,
            status: 502,
            detail: "proxy error for Bearer eyJ.secret.jwt".into(),
        }
        .redact(&["eyJ.secret.jwt"]);
        assert!(!echoed.to_string().contains("eyJ.secret.jwt"), "{echoed}");
    }
}
