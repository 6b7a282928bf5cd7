//! The process table, read from `/proc`: who is alive, who is a zombie, who belongs to whom.

/// The fields of `/proc/PID/stat` the tests look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    /// `R`, `S`, `Z`, …
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    /// Clock ticks after boot. With `pid`, it names one process even across pid reuse.
    pub starttime: u64,
}

/// Every process that could be read (processes come and go while the table is read).
pub fn proc_table() -> Vec<Proc> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some(p) = parse_stat(pid, &stat) {
            out.push(p);
        }
    }
    out
}

/// The command name (in parentheses) may hold spaces and `)`: the fields start after the last
/// `)`. Field numbers below are proc(5)'s minus 3.
fn parse_stat(pid: i32, stat: &str) -> Option<Proc> {
    let f: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    if f.len() < 20 {
        return None;
    }
    Some(Proc {
        pid,
        state: f[0].chars().next().unwrap_or('?'),
        ppid: f[1].parse().unwrap_or(0),
        pgid: f[2].parse().unwrap_or(0),
        starttime: f[19].parse().unwrap_or(0),
    })
}

/// (pid, state char, ppid, pgid) of every process.
pub fn processes() -> Vec<(i32, char, i32, i32)> {
    proc_table()
        .into_iter()
        .map(|p| (p.pid, p.state, p.ppid, p.pgid))
        .collect()
}

/// True while a process with this pid exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(pid, &stat))
        .is_some_and(|p| p.state != 'Z')
}

/// Live members of a process group.
pub fn group_members(pgid: i32) -> Vec<i32> {
    proc_table()
        .into_iter()
        .filter(|p| p.pgid == pgid && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

/// Live descendants of `root` (children, grandchildren, …) in `procs`.
pub fn descendants(root: i32, procs: &[Proc]) -> Vec<i32> {
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for c in procs.iter().filter(|p| p.ppid == parent && p.state != 'Z') {
            out.push(c.pid);
            frontier.push(c.pid);
        }
    }
    out
}
