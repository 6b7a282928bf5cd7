//! Watching `supervisor.toml` on disk.
//!
//! The parent directory is watched, not the file: editors and deploy tools replace the file by
//! rename, which would silently end a watch on the old inode.

use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

/// Keeps the watch alive; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Send `()` whenever `file` may have changed. Bursts are debounced by the receiver.
pub fn watch(file: &Path, tx: UnboundedSender<()>) -> notify::Result<ConfigWatch> {
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = file.file_name().map(|n| n.to_os_string());
    let mut watcher = crate::signals::with_signals_blocked(|| {
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if matches!(ev.kind, EventKind::Access(_)) {
                return;
            }
            if ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = tx.send(());
            }
        })
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(ConfigWatch { _watcher: watcher })
}
