//! warden's own open-file limit, and the one its children get.
//!
//! warden holds up to 512 HTTP connections, probe sockets and every program's pipes, so it
//! raises its soft `RLIMIT_NOFILE` to the hard limit at start. Programs must not notice: many
//! (Python's `select`, older libraries) break with thousands of descriptors, and an operator's
//! `ulimit -n` is meant for them. So each child gets back the soft limit warden started with,
//! set between fork and exec.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The soft limit warden started with; `NOT_RAISED` while warden runs with it unchanged.
static ORIGINAL_SOFT: AtomicU64 = AtomicU64::new(NOT_RAISED);
const NOT_RAISED: u64 = u64::MAX;

/// Raise the soft open-file limit to the hard one. Returns (before, after) when it changed.
pub fn raise_open_files() -> std::io::Result<Option<(u64, u64)>> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur >= lim.rlim_max {
        return Ok(None);
    }
    let before = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    ORIGINAL_SOFT.store(before, Ordering::Relaxed);
    Ok(Some((before, lim.rlim_max)))
}

/// Make `cmd`'s process start with the soft open-file limit warden itself started with.
pub fn give_original_open_files(cmd: &mut Command) {
    let original = ORIGINAL_SOFT.load(Ordering::Relaxed);
    if original == NOT_RAISED {
        return;
    }
    // SAFETY: the closure runs between fork and exec and only makes two syscalls on a stack
    // struct: no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim.rlim_cur = original.min(lim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// warden's current soft open-file limit, if it can be read.
pub fn open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}
