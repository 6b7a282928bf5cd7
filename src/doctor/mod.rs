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
        checks.push(Check::warn(
            "config warning",
            located(w),
            "see the message: the config is valid, but this is likely not what you meant",
        ));
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

/// The keys a credential lives under: a config that fails only on these is a set-up that
/// lacks credentials rather than a broken file.
const CREDENTIAL_KEYS: [&str; 5] = [
    "token.kite.api_key",
    "token.kite.api_secret",
    "token.kite.user_id",
    "token.kite.password",
    "token.kite.totp_secret",
];

/// For a config that did not validate: the credential problems as failed checks, when they
/// are the only problems (`None` otherwise: the config itself is broken).
pub fn credential_problems(problems: &[Problem]) -> Option<Vec<Check>> {
    if problems.is_empty()
        || !problems
            .iter()
            .all(|p| CREDENTIAL_KEYS.contains(&p.key.as_str()))
    {
        return None;
    }
    let mut checks: Vec<Check> = problems
        .iter()
        .map(|p| {
            Check::fail(
                "credentials",
                format!("{} is missing or invalid", p.key),
                located(p),
            )
        })
        .collect();
    checks.push(Check::info(
        "other checks",
        "skipped: the config does not load until its credentials are set",
    ));
    Some(checks)
}

fn located(p: &Problem) -> String {
    // Display already says `line N: key: message`.
    p.to_string()
}
