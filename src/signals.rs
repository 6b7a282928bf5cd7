//! Signals delivered to warden, turned into events for the supervisor loop.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;

/// Handled by warden itself (SPEC §7); everything in [`FORWARDED`] goes to the programs.
pub const OWN: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];

/// Catchable signals that mean something to a program rather than to its supervisor.
pub const FORWARDED: [i32; 10] = [
    libc::SIGQUIT,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGALRM,
    libc::SIGCONT,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGVTALRM,
    libc::SIGPWR,
    libc::SIGURG,
];

/// Listen for every signal in [`OWN`] and [`FORWARDED`]; each delivery becomes one message.
pub fn listen(tx: UnboundedSender<i32>) -> std::io::Result<()> {
    for &num in OWN.iter().chain(FORWARDED.iter()) {
        let mut stream = signal(SignalKind::from_raw(num))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(num).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// Run `f` with every signal blocked in this thread, so that threads it starts (the inotify
/// thread of the `notify` crate) inherit the mask and never take a signal meant for the
/// runtime: each one delivered there costs an extra wake-up on the way to the runtime.
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    let mut old = SigSet::empty();
    let blocked =
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut old)).is_ok();
    let out = f();
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    out
}
