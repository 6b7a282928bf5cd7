//! `warden doctor`: a preflight a newcomer runs once. Each check looks at one thing the stack
//! needs (a writable directory, a reachable broker, a program's executable…) and says what to
//! do when it is missing. Nothing here submits a credential or prints a secret.

mod brokers;
mod probes;
mod report;
mod tokens;

pub use report::{render_json, render_text};

use crate::config::{Config, Problem};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Fail,
    Warn,
    /// Nothing to judge here (e.g. the stack is not running, so its health URLs are silent).
    Info,
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub check: String,
    pub status: Verdict,
    pub detail: String,
    /// What to do about a `fail` (or a `warn`); empty otherwise.
    pub fix: String,
    /// The token a check is about (its name, SPEC §9.1), and that token's provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

impl Check {
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(check, Verdict::Ok, detail, "")
    }
    pub fn info(check: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(check, Verdict::Info, detail, "")
    }
    pub fn fail(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(check, Verdict::Fail, detail, fix)
    }
    pub fn warn(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(check, Verdict::Warn, detail, fix)
    }
    fn new(
        check: impl Into<String>,
        status: Verdict,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            check: check.into(),
            status,
            detail: detail.into(),
            fix: fix.into(),
            token: None,
            provider: None,
        }
    }
    /// The same check, marked as being about the token `name` of `provider`.
    pub fn for_token(self, name: &str, provider: &str) -> Check {
        Check {
            token: Some(name.to_string()),
            provider: Some(provider.to_string()),
            ..self
        }
    }
}

/// True when any check failed: `warden doctor` exits 1 then.
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Verdict::Fail)
}

/// Every check for a config that loaded. `set_up`: the problems it loaded despite (see
/// [`is_set_up_problem`]), each reported as its token's failed credentials.
pub async fn run(cfg: &Config, set_up: &[Problem]) -> Vec<Check> {
    let mut checks = vec![Check::ok("config", cfg.source.display().to_string())];
    for w in &cfg.warnings {
        // A warning's message already says what to do.
        checks.push(Check::warn("config warning", located(w), ""));
    }
    checks.extend(probes::state_dir(cfg));
    let running = probes::warden_running(cfg);
    for t in cfg.token_list() {
        checks.extend(tokens::checks(cfg, t, set_up, running).await);
    }
    checks.extend(probes::http_posture(cfg));
    checks.extend(probes::programs(cfg));
    checks.extend(probes::health(cfg, running).await);
    checks
}

/// The credentials each provider's login may need: a config that lacks only these (and an
/// api_token, which the http.listen check reports) is a set-up to finish, not a broken file.
const CREDENTIAL_KEYS: [&str; 11] = [
    "api_key",
    "api_secret",
    "user_id",
    "password",
    "totp_secret",
    "pin",
    "client_id",
    "client_code",
    "app_id",
    "app_secret",
    "secret_key",
];

/// `token.PROVIDER.KEY` or `tokens.NAME.PROVIDER.KEY` with a credential KEY, or
/// `http.api_token`: what `warden doctor` reports as a failed check rather than refusing the
/// config.
pub fn is_set_up_problem(p: &Problem) -> bool {
    let parts: Vec<&str> = p.key.split('.').collect();
    let key = match parts.as_slice() {
        ["http", "api_token"] => return true,
        ["token", _, key] | ["tokens", _, _, key] => *key,
        _ => return false,
    };
    CREDENTIAL_KEYS.contains(&key)
}

fn located(p: &Problem) -> String {
    // Display already says `line N: key: message`.
    p.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(key: &str) -> Problem {
        Problem {
            key: key.into(),
            line: None,
            message: "must not be empty".into(),
        }
    }

    #[test]
    fn only_credentials_and_the_api_token_are_set_up_problems() {
        for key in [
            "token.kite.password",
            "tokens.angel.angelone.pin",
            "tokens.d.dhan.app_secret",
            "http.api_token",
        ] {
            assert!(is_set_up_problem(&problem(key)), "{key}");
        }
        for key in [
            "token.kite.api_base",
            "tokens.d.dhan",
            "tokens.d.max_attempts",
            "programs.app.command",
            "",
        ] {
            assert!(!is_set_up_problem(&problem(key)), "{key}");
        }
    }
}
