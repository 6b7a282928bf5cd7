//! warden's own log output (tracing) and the re-emission of programs' stdout/stderr.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;
use crate::log_sink;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Longest line re-emitted in one piece; longer output is split rather than buffered forever.
const MAX_LINE: usize = 16 * 1024;
/// Room made in the line buffer before each read.
const READ_CHUNK: usize = 4096;

/// Install the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    let layer = tracing_subscriber::fmt::layer().with_writer(QueuedLine::new);
    let registry = tracing_subscriber::registry().with(filter(std::env::var("RUST_LOG").ok()));
    let _ = match format {
        LogFormat::Text => registry
            .with(layer.with_target(false).with_ansi(false))
            .try_init(),
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_current_span(false))
            .try_init(),
    };
}

/// The log filter from `RUST_LOG`: comma-separated `level` and `target=level` directives
/// (`debug`, `warn,warden::token=debug`). Unset, empty or unparsable means `info`.
///
/// Why not `EnvFilter`: its span and field filters need a regex engine (a DFA builder) that
/// costs warden ~10 % of its code size, and so resident memory, for a feature nobody uses here.
fn filter(directives: Option<String>) -> Targets {
    directives
        .filter(|d| !d.trim().is_empty())
        .and_then(|d| d.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

thread_local! {
    /// The program whose output line is being logged on this thread, if any: its line goes to
    /// that program's queue (and counts against it) rather than to warden's own.
    static SOURCE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// One formatted log event, handed to [`log_sink`] (which never blocks) when tracing is done
/// writing it. Writing to stderr directly would stall warden whenever its reader does.
struct QueuedLine {
    buf: Vec<u8>,
}

impl QueuedLine {
    fn new() -> Self {
        QueuedLine { buf: Vec::new() }
    }
}

impl std::io::Write for QueuedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        // `try_with`: a thread being torn down has no SOURCE any more; its lines are warden's.
        let source = SOURCE.try_with(|src| src.borrow().clone()).ok().flatten();
        log_sink::enqueue(source.as_deref().unwrap_or(log_sink::OWN), line);
    }
}

fn emit(program: &str, stream: &'static str, bytes: &[u8]) {
    let line = String::from_utf8_lossy(bytes);
    let line = line.trim_end_matches('\r');
    SOURCE.with_borrow_mut(|src| *src = Some(program.to_string()));
    match FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => tracing::info!("{program} | {line}"),
        LogFormat::Json => tracing::info!(program, stream, "{line}"),
    }
    SOURCE.with_borrow_mut(|src| *src = None);
}

/// Copy a child's pipe to the log, one event per line, tagged with the program name. The pipe
/// is always read as fast as the program writes: lines warden cannot pass on are dropped by
/// [`log_sink`], so a program never blocks on a full pipe because warden's own output is stalled.
/// Partial lines are flushed at EOF; invalid UTF-8 is replaced, never fatal.
///
/// The buffer is allocated only once the pipe has something to read and given back when it is
/// empty again: most programs are quiet most of the time, and with hundreds of them a resident
/// buffer per pipe would be most of warden's heap.
pub fn pump(program: String, stream: &'static str, fd: OwnedFd) {
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            if pipe.readable().await.is_err() {
                break;
            }
            buf.reserve(READ_CHUNK);
            match pipe.try_read_buf(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => break,
            }
            let mut start = 0;
            while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
                emit(&program, stream, &buf[start..start + pos]);
                start += pos + 1;
            }
            buf.drain(..start);
            while buf.len() >= MAX_LINE {
                emit(&program, stream, &buf[..MAX_LINE]);
                buf.drain(..MAX_LINE);
            }
            if buf.is_empty() {
                buf = Vec::new();
            }
        }
        if !buf.is_empty() {
            emit(&program, stream, &buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn enabled(f: &Targets, target: &str, level: Level) -> bool {
        f.would_enable(target, &level)
    }

    #[test]
    fn rust_log_directives() {
        let f = filter(Some("warn,warden::token=debug".into()));
        assert!(enabled(&f, "warden::token::keeper", Level::DEBUG));
        assert!(!enabled(&f, "warden::supervisor", Level::INFO));
        assert!(enabled(&f, "warden::supervisor", Level::WARN));
        let f = filter(Some("debug".into()));
        assert!(enabled(&f, "hyper", Level::DEBUG));
        assert!(!enabled(&f, "hyper", Level::TRACE));
    }

    #[test]
    fn unset_empty_or_bad_rust_log_means_info() {
        for v in [None, Some(String::new()), Some("=!=".to_string())] {
            let f = filter(v);
            assert!(enabled(&f, "warden", Level::INFO));
            assert!(!enabled(&f, "warden", Level::DEBUG));
        }
    }
}
