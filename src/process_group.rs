//! Signalling and waiting on a process group: shared by program actors and token commands
//! (it sits below both, so neither of those modules imports the other).

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::reaper::Reaper;

/// Send `sig` to every process of the group. A group that no longer exists is not an error.
pub fn signal_group(pgid: i32, sig: Signal) {
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, "cannot send {sig} to process group: {e}"),
    }
}

/// True while any process (zombies included) is in the group.
pub fn group_alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

/// Wait until the group is empty or `deadline` passes; true when it emptied.
///
/// Woken by every reap (members that are our descendants are re-parented to us and reaped),
/// with a slow fallback poll for members we cannot see exit.
pub async fn wait_group_empty(reaper: &Reaper, pgid: i32, deadline: Instant) -> bool {
    loop {
        let reaped = reaper.reaped();
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let tick = Instant::now() + Duration::from_millis(50);
        tokio::select! {
            _ = reaped => {}
            _ = tokio::time::sleep_until(tick.min(deadline)) => {}
        }
    }
}
