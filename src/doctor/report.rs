//! The checklist as a person reads it (✓ ✗ ! and a fix under each ✗) or as a script does.

use super::{Check, Verdict};

pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = match c.status {
            Verdict::Ok => "✓",
            Verdict::Fail => "✗",
            Verdict::Warn => "!",
            Verdict::Info => "·",
        };
        out.push_str(&format!("{mark} {}: {}\n", c.check, c.detail));
        if !c.fix.is_empty() && matches!(c.status, Verdict::Fail | Verdict::Warn) {
            out.push_str(&format!("    fix: {}\n", c.fix));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Verdict::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Verdict::Warn).count();
    out.push_str(&match failed {
        0 => format!("\nall good ({warned} warning(s))\n"),
        n => format!("\n{n} problem(s) to fix, {warned} warning(s)\n"),
    });
    out
}

pub fn render_json(checks: &[Check]) -> String {
    let mut s = serde_json::to_string_pretty(checks).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fix_follows_each_cross_and_the_summary_counts() {
        let checks = [
            Check::ok("config", "supervisor.toml"),
            Check::fail("kite clock", "60 s behind", "sync the clock"),
            Check::warn("token.env_file mode", "0644", "chmod 600 .env"),
            Check::info("redirect url", "not running"),
        ];
        let out = render_text(&checks);
        assert!(out.starts_with("✓ config: supervisor.toml\n✗ kite clock: 60 s behind\n    fix: sync the clock\n! token.env_file mode: 0644\n    fix: chmod 600 .env\n· redirect url: not running\n"), "{out}");
        assert!(
            out.ends_with("1 problem(s) to fix, 1 warning(s)\n"),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(&render_json(&checks)).unwrap();
        assert_eq!(v[1]["status"], "fail");
        assert_eq!(v[2]["status"], "warn");
        assert_eq!(v[3]["status"], "info");
        assert_eq!(v[1]["fix"], "sync the clock");
    }
}
