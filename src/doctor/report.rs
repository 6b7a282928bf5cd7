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
