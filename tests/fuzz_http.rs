//! Malformed HTTP thrown at warden's listener, seeded and bounded: random bytes, huge headers,
//! bad percent-encodings, invalid UTF-8, request-smuggling shapes, pipelined garbage and
//! mutations of valid requests. warden must not panic, must answer or close every connection
//! within a bound, and must still answer `/healthz` afterwards.
//!
//! `WARDEN_FUZZ_SEED` replays a failing run; the seed in use is printed.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// Cases per run; each is one connection, a batch at a time (under the 512-connection cap).
const CASES: usize = 600;
const BATCH: usize = 200;
/// warden closes a silent connection after 10 s; this leaves room for a loaded machine.
const BOUND: Duration = Duration::from_secs(40);

fn valid_requests(addr: &str) -> Vec<String> {
    vec![
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        format!("GET /api/v1/status HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n"),
        format!("GET /?x=%41 HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive\r\n\r\n"),
        format!("GET /kite/callback?state=a&request_token=b HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        format!("POST /api/v1/programs/nope/restart HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\n\r\nhi"),
        format!("POST /api/v1/programs/nope/restart HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
        format!("HEAD /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
    ]
}

/// The hand-written hostile shapes, each against a valid request line.
fn shapes(addr: &str) -> Vec<Vec<u8>> {
    let h = format!("Host: {addr}\r\n");
    let post = "POST /api/v1/programs/nope/restart HTTP/1.1\r\n";
    let mut v: Vec<Vec<u8>> = vec![
        // Request smuggling.
        format!("{post}{h}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n{h}\r\n").into(),
        format!("{post}{h}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\nabcd").into(),
        format!("{post}{h}Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde").into(),
        format!("{post}{h}Content-Length: 4, 5\r\n\r\nabcde").into(),
        format!("{post}{h}Content-Length: -1\r\n\r\n").into(),
        format!("{post}{h}Content-Length: 99999999999999999999999\r\n\r\n").into(),
        format!("{post}{h}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n").into(),
        format!("{post}{h}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n").into(),
        format!("{post}{h}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n").into(),
        format!("{post}{h}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n").into(),
        format!("{post}{h}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nx\r\n").into(),
        format!("{post}{h}Transfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n").into(),
        format!("{post}{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhi\r\n0\r\n\r\n").into(),
        format!("{post}{h}Transfer-Encoding: chunked\r\n\r\n2;ext=\"\x01\"\r\nhi\r\n0\r\n\r\n").into(),
        // obs-fold and bare LF.
        format!("GET /healthz HTTP/1.1\r\n{h}X-Folded: a\r\n b\r\n\r\n").into(),
        format!("GET /healthz HTTP/1.1\r\n{h}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n").into(),
        format!("GET /healthz HTTP/1.1\n{}\n\n", h.trim_end()).into(),
        format!("GET /healthz HTTP/1.1\r\n{h}X-Bare: a\rb\r\n\r\n").into(),
        format!("GET /healthz HTTP/1.1\r\n{h}X-Nul: a\0b\r\n\r\n").into(),
        // Encodings and targets.
        format!("GET /%zz%%/api/v1/%E0%A4%A HTTP/1.1\r\n{h}\r\n").into(),
        format!("GET /api/v1/programs/%FF%FE/restart HTTP/1.1\r\n{h}\r\n").into(),
        format!("POST /api/v1/programs/%00%2F..%2F/restart HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n").into(),
        format!("GET /kite/callback?state=%ZZ&request_token=%FF HTTP/1.1\r\n{h}\r\n").into(),
        format!("GET * HTTP/1.1\r\n{h}\r\n").into(),
        format!("GET http://{addr}/healthz HTTP/1.1\r\n{h}\r\n").into(),
        format!("GET //evil.example/ HTTP/1.1\r\n{h}\r\n").into(),
        format!("CONNECT {addr} HTTP/1.1\r\n{h}\r\n").into(),
        format!("GET /healthz HTTP/9.9\r\n{h}\r\n").into(),
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nHost: evil.example\r\n\r\n").into(),
        format!("G\tET /healthz HTTP/1.1\r\n{h}\r\n").into(),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(),
        "\r\n\r\n\r\n\r\n".into(),
        // Huge things.
        format!("GET /{} HTTP/1.1\r\n{h}\r\n", "a".repeat(100_000)).into(),
        format!("GET /healthz HTTP/1.1\r\n{h}X-Big: {}\r\n\r\n", "b".repeat(200_000)).into(),
        format!("GET /healthz HTTP/1.1\r\n{h}{}\r\n", "X-Many: 1\r\n".repeat(500)).into(),
        format!("{post}{h}Content-Length: 70000\r\n\r\n{}", "c".repeat(70_000)).into(),
        // Pipelined: a good request, then garbage, then another good one.
        format!("GET /healthz HTTP/1.1\r\n{h}\r\n\x16\x03\x01garbage\r\n\r\nGET /healthz HTTP/1.1\r\n{h}\r\n").into(),
        format!("GET /healthz HTTP/1.1\r\n{h}\r\n").repeat(50).into(),
    ];
    let mut utf8 = b"GET /\xff\xfe\xc3\x28/status HTTP/1.1\r\n".to_vec();
    utf8.extend_from_slice(h.as_bytes());
    utf8.extend_from_slice(b"X-Bytes: \xff\xc0\x80\r\n\r\n");
    v.push(utf8);
    v
}

/// One case: a shape, a mutated valid request, or noise.
fn case(rng: &mut fastrand::Rng, addr: &str, shapes: &[Vec<u8>]) -> Vec<u8> {
    match rng.u8(0..4) {
        0 => shapes[rng.usize(..shapes.len())].clone(),
        1 => {
            let n = rng.usize(1..2000);
            (0..n).map(|_| rng.u8(..)).collect()
        }
        _ => {
            let valid = valid_requests(addr);
            let mut bytes = valid[rng.usize(..valid.len())].clone().into_bytes();
            for _ in 0..rng.usize(1..6) {
                let at = rng.usize(..=bytes.len());
                match rng.u8(0..5) {
                    0 if at < bytes.len() => bytes[at] = rng.u8(..),
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, *b"\r\n:% \0\x7f\xff".get(rng.usize(..8)).unwrap()),
                    3 => {
                        let junk: Vec<u8> = (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect();
                        bytes.splice(at..at, junk);
                    }
                    _ => {
                        let extra = shapes[rng.usize(..shapes.len())].clone();
                        bytes.splice(at..at, extra);
                    }
                }
            }
            bytes
        }
    }
}

/// Read until warden closes the connection, keeping what it said; `None` if the connection is
/// still open at `deadline`.
fn closes_by(s: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut buf = [0u8; 16 * 1024];
    let mut said = Vec::new();
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(said),
            Ok(n) => said.extend_from_slice(&buf[..n.min(4096 - said.len().min(4096))]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            // Reset: warden closed with unread input, which is a close too.
            Err(_) => return Some(said),
        }
    }
}

#[test]
fn malformed_http_never_panics_hangs_or_breaks_the_listener() {
    let seed = std::env::var("WARDEN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("fuzz_http seed: {seed} (replay with WARDEN_FUZZ_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let w = Warden::start(
        "[supervisor]\nshutdown_timeout = \"5s\"\n\n[programs.app]\ncommand = [\"sleep\", \"600\"]\n",
    );
    let addr = w.addr.clone();
    let app = w.wait_state("app", "running", Duration::from_secs(20));
    let shapes = shapes(&addr);
    let mut done = 0;
    while done < CASES {
        let mut open = Vec::new();
        for i in done..(done + BATCH).min(CASES) {
            let bytes = case(&mut rng, &addr, &shapes);
            let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("case {i}: {e}"));
            // warden may close early (a bad head): a failed write is part of the game.
            let _ = s.write_all(&bytes);
            // Most peers end their side; some stay silent with the connection open, which
            // only warden's timeout can end.
            if rng.u8(0..4) != 0 {
                let _ = s.shutdown(Shutdown::Write);
            }
            open.push((i, s, bytes));
        }
        let deadline = Instant::now() + BOUND;
        for (i, s, bytes) in &mut open {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            let said = closes_by(s, deadline).unwrap_or_else(|| {
                panic!("case {i} (seed {seed}): warden neither answered nor closed within {BOUND:?}: {shown:?}")
            });
            // Bad input is the client's fault: never a server error.
            let said = String::from_utf8_lossy(&said);
            assert!(
                !said.contains("HTTP/1.1 500"),
                "case {i} (seed {seed}): {shown:?} got {said}"
            );
        }
        done += open.len();
        let (code, body) = http(&addr, "GET", "/healthz", &[], "");
        assert_eq!(code, 200, "after {done} cases (seed {seed}): {body}");
    }
    let logs = w.logs();
    assert!(!logs.contains("panicked"), "seed {seed}:\n{logs}");
    // No mangled request restarted anything: the only restart paths name programs that do
    // not exist, and the one program is untouched.
    let now = w.program("app");
    assert_eq!(now["pid"], app["pid"], "{now}");
    assert_eq!(now["restarts"], 0, "{now}");
}
