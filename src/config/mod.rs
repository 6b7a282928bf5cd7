//! `supervisor.toml`: schema, loading (expansion, secrets, validation) and diffing.
//!
//! [`load`] runs a file through a fixed pipeline and collects every problem on the way instead
//! of stopping at the first one, so `warden check` can show them all at once:
//!
//! 1. parse the TOML (a syntax error is the only thing that stops early: nothing else can be
//!    known about a file that does not parse);
//! 2. expand `${VAR}` / `${VAR:-default}` in every string value ([`expand`]);
//! 3. read `X_file` secrets into `X` ([`secrets`]);
//! 4. deserialize into the typed [`schema`], reporting every type error and every unknown key
//!    ([`typed`]);
//! 5. resolve relative paths against the config file's directory;
//! 6. cross-check the typed result ([`validate`]).
//!
//! Problems are located by key path; [`locate`] maps a path back to its line in the file.

pub mod diff;
pub mod env_file;
mod expand;
mod exposure;
mod keypath;
mod load;
mod locate;
mod market_rules;
mod quiet_hours;
pub mod schema;
mod secrets;
mod several_tokens;
mod token_times;
mod typed;
mod validate;
#[cfg(test)]
mod validate_fyers_tests;

pub use diff::{diff, ConfigDiff};
pub use load::{load, load_tolerating};
pub use market_rules::{parse_market_date, parse_market_time};
pub use quiet_hours::QuietHours;
pub use schema::*;
pub use token_times::parse_hhmm;

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with a config file, located by its dotted key path and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `programs.backend.restrat`; empty for file-level problems.
    pub key: String,
    /// 1-based line of the key in the file, when it can be found.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one file. Loading never stops at the first one.
///
/// Its `Display` is what `warden check` prints: one problem per line in compiler style,
/// `FILE:LINE: KEY: message` (parts that are unknown are left out), then a summary line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file as it was named on the command line.
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl Problem {
    /// `FILE:LINE: KEY: message` (parts that are unknown are left out), with `label` (like
    /// `"warning: "`) before the key.
    pub fn located(&self, file: &Path, label: &str) -> String {
        let mut s = file.display().to_string();
        if let Some(l) = self.line {
            s.push_str(&format!(":{l}"));
        }
        s.push_str(": ");
        s.push_str(label);
        if !self.key.is_empty() {
            s.push_str(&self.key);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        s
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{}", p.located(&self.file, ""))?;
        }
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{} found; fix {} and run `warden check` again",
            self.file.display(),
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_compiler_style_and_omits_unknown_parts() {
        let e = ConfigError {
            file: PathBuf::from("supervisor.toml"),
            problems: vec![
                Problem {
                    key: "programs.backend.restrat".into(),
                    line: Some(12),
                    message: "unknown key".into(),
                },
                Problem {
                    key: "programs.a.depends_on".into(),
                    line: None,
                    message: "cycle".into(),
                },
                Problem {
                    key: String::new(),
                    line: Some(3),
                    message: "syntax".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "supervisor.toml:12: programs.backend.restrat: unknown key\n\
             supervisor.toml: programs.a.depends_on: cycle\n\
             supervisor.toml:3: syntax\n\
             supervisor.toml: 3 problems found; fix them and run `warden check` again"
        );
        assert_eq!(
            e.problems[0].located(Path::new("s.toml"), "warning: "),
            "s.toml:12: warning: programs.backend.restrat: unknown key"
        );
    }
}
