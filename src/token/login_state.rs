//! The manual login's `state` (SPEC §5 `/login`, `/kite/callback`): issued by `/login`, carried
//! through Kite's redirect, checked and spent by the callback. Each state is good for one
//! callback, within 15 minutes, in every mode.
//!
//! A state is `{nonce}.{issued unix seconds}.{mac}`, the MAC keyed by a key derived from the
//! app's api_secret, so any warden of a fleet can check a state another one issued (the browser
//! may come back to any of them: one redirect URL per Kite app). Spending is where the modes
//! differ: a lone warden remembers the states it issued until they are used or expire (a
//! bounded map: when it is full, `/login` is refused rather than an entry evicted, because an
//! evicted entry must never make a state usable again); a fleet marks a spent nonce in Redis
//! for the rest of its lifetime, and refuses every callback while Redis cannot answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::fleet::Fleet;
use crate::config::KiteConfig;

type HmacSha256 = Hmac<Sha256>;

/// A login link stays usable this long (Kite's request tokens live only minutes anyway).
pub const STATE_TTL: Duration = Duration::from_secs(15 * 60);
/// Wardens of a fleet may disagree on the time by this much: a state "issued" up to this far in
/// the future is accepted, and a fleet-wide spent mark outlives the state by as much.
const CLOCK_SLACK_SECS: i64 = 60;
/// Outstanding states of a lone warden. `/login` is rate-limited per client, so only many
/// clients together can fill it; then `/login` answers 503 until the oldest expire.
pub const MAX_OUTSTANDING: usize = 1024;
/// What the state key is derived for (never the api_secret itself as a key).
const LABEL: &[u8] = b"warden login state v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("missing or unknown state: start the login again from warden's /login")]
    Unknown,
    #[error(
        "this login link is older than {} minutes: start the login again from warden's /login",
        STATE_TTL.as_secs() / 60
    )]
    Expired,
    #[error("this login link was already used: start the login again from warden's /login")]
    Spent,
    #[error(
        "the fleet's token store cannot tell whether this login link was already used ({0}); \
         nothing was done: start the login again from /login when the store is back"
    )]
    StoreDown(String),
    #[error(
        "too many login links are outstanding ({MAX_OUTSTANDING}); try again in {}s",
        retry_after.as_secs()
    )]
    Full { retry_after: Duration },
}

/// The MAC key: HMAC-SHA256(api_secret, LABEL).
#[derive(Clone)]
struct StateKey([u8; 32]);

impl StateKey {
    fn derive(api_secret: &str) -> Option<StateKey> {
        if api_secret.is_empty() {
            return None;
        }
        let mut mac = HmacSha256::new_from_slice(api_secret.as_bytes()).ok()?;
        mac.update(LABEL);
        Some(StateKey(mac.finalize().into_bytes().into()))
    }

    fn mac(&self, api_key: &str, nonce: &str, issued: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in [api_key, nonce, &issued.to_string()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }
}

/// The states of one warden (shared by its HTTP handlers).
pub struct LoginStates {
    key: Option<StateKey>,
    api_key: String,
    fleet: Option<Fleet>,
    /// Lone warden: nonce → expiry (unix seconds) of every state issued and not yet used.
    /// Fleet: the nonces spent on this warden, until they expire (a second line behind Redis,
    /// whose marks a restart without persistence loses; when full, Redis alone decides).
    outstanding: Mutex<HashMap<String, i64>>,
}

/// A state taken apart (its MAC already checked when there is a key).
struct Parsed<'a> {
    nonce: &'a str,
    issued: i64,
}

impl LoginStates {
    /// `fleet`: spend states in Redis (fleet mode). Without an api_secret states are bare
    /// nonces, good only on this warden.
    pub fn new(kite: Option<&KiteConfig>, fleet: Option<Fleet>) -> LoginStates {
        LoginStates {
            key: kite.and_then(|k| StateKey::derive(k.api_secret.expose())),
            api_key: kite.map(|k| k.api_key.clone()).unwrap_or_default(),
            fleet,
            outstanding: Mutex::new(HashMap::new()),
        }
    }

    /// A new state for `/login`.
    pub fn issue(&self) -> Result<String, StateError> {
        self.issue_at(now())
    }

    /// A state as if issued at `now` (unix seconds); tests use it to make an expired one.
    pub fn issue_at(&self, now: i64) -> Result<String, StateError> {
        let nonce = random_nonce();
        if self.fleet.is_none() || self.key.is_none() {
            let mut map = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, expires| *expires > now);
            if map.len() >= MAX_OUTSTANDING {
                let first = map.values().min().copied().unwrap_or(now);
                return Err(StateError::Full {
                    retry_after: Duration::from_secs((first - now).max(1) as u64),
                });
            }
            map.insert(nonce.clone(), now + STATE_TTL.as_secs() as i64);
        }
        Ok(match &self.key {
            Some(k) => {
                let mac = hex::encode(k.mac(&self.api_key, &nonce, now).finalize().into_bytes());
                format!("{nonce}.{now}.{mac}")
            }
            None => nonce,
        })
    }

    /// Check `state` and spend it: `Ok` at most once per state, whatever happens next.
    pub async fn spend(&self, state: &str) -> Result<(), StateError> {
        let now = now();
        let parsed = self.parse(state, now)?;
        match (&self.fleet, &self.key) {
            (Some(fleet), Some(_)) => {
                let expires = parsed.issued + STATE_TTL.as_secs() as i64 + CLOCK_SLACK_SECS;
                if self.spent_here(parsed.nonce, expires, now) {
                    return Err(StateError::Spent);
                }
                let ttl = Duration::from_secs((expires - now).max(1) as u64);
                match fleet.spend_login_state(parsed.nonce, ttl).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(StateError::Spent),
                    Err(e) => Err(StateError::StoreDown(e.to_string())),
                }
            }
            _ => self.spend_here(parsed.nonce, now),
        }
    }

    /// Fleet mode: was `nonce` spent on this warden already? Remembers it (until `expires`)
    /// either way.
    fn spent_here(&self, nonce: &str, expires: i64, now: i64) -> bool {
        let mut map = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(nonce) {
            return true;
        }
        map.retain(|_, e| *e > now);
        if map.len() < MAX_OUTSTANDING {
            map.insert(nonce.to_string(), expires);
        }
        false
    }

    fn spend_here(&self, nonce: &str, now: i64) -> Result<(), StateError> {
        let mut map = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
        match map.remove(nonce) {
            Some(expires) if expires > now => Ok(()),
            Some(_) => Err(StateError::Expired),
            // Never issued here, used already, or issued before a restart.
            None => Err(StateError::Unknown),
        }
    }

    fn parse<'a>(&self, state: &'a str, now: i64) -> Result<Parsed<'a>, StateError> {
        let Some(key) = &self.key else {
            return Ok(Parsed {
                nonce: state,
                issued: now,
            });
        };
        let mut parts = state.splitn(3, '.');
        let (Some(nonce), Some(issued), Some(mac)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(StateError::Unknown);
        };
        let issued: i64 = issued.parse().map_err(|_| StateError::Unknown)?;
        let mac = hex::decode(mac).map_err(|_| StateError::Unknown)?;
        key.mac(&self.api_key, nonce, issued)
            .verify_slice(&mac)
            .map_err(|_| StateError::Unknown)?;
        let age = now - issued;
        if age < -CLOCK_SLACK_SECS {
            return Err(StateError::Unknown);
        }
        if age >= STATE_TTL.as_secs() as i64 {
            return Err(StateError::Expired);
        }
        Ok(Parsed { nonce, issued })
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// 128 random bits from the kernel: the nonce guards the callback against forged logins, so it
/// must not be guessable; fastrand only if /dev/urandom is missing.
fn random_nonce() -> String {
    let mut buf = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_err()
    {
        buf.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn kite(secret: &str) -> KiteConfig {
        KiteConfig {
            api_key: "app".into(),
            api_secret: Secret::new(secret),
            ..KiteConfig::default()
        }
    }

    fn states() -> LoginStates {
        LoginStates::new(Some(&kite("app-secret")), None)
    }

    #[test]
    fn a_state_is_good_once() {
        let s = states();
        let state = s.issue().unwrap();
        let now = now();
        let p = s.parse(&state, now).unwrap();
        assert_eq!(s.spend_here(p.nonce, now), Ok(()));
        let p = s.parse(&state, now).unwrap();
        assert_eq!(s.spend_here(p.nonce, now), Err(StateError::Unknown));
    }

    #[test]
    fn a_forged_or_altered_or_expired_state_is_refused() {
        let s = states();
        let now = now();
        let state = s.issue_at(now).unwrap();
        let (nonce, rest) = state.split_once('.').unwrap();
        let mac = rest.split_once('.').unwrap().1;
        let cases = [
            "forged.1.00".to_string(),
            format!("{nonce}.{}.{mac}", now + 1),
            format!("{nonce}x.{now}.{mac}"),
            format!("{nonce}.{now}"),
            nonce.to_string(),
            String::new(),
        ];
        for c in &cases {
            assert_eq!(s.parse(c, now).err(), Some(StateError::Unknown), "{c}");
        }
        let other = LoginStates::new(Some(&kite("other-secret")), None);
        assert_eq!(
            other.parse(&state, now).err(),
            Some(StateError::Unknown),
            "another app's key"
        );
        let old = s.issue_at(now - STATE_TTL.as_secs() as i64).unwrap();
        assert_eq!(s.parse(&old, now).err(), Some(StateError::Expired));
        let future = s.issue_at(now + 2 * CLOCK_SLACK_SECS).unwrap();
        assert_eq!(s.parse(&future, now).err(), Some(StateError::Unknown));
    }

    #[test]
    fn a_full_map_refuses_new_states_and_never_evicts_one() {
        let s = states();
        let now = now();
        let first = s.issue_at(now).unwrap();
        for _ in 1..MAX_OUTSTANDING {
            s.issue_at(now).unwrap();
        }
        assert!(matches!(s.issue_at(now), Err(StateError::Full { .. })));
        let p = s.parse(&first, now).unwrap();
        assert_eq!(
            s.spend_here(p.nonce, now),
            Ok(()),
            "the oldest is still good"
        );
        assert!(s.issue_at(now).is_ok(), "a used state frees its place");
        let later = now + STATE_TTL.as_secs() as i64;
        assert!(s.issue_at(later).is_ok(), "expired states free theirs");
    }

    #[test]
    fn without_an_api_secret_states_are_bare_nonces_issued_here() {
        let s = LoginStates::new(Some(&kite("")), None);
        let state = s.issue().unwrap();
        assert!(!state.contains('.'));
        let now = now();
        assert_eq!(s.spend_here(&state, now), Ok(()));
        assert_eq!(s.spend_here(&state, now), Err(StateError::Unknown));
    }
}
