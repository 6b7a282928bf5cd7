//! Injected failures (`POST /_sandbox/fault`): the next N matching requests fail a chosen way.
//! The rule format lives here (every sandbox accepts it); the queue is
//! `sandbox::common::faults::FaultQueue`.

use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// How a faulted request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// Answer `status` with Kite's error envelope.
    #[default]
    Status,
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Close the connection without answering.
    Drop,
    /// Only wait `delay_ms`, then answer normally.
    Delay,
}

/// One fault rule, as posted to `/_sandbox/fault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Path prefix to match (`/user/profile`); absent = every path outside `/_sandbox/`.
    #[serde(default)]
    pub path: Option<String>,
    /// For `kind = status`.
    #[serde(default = "default_status")]
    pub status: u16,
    /// How many matching requests fail.
    #[serde(default = "default_count")]
    pub count: u32,
    /// Wait this long before failing (or, for `delay`, before answering).
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub kind: FaultKind,
    /// Envelope `error_type` for `kind = status`; default follows the status (429 and 503
    /// NetworkException, 502 DataException, 500 GeneralException, 403 TokenException, 400
    /// InputException).
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

fn default_status() -> u16 {
    503
}
fn default_count() -> u32 {
    1
}

impl Default for Fault {
    fn default() -> Self {
        Fault {
            path: None,
            status: default_status(),
            count: default_count(),
            delay_ms: 0,
            kind: FaultKind::Status,
            error_type: None,
            message: None,
        }
    }
}

impl Fault {
    /// Kite's error envelope for a `status` fault (the shared server answers `garbage`).
    pub(super) fn response(&self) -> Response {
        let status = axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let (default_type, default_message) = match self.status {
            400 => ("InputException", "Invalid input (injected fault)."),
            403 => ("TokenException", "Incorrect `api_key` or `access_token`."),
            429 => ("NetworkException", "Too many requests."),
            500 => (
                "GeneralException",
                "Internal server error (injected fault).",
            ),
            502 => ("DataException", "Bad gateway (injected fault)."),
            503 | 504 => ("NetworkException", "Service unavailable (injected fault)."),
            _ => ("GeneralException", "Injected fault."),
        };
        let body = serde_json::json!({
            "status": "error",
            "message": self.message.as_deref().unwrap_or(default_message),
            "data": null,
            "error_type": self.error_type.as_deref().unwrap_or(default_type),
        });
        (status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_json_defaults() {
        let f: Fault = serde_json::from_str(r#"{"kind":"drop"}"#).unwrap();
        assert_eq!(f.kind, FaultKind::Drop);
        assert_eq!((f.status, f.count, f.path), (503, 1, None));
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"explode"}"#).is_err());
    }
}
