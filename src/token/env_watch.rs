//! Notice when something other than warden puts a new token into the env file (SPEC §4), for
//! example the operator's own `manual_token_refresh.py`.
//!
//! The parent directory is watched, not the file: editors and scripts that replace a file by
//! renaming a new one over it (warden itself does) would otherwise leave the watch on a dead
//! inode. A burst of events is coalesced (`DEBOUNCE` of quiet, at most `MAX_DELAY`), the key is
//! re-read, and the value is delivered only when it differs from the "known" one: the value
//! that was in the file at start, the last one delivered, or the one warden declared with
//! [`EnvFileWatcher::set_known`] before writing it. Idle, nothing runs: inotify wakes us.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Secret;
use crate::token::store::{read_env_value, StoreError};

const DEBOUNCE: Duration = Duration::from_millis(150);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Watches one key of one dotenv file. Dropping it stops the watch and closes the receiver.
pub struct EnvFileWatcher {
    known: Arc<Mutex<Option<Secret>>>,
    rereads: Arc<AtomicU64>,
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for EnvFileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvFileWatcher").finish_non_exhaustive()
    }
}

impl EnvFileWatcher {
    /// Start watching `key` in `path`; new values arrive on the receiver. Must be called inside
    /// a tokio runtime (the debounce task runs on it). Empty values are never delivered.
    pub fn start(path: &Path, key: &str) -> Result<(Self, mpsc::Receiver<Secret>), StoreError> {
        let initial = read_env_value(path, key)
            .ok()
            .flatten()
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        let known = Arc::new(Mutex::new(initial));

        // Paths whose events matter: the file as named, and the file a symlink points at
        // (the rewrite replaces the target, so that is where the events happen).
        let mut targets = vec![path.to_path_buf()];
        if let Ok(real) = std::fs::canonicalize(path) {
            if real != path {
                targets.push(real);
            }
        }
        let dirs: Vec<PathBuf> = {
            let mut d: Vec<PathBuf> = targets.iter().map(|t| parent_dir(t)).collect();
            d.dedup();
            d
        };
        let targets: Vec<PathBuf> = targets
            .iter()
            .filter_map(|t| Some(parent_dir(t).join(t.file_name()?)))
            .collect();

        // Capacity 1: a pending poke already means "re-read"; more would be redundant.
        let (poke_tx, poke_rx) = mpsc::channel::<()>(1);
        let mut watcher = crate::signals::with_signals_blocked(|| {
            notify::recommended_watcher(move |res: notify::Result<Event>| {
                let relevant = match res {
                    Ok(ev) => {
                        ev.need_rescan()
                            || (is_change(&ev.kind) && ev.paths.iter().any(|p| targets.contains(p)))
                    }
                    // The watch may have lost events (queue overflow): re-read to be safe.
                    Err(_) => true,
                };
                if relevant {
                    let _ = poke_tx.try_send(());
                }
            })
        })
        .map_err(|e| watch_err(path, e))?;
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| watch_err(dir, e))?;
        }

        let (out_tx, out_rx) = mpsc::channel(4);
        let rereads = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(
            poke_rx,
            out_tx,
            path.to_path_buf(),
            key.to_string(),
            known.clone(),
            rereads.clone(),
        ));
        Ok((
            EnvFileWatcher {
                known,
                rereads,
                _watcher: watcher,
            },
            out_rx,
        ))
    }

    /// Declare `token` as already known, so that finding it in the file is not news. Call it
    /// before warden writes its own token.
    pub fn set_known(&self, token: &Secret) {
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
    }

    /// How many times the file has been re-read after a change (for tests and debugging: it
    /// stays still while nothing touches the directory).
    pub fn rereads(&self) -> u64 {
        self.rereads.load(Ordering::Relaxed)
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn watch_err(path: &Path, e: notify::Error) -> StoreError {
    let source = match e.kind {
        notify::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    };
    StoreError::Io {
        path: path.to_path_buf(),
        action: "watch",
        source,
    }
}

/// Opening or reading the file (which we do ourselves) is not a change; finishing a write is.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

async fn run(
    mut pokes: mpsc::Receiver<()>,
    out: mpsc::Sender<Secret>,
    path: PathBuf,
    key: String,
    known: Arc<Mutex<Option<Secret>>>,
    rereads: Arc<AtomicU64>,
) {
    while pokes.recv().await.is_some() {
        let deadline = tokio::time::Instant::now() + MAX_DELAY;
        loop {
            let quiet = tokio::time::sleep(
                DEBOUNCE.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            );
            tokio::select! {
                p = pokes.recv() => if p.is_none() { return },
                _ = quiet => break,
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        rereads.fetch_add(1, Ordering::Relaxed);
        let value = match read_env_value(&path, &key) {
            Ok(Some(v)) if !v.is_empty() => Secret::new(v),
            Ok(_) => continue,
            Err(e) => {
                // Typically a non-atomic writer caught mid-way; its next event brings us back.
                tracing::debug!(error = %e, "env file watcher: cannot read the file yet");
                continue;
            }
        };
        {
            let mut k = known.lock().unwrap_or_else(|p| p.into_inner());
            if k.as_ref() == Some(&value) {
                continue;
            }
            *k = Some(value.clone());
        }
        if out.send(value).await.is_err() {
            return;
        }
    }
}
