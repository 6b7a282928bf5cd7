//! The one place that waits for child processes.
//!
//! warden owns every `waitpid` (design 1 of DESIGN.md): programs are spawned with
//! `std::process::Command` through [`Reaper::spawn`] and their `Child` handles are never waited
//! on. A single task wakes on SIGCHLD, drains `waitpid(-1, WNOHANG)` and routes each status to
//! whoever registered the pid. A status with no registered pid belongs to an orphan that was
//! re-parented to us (we are PID 1 or a subreaper): it is counted and dropped.
//!
//! The race "child exits before its pid is registered" cannot happen: `spawn` registers the pid
//! while holding the same lock the drain loop holds, so the drain cannot run between `fork` and
//! registration. The lock also covers std's own `waitpid` on a failed `exec`.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, Notify};

/// How a process ended (the model owns the type).
pub use crate::model::ExitStatus;

#[derive(Default)]
struct Routes {
    waiters: HashMap<i32, oneshot::Sender<ExitStatus>>,
}

/// How many orphans the reaper has collected; read-only.
#[derive(Clone, Debug, Default)]
pub struct OrphanCounter(Arc<AtomicU64>);

impl OrphanCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Shared handle to the reaper. Cheap to clone.
#[derive(Clone)]
pub struct Reaper {
    routes: Arc<Mutex<Routes>>,
    orphans: Arc<AtomicU64>,
    /// Woken after every drain, so code waiting for a process group to empty can re-check.
    reaped: Arc<Notify>,
    metrics: Arc<std::sync::OnceLock<Arc<crate::metrics::Metrics>>>,
}

impl Reaper {
    /// Start the SIGCHLD task on the current runtime. Call before spawning anything.
    pub fn start() -> std::io::Result<Reaper> {
        let reaper = Reaper {
            routes: Arc::default(),
            orphans: Arc::default(),
            reaped: Arc::new(Notify::new()),
            metrics: Arc::default(),
        };
        let mut sigchld = signal(SignalKind::child())?;
        let r = reaper.clone();
        tokio::spawn(async move {
            loop {
                r.drain();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, Routes> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawn `cmd` and register its pid; the receiver yields its exit status exactly once.
    pub fn spawn(
        &self,
        cmd: &mut Command,
    ) -> std::io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut routes = self.lock();
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        routes.waiters.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    /// Reap every exited child now. Returns how many statuses were collected.
    pub fn drain(&self) -> usize {
        let mut routes = self.lock();
        let mut n = 0;
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitStatus::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => continue, // stopped/continued: not an exit
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("waitpid failed: {e}");
                    break;
                }
            };
            n += 1;
            match routes.waiters.remove(&pid.as_raw()) {
                // The receiver may be gone if its actor was dropped; the status is moot then.
                Some(tx) => drop(tx.send(status)),
                None => {
                    self.orphans.fetch_add(1, Ordering::Relaxed);
                    if let Some(m) = self.metrics.get() {
                        m.inc_zombies_reaped();
                    }
                }
            }
        }
        drop(routes);
        if n > 0 {
            self.reaped.notify_waiters();
        }
        n
    }

    /// Count reaped orphans in `warden_zombies_reaped_total` from now on.
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Orphans (processes we did not spawn) reaped so far.
    pub fn orphans_reaped(&self) -> u64 {
        self.orphans.load(Ordering::Relaxed)
    }

    /// A read-only view of the orphan count, for status readers that must not hold the reaper.
    pub fn orphan_counter(&self) -> OrphanCounter {
        OrphanCounter(self.orphans.clone())
    }

    /// Resolves after the next drain that collected something.
    pub fn reaped(&self) -> tokio::sync::futures::Notified<'_> {
        self.reaped.notified()
    }
}

/// Ask the kernel to re-parent orphaned descendants to us, so we can reap them even when we
/// are not PID 1 (under systemd, in a shell).
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes a plain integer argument.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
