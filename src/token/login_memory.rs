//! `{state_dir}/login.json`: what automated login must remember across restarts so that no
//! restart can cost the account a strike (SPEC §4, §4.1).
//!
//! - per user: the last TOTP time step whose code was submitted (a restart inside that step
//!   never submits its code again);
//! - per credentials fingerprint: the credential rejections automation spent (at most
//!   [`MAX_REJECTIONS`], ever) and whether automation is blocked, and why;
//! - the recent automated attempts, so `max_attempts` per `attempt_window` holds across
//!   restarts.
//!
//! A fingerprint is HMAC-SHA256 over the user and the secrets, keyed with a random salt kept in
//! this file: it changes when any credential changes, and says nothing about the secrets to
//! someone who reads the file. The secrets themselves are never written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::store::{self, FileMode, StoreError};

pub const LOGIN_JSON: &str = "login.json";
/// Credential rejections automation may spend per credentials fingerprint, ever.
pub const MAX_REJECTIONS: u32 = 2;
/// Attempts older than this are forgotten whatever the attempt window (a day of history is
/// more than any sensible window).
const ATTEMPT_HISTORY_SECS: i64 = 86_400;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UserMemory {
    /// TOTP step number (unix seconds / 30) of the last code submitted.
    last_totp_step: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CredentialMemory {
    rejections: u32,
    /// Why automation is blocked for these credentials, if it is.
    blocked: Option<String>,
    /// Unix seconds of the last rejection.
    rejected_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Doc {
    version: u32,
    /// HMAC key for fingerprints: random per state_dir, not a secret of the user's.
    salt: String,
    #[serde(default)]
    users: BTreeMap<String, UserMemory>,
    #[serde(default)]
    credentials: BTreeMap<String, CredentialMemory>,
    /// Unix seconds of recent automated attempts that submitted credentials.
    #[serde(default)]
    attempts: Vec<i64>,
}

impl Doc {
    fn fresh() -> Doc {
        let salt: String = (0..32)
            .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
            .collect();
        Doc {
            version: 1,
            salt,
            users: BTreeMap::new(),
            credentials: BTreeMap::new(),
            attempts: Vec::new(),
        }
    }
}

/// Why automated login is blocked for a set of credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub reason: String,
    pub rejections: u32,
}

/// Why `unblock` did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnblockRefused {
    #[error("nothing is blocked: automated login is allowed")]
    NotBlocked,
    #[error(
        "automation already spent {MAX_REJECTIONS} credential rejections on these credentials \
         (last: {0}); fix the password/TOTP secret in the config (changed credentials lift the \
         block) or log in manually"
    )]
    Exhausted(String),
}

/// The login safety memory of one state_dir. Every change is written at once.
#[derive(Debug)]
pub struct LoginMemory {
    path: PathBuf,
    doc: Doc,
    /// The file exists but cannot be read: automation stays off until a person acts, since
    /// nothing it should remember can be trusted.
    unreadable: Option<String>,
}

impl LoginMemory {
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(LOGIN_JSON)
    }

    /// Read `{state_dir}/login.json`; a missing file is a fresh memory. An unreadable one
    /// blocks automated login (see [`Self::block`]) rather than forget what it held.
    pub fn load(state_dir: &Path) -> LoginMemory {
        Self::load_file(Self::path_in(state_dir))
    }

    /// Read the memory at `path` (a named token's, SPEC §9.1), like [`Self::load`].
    pub fn load_file(path: PathBuf) -> LoginMemory {
        let (doc, unreadable) = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Doc>(&bytes) {
                Ok(doc) if !doc.salt.is_empty() => (doc, None),
                Ok(_) => (Doc::fresh(), Some("it has no salt".to_string())),
                Err(e) => (
                    Doc::fresh(),
                    Some(format!(
                        "not valid (line {}, column {})",
                        e.line(),
                        e.column()
                    )),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Doc::fresh(), None),
            Err(e) => (Doc::fresh(), Some(e.to_string())),
        };
        let unreadable = unreadable.map(|why| {
            format!(
                "{} cannot be read ({why}); automated login is off because the login safety \
                 memory is lost: fix or delete the file, then run `warden token unblock`",
                path.display()
            )
        });
        LoginMemory {
            path,
            doc,
            unreadable,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keyed fingerprint of a set of credentials (`parts`: user, password/PIN, TOTP
    /// secret, or whatever identifies them).
    pub fn fingerprint(&self, parts: &[&str]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.doc.salt.as_bytes())
            .expect("HMAC takes any key length");
        for p in parts {
            // Length-prefixed, so ("ab","c") and ("a","bc") differ.
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p.as_bytes());
        }
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Write the memory (0600, atomically; the state_dir is created 0700 if needed).
    pub fn save(&self) -> Result<(), StoreError> {
        if let Some(dir) = self.path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StoreError::Io {
                    path: dir.to_path_buf(),
                    action: "create the state directory",
                    source,
                })?;
        }
        let mut bytes = serde_json::to_vec_pretty(&self.doc).expect("plain data serializes");
        bytes.push(b'\n');
        store::atomic_write(&self.path, &bytes, FileMode::Exactly(0o600))
    }

    /// Why automation may not submit these credentials, if it may not.
    pub fn block(&self, fingerprint: &str) -> Option<Block> {
        if let Some(why) = &self.unreadable {
            return Some(Block {
                reason: why.clone(),
                rejections: 0,
            });
        }
        let c = self.doc.credentials.get(fingerprint)?;
        match &c.blocked {
            Some(reason) => Some(Block {
                reason: reason.clone(),
                rejections: c.rejections,
            }),
            None if c.rejections >= MAX_REJECTIONS => Some(Block {
                reason: UnblockRefused::Exhausted("see the log".into()).to_string(),
                rejections: c.rejections,
            }),
            None => None,
        }
    }

    /// A credential rejection: count it and block these credentials.
    pub fn reject(&mut self, fingerprint: &str, reason: &str, now: i64) {
        let c = self
            .doc
            .credentials
            .entry(fingerprint.to_string())
            .or_default();
        c.rejections += 1;
        c.rejected_at = Some(now);
        c.blocked = Some(reason.to_string());
    }

    /// `warden token unblock`: lift a block, unless automation already spent its rejections.
    pub fn unblock(&mut self, fingerprint: &str) -> Result<(), UnblockRefused> {
        if self.unreadable.take().is_some() {
            // Start over, but as if the current TOTP step had been used: the lost memory may
            // have held it. The caller records the step.
            self.doc = Doc::fresh();
            return Ok(());
        }
        let Some(c) = self.doc.credentials.get_mut(fingerprint) else {
            return Err(UnblockRefused::NotBlocked);
        };
        match &c.blocked {
            None if c.rejections < MAX_REJECTIONS => Err(UnblockRefused::NotBlocked),
            Some(reason) if c.rejections >= MAX_REJECTIONS => {
                Err(UnblockRefused::Exhausted(reason.clone()))
            }
            None => Err(UnblockRefused::Exhausted("earlier rejections".into())),
            Some(_) => {
                c.blocked = None;
                Ok(())
            }
        }
    }

    /// A successful manual login lifts the block; the rejections spent stay spent.
    pub fn lift_after_manual_login(&mut self, fingerprint: &str) -> bool {
        self.unreadable = None;
        match self.doc.credentials.get_mut(fingerprint) {
            Some(c) if c.blocked.is_some() => {
                c.blocked = None;
                true
            }
            _ => false,
        }
    }

    pub fn last_totp_step(&self, user: &str) -> Option<u64> {
        self.doc.users.get(user).and_then(|u| u.last_totp_step)
    }

    pub fn record_totp_step(&mut self, user: &str, step: u64) {
        let u = self.doc.users.entry(user.to_string()).or_default();
        u.last_totp_step = Some(u.last_totp_step.map_or(step, |s| s.max(step)));
    }

    /// Automated attempts within `window_secs` before `now`, oldest first.
    pub fn recent_attempts(&self, now: i64, window_secs: i64) -> Vec<i64> {
        self.doc
            .attempts
            .iter()
            .copied()
            .filter(|t| now - *t < window_secs && *t <= now + 60)
            .collect()
    }

    /// Every remembered automated attempt (unix seconds), for [`super::attempt_budget`].
    pub fn attempts(&self) -> &[i64] {
        &self.doc.attempts
    }

    pub fn last_attempt(&self) -> Option<i64> {
        self.doc.attempts.iter().copied().max()
    }

    /// Take back the attempt recorded last (at or before `now`): the broker refused it for
    /// its clock, not for the credentials.
    pub fn forget_attempt(&mut self, now: i64) {
        let last = self
            .doc
            .attempts
            .iter()
            .enumerate()
            .filter(|(_, t)| **t <= now + 60)
            .max_by_key(|(_, t)| **t)
            .map(|(i, _)| i);
        if let Some(i) = last {
            self.doc.attempts.remove(i);
        }
    }

    pub fn record_attempt(&mut self, now: i64) {
        self.doc
            .attempts
            .retain(|t| now - *t < ATTEMPT_HISTORY_SECS && *t <= now + 60);
        self.doc.attempts.push(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_never_stores_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = LoginMemory::load(dir.path());
        let fp = m.fingerprint(&["AB1234", "hunter2-password", "JBSWY3DPEHPK3PXP"]);
        m.record_totp_step("AB1234", 42);
        m.record_attempt(1000);
        m.reject(&fp, "login rejected: wrong password", 1000);
        m.save().unwrap();
        let text = std::fs::read_to_string(LoginMemory::path_in(dir.path())).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("JBSWY3DPEHPK3PXP"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(LoginMemory::path_in(dir.path()))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        let mut m = LoginMemory::load(dir.path());
        assert_eq!(
            m.fingerprint(&["AB1234", "hunter2-password", "JBSWY3DPEHPK3PXP"]),
            fp
        );
        assert_eq!(m.last_totp_step("AB1234"), Some(42));
        assert_eq!(m.recent_attempts(1010, 60), vec![1000]);
        assert!(m.block(&fp).is_some());
        m.unblock(&fp).unwrap();
        assert!(m.block(&fp).is_none());
        m.reject(&fp, "again", 1100);
        assert!(matches!(m.unblock(&fp), Err(UnblockRefused::Exhausted(_))));
        assert!(m.lift_after_manual_login(&fp));
        assert!(m.block(&fp).is_some(), "two rejections spent: still off");
        let other = m.fingerprint(&["AB1234", "new-password", "JBSWY3DPEHPK3PXP"]);
        assert!(m.block(&other).is_none(), "changed credentials are free");
        assert_eq!(m.unblock(&other), Err(UnblockRefused::NotBlocked));
    }

    #[test]
    fn an_unreadable_file_blocks_until_unblocked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(LoginMemory::path_in(dir.path()), "{not json").unwrap();
        let mut m = LoginMemory::load(dir.path());
        let fp = m.fingerprint(&["u"]);
        assert!(m.block(&fp).unwrap().reason.contains("login.json"));
        m.unblock(&fp).unwrap();
        assert!(m.block(&fp).is_none());
    }
}
