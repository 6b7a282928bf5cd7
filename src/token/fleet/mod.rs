//! Fleet mode (README "Fleet mode"): many wardens share one Kite app, so exactly one of them —
//! the holder of a Redis lock — may log in. Kite keeps one token per api_key, and every login
//! kills the previous token, so two refreshers would take turns breaking each other.
//!
//! The lock carries a fencing token (a counter bumped on every acquisition); the shared token
//! is written only by a script that compares fences, so a leader that was paused past its TTL
//! cannot overwrite what its successor stored. Followers learn of new tokens over pub/sub and
//! send what they need (a refresh, a manual login that landed on them) through a Redis list.
//! Without Redis nobody leads: every warden keeps its last token and nobody logs in.

mod election;
pub mod history;
pub mod keys;
pub mod record;
pub mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use record::RecordKey;
use store::RedisStore;
pub use store::{FleetError, Rejection, Reply, Request, SharedToken};

use super::TokenRecord;
use crate::config::{KiteConfig, StoreConfig};
use crate::metrics::Metrics;

/// This warden's part in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Not known yet, or the store is unreachable: nobody may log in from here.
    #[default]
    Unknown,
    Leader,
    Follower,
}

/// The `token.store` object of `/api/v1/status`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FleetStatus {
    pub kind: &'static str,
    pub up: bool,
    pub role: Role,
    /// This warden's id in the fleet.
    pub id: String,
    /// The current leader's id, when known.
    pub leader: Option<String>,
    /// The fence this warden leads with (0 when it does not lead).
    pub fence: u64,
    pub last_error: Option<String>,
    /// Token records from Redis this warden refused to use (README "Trusting Redis").
    pub records_rejected: u64,
    /// Why the last one was refused (never the token).
    pub last_rejection: Option<String>,
}

/// What the fleet tells the token keeper.
#[derive(Debug)]
pub enum FleetEvent {
    /// The shared token, after a change or a (re)connect.
    Token(SharedToken),
    /// This warden started (`true`) or stopped leading.
    Leading(bool),
    /// Requests from followers, for the leader.
    Requests(Vec<Request>),
    /// The leader needs a person to log in, for this reason.
    LeaderNeedsLogin(String),
}

/// The lock this warden holds while it leads.
#[derive(Debug, Clone)]
struct Lease {
    value: String,
    fence: u64,
    /// Past this instant (counted from before the last successful renewal) the lock may be
    /// someone else's, whatever we last heard.
    valid_until: Instant,
}

struct Inner {
    store: RedisStore,
    /// `token.kite.user_id`: a record for anyone else is refused (empty: not checked here).
    user_id: String,
    id: String,
    ttl: Duration,
    status: watch::Sender<FleetStatus>,
    lease: Mutex<Option<Lease>>,
    wake: Notify,
    metrics: Arc<Metrics>,
    /// Set on graceful stop: never take the lock again.
    retired: AtomicBool,
    /// The keeper's inbox, for reads scheduled outside the fleet task.
    events: UnboundedSender<FleetEvent>,
}

/// A cheap handle on the fleet; the election and subscription run in a task of their own.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

impl Fleet {
    /// What start-up checks before anything runs: a usable url and a key to sign with.
    pub fn check(cfg: &StoreConfig, kite: &KiteConfig) -> Result<(), FleetError> {
        Self::store(cfg, kite).map(|_| ())
    }

    fn store(cfg: &StoreConfig, kite: &KiteConfig) -> Result<RedisStore, FleetError> {
        let record_key = RecordKey::derive(&kite.api_secret).ok_or(FleetError::NoRecordKey)?;
        RedisStore::new(cfg, &kite.api_key, record_key)
    }

    /// Connects lazily: an unreachable Redis at start-up is reported, not fatal.
    pub fn start(
        cfg: &StoreConfig,
        kite: &KiteConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Fleet, UnboundedReceiver<FleetEvent>), FleetError> {
        let store = Self::store(cfg, kite)?;
        let id = warden_id();
        let (status, _) = watch::channel(FleetStatus {
            kind: "redis",
            id: id.clone(),
            ..FleetStatus::default()
        });
        metrics.set_token_store_up(false);
        metrics.set_token_leader(false);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let fleet = Fleet {
            inner: Arc::new(Inner {
                store,
                user_id: kite.user_id.clone(),
                id,
                ttl: cfg.lock_ttl,
                status,
                lease: Mutex::new(None),
                wake: Notify::new(),
                metrics,
                retired: AtomicBool::new(false),
                events: tx.clone(),
            }),
        };
        tokio::spawn(election::run(fleet.clone(), tx));
        Ok((fleet, rx))
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn status(&self) -> watch::Receiver<FleetStatus> {
        self.inner.status.subscribe()
    }

    pub fn role(&self) -> Role {
        self.inner.status.borrow().role
    }

    /// Wait (bounded) until the first election has an answer, so start-up decisions see a role.
    pub async fn settled(&self, wait: Duration) {
        let mut rx = self.status();
        let _ = tokio::time::timeout(wait, rx.wait_for(|s| s.role != Role::Unknown)).await;
    }

    fn lease(&self) -> Option<Lease> {
        self.inner
            .lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Renew the lock right now: `Some(fence)` only if this warden still leads. Called right
    /// before a login, so a leader that lost its lock while busy never logs in.
    pub async fn confirm_leader(&self) -> Option<u64> {
        let lease = self.lease()?;
        let asked = Instant::now();
        match self.inner.store.renew(&lease.value, self.inner.ttl).await {
            Ok(true) => {
                if let Some(l) = self
                    .inner
                    .lease
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                {
                    l.valid_until = asked + self.inner.ttl;
                }
                Some(lease.fence)
            }
            Ok(false) => {
                self.inner.wake.notify_one();
                None
            }
            Err(e) => {
                tracing::warn!("cannot confirm fleet leadership: {e}");
                None
            }
        }
    }

    /// Share a token this leader obtained: `Ok(false)` when a newer leader's fence refuses it.
    pub async fn publish(&self, rec: &TokenRecord) -> Result<bool, FleetError> {
        let Some(lease) = self.lease() else {
            return Ok(false);
        };
        let ok = self
            .inner
            .store
            .write_token(&SharedToken {
                rec: rec.clone(),
                fence: lease.fence,
                writer: self.inner.id.clone(),
            })
            .await?;
        if !ok {
            self.inner.wake.notify_one();
        }
        Ok(ok)
    }

    /// Reserve the TOTP steps a login starting in `step` may use: this one and the next (the
    /// login waits out the last seconds of a step, and the password round trip takes time).
    pub async fn claim_totp_steps(&self, step: u64) -> Result<bool, FleetError> {
        self.inner.store.claim_totp_steps(step, step + 1).await
    }

    /// Tell every warden of the fleet that a person must log in (leader only; in the
    /// background, so a slow store never holds the keeper up).
    pub fn share_needs_login(&self, reason: String) {
        if self.role() != Role::Leader {
            return;
        }
        let f = self.clone();
        tokio::spawn(async move {
            if let Err(e) = f.inner.store.set_needs_login(&reason).await {
                tracing::warn!("cannot tell the fleet that a login is needed: {e}");
            }
        });
    }

    /// The shared token, only if its signature verifies and it is for the configured user;
    /// anything else is reported (log, `token.store.records_rejected`, the metric) and comes
    /// back as [`FleetError::Untrusted`].
    pub async fn read_token(&self) -> Result<Option<SharedToken>, FleetError> {
        let read = self.inner.store.read_token().await.and_then(|t| match t {
            Some(t) if !self.inner.user_id.is_empty() && t.rec.user_id != self.inner.user_id => {
                Err(FleetError::untrusted(
                    Rejection::User,
                    format!(
                        "it is signed for Kite user {:?}, not the configured user_id {}",
                        t.rec.user_id, self.inner.user_id
                    ),
                ))
            }
            other => Ok(other),
        });
        if let Err(FleetError::Untrusted { reason, detail }) = &read {
            self.reject(*reason, detail);
        }
        read
    }

    /// Report a token record from Redis that this warden refuses to use. `detail` must never
    /// hold the token.
    pub fn reject(&self, reason: Rejection, detail: &str) {
        tracing::warn!(
            reason = reason.as_str(),
            "ignoring the token record in Redis: {detail}"
        );
        self.inner
            .metrics
            .inc_token_store_record_rejected(reason.as_str());
        self.inner.status.send_modify(|s| {
            s.records_rejected += 1;
            s.last_rejection = Some(format!("{}: {detail}", reason.as_str()));
        });
    }

    /// Read the shared token again after `delay` and hand it to the keeper (the broker could
    /// not validate it just now).
    pub fn resync_later(&self, delay: Duration) {
        let f = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Ok(Some(t)) = f.read_token().await {
                let _ = f.inner.events.send(FleetEvent::Token(t));
            }
        });
    }

    /// Mark a manual-login `state` nonce spent for the whole fleet: `Ok(false)` when some
    /// warden already spent it.
    pub async fn spend_login_state(&self, nonce: &str, ttl: Duration) -> Result<bool, FleetError> {
        self.inner.store.spend_login_state(nonce, ttl).await
    }

    pub async fn request(&self, req: &Request) -> Result<(), FleetError> {
        self.inner.store.push_request(req).await
    }

    /// Hand a manual login's request token to the leader and wait for its answer. `now`:
    /// the caller's wall clock (unix seconds); the leader drops the request after `wait`.
    pub async fn forward_callback(
        &self,
        request_token: &str,
        wait: Duration,
        now: i64,
    ) -> Result<Option<Reply>, FleetError> {
        let reply = self.inner.store.keys().reply(&random_id());
        let deadline = now + wait.as_secs() as i64;
        self.request(&Request::Callback {
            request_token: request_token.to_string(),
            reply: reply.clone(),
            from: self.inner.id.clone(),
            deadline,
        })
        .await?;
        self.inner.store.wait_reply(&reply, wait).await
    }

    pub async fn answer(&self, reply_key: &str, reply: &Reply) {
        if let Err(e) = self.inner.store.reply(reply_key, reply).await {
            tracing::warn!("cannot answer a forwarded manual login: {e}");
        }
    }

    /// Give the lock up (graceful stop), so a successor need not wait for the TTL.
    pub async fn release(&self) {
        self.inner.retired.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
        let lease = self
            .inner
            .lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(l) = lease {
            match self.inner.store.release(&l.value).await {
                Ok(true) => tracing::info!("fleet lock released"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!("cannot release the fleet lock ({e}); it expires by itself")
                }
            }
            self.inner.metrics.set_token_leader(false);
        }
    }
}

impl Fleet {
    fn retired(&self) -> bool {
        self.inner.retired.load(Ordering::SeqCst)
    }
}

fn random_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// Host, pid and a random part: unique across restarts and across containers that all run
/// as PID 1.
fn warden_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    format!("{host}/{}/{:04x}", std::process::id(), fastrand::u16(..))
}
