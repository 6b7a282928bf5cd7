//! The fleet protocol (README "Fleet mode"): a follower asks the leader for tokens and takes
//! the ones it shares after the broker vouched for them; the leader answers requests, shares
//! what it obtains and completes manual logins that landed on a follower.

use std::time::Duration;

use tokio::time::Instant;

use super::{CallbackError, Keeper, TokenState, Trigger};
use crate::config::Secret;
use crate::token::fleet::{Fleet, FleetEvent, Rejection, Reply, Request, SharedToken};
use crate::token::login::Totp;
use crate::token::provider::{Failure, Provider, ProviderError};

/// How often a follower with a rejected token asks the leader again.
pub(super) const ASK_INTERVAL: Duration = Duration::from_secs(10);
/// How long a manual login that landed on a follower waits for the leader.
const FORWARD_WAIT: Duration = Duration::from_secs(30);
/// When the broker could not say whether a shared token is good, read it again.
const SHARED_RECHECK: Duration = Duration::from_secs(5);

impl<P: Provider> Keeper<P> {
    /// A follower whose token is rejected asks the leader (at most every ASK_INTERVAL, unless
    /// a person asked), and reminds it until a token arrives.
    pub(super) async fn ask_leader(&mut self, f: &Fleet, force: bool) {
        let now = Instant::now();
        // The leader already waits for a person; asking again changes nothing.
        if !force && self.status.borrow().state == TokenState::NeedsLogin {
            return;
        }
        if !force
            && self
                .last_ask
                .is_some_and(|t| now.duration_since(t) < ASK_INTERVAL)
        {
            return;
        }
        self.last_ask = Some(now);
        let req = Request::Refresh {
            force,
            from: f.id().to_string(),
        };
        let msg = match f.request(&req).await {
            Ok(()) => {
                tracing::info!("asked the fleet leader for a new token");
                "waiting for the fleet leader to refresh the token".to_string()
            }
            Err(e) => format!("{e}; in fleet mode this warden does not log in by itself"),
        };
        let state = self.status.borrow().state;
        if state != TokenState::Valid {
            self.set_state(state, Some(msg));
            self.retry_at = Some(now + ASK_INTERVAL);
        }
    }

    pub(super) async fn on_fleet(&mut self, ev: FleetEvent) {
        match ev {
            FleetEvent::Token(shared) => self.on_shared(shared).await,
            FleetEvent::Leading(true) => self.lead().await,
            FleetEvent::Leading(false) => {}
            FleetEvent::LeaderNeedsLogin(reason) => {
                // Every warden's page then offers the login, not only the leader's.
                if self.following().is_some() && self.status.borrow().state != TokenState::Valid {
                    self.set_state(
                        TokenState::NeedsLogin,
                        Some(format!(
                            "the fleet leader needs a person to log in: {reason}"
                        )),
                    );
                }
            }
            FleetEvent::Requests(reqs) => {
                for r in reqs {
                    self.on_request(r).await;
                }
            }
        }
    }

    /// A token from the shared store (its signature already verified by the fleet). It must be
    /// newer than ours (an old genuine record put back is a replay) and the broker must accept
    /// it for the configured user before anything is written (README "Trusting Redis").
    pub(super) async fn on_shared(&mut self, shared: SharedToken) {
        if let Some(c) = &self.current {
            if c.access_token == shared.rec.access_token {
                self.current_fence = self.current_fence.max(shared.fence);
                return;
            }
        }
        let Some(f) = self.coordination.fleet().cloned() else {
            return;
        };
        // Strictly older: obtained_at has whole seconds, and a leader may log in again within
        // the second of its last login (a token killed right after it was shared); that new
        // token must not be taken for a replay. A record put back from the same second is
        // still stopped by the broker, which no longer accepts the older token.
        let replay = self.current.as_ref().is_some_and(|c| {
            shared.fence <= self.current_fence && shared.rec.obtained_at < c.obtained_at
        });
        if replay {
            f.reject(
                Rejection::Replay,
                &format!(
                    "its fence {} and obtained_at are not newer than those of the token in use \
                     (fence {}): an old record put back",
                    shared.fence, self.current_fence
                ),
            );
            return;
        }
        if !self.vet_shared(&f, &shared).await {
            return;
        }
        tracing::info!(fence = shared.fence, writer = %shared.writer, "new token from the fleet");
        self.current_fence = shared.fence;
        self.retry_at = None;
        if let Err(e) = self.install(shared.rec, true) {
            tracing::error!("cannot store the fleet's token: {e}");
        }
    }

    /// Ask the broker about a shared token before it is installed: `true` when it accepts it
    /// for the configured user (and the user the record names). A token of another user is a
    /// bad token, reported; a broker that cannot answer now means "look again shortly".
    pub(super) async fn vet_shared(&mut self, f: &Fleet, shared: &SharedToken) -> bool {
        if !self.provider.can_validate() {
            tracing::warn!("ignoring the fleet's token: no [token.kite] to validate it with");
            return false;
        }
        let expected = self.provider.expected_user().to_string();
        match self.provider.validate(&shared.rec.access_token).await {
            Ok(p) => {
                let wrong = (!expected.is_empty() && p.user_id != expected)
                    || (!shared.rec.user_id.is_empty() && p.user_id != shared.rec.user_id);
                if wrong {
                    f.reject(
                        Rejection::User,
                        &format!(
                            "the broker says its token belongs to {} user {}, not {}",
                            self.provider.name(),
                            p.user_id,
                            if expected.is_empty() {
                                &shared.rec.user_id
                            } else {
                                &expected
                            }
                        ),
                    );
                    return false;
                }
                true
            }
            Err(e) if e.failure() == Failure::Transient => {
                tracing::warn!(
                    "cannot validate the fleet's new token now ({e}); looking again in {}s",
                    SHARED_RECHECK.as_secs()
                );
                f.resync_later(SHARED_RECHECK);
                false
            }
            Err(e) => {
                tracing::info!("ignoring the fleet's token: the broker does not accept it ({e})");
                false
            }
        }
    }

    /// This warden just became the leader: make sure the fleet has a good token.
    pub(super) async fn lead(&mut self) {
        let Some(f) = self.coordination.fleet().cloned() else {
            return;
        };
        let shared = f.read_token().await.ok().flatten();
        let in_store = match (&shared, &self.current) {
            (Some(s), Some(c)) => s.rec.access_token == c.access_token,
            _ => false,
        };
        if let (Some(s), false) = (shared, in_store) {
            // The store may hold a newer token than this warden saw.
            self.on_shared(s).await;
        }
        self.validate_current().await;
        let in_store = match (f.read_token().await.ok().flatten(), &self.current) {
            (Some(s), Some(c)) => s.rec.access_token == c.access_token,
            (_, None) => true,
            (None, Some(_)) => false,
        };
        if (self.unshared || !in_store) && self.status.borrow().state == TokenState::Valid {
            if let Some(rec) = self.current.clone() {
                tracing::info!("sharing this warden's valid token with the fleet");
                if let Err(e) = f.publish(&rec).await {
                    tracing::warn!("cannot share the token: {e}");
                } else {
                    self.unshared = false;
                }
            }
        }
    }

    pub(super) async fn on_request(&mut self, req: Request) {
        let Some(f) = self.coordination.fleet().cloned() else {
            return;
        };
        match req {
            Request::Refresh { force, from } => {
                tracing::info!(from = %from, force, "a follower asks for a token");
                let fresh = self.current.as_ref().is_some_and(|c| {
                    self.clock.now().as_second() - c.obtained_at
                        < self.cfg.min_interval.as_secs() as i64
                });
                if force && !fresh {
                    self.on_trigger(Trigger::Api).await;
                } else {
                    // The broker is the truth: a follower's 403 may be about an old token.
                    self.validate_current().await;
                    if self.status.borrow().state == TokenState::Valid {
                        if let Some(rec) = self.current.clone() {
                            let _ = f.publish(&rec).await;
                        }
                    }
                }
            }
            Request::Callback {
                request_token,
                reply,
                from,
                deadline,
            } => {
                if self.clock.now().as_second() > deadline {
                    tracing::info!(from = %from, "dropping a forwarded login nobody waits for");
                    return;
                }
                tracing::info!(from = %from, "completing a manual login forwarded by a follower");
                let r = self.on_callback(&request_token).await;
                let answer = Reply {
                    ok: r.is_ok(),
                    wrong_user: matches!(r, Err(CallbackError::WrongUser)),
                    error: r.err().map(|e| e.to_string()).unwrap_or_default(),
                };
                f.answer(&reply, &answer).await;
            }
            Request::Adopt { access_token, from } => {
                tracing::info!(from = %from, "a follower found a new token in its env file");
                self.on_env_change(Secret::new(access_token)).await;
            }
        }
    }
}

/// A manual login that landed on a follower: the leader exchanges the request token (only
/// the leader talks to the login endpoints) and answers through Redis.
pub(super) async fn forward_callback(
    f: &Fleet,
    request_token: &str,
    now: i64,
) -> Result<(), CallbackError> {
    match f.forward_callback(request_token, FORWARD_WAIT, now).await {
        Ok(Some(r)) if r.ok => Ok(()),
        Ok(Some(r)) if r.wrong_user => Err(CallbackError::WrongUser),
        Ok(Some(r)) => Err(CallbackError::Fleet(format!(
            "the fleet leader could not complete the login: {}",
            r.error
        ))),
        Ok(None) => Err(CallbackError::Fleet(format!(
            "no fleet leader answered within {}s; try again from /login",
            FORWARD_WAIT.as_secs()
        ))),
        Err(e) => Err(CallbackError::Fleet(format!(
            "{e}: in fleet mode only the leader may log in; try again when the store is back"
        ))),
    }
}

impl<P: Provider> Keeper<P> {
    /// A fleet leader reserves the TOTP step it is about to use, so that no two leaders (one
    /// paused, one new) ever submit the same step's code. `false`: not now (retry scheduled).
    pub(super) async fn claim_fleet_totp_step(&mut self, now: Instant) -> bool {
        let Some(f) = self.coordination.fleet().cloned() else {
            return true;
        };
        let unix = self.clock.now().as_second().max(0) as u64;
        let step = unix / Totp::STEP_SECS;
        match f.claim_totp_steps(step).await {
            Ok(true) => true,
            Ok(false) => {
                // A leader may have used this step's code: wait for the next step.
                let wait = Totp::STEP_SECS - unix % Totp::STEP_SECS;
                self.retry_at = Some(now + Duration::from_secs(wait));
                false
            }
            Err(e) => {
                tracing::warn!("cannot reserve a TOTP code in the fleet ({e}); not logging in");
                self.retry_at = Some(now + ASK_INTERVAL);
                false
            }
        }
    }
}
