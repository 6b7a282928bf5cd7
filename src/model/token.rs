//! Token status: SPEC §5 token states and the `token` object of `/api/v1/status`.

use jiff::Timestamp;
use serde::Serialize;

/// SPEC §5 token states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Valid,
    Expired,
    Refreshing,
    NeedsLogin,
    #[default]
    Unknown,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Valid => "valid",
            TokenState::Expired => "expired",
            TokenState::Refreshing => "refreshing",
            TokenState::NeedsLogin => "needs_login",
            TokenState::Unknown => "unknown",
        }
    }

    /// The state a status JSON names (`"needs_login"` → `NeedsLogin`).
    pub fn from_name(name: &str) -> Option<TokenState> {
        [
            TokenState::Valid,
            TokenState::Expired,
            TokenState::Refreshing,
            TokenState::NeedsLogin,
            TokenState::Unknown,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// The `token` object of `/api/v1/status`. Never holds the token itself.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TokenStatus {
    pub state: TokenState,
    pub user_id: Option<String>,
    #[serde(serialize_with = "super::time::rfc3339_opt")]
    pub obtained_at: Option<Timestamp>,
    #[serde(serialize_with = "super::time::rfc3339_opt")]
    pub expires_at: Option<Timestamp>,
    #[serde(serialize_with = "super::time::rfc3339_opt")]
    pub next_refresh_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub source: Option<&'static str>,
    pub login: Option<&'static str>,
    /// Set while the env file can be read by its group or everyone (issue 12): what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_file_warning: Option<String>,
    /// Why automated login is blocked by a credential rejection (SPEC §4.1), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_keeps_its_shape() {
        let at = Timestamp::from_second(1_714_532_400).unwrap();
        let t = TokenStatus {
            state: TokenState::NeedsLogin,
            obtained_at: Some(at),
            ..TokenStatus::default()
        };
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            serde_json::json!({"state": "needs_login", "user_id": null,
                "obtained_at": "2024-05-01T03:00:00Z", "expires_at": null,
                "next_refresh_at": null, "last_error": null, "source": null, "login": null})
        );
        for s in [
            TokenState::Valid,
            TokenState::Expired,
            TokenState::Refreshing,
            TokenState::NeedsLogin,
            TokenState::Unknown,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(TokenState::from_name(s.as_str()), Some(s));
        }
    }
}
