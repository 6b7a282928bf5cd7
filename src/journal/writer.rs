//! The writer thread: the only code that touches the journal files.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use super::{Event, Msg, FILE_NAME, ROTATED_NAME};

pub(super) struct Writer {
    dir: PathBuf,
    max_bytes: u64,
    /// The open journal file and its size; `None` until opened (or after a failure).
    file: Option<(File, u64)>,
    next_seq: u64,
    /// The last write failed (logged once until a write succeeds again).
    failing: bool,
}

impl Writer {
    pub(super) fn new(dir: PathBuf, max_bytes: u64) -> Writer {
        Writer {
            dir,
            max_bytes,
            file: None,
            next_seq: 0,
            failing: false,
        }
    }

    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        self.next_seq = last_seq(&self.dir) + 1;
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Event(mut ev) => {
                    ev.seq = self.next_seq;
                    self.next_seq += 1;
                    self.write(&ev);
                }
                Msg::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    fn write(&mut self, ev: &Event) {
        let mut line = match serde_json::to_string(ev) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push('\n');
        match self.append(line.as_bytes()) {
            Ok(()) => {
                if self.failing {
                    tracing::info!("event history: writing to {} again", self.path().display());
                    self.failing = false;
                }
            }
            Err(e) => {
                self.file = None;
                if !self.failing {
                    tracing::warn!(
                        "event history: cannot write {} ({e}); events are not kept until it works again",
                        self.path().display()
                    );
                    self.failing = true;
                }
            }
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(self.open()?);
        }
        let size = self.file.as_ref().map_or(0, |(_, s)| *s);
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            self.file = None;
            std::fs::rename(self.path(), self.dir.join(ROTATED_NAME))?;
            self.file = Some(self.open()?);
        }
        let (file, size) = self.file.as_mut().expect("opened above");
        file.write_all(line)?;
        *size += line.len() as u64;
        Ok(())
    }

    /// Open (or create, 0600) the journal for appending. A last line cut short by a crash is
    /// ended first, so the next event starts a line of its own.
    fn open(&self) -> std::io::Result<(File, u64)> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(self.path())?;
        let mut size = file.metadata()?.len();
        if size > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(size - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                size += 1;
            }
        }
        Ok((file, size))
    }
}

/// The highest `seq` already in the journal (0 for none): the current file's last event, or
/// the previous file's when the current one is empty.
fn last_seq(dir: &std::path::Path) -> u64 {
    [FILE_NAME, ROTATED_NAME]
        .iter()
        .find_map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).ok()?;
            text.lines()
                .rev()
                .find_map(|l| serde_json::from_str::<Event>(l).ok())
                .map(|e| e.seq)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Kind;

    fn event(n: usize) -> Event {
        Event::new(Kind::ProgramStarted, "p", format!("event {n}"))
    }

    #[test]
    fn rotates_at_the_limit_keeps_one_previous_file_and_numbers_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new(dir.path().join("state"), 1000);
        w.next_seq = last_seq(&w.dir) + 1;
        for n in 0..100 {
            let mut e = event(n);
            e.seq = w.next_seq;
            w.next_seq += 1;
            w.write(&e);
        }
        let cur = std::fs::metadata(dir.path().join("state").join(FILE_NAME)).unwrap();
        let old = std::fs::metadata(dir.path().join("state").join(ROTATED_NAME)).unwrap();
        assert!(cur.len() <= 1000 && old.len() <= 1000, "{cur:?} {old:?}");
        assert!(
            old.len() > 800,
            "the previous file was filled: {}",
            old.len()
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(cur.permissions().mode() & 0o777, 0o600);
        assert_eq!(last_seq(&dir.path().join("state")), 100);
    }

    #[test]
    fn a_line_cut_short_is_ended_before_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "{\"seq\":4,\"time\":\"2026-12-07T01:00:00Z\",\"kind\":\"program_started\",\"subject\":\"p\",\"message\":\"m\"}\n{\"seq\":5,\"ti",
        )
        .unwrap();
        assert_eq!(last_seq(dir.path()), 4);
        let mut w = Writer::new(dir.path().to_path_buf(), 1 << 20);
        let mut e = event(1);
        e.seq = 5;
        w.write(&e);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let last: Event = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last.seq, 5);
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn a_directory_that_refuses_writes_fails_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, "").unwrap();
        let mut w = Writer::new(blocker.join("state"), 1 << 20);
        w.write(&event(1));
        assert!(w.failing);
        w.write(&event(2));
        assert!(w.failing);
    }
}
