//! The chaos soak with two tokens of different brokers in one warden (issue #14): Kite
//! (`[tokens.kite]`, password + TOTP) and Angel One (`[tokens.angel]`, PIN + TOTP, with its
//! refresh token), both written into one shared `.env`, each of two programs getting only its
//! own token's changes. For `WARDEN_CHAOS2_SECS` (default 20 s; `.ci/run` sets more) a seeded
//! stream of events hits both at once: either broker's tokens expiring (Angel One's refresh
//! token too), outages and slow answers from either broker, SIGKILL of either program,
//! SIGUSR1 (refresh every token) and config rewrites (reloads).
//!
//! Throughout, every read of the `.env` parses and, once both tokens are in, holds exactly one
//! line for each key, next to the lines warden does not own. Afterwards: both tokens valid, the
//! `.env` holding what each token's state file holds, neither account locked and no credential
//! or TOTP code ever refused (no retry of a rejection, no code twice), both programs running,
//! and no password, PIN, TOTP secret or token in warden's log.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use warden::sandbox::angelone::{DEFAULT_CLIENT_CODE, DEFAULT_TOTP_SECRET};

const SETTLE: Duration = Duration::from_secs(90);
/// Angel One's PIN for this run: long enough that no pid, port or timestamp in the log can
/// contain it by chance (the sandbox's default 4 digits can).
const PIN: &str = "58203917";
const OTHER_LINES: &str = "# the app's own settings\nAPP_MODE=paper\n";

fn secs() -> u64 {
    std::env::var("WARDEN_CHAOS2_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A program that stays up and takes SIGHUP (a token hand-over) without dying.
const PROGRAM: &str = "trap 'echo reloaded' HUP; while :; do sleep 1; done";

fn config(kite: &KiteSandbox, angel: &BrokerSandbox, reload_mark: u64) -> String {
    format!(
        r#"# reload {reload_mark}
[tokens.kite]
provider = "kite"
env_file = ".env"
min_interval = "0s"
check_interval = "2s"
max_attempts = 10
attempt_window = "10s"

[tokens.kite.kite]
api_key = "kitefront"
api_secret = "{kite_secret}"
user_id = "AB1234"
login = "totp"
password = "{kite_password}"
totp_secret = "{kite_totp}"
login_base = "{kite_url}"
api_base = "{kite_url}"

[tokens.angel]
provider = "angelone"
env_file = ".env"
min_interval = "0s"
check_interval = "2s"
max_attempts = 10
attempt_window = "10s"

[tokens.angel.angelone]
api_key = "{angel_key}"
client_code = "{DEFAULT_CLIENT_CODE}"
login = "totp"
pin = "{PIN}"
totp_secret = "{DEFAULT_TOTP_SECRET}"
api_base = "{angel_url}"
login_base = "{angel_url}"

[programs.kite_app]
command = ["sh", "-c", "{PROGRAM}"]
tokens = ["kite"]
on_token_change = "signal"

[programs.angel_app]
command = ["sh", "-c", "{PROGRAM}"]
tokens = ["angel"]
on_token_change = "signal"
"#,
        kite_secret = warden::sandbox::kite::DEFAULT_API_SECRET,
        kite_password = warden::sandbox::kite::DEFAULT_PASSWORD,
        kite_totp = SANDBOX_TOTP,
        kite_url = kite.url(),
        angel_key = angel.printed("api_key"),
        angel_url = angel.url(),
    )
}

/// The `.env` as warden must always leave it: parseable, the other lines kept, and (once both
/// tokens are in) one line for each token key. The values, or why not.
fn read_env(path: &Path, both_in: bool) -> Result<(Option<String>, Option<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    if !text.starts_with(OTHER_LINES) {
        return Err(format!("the app's own lines were lost: {text:?}"));
    }
    let values = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .collect()
    };
    let (kite, angel) = (values("KITE_ACCESS_TOKEN"), values("ANGELONE_JWT"));
    if kite.len() > 1 || angel.len() > 1 || (both_in && (kite.len() != 1 || angel.len() != 1)) {
        return Err(format!(
            "{} KITE_ACCESS_TOKEN and {} ANGELONE_JWT lines",
            kite.len(),
            angel.len()
        ));
    }
    Ok((kite.into_iter().next(), angel.into_iter().next()))
}

fn token_state(w: &Warden, name: &str) -> String {
    w.status()["tokens"][name]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn stat(stats: &Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or(0)
}

#[test]
fn two_brokers_under_chaos_keep_their_tokens_and_the_shared_env_file() {
    let kite = KiteSandbox::start(&[]);
    let angel = BrokerSandbox::start("angelone", &["--pin", PIN]);
    let w = Warden::start_with(
        &config(&kite, &angel, 0),
        |dir| std::fs::write(dir.join(".env"), OTHER_LINES).unwrap(),
        Vec::new(),
    );
    let env = w.dir.path().join(".env");
    wait_until("both tokens valid at start", SETTLE, || {
        token_state(&w, "kite") == "valid" && token_state(&w, "angel") == "valid"
    });
    w.wait_state("kite_app", "running", SETTLE);
    w.wait_state("angel_app", "running", SETTLE);

    // A reader checks the shared file the whole time, as a program reading it would.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, env) = (stop.clone(), env.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = read_env(&env, true) {
                    return Err(format!("after {reads} good reads: {e}"));
                }
                reads += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(reads)
        })
    };

    let seed = std::env::var("WARDEN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2027);
    println!("chaos_two_brokers: seed {seed}, {} s", secs());
    let mut rng = fastrand::Rng::with_seed(seed);
    let end = Instant::now() + Duration::from_secs(secs());
    let mut events = std::collections::BTreeMap::<&str, u32>::new();
    let mut reloads = 0;
    while Instant::now() < end {
        let event = match rng.u32(0..100) {
            0..=14 => {
                kite.expire();
                "kite tokens expire"
            }
            15..=29 => {
                angel.expire(if rng.bool() { "access" } else { "all" });
                "angel tokens expire"
            }
            30..=39 => {
                let status = [500, 502, 503][rng.usize(0..3)];
                kite.fault(&format!(
                    r#"{{"status": {status}, "count": {}}}"#,
                    rng.u32(1..4)
                ));
                "kite outage"
            }
            40..=49 => {
                let kind = ["status", "drop", "delay"][rng.usize(0..3)];
                angel.fault(&format!(
                    r#"{{"kind": "{kind}", "status": 503, "delay_ms": 1500, "count": {}}}"#,
                    rng.u32(1..4)
                ));
                "angel outage"
            }
            50..=64 => {
                let name = ["kite_app", "angel_app"][rng.usize(0..2)];
                if let Some(pid) = w.pid_of(name) {
                    // SAFETY: kill(2) on a pid of ours; a stale pid gets ESRCH.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                "program killed"
            }
            65..=79 => {
                w.signal(libc::SIGUSR1);
                "SIGUSR1"
            }
            _ => {
                reloads += 1;
                w.write_config(&config(&kite, &angel, reloads));
                "config rewritten"
            }
        };
        *events.entry(event).or_default() += 1;
        std::thread::sleep(Duration::from_millis(rng.u64(100..600)));
    }
    println!("chaos_two_brokers: events {events:?}");

    wait_until("both tokens valid after the chaos", SETTLE, || {
        token_state(&w, "kite") == "valid" && token_state(&w, "angel") == "valid"
    });
    w.wait_state("kite_app", "running", SETTLE);
    w.wait_state("angel_app", "running", SETTLE);
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    println!("chaos_two_brokers: {reads} reads of the shared .env, all good");

    // What each token's state file holds is what the shared file holds.
    let state = |name: &str| -> String {
        let path = w.dir.path().join(format!(".warden/tokens/{name}.json"));
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        doc["access_token"].as_str().unwrap().to_string()
    };
    wait_until(
        "the .env to hold each token's current value",
        SETTLE,
        || {
            read_env(&env, true).is_ok_and(|(k, a)| {
                k.as_deref() == Some(&*state("kite")) && a.as_deref() == Some(&*state("angel"))
            })
        },
    );

    // Never a refused credential or code: no retry of a rejection, no TOTP code twice.
    let ks = kite.stats();
    assert_eq!(stat(&ks, "password_fail"), 0, "{ks}");
    assert_eq!(stat(&ks, "twofa_fail"), 0, "{ks}");
    assert!(
        ks["locked_users"].as_array().is_none_or(Vec::is_empty),
        "{ks}"
    );
    let st = angel.stats();
    assert_eq!(stat(&st, "login_fail"), 0, "{st}");
    assert!(
        st["locked_users"].as_array().is_none_or(Vec::is_empty),
        "{st}"
    );

    let logs = w.logs();
    let secrets = [
        ("the Kite password", warden::sandbox::kite::DEFAULT_PASSWORD),
        ("the Kite TOTP secret", SANDBOX_TOTP),
        ("the Angel One PIN", PIN),
        ("the Angel One TOTP secret", DEFAULT_TOTP_SECRET),
        ("the Kite token", &state("kite")),
        ("the Angel One JWT", &state("angel")),
    ];
    for (what, secret) in secrets {
        if let Some(at) = logs.find(secret) {
            // The line it is on, with the secret itself masked.
            let start = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
            panic!(
                "{what} in warden's log: {}",
                logs[start..end].replace(secret, "***")
            );
        }
    }
}
