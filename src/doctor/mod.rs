//! `warden doctor`: a preflight a newcomer runs once. Each check looks at one thing the stack
//! needs (a writable directory, a reachable broker, a program's executable…) and says what to
//! do when it is missing. Nothing here submits a credential or prints a secret.

mod probes;
mod report;

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
        }
    }
}

/// True when any check failed: `warden doctor` exits 1 then.
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Verdict::Fail)
}

/// Every check for a config that loaded and validated.
pub async fn run(cfg: &Config) -> Vec<Check> {
    let mut checks = vec![Check::ok("config", cfg.source.display().to_string())];
    for w in &cfg.warnings {
        // A warning's message already says what to do.
        checks.push(Check::warn("config warning", located(w), ""));
    }
    checks.extend(probes::files(cfg));
    checks.extend(probes::credentials(cfg));
    let running = probes::warden_running(cfg);
    checks.extend(probes::brokers(cfg).await);
    checks.extend(probes::http_posture(cfg));
    checks.extend(probes::redirect(cfg, running).await);
    checks.extend(probes::programs(cfg));
    checks.extend(probes::health(cfg, running).await);
    checks
}

/// The keys whose problems are a set-up to finish rather than a broken file, and the check
/// each is reported under: the validator refuses the config without them, and doctor says so
/// in its own terms.
const SET_UP_KEYS: [(&str, &str); 6] = [
    ("token.kite.api_key", "credentials"),
    ("token.kite.api_secret", "credentials"),
    ("token.kite.user_id", "credentials"),
    ("token.kite.password", "credentials"),
    ("token.kite.totp_secret", "credentials"),
    ("http.api_token", "http.listen"),
];

/// For a config that did not validate: its problems as failed checks, when they are all of the
/// set-up kind (missing credentials, a network address without an api_token); `None`
/// otherwise: the config itself is broken.
pub fn set_up_problems(problems: &[Problem]) -> Option<Vec<Check>> {
    let check_of = |p: &Problem| {
        SET_UP_KEYS
            .iter()
            .find(|(key, _)| *key == p.key)
            .map(|(_, check)| *check)
    };
    if problems.is_empty() || !problems.iter().all(|p| check_of(p).is_some()) {
        return None;
    }
    let mut checks: Vec<Check> = problems
        .iter()
        .filter_map(|p| {
            let check = check_of(p)?;
            Some(Check::fail(
                check,
                format!("{} is missing", p.key),
                located(p),
            ))
        })
        .collect();
    checks.push(Check::info(
        "other checks",
        "skipped: the config does not load until these are set",
    ));
    Some(checks)
}

fn located(p: &Problem) -> String {
    // Display already says `line N: key: message`.
    p.to_string()
}
