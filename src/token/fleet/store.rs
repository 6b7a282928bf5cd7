//! Fleet mode's Redis commands. Every change that reads before it writes is one Lua script, so
//! it is atomic on the server: acquiring the lock bumps the fencing counter in the same step,
//! and a token write is refused unless its fence is still the newest.

use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, IntoConnectionInfo, Script};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::keys::Keys;
use super::record::RecordKey;
use crate::config::{Secret, StoreConfig};
use crate::token::{TokenRecord, TokenSource};

/// A command that takes longer than this counts as "store unreachable".
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Stale requests vanish when nobody leads long enough to read them.
const REQUESTS_TTL_MS: u64 = 60_000;
/// A reply the asker gave up on does not linger.
const REPLY_TTL_MS: u64 = 120_000;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("token store unreachable: {0}")]
    Unreachable(String),
    #[error("token store answered something unexpected: {0}")]
    Protocol(String),
    #[error("token.store.url is not usable: {0}")]
    Config(String),
    #[error(
        "fleet mode needs token.kite.api_secret: the shared token records are signed with a key \
         derived from it"
    )]
    NoRecordKey,
    /// A token record that must not be used (README "Trusting Redis"); never carries the token.
    #[error("ignoring the token record in Redis: {detail}")]
    Untrusted { reason: Rejection, detail: String },
}

/// Why a token record read from Redis was not used; the `reason` label of
/// `warden_token_store_records_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a warden token record at all.
    Unreadable,
    /// No signature, or one that does not verify with this app's record key.
    Signature,
    /// Signed, but for another Kite user than `token.kite.user_id`, or the broker says the
    /// token belongs to another user.
    User,
    /// An older genuine record put back: it must not replace a newer token.
    Replay,
}

impl Rejection {
    pub const ALL: [Rejection; 4] = [
        Rejection::Unreadable,
        Rejection::Signature,
        Rejection::User,
        Rejection::Replay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Unreadable => "unreadable",
            Rejection::Signature => "signature",
            Rejection::User => "user",
            Rejection::Replay => "replay",
        }
    }
}

impl FleetError {
    pub fn untrusted(reason: Rejection, detail: impl Into<String>) -> FleetError {
        FleetError::Untrusted {
            reason,
            detail: detail.into(),
        }
    }
}

/// The shared token as stored in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedToken {
    pub rec: TokenRecord,
    /// The fence of the leader that wrote it.
    pub fence: u64,
    /// That leader's warden id.
    pub writer: String,
}

#[derive(Serialize, Deserialize)]
struct WireToken {
    access_token: String,
    user_id: String,
    obtained_at: i64,
    expires_at: i64,
    source: TokenSource,
    fence: u64,
    writer: String,
    /// The token's companions (Angel One's feed token; a refresh token a new leader needs).
    /// Left out when there are none, so records without them read and verify as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    env: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// HMAC-SHA256 over every field above (`record::RecordKey`), hex.
    #[serde(default)]
    sig: String,
}

/// What a follower asks of the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// Its probes or validation saw the token rejected (`force`: a person asked for a new one).
    Refresh { force: bool, from: String },
    /// A manual login landed on it: the leader exchanges the request token and answers at
    /// `reply`.
    Callback {
        request_token: String,
        reply: String,
        from: String,
        /// Unix seconds after which the asker no longer waits.
        deadline: i64,
    },
    /// Someone wrote a token into its env file: the leader validates and shares it.
    Adopt { access_token: String, from: String },
}

/// A request as stored in the list: its JSON text and that text's signature.
#[derive(Serialize, Deserialize)]
struct SignedRequest {
    body: String,
    sig: String,
}

/// The leader's answer to a forwarded manual login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub wrong_user: bool,
    #[serde(default)]
    pub error: String,
}

/// Outcome of one lock attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// This warden leads now, with this fence.
    Won(u64),
    /// Someone else leads; their lock lives this much longer.
    Held { holder: String, ttl: Duration },
}

const ACQUIRE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. fence, 'PX', ARGV[2])
  return {1, fence, ''}
end
return {0, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[1])}
"#;

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Releasing also tells the followers, so one of them takes over now rather than at its next
/// scheduled attempt.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[2], 'released')
  return 1
end
return 0
"#;

/// Only the holder of the newest fence may write; the write and its announcement are one step.
const WRITE_TOKEN: &str = r#"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[4])
redis.call('PUBLISH', KEYS[3], 'token ' .. ARGV[1])
return 1
"#;

/// Kite refuses a TOTP code twice; a successor must not submit its predecessor's code. A claim
/// covers the steps `ARGV[1]..=ARGV[2]`: a login near the end of a step uses the next one.
const CLAIM_TOTP_STEPS: &str = r#"
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if last >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', 3600)
return 1
"#;

pub struct RedisStore {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    keys: Keys,
    /// Signs what this warden stores and checks what it reads.
    record_key: RecordKey,
    /// Redacted from every error message.
    secrets: Vec<String>,
}

impl RedisStore {
    pub fn new(
        cfg: &StoreConfig,
        api_key: &str,
        record_key: RecordKey,
    ) -> Result<RedisStore, FleetError> {
        let mut secrets = Vec::new();
        let url = url::Url::parse(cfg.url.expose())
            .map_err(|e| FleetError::Config(format!("{e} (a redis:// or rediss:// url)")))?;
        if let Some(p) = url.password() {
            secrets.push(p.to_string());
        }
        let mut info = cfg
            .url
            .expose()
            .into_connection_info()
            .map_err(|e| FleetError::Config(redact(&e.to_string(), &secrets)))?;
        if !cfg.password.is_empty() {
            secrets.push(cfg.password.expose().to_string());
            let settings = info
                .redis_settings()
                .clone()
                .set_password(cfg.password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = match &cfg.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    FleetError::Config(format!("token.store.ca_file {}: {e}", path.display()))
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| FleetError::Config(redact(&e.to_string(), &secrets)))?;
        Ok(RedisStore {
            client,
            conn: Mutex::new(None),
            keys: Keys::new(&cfg.key_prefix, api_key),
            record_key,
            secrets,
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn unreachable(&self, e: &redis::RedisError) -> FleetError {
        FleetError::Unreachable(redact(&e.to_string(), &self.secrets))
    }

    fn config() -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
    }

    async fn connection(&self) -> Result<MultiplexedConnection, FleetError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&Self::config())
            .await
            .map_err(|e| self.unreachable(&e))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Run one command; a failed one drops the connection so the next call dials again.
    async fn run<T: redis::FromRedisValue>(
        &self,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, FleetError> {
        let mut c = self.connection().await?;
        match f(&mut c).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    *self.conn.lock().await = None;
                }
                Err(self.unreachable(&e))
            }
        }
    }

    pub async fn ping(&self) -> Result<(), FleetError> {
        self.run(async |c| redis::cmd("PING").query_async::<String>(c).await)
            .await
            .map(|_| ())
    }

    pub async fn acquire(&self, id: &str, ttl: Duration) -> Result<Acquire, FleetError> {
        let (won, n, holder): (i64, i64, Option<String>) = self
            .run(async |c| {
                Script::new(ACQUIRE)
                    .key(&self.keys.lock)
                    .key(&self.keys.fence)
                    .arg(id)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(if won == 1 {
            Acquire::Won(n as u64)
        } else {
            Acquire::Held {
                holder: holder.unwrap_or_default(),
                ttl: Duration::from_millis(n.max(0) as u64),
            }
        })
    }

    /// Extend our lock; `false` when it is no longer ours.
    pub async fn renew(&self, lock_value: &str, ttl: Duration) -> Result<bool, FleetError> {
        let n: i64 = self
            .run(async |c| {
                Script::new(RENEW)
                    .key(&self.keys.lock)
                    .arg(lock_value)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }

    pub async fn release(&self, lock_value: &str) -> Result<bool, FleetError> {
        let n: i64 = self
            .run(async |c| {
                Script::new(RELEASE)
                    .key(&self.keys.lock)
                    .key(&self.keys.events)
                    .arg(lock_value)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }

    /// Store a token under `fence`, signed; `false` (nothing written) when a newer leader
    /// exists.
    pub async fn write_token(&self, token: &SharedToken) -> Result<bool, FleetError> {
        let wire = WireToken {
            sig: self.record_key.sign(&self.keys.token, token),
            access_token: token.rec.access_token.expose().to_string(),
            user_id: token.rec.user_id.clone(),
            obtained_at: token.rec.obtained_at,
            expires_at: token.rec.expires_at,
            source: token.rec.source,
            fence: token.fence,
            writer: token.writer.clone(),
            env: token
                .rec
                .companions
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect(),
            refresh_token: token
                .rec
                .companions
                .refresh_token
                .as_ref()
                .map(|r| r.expose().to_string()),
        };
        let json = serde_json::to_string(&wire)
            .map_err(|e| FleetError::Protocol(format!("cannot encode the token record: {e}")))?;
        let n: i64 = self
            .run(async |c| {
                Script::new(WRITE_TOKEN)
                    .key(&self.keys.fence)
                    .key(&self.keys.token)
                    .key(&self.keys.events)
                    .key(&self.keys.needs_login)
                    .arg(token.fence)
                    .arg(&json)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }

    pub async fn read_token(&self) -> Result<Option<SharedToken>, FleetError> {
        let raw: Option<String> = self
            .run(async |c| redis::cmd("GET").arg(&self.keys.token).query_async(c).await)
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        let wire: WireToken = serde_json::from_str(&raw).map_err(|e| {
            FleetError::untrusted(
                Rejection::Unreadable,
                format!(
                    "{} does not hold a warden token record ({})",
                    self.keys.token,
                    // serde's message can quote the input; keep only where it broke.
                    format_args!("line {} column {}", e.line(), e.column())
                ),
            )
        })?;
        let sig = wire.sig.clone();
        let token = SharedToken {
            rec: TokenRecord {
                access_token: Secret::new(wire.access_token),
                user_id: wire.user_id,
                obtained_at: wire.obtained_at,
                expires_at: wire.expires_at,
                source: wire.source,
                companions: crate::token::Companions {
                    env: wire
                        .env
                        .into_iter()
                        .map(|(k, v)| (k, Secret::new(v)))
                        .collect(),
                    refresh_token: wire.refresh_token.map(Secret::new),
                },
            },
            fence: wire.fence,
            writer: wire.writer,
        };
        if sig.is_empty() {
            return Err(FleetError::untrusted(
                Rejection::Signature,
                format!("{} carries no signature", self.keys.token),
            ));
        }
        if !self.record_key.verify(&self.keys.token, &token, &sig) {
            return Err(FleetError::untrusted(
                Rejection::Signature,
                format!(
                    "the signature of {} does not verify (written by someone without this \
                     app's api_secret, or altered)",
                    self.keys.token
                ),
            ));
        }
        Ok(Some(token))
    }

    /// Claim the TOTP steps `from..=to` for one login: `false` when a leader already claimed
    /// `from` (or a later step).
    pub async fn claim_totp_steps(&self, from: u64, to: u64) -> Result<bool, FleetError> {
        let n: i64 = self
            .run(async |c| {
                Script::new(CLAIM_TOTP_STEPS)
                    .key(&self.keys.totp_step)
                    .arg(from)
                    .arg(to)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }

    /// The leader tells the fleet that a person must log in (`reason` is shown on every
    /// warden's status page). A new shared token clears it.
    pub async fn set_needs_login(&self, reason: &str) -> Result<(), FleetError> {
        self.run(async |c| {
            redis::pipe()
                .atomic()
                .set(&self.keys.needs_login, reason)
                .ignore()
                .publish(&self.keys.events, "needs_login")
                .ignore()
                .query_async::<()>(c)
                .await
        })
        .await
    }

    pub async fn needs_login(&self) -> Result<Option<String>, FleetError> {
        self.run(async |c| {
            redis::cmd("GET")
                .arg(&self.keys.needs_login)
                .query_async(c)
                .await
        })
        .await
    }

    /// Mark a manual-login `state` nonce spent for the whole fleet for `ttl` (its remaining
    /// lifetime): `true` only for the first caller.
    pub async fn spend_login_state(&self, nonce: &str, ttl: Duration) -> Result<bool, FleetError> {
        let key = self.keys.login_state(nonce);
        let set: Option<String> = self
            .run(async |c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    /// The current fencing counter (the newest leader's fence).
    pub async fn current_fence(&self) -> Result<u64, FleetError> {
        let n: Option<u64> = self
            .run(async |c| redis::cmd("GET").arg(&self.keys.fence).query_async(c).await)
            .await?;
        Ok(n.unwrap_or(0))
    }

    pub async fn push_request(&self, req: &Request) -> Result<(), FleetError> {
        let body = serde_json::to_string(req)
            .map_err(|e| FleetError::Protocol(format!("cannot encode a request: {e}")))?;
        let sig = self.record_key.sign_request(&self.keys.requests, &body);
        let json = serde_json::to_string(&SignedRequest { body, sig })
            .map_err(|e| FleetError::Protocol(format!("cannot encode a request: {e}")))?;
        self.run(async |c| {
            redis::pipe()
                .atomic()
                .rpush(&self.keys.requests, &json)
                .ignore()
                .pexpire(&self.keys.requests, REQUESTS_TTL_MS as i64)
                .ignore()
                .publish(&self.keys.events, "request")
                .ignore()
                .query_async::<()>(c)
                .await
        })
        .await
    }

    /// Take up to `max` queued requests (the leader's job). Unreadable entries, and entries
    /// without a valid signature (not written by a warden of this fleet), are dropped.
    pub async fn pop_requests(&self, max: usize) -> Result<Vec<Request>, FleetError> {
        let raw: Option<Vec<String>> = self
            .run(async |c| {
                redis::cmd("LPOP")
                    .arg(&self.keys.requests)
                    .arg(max)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(raw
            .unwrap_or_default()
            .iter()
            .filter_map(|r| {
                let signed = serde_json::from_str::<SignedRequest>(r).ok().filter(|s| {
                    self.record_key
                        .verify_request(&self.keys.requests, &s.body, &s.sig)
                });
                let Some(signed) = signed else {
                    tracing::warn!(
                        "dropping a fleet request without a valid signature (not written by a \
                         warden with this app's api_secret)"
                    );
                    return None;
                };
                match serde_json::from_str(&signed.body) {
                    Ok(req) => Some(req),
                    Err(_) => {
                        tracing::warn!("dropping an unreadable fleet request");
                        None
                    }
                }
            })
            .collect())
    }

    pub async fn reply(&self, key: &str, reply: &Reply) -> Result<(), FleetError> {
        let json = serde_json::to_string(reply)
            .map_err(|e| FleetError::Protocol(format!("cannot encode a reply: {e}")))?;
        self.run(async |c| {
            redis::pipe()
                .atomic()
                .rpush(key, &json)
                .ignore()
                .pexpire(key, REPLY_TTL_MS as i64)
                .ignore()
                .query_async::<()>(c)
                .await
        })
        .await
    }

    /// Wait for the leader's reply on a connection of its own: a blocking pop would stall
    /// every other command on the shared one.
    pub async fn wait_reply(&self, key: &str, wait: Duration) -> Result<Option<Reply>, FleetError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(wait + COMMAND_TIMEOUT));
        let mut c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.unreachable(&e))?;
        let got: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(key)
            .arg(wait.as_secs_f64())
            .query_async(&mut c)
            .await
            .map_err(|e| self.unreachable(&e))?;
        got.map(|(_, json)| {
            serde_json::from_str(&json)
                .map_err(|_| FleetError::Protocol("unreadable reply from the leader".into()))
        })
        .transpose()
    }

    /// A pub/sub stream of the `events` channel; it ends when the connection drops.
    pub async fn subscribe(&self) -> Result<PubSubStream, FleetError> {
        let mut ps = tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| FleetError::Unreachable("connect timed out".into()))?
            .map_err(|e| self.unreachable(&e))?;
        tokio::time::timeout(COMMAND_TIMEOUT, ps.subscribe(&self.keys.events))
            .await
            .map_err(|_| FleetError::Unreachable("subscribe timed out".into()))?
            .map_err(|e| self.unreachable(&e))?;
        Ok(ps.into_on_message())
    }
}

fn redact(msg: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(msg.to_string(), |m, s| m.replace(s.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json() {
        let r = Request::Refresh {
            force: true,
            from: "a".into(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""kind":"refresh""#), "{json}");
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r);
    }

    #[test]
    fn errors_never_carry_the_password() {
        assert_eq!(
            redact("auth failed for s3cret at host", &["s3cret".into()]),
            "auth failed for *** at host"
        );
    }

    #[test]
    fn a_bad_url_is_a_config_error_without_the_password() {
        let cfg = StoreConfig {
            url: Secret::new("redis://:pw-123@"),
            ..StoreConfig::default()
        };
        let key = RecordKey::derive(&Secret::new("s")).unwrap();
        match RedisStore::new(&cfg, "k", key) {
            Err(FleetError::Config(m)) => assert!(!m.contains("pw-123"), "{m}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => {} // the crate may accept it; then connecting fails later
        }
    }
}
