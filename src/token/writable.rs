//! Start-up check (and `warden check`): the directories warden writes the token into must be
//! writable, so that a new token is never obtained only to find it has nowhere to go.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// A directory warden must write to and cannot.
#[derive(Debug, thiserror::Error)]
#[error(
    "{key}: cannot write to {} ({reason}); warden writes {what} there: fix the directory's owner \
     or mode (it must be writable by the user warden runs as), free disk space, or point {key} \
     somewhere writable",
    .dir.display()
)]
pub struct NotWritable {
    pub key: String,
    pub dir: PathBuf,
    pub what: &'static str,
    pub reason: String,
    /// The directory does not exist (rather than refusing writes). `warden check` may run
    /// on another machine than warden, so it only warns about this.
    pub missing: bool,
}

/// Every directory the token needs that cannot be written to right now. A `state_dir` that
/// does not exist yet is fine when it could be created (its nearest existing parent is
/// writable); nothing is created here.
pub fn check(cfg: &Config) -> Vec<NotWritable> {
    let tokens = cfg.token_list();
    if tokens.is_empty() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for token in tokens {
        let env_dir = match token.env_file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Tokens sharing a directory: one check, one report.
        if seen.contains(&env_dir) {
            continue;
        }
        seen.push(env_dir.clone());
        if let Err((reason, missing)) = probe(&env_dir, false) {
            let key = if token.named {
                format!("tokens.{}.env_file", token.name)
            } else {
                "token.env_file".to_string()
            };
            problems.push(NotWritable {
                key,
                dir: env_dir,
                what: "the env file (by a temp file renamed over it)",
                reason,
                missing,
            });
        }
    }
    let state = &cfg.supervisor.state_dir;
    if let Err((reason, missing)) = probe(state, true) {
        problems.push(NotWritable {
            key: "supervisor.state_dir".to_string(),
            dir: state.clone(),
            what: "token.json and login.json",
            reason,
            missing,
        });
    }
    problems
}

/// Create and remove a small file in `dir` (or, with `may_create`, in its nearest existing
/// ancestor when `dir` does not exist yet).
fn probe(dir: &Path, may_create: bool) -> Result<(), (String, bool)> {
    use std::io::Write;
    let mut dir = dir.to_path_buf();
    while may_create && !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => dir = PathBuf::from("."),
        }
        if dir == Path::new(".") {
            break;
        }
    }
    if dir.exists() && !dir.is_dir() {
        return Err((format!("{} is not a directory", dir.display()), false));
    }
    if !dir.is_dir() {
        return Err(("no such directory; create it".into(), true));
    }
    let path = dir.join(format!(".warden-write-check-{}", std::process::id()));
    let result = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(b"ok\n")?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&path);
    result.map_err(|e| (e.to_string(), false))
}
