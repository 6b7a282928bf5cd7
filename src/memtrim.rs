//! Unmap the pages of warden's own code that start-up faulted in and the steady state does not use.
//!
//! Why this is needed: on a page fault in a file mapping the kernel maps not one page but every
//! cached page of the surrounding 64 KiB ("fault-around"). Start-up (argument parsing, config
//! loading, the first spawns) runs code spread over the whole binary, so nearly all of `.text`
//! ends up counted in RSS, although a supervisor at rest runs a small part of it.
//!
//! `MADV_DONTNEED` on a read-only file mapping only removes it from warden's page tables: the
//! pages stay in the page cache (clean, shared, reclaimable), and code that runs again later
//! maps them back with a minor fault. A mapping that holds an anonymous (copy-on-write) page is
//! never touched: there DONTNEED would drop data written at load time (relocations), so only
//! mappings with no anonymous page at all qualify.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// When the first trim runs: start-up (config, first spawns, HTTP bind) is over by then.
const AFTER_START: Duration = Duration::from_secs(1);
/// Later trims give back what a rare path (a token refresh or validation, a config reload)
/// faulted in. Each costs a read of /proc/self/smaps and a few dozen minor faults.
const EVERY: Duration = Duration::from_secs(60);

/// Trim once start-up has settled, then every minute; runs until the runtime stops.
pub async fn keep_trimmed() {
    tokio::time::sleep(AFTER_START).await;
    loop {
        let advised = trim_own_code();
        tracing::debug!(
            "code pages trimmed ({} KiB of mappings advised)",
            advised / 1024
        );
        tokio::time::sleep(EVERY).await;
    }
}

/// One mapping of `/proc/self/smaps` that may be trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
}

/// Unmap the resident pages of the running executable's read-only mappings. Returns the bytes of
/// address space advised (not all of it was resident). Best effort: any failure returns 0.
pub fn trim_own_code() -> usize {
    let Ok(meta) = std::fs::metadata("/proc/self/exe") else {
        return 0;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let dev = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let mut total = 0;
    for r in trimmable(&smaps, dev, meta.ino()) {
        // SAFETY: the range is a whole mapping of our own executable with no write permission
        // and no anonymous page; DONTNEED on it only drops page-table entries of clean page-cache
        // pages, which the next access maps again with the same contents.
        let rc = unsafe {
            libc::madvise(
                r.start as *mut libc::c_void,
                r.end - r.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            total += r.end - r.start;
        }
    }
    total
}

/// The mappings of the file (`dev` as major/minor, `ino`) that are not writable and hold no
/// anonymous page, from the text of `/proc/PID/smaps`.
fn trimmable(smaps: &str, dev: (u32, u32), ino: u64) -> Vec<Range> {
    let mut out = Vec::new();
    // The mapping being read: Some(range) while its header matched and no anonymous page was seen.
    let mut current: Option<Range> = None;
    let mut candidate = false;
    let mut finish = |current: &mut Option<Range>, candidate: bool| {
        if let (Some(r), true) = (current.take(), candidate) {
            out.push(r);
        }
    };
    for line in smaps.lines() {
        if let Some((range, is_ours)) = header(line, dev, ino) {
            finish(&mut current, candidate);
            current = Some(range);
            candidate = is_ours;
        } else if let Some(rest) = line.strip_prefix("Anonymous:") {
            let kib: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(1);
            if kib != 0 {
                candidate = false;
            }
        }
    }
    finish(&mut current, candidate);
    out
}

/// Parse a mapping header `start-end perms offset maj:min inode path`; the bool says whether it
/// is a read-only mapping of the given file. `None` for the other lines (`Rss:`, …).
fn header(line: &str, dev: (u32, u32), ino: u64) -> Option<(Range, bool)> {
    let mut f = line.split_ascii_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = f.next()?;
    if perms.len() != 4 {
        return None;
    }
    let _offset = f.next()?;
    let (maj, min) = f.next()?.split_once(':')?;
    let maj = u32::from_str_radix(maj, 16).ok()?;
    let min = u32::from_str_radix(min, 16).ok()?;
    let inode: u64 = f.next()?.parse().ok()?;
    let ours = inode == ino && (maj, min) == dev && !perms.contains('w');
    Some((Range { start, end }, ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 4242 /usr/bin/warden
Rss:                 400 kB
Anonymous:             0 kB
55d0a0100000-55d0a0300000 r-xp 00100000 fd:01 4242 /usr/bin/warden
Rss:                1900 kB
Anonymous:             0 kB
55d0a0300000-55d0a0320000 r--p 00300000 fd:01 4242 /usr/bin/warden
Rss:                 120 kB
Anonymous:           120 kB
55d0a0320000-55d0a0321000 rw-p 00320000 fd:01 4242 /usr/bin/warden
Anonymous:             4 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 77 /usr/lib/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000300000 r-xp 00000000 fd:02 4242 /other/dev/same-inode
Anonymous:             0 kB
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
Anonymous:            32 kB
";

    #[test]
    fn only_read_only_mappings_of_the_exe_without_anonymous_pages() {
        let got = trimmable(SMAPS, (0xfd, 1), 4242);
        assert_eq!(
            got,
            vec![
                Range {
                    start: 0x55d0a0000000,
                    end: 0x55d0a0100000
                },
                Range {
                    start: 0x55d0a0100000,
                    end: 0x55d0a0300000
                },
            ]
        );
    }

    #[test]
    fn an_unparsable_anonymous_count_disqualifies_the_mapping() {
        let smaps = "1000-2000 r-xp 00000000 fd:01 9 /x\nAnonymous: lots kB\n";
        assert!(trimmable(smaps, (0xfd, 1), 9).is_empty());
    }

    #[test]
    fn trimming_ourselves_keeps_the_process_working() {
        // The test binary trims its own code, then keeps running code from it.
        let advised = trim_own_code();
        assert!(advised > 0, "nothing of the test binary was trimmed");
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(v.iter().sum::<u64>(), 55);
    }
}
