//! `warden status --watch`: the status table redrawn every few seconds, for people who live in
//! SSH. A warden that goes away is shown as not reachable and asked again next round.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;

use super::{endpoint, get_status, render_status, ClientError};

/// Cursor home, then clear the screen: the table redraws in place.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Runs until the process is interrupted; returns `Ok` when stdout goes away (`| head`), an
/// error for a config from which warden cannot be found.
pub fn watch(config: &Path, every: Duration) -> Result<(), ClientError> {
    let ep = endpoint(config)?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let now = Timestamp::now();
        let body = match get_status(&ep) {
            Ok(status) => render_status(&status, now),
            Err(e) => format!("warden: not reachable ({e})\n"),
        };
        let frame = if tty {
            format!("{CLEAR}{body}")
        } else {
            format!("{body}\n")
        };
        let mut out = std::io::stdout().lock();
        if out
            .write_all(frame.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(());
        }
        drop(out);
        std::thread::sleep(every);
    }
}
