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
