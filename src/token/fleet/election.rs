//! The fleet task: keeps the lock (or waits for it), listens on the events channel, and
//! reconnects after Redis trouble. It only reports; the keeper decides what to do.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::store::Acquire;
use super::{Fleet, FleetEvent, Lease, Role};

/// How soon to dial again after Redis was unreachable.
const RECONNECT: Duration = Duration::from_secs(1);
/// Requests taken per round, so one flood cannot starve the lock renewal.
const REQUEST_BATCH: usize = 32;

pub(super) async fn run(fleet: Fleet, tx: UnboundedSender<FleetEvent>) {
    let mut sub: Option<PubSubStream> = None;
    let mut next_election = Instant::now();
    loop {
        if tx.is_closed() || fleet.retired() {
            return;
        }
        if sub.is_none() {
            match fleet.inner.store.subscribe().await {
                Ok(s) => {
                    sub = Some(s);
                    tracing::info!("token store connected");
                    fleet.set_up(true, None);
                    // Whatever changed while we were away: one read catches up.
                    sync_token(&fleet, &tx).await;
                    sync_needs_login(&fleet, &tx).await;
                }
                Err(e) => fleet.set_up(false, Some(e.to_string())),
            }
        }
        if Instant::now() >= next_election {
            next_election = Instant::now() + elect(&fleet, &tx).await;
        }
        let mut wake_at = next_election;
        if sub.is_none() {
            wake_at = wake_at.min(Instant::now() + RECONNECT);
        }
        tokio::select! {
            msg = next_message(&mut sub) => match msg {
                Some(payload) => on_message(&fleet, &tx, &payload).await,
                None => {
                    sub = None;
                    tracing::warn!("token store connection lost; keeping the current token");
                    fleet.set_up(false, Some("pub/sub connection lost".into()));
                }
            },
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = fleet.inner.wake.notified() => next_election = Instant::now(),
        }
    }
}

async fn next_message(sub: &mut Option<PubSubStream>) -> Option<String> {
    match sub {
        Some(s) => s
            .next()
            .await
            .map(|m| m.get_payload::<String>().unwrap_or_default()),
        None => std::future::pending().await,
    }
}

async fn on_message(fleet: &Fleet, tx: &UnboundedSender<FleetEvent>, payload: &str) {
    if payload.starts_with("token") {
        sync_token(fleet, tx).await;
    } else if payload == "request" && fleet.role() == Role::Leader {
        drain_requests(fleet, tx).await;
    } else if payload == "needs_login" && fleet.role() != Role::Leader {
        sync_needs_login(fleet, tx).await;
    } else if payload == "released" && fleet.role() != Role::Leader {
        // Stored as a permit: the loop's next wait ends at once with an election.
        fleet.inner.wake.notify_one();
    }
}

async fn sync_token(fleet: &Fleet, tx: &UnboundedSender<FleetEvent>) {
    match fleet.read_token().await {
        Ok(Some(t)) => {
            let _ = tx.send(FleetEvent::Token(t));
        }
        Ok(None) => {}
        // Already reported by `read_token`.
        Err(super::FleetError::Untrusted { .. }) => {}
        Err(e) => tracing::warn!("cannot read the shared token: {e}"),
    }
}

async fn sync_needs_login(fleet: &Fleet, tx: &UnboundedSender<FleetEvent>) {
    match fleet.inner.store.needs_login().await {
        Ok(Some(reason)) => {
            let _ = tx.send(FleetEvent::LeaderNeedsLogin(reason));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot read the fleet's login state: {e}"),
    }
}

async fn drain_requests(fleet: &Fleet, tx: &UnboundedSender<FleetEvent>) {
    match fleet.inner.store.pop_requests(REQUEST_BATCH).await {
        Ok(reqs) if !reqs.is_empty() => {
            let _ = tx.send(FleetEvent::Requests(reqs));
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read fleet requests: {e}"),
    }
}

/// One round of the election; returns how long until the next.
async fn elect(fleet: &Fleet, tx: &UnboundedSender<FleetEvent>) -> Duration {
    let inner = &fleet.inner;
    let ttl = inner.ttl;
    let renew_every = ttl / 3;
    let asked = Instant::now();
    if let Some(lease) = fleet.lease() {
        return match inner.store.renew(&lease.value, ttl).await {
            Ok(true) => {
                if let Some(l) = inner
                    .lease
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                {
                    l.valid_until = asked + ttl;
                }
                fleet.set_up(true, None);
                // Pub/sub may have dropped a wake-up; the list is the truth.
                drain_requests(fleet, tx).await;
                renew_every
            }
            Ok(false) => {
                tracing::warn!("the fleet lock is no longer ours; following");
                fleet.step_down(tx, Role::Follower);
                Duration::ZERO
            }
            Err(e) => {
                fleet.set_up(false, Some(e.to_string()));
                if Instant::now() >= lease.valid_until {
                    tracing::warn!("cannot renew the fleet lock before it expired; not leading");
                    fleet.step_down(tx, Role::Unknown);
                }
                RECONNECT
            }
        };
    }
    match inner.store.acquire(&inner.id, ttl).await {
        Ok(Acquire::Won(fence)) if fleet.retired() => {
            // Won while warden was stopping: hand it straight back.
            let _ = inner.store.release(&format!("{} {fence}", inner.id)).await;
            renew_every
        }
        Ok(Acquire::Won(fence)) => {
            *inner.lease.lock().unwrap_or_else(|e| e.into_inner()) = Some(Lease {
                value: format!("{} {fence}", inner.id),
                fence,
                valid_until: asked + ttl,
            });
            tracing::info!(fence, "leading the fleet: this warden refreshes the token");
            inner.status.send_modify(|s| {
                s.up = true;
                s.last_error = None;
                s.role = Role::Leader;
                s.fence = fence;
                s.leader = Some(inner.id.clone());
            });
            inner.metrics.set_token_store_up(true);
            inner.metrics.set_token_leader(true);
            inner.metrics.inc_token_leader_changes();
            let _ = tx.send(FleetEvent::Leading(true));
            drain_requests(fleet, tx).await;
            renew_every
        }
        Ok(Acquire::Held { holder, ttl: left }) => {
            let leader = holder.rsplit_once(' ').map(|(id, _)| id.to_string());
            inner.status.send_modify(|s| {
                if s.role != Role::Follower || s.leader != leader {
                    tracing::info!(
                        leader = leader.as_deref().unwrap_or("?"),
                        "following the fleet leader"
                    );
                }
                s.up = true;
                s.last_error = None;
                s.role = Role::Follower;
                s.fence = 0;
                s.leader = leader;
            });
            inner.metrics.set_token_store_up(true);
            // Try again the moment the holder's lock would lapse: a dead leader is replaced
            // within its TTL.
            // (A lock without a TTL, set by hand, must not make us spin.)
            (left.max(Duration::from_millis(100)) + Duration::from_millis(fastrand::u64(5..50)))
                .min(renew_every)
        }
        Err(e) => {
            fleet.set_up(false, Some(e.to_string()));
            inner.status.send_modify(|s| {
                s.role = Role::Unknown;
                s.leader = None;
            });
            RECONNECT
        }
    }
}

impl Fleet {
    fn set_up(&self, up: bool, error: Option<String>) {
        let inner = &self.inner;
        inner.status.send_modify(|s| {
            if s.up && !up {
                tracing::warn!(
                    "token store unreachable ({}); no logins from here until it returns",
                    error.as_deref().unwrap_or("?")
                );
            }
            s.up = up;
            s.last_error = error;
        });
        inner.metrics.set_token_store_up(up);
    }

    fn step_down(&self, tx: &UnboundedSender<FleetEvent>, role: Role) {
        let inner = &self.inner;
        *inner.lease.lock().unwrap_or_else(|e| e.into_inner()) = None;
        inner.status.send_modify(|s| {
            s.role = role;
            s.fence = 0;
            s.leader = None;
        });
        inner.metrics.set_token_leader(false);
        inner.metrics.inc_token_leader_changes();
        let _ = tx.send(FleetEvent::Leading(false));
    }
}
