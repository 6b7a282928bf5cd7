//! The keeper's rules for an approve-style login (SPEC §9.2, Upstox's Access Token Request),
//! for any `Provider` whose login answers `Grant::Pending`: driven through the trait alone,
//! under tokio's paused time with a simulated wall clock, so a request's lapse and the attempt
//! window take no real time.
//!
//! Checked: a request waiting for a person is not sent again by any trigger; once it lapsed a
//! new one goes out only at the next trigger, and never beyond the attempt budget; a delivered
//! token is taken only while a request is open and only once the broker vouches for it.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc::unbounded_channel;
use warden::config::{Secret, TokenConfig};
use warden::token::clock::Clock;
use warden::token::keeper::{
    DeliveryError, Keeper, KeeperHandle, KeeperMsg, KeeperSetup, TokenState, Trigger,
};
use warden::token::provider::{
    DeliveryRefused, Failure, Grant, Identity, LoginKind, Obtained, PendingApproval, Provider,
    ProviderError,
};

/// How long the fake broker keeps a request open.
const REQUEST_OPEN: Duration = Duration::from_secs(300);
const ASK: &str = "approve it on your phone";

#[derive(Debug, thiserror::Error)]
#[error("token expired")]
struct Expired;

impl ProviderError for Expired {
    fn failure(&self) -> Failure {
        Failure::TokenBad
    }
}

#[derive(Default)]
struct World {
    requests: u32,
    /// Unix seconds the open request lapses at.
    pending_until: Option<i64>,
    /// The tokens the broker accepts, with their user.
    live: Vec<(String, String)>,
}

struct ApproveBroker {
    world: Arc<Mutex<World>>,
    clock: Clock,
}

impl Provider for ApproveBroker {
    type Error = Expired;

    fn name(&self) -> &'static str {
        "approvebroker"
    }

    fn login_kind(&self) -> LoginKind {
        LoginKind::Approve
    }

    fn expected_user(&self) -> &str {
        "U1"
    }

    fn credentials(&self) -> Vec<&str> {
        vec!["approvebroker", "U1"]
    }

    fn can_validate(&self) -> bool {
        true
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, Expired> {
        let w = self.world.lock().unwrap();
        match w.live.iter().find(|(t, _)| t == token.expose()) {
            Some((_, user)) => Ok(Identity {
                user_id: user.clone(),
                expires_at: None,
            }),
            None => Err(Expired),
        }
    }

    async fn login(
        &mut self,
        step: Option<u64>,
        _record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, Expired> {
        assert!(step.is_none(), "an approve login submits no TOTP code");
        let mut w = self.world.lock().unwrap();
        w.requests += 1;
        w.pending_until = Some(self.clock.now().as_second() + REQUEST_OPEN.as_secs() as i64);
        Ok(Grant::Pending)
    }

    async fn exchange(&mut self, _code: &str) -> Result<Obtained, Expired> {
        Err(Expired)
    }

    async fn logout(&mut self, _token: &Secret) -> Result<(), Expired> {
        Ok(())
    }

    fn pending_approval(&self) -> Option<PendingApproval> {
        Some(PendingApproval {
            expires_at: self.world.lock().unwrap().pending_until?,
            ask: ASK,
        })
    }

    fn take_delivery(&mut self, body: &[u8]) -> Result<Obtained, DeliveryRefused> {
        if self.world.lock().unwrap().pending_until.is_none() {
            return Err(DeliveryRefused::NotPending);
        }
        let token =
            String::from_utf8(body.to_vec()).map_err(|_| DeliveryRefused::Invalid("utf-8"))?;
        Ok(Obtained {
            access_token: Secret::new(token),
            user_id: "U1".into(),
            companions: Default::default(),
        })
    }

    fn approval_settled(&mut self) {
        self.world.lock().unwrap().pending_until = None;
    }

    fn reconfigure(&mut self, _cfg: &TokenConfig) {}
}

fn base() -> Timestamp {
    // 07:30 IST: the next scheduled refresh (06:05 IST) is almost a day away.
    "2027-03-01T02:00:00Z".parse().unwrap()
}

/// Run `body` on a paused runtime with a keeper for the approve broker (`max_attempts` = 2).
fn with_keeper<F, Fut>(body: F)
where
    F: FnOnce(KeeperHandle, Arc<Mutex<World>>, std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let clock = Clock::simulated(base());
        let dir = tempfile::tempdir().unwrap();
        let world = Arc::new(Mutex::new(World::default()));
        let (events_tx, mut events) = unbounded_channel();
        let env_file = dir.path().join(".env");
        let setup = KeeperSetup {
            fleet: None,
            cfg: TokenConfig {
                env_file: env_file.clone(),
                env_key: "APPROVED".into(),
                max_attempts: 2,
                min_interval: Duration::ZERO,
                check_interval: Duration::from_secs(60),
                ..Default::default()
            },
            state_dir: dir.path().join(".warden"),
            config_dir: dir.path().to_path_buf(),
            login_url: "http://warden/login".into(),
            reaper: warden::reaper::Reaper::start().unwrap(),
            metrics: Arc::new(warden::metrics::Metrics::new()),
            notifier: warden::notify::Notifier::new(&Default::default()),
            generation: Arc::new(AtomicU64::new(0)),
            clock: clock.clone(),
            watch_env_file: false,
            journal: warden::journal::Journal::disabled(),
        };
        let provider = ApproveBroker {
            world: world.clone(),
            clock,
        };
        let keeper = Keeper::start(setup, provider, events_tx);
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        body(keeper, world, env_file).await;
        drop(dir);
    });
}

async fn state_becomes(k: &KeeperHandle, want: TokenState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while k.status.borrow().state != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "state stayed {:?}, wanted {want:?} ({:?})",
            k.status.borrow().state,
            k.status.borrow().last_error
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Ask for a refresh and let the keeper handle it.
async fn request_refresh(k: &KeeperHandle) {
    k.tx.send(KeeperMsg::Trigger(Trigger::Api)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn deliver(k: &KeeperHandle, token: &str) -> Result<(), DeliveryError> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    k.tx.send(KeeperMsg::Delivery {
        body: token.as_bytes().to_vec(),
        reply,
    })
    .unwrap();
    rx.await.unwrap()
}

fn requests(world: &Arc<Mutex<World>>) -> u32 {
    world.lock().unwrap().requests
}

#[test]
fn a_waiting_request_is_not_sent_again_and_a_lapsed_one_only_within_the_budget() {
    with_keeper(|k, world, _| async move {
        state_becomes(&k, TokenState::NeedsLogin).await;
        assert_eq!(requests(&world), 1);
        let reason = k.status.borrow().last_error.clone().unwrap_or_default();
        assert!(reason.contains(ASK), "{reason}");
        // Requests and validations while it is open: nothing new goes out.
        for _ in 0..4 {
            request_refresh(&k).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        assert_eq!(requests(&world), 1, "re-sent while open");

        // It lapses; nothing sends a new one by itself (ten minutes of validations)...
        tokio::time::sleep(REQUEST_OPEN + Duration::from_secs(600)).await;
        assert_eq!(requests(&world), 1, "re-sent in a loop after the lapse");
        // ...the next trigger does.
        request_refresh(&k).await;
        assert_eq!(requests(&world), 2);
        let reason = k.status.borrow().last_error.clone().unwrap_or_default();
        assert!(reason.contains(ASK), "{reason}");

        // The second lapses too: a third request within the hour would exceed max_attempts = 2.
        tokio::time::sleep(REQUEST_OPEN + Duration::from_secs(1)).await;
        request_refresh(&k).await;
        assert_eq!(requests(&world), 2, "beyond the attempt budget");
        assert_eq!(k.status.borrow().state, TokenState::NeedsLogin);
        let reason = k.status.borrow().last_error.clone().unwrap_or_default();
        assert!(reason.contains("attempts"), "{reason}");
    });
}

#[test]
fn a_delivered_token_is_taken_only_while_open_and_once_the_broker_vouches_for_it() {
    with_keeper(|k, world, env_file| async move {
        state_becomes(&k, TokenState::NeedsLogin).await;
        // The broker does not know it (forged): refused, nothing written.
        let forged = deliver(&k, "forged").await;
        assert!(
            matches!(forged, Err(DeliveryError::TokenRefused(_))),
            "{forged:?}"
        );
        // The broker knows it, but for another user.
        world
            .lock()
            .unwrap()
            .live
            .push(("theirs".into(), "U2".into()));
        let theirs = deliver(&k, "theirs").await;
        assert!(
            matches!(theirs, Err(DeliveryError::WrongUser)),
            "{theirs:?}"
        );
        assert!(!env_file.exists(), "nothing reached the env file");

        world
            .lock()
            .unwrap()
            .live
            .push(("ours".into(), "U1".into()));
        deliver(&k, "ours").await.expect("taken");
        assert_eq!(k.status.borrow().state, TokenState::Valid);
        assert_eq!(k.status.borrow().source, Some("approve"));
        let text = std::fs::read_to_string(&env_file).unwrap();
        assert_eq!(text.trim(), "APPROVED=ours");

        // Settled: the same delivery again has no request to answer.
        let again = deliver(&k, "ours").await;
        assert!(
            matches!(
                again,
                Err(DeliveryError::Refused(DeliveryRefused::NotPending))
            ),
            "{again:?}"
        );
        assert_eq!(requests(&world), 1);
    });
}
