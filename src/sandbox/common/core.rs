//! What every broker sandbox remembers and enforces: the one user's PIN and TOTP (±1 step,
//! no code accepted twice, lockout after [`STRIKES`] wrong PINs or codes), live tokens with
//! their expiry, injected faults and the counters of `/_sandbox/stats`. One mutex, never held
//! across an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::faults::{Fault, FaultQueue};
use super::jwt;
use crate::token::login::{unix_now, Totp};

/// Wrong PINs or TOTP codes in a row that lock the account (the strictest reading: every
/// broker here locks after a few; the real N is UNCONFIRMED for all four).
pub const STRIKES: u32 = 5;

/// Dead tokens remembered (to tell "expired" from "never issued"); beyond this the oldest
/// knowledge is dropped.
const DEAD_MEMORY: usize = 10_000;

/// The sandbox's one user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: String,
    pub pin: String,
    pub totp_secret: String,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    UnknownUser,
    WrongPin,
    WrongTotp,
    ReplayedTotp,
    /// Locked now or before; only a reset unlocks.
    Locked,
}

/// Which of a user's tokens: access tokens die on `/_sandbox/expire`, refresh tokens only on
/// `/_sandbox/expire?what=refresh` (or `all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Access,
    Refresh,
    /// Angel One's feed token, Upstox's extended token: issued, never an API credential here.
    Side,
}

/// What the sandbox knows about a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Live {
        user: String,
        exp: u64,
    },
    /// Its lifetime ran out.
    Expired,
    /// Killed early: logout, a newer token, `/_sandbox/expire`.
    Revoked,
    /// Never issued by this sandbox (or forgotten after a reset).
    Unknown,
}

struct Token {
    user: String,
    kind: Kind,
    dies: Instant,
    exp: u64,
}

#[derive(Default)]
struct Inner {
    strikes: HashMap<String, u32>,
    locked: BTreeSet<String>,
    /// (user, TOTP step) already accepted.
    used_steps: HashSet<(String, u64)>,
    tokens: HashMap<String, Token>,
    /// token → expired (true) or revoked (false).
    dead: HashMap<String, bool>,
    faults: FaultQueue,
    counters: BTreeMap<&'static str, u64>,
}

impl Inner {
    fn purge(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .tokens
            .iter()
            .filter(|(_, t)| now >= t.dies)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.tokens.remove(&k);
            self.bury(k, true);
        }
    }

    fn bury(&mut self, token: String, expired: bool) {
        if self.dead.len() >= DEAD_MEMORY {
            self.dead.clear();
        }
        self.dead.insert(token, expired);
    }

    fn revoke_where(&mut self, pred: impl Fn(&Token) -> bool) -> usize {
        let gone: Vec<String> = self
            .tokens
            .iter()
            .filter(|(_, t)| pred(t))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.tokens.remove(k);
            self.bury(k.clone(), false);
        }
        gone.len()
    }
}

/// The state shared by every broker sandbox.
pub struct Core {
    pub user: User,
    totp: Totp,
    key: Vec<u8>,
    inner: Mutex<Inner>,
}

/// Random letters and digits: ids, opaque tokens, codes.
pub fn random_id(len: usize) -> String {
    (0..len).map(|_| fastrand::alphanumeric()).collect()
}

impl Core {
    pub fn new(user: User) -> Result<Core, crate::sandbox::SandboxError> {
        let totp = Totp::from_base32(&user.totp_secret)
            .map_err(|e| crate::sandbox::SandboxError::Config(format!("--totp-secret: {e}")))?;
        Ok(Core {
            user,
            totp,
            key: jwt::random_key(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.purge(Instant::now());
        g
    }

    /// Count one event for `/_sandbox/stats`.
    pub fn bump(&self, counter: &'static str) {
        *self.inner().counters.entry(counter).or_insert(0) += 1;
    }

    /// The user's current TOTP code.
    pub fn current_totp(&self) -> String {
        self.totp.current()
    }

    fn strike(g: &mut Inner, user: &str, why: Denied) -> Denied {
        let n = g.strikes.entry(user.to_string()).or_insert(0);
        *n += 1;
        if *n >= STRIKES {
            g.locked.insert(user.to_string());
            return Denied::Locked;
        }
        why
    }

    /// Check PIN and (when `totp` is given) the TOTP code, striking on a wrong one. Success
    /// clears the strikes and spends the code's step.
    pub fn check_login(&self, user: &str, pin: &str, totp: Option<&str>) -> Result<(), Denied> {
        let mut g = self.inner();
        let user = user.trim();
        let verdict = self.verdict(&mut g, user, pin, totp);
        match verdict {
            Ok(step) => {
                if let Some(step) = step {
                    let now_step = Totp::step_of(unix_now());
                    g.used_steps.insert((user.to_string(), step));
                    g.used_steps.retain(|(_, s)| *s + 2 >= now_step);
                }
                g.strikes.remove(user);
                *g.counters.entry("login_ok").or_insert(0) += 1;
                Ok(())
            }
            Err(why) => {
                *g.counters.entry("login_fail").or_insert(0) += 1;
                Err(why)
            }
        }
    }

    fn verdict(
        &self,
        g: &mut Inner,
        user: &str,
        pin: &str,
        totp: Option<&str>,
    ) -> Result<Option<u64>, Denied> {
        if !user.eq_ignore_ascii_case(&self.user.id) {
            return Err(Denied::UnknownUser);
        }
        let user = self.user.id.as_str();
        if g.locked.contains(user) {
            return Err(Denied::Locked);
        }
        if pin != self.user.pin {
            return Err(Self::strike(g, user, Denied::WrongPin));
        }
        let Some(code) = totp else { return Ok(None) };
        let now_step = Totp::step_of(unix_now());
        let matched = (now_step.saturating_sub(1)..=now_step + 1)
            .find(|s| self.totp.code_of_step(*s) == code.trim());
        match matched {
            None => Err(Self::strike(g, user, Denied::WrongTotp)),
            Some(step) if g.used_steps.contains(&(user.to_string(), step)) => {
                Err(Self::strike(g, user, Denied::ReplayedTotp))
            }
            Some(step) => Ok(Some(step)),
        }
    }

    /// A new token for `user` living `ttl`: a JWT of `claims` plus `iat`/`exp` when `claims`
    /// is an object, else an opaque random string. `exclusive` kills the user's other tokens
    /// of the same kind first ("one live token per user").
    pub fn issue(
        &self,
        user: &str,
        kind: Kind,
        ttl: Duration,
        claims: Value,
        exclusive: bool,
    ) -> (String, u64) {
        let now = unix_now();
        let exp = now + ttl.as_secs();
        let token = match claims {
            Value::Object(mut m) => {
                m.insert("iat".into(), json!(now));
                m.insert("exp".into(), json!(exp));
                // Two tokens minted in one second must still differ.
                m.insert("jti".into(), json!(random_id(12)));
                jwt::sign(&Value::Object(m), &self.key)
            }
            _ => random_id(32),
        };
        let mut g = self.inner();
        if exclusive {
            g.revoke_where(|t| t.user == user && t.kind == kind);
        }
        g.tokens.insert(
            token.clone(),
            Token {
                user: user.to_string(),
                kind,
                dies: Instant::now() + ttl,
                exp,
            },
        );
        let counter = match kind {
            Kind::Access => "access_tokens_issued",
            Kind::Refresh => "refresh_tokens_issued",
            Kind::Side => "side_tokens_issued",
        };
        *g.counters.entry(counter).or_insert(0) += 1;
        (token, exp)
    }

    /// The state of a presented token of `kind`.
    pub fn check(&self, token: &str, kind: Kind) -> Check {
        let g = self.inner();
        match (g.tokens.get(token), g.dead.get(token)) {
            (Some(t), _) if t.kind == kind => Check::Live {
                user: t.user.clone(),
                exp: t.exp,
            },
            (Some(_), _) => Check::Unknown,
            (None, Some(true)) => Check::Expired,
            (None, Some(false)) => Check::Revoked,
            (None, None) => Check::Unknown,
        }
    }

    /// Kill one token (logout, a spent code). True when it was live.
    pub fn revoke(&self, token: &str) -> bool {
        let mut g = self.inner();
        let live = g.tokens.remove(token).is_some();
        if live {
            g.bury(token.to_string(), false);
        }
        live
    }

    /// Kill every token of `kinds` (`/_sandbox/expire`); their next use reads "expired".
    pub fn expire(&self, kinds: &[Kind]) -> usize {
        let mut g = self.inner();
        let gone: Vec<String> = g
            .tokens
            .iter()
            .filter(|(_, t)| kinds.contains(&t.kind))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            g.tokens.remove(k);
            g.bury(k.clone(), true);
        }
        gone.len()
    }

    pub fn add_fault(&self, fault: Fault) {
        self.inner().faults.push(fault);
    }

    /// The fault for a request on `path`, if any (counted as served).
    pub fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut g = self.inner();
        let f = g.faults.take(path);
        if f.is_some() {
            *g.counters.entry("faults_served").or_insert(0) += 1;
        }
        f
    }

    /// Locks, strikes, used codes, tokens, faults and counters all forgotten.
    pub fn reset(&self) {
        *self.inner() = Inner::default();
    }

    /// `/_sandbox/stats`: counts and user ids only, never a token.
    pub fn stats(&self) -> Value {
        let g = self.inner();
        let mut m = serde_json::Map::new();
        for (k, v) in &g.counters {
            m.insert((*k).to_string(), json!(v));
        }
        let live = |kind| g.tokens.values().filter(|t| t.kind == kind).count();
        m.insert("live_tokens".into(), json!(live(Kind::Access)));
        m.insert("live_refresh_tokens".into(), json!(live(Kind::Refresh)));
        m.insert("locked_users".into(), json!(g.locked));
        m.insert("pending_faults".into(), json!(g.faults.pending()));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

    fn core() -> Core {
        Core::new(User {
            id: "U1".into(),
            name: "Test".into(),
            pin: "1234".into(),
            totp_secret: SECRET.into(),
        })
        .unwrap()
    }

    #[test]
    fn five_wrong_pins_lock_and_a_code_is_never_taken_twice() {
        let c = core();
        let code = c.current_totp();
        assert_eq!(c.check_login("U1", "1234", Some(&code)), Ok(()));
        assert_eq!(
            c.check_login("U1", "1234", Some(&code)),
            Err(Denied::ReplayedTotp)
        );
        for _ in 0..3 {
            assert_eq!(c.check_login("U1", "0000", None), Err(Denied::WrongPin));
        }
        assert_eq!(c.check_login("U1", "0000", None), Err(Denied::Locked));
        assert_eq!(c.check_login("U1", "1234", None), Err(Denied::Locked));
        assert_eq!(
            c.check_login("nobody", "1234", None),
            Err(Denied::UnknownUser)
        );
        c.reset();
        assert_eq!(c.check_login("u1", "1234", None), Ok(()));
    }

    #[test]
    fn exclusive_issue_revokes_and_expire_marks_expired() {
        let c = core();
        let ttl = Duration::from_secs(60);
        let (a, _) = c.issue("U1", Kind::Access, ttl, json!({"sub": "U1"}), true);
        assert_eq!(a.split('.').count(), 3);
        let (b, _) = c.issue("U1", Kind::Access, ttl, Value::Null, true);
        assert_eq!(c.check(&a, Kind::Access), Check::Revoked);
        assert!(matches!(c.check(&b, Kind::Access), Check::Live { .. }));
        assert_eq!(c.check(&b, Kind::Refresh), Check::Unknown);
        assert_eq!(c.expire(&[Kind::Access]), 1);
        assert_eq!(c.check(&b, Kind::Access), Check::Expired);
        assert_eq!(c.check("nope", Kind::Access), Check::Unknown);
        let (z, _) = c.issue("U1", Kind::Access, Duration::ZERO, Value::Null, false);
        assert_eq!(c.check(&z, Kind::Access), Check::Expired);
    }
}
