//! The event history (issue 16): what happened to the tokens, the programs, the config, the
//! notifications and the fleet, one JSON object per line in `{state_dir}/events.jsonl`.
//!
//! [`Journal::record`] never blocks and never touches the disk: it hands the event to a
//! writer thread through a bounded channel, so a slow or full disk cannot stall PID 1's loop.
//! The writer numbers the events (`seq`, continued across restarts), appends them, and rotates
//! the file at [`MAX_FILE_BYTES`], keeping one previous file ([`ROTATED_NAME`]); readers
//! ([`read`]) see both. Messages are built from warden's own words and error texts, which never
//! carry a secret (README "Secrets").

mod event;
pub mod notifications;
pub mod programs;
mod read;
pub mod reloads;
pub mod warden;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

pub use event::{Event, Kind, Tone};
pub use read::{read, Query, ReadError, Since, Window};

/// The journal file inside `state_dir`.
pub const FILE_NAME: &str = "events.jsonl";
/// The previous journal file, kept after a rotation.
pub const ROTATED_NAME: &str = "events.jsonl.1";
/// A file is rotated before an event would make it larger than this: the history on disk is
/// at most twice this size.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Events waiting for the writer; beyond this they are dropped (and said so once).
const QUEUE: usize = 1024;

/// What the writer thread is sent.
enum Msg {
    Event(Event),
    /// Answered once everything sent before it is written (or failed).
    Flush(std::sync::mpsc::Sender<()>),
}

/// A cheap, cloneable handle: built once at the composition root and passed to whoever records
/// events. A journal without a writer ([`Journal::disabled`]) records nothing.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Option<SyncSender<Msg>>,
    dir: PathBuf,
    /// The queue overflowed (logged once).
    overflowed: AtomicBool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .field("enabled", &self.inner.tx.is_some())
            .finish()
    }
}

impl Journal {
    /// The journal of `state_dir`, with its writer thread started (the directory is created,
    /// 0700, if missing). When the thread cannot start, events are only logged.
    pub fn open(state_dir: &Path) -> Journal {
        let (tx, rx) = sync_channel(QUEUE);
        let dir = state_dir.to_path_buf();
        let writer = writer::Writer::new(dir.clone(), MAX_FILE_BYTES);
        let spawned = std::thread::Builder::new()
            .name("warden-journal".into())
            .spawn(move || writer.run(rx));
        let tx = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!("event history disabled: cannot start its writer thread ({e})");
                None
            }
        };
        Journal {
            inner: Arc::new(Inner {
                tx,
                dir,
                overflowed: AtomicBool::new(false),
            }),
        }
    }

    /// A journal that records nothing (simulations and unit tests).
    pub fn disabled() -> Journal {
        Journal {
            inner: Arc::new(Inner {
                tx: None,
                dir: PathBuf::new(),
                overflowed: AtomicBool::new(false),
            }),
        }
    }

    /// The directory holding the journal files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.tx.is_some()
    }

    /// Queue `event` for writing; returns at once, whatever the disk does.
    pub fn record(&self, event: Event) {
        let Some(tx) = &self.inner.tx else { return };
        match tx.try_send(Msg::Event(event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if !self.inner.overflowed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "event history: the writer cannot keep up; events are being dropped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Wait (at most `timeout`) until everything recorded so far is written: called once on
    /// the way out, so the last events of a stop are not lost with the process.
    pub fn flush(&self, timeout: Duration) {
        let Some(tx) = &self.inner.tx else { return };
        let (done, rx) = std::sync::mpsc::channel();
        if tx.try_send(Msg::Flush(done)).is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }

    /// The handle one token keeper records through: its events name the token.
    pub fn for_token(&self, name: &str) -> TokenJournal {
        TokenJournal {
            journal: self.clone(),
            name: name.to_string(),
        }
    }
}

/// A [`Journal`] whose events are about one token (the subject is its name).
#[derive(Clone, Debug)]
pub struct TokenJournal {
    journal: Journal,
    name: String,
}

impl TokenJournal {
    /// A handle that records nothing.
    pub fn disabled() -> TokenJournal {
        Journal::disabled().for_token("")
    }

    pub fn record(&self, kind: Kind, message: impl Into<String>) {
        self.record_with(kind, message, |e| e);
    }

    /// Record with extra fields: `add` fills them in (`|e| e.with_source("totp")`).
    pub fn record_with(
        &self,
        kind: Kind,
        message: impl Into<String>,
        add: impl FnOnce(Event) -> Event,
    ) {
        if self.journal.is_enabled() {
            self.journal
                .record(add(Event::new(kind, &self.name, message)));
        }
    }
}
