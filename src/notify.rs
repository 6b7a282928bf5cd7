//! Tell a person when something needs them (SPEC §3 `[notify]`): a JSON webhook (Slack and
//! Mattermost show its `text`) and, optionally, a Telegram message.
//!
//! [`Notifier::notify`] never blocks and never awaits the network: it decides whether the event
//! may go out now ([`window::decide`]: quiet hours, trading days, the lead before a session),
//! applies the dedup rule and hands the event to a background task on the current tokio
//! runtime, which owns the HTTP client (built on the first send, so an idle warden never loads
//! TLS roots) and delivers with a short timeout and at most one retry. A failure is logged
//! without the URL (webhook URLs and bot tokens are secrets) and counted per channel
//! ([`Notifier::failures`] and, when wired, `warden_notify_failures_total{channel}`).
//!
//! Dedup: the same (event, token or program) is sent at most once per window (10 minutes by
//! default), so a flapping token or a crash loop does not flood a phone. An event outside its
//! window is held instead ([`held`]): collapsed per kind, dropped when the problem is over,
//! persisted in the state directory, and released by a second task when its time comes.

mod event;
mod held;
mod session;
pub mod window;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use crate::config::{NotifyConfig, Secret};
use crate::metrics::Metrics;
use crate::model::HeldNotification;
pub use event::NotifyEvent;
use event::Outgoing;
use held::{Held, HeldEvent};
use window::{Decision, SendPolicy};

/// The SPEC's repeat limit.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// Per attempt, connect included. A notification is never worth holding anything up.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Events waiting for delivery; beyond this they are dropped (and counted as failures).
const QUEUE: usize = 32;
const DEFAULT_TELEGRAM_API: &str = "https://api.telegram.org";
/// The release task looks at the wall clock at least this often, so a clock that jumps
/// (suspend, NTP) delays a held event by at most this much.
const RELEASE_RECHECK: Duration = Duration::from_secs(30);

/// A delivery channel, the `channel` label of `warden_notify_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Webhook,
    Telegram,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Telegram => "telegram",
        }
    }
}

/// Hands events to the delivery task. Cheap to clone; all clones share dedup, held events
/// and counters.
#[derive(Clone, Debug)]
pub struct Notifier {
    /// `None` when no channel is configured (or there was no runtime): `notify` is a no-op.
    tx: Option<mpsc::Sender<Outgoing>>,
    shared: Arc<Shared>,
}

/// Wall-clock time for the hold rules: the system clock, or a simulated one in tests.
pub type WallClock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// How a [`Notifier`] is set up beyond `[notify]`.
#[derive(Clone, Default)]
pub struct NotifierOptions {
    /// `None`: [`DEFAULT_DEDUP_WINDOW`].
    pub dedup_window: Option<Duration>,
    /// Where held events are kept across restarts; `None`: in memory only.
    pub state_dir: Option<PathBuf>,
    /// `None`: the system clock.
    pub clock: Option<WallClock>,
}

struct Shared {
    window: Duration,
    last_sent: Mutex<HashMap<(&'static str, Option<String>), Instant>>,
    failures: [AtomicU64; 2],
    metrics: OnceLock<Metrics>,
    /// The event history: each delivery's outcome.
    journal: OnceLock<crate::journal::Journal>,
    webhook: bool,
    telegram: bool,
    /// Replaced by a config reload.
    policy: Mutex<SendPolicy>,
    held: Mutex<Held>,
    held_view: watch::Sender<Vec<HeldNotification>>,
    /// Wakes the release task when something is held.
    held_changed: tokio::sync::Notify,
    clock: WallClock,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("window", &self.window)
            .field("webhook", &self.webhook)
            .field("telegram", &self.telegram)
            .field("policy", &self.policy())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn failed(&self, channel: Channel) {
        self.failures[channel as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.metrics.get() {
            m.inc_notify_failure(channel.as_str());
        }
    }

    fn policy(&self) -> SendPolicy {
        self.policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a change to the held events: write them down and show them.
    fn held_changed(&self, held: &Held) {
        held.save();
        self.held_view.send_replace(held.notices(&self.policy().tz));
        self.held_changed.notify_one();
    }

    /// Remember that `key` went out now, for the dedup window. Returns false (and records
    /// nothing) for a repeat within the window, unless `held`: an event that waited was never
    /// sent, so it is no repeat.
    fn mark_sent(&self, key: (&'static str, Option<&str>), held: bool) -> bool {
        let mut last = self.last_sent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let key = (key.0, key.1.map(str::to_string));
        if let Some(at) = last.get(&key) {
            if now.duration_since(*at) < self.window && !held {
                return false;
            }
        }
        last.retain(|_, at| now.duration_since(*at) < self.window);
        last.insert(key, now);
        true
    }
}

/// Where to send, resolved once.
struct Targets {
    webhook: Option<Secret>,
    /// `{base}/bot{TOKEN}/sendMessage` (a secret: it holds the bot token) and the chat id.
    telegram: Option<(Secret, String)>,
    host: String,
}

impl Notifier {
    /// A notifier for `cfg` with the SPEC's 10-minute dedup window, holding events in memory
    /// only. Call inside a tokio runtime.
    pub fn new(cfg: &NotifyConfig) -> Notifier {
        Notifier::with_options(cfg, NotifierOptions::default())
    }

    /// Like [`Notifier::new`] with another dedup window (tests use a short one).
    pub fn with_dedup_window(cfg: &NotifyConfig, window: Duration) -> Notifier {
        Notifier::with_options(
            cfg,
            NotifierOptions {
                dedup_window: Some(window),
                ..NotifierOptions::default()
            },
        )
    }

    /// The full set-up: held events kept in `state_dir`, a clock of the caller's choice.
    pub fn with_options(cfg: &NotifyConfig, opts: NotifierOptions) -> Notifier {
        let webhook = (!cfg.webhook_url.expose().trim().is_empty())
            .then(|| Secret::new(cfg.webhook_url.expose().trim()));
        let telegram = (!cfg.telegram_bot_token.is_empty()
            && !cfg.telegram_chat_id.trim().is_empty())
        .then(|| {
            let base = cfg.telegram_api_base.trim().trim_end_matches('/');
            let base = if base.is_empty() {
                DEFAULT_TELEGRAM_API
            } else {
                base
            };
            let url = format!(
                "{base}/bot{}/sendMessage",
                cfg.telegram_bot_token.expose().trim()
            );
            (Secret::new(url), cfg.telegram_chat_id.trim().to_string())
        });
        let enabled = webhook.is_some() || telegram.is_some();
        let clock = opts.clock.unwrap_or_else(|| Arc::new(Timestamp::now));
        let policy = SendPolicy::from_config(cfg);
        // Without a channel nothing is ever sent, so nothing is held either.
        let mut held = if enabled {
            Held::load(opts.state_dir.as_deref())
        } else {
            Held::default()
        };
        reschedule(&mut held, &policy, clock());
        if !held.is_empty() {
            tracing::info!(
                count = held.items().len(),
                "notifications held before the restart are kept"
            );
        }
        let (held_view, _) = watch::channel(held.notices(&policy.tz));
        let shared = Arc::new(Shared {
            window: opts.dedup_window.unwrap_or(DEFAULT_DEDUP_WINDOW),
            last_sent: Mutex::new(HashMap::new()),
            failures: Default::default(),
            metrics: OnceLock::new(),
            journal: OnceLock::new(),
            webhook: webhook.is_some(),
            telegram: telegram.is_some(),
            policy: Mutex::new(policy),
            held: Mutex::new(held),
            held_view,
            held_changed: tokio::sync::Notify::new(),
            clock,
        });
        let mut tx = None;
        if enabled {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let (sender, rx) = mpsc::channel(QUEUE);
                    let targets = Targets {
                        webhook,
                        telegram,
                        host: hostname(),
                    };
                    rt.spawn(deliver_all(rx, targets, shared.clone()));
                    rt.spawn(release_held(sender.clone(), shared.clone()));
                    tx = Some(sender);
                }
                Err(_) => tracing::error!("notifications disabled: no tokio runtime to send from"),
            }
        }
        Notifier { tx, shared }
    }

    /// Also count delivery failures in `warden_notify_failures_total{channel}`.
    pub fn set_metrics(&self, metrics: &Metrics) {
        let _ = self.shared.metrics.set(metrics.clone());
    }

    /// Also record each delivery (sent or failed) in the event history.
    pub fn set_journal(&self, journal: &crate::journal::Journal) {
        let _ = self.shared.journal.set(journal.clone());
    }

    /// Whether any channel is configured.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Send `ev` now, or hold it until its window opens (see [`window`]). A send is skipped
    /// when the same (event, token or program) went out within the dedup window. Returns at
    /// once.
    pub fn notify(&self, ev: NotifyEvent) {
        let Some(tx) = &self.tx else { return };
        let now = (self.shared.clock)();
        let policy = self.shared.policy();
        let decision = window::decide(&ev, now, &policy);
        let mut earlier = None;
        {
            let mut held = self.shared.held();
            let mut changed = self.drop_resolved(&mut held, &ev);
            match decision {
                Decision::Hold { until, reason } => {
                    tracing::info!(
                        event = ev.name(),
                        subject = ev.key().1.unwrap_or(""),
                        send_at = %until,
                        "notification held ({})",
                        reason.phrase()
                    );
                    held.hold(ev, now, until, reason);
                    self.shared.held_changed(&held);
                    return;
                }
                Decision::SendNow => {
                    // A newer one of a kind already held goes out now, in its place.
                    if let Some(h) = held.take(&ev) {
                        earlier = Some(h);
                        changed = true;
                    }
                }
            }
            if changed {
                self.shared.held_changed(&held);
            }
        }
        if !self.shared.mark_sent(ev.key(), earlier.is_some()) {
            tracing::debug!(event = ev.name(), "notification suppressed (sent recently)");
            return;
        }
        let note = earlier.map(|h| h.note(&policy.tz));
        queue(tx, &self.shared, Outgoing { event: ev, note });
    }

    /// A config reload: new quiet hours, time zone, trading-days rule and lead apply at once,
    /// to held events too. The channels (webhook, Telegram) are fixed at start.
    pub fn reconfigure(&self, old: &NotifyConfig, new: &NotifyConfig) {
        let channels = |c: &NotifyConfig| {
            (
                c.webhook_url.clone(),
                c.telegram_bot_token.clone(),
                c.telegram_chat_id.clone(),
                c.telegram_api_base.clone(),
            )
        };
        if channels(old) != channels(new) {
            tracing::warn!("[notify] channels changed: restart warden to apply them");
        }
        let mut policy = SendPolicy::from_config(new);
        policy.calendar = self.shared.policy().calendar;
        if policy == self.shared.policy() {
            return;
        }
        *self.shared.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy.clone();
        tracing::info!("[notify] quiet hours and trading days applied");
        let mut held = self.shared.held();
        reschedule(&mut held, &policy, (self.shared.clock)());
        self.shared.held_changed(&held);
    }

    /// The exchange calendar (`[market]`) decides what a trading day and a session are; held
    /// events are rescheduled under it.
    pub fn set_calendar(&self, calendar: crate::market::MarketCalendar) {
        let mut policy = self.shared.policy();
        if policy.calendar.as_ref() == Some(&calendar) {
            return;
        }
        policy.calendar = Some(calendar);
        *self.shared.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy.clone();
        let mut held = self.shared.held();
        reschedule(&mut held, &policy, (self.shared.clock)());
        self.shared.held_changed(&held);
    }

    /// The token is valid (however it became so): its problems still held are dropped.
    pub fn token_valid(&self, token: &str) {
        let mut held = self.shared.held();
        let dropped = held.drop_where(|e| e.needs_person() && e.token() == Some(token));
        if !dropped.is_empty() {
            log_dropped(&dropped, &format!("token {token} is valid again"));
            self.shared.held_changed(&held);
        }
    }

    /// A program left `fatal`: a `program_fatal` still held for it is dropped.
    pub fn program_recovered(&self, program: &str) {
        let mut held = self.shared.held();
        let dropped = held.drop_where(|e| e.program() == Some(program));
        if !dropped.is_empty() {
            log_dropped(&dropped, &format!("program {program} runs again"));
            self.shared.held_changed(&held);
        }
    }

    fn drop_resolved(&self, held: &mut Held, ev: &NotifyEvent) -> bool {
        let dropped = held.drop_where(|h| ev.resolves(h));
        if dropped.is_empty() {
            return false;
        }
        let token = ev.token().unwrap_or("");
        log_dropped(&dropped, &format!("token {token} is valid again"));
        true
    }

    /// The held events, soonest first (what `/api/v1/status` and the status page show).
    pub fn held_view(&self) -> watch::Receiver<Vec<HeldNotification>> {
        self.shared.held_view.subscribe()
    }

    /// Deliveries that failed on `channel` so far (after the retry).
    pub fn failures(&self, channel: Channel) -> u64 {
        self.shared.failures[channel as usize].load(Ordering::Relaxed)
    }
}

/// Work out each held event's time again under `policy` (at start, after a reload).
fn reschedule(held: &mut Held, policy: &SendPolicy, now: Timestamp) {
    held.reschedule(|ev| match window::decide(ev, now, policy) {
        Decision::SendNow => (now, None),
        Decision::Hold { until, reason } => (until, Some(reason)),
    });
}

fn log_dropped(dropped: &[HeldEvent], why: &str) {
    for h in dropped {
        tracing::info!(
            event = h.event.name(),
            held_since = %h.first_at,
            "held notification dropped: {why}"
        );
    }
}

fn queue(tx: &mpsc::Sender<Outgoing>, shared: &Shared, out: Outgoing) {
    if tx.try_send(out).is_err() {
        tracing::warn!("notification dropped: the delivery queue is full");
        for (on, ch) in [
            (shared.webhook, Channel::Webhook),
            (shared.telegram, Channel::Telegram),
        ] {
            if on {
                shared.failed(ch);
            }
        }
    }
}

/// Sends each held event when its time comes. Sleeps until the next one is due (or
/// [`RELEASE_RECHECK`]), and wakes early when something new is held.
async fn release_held(tx: mpsc::Sender<Outgoing>, shared: Arc<Shared>) {
    loop {
        let now = (shared.clock)();
        let (due, next) = {
            let mut held = shared.held();
            let due = held.take_due(now);
            if !due.is_empty() {
                shared.held_changed(&held);
            }
            (due, held.next_due())
        };
        for h in due {
            tracing::info!(
                event = h.event.name(),
                held_since = %h.first_at,
                "sending a held notification"
            );
            shared.mark_sent(h.event.key(), true);
            let note = Some(h.note(&shared.policy().tz));
            queue(
                &tx,
                &shared,
                Outgoing {
                    event: h.event,
                    note,
                },
            );
        }
        let wait = match next {
            Some(at) => Duration::try_from(now.duration_until(at))
                .unwrap_or_default()
                .min(RELEASE_RECHECK),
            None => RELEASE_RECHECK,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.held_changed.notified() => {}
        }
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

async fn deliver_all(mut rx: mpsc::Receiver<Outgoing>, t: Targets, shared: Arc<Shared>) {
    let mut client: Option<reqwest::Client> = None;
    while let Some(ev) = rx.recv().await {
        let client = match &client {
            Some(c) => c.clone(),
            None => match build_client() {
                Ok(c) => client.insert(c).clone(),
                Err(e) => {
                    tracing::warn!(error = %describe(e, &t), "notifications: cannot build an HTTP client");
                    for (on, ch) in [
                        (shared.webhook, Channel::Webhook),
                        (shared.telegram, Channel::Telegram),
                    ] {
                        if on {
                            shared.failed(ch);
                        }
                    }
                    continue;
                }
            },
        };
        let webhook = async {
            if let Some(url) = &t.webhook {
                let body = ev.to_json(&t.host);
                let req = || client.post(url.expose()).json(&body);
                let outcome = send(Channel::Webhook, req, &t, &shared).await;
                crate::journal::notifications::record(
                    shared.journal.get(),
                    ev.event.name(),
                    ev.event.program().or(ev.event.token()),
                    Channel::Webhook.as_str(),
                    outcome,
                );
            }
        };
        let telegram = async {
            if let Some((url, chat_id)) = &t.telegram {
                let body = serde_json::json!({
                    "chat_id": chat_id,
                    "text": ev.text(&t.host),
                    "disable_web_page_preview": true,
                });
                let req = || client.post(url.expose()).json(&body);
                let outcome = send(Channel::Telegram, req, &t, &shared).await;
                crate::journal::notifications::record(
                    shared.journal.get(),
                    ev.event.name(),
                    ev.event.program().or(ev.event.token()),
                    Channel::Telegram.as_str(),
                    outcome,
                );
            }
        };
        tokio::join!(webhook, telegram);
    }
}

fn build_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .connect_timeout(SEND_TIMEOUT)
        // A redirect would resend the payload somewhere the operator did not configure.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One delivery: an attempt, and one retry after a transient failure (network, timeout, 429,
/// 5xx). A 4xx other than 429 is a configuration problem; retrying cannot help.
async fn send(
    channel: Channel,
    request: impl Fn() -> reqwest::RequestBuilder,
    t: &Targets,
    shared: &Shared,
) -> Result<(), String> {
    let mut attempt = 1;
    loop {
        let (error, transient) = match request().send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let status = resp.status();
                let transient = status.is_server_error() || status.as_u16() == 429;
                (format!("HTTP {status}"), transient)
            }
            Err(e) => (describe(e, t), true),
        };
        if transient && attempt == 1 {
            attempt += 1;
            tokio::time::sleep(RETRY_DELAY).await;
            continue;
        }
        tracing::warn!(
            channel = channel.as_str(),
            attempts = attempt,
            %error,
            "notification not delivered"
        );
        shared.failed(channel);
        return Err(error);
    }
}

/// An error message without the URL or anything from it (the bot token is in the path).
fn describe(e: reqwest::Error, t: &Targets) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut msg = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    // Belt and braces: nothing below the reqwest error should carry the URL, but never let it.
    let secrets = t
        .webhook
        .iter()
        .chain(t.telegram.as_ref().map(|(u, _)| u))
        .map(Secret::expose);
    for s in secrets {
        msg = msg.replace(s, "<redacted>");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_never_show_the_url() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let url = format!("http://{addr}/bot123:SECRETTOKEN/sendMessage");
        let t = Targets {
            webhook: None,
            telegram: Some((Secret::new(url.clone()), "1".into())),
            host: "h".into(),
        };
        let err = build_client().unwrap().post(&url).send().await.unwrap_err();
        let msg = describe(err, &t);
        assert!(msg.starts_with("cannot connect"), "{msg}");
        assert!(
            !msg.contains("SECRETTOKEN") && !msg.contains(&addr.to_string()),
            "{msg}"
        );
    }
}
