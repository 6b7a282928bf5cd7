//! The one place that writes to warden's stderr (its log), without ever making anyone wait.
//!
//! warden's loop runs on one thread; a `write(2)` to a pipe whose reader stopped reading blocks
//! that thread, and with it signal handling, probes and `/healthz` (SPEC §7: nothing a program
//! does can stall warden). So nobody but a dedicated writer thread touches the file: log lines
//! are put in a bounded queue per source (each program, the token command, warden itself) and
//! the writer drains the queues in turn, one line at a time, so a chatty program cannot crowd
//! out the others. A line that does not fit in its source's queue is dropped and counted
//! (`warden_log_lines_dropped_total{program}`); once output flows again, the writer says how
//! many lines each source lost.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::ops::Bound;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

/// Bytes a program's queue may hold (about a thousand ordinary lines) while output is stalled.
const PROGRAM_QUEUE_BYTES: usize = 128 * 1024;
/// warden's own lines matter more and are fewer: a larger queue.
const OWN_QUEUE_BYTES: usize = 512 * 1024;

/// The source name of warden's own log lines (no program is named "").
pub const OWN: &str = "";

#[derive(Default)]
struct Queue {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
}

#[derive(Default)]
struct State {
    queues: BTreeMap<Arc<str>, Queue>,
    /// The source served last: the next line comes from the one after it.
    cursor: Option<Arc<str>>,
    /// Lines dropped per source since start (the metric).
    dropped: BTreeMap<String, u64>,
    /// Lines dropped per source and not yet reported in the log.
    unreported: BTreeMap<String, u64>,
    /// A line is being written right now (taken out of its queue, not yet out of the process).
    writing: bool,
}

impl State {
    fn is_idle(&self) -> bool {
        !self.writing && self.queues.is_empty()
    }

    /// The next line, round-robin over the sources.
    fn pop(&mut self) -> Option<Vec<u8>> {
        let after = match &self.cursor {
            Some(c) => (Bound::Excluded(c.clone()), Bound::Unbounded),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        let source = self
            .queues
            .range::<Arc<str>, _>(after)
            .next()
            .or_else(|| self.queues.iter().next())
            .map(|(k, _)| k.clone())?;
        let q = self.queues.get_mut(&source)?;
        let line = q.lines.pop_front()?;
        q.bytes -= line.len();
        if q.lines.is_empty() {
            // Programs come and go: an empty queue is not kept.
            self.queues.remove(&source);
        }
        self.cursor = Some(source);
        Some(line)
    }
}

struct Sink {
    state: Mutex<State>,
    /// Signalled when a line is queued.
    work: Condvar,
    /// Signalled when the writer finished a line.
    progress: Condvar,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static WRITER: Once = Once::new();

fn sink() -> &'static Sink {
    let s: &'static Sink = SINK.get_or_init(|| Sink {
        state: Mutex::new(State::default()),
        work: Condvar::new(),
        progress: Condvar::new(),
    });
    WRITER.call_once(|| {
        // If the thread cannot start, lines stay queued (then dropped): warden keeps running.
        let _ = std::thread::Builder::new()
            .name("log-writer".into())
            // It only moves bytes (and formats a rare summary line): a small stack will do.
            .stack_size(256 * 1024)
            .spawn(move || writer(s));
    });
    s
}

fn lock(s: &Sink) -> MutexGuard<'_, State> {
    s.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Queue one complete line (with its newline) from `source`. Never blocks on output: when the
/// source's queue is full the line is dropped and counted.
pub fn enqueue(source: &str, line: Vec<u8>) {
    let s = sink();
    let cap = if source == OWN {
        OWN_QUEUE_BYTES
    } else {
        PROGRAM_QUEUE_BYTES
    };
    let mut st = lock(s);
    let fits = match st.queues.get(source) {
        None => true,
        Some(q) => q.bytes + line.len() <= cap,
    };
    if !fits {
        *st.dropped.entry(source.to_string()).or_default() += 1;
        *st.unreported.entry(source.to_string()).or_default() += 1;
        return;
    }
    let q = match st.queues.get_mut(source) {
        Some(q) => q,
        None => st.queues.entry(Arc::from(source)).or_default(),
    };
    q.bytes += line.len();
    q.lines.push_back(line);
    drop(st);
    s.work.notify_one();
}

/// Lines dropped so far, per source (warden's own under [`OWN`]).
pub fn dropped_counts() -> BTreeMap<String, u64> {
    match SINK.get() {
        Some(s) => lock(s).dropped.clone(),
        None => BTreeMap::new(),
    }
}

/// Wait until every queued line is written, as long as the writer keeps making progress
/// (a stalled reader gets `patience` per line, not forever). For the end of `warden run`.
pub fn flush(patience: Duration) {
    let Some(s) = SINK.get() else {
        return;
    };
    let mut st = lock(s);
    let mut last = Instant::now();
    let mut queued = usize::MAX;
    while !st.is_idle() {
        let now_queued: usize = st.queues.values().map(|q| q.lines.len()).sum();
        if now_queued < queued {
            queued = now_queued;
            last = Instant::now();
        }
        let Some(left) = patience.checked_sub(last.elapsed()) else {
            return;
        };
        st = s
            .progress
            .wait_timeout(st, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

fn writer(s: &'static Sink) {
    let mut out = std::io::stderr();
    loop {
        let mut st = lock(s);
        let line = loop {
            if let Some(line) = st.pop() {
                break line;
            }
            st = s.work.wait(st).unwrap_or_else(|p| p.into_inner());
        };
        st.writing = true;
        drop(st);
        // A closed or broken stderr loses the line; there is nowhere else to say so.
        let _ = out.write_all(&line);
        let mut st = lock(s);
        st.writing = false;
        let unreported = if st.queues.is_empty() {
            std::mem::take(&mut st.unreported)
        } else {
            BTreeMap::new()
        };
        drop(st);
        s.progress.notify_all();
        // Caught up: say what was lost. Through tracing, so it is formatted like any other line.
        for (source, n) in unreported {
            let who = if source == OWN {
                "of warden's own log"
            } else {
                "of output"
            };
            tracing::warn!(
                program = %source,
                dropped = n,
                "{n} lines {who} were dropped because warden's output could not keep up \
                 (whoever reads warden's stdout/stderr was too slow or stopped reading)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(lines: &[(&str, &str)]) -> State {
        let mut st = State::default();
        for (src, l) in lines {
            let q = st.queues.entry(Arc::from(*src)).or_default();
            q.bytes += l.len();
            q.lines.push_back(l.as_bytes().to_vec());
        }
        st
    }

    #[test]
    fn sources_take_turns_and_empty_queues_go_away() {
        let mut st = state_with(&[
            ("a", "a1"),
            ("a", "a2"),
            ("a", "a3"),
            ("b", "b1"),
            ("", "w1"),
        ]);
        let mut order = Vec::new();
        while let Some(l) = st.pop() {
            order.push(String::from_utf8(l).unwrap());
        }
        assert_eq!(order, ["w1", "a1", "b1", "a2", "a3"]);
        assert!(st.queues.is_empty());
        assert!(st.is_idle());
    }
}
