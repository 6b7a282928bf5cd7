//! `supervisor.toml`: schema, loading (expansion, secrets, validation) and diffing.

pub mod diff;
pub mod schema;

pub use diff::{diff, ConfigDiff};

pub use schema::*;

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
        match (self.key.is_empty(), self.line) {
            (true, Some(l)) => write!(f, "line {l}: {}", self.message),
            (true, None) => write!(f, "{}", self.message),
            (false, Some(l)) => write!(f, "{} (line {l}): {}", self.key, self.message),
            (false, None) => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in one file. Loading never stops at the first one.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} problem(s)",
            self.file.display(),
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: {p}", self.file.display())?;
        }
        Ok(())
    }
}

/// Read, expand, resolve and validate a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |key: &str, message: String| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem {
            key: key.into(),
            line: None,
            message,
        }],
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail("", format!("cannot read: {e}")))?;
    let mut cfg: Config = toml::from_str(&text).map_err(|e| fail("", e.to_string()))?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    cfg.source = abs;
    cfg.supervisor.state_dir = base.join(&cfg.supervisor.state_dir);
    for p in cfg.programs.values_mut() {
        p.cwd = base.join(&p.cwd);
        if let Some(f) = &p.env_file {
            p.env_file = Some(base.join(f));
        }
    }
    if let Some(t) = &mut cfg.token {
        t.env_file = base.join(&t.env_file);
    }
    Ok(cfg)
}
