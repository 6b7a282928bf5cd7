//! The token store on real files: `.env` rewrite (SPEC §4), token.json, the env file watcher.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use warden::config::Secret;
use warden::token::dotenv::parse_dotenv;
use warden::token::store::{
    read_env_file, read_env_value, read_token_json, rewrite_env_file, token_json_path,
    write_token_json, EnvFileWatcher, StoreError,
};
use warden::token::{TokenRecord, TokenSource};

const KEY: &str = "KITE_ACCESS_TOKEN";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Names in `dir` other than `keep`: a leftover temp file shows up here.
fn stray_files(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// .env rewrite: properties

/// A line that is not the key's: comments, blanks, other bindings in every quoting style,
/// and junk, with unicode.
fn other_line() -> impl Strategy<Value = String> {
    let key = "O_[A-Z0-9_]{0,6}";
    prop_oneof![
        "[ \t]{0,2}#[^\r\n]{0,30}",
        "[ \t]{0,3}",
        (key, "[A-Za-z0-9_./+-]{0,12}").prop_map(|(k, v)| format!("{k}={v}")),
        (key, "[^'\r\n]{0,12}").prop_map(|(k, v)| format!("export {k}='{v}'")),
        (key, "[^\"\\\\\r\n]{0,12}").prop_map(|(k, v)| format!("{k} = \"{v}\" # note ü")),
        (key, "[a-z]{1,5}", "[^\r\n]{0,10}").prop_map(|(k, v, c)| format!("{k}={v} #{c}")),
        "[^=\r\n]{0,30}",
        Just(format!("# {KEY}=in a comment")),
        Just(format!("X{KEY}=not the key")),
    ]
}

fn key_line() -> impl Strategy<Value = String> {
    let old = "[A-Za-z0-9]{0,32}";
    prop_oneof![
        old.prop_map(|v| format!("{KEY}={v}")),
        old.prop_map(|v| format!("export {KEY}={v}")),
        old.prop_map(|v| format!("{KEY}=\"{v}\" # refreshed daily")),
        old.prop_map(|v| format!("  {KEY} = '{v}'")),
        Just(format!("{KEY}=")),
        Just(format!("{KEY}= # empty for now")),
    ]
}

prop_compose! {
    /// (lines with "is the key's line" flags, CRLF?, trailing newline?)
    fn env_file()(
        lines in prop::collection::vec(
            prop_oneof![3 => other_line().prop_map(|l| (false, l)), 1 => key_line().prop_map(|l| (true, l))],
            0..12,
        ),
        crlf in any::<bool>(),
        trailing in any::<bool>(),
    ) -> (Vec<(bool, String)>, bool, bool) {
        (lines, crlf, trailing)
    }
}

fn others(text: &str) -> Vec<(String, String)> {
    parse_dotenv(text)
        .into_iter()
        .filter(|(k, _)| k != KEY)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn rewrite_changes_only_the_key_lines(
        (lines, crlf, trailing) in env_file(),
        value in prop_oneof!["[A-Za-z0-9]{32}", "[^\r\n\0]{0,20}"],
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut old = lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join(eol);
        if trailing && !lines.is_empty() {
            old.push_str(eol);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        fs::write(&path, &old).unwrap();

        rewrite_env_file(&path, KEY, &value).unwrap();
        let new = fs::read_to_string(&path).unwrap();

        let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
        let new_lines: Vec<&str> = new.split_inclusive('\n').collect();
        let key_lines: Vec<usize> = lines.iter().enumerate().filter(|(_, (k, _))| *k).map(|(i, _)| i).collect();
        if key_lines.is_empty() {
            prop_assert!(new.starts_with(&old));
            let want_eol = if old.contains('\n') { eol } else { "\n" };
            let mut appended = &new[old.len()..];
            if !old.is_empty() && !old.ends_with('\n') {
                prop_assert!(appended.starts_with(want_eol));
                appended = &appended[want_eol.len()..];
            }
            let prefix = format!("{KEY}=");
            prop_assert!(appended.starts_with(&prefix));
            prop_assert!(appended.ends_with(want_eol));
            prop_assert_eq!(appended.matches('\n').count(), 1);
        } else {
            prop_assert_eq!(old_lines.len(), new_lines.len());
            for (i, (o, n)) in old_lines.iter().zip(&new_lines).enumerate() {
                if key_lines.contains(&i) {
                    // The part up to `=` and the line ending are kept.
                    let head = &o[..=o.find('=').unwrap()];
                    prop_assert!(n.starts_with(head));
                    prop_assert_eq!(o.ends_with("\r\n"), n.ends_with("\r\n"));
                    prop_assert_eq!(o.ends_with('\n'), n.ends_with('\n'));
                } else {
                    prop_assert_eq!(o, n, "line {} changed", i);
                }
            }
        }

        let mine: Vec<String> = parse_dotenv(&new).into_iter().filter(|(k, _)| k == KEY).map(|(_, v)| v).collect();
        prop_assert_eq!(mine.len(), key_lines.len().max(1));
        prop_assert!(mine.iter().all(|v| *v == value));
        prop_assert_eq!(read_env_value(&path, KEY).unwrap(), Some(value.clone()));
        prop_assert_eq!(others(&old), others(&new));

        // Idempotent, and an unchanged file is not even replaced.
        let inode = fs::metadata(&path).unwrap().ino();
        rewrite_env_file(&path, KEY, &value).unwrap();
        prop_assert_eq!(fs::read_to_string(&path).unwrap(), new);
        prop_assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        prop_assert!(stray_files(dir.path(), &[".env"]).is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// .env rewrite: examples, atomicity, modes, failures

#[test]
fn rewrite_example_keeps_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let old =
        "# Kite\r\nKITE_API_KEY=abc\r\nexport KITE_ACCESS_TOKEN=\"old\"  # daily\r\n\r\nPORT=8000";
    fs::write(&path, old).unwrap();
    rewrite_env_file(&path, KEY, "n3wT0ken").unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "# Kite\r\nKITE_API_KEY=abc\r\nexport KITE_ACCESS_TOKEN=\"n3wT0ken\"  # daily\r\n\r\nPORT=8000"
    );
}

#[test]
fn non_utf8_bytes_survive_and_do_not_stop_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let old: &[u8] = b"# caf\xe9 latin-1\nA=1\nKITE_ACCESS_TOKEN=old\nB=\xff\n";
    fs::write(&path, old).unwrap();
    rewrite_env_file(&path, KEY, "tok").unwrap();
    assert_eq!(
        fs::read(&path).unwrap(),
        b"# caf\xe9 latin-1\nA=1\nKITE_ACCESS_TOKEN=tok\nB=\xff\n"
    );
    let env = read_env_file(&path).unwrap();
    assert_eq!(
        env,
        [
            ("A".to_string(), "1".to_string()),
            (KEY.to_string(), "tok".to_string()),
            ("B".to_string(), "\u{fffd}".to_string()),
        ]
    );
    let err = read_env_file(&dir.path().join("missing.env")).unwrap_err();
    assert!(err.to_string().contains("missing.env"), "{err}");
}

#[test]
fn rewrite_updates_every_occurrence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    fs::write(&path, "KITE_ACCESS_TOKEN=a\nX=1\nKITE_ACCESS_TOKEN=b\n").unwrap();
    rewrite_env_file(&path, KEY, "c").unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "KITE_ACCESS_TOKEN=c\nX=1\nKITE_ACCESS_TOKEN=c\n"
    );
}

#[test]
fn readers_never_see_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let head = "# header\nKITE_API_KEY=kitefront\n";
    let tail = "PORT=8000\n# the end\n";
    // Long values make a torn write likely to be caught if the rewrite were not atomic.
    let values: Vec<String> = (0..200)
        .map(|i| format!("{i:03}{}", "x".repeat(4000)))
        .collect();
    fs::write(&path, format!("{head}{KEY}=initial\n{tail}")).unwrap();
    let mut allowed: HashSet<String> = values.iter().cloned().collect();
    allowed.insert("initial".into());

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, path) = (done.clone(), path.clone());
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !done.load(Ordering::Relaxed) {
                let text = fs::read_to_string(&path).expect("the file always exists");
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines.len(), 5, "partial file seen");
                assert_eq!(lines[0], "# header");
                assert_eq!(lines[3], "PORT=8000");
                assert_eq!(lines[4], "# the end");
                let value = lines[2]
                    .strip_prefix("KITE_ACCESS_TOKEN=")
                    .expect("token line");
                assert!(allowed.contains(value), "torn token line seen");
                reads += 1;
            }
            reads
        })
    };
    for v in &values {
        rewrite_env_file(&path, KEY, v).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader saw only whole files");
    assert!(reads > 0);
    assert_eq!(read_env_value(&path, KEY).unwrap().as_ref(), values.last());
    assert!(stray_files(dir.path(), &[".env"]).is_empty());
}

#[test]
fn keeps_the_original_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    fs::write(&path, "A=1\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    rewrite_env_file(&path, KEY, "tok").unwrap();
    assert_eq!(mode(&path), 0o640);
}

#[test]
fn creates_a_missing_file_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    rewrite_env_file(&path, KEY, "tok").unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "KITE_ACCESS_TOKEN=tok\n"
    );
    assert_eq!(mode(&path), 0o600);
}

/// Issue 12: warden never chowns. As root, giving the new file the old one's owner would let a
/// symlink hand any file to whoever owned the link's target.
#[test]
fn as_root_never_chowns() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP owner test: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    fs::write(&path, "A=1\n").unwrap();
    std::os::unix::fs::chown(&path, Some(4321), Some(4322)).unwrap();
    rewrite_env_file(&path, KEY, "tok").unwrap();
    let m = fs::metadata(&path).unwrap();
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    assert_eq!((m.uid(), m.gid()), me);
}

#[test]
fn refuses_a_symlink_that_dangles_or_leads_to_a_non_file() {
    let dir = tempfile::tempdir().unwrap();
    let dangling = dir.path().join(".env");
    std::os::unix::fs::symlink("missing.env", &dangling).unwrap();
    let e = rewrite_env_file(&dangling, KEY, "tok").unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!dir.path().join("missing.env").exists());
    let to_dir = dir.path().join("dir.env");
    std::os::unix::fs::symlink(dir.path(), &to_dir).unwrap();
    let e = rewrite_env_file(&to_dir, KEY, "tok").unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

#[test]
fn follows_a_symlink_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("shared")).unwrap();
    let real = dir.path().join("shared/real.env");
    fs::write(&real, "A=1\n").unwrap();
    let link = dir.path().join(".env");
    std::os::unix::fs::symlink("shared/real.env", &link).unwrap();
    rewrite_env_file(&link, KEY, "tok").unwrap();
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_to_string(&real).unwrap(),
        "A=1\nKITE_ACCESS_TOKEN=tok\n"
    );
}

#[test]
fn rejects_values_that_would_break_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    fs::write(&path, "KITE_ACCESS_TOKEN=old\n").unwrap();
    for bad in ["sekrit\nEVIL=1", "sekrit\r", "sek\0rit"] {
        let err = rewrite_env_file(&path, KEY, bad).unwrap_err();
        assert!(matches!(err, StoreError::InvalidValue { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(".env") && msg.contains(KEY), "{msg}");
        assert!(!msg.contains("sek"), "the value leaked: {msg}");
    }
    let err = rewrite_env_file(&path, "BAD KEY", "tok").unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { .. }));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "KITE_ACCESS_TOKEN=old\n"
    );
}

#[test]
fn parent_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let err = rewrite_env_file(&file.join(".env"), KEY, "s3cr3t").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not-a-dir/.env"), "{msg}");
    assert!(!msg.contains("s3cr3t"));
    assert_eq!(fs::read_to_string(&file).unwrap(), "x");
}

const CHILD_ENV: &str = "WARDEN_TEST_FSIZE_CHILD_DIR";

/// The disk-full case, for real: re-run this test binary as a child whose file size limit
/// (RLIMIT_FSIZE) is smaller than the new file, so writing the temp file fails with EFBIG
/// exactly like ENOSPC would, without privileges and without affecting other tests.
#[test]
fn write_failure_leaves_the_original_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let original = "# keep\nKITE_ACCESS_TOKEN=old\nPORT=8000\n";
    fs::write(&path, original).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fsize_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("CHILD-ERR:"), "{stdout}");
    assert!(
        stdout.contains(".env") && !stdout.contains("xxxx"),
        "{stdout}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), original);
    assert!(
        stray_files(dir.path(), &[".env"]).is_empty(),
        "temp file left behind"
    );
}

/// Runs only as the child of `write_failure_leaves_the_original_intact`.
#[test]
fn fsize_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // SAFETY: plain libc calls on this process; SIGXFSZ ignored so write() returns EFBIG.
    unsafe {
        let lim = libc::rlimit {
            rlim_cur: 1024,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let path = Path::new(&dir).join(".env");
    let err = rewrite_env_file(&path, KEY, &"x".repeat(8192)).unwrap_err();
    println!("CHILD-ERR: {err}");
}

// ---------------------------------------------------------------------------------------------
// token.json

fn record() -> TokenRecord {
    TokenRecord {
        access_token: Secret::new("tok_8f2b"),
        user_id: "AB1234".into(),
        obtained_at: 1_700_000_000,
        expires_at: 1_700_030_400,
        source: TokenSource::Manual,
        companions: Default::default(),
    }
}

#[test]
fn token_json_roundtrip_modes_and_format() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/.warden");
    assert_eq!(read_token_json(&state).unwrap(), None);
    write_token_json(&state, &record()).unwrap();
    assert_eq!(mode(&state), 0o700);
    let file = token_json_path(&state);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(read_token_json(&state).unwrap(), Some(record()));

    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    let obj = doc.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_at",
            "obtained_at",
            "source",
            "user_id"
        ]
    );
    assert_eq!(obj["obtained_at"], "2023-11-14T22:13:20Z");
    assert_eq!(obj["source"], "manual");

    // Rewritten over a looser file: always 0600.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let rec = TokenRecord {
        source: TokenSource::EnvFile,
        companions: Default::default(),
        ..record()
    };
    write_token_json(&state, &rec).unwrap();
    assert_eq!(mode(&file), 0o600);
    assert_eq!(read_token_json(&state).unwrap(), Some(rec));
    assert!(stray_files(&state, &["token.json"]).is_empty());
}

#[test]
fn token_json_keeps_companions_and_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let rec = TokenRecord {
        source: TokenSource::RefreshToken,
        companions: warden::token::Companions {
            env: vec![("ANGELONE_FEED_TOKEN".into(), Secret::new("feed-1"))],
            refresh_token: Some(Secret::new("refresh-1")),
        },
        ..record()
    };
    write_token_json(&state, &rec).unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(token_json_path(&state)).unwrap()).unwrap();
    assert_eq!(doc["env"]["ANGELONE_FEED_TOKEN"], "feed-1");
    assert_eq!(doc["refresh_token"], "refresh-1");
    assert_eq!(doc["source"], "refresh_token");
    assert_eq!(read_token_json(&state).unwrap(), Some(rec));
    for source in [TokenSource::Approve, TokenSource::Session] {
        let rec = TokenRecord { source, ..record() };
        write_token_json(&state, &rec).unwrap();
        assert_eq!(read_token_json(&state).unwrap(), Some(rec));
    }
}

#[test]
fn token_json_accepts_unix_seconds_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        token_json_path(dir.path()),
        r#"{"access_token":"t","user_id":"U","obtained_at":1700000000,
           "expires_at":"2023-11-15T06:00:00+05:30","source":"totp","extra":1}"#,
    )
    .unwrap();
    let rec = read_token_json(dir.path()).unwrap().unwrap();
    assert_eq!(rec.obtained_at, 1_700_000_000);
    assert_eq!(rec.expires_at, 1_700_008_200);
    assert_eq!(rec.source, TokenSource::Totp);
}

#[test]
fn corrupt_token_json_is_a_clear_error_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"access_token":"s3cr3t_tok","user_id":"U""#,
            "not valid JSON",
        ),
        (r#"["s3cr3t_tok"]"#, "not a JSON object"),
        (
            r#"{"access_token":"s3cr3t_tok","user_id":"U","obtained_at":"s3cr3t_tok","expires_at":1,"source":"totp"}"#,
            "`obtained_at`",
        ),
        (
            r#"{"access_token":"s3cr3t_tok","user_id":"U","obtained_at":1,"expires_at":1,"source":"s3cr3t_tok"}"#,
            "`source`",
        ),
        (
            r#"{"access_token":7,"user_id":"U","obtained_at":1,"expires_at":1,"source":"totp"}"#,
            "`access_token`",
        ),
    ];
    for (text, want) in cases {
        fs::write(token_json_path(dir.path()), text).unwrap();
        let err = read_token_json(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::CorruptTokenJson { .. }), "{msg}");
        assert!(msg.contains(want) && msg.contains("token.json"), "{msg}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// Watcher

const WAIT: Duration = Duration::from_secs(5);
/// Comfortably longer than the watcher's debounce: "nothing arrives within this" means the
/// watcher saw the change and decided it was not news.
const QUIET: Duration = Duration::from_millis(700);

async fn next(rx: &mut tokio::sync::mpsc::Receiver<Secret>) -> String {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a value within the deadline")
        .expect("watcher alive")
        .expose()
        .to_string()
}

async fn nothing(rx: &mut tokio::sync::mpsc::Receiver<Secret>) {
    if let Ok(v) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!(
            "unexpected delivery: {:?}",
            v.map(|s| s.expose().to_string())
        );
    }
}

#[tokio::test]
async fn watcher_reports_outside_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    fs::write(&path, "A=1\nKITE_ACCESS_TOKEN=start\n").unwrap();
    let (watcher, mut rx) = EnvFileWatcher::start(&path, KEY).unwrap();

    // A script that truncates and writes in place.
    fs::write(&path, "A=1\nKITE_ACCESS_TOKEN=from_script\n").unwrap();
    assert_eq!(next(&mut rx).await, "from_script");

    // warden's own write is not news.
    watcher.set_known(&Secret::new("from_warden"));
    rewrite_env_file(&path, KEY, "from_warden").unwrap();
    nothing(&mut rx).await;

    // Neither is a change to another line.
    fs::write(&path, "A=2\nKITE_ACCESS_TOKEN=from_warden\n").unwrap();
    nothing(&mut rx).await;

    // An editor-style replace by rename is seen.
    let tmp = dir.path().join(".env.swp");
    fs::write(&tmp, "A=2\nKITE_ACCESS_TOKEN=from_editor\n").unwrap();
    fs::rename(&tmp, &path).unwrap();
    assert_eq!(next(&mut rx).await, "from_editor");

    // Delete and recreate.
    fs::remove_file(&path).unwrap();
    fs::write(&path, "KITE_ACCESS_TOKEN=recreated\n").unwrap();
    assert_eq!(next(&mut rx).await, "recreated");

    // Empty values are not tokens.
    fs::write(&path, "KITE_ACCESS_TOKEN=\n").unwrap();
    nothing(&mut rx).await;

    // Idle means idle: reading the file (as we and the children do) wakes nothing.
    let before = watcher.rereads();
    for _ in 0..5 {
        read_env_value(&path, KEY).unwrap();
    }
    nothing(&mut rx).await;
    assert_eq!(
        watcher.rereads(),
        before,
        "the watcher re-read an untouched file"
    );

    drop(watcher);
    assert!(tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn watcher_starts_from_the_current_value_and_coalesces_bursts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    fs::write(&path, "KITE_ACCESS_TOKEN=already_there\n").unwrap();
    let (_watcher, mut rx) = EnvFileWatcher::start(&path, KEY).unwrap();
    fs::write(&path, "KITE_ACCESS_TOKEN=already_there\n").unwrap();
    nothing(&mut rx).await;

    for i in 0..30 {
        fs::write(&path, format!("KITE_ACCESS_TOKEN=burst_{i}\n")).unwrap();
    }
    let mut deliveries = 0;
    loop {
        deliveries += 1;
        if next(&mut rx).await == "burst_29" {
            break;
        }
    }
    assert!(deliveries < 30, "{deliveries} deliveries for one burst");
}

#[tokio::test]
async fn watcher_needs_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let err = EnvFileWatcher::start(&dir.path().join("missing/.env"), KEY).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
