//! warden's own log output (tracing) and the re-emission of programs' stdout/stderr.

use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use tokio::io::AsyncReadExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Longest line re-emitted in one piece; longer output is split rather than buffered forever.
const MAX_LINE: usize = 16 * 1024;

/// Install the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// stderr that never fails: when whoever reads warden's log goes away (a closed pipe), log
/// lines are dropped. Failing instead makes tracing report the error on stderr, which panics,
/// and a supervisor whose tasks panic leaves its programs behind.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn emit(program: &str, stream: &'static str, bytes: &[u8]) {
    let line = String::from_utf8_lossy(bytes);
    let line = line.trim_end_matches('\r');
    match FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => tracing::info!("{program} | {line}"),
        LogFormat::Json => tracing::info!(program, stream, "{line}"),
    }
}

/// Copy a child's pipe to the log, one event per line, tagged with the program name.
/// Partial lines are flushed at EOF; invalid UTF-8 is replaced, never fatal.
pub fn pump(program: String, stream: &'static str, fd: OwnedFd) {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let n = match pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
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
            if buf.capacity() > 4 * MAX_LINE && buf.len() < 1024 {
                buf.shrink_to(1024);
            }
        }
        if !buf.is_empty() {
            emit(&program, stream, &buf);
        }
    });
}
