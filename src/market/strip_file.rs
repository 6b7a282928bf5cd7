//! `{state_dir}/market.json`: each token's per-day market totals, so that a restart keeps the
//! strip. Written whole to a temporary file and renamed over the old one; a missing file is an
//! empty history and an unreadable one is logged and replaced, never fatal.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::continuity::DayTotals;

const VERSION: u32 = 1;

/// Token name → day → totals.
pub type History = BTreeMap<String, BTreeMap<Date, DayTotals>>;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    /// Dates as "YYYY-MM-DD" keys.
    tokens: BTreeMap<String, BTreeMap<String, DayTotals>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StripFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a market history (version {VERSION}): {reason}; it will be replaced")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source} (check that state_dir is writable)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("market.json")
}

pub fn read(path: &Path) -> Result<History, StripFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::new()),
        Err(source) => {
            return Err(StripFileError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let bad = |reason: String| StripFileError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let file: File = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if file.version != VERSION {
        return Err(bad(format!("version {}", file.version)));
    }
    let mut out = History::new();
    for (token, days) in file.tokens {
        let mut parsed = BTreeMap::new();
        for (d, t) in days {
            let date: Date = d.parse().map_err(|_| bad(format!("bad date {d:?}")))?;
            parsed.insert(date, t);
        }
        out.insert(token, parsed);
    }
    Ok(out)
}

pub fn write(path: &Path, history: &History) -> Result<(), StripFileError> {
    let file = File {
        version: VERSION,
        tokens: history
            .iter()
            .map(|(token, days)| {
                let days = days.iter().map(|(d, t)| (d.to_string(), *t)).collect();
                (token.clone(), days)
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&file).unwrap_or_default();
    let err = |source| StripFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        // 0700, as the token store makes it: the state directory also holds token.json.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&json)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir.path().join("state"));
        assert!(read(&p).unwrap().is_empty());
        let mut h = History::new();
        h.entry("kite".into()).or_default().insert(
            jiff::civil::date(2026, 12, 7),
            DayTotals {
                watched_ms: 22_500_000,
                invalid_ms: 61_500,
            },
        );
        write(&p, &h).unwrap();
        assert_eq!(read(&p).unwrap(), h);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("state"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_damaged_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        std::fs::write(
            &p,
            "{\"version\": 1, \"tokens\": {\"kite\": {\"monday\": {}}}}",
        )
        .unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("market.json") && e.contains("monday"), "{e}");
    }
}
