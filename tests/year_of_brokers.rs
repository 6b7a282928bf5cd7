//! A year of mornings for every broker's rules (issue #14): the real token keeper, driven
//! through the `Provider` trait under tokio's paused time and a simulated wall clock, against
//! an in-memory broker that follows one broker's published rules (`../shared/brokers/*.md`):
//!
//! - **Angel One** (`totp`): a JWT that lives 24–28 h (its `exp`), a refresh token
//!   (`generateTokens`) that works for a day after the login, PIN + TOTP logins.
//! - **Dhan** (`totp`): a 24 h JWT, one live token per client (a new mint kills the old one),
//!   at most one mint per 2 minutes (a second one inside that window is refused), and on some
//!   market days the person mints a token on Dhan's web site, which kills warden's and starts
//!   the 2-minute window just before warden finds out.
//! - **Upstox** (`approve`): a token that dies at 03:30 IST; each login is an Access Token
//!   Request the person approves on their phone 1–45 minutes after being told (after 06:30 when
//!   told at night), and Upstox posts the token to warden.
//! - **Fyers** (`manual` with a PIN): an access token that dies at 06:00 IST, a refresh token
//!   that lapses 15 days after the person's login, and days when the broker disables the
//!   refresh endpoint; a person who logs in 1–45 minutes after being told (after 06:30 when
//!   told at night).
//!
//! Outages of random length hit every endpoint; a backend probe reports a dead token one probe
//! interval after it died. Reported per broker: seconds without a valid token inside market
//! hours (09:15–15:30 IST, weekdays), split into "broker reachable" and "during an outage",
//! credential logins, refresh-token renewals, person logins, refused mints. Asserted: no TOTP
//! step submitted twice; no mint refused for the 2-minute rule; no invalid market second while
//! the broker was reachable beyond a probe's detection delay; every morning a person is needed
//! they are told before 09:00.
//!
//! `WARDEN_SIM_DAYS` shortens the year (CI runs the full one; it takes seconds);
//! `WARDEN_SIM_VERBOSE=1` prints every market-hours gap, `WARDEN_SIM_TOKENS=1` every token,
//! `WARDEN_SIM_LOG=1` the keeper's log.
//!
//! Found by it (and fixed): a manual provider never used its refresh token (Fyers asked the
//! person every morning); a loop turn landing on the refresh time skipped the daily refresh;
//! Dhan's 2-minute refusals were retried on the probe's rhythm and exhausted the attempt cap,
//! so a token minted on Dhan's web site cost the trader an hour instead of two minutes.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use tokio::sync::mpsc::unbounded_channel;
use warden::config::{Secret, TokenConfig};
use warden::token::clock::Clock;
use warden::token::keeper::{Keeper, KeeperMsg, KeeperSetup, TokenState, Trigger};
use warden::token::provider::{
    Companions, DeliveryRefused, Failure, Grant, Identity, LoginKind, Obtained, PendingApproval,
    Provider, ProviderError,
};

fn days() -> i64 {
    std::env::var("WARDEN_SIM_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(365)
}

/// The backend's probe interval: how long a dead token goes unnoticed at most.
const PROBE: Duration = Duration::from_secs(5);
/// Dhan: "Token can be generated once every 2 minutes."
const MINT_GAP: i64 = 120;

fn ist() -> TimeZone {
    TimeZone::get("Asia/Kolkata").unwrap()
}

fn at(day: jiff::civil::Date, h: i8, m: i8) -> Timestamp {
    day.at(h, m, 0, 0).to_zoned(ist()).unwrap().timestamp()
}

/// The next `h:m` IST after `t`.
fn next_at(t: Timestamp, h: i8, m: i8) -> Timestamp {
    let day = t.to_zoned(ist()).date();
    let today = at(day, h, m);
    if t < today {
        today
    } else {
        at(day.tomorrow().unwrap(), h, m)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    AngelOne,
    Dhan,
    Fyers,
    Upstox,
}

impl Rules {
    fn name(self) -> &'static str {
        match self {
            Rules::AngelOne => "angelone",
            Rules::Dhan => "dhan",
            Rules::Fyers => "fyers",
            Rules::Upstox => "upstox",
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SimError {
    #[error("the broker is down")]
    Outage,
    #[error("the token is invalid or expired")]
    TokenBad,
    #[error("Token can be generated once every 2 minutes.")]
    MintTooSoon,
    #[error("the refresh endpoint is disabled today")]
    RefreshDisabled,
    #[error("no such code")]
    BadCode,
}

impl ProviderError for SimError {
    fn retry_after(&self) -> Option<Duration> {
        // What the Dhan provider says of this answer: the window is 2 minutes from the last
        // mint, which it cannot see; waiting the whole window is always enough.
        matches!(self, SimError::MintTooSoon).then_some(Duration::from_secs(MINT_GAP as u64))
    }

    fn failure(&self) -> Failure {
        match self {
            SimError::Outage | SimError::MintTooSoon => Failure::Transient,
            SimError::TokenBad | SimError::RefreshDisabled | SimError::BadCode => Failure::TokenBad,
        }
    }
}

/// One issued access token: when, and when it dies by itself.
struct Issued {
    at: Timestamp,
    exp: Timestamp,
}

/// The broker's world, fixed in advance from a seed, plus what happened.
struct World {
    rules: Rules,
    rng: fastrand::Rng,
    outages: Vec<(Timestamp, Timestamp)>,
    /// Fyers: days (IST) when the refresh endpoint answers "disabled".
    refresh_disabled_days: Vec<jiff::civil::Date>,
    /// Dhan: tokens the person minted elsewhere (each kills the live one), sorted.
    foreign_mints: Vec<Timestamp>,
    issued: Vec<Issued>,
    /// Index into `issued` of the token the keeper holds the newest of.
    refresh_token_until: Option<Timestamp>,
    last_step: Option<u64>,
    last_mint: Option<Timestamp>,
    codes: Vec<String>,
    logins: u64,
    refreshes: u64,
    person_logins: u64,
    refused_mints: u64,
    /// Upstox: the Access Token Request waiting for the person, until it lapses.
    pending_until: Option<Timestamp>,
    requests: u64,
    /// Upstox: where a request reaches the person's phone.
    phone: Option<tokio::sync::mpsc::UnboundedSender<Timestamp>>,
}

impl World {
    fn new(rules: Rules, seed: u64, start_day: jiff::civil::Date) -> World {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut outages = Vec::new();
        let mut refresh_disabled_days = Vec::new();
        let mut foreign_mints = Vec::new();
        for d in 0..=days() {
            let day = start_day.checked_add(d.days()).unwrap();
            if rng.f64() < 0.10 {
                let from = at(day, 0, 0) + rng.i64(0..(15 * 3600 + 30 * 60)).seconds();
                outages.push((from, from + rng.i64(5 * 60..120 * 60).seconds()));
            }
            if rng.f64() < 0.05 {
                refresh_disabled_days.push(day);
            }
            let weekday = day.weekday().to_monday_one_offset() <= 5;
            if rules == Rules::Dhan && weekday && rng.f64() < 0.05 {
                foreign_mints.push(at(day, 9, 15) + rng.i64(0..(6 * 3600 + 15 * 60)).seconds());
            }
        }
        World {
            rules,
            rng,
            outages,
            refresh_disabled_days,
            foreign_mints,
            issued: Vec::new(),
            refresh_token_until: None,
            last_step: None,
            last_mint: None,
            codes: Vec::new(),
            logins: 0,
            refreshes: 0,
            person_logins: 0,
            refused_mints: 0,
            pending_until: None,
            requests: 0,
            phone: None,
        }
    }

    fn down(&self, t: Timestamp) -> bool {
        self.outages.iter().any(|(a, b)| *a <= t && t < *b)
    }

    /// When token `i` stops working: its own expiry, or (Dhan) the next mint, warden's or
    /// the person's.
    fn death(&self, i: usize) -> Timestamp {
        let own = self.issued[i].exp;
        if self.rules != Rules::Dhan {
            return own;
        }
        let born = self.issued[i].at;
        let next = self.issued.get(i + 1).map_or(Timestamp::MAX, |n| n.at);
        let k = self.foreign_mints.partition_point(|t| *t <= born);
        let foreign = self.foreign_mints.get(k).copied().unwrap_or(Timestamp::MAX);
        own.min(next).min(foreign)
    }

    /// Dhan: the last mint anyone made at or before `now`.
    fn last_mint_before(&self, now: Timestamp) -> Option<Timestamp> {
        let k = self.foreign_mints.partition_point(|t| *t <= now);
        let foreign = k.checked_sub(1).map(|k| self.foreign_mints[k]);
        self.last_mint.max(foreign)
    }

    fn alive(&self, i: usize, t: Timestamp) -> bool {
        self.issued[i].at <= t && t < self.death(i)
    }

    /// Issue a token at `now` under the broker's expiry rule.
    fn issue(&mut self, now: Timestamp) -> Obtained {
        let exp = match self.rules {
            Rules::AngelOne => now + self.rng.i64(24 * 3600..28 * 3600).seconds(),
            Rules::Dhan => now + 24.hours(),
            Rules::Fyers => next_at(now, 6, 0),
            Rules::Upstox => next_at(now, 3, 30),
        };
        self.issued.push(Issued { at: now, exp });
        Obtained {
            access_token: Secret::new(format!("jwt{}", self.issued.len() - 1)),
            user_id: "SIM1".into(),
            companions: Companions::default(),
        }
    }

    fn index(token: &Secret) -> Option<usize> {
        token.expose().strip_prefix("jwt")?.parse().ok()
    }
}

#[derive(Clone)]
struct SimBroker {
    world: Arc<Mutex<World>>,
    clock: Clock,
    rules: Rules,
}

impl Provider for SimBroker {
    type Error = SimError;

    fn name(&self) -> &'static str {
        self.rules.name()
    }

    fn login_kind(&self) -> LoginKind {
        match self.rules {
            Rules::AngelOne | Rules::Dhan => LoginKind::Totp,
            Rules::Fyers => LoginKind::Manual,
            Rules::Upstox => LoginKind::Approve,
        }
    }

    fn expected_user(&self) -> &str {
        "SIM1"
    }

    fn credentials(&self) -> Vec<&str> {
        vec![self.rules.name(), "SIM1", "1234", "TOTPSECRET"]
    }

    fn can_validate(&self) -> bool {
        true
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, SimError> {
        let now = self.clock.now();
        if std::env::var_os("WARDEN_SIM_LOG").is_some() {
            println!(
                "validate {} at {}",
                token.expose(),
                now.to_zoned(ist()).datetime()
            );
        }
        let w = self.world.lock().unwrap();
        if w.down(now) {
            return Err(SimError::Outage);
        }
        match World::index(token) {
            Some(i) if i < w.issued.len() && w.alive(i, now) => Ok(Identity {
                user_id: "SIM1".into(),
                expires_at: Some(w.issued[i].exp.as_second()),
            }),
            _ => Err(SimError::TokenBad),
        }
    }

    async fn login(
        &mut self,
        step: Option<u64>,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, SimError> {
        assert_ne!(self.rules, Rules::Fyers, "Fyers has no automated login");
        let now = self.clock.now();
        let mut w = self.world.lock().unwrap();
        if w.down(now) {
            return Err(SimError::Outage);
        }
        if self.rules == Rules::Upstox {
            assert!(step.is_none(), "an approval request sends no TOTP code");
            assert!(
                w.pending_until.is_none_or(|u| u <= now),
                "a request was sent while another one waited for the person"
            );
            w.pending_until = Some(next_at(now, 3, 30));
            w.requests += 1;
            if let Some(phone) = &w.phone {
                let _ = phone.send(now);
            }
            return Ok(Grant::Pending);
        }
        let step = step.expect("a TOTP login gets its step");
        assert!(record(), "the keeper could not record the TOTP step");
        let now_step = now.as_second() as u64 / 30;
        assert!(
            (now_step.saturating_sub(1)..=now_step).contains(&step),
            "the code of step {step} submitted during step {now_step}"
        );
        assert!(
            w.last_step.is_none_or(|last| step > last),
            "warden submitted a TOTP code twice (step {step})"
        );
        w.last_step = Some(step);
        w.logins += 1;
        if std::env::var_os("WARDEN_SIM_LOG").is_some() {
            println!("login at {}", now.to_zoned(ist()).datetime());
        }
        if w.rules == Rules::Dhan {
            if w.last_mint_before(now)
                .is_some_and(|m| now.as_second() - m.as_second() < MINT_GAP)
            {
                w.refused_mints += 1;
                return Err(SimError::MintTooSoon);
            }
            w.last_mint = Some(now);
        }
        if w.rules == Rules::AngelOne {
            w.refresh_token_until = Some(now + 24.hours());
        }
        Ok(Grant::Token(w.issue(now)))
    }

    async fn exchange(&mut self, code: &str) -> Result<Obtained, SimError> {
        let now = self.clock.now();
        let mut w = self.world.lock().unwrap();
        if w.down(now) {
            return Err(SimError::Outage);
        }
        let Some(pos) = w.codes.iter().position(|c| c == code) else {
            return Err(SimError::BadCode);
        };
        w.codes.remove(pos);
        w.refresh_token_until = Some(now + (15 * 24).hours());
        Ok(w.issue(now))
    }

    fn can_refresh(&self) -> bool {
        self.rules != Rules::Dhan
    }

    async fn refresh(&mut self) -> Option<Result<Obtained, SimError>> {
        let now = self.clock.now();
        let mut w = self.world.lock().unwrap();
        let until = w.refresh_token_until?;
        if w.down(now) {
            return Some(Err(SimError::Outage));
        }
        if w.rules == Rules::Fyers
            && w.refresh_disabled_days
                .contains(&now.to_zoned(ist()).date())
        {
            return Some(Err(SimError::RefreshDisabled));
        }
        if now >= until {
            return Some(Err(SimError::TokenBad));
        }
        w.refreshes += 1;
        Some(Ok(w.issue(now)))
    }

    fn pending_approval(&self) -> Option<PendingApproval> {
        let now = self.clock.now();
        let w = self.world.lock().unwrap();
        w.pending_until
            .filter(|u| now < *u)
            .map(|u| PendingApproval {
                expires_at: u.as_second(),
                ask: "approve the request in the Upstox app",
            })
    }

    fn take_delivery(&mut self, body: &[u8]) -> Result<Obtained, DeliveryRefused> {
        let now = self.clock.now();
        let mut w = self.world.lock().unwrap();
        if body != b"approved" {
            return Err(DeliveryRefused::Invalid("not the sandbox's post"));
        }
        if w.pending_until.is_none_or(|u| u <= now) {
            return Err(DeliveryRefused::NotPending);
        }
        w.pending_until = None;
        w.person_logins += 1;
        Ok(w.issue(now))
    }

    fn approval_settled(&mut self) {
        self.world.lock().unwrap().pending_until = None;
    }

    fn login_url(&self, state: Option<&str>) -> Option<String> {
        (self.rules == Rules::Fyers).then(|| format!("http://broker/login?state={state:?}"))
    }

    async fn logout(&mut self, _token: &Secret) -> Result<(), SimError> {
        Ok(())
    }

    fn reconfigure(&mut self, _cfg: &TokenConfig) {}
}

struct Report {
    invalid_reachable: i64,
    invalid_outage: i64,
    /// Dhan: after the person minted a token elsewhere (the probe's delay, then the 2-minute
    /// window the broker imposes).
    invalid_after_foreign: i64,
    foreign_mints_in_market: usize,
    logins: u64,
    refreshes: u64,
    person_logins: u64,
    refused_mints: u64,
    requests: u64,
    announcements: usize,
    late_announcements: Vec<String>,
}

/// Seconds of `[a, b)` inside market hours on weekdays, as intervals.
fn market_overlap(
    a: Timestamp,
    b: Timestamp,
    start_day: jiff::civil::Date,
) -> Vec<(Timestamp, Timestamp)> {
    let mut out = Vec::new();
    for d in 0..=days() {
        let day = start_day.checked_add(d.days()).unwrap();
        if day.weekday().to_monday_one_offset() > 5 {
            continue;
        }
        let (lo, hi) = (a.max(at(day, 9, 15)), b.min(at(day, 15, 30)));
        if lo < hi {
            out.push((lo, hi));
        }
    }
    out
}

/// When a person told at `t` acts: 1–45 minutes later, or after waking at 06:30 IST when
/// told at night.
fn person_answers(t: Timestamp, rng: &mut fastrand::Rng) -> Timestamp {
    let local = t.to_zoned(ist());
    let day = local.date();
    let wake = at(day, 6, 30);
    let start = if local.hour() < 6 || (local.hour() == 6 && local.minute() < 30) {
        wake
    } else if local.hour() >= 23 {
        at(day.tomorrow().unwrap(), 6, 30)
    } else {
        t
    };
    start + rng.i64(60..45 * 60).seconds()
}

fn simulate(rules: Rules, seed: u64) -> Report {
    if std::env::var_os("WARDEN_SIM_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let start_day = jiff::civil::date(2027, 1, 1);
        let world = Arc::new(Mutex::new(World::new(rules, seed, start_day)));
        let base = at(start_day, 0, 0);
        let clock = Clock::simulated(base);
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let (events_tx, mut events) = unbounded_channel();
        let setup = KeeperSetup {
            fleet: None,
            cfg: TokenConfig {
                env_file: dir.path().join(".env"),
                env_key: "SIM_TOKEN".into(),
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
        let broker = SimBroker {
            world: world.clone(),
            clock: clock.clone(),
            rules,
        };
        let keeper = Keeper::start(setup, broker, events_tx);
        tokio::spawn(async move { while events.recv().await.is_some() {} });

        // The backend's probe: it hears of a dead token one probe interval after it died.
        let (w2, c2, tx) = (world.clone(), clock.clone(), keeper.tx.clone());
        let status = keeper.status.clone();
        tokio::spawn(async move {
            loop {
                let death = {
                    let w = w2.lock().unwrap();
                    let held = status
                        .borrow()
                        .state
                        .eq(&TokenState::Valid)
                        .then(|| w.issued.len().checked_sub(1))
                        .flatten();
                    held.map(|i| w.death(i))
                };
                let now = c2.now();
                let wake = death.filter(|d| *d > now).unwrap_or(now);
                let wait =
                    Duration::from_secs((wake.as_second() - now.as_second()).max(0) as u64) + PROBE;
                tokio::time::sleep(wait).await;
                let dead = {
                    let w = w2.lock().unwrap();
                    w.issued.is_empty() || !w.alive(w.issued.len() - 1, c2.now())
                };
                if dead
                    && tx
                        .send(KeeperMsg::Trigger(Trigger::ProbeAuth("backend".into())))
                        .is_err()
                {
                    return;
                }
            }
        });

        // Upstox: every request reaches the person's phone; they approve it 1–45 minutes later
        // (after waking, at night), and Upstox posts the token to warden.
        if rules == Rules::Upstox {
            let (phone, mut requests) = unbounded_channel::<Timestamp>();
            world.lock().unwrap().phone = Some(phone);
            let (tx, c) = (keeper.tx.clone(), clock.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed ^ 0xa55);
                while let Some(sent) = requests.recv().await {
                    let answer = person_answers(sent, &mut rng);
                    let (tx, c) = (tx.clone(), c.clone());
                    tokio::spawn(async move {
                        let wait = (answer.as_second() - c.now().as_second()).max(0) as u64;
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                        let (reply, rx) = tokio::sync::oneshot::channel();
                        let _ = tx.send(KeeperMsg::Delivery {
                            body: b"approved".to_vec(),
                            reply,
                        });
                        let _ = rx.await;
                    });
                }
            });
        }

        // The person: told through needs_login; logs in through the callback (Fyers).
        let announcements = Arc::new(Mutex::new(Vec::<Timestamp>::new()));
        let (mut status, ann, c3, w3, tx3) = (
            keeper.status.clone(),
            announcements.clone(),
            clock.clone(),
            world.clone(),
            keeper.tx.clone(),
        );
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed ^ 0xfeed);
            let mut was = TokenState::Unknown;
            while status.changed().await.is_ok() {
                let state = status.borrow().state;
                if state == TokenState::NeedsLogin && was != TokenState::NeedsLogin {
                    let now = c3.now();
                    ann.lock().unwrap().push(now);
                    if rules == Rules::Fyers {
                        let answer = person_answers(now, &mut rng);
                        let (w, tx, c) = (w3.clone(), tx3.clone(), c3.clone());
                        tokio::spawn(async move {
                            let wait = (answer.as_second() - c.now().as_second()).max(0) as u64;
                            tokio::time::sleep(Duration::from_secs(wait)).await;
                            let code = {
                                let mut w = w.lock().unwrap();
                                w.person_logins += 1;
                                let code = format!("auth{}", w.person_logins);
                                w.codes.push(code.clone());
                                code
                            };
                            let (reply, rx) = tokio::sync::oneshot::channel();
                            let query = [("request_token".to_string(), code)];
                            let _ = tx.send(KeeperMsg::Callback {
                                query: query.into_iter().collect(),
                                reply,
                            });
                            let _ = rx.await;
                        });
                    }
                }
                was = state;
            }
        });

        tokio::time::sleep(Duration::from_secs(days() as u64 * 86_400)).await;
        let end = clock.now();

        let w = world.lock().unwrap();
        // Gaps without a living token: before the first, between one's death and the next.
        let mut gaps = Vec::new();
        let mut valid_until = base;
        for (i, t) in w.issued.iter().enumerate() {
            if valid_until < t.at {
                gaps.push((valid_until, t.at));
            }
            valid_until = valid_until.max(w.death(i).min(end));
        }
        if valid_until < end {
            gaps.push((valid_until, end));
        }
        if std::env::var_os("WARDEN_SIM_TOKENS").is_some() {
            for (i, t) in w.issued.iter().enumerate() {
                println!(
                    "{}: token {i} issued {} exp {} died {}",
                    rules.name(),
                    t.at.to_zoned(ist()).datetime(),
                    t.exp.to_zoned(ist()).datetime(),
                    w.death(i).to_zoned(ist()).datetime()
                );
            }
        }
        let mut report = Report {
            invalid_reachable: 0,
            invalid_outage: 0,
            invalid_after_foreign: 0,
            foreign_mints_in_market: w.foreign_mints.iter().filter(|t| **t < end).count(),
            logins: w.logins,
            refreshes: w.refreshes,
            person_logins: w.person_logins,
            refused_mints: w.refused_mints,
            requests: w.requests,
            announcements: announcements.lock().unwrap().len(),
            late_announcements: Vec::new(),
        };
        for (a, b) in &gaps {
            for (lo, hi) in market_overlap(*a, *b, start_day) {
                let secs = hi.as_second() - lo.as_second();
                if w.outages.iter().any(|(oa, ob)| *oa < hi && lo < *ob) {
                    report.invalid_outage += secs;
                } else if w.foreign_mints.contains(a) {
                    report.invalid_after_foreign += secs;
                } else {
                    report.invalid_reachable += secs;
                }
                if std::env::var_os("WARDEN_SIM_VERBOSE").is_some() {
                    println!(
                        "{}: no valid token {} – {} IST ({secs} s in market hours)",
                        rules.name(),
                        a.to_zoned(ist()).datetime(),
                        b.to_zoned(ist()).datetime()
                    );
                }
            }
        }
        // A morning gap that starts before 09:00 on a weekday while the broker is up needs
        // the person told before 09:00 (Fyers: the refresh token lapsed or was disabled).
        if matches!(rules, Rules::Fyers | Rules::Upstox) {
            let anns = announcements.lock().unwrap();
            for (a, _) in &gaps {
                let day = a.to_zoned(ist()).date();
                let nine = at(day, 9, 0);
                if *a >= nine || *a >= end || w.down(*a) || day.weekday().to_monday_one_offset() > 5
                {
                    continue;
                }
                let told = anns
                    .iter()
                    .find(|t| **t >= *a - (PROBE.as_secs() as i64).seconds());
                if told.is_none_or(|t| *t > nine) {
                    report
                        .late_announcements
                        .push(format!("{day}: token died {a}, told {told:?}"));
                }
            }
        }
        report
    })
}

fn print(rules: Rules, r: &Report) {
    println!(
        "{}: invalid seconds in market hours — reachable broker {}, during outages {}, after {} tokens minted elsewhere {}; {} credential logins, {} refresh-token renewals, {} person logins, {} mints refused; {} needs_login announcements, {} late",
        rules.name(),
        r.invalid_reachable,
        r.invalid_outage,
        r.foreign_mints_in_market,
        r.invalid_after_foreign,
        r.logins,
        r.refreshes,
        r.person_logins,
        r.refused_mints,
        r.announcements,
        r.late_announcements.len()
    );
}

#[test]
fn a_year_of_angel_one_mornings() {
    let r = simulate(Rules::AngelOne, 4101);
    print(Rules::AngelOne, &r);
    assert_eq!(
        r.invalid_reachable, 0,
        "a valid token every market second the broker was reachable"
    );
    assert!(
        r.logins + r.refreshes >= days() as u64 - 1,
        "one token a day"
    );
}

#[test]
fn a_year_of_dhan_mornings() {
    let r = simulate(Rules::Dhan, 4102);
    print(Rules::Dhan, &r);
    assert_eq!(
        r.invalid_reachable, 0,
        "a valid token every market second the broker was reachable"
    );
    // A token minted elsewhere is noticed by the next probe; the broker then refuses a new
    // mint for the rest of its 2-minute window, and warden waits that out.
    let per_event = PROBE.as_secs() as i64 + MINT_GAP + 60;
    assert!(
        r.invalid_after_foreign <= r.foreign_mints_in_market as i64 * per_event,
        "{} s lost after {} foreign mints",
        r.invalid_after_foreign,
        r.foreign_mints_in_market
    );
    // Warden's own mints never fall inside the window of its previous one; after a foreign
    // mint, one refusal tells warden of the window, which it then waits out.
    assert!(
        r.refused_mints <= r.foreign_mints_in_market as u64,
        "{} mints refused after {} foreign mints",
        r.refused_mints,
        r.foreign_mints_in_market
    );
    assert_eq!(r.refreshes, 0, "Dhan has no refresh token");
}

#[test]
fn a_year_of_fyers_mornings() {
    let r = simulate(Rules::Fyers, 4103);
    print(Rules::Fyers, &r);
    assert!(
        r.late_announcements.is_empty(),
        "told after 09:00: {:#?}",
        r.late_announcements
    );
    assert_eq!(r.logins, 0, "Fyers is never logged in by warden itself");
    assert!(
        r.refreshes > r.person_logins,
        "the refresh token renews most days ({} renewals, {} person logins)",
        r.refreshes,
        r.person_logins
    );
    // The refresh token lapses every 15 days and is sometimes disabled: a person logs in
    // about twice a month, not every day.
    assert!(
        r.person_logins <= (days() as u64 / 15 + 1) * 2 + 20,
        "{} person logins in {} days",
        r.person_logins,
        days()
    );
}

#[test]
fn a_year_of_upstox_mornings() {
    let r = simulate(Rules::Upstox, 4104);
    print(Rules::Upstox, &r);
    println!(
        "upstox: {} access token requests, {} approved",
        r.requests, r.person_logins
    );
    assert_eq!(
        r.invalid_reachable, 0,
        "a valid token every market second the broker was reachable"
    );
    assert!(
        r.late_announcements.is_empty(),
        "told after 09:00: {:#?}",
        r.late_announcements
    );
    assert_eq!(r.logins, 0, "no TOTP login for an approve-mode token");
    // One request per token that died (about one a day), none while one waits; an outage at
    // the moment of a request costs one more.
    assert!(
        r.requests <= r.person_logins + days() as u64 / 5 + 2,
        "{} requests for {} approvals",
        r.requests,
        r.person_logins
    );
}
