//! Reading the history back: both files, a window of it, oldest first.

use std::collections::HashSet;
use std::path::Path;

use jiff::Timestamp;

use super::{Event, FILE_NAME, ROTATED_NAME};

/// Where a window starts: after an event (`seq`) or after a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Seq(u64),
    Time(Timestamp),
}

impl Since {
    /// `42` (a `seq`) or an RFC 3339 time with its offset (`2026-12-07T09:15:00+05:30`).
    pub fn parse(s: &str) -> Result<Since, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Since::Seq)
                .map_err(|_| format!("since={s}: the sequence id is too large"));
        }
        s.parse().map(Since::Time).map_err(|_| {
            format!(
                "since={s:?}: give an event's seq (a whole number) or an RFC 3339 time with its \
                 offset, like 2026-12-07T09:15:00+05:30"
            )
        })
    }

    fn admits(self, e: &Event) -> bool {
        match self {
            Since::Seq(n) => e.seq > n,
            Since::Time(t) => e.time > t,
        }
    }
}

/// Which events to read: with `since`, the oldest `limit` after it (a reader that follows
/// pages forward without gaps); without, the newest `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub since: Option<Since>,
    pub limit: usize,
}

/// Events oldest first, and whether more matched than `limit` allowed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub events: Vec<Event>,
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the event history {path}: {source}")]
pub struct ReadError {
    path: String,
    source: std::io::Error,
}

/// Read the journal in `dir`. Lines that are not events (a line cut short by a crash) are
/// skipped; missing files are an empty history.
pub fn read(dir: &Path, q: &Query) -> Result<Window, ReadError> {
    // The current file first: a rotation between the two reads then shows one file twice
    // (the copies are dropped by seq) instead of losing one.
    let current = read_file(&dir.join(FILE_NAME))?;
    let previous = read_file(&dir.join(ROTATED_NAME))?;
    let lines = previous.lines().chain(current.lines());
    let mut seen = HashSet::new();
    let mut window = Window::default();
    match q.since {
        None => {
            // Newest first, parsing no more lines than needed.
            for line in lines.rev() {
                let Ok(e) = serde_json::from_str::<Event>(line) else {
                    continue;
                };
                if !seen.insert(e.seq) {
                    continue;
                }
                if window.events.len() == q.limit {
                    window.more = true;
                    break;
                }
                window.events.push(e);
            }
            window.events.reverse();
        }
        Some(since) => {
            let mut all: Vec<Event> = lines
                .filter_map(|l| serde_json::from_str::<Event>(l).ok())
                .filter(|e| since.admits(e) && seen.insert(e.seq))
                .collect();
            all.sort_by_key(|e| e.seq);
            window.more = all.len() > q.limit;
            all.truncate(q.limit);
            window.events = all;
        }
    }
    Ok(window)
}

fn read_file(path: &Path) -> Result<String, ReadError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ReadError {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Kind;

    fn line(seq: u64, minute: u32) -> String {
        let mut e = Event::new(Kind::ProgramStarted, "p", format!("e{seq}"));
        e.seq = seq;
        e.time = format!("2026-12-07T03:{minute:02}:00Z").parse().unwrap();
        serde_json::to_string(&e).unwrap() + "\n"
    }

    fn journal(previous: &[u64], current: &[u64]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let text = |seqs: &[u64]| seqs.iter().map(|&s| line(s, s as u32)).collect::<String>();
        std::fs::write(dir.path().join(ROTATED_NAME), text(previous)).unwrap();
        std::fs::write(dir.path().join(FILE_NAME), text(current) + "{\"cut sh").unwrap();
        dir
    }

    fn seqs(w: &Window) -> Vec<u64> {
        w.events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn the_newest_come_from_both_files_oldest_first() {
        let dir = journal(&[1, 2, 3], &[4, 5]);
        let q = Query {
            since: None,
            limit: 3,
        };
        let w = read(dir.path(), &q).unwrap();
        assert_eq!(seqs(&w), [3, 4, 5]);
        assert!(w.more);
        let all = read(dir.path(), &Query { limit: 10, ..q }).unwrap();
        assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
        assert!(!all.more);
    }

    #[test]
    fn since_pages_forward_by_seq_or_time() {
        let dir = journal(&[1, 2, 3], &[4, 5]);
        let q = |since: &str, limit| Query {
            since: Some(Since::parse(since).unwrap()),
            limit,
        };
        let w = read(dir.path(), &q("2", 2)).unwrap();
        assert_eq!((seqs(&w), w.more), (vec![3, 4], true));
        let w = read(dir.path(), &q("4", 10)).unwrap();
        assert_eq!((seqs(&w), w.more), (vec![5], false));
        // 03:03Z is 08:33 in Kolkata: strictly after it.
        let w = read(dir.path(), &q("2026-12-07T08:33:00+05:30", 10)).unwrap();
        assert_eq!(seqs(&w), [4, 5]);
    }

    #[test]
    fn a_file_read_twice_during_a_rotation_is_listed_once() {
        let dir = journal(&[1, 2, 3], &[1, 2, 3]);
        let w = read(
            dir.path(),
            &Query {
                since: None,
                limit: 10,
            },
        )
        .unwrap();
        assert_eq!(seqs(&w), [1, 2, 3]);
    }

    #[test]
    fn bad_since_values_say_what_is_expected() {
        assert_eq!(Since::parse("17"), Ok(Since::Seq(17)));
        assert!(Since::parse("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(Since::parse("2026-12-07T09:15:00").is_err(), "no offset");
        assert!(Since::parse("99999999999999999999999").is_err());
    }

    #[test]
    fn no_files_is_an_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        let w = read(
            dir.path(),
            &Query {
                since: None,
                limit: 5,
            },
        )
        .unwrap();
        assert!(w.events.is_empty() && !w.more);
    }
}
