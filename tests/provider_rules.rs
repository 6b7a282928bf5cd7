//! The keeper's account-safety rules hold for any `Provider`, not only Kite: a broker that is
//! neither Kite nor a script (a JWT broker with PIN + TOTP, as SPEC §9 has several) is driven
//! through the trait alone, under tokio's paused time with a simulated wall clock.
//!
//! Checked: a JWT's `exp` (from validation) becomes `expires_at`; a credential rejection is
//! never retried, whatever asks (requests, the schedule, an hour of validations), until
//! `unblock` grants one attempt; a transient exchange failure is retried with the same code,
//! not with a new login; every TOTP step is submitted at most once; a refresh token is tried
//! before any login (and before a manual provider asks a person), and a lapsed one means "log
//! in instead".

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc::unbounded_channel;
use warden::config::{Secret, TokenConfig};
use warden::token::clock::Clock;
use warden::token::keeper::{Keeper, KeeperHandle, KeeperMsg, KeeperSetup, TokenState, Trigger};
use warden::token::provider::{
    Failure, Grant, Identity, LoginKind, Obtained, Provider, ProviderError,
};

#[derive(Debug, thiserror::Error)]
enum FakeError {
    #[error("wrong PIN")]
    WrongPin,
    #[error("gateway timeout")]
    Outage,
    #[error("token expired")]
    Expired,
}

impl ProviderError for FakeError {
    fn failure(&self) -> Failure {
        match self {
            FakeError::WrongPin => Failure::Credential,
            FakeError::Outage => Failure::Transient,
            FakeError::Expired => Failure::TokenBad,
        }
    }
}

#[derive(Default)]
struct Broker {
    /// The answer to the next logins.
    reject_logins: bool,
    /// Exchanges that fail with an outage before one succeeds.
    exchange_outages: u32,
    logins: u32,
    steps: Vec<u64>,
    exchanged_codes: Vec<String>,
    issued: u32,
    /// Unix seconds of the JWT `exp` of the tokens issued.
    exp: i64,
    /// A refresh token: `Some(true)` works, `Some(false)` has lapsed.
    refresh_token: Option<bool>,
    refreshes: u32,
    /// A broker only a person logs in to (Fyers): `LoginKind::Manual`.
    manual: bool,
}

#[derive(Clone)]
struct JwtBroker {
    world: Arc<Mutex<Broker>>,
}

impl Provider for JwtBroker {
    type Error = FakeError;

    fn name(&self) -> &'static str {
        "jwtbroker"
    }

    fn login_kind(&self) -> LoginKind {
        if self.world.lock().unwrap().manual {
            LoginKind::Manual
        } else {
            LoginKind::Totp
        }
    }

    fn expected_user(&self) -> &str {
        "C0DE1"
    }

    fn credentials(&self) -> Vec<&str> {
        vec!["jwtbroker", "C0DE1", "1234", "SECRET"]
    }

    fn can_validate(&self) -> bool {
        true
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, FakeError> {
        let w = self.world.lock().unwrap();
        if token.expose() == format!("jwt{}", w.issued) {
            Ok(Identity {
                user_id: "C0DE1".into(),
                expires_at: Some(w.exp),
            })
        } else {
            Err(FakeError::Expired)
        }
    }

    async fn login(
        &mut self,
        step: Option<u64>,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, FakeError> {
        let step = step.expect("a TOTP login gets its step");
        assert!(record(), "the keeper could not record the TOTP step");
        let mut w = self.world.lock().unwrap();
        assert!(
            !w.steps.contains(&step),
            "the code of step {step} was submitted twice"
        );
        w.steps.push(step);
        w.logins += 1;
        if w.reject_logins {
            return Err(FakeError::WrongPin);
        }
        Ok(Grant::Code(Secret::new(format!("code{}", w.logins))))
    }

    async fn exchange(&mut self, code: &str) -> Result<Obtained, FakeError> {
        let mut w = self.world.lock().unwrap();
        w.exchanged_codes.push(code.to_string());
        if w.exchange_outages > 0 {
            w.exchange_outages -= 1;
            return Err(FakeError::Outage);
        }
        w.issued += 1;
        Ok(Obtained {
            access_token: Secret::new(format!("jwt{}", w.issued)),
            user_id: "C0DE1".into(),
            companions: Default::default(),
        })
    }

    fn can_refresh(&self) -> bool {
        self.world.lock().unwrap().refresh_token.is_some()
    }

    async fn refresh(&mut self) -> Option<Result<Obtained, FakeError>> {
        let mut w = self.world.lock().unwrap();
        let works = w.refresh_token?;
        w.refreshes += 1;
        if !works {
            return Some(Err(FakeError::Expired));
        }
        w.issued += 1;
        Some(Ok(Obtained {
            access_token: Secret::new(format!("jwt{}", w.issued)),
            user_id: "C0DE1".into(),
            companions: Default::default(),
        }))
    }

    async fn logout(&mut self, _token: &Secret) -> Result<(), FakeError> {
        Ok(())
    }

    fn reconfigure(&mut self, _cfg: &TokenConfig) {}
}

fn base() -> Timestamp {
    "2027-03-01T02:00:00Z".parse().unwrap()
}

/// Run `body` on a paused runtime with a keeper for `broker`.
fn with_keeper<F, Fut>(broker: Broker, body: F)
where
    F: FnOnce(KeeperHandle, Arc<Mutex<Broker>>, Clock) -> Fut,
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
        let world = Arc::new(Mutex::new(broker));
        let (events_tx, mut events) = unbounded_channel();
        let setup = KeeperSetup {
            fleet: None,
            cfg: TokenConfig {
                env_file: dir.path().join(".env"),
                env_key: "JWT".into(),
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
        let provider = JwtBroker {
            world: world.clone(),
        };
        let keeper = Keeper::start(setup, provider, events_tx);
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        body(keeper, world, clock).await;
        drop(dir);
    });
}

/// Wait (in simulated time, at most `within`) until the keeper's state is `want`.
async fn state_becomes(k: &KeeperHandle, want: TokenState, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
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

#[test]
fn the_jwt_exp_becomes_expires_at() {
    let exp = base().as_second() + 20 * 3600;
    let broker = Broker {
        exp,
        ..Default::default()
    };
    with_keeper(broker, |k, world, _| async move {
        state_becomes(&k, TokenState::Valid, Duration::from_secs(120)).await;
        let status = k.status.borrow().clone();
        assert_eq!(
            status.expires_at,
            Some(Timestamp::from_second(exp).unwrap())
        );
        assert_eq!(status.user_id.as_deref(), Some("C0DE1"));
        assert_eq!(status.login, Some("totp"));
        assert_eq!(world.lock().unwrap().logins, 1);
    });
}

#[test]
fn a_credential_rejection_is_never_retried_until_unblocked() {
    let broker = Broker {
        reject_logins: true,
        ..Default::default()
    };
    with_keeper(broker, |k, world, _| async move {
        state_becomes(&k, TokenState::NeedsLogin, Duration::from_secs(120)).await;
        assert!(k.status.borrow().blocked.is_some());
        // Requests, validations and a day of schedules: nothing logs in again.
        for _ in 0..5 {
            k.tx.send(KeeperMsg::Trigger(Trigger::Api)).unwrap();
            k.tx.send(KeeperMsg::Trigger(Trigger::Signal)).unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        assert_eq!(world.lock().unwrap().logins, 1, "a rejection was retried");

        // The person fixed the PIN and unblocks: exactly one attempt, which now succeeds.
        world.lock().unwrap().reject_logins = false;
        let (reply, rx) = tokio::sync::oneshot::channel();
        k.tx.send(KeeperMsg::Unblock(reply)).unwrap();
        rx.await.unwrap().expect("the block is lifted");
        state_becomes(&k, TokenState::Valid, Duration::from_secs(120)).await;
        assert_eq!(world.lock().unwrap().logins, 2);
        assert!(k.status.borrow().blocked.is_none());
    });
}

#[test]
fn a_transient_exchange_failure_retries_the_same_code() {
    let broker = Broker {
        exchange_outages: 2,
        ..Default::default()
    };
    with_keeper(broker, |k, world, _| async move {
        state_becomes(&k, TokenState::Valid, Duration::from_secs(300)).await;
        let w = world.lock().unwrap();
        assert_eq!(w.logins, 1, "a failed exchange cost a new login");
        assert_eq!(w.exchanged_codes, ["code1", "code1", "code1"]);
    });
}

#[test]
fn a_working_refresh_token_is_used_before_any_login() {
    let broker = Broker {
        refresh_token: Some(true),
        ..Default::default()
    };
    with_keeper(broker, |k, world, _| async move {
        state_becomes(&k, TokenState::Valid, Duration::from_secs(120)).await;
        assert_eq!(k.status.borrow().source, Some("refresh_token"));
        let w = world.lock().unwrap();
        assert_eq!(
            (w.refreshes, w.logins),
            (1, 0),
            "no credentials were needed"
        );
    });
}

#[test]
fn a_lapsed_refresh_token_means_log_in_instead() {
    let broker = Broker {
        refresh_token: Some(false),
        ..Default::default()
    };
    with_keeper(broker, |k, world, _| async move {
        state_becomes(&k, TokenState::Valid, Duration::from_secs(120)).await;
        assert_eq!(k.status.borrow().source, Some("totp"));
        let w = world.lock().unwrap();
        assert_eq!((w.refreshes, w.logins), (1, 1));
    });
}

#[test]
fn a_manual_provider_tries_its_refresh_token_before_asking_a_person() {
    let broker = Broker {
        manual: true,
        refresh_token: Some(true),
        ..Default::default()
    };
    with_keeper(broker, |k, world, _| async move {
        state_becomes(&k, TokenState::Valid, Duration::from_secs(120)).await;
        assert_eq!(k.status.borrow().login, Some("manual"));
        assert_eq!(k.status.borrow().source, Some("refresh_token"));
        assert_eq!(world.lock().unwrap().refreshes, 1);
        // The token dies and the refresh token has lapsed: a person is asked, and nothing
        // logs in by itself.
        {
            let mut w = world.lock().unwrap();
            w.refresh_token = Some(false);
            w.issued += 1;
        }
        state_becomes(&k, TokenState::NeedsLogin, Duration::from_secs(600)).await;
        let w = world.lock().unwrap();
        assert_eq!((w.refreshes, w.logins), (2, 0));
    });
}
