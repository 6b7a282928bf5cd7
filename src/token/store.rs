//! Where the token lives on this machine (SPEC §4): the `env_key=` line of the `.env` the
//! children read, and `{state_dir}/token.json` for warden itself.
//!
//! Both files are replaced atomically by one helper, [`atomic_write`]: the new bytes go to a
//! temporary file in the same directory, are fsynced, get the original's mode, and are renamed
//! over the original; then the directory is fsynced. A reader sees the old file or the new one,
//! never a mix, and a failure at any step leaves the original untouched and no temporary file
//! behind. The new file belongs to the user warden runs as: warden never chowns (as root, a
//! chown would hand any file a symlink can reach to whoever owned the old one).
//!
//! The `.env` is shared with other writers (an operator's editor, a refresh script): a rewrite
//! checks, right before its rename, that the file is still the one it read, and starts over on
//! the fresh contents when it is not, so another writer's edit is never lost.
//!
//! Error messages name the file and what to do about the problem. They never contain the
//! token: a value that cannot be written is described, not shown.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Secret;
use crate::token::dotenv::{self, Quote};
use crate::token::{TokenRecord, TokenSource};

pub use crate::token::env_watch::EnvFileWatcher;

/// The file under `state_dir` that holds warden's own record of the token.
pub const TOKEN_JSON: &str = "token.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: cannot {action}: {source}{}", .path.display(), hint(.source))]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: cannot replace it because it is a mount point (a single file bind-mounted into \
         a container?); mount its directory instead so warden can replace the file atomically",
        .path.display()
    )]
    MountPoint { path: PathBuf },
    #[error("refusing to write {key} to {}: {reason}", .path.display())]
    InvalidValue {
        path: PathBuf,
        key: String,
        reason: &'static str,
    },
    #[error(
        "refusing to write to {}: {key:?} is not a valid dotenv key (use letters, digits and \
         `_`, starting with a letter or `_`)",
        .path.display()
    )]
    InvalidKey { path: PathBuf, key: String },
    #[error(
        "refusing to rewrite {key} in {}: {reason}; fix the file by hand (look for a quote \
         that is opened and never closed)",
        .path.display()
    )]
    Unrewritable {
        path: PathBuf,
        key: String,
        reason: &'static str,
    },
    #[error(
        "{}: {what}; fix or delete the file (warden then validates or obtains a fresh token)",
        .path.display()
    )]
    CorruptTokenJson { path: PathBuf, what: String },
    #[error("{reason}")]
    NotARegularFile { reason: String },
    #[error(
        "{}: another writer kept changing it while warden was writing {key} ({attempts} \
         attempts); warden tries again later",
        .path.display()
    )]
    KeepsChanging {
        path: PathBuf,
        key: String,
        attempts: usize,
    },
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::StorageFull => "; free some disk space",
        io::ErrorKind::PermissionDenied => {
            "; check the owner and mode of the file and of its directory"
        }
        io::ErrorKind::ReadOnlyFilesystem => "; the filesystem is read-only: mount it read-write",
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
            "; check that the directory exists"
        }
        _ => "",
    }
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// The mode a replaced file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileMode {
    /// Keep the original's mode; this one when the file is created.
    KeepOr(u32),
    /// Always this mode (warden's own secret files).
    Exactly(u32),
}

/// Replace `path` with `contents` atomically (see the module docs).
///
/// A symlink is followed: the file it points at is replaced, and the link stays a link.
pub(crate) fn atomic_write(path: &Path, contents: &[u8], mode: FileMode) -> Result<(), StoreError> {
    atomic_write_if(path, contents, mode, &mut || true).map(|_| ())
}

/// [`atomic_write`], but only if `still_current()` holds right before the rename. Returns
/// whether the file was replaced (nothing is left behind when it was not).
fn atomic_write_if(
    path: &Path,
    contents: &[u8],
    mode: FileMode,
    still_current: &mut dyn FnMut() -> bool,
) -> Result<bool, StoreError> {
    let target = resolve_symlink(path)?;
    let name = target
        .file_name()
        .ok_or_else(|| StoreError::Io {
            path: target.clone(),
            action: "write",
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        })?
        .to_string_lossy()
        .into_owned();
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let original = match fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&target, "inspect")(e)),
    };
    let perm = match (mode, &original) {
        (FileMode::KeepOr(_), Some(m)) => m.mode() & 0o7777,
        (FileMode::KeepOr(m) | FileMode::Exactly(m), _) => m,
    };

    let tmp = dir.join(format!(
        ".{}.warden-tmp-{}-{:08x}",
        name.trim_start_matches('.'),
        std::process::id(),
        fastrand::u32(..)
    ));
    // 0600 from the first byte: the token is never readable by others, even briefly.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&target, "create a temporary file next to it"))?;
    let guard = RemoveOnDrop(Some(tmp.clone()));

    file.write_all(contents)
        .map_err(io_err(&target, "write the new contents"))?;
    file.set_permissions(Permissions::from_mode(perm))
        .map_err(io_err(&target, "set the mode of the new file"))?;
    file.sync_all()
        .map_err(io_err(&target, "flush the new contents to disk"))?;
    drop(file);

    if !still_current() {
        return Ok(false);
    }
    if let Err(e) = fs::rename(&tmp, &target) {
        return Err(if e.raw_os_error() == Some(libc::EBUSY) {
            StoreError::MountPoint { path: target }
        } else {
            io_err(&target, "replace it")(e)
        });
    }
    guard.disarm();

    // Make the rename itself durable. The new file is already in place, so a failure here is
    // only worth a warning: reporting failure would make the caller believe nothing changed.
    if let Err(e) = File::open(&dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync directory after replacing a file");
    }
    Ok(true)
}

/// A symlink is followed only to a regular file (warden's config resolves `token.env_file` the
/// same way once, at load; this guards every other caller).
fn resolve_symlink(path: &Path) -> Result<PathBuf, StoreError> {
    crate::config::env_file::resolve(path)
        .map(|r| r.path)
        .map_err(|reason| StoreError::NotARegularFile { reason })
}

/// Deletes the temporary file unless the rename happened.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Every binding of the dotenv file at `path`, in order (apply them in order: the last one
/// wins), for loading `programs.*.env_file` into a child's environment. Bytes that are not
/// UTF-8 are replaced, never fatal. A missing file is an error (the config names it).
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, StoreError> {
    let text = fs::read(path).map_err(io_err(path, "read"))?;
    Ok(dotenv::bindings(&text)
        .into_iter()
        .filter_map(|b| {
            let value = b.value?;
            Some((String::from_utf8_lossy(&text[b.key]).into_owned(), value))
        })
        .collect())
}

/// The value of `key` in the dotenv file at `path` (the last binding wins). A missing file or
/// key is `None`; an empty value is `Some("")`.
pub fn read_env_value(path: &Path, key: &str) -> Result<Option<String>, StoreError> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "read")(e)),
    };
    Ok(dotenv::bindings(&text)
        .into_iter()
        .filter(|b| &text[b.key.clone()] == key.as_bytes())
        .filter_map(|b| b.value)
        .next_back())
}

/// Set `key` to `value` in the dotenv file at `path`, changing nothing else.
///
/// Every `key=` binding is updated in place (its `export `, blanks, quote style and trailing
/// comment are kept); when there is none, `key=value` is appended (after a line break if the
/// file does not end with one, in the file's LF or CRLF style). A missing file is created 0600.
/// When the file already holds exactly this, it is not touched. See [`atomic_write`] for how
/// the file is replaced.
pub fn rewrite_env_file(path: &Path, key: &str, value: &str) -> Result<(), StoreError> {
    if !dotenv::is_valid_key(key) {
        return Err(StoreError::InvalidKey {
            path: path.to_path_buf(),
            key: key.to_string(),
        });
    }
    let invalid = |reason| StoreError::InvalidValue {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    if value.contains(['\n', '\r']) {
        return Err(invalid("the value contains a line break"));
    }
    if value.contains('\0') {
        return Err(invalid("the value contains a NUL byte"));
    }
    let lock = env_file_lock(path);
    let _turn = lock.lock().unwrap_or_else(|e| e.into_inner());
    rewrite_env_file_checked(path, key, value, &mut |_| {})
}

/// The lock of one env file, shared by every keeper of this process (SPEC §9.1: two tokens
/// may share an env file). A rewrite reads the file, changes one key and renames a new file
/// over it; two at once would each keep the other's old value. Held only for the rewrite
/// itself, never across an await.
fn env_file_lock(path: &Path) -> std::sync::Arc<std::sync::Mutex<()>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    locks.entry(path.to_path_buf()).or_default().clone()
}

/// How many times a rewrite starts over because another writer changed the file meanwhile.
const REWRITE_ATTEMPTS: usize = 5;

/// What a file was when it was read: its bytes and which inode, size and times they came from.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    bytes: Vec<u8>,
    /// `None`: there was no file.
    id: Option<(u64, u64, u64, i64, i64, i64, i64)>,
}

fn snapshot(path: &Path) -> Result<Snapshot, StoreError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Snapshot {
                bytes: Vec::new(),
                id: None,
            })
        }
        Err(e) => return Err(io_err(path, "read")(e)),
    };
    // fstat on the handle that is read: the identity and the bytes belong to the same file.
    let m = file.metadata().map_err(io_err(path, "inspect"))?;
    let mut bytes = Vec::with_capacity(m.len() as usize);
    io::Read::read_to_end(&mut file, &mut bytes).map_err(io_err(path, "read"))?;
    Ok(Snapshot {
        bytes,
        id: Some((
            m.dev(),
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )),
    })
}

/// [`rewrite_env_file`] with a hook called right before each compare-and-rename (with the
/// attempt number, from 0): tests use it to edit the file at the worst moment.
pub(crate) fn rewrite_env_file_checked(
    path: &Path,
    key: &str,
    value: &str,
    before_rename: &mut dyn FnMut(usize),
) -> Result<(), StoreError> {
    // The file warden writes (a symlink's target): that is the file whose changes matter.
    let target = resolve_symlink(path)?;
    for attempt in 0..REWRITE_ATTEMPTS {
        let read = snapshot(&target)?;
        let new = rewrite_bytes(&read.bytes, key, value);
        check_rewrite(&read.bytes, &new, key, value).map_err(|reason| {
            StoreError::Unrewritable {
                path: path.to_path_buf(),
                key: key.to_string(),
                reason,
            }
        })?;
        if read.id.is_some() && new == read.bytes {
            return Ok(());
        }
        // Still a window between this check and the rename (no lock is shared with other
        // writers), but an edit made while warden was preparing the new file is not lost.
        let mut unchanged = || {
            before_rename(attempt);
            snapshot(&target).is_ok_and(|now| now == read)
        };
        if atomic_write_if(&target, &new, FileMode::KeepOr(0o600), &mut unchanged)? {
            return Ok(());
        }
        tracing::info!(
            "{} was changed by another writer while warden was writing {key}; redoing the \
             change on its new contents",
            path.display()
        );
    }
    Err(StoreError::KeepsChanging {
        path: path.to_path_buf(),
        key: key.to_string(),
        attempts: REWRITE_ATTEMPTS,
    })
}

/// The new file contents: `old` with every `key` binding's value replaced, or the binding
/// appended.
fn rewrite_bytes(old: &[u8], key: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(old.len() + value.len() + key.len() + 4);
    let mut copied = 0;
    let mut found = false;
    for b in dotenv::bindings(old) {
        if &old[b.key.clone()] != key.as_bytes() {
            continue;
        }
        out.extend_from_slice(&old[copied..b.value_span.start]);
        out.extend_from_slice(dotenv::encode_value(value, b.quote).as_bytes());
        copied = b.value_span.end;
        found = true;
    }
    if found {
        out.extend_from_slice(&old[copied..]);
        return out;
    }
    let crlf = old
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|i| i > 0 && old[i - 1] == b'\r');
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    out.extend_from_slice(old);
    if !old.is_empty() && !old.ends_with(b"\n") {
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(dotenv::encode_value(value, Quote::None).as_bytes());
    out.extend_from_slice(eol);
    out
}

/// Never write a file that reads back differently than intended. This can only trip on files
/// that already contain a quote that is never closed, which a quoted new value could close.
fn check_rewrite(old: &[u8], new: &[u8], key: &str, value: &str) -> Result<(), &'static str> {
    let is_key = |text: &[u8], b: &dotenv::Binding| &text[b.key.clone()] == key.as_bytes();
    let after = dotenv::bindings(new);
    let mine: Vec<_> = after.iter().filter(|b| is_key(new, b)).collect();
    if mine.is_empty() || mine.iter().any(|b| b.value.as_deref() != Some(value)) {
        return Err("the new line would not read back as written");
    }
    let others = |text: &[u8], list: &[dotenv::Binding]| -> Vec<(Vec<u8>, Option<String>)> {
        list.iter()
            .filter(|b| !is_key(text, b))
            .map(|b| (text[b.key.clone()].to_vec(), b.value.clone()))
            .collect()
    };
    if others(old, &dotenv::bindings(old)) != others(new, &after) {
        return Err("the change would alter how other lines are read");
    }
    Ok(())
}

/// `{state_dir}/token.json`.
/// Remove temp files that a killed warden left beside `path` (each is a full copy of the file,
/// token included). Only names this module creates are touched.
pub fn remove_stale_temp_files(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(
        ".{}.warden-tmp-",
        name.to_string_lossy().trim_start_matches('.')
    );
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(
                    "removed {}, left behind by an interrupted write",
                    entry.path().display()
                ),
                Err(e) => tracing::warn!("cannot remove stale {}: {e}", entry.path().display()),
            }
        }
    }
}

pub fn token_json_path(state_dir: &Path) -> PathBuf {
    state_dir.join(TOKEN_JSON)
}

/// Store `rec` as `{state_dir}/token.json` (0600, atomically), creating `state_dir` (0700) if
/// needed.
pub fn write_token_json(state_dir: &Path, rec: &TokenRecord) -> Result<(), StoreError> {
    write_token_json_file(&token_json_path(state_dir), rec)
}

/// Store `rec` as the token file `path` (`{state_dir}/token.json`, or a named token's
/// `{state_dir}/tokens/NAME.json`), creating its directories (0700) if needed.
pub fn write_token_json_file(path: &Path, rec: &TokenRecord) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir, "create the state directory"))?;
    let mut doc = serde_json::json!({
        "access_token": rec.access_token.expose(),
        "user_id": rec.user_id,
        "obtained_at": time_json(rec.obtained_at),
        "expires_at": time_json(rec.expires_at),
        "source": rec.source.as_str(),
    });
    if !rec.companions.env.is_empty() {
        let env: serde_json::Map<String, serde_json::Value> = rec
            .companions
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().into()))
            .collect();
        doc["env"] = env.into();
    }
    if let Some(r) = &rec.companions.refresh_token {
        doc["refresh_token"] = r.expose().into();
    }
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("a JSON value always serializes");
    bytes.push(b'\n');
    atomic_write(path, &bytes, FileMode::Exactly(0o600))
}

fn time_json(unix: i64) -> serde_json::Value {
    match jiff::Timestamp::from_second(unix) {
        Ok(ts) => ts.to_string().into(),
        Err(_) => unix.into(),
    }
}

/// Read `{state_dir}/token.json`. Missing → `None`; unreadable or malformed → an error saying
/// which field is wrong (never its value).
pub fn read_token_json(state_dir: &Path) -> Result<Option<TokenRecord>, StoreError> {
    read_token_json_file(&token_json_path(state_dir))
}

/// Read the token file `path` (see [`write_token_json_file`]) like [`read_token_json`].
pub fn read_token_json_file(path: &Path) -> Result<Option<TokenRecord>, StoreError> {
    let path = path.to_path_buf();
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, "read")(e)),
    };
    let corrupt = |what: String| StoreError::CorruptTokenJson {
        path: path.clone(),
        what,
    };
    // serde_json's messages can quote the offending value, so only its position is reported.
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        corrupt(format!(
            "not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let obj = doc
        .as_object()
        .ok_or_else(|| corrupt("not a JSON object".into()))?;
    let string = |field: &str| -> Result<String, StoreError> {
        obj.get(field)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| corrupt(format!("field `{field}` is missing or not a string")))
    };
    let time = |field: &str| -> Result<i64, StoreError> {
        let bad = || {
            corrupt(format!(
                "field `{field}` must be an RFC 3339 time or unix seconds"
            ))
        };
        match obj.get(field) {
            Some(serde_json::Value::String(s)) => s
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_second())
                .map_err(|_| bad()),
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    };
    let access_token = string("access_token")?;
    if access_token.is_empty() {
        return Err(corrupt("field `access_token` is empty".into()));
    }
    let source = match string("source")?.as_str() {
        "totp" => TokenSource::Totp,
        "session" => TokenSource::Session,
        "manual" => TokenSource::Manual,
        "approve" => TokenSource::Approve,
        "refresh_token" => TokenSource::RefreshToken,
        "command" => TokenSource::Command,
        "env_file" => TokenSource::EnvFile,
        _ => {
            return Err(corrupt(
                "field `source` must be one of totp, session, manual, approve, refresh_token, \
                 command, env_file"
                    .into(),
            ))
        }
    };
    let mut companions = crate::token::Companions::default();
    match obj.get("env") {
        None => {}
        Some(serde_json::Value::Object(env)) => {
            for (k, v) in env {
                let v = v
                    .as_str()
                    .ok_or_else(|| corrupt(format!("field `env.{k}` is not a string")))?;
                companions.env.push((k.clone(), Secret::new(v)));
            }
        }
        Some(_) => return Err(corrupt("field `env` is not an object".into())),
    }
    match obj.get("refresh_token") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(r)) => {
            companions.refresh_token = Some(Secret::new(r.as_str()))
        }
        Some(_) => return Err(corrupt("field `refresh_token` is not a string".into())),
    }
    Ok(Some(TokenRecord {
        access_token: Secret::new(access_token),
        user_id: string("user_id")?,
        obtained_at: time("obtained_at")?,
        expires_at: time("expires_at")?,
        source,
        companions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rewrite(old: &str, key: &str, value: &str) -> String {
        String::from_utf8(rewrite_bytes(old.as_bytes(), key, value)).unwrap()
    }

    #[test]
    fn concurrent_rewrites_of_two_keys_keep_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "# shared\n").unwrap();
        let writers: Vec<_> = ["A_TOKEN", "B_TOKEN"]
            .into_iter()
            .map(|key| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        rewrite_env_file(&path, key, &format!("{key}-{i}")).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(
            read_env_value(&path, "A_TOKEN").unwrap().as_deref(),
            Some("A_TOKEN-199")
        );
        assert_eq!(
            read_env_value(&path, "B_TOKEN").unwrap().as_deref(),
            Some("B_TOKEN-199")
        );
    }

    #[test]
    fn replaces_only_the_value() {
        let old = "# c\nexport  K = \"old\" # keep me\r\nA=1\n  K=old2\nB='x'";
        assert_eq!(
            rewrite(old, "K", "new"),
            "# c\nexport  K = \"new\" # keep me\r\nA=1\n  K=new\nB='x'"
        );
    }

    #[test]
    fn appends_in_file_style() {
        assert_eq!(rewrite("", "K", "v"), "K=v\n");
        assert_eq!(rewrite("A=1", "K", "v"), "A=1\nK=v\n");
        assert_eq!(rewrite("A=1\r\nB=2", "K", "v"), "A=1\r\nB=2\r\nK=v\r\n");
        assert_eq!(rewrite("A=1\n", "K", "a b"), "A=1\nK='a b'\n");
    }

    #[test]
    fn empty_value_with_comment() {
        assert_eq!(rewrite("K= # c\n", "K", "tok"), "K=tok # c\n");
        assert_eq!(rewrite("K=tok # c\n", "K", ""), "K= # c\n");
    }

    #[test]
    fn malformed_binding_is_repaired() {
        assert_eq!(rewrite("K=\"abc\nA=1\n", "K", "tok"), "K=\"tok\"\nA=1\n");
    }

    #[test]
    fn refuses_when_an_open_quote_would_swallow_the_line() {
        let old = b"A=\"open\nK=x\n";
        let new = rewrite_bytes(old, "K", "has \"quote");
        assert!(check_rewrite(old, &new, "K", "has \"quote").is_err());
    }

    #[test]
    fn an_edit_made_between_read_and_rename_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        fs::write(&path, "A=1\nKITE_ACCESS_TOKEN=old\n").unwrap();
        let mut attempts = Vec::new();
        rewrite_env_file_checked(&path, "KITE_ACCESS_TOKEN", "new", &mut |n| {
            attempts.push(n);
            if n == 0 {
                // Another writer, the way editors save: a new file renamed into place.
                let tmp = path.with_extension("editor");
                fs::write(&tmp, "A=1\nKITE_ACCESS_TOKEN=old\nB=added by hand\n").unwrap();
                fs::rename(&tmp, &path).unwrap();
            }
        })
        .unwrap();
        assert_eq!(attempts, [0, 1]);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "A=1\nKITE_ACCESS_TOKEN=new\nB=added by hand\n"
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn an_in_place_edit_of_the_same_size_is_noticed_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        fs::write(&path, "A=1\n").unwrap();
        rewrite_env_file_checked(&path, "K", "v", &mut |n| {
            if n == 0 {
                fs::write(&path, "A=2\n").unwrap();
            }
        })
        .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=2\nK=v\n");
    }

    #[test]
    fn a_file_that_never_stops_changing_is_an_error_and_stays_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        fs::write(&path, "N=0\n").unwrap();
        let e = rewrite_env_file_checked(&path, "K", "v", &mut |n| {
            fs::write(&path, format!("N={}\n", n + 1)).unwrap();
        })
        .unwrap_err();
        assert!(
            matches!(e, StoreError::KeepsChanging { attempts: 5, .. }),
            "{e}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "N=5\n");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    /// `text` with the value spans of every `key` binding cut out.
    fn without_key_values(text: &[u8], key: &str) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut prev = 0;
        let mut n = 0;
        for b in dotenv::bindings(text) {
            if &text[b.key.clone()] == key.as_bytes() {
                out.extend_from_slice(&text[prev..b.value_span.start]);
                prev = b.value_span.end;
                n += 1;
            }
        }
        out.extend_from_slice(&text[prev..]);
        (out, n)
    }

    proptest! {
        // Any text at all: the rewrite either refuses (files with a never-closed quote) or
        // changes nothing but the key's values, reads back, and is idempotent.
        #[test]
        fn arbitrary_text(
            old in "(?s).{0,200}",
            value in "[^\r\n\x00]{0,20}",
            key_line in proptest::option::of("[ \t]{0,2}(export )?K[ ]?=[ ]?.{0,10}"),
        ) {
            let old = match key_line {
                Some(line) => format!("{old}\n{line}"),
                None => old,
            };
            let old = old.as_bytes();
            let new = rewrite_bytes(old, "K", &value);
            if check_rewrite(old, &new, "K", &value).is_err() {
                return Ok(());
            }
            let new_text = String::from_utf8_lossy(&new);
            let read: Vec<_> = dotenv::parse_dotenv(&new_text)
                .into_iter().filter(|(k, _)| k == "K").map(|(_, v)| v).collect();
            prop_assert!(!read.is_empty());
            prop_assert!(read.iter().all(|v| *v == value));

            let (old_rest, old_n) = without_key_values(old, "K");
            let (new_rest, new_n) = without_key_values(&new, "K");
            if old_n == 0 {
                prop_assert!(new.starts_with(old));
                prop_assert_eq!(new_n, 1);
            } else {
                prop_assert_eq!(old_n, new_n);
                prop_assert_eq!(old_rest, new_rest);
            }
            prop_assert_eq!(rewrite_bytes(&new, "K", &value), new);
        }
    }
}
