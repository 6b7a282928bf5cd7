//! Fuzz-style tests: random bytes and structured-random input for every parser reachable
//! through the public library API. Whatever comes in, the parsers answer (Ok or a typed error)
//! and never panic, and their errors never repeat a secret.
//!
//! Case counts are bounded so the file runs in seconds; `WARDEN_FUZZ_CASES=N` runs every
//! property with N cases instead (e.g. 10000 for a long local run).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};

use warden::config::{KiteConfig, Secret};
use warden::token::command::{parse_output, MAX_TOKEN_LEN};
use warden::token::dotenv::parse_dotenv;
use warden::token::kite::{BrokerError, ErrorClass, KiteClient};
use warden::token::login::Totp;
use warden::token::store::read_env_value;

const BIN: &str = env!("CARGO_BIN_EXE_warden");

fn cases(default: u32) -> PropConfig {
    let n = std::env::var("WARDEN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    PropConfig {
        cases: n,
        // A failure prints its minimal input; no regression files in the source tree.
        failure_persistence: None,
        ..PropConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// supervisor.toml
// ---------------------------------------------------------------------------------------------

const PASSWORD: &str = "fuzz-password-Qv7mZ2";
const API_SECRET: &str = "fuzz-api-secret-Lx4pW9";
const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const API_TOKEN: &str = "fuzz-api-token-Hn3cR8";
const FILE_SECRET: &str = "https://hooks.example.invalid/fuzz-file-secret-Tz5kB1";

/// A valid config touching every section, with secrets in known places (one from a file).
const SEED: &str = r#"
[supervisor]
shutdown_timeout = "10s"
log_format = "text"
state_dir = ".warden"

[http]
listen = "127.0.0.1:0"
api_token = "fuzz-api-token-Hn3cR8"
public_url = "http://127.0.0.1:9180"

[token]
provider = "kite"
env_file = ".env"
env_key = "KITE_ACCESS_TOKEN"
timezone = "Asia/Kolkata"
expires_at = "06:00"
refresh_at = "06:05"
check_interval = "5m"
min_interval = "30s"
max_attempts = 3
attempt_window = "1h"
verify_timeout = "30s"

[token.kite]
api_key = "${WARDEN_FUZZ_UNSET_KEY:-kitefront}"
api_secret = "fuzz-api-secret-Lx4pW9"
user_id = "AB1234"
login = "totp"
password = "fuzz-password-Qv7mZ2"
totp_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
login_base = "http://127.0.0.1:9190"
api_base = "http://127.0.0.1:9190"

[notify]
webhook_url_file = "webhook.secret"

[programs.backend]
command = ["sleep", "1000"]
cwd = ""
env = { PYTHONUNBUFFERED = "1", N = 3 }
depends_on = ["worker"]
restart = "always"
backoff_initial = "1s"
backoff_max = "60s"
max_restarts = 10
restart_window = "5m"
stop_signal = "SIGTERM"
stop_timeout = "10s"
on_token_change = "signal"
reload_signal = "SIGHUP"

[programs.backend.health]
url = "http://127.0.0.1:8000/api/system/health"
interval = "5s"
timeout = "2s"
initial_delay = "5s"
failure_threshold = 3
auth_status = [403]
auth_body = '"auth"\s*:\s*"EXPIRED"'

[programs.worker]
command = "sh -c 'echo $$HOME'"
restart = "on-failure"
"#;

const SECRETS: [&str; 5] = [PASSWORD, API_SECRET, TOTP_SECRET, API_TOKEN, FILE_SECRET];

/// Pieces of TOML syntax and values that tend to reach deep into the loader.
const SNIPPETS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    ".",
    "#",
    "\n",
    "\r\n",
    "\\",
    "\\u",
    "'''",
    "\"\"\"",
    "${",
    "${X",
    "}",
    "$$",
    ":-",
    "[[programs]]\n",
    "[programs.x]\n",
    "command = []\n",
    "_file",
    "0x",
    "1e999",
    "inf",
    "nan",
    "-1",
    "99999999999999999999",
    "\"5s\"",
    "\"0s\"",
    "\"-5s\"",
    "\"1y\"",
    "\"06:00\"",
    "06:00",
    "\"25:61\"",
    "true",
    "\"SIGFOO\"",
    "\"0.0.0.0:80\"",
    "depends_on = [\"backend\"]\n",
    "[programs.worker.health]\n",
    "url = \"ftp://x\"\n",
    "auth_body = \"(\"\n",
    "provider = \"command\"\n",
    "[token.command]\n",
    "\u{0}",
    "é",
    "\u{feff}",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Replace(usize, u8),
    Snippet(usize, usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..20usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Edit::Insert(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Replace(p, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(p, i)| Edit::Snippet(p, i)),
        (any::<usize>(), 1..80usize).prop_map(|(p, n)| Edit::Duplicate(p, n)),
    ]
}

fn apply(text: &mut Vec<u8>, e: &Edit) {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
    match e {
        Edit::Delete(p, n) => {
            let s = at(*p, text.len());
            let end = (s + n).min(text.len());
            text.drain(s..end);
        }
        Edit::Insert(p, b) => {
            let s = at(*p, text.len());
            text.splice(s..s, b.iter().copied());
        }
        Edit::Replace(p, b) => {
            if !text.is_empty() {
                let s = p % text.len();
                text[s] = *b;
            }
        }
        Edit::Snippet(p, i) => {
            let s = at(*p, text.len());
            let snip = SNIPPETS[i % SNIPPETS.len()].as_bytes();
            text.splice(s..s, snip.iter().copied());
        }
        Edit::Duplicate(p, n) => {
            let s = at(*p, text.len());
            let end = (s + n).min(text.len());
            let chunk = text[s..end].to_vec();
            text.splice(end..end, chunk);
        }
    }
}

/// Load `bytes` as `supervisor.toml` from a fresh dir holding the seed's secret file.
fn load_bytes(bytes: &[u8]) -> Result<warden::config::Config, warden::config::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("webhook.secret"),
        format!("{FILE_SECRET}\n"),
    )
    .unwrap();
    let path = dir.path().join("supervisor.toml");
    std::fs::write(&path, bytes).unwrap();
    warden::config::load(&path)
}

#[test]
fn the_seed_config_is_valid() {
    // The mutation test only means something if it starts from a file the loader accepts.
    let cfg = load_bytes(SEED.as_bytes()).unwrap_or_else(|e| panic!("seed rejected:\n{e}"));
    assert_eq!(cfg.programs.len(), 2);
    assert_eq!(cfg.notify.webhook_url.expose(), FILE_SECRET);
}

#[test]
fn config_load_survives_random_bytes() {
    let mut runner = TestRunner::new(cases(300));
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1024),
        "[ -~\n]{0,600}".prop_map(String::into_bytes),
    ];
    runner
        .run(&bytes, |b| {
            if let Err(e) = load_bytes(&b) {
                let text = e.to_string();
                prop_assert!(!text.is_empty());
                prop_assert!(!e.problems.is_empty(), "an error without problems: {text}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn config_load_survives_mutations_of_a_valid_file_and_never_quotes_a_secret() {
    let mut runner = TestRunner::new(cases(400));
    runner
        .run(&prop::collection::vec(edit(), 1..8), |edits| {
            let mut text = SEED.as_bytes().to_vec();
            for e in &edits {
                apply(&mut text, e);
            }
            match load_bytes(&text) {
                Ok(cfg) => {
                    // Whatever survived must still be a config the supervisor can act on.
                    for (name, p) in &cfg.programs {
                        prop_assert!(!p.command.0.is_empty(), "{name}: empty command accepted");
                    }
                    let msg = format!("{cfg:?}");
                    let file = String::from_utf8_lossy(&text);
                    for s in SECRETS {
                        if secret_still_under_its_key(&file, s) {
                            prop_assert!(
                                !msg.contains(s),
                                "a secret shows in the config's Debug:\n{msg}"
                            );
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    // Only a secret still written in full under its own key can be checked:
                    // a mutation may have moved it to another key or out of any string.
                    let file = String::from_utf8_lossy(&text);
                    for s in SECRETS {
                        if secret_still_under_its_key(&file, s) {
                            prop_assert!(
                                !msg.contains(s),
                                "a secret leaked into a config error:\n{msg}"
                            );
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

/// True when `secret` still appears in `file` only on lines that assign it to a secret key.
fn secret_still_under_its_key(file: &str, secret: &str) -> bool {
    let keys = [
        "password",
        "api_secret",
        "totp_secret",
        "api_token",
        "webhook_url",
    ];
    file.lines().filter(|l| l.contains(secret)).all(|l| {
        let key = l.split('=').next().unwrap_or("").trim();
        keys.contains(&key)
    })
}

/// Config values of every type in every key the schema knows, valid or not.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 :./-]{0,12}".prop_map(|s| format!("{s:?}")),
        prop_oneof![
            Just("\"5s\""),
            Just("\"0s\""),
            Just("\"1ms\""),
            Just("\"24h\""),
            Just("\"soon\""),
            Just("\"06:00\""),
            Just("\"24:00\""),
            Just("\"SIGHUP\""),
            Just("\"SIGKILL\""),
            Just("\"always\""),
            Just("\"never\""),
            Just("\"totp\""),
            Just("\"command\""),
            Just("\"redis\""),
            Just("\"http://127.0.0.1:1/h\""),
            Just("\"${UNSET_FUZZ_VAR}\""),
            Just("\"$${X}\""),
            Just("[]"),
            Just("[403, 99, 600]"),
            Just("[\"a\", \"a\"]"),
            Just("{}"),
            Just("true"),
            Just("-1"),
            Just("0"),
            Just("11"),
            Just("1.5"),
            Just("1979-05-27T07:32:00Z"),
        ]
        .prop_map(str::to_string),
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

const KEYS: &[(&str, &[&str])] = &[
    (
        "supervisor",
        &["shutdown_timeout", "log_format", "state_dir"],
    ),
    ("http", &["listen", "api_token", "public_url"]),
    (
        "token",
        &[
            "provider",
            "env_file",
            "env_key",
            "timezone",
            "expires_at",
            "refresh_at",
            "check_interval",
            "min_interval",
            "max_attempts",
            "attempt_window",
            "verify_timeout",
        ],
    ),
    ("token.store", &["kind", "url", "key_prefix"]),
    (
        "token.kite",
        &[
            "api_key",
            "api_secret",
            "user_id",
            "login",
            "password",
            "totp_secret",
            "login_base",
            "api_base",
            "password_file",
        ],
    ),
    ("token.command", &["command", "timeout", "cwd"]),
    (
        "notify",
        &["webhook_url", "telegram_bot_token", "telegram_chat_id"],
    ),
    (
        "programs.a",
        &[
            "command",
            "cwd",
            "env",
            "env_file",
            "depends_on",
            "restart",
            "backoff_initial",
            "backoff_max",
            "max_restarts",
            "restart_window",
            "stop_signal",
            "stop_timeout",
            "on_token_change",
            "reload_signal",
        ],
    ),
    (
        "programs.a.health",
        &[
            "url",
            "interval",
            "timeout",
            "initial_delay",
            "failure_threshold",
            "auth_status",
            "auth_body",
        ],
    ),
    ("programs.b", &["command", "depends_on"]),
];

#[test]
fn config_load_survives_structured_random_files() {
    let entry = (0..KEYS.len(), any::<usize>(), value());
    let mut runner = TestRunner::new(cases(300));
    runner
        .run(&prop::collection::vec(entry, 0..25), |entries| {
            let mut sections: std::collections::BTreeMap<&str, Vec<(String, String)>> =
                Default::default();
            for (s, k, v) in entries {
                let (name, keys) = KEYS[s];
                sections
                    .entry(name)
                    .or_default()
                    .push((keys[k % keys.len()].to_string(), v));
            }
            let mut text = String::new();
            for (name, kvs) in &sections {
                text.push_str(&format!("[{name}]\n"));
                let mut seen = std::collections::BTreeSet::new();
                for (k, v) in kvs {
                    if seen.insert(k.clone()) {
                        text.push_str(&format!("{k} = {v}\n"));
                    }
                }
            }
            if let Err(e) = load_bytes(text.as_bytes()) {
                prop_assert!(!e.problems.is_empty());
            }
            Ok(())
        })
        .unwrap();
}

/// A stack overflow aborts the process (no panic to catch), so this runs the real binary.
#[test]
fn deeply_nested_toml_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        (
            "arrays.toml",
            format!("a = {}1{}\n", "[".repeat(50_000), "]".repeat(50_000)),
        ),
        (
            "tables.toml",
            format!("a = {}1{}\n", "{b = ".repeat(50_000), "}".repeat(50_000)),
        ),
        (
            "keys.toml",
            format!("{} = 1\n", vec!["k"; 50_000].join(".")),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .arg("check")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: warden check must report a config error, got {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `warden check` says ok to durations so large that `Instant + duration` overflows; warden
/// then panics in the keeper (check_interval) and at shutdown (stop_timeout,
/// shutdown_timeout). Either check must refuse them or warden must saturate.
#[test]
fn durations_that_warden_check_accepts_never_panic_warden() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "\"500000000000y\"";
    let cfg = format!(
        r#"
[supervisor]
shutdown_timeout = {huge}
[http]
listen = "127.0.0.1:0"
[token]
provider = "command"
check_interval = {huge}
[token.command]
command = ["sh", "-c", "echo tok1"]
[programs.a]
command = ["sleep", "5"]
stop_timeout = {huge}
"#
    );
    let path = dir.path().join("supervisor.toml");
    std::fs::write(&path, &cfg).unwrap();
    let check = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    if check.status.code() == Some(2) {
        return; // refused with a message: fine
    }
    let mut child = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .current_dir(dir.path())
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        sink.lock().unwrap().push_str(&s);
    });
    // Let the keeper settle (its first timer is armed right after the startup token).
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(!log.contains("panicked"), "warden panicked:\n{log}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
}

// ---------------------------------------------------------------------------------------------
// dotenv
// ---------------------------------------------------------------------------------------------

fn dotenv_line() -> impl Strategy<Value = String> {
    let key = "[A-Za-z_][A-Za-z0-9_.-]{0,6}|[0-9 =\"']{1,3}|KITE_ACCESS_TOKEN";
    let unquoted = "[ -~]{0,12}";
    let single = "'[ -&(-~\n]{0,10}'?";
    let double = "\"([ !#-\\[\\]-~\n]|\\\\[nrt\"\\\\$'x]){0,10}\"?";
    let value = prop_oneof![unquoted, single, double];
    let eol = prop_oneof![Just("\n"), Just("\r\n"), Just("")];
    prop_oneof![
        (
            prop_oneof![Just(""), Just("export "), Just("  "), Just("\t")],
            key,
            prop_oneof![Just("="), Just(" = "), Just("= "), Just(":")],
            value,
            prop_oneof![Just(""), Just(" # comment"), Just("#x"), Just(" 'tail")],
            eol,
        )
            .prop_map(|(e, k, s, v, c, n)| format!("{e}{k}{s}{v}{c}{n}")),
        "#[ -~]{0,10}\n".prop_map(|s| s),
        "[ -~\r\n\t]{0,20}".prop_map(|s| s),
    ]
}

fn is_valid_key(k: &str) -> bool {
    let mut c = k.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
}

#[test]
fn dotenv_parsers_survive_random_text_and_agree_with_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let text = prop_oneof![
        prop::collection::vec(dotenv_line(), 0..12).prop_map(|l| l.concat()),
        any::<String>(),
    ];
    let mut runner = TestRunner::new(cases(500));
    runner
        .run(&text, |text| {
            let pairs = parse_dotenv(&text);
            for (k, _) in &pairs {
                prop_assert!(is_valid_key(k), "a binding with an invalid key {k:?}");
            }
            // The reader warden uses for the token must see what the environment loader sees.
            std::fs::write(&path, &text).unwrap();
            let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
            keys.push("KITE_ACCESS_TOKEN");
            keys.push("ABSENT_KEY");
            for k in keys {
                let want = pairs
                    .iter()
                    .rev()
                    .find(|(pk, _)| pk == k)
                    .map(|(_, v)| v.clone());
                let got = read_env_value(&path, k).unwrap();
                prop_assert_eq!(got, want, "key {}", k);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn read_env_value_survives_bytes_that_are_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let bytes = prop::collection::vec(
        prop_oneof![any::<u8>(), Just(b'='), Just(b'\n'), Just(b'"'), Just(b'K')],
        0..400,
    );
    let mut runner = TestRunner::new(cases(300));
    runner
        .run(&bytes, |b| {
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(b"KITE_ACCESS_TOKEN=abc\n").unwrap();
            f.write_all(&b).unwrap();
            drop(f);
            let _ = read_env_value(&path, "KITE_ACCESS_TOKEN").unwrap();
            let _ = read_env_value(&path, "K").unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(
        read_env_value(&dir.path().join("missing"), "K").unwrap(),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// token command output
// ---------------------------------------------------------------------------------------------

#[test]
fn command_output_parser_survives_random_bytes() {
    let out = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..700),
        prop::collection::vec(
            prop_oneof![
                "[ -~]{0,40}",
                "\\{\"access_token\": *(\"[ -~]{0,20}\"|[0-9]+|null|\\[\\]|\\{\\})\\}",
                "\\{[ -~]{0,20}",
                Just(String::new()),
            ],
            0..6
        )
        .prop_map(|l| l.join("\n").into_bytes()),
    ];
    let mut runner = TestRunner::new(cases(600));
    runner
        .run(&out, |out| {
            if let Ok(tok) = parse_output(&out) {
                let t = tok.expose();
                prop_assert!(!t.is_empty() && t.len() <= MAX_TOKEN_LEN, "{t:?}");
                prop_assert!(t.bytes().all(|b| b.is_ascii_graphic()), "{t:?}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn command_output_errors_never_repeat_the_output() {
    // Something token-like that is still not acceptable as a token.
    let marker = "[A-Za-z0-9]{16,24}";
    let bad = (marker, 0..6u8, "[ -~]{0,8}").prop_map(|(m, how, junk)| match how {
        0 => format!("{m} {junk}x"),
        1 => format!("{m}\u{7f}"),
        2 => format!("{{\"access_token\": \"{m} x\"}}"),
        3 => format!("{{\"token\": \"{m}\"}}"),
        4 => format!("{{\"access_token\": \"{m}"),
        _ => format!("{m}{}", "z".repeat(MAX_TOKEN_LEN)),
    });
    let prefix = prop::collection::vec("[ -~]{0,20}", 0..3);
    let mut runner = TestRunner::new(cases(300));
    runner
        .run(&(prefix, bad), |(prefix, bad)| {
            let mut out = prefix.join("\n");
            out.push('\n');
            out.push_str(&bad);
            out.push('\n');
            let marker: String = bad
                .trim_start_matches("{\"access_token\": \"")
                .trim_start_matches("{\"token\": \"")
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            let err = parse_output(out.as_bytes()).expect_err("not a token");
            let text = format!("{err} {err:?}");
            prop_assert!(
                !text.contains(&marker),
                "the error repeats the output: {text}"
            );
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// TOTP secrets
// ---------------------------------------------------------------------------------------------

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                out.push(ALPHABET[((n >> (35 - 5 * i)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base32_helper_matches_rfc4648() {
    assert_eq!(base32(b"foobar"), "MZXW6YTBOI======");
    assert_eq!(base32(b"f"), "MY======");
}

#[test]
fn totp_secret_parser_survives_any_string() {
    let secret = prop_oneof![
        any::<String>(),
        "[A-Za-z2-7 =-]{0,40}",
        prop::collection::vec(any::<u8>(), 1..40).prop_map(|b| base32(&b)),
        prop::collection::vec(any::<u8>(), 1..40).prop_map(|b| base32(&b).to_lowercase()),
    ];
    let mut runner = TestRunner::new(cases(500));
    runner
        .run(&(secret, any::<u64>()), |(secret, t)| {
            if let Ok(totp) = Totp::from_base32(&secret) {
                let t = t % (1 << 40);
                let code = totp.code_at(t);
                prop_assert!(
                    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
                    "{code:?}"
                );
                prop_assert_eq!(totp.code_of_step(Totp::step_of(t)), code);
                let dbg = format!("{totp:?}");
                prop_assert!(
                    secret.len() < 4 || !dbg.contains(&secret),
                    "Debug shows the secret"
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn every_base32_encoding_of_a_nonempty_key_is_accepted() {
    let mut runner = TestRunner::new(cases(300));
    runner
        .run(&prop::collection::vec(any::<u8>(), 1..64), |key| {
            let enc = base32(&key);
            let spaced: String = enc
                .chars()
                .enumerate()
                .flat_map(|(i, c)| (i % 4 == 0 && i > 0).then_some(' ').into_iter().chain([c]))
                .collect();
            let a = Totp::from_base32(&enc).expect("valid base32");
            let b = Totp::from_base32(&spaced.to_lowercase()).expect("spaced lowercase base32");
            prop_assert_eq!(a.code_at(1_700_000_000), b.code_at(1_700_000_000));
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Broker answers
// ---------------------------------------------------------------------------------------------

/// What the fake broker does with the next request.
#[derive(Debug, Clone)]
enum Answer {
    /// A well-formed HTTP/1.1 response.
    Http { status: u16, body: Vec<u8> },
    /// Content-Length promises more than is sent, then the connection closes.
    Truncated { status: u16, body: Vec<u8> },
    /// Bytes that are not HTTP at all.
    Raw(Vec<u8>),
    /// Close without answering.
    Drop,
}

/// A tiny HTTP peer on 127.0.0.1:0 that answers every request with the current `Answer` and
/// remembers the last raw request.
struct FakeBroker {
    addr: std::net::SocketAddr,
    answer: Arc<Mutex<Answer>>,
    last_request: Arc<Mutex<Vec<u8>>>,
}

impl FakeBroker {
    async fn start() -> FakeBroker {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(Answer::Drop));
        let last_request = Arc::new(Mutex::new(Vec::new()));
        let (a, r) = (answer.clone(), last_request.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (a, r) = (a.clone(), r.clone());
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    // Headers, then as much body as Content-Length says.
                    let head_end = loop {
                        let Ok(n) = sock.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        req.extend_from_slice(&buf[..n]);
                        if let Some(i) = find(&req, b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&req[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while req.len() < head_end + len {
                        let Ok(n) = sock.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        req.extend_from_slice(&buf[..n]);
                    }
                    *r.lock().unwrap() = req;
                    let answer = a.lock().unwrap().clone();
                    let bytes = match answer {
                        Answer::Http { status, body } => response(status, &body, body.len()),
                        Answer::Truncated { status, body } => {
                            response(status, &body, body.len() + 10)
                        }
                        Answer::Raw(b) => b,
                        Answer::Drop => Vec::new(),
                    };
                    let _ = sock.write_all(&bytes).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        FakeBroker {
            addr,
            answer,
            last_request,
        }
    }

    fn config(&self) -> KiteConfig {
        KiteConfig {
            api_key: "kitefront".into(),
            api_secret: Secret::new(API_SECRET),
            user_id: "AB1234".into(),
            password: Secret::new(PASSWORD),
            totp_secret: Secret::new(TOTP_SECRET),
            login_base: format!("http://{}", self.addr),
            api_base: format!("http://{}", self.addr),
            ..KiteConfig::default()
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn response(status: u16, body: &[u8], len: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[ -~]{0,16}".prop_map(serde_json::Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    json_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Kite-shaped bodies (success and error envelopes with good or bad fields) and noise.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        Just(Some("success".to_string())),
        Just(Some("error".to_string())),
        "[a-z]{0,6}".prop_map(Some),
        Just(None),
    ];
    let error_type = prop_oneof![
        Just(Some("TokenException".to_string())),
        Just(Some("PermissionException".to_string())),
        Just(Some("InputException".to_string())),
        Just(Some("NetworkException".to_string())),
        Just(Some("UserException".to_string())),
        "[A-Za-z]{0,12}".prop_map(Some),
        Just(None),
    ];
    let data = prop_oneof![
        Just(Some(
            serde_json::json!({"user_id": "AB1234", "user_name": "A B"})
        )),
        Just(Some(serde_json::json!({
            "user_id": "AB1234", "access_token": "newtokenvalue0123456789abcdefgh",
            "login_time": "2025-01-06 08:30:00", "user_name": "A B"
        }))),
        Just(Some(serde_json::json!({"user_id": 5}))),
        Just(Some(
            serde_json::json!({"access_token": "", "user_id": "AB1234"})
        )),
        json_value().prop_map(Some),
        Just(None),
    ];
    let message = prop_oneof![
        "[ -~]{0,30}",
        Just("Invalid `checksum`.".to_string()),
        "[ -~]{300,320}",
    ];
    prop_oneof![
        4 => (status, data, message, error_type).prop_map(|(s, d, m, e)| {
            let mut o = serde_json::Map::new();
            if let Some(s) = s {
                o.insert("status".into(), s.into());
            }
            if let Some(d) = d {
                o.insert("data".into(), d);
            }
            o.insert("message".into(), m.into());
            if let Some(e) = e {
                o.insert("error_type".into(), e.into());
            }
            serde_json::to_vec(&o).unwrap()
        }),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => Just(b"<html><body>502 Bad Gateway</body></html>".to_vec()),
    ]
}

fn http_status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => prop_oneof![
            Just(200u16), Just(201), Just(204), Just(301), Just(302), Just(400), Just(401),
            Just(403), Just(404), Just(429), Just(500), Just(502), Just(503), Just(504)
        ],
        1 => 200..=999u16,
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        8 => (http_status(), body()).prop_map(|(status, body)| Answer::Http { status, body }),
        1 => (http_status(), body()).prop_map(|(status, body)| Answer::Truncated { status, body }),
        1 => prop::collection::vec(any::<u8>(), 0..100)
            .prop_filter("not HTTP", |b| !b.starts_with(b"HTTP"))
            .prop_map(Answer::Raw),
        1 => Just(Answer::Drop),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Call {
    Profile,
    Exchange,
    Logout,
}

/// The documented rules that hold whatever else the body says.
fn check_result<T: std::fmt::Debug>(
    call: Call,
    answer: &Answer,
    token: &str,
    result: &Result<T, BrokerError>,
) -> Result<(), TestCaseError> {
    let Err(e) = result else {
        if let Answer::Http { status, .. } = answer {
            prop_assert!(
                (200..300).contains(status),
                "{call:?}: Ok from HTTP {status}"
            );
        } else {
            prop_assert!(false, "{call:?}: Ok from {answer:?}");
        }
        return Ok(());
    };
    let text = format!("{e} {e:?}");
    for s in [token, API_SECRET, PASSWORD, TOTP_SECRET] {
        prop_assert!(
            !text.contains(s),
            "{call:?}: the error repeats a secret: {text}"
        );
    }
    let class = e.class();
    match answer {
        Answer::Raw(_) | Answer::Drop | Answer::Truncated { .. } => {
            prop_assert_eq!(class, ErrorClass::Transient, "{:?}: {}", call, text)
        }
        Answer::Http { status, .. } if *status == 429 || *status >= 500 => {
            prop_assert_eq!(class, ErrorClass::Transient, "{:?}: {}", call, text)
        }
        Answer::Http { status, body } => {
            // No body comes with these, whatever the server wrote.
            let body: &[u8] = if matches!(status, 204 | 304) {
                b""
            } else {
                body
            };
            let env: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let kite_error = env["status"] == "error" && env["message"].is_string();
            if kite_error && env["error_type"] == "TokenException" {
                let checksum = env["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_ascii_lowercase()
                    .contains("checksum");
                let want = if matches!(call, Call::Exchange) && checksum {
                    ErrorClass::Credential
                } else {
                    ErrorClass::TokenBad
                };
                prop_assert_eq!(class, want, "{:?} HTTP {}: {}", call, status, text);
            } else if kite_error && env["error_type"].is_string() {
                prop_assert_eq!(
                    class,
                    ErrorClass::Credential,
                    "{:?} HTTP {}: {}",
                    call,
                    status,
                    text
                );
            } else if !(200..300).contains(status) && !env.is_object() {
                // An error status without Kite's envelope, outside the login steps.
                prop_assert_eq!(
                    class,
                    ErrorClass::Transient,
                    "{:?} HTTP {}: {}",
                    call,
                    status,
                    text
                );
            }
        }
    }
    Ok(())
}

#[test]
fn broker_answers_are_always_classified_and_never_repeat_the_token() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let broker = rt.block_on(FakeBroker::start());
    let client = KiteClient::new(&broker.config()).with_timeout(Duration::from_secs(5));
    let token = "[A-Za-z0-9]{20,32}";
    let mut runner = TestRunner::new(cases(250));
    runner
        .run(&(answer(), token, 0..3u8), |(answer, token, which)| {
            *broker.answer.lock().unwrap() = answer.clone();
            let secret = Secret::new(token.clone());
            match which {
                0 => {
                    let r = rt.block_on(client.profile(&secret));
                    // The token did go out: the check below is not vacuous.
                    let req = broker.last_request.lock().unwrap().clone();
                    prop_assert!(find(&req, token.as_bytes()).is_some() || req.is_empty());
                    if let (Ok(p), Answer::Http { body, .. }) = (&r, &answer) {
                        // Ok only for Kite's success envelope, with the user it names.
                        let env: serde_json::Value = serde_json::from_slice(body).unwrap();
                        prop_assert_eq!(&env["status"], "success");
                        prop_assert_eq!(&env["data"]["user_id"], p.user_id.as_str());
                    }
                    check_result(Call::Profile, &answer, &token, &r)?;
                }
                1 => {
                    let r = rt.block_on(client.exchange(&token, &Secret::new(API_SECRET)));
                    if let Ok(s) = &r {
                        prop_assert!(!s.access_token.expose().is_empty());
                    }
                    check_result(Call::Exchange, &answer, &token, &r)?;
                }
                _ => {
                    let r = rt.block_on(client.logout(&secret));
                    check_result(Call::Logout, &answer, &token, &r)?;
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_broker_that_never_answers_is_a_transient_timeout() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold the connections open without a word.
    rt.spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let cfg = KiteConfig {
        api_key: "kitefront".into(),
        api_base: format!("http://{addr}"),
        login_base: format!("http://{addr}"),
        ..KiteConfig::default()
    };
    let client = KiteClient::new(&cfg).with_timeout(Duration::from_millis(300));
    let token = Secret::new("silenttoken0123456789abcdefghij");
    let e = rt.block_on(client.profile(&token)).unwrap_err();
    assert!(matches!(e, BrokerError::Timeout { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Transient);
    assert!(!e.to_string().contains(token.expose()));
}

/// A broker (or a proxy in front of it) that quotes the request back. Kite's `message` is
/// copied into the error text, and so is a string `data` (in serde's "invalid type" message).
#[test]
fn a_broker_echoing_the_token_does_not_put_it_into_the_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let broker = rt.block_on(FakeBroker::start());
    let client = KiteClient::new(&broker.config()).with_timeout(Duration::from_secs(5));
    let token = "echoedtoken0123456789abcdefghijk";
    let shapes = [
        serde_json::json!({"status": "error", "error_type": "TokenException",
            "message": format!("Incorrect `api_key` or `access_token` ({token}).")}),
        serde_json::json!({"status": "error", "message": format!("token {token}")}),
        serde_json::json!({"status": "success", "data": token}),
        serde_json::json!({"status": "success", "data": {"user_id": token, "email": 5}}),
    ];
    let mut leaks = Vec::new();
    for body in &shapes {
        for status in [200u16, 400, 403] {
            *broker.answer.lock().unwrap() = Answer::Http {
                status,
                body: serde_json::to_vec(body).unwrap(),
            };
            if let Err(e) = rt.block_on(client.profile(&Secret::new(token))) {
                if e.to_string().contains(token) {
                    leaks.push(format!("HTTP {status} {body} -> {e}"));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "the token is repeated in:\n{}",
        leaks.join("\n")
    );
}
