//! Tell a person when something needs them (SPEC §3 `[notify]`): a JSON webhook (Slack and
//! Mattermost show its `text`) and, optionally, a Telegram message.
//!
//! [`Notifier::notify`] never blocks and never awaits the network: it applies the dedup rule
//! and hands the event to a background task on the current tokio runtime, which owns the HTTP
//! client (built on the first send, so an idle warden never loads TLS roots) and delivers with
//! a short timeout and at most one retry. A failure is logged without the URL (webhook URLs and
//! bot tokens are secrets) and counted per channel ([`Notifier::failures`] and, when wired,
//! `warden_notify_failures_total{channel}`).
//!
//! Dedup: the same (event, program) is sent at most once per window (10 minutes by default),
//! so a flapping token or a crash loop does not flood a phone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::{NotifyConfig, Secret};
use crate::metrics::Metrics;

/// The SPEC's repeat limit.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// Per attempt, connect included. A notification is never worth holding anything up.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Events waiting for delivery; beyond this they are dropped (and counted as failures).
const QUEUE: usize = 32;
const DEFAULT_TELEGRAM_API: &str = "https://api.telegram.org";

/// Something a person should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    /// Automated refresh is impossible or exhausted: someone must log in at `login_url`.
    TokenNeedsLogin { login_url: String },
    /// A refresh failed; `reason` must not contain secrets.
    TokenRefreshFailed { reason: String },
    /// A new token is in place. `expires_at` in unix seconds.
    TokenRefreshed {
        user_id: Option<String>,
        expires_at: Option<i64>,
    },
    /// A program is in state `fatal`: warden stopped restarting it.
    ProgramFatal { program: String },
}

impl NotifyEvent {
    /// The `event` field.
    pub fn name(&self) -> &'static str {
        match self {
            NotifyEvent::TokenNeedsLogin { .. } => "token_needs_login",
            NotifyEvent::TokenRefreshFailed { .. } => "token_refresh_failed",
            NotifyEvent::TokenRefreshed { .. } => "token_refreshed",
            NotifyEvent::ProgramFatal { .. } => "program_fatal",
        }
    }

    pub fn program(&self) -> Option<&str> {
        match self {
            NotifyEvent::ProgramFatal { program } => Some(program),
            _ => None,
        }
    }

    pub fn login_url(&self) -> Option<&str> {
        match self {
            NotifyEvent::TokenNeedsLogin { login_url } => Some(login_url),
            _ => None,
        }
    }

    /// A sentence for a human, prefixed with the host so several machines can share a channel.
    pub fn text(&self, host: &str) -> String {
        let body = match self {
            NotifyEvent::TokenNeedsLogin { login_url } => format!(
                "the Kite access token needs a manual login. Open {login_url} to log in; \
                 the programs get the new token automatically."
            ),
            NotifyEvent::TokenRefreshFailed { reason } => {
                format!("the Kite access token refresh failed: {reason}")
            }
            NotifyEvent::TokenRefreshed {
                user_id,
                expires_at,
            } => {
                let mut s = String::from("new Kite access token in place");
                if let Some(u) = user_id {
                    s.push_str(&format!(" for {u}"));
                }
                if let Some(ts) = expires_at.and_then(|t| jiff::Timestamp::from_second(t).ok()) {
                    s.push_str(&format!(", expected to expire at {ts}"));
                }
                s.push('.');
                s
            }
            NotifyEvent::ProgramFatal { program } => format!(
                "program {program} is fatal: it kept failing and is no longer restarted. Fix \
                 it, then run `warden restart {program}` (or change its config)."
            ),
        };
        format!("warden on {host}: {body}")
    }

    /// The webhook body: `{"event","text","login_url","program"}`, null where not applicable.
    pub fn to_json(&self, host: &str) -> serde_json::Value {
        serde_json::json!({
            "event": self.name(),
            "text": self.text(host),
            "login_url": self.login_url(),
            "program": self.program(),
        })
    }
}

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

/// Hands events to the delivery task. Cheap to clone; all clones share dedup and counters.
#[derive(Clone, Debug)]
pub struct Notifier {
    /// `None` when no channel is configured (or there was no runtime): `notify` is a no-op.
    tx: Option<mpsc::Sender<NotifyEvent>>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    window: Duration,
    last_sent: Mutex<HashMap<(&'static str, Option<String>), Instant>>,
    failures: [AtomicU64; 2],
    metrics: OnceLock<Metrics>,
    /// The event history: each delivery's outcome.
    journal: OnceLock<crate::journal::Journal>,
    webhook: bool,
    telegram: bool,
}

impl Shared {
    fn failed(&self, channel: Channel) {
        self.failures[channel as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.metrics.get() {
            m.inc_notify_failure(channel.as_str());
        }
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
    /// A notifier for `cfg` with the SPEC's 10-minute dedup window. Call inside a tokio runtime.
    pub fn new(cfg: &NotifyConfig) -> Notifier {
        Notifier::with_dedup_window(cfg, DEFAULT_DEDUP_WINDOW)
    }

    /// Like [`Notifier::new`] with another dedup window (tests use a short one).
    pub fn with_dedup_window(cfg: &NotifyConfig, window: Duration) -> Notifier {
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
        let shared = Arc::new(Shared {
            window,
            last_sent: Mutex::new(HashMap::new()),
            failures: Default::default(),
            metrics: OnceLock::new(),
            journal: OnceLock::new(),
            webhook: webhook.is_some(),
            telegram: telegram.is_some(),
        });
        let mut tx = None;
        if webhook.is_some() || telegram.is_some() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let (sender, rx) = mpsc::channel(QUEUE);
                    let targets = Targets {
                        webhook,
                        telegram,
                        host: hostname(),
                    };
                    rt.spawn(deliver_all(rx, targets, shared.clone()));
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

    /// Queue `ev` for delivery unless the same (event, program) was queued within the dedup
    /// window. Returns at once.
    pub fn notify(&self, ev: NotifyEvent) {
        let Some(tx) = &self.tx else { return };
        let key = (ev.name(), ev.program().map(str::to_string));
        {
            let mut last = self
                .shared
                .last_sent
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if let Some(at) = last.get(&key) {
                if now.duration_since(*at) < self.shared.window {
                    tracing::debug!(event = key.0, "notification suppressed (sent recently)");
                    return;
                }
            }
            last.retain(|_, at| now.duration_since(*at) < self.shared.window);
            last.insert(key, now);
        }
        if tx.try_send(ev).is_err() {
            tracing::warn!("notification dropped: the delivery queue is full");
            for (on, ch) in [
                (self.shared.webhook, Channel::Webhook),
                (self.shared.telegram, Channel::Telegram),
            ] {
                if on {
                    self.shared.failed(ch);
                }
            }
        }
    }

    /// Deliveries that failed on `channel` so far (after the retry).
    pub fn failures(&self, channel: Channel) -> u64 {
        self.shared.failures[channel as usize].load(Ordering::Relaxed)
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

async fn deliver_all(mut rx: mpsc::Receiver<NotifyEvent>, t: Targets, shared: Arc<Shared>) {
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
                    ev.name(),
                    ev.program(),
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
                    ev.name(),
                    ev.program(),
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

    #[test]
    fn json_shape_per_event() {
        let cases = [
            (
                NotifyEvent::TokenNeedsLogin {
                    login_url: "http://h/login".into(),
                },
                "token_needs_login",
                Some("http://h/login"),
                None,
            ),
            (
                NotifyEvent::TokenRefreshFailed {
                    reason: "broker said no".into(),
                },
                "token_refresh_failed",
                None,
                None,
            ),
            (
                NotifyEvent::TokenRefreshed {
                    user_id: Some("AB1234".into()),
                    expires_at: Some(1_700_000_000),
                },
                "token_refreshed",
                None,
                None,
            ),
            (
                NotifyEvent::ProgramFatal {
                    program: "backend".into(),
                },
                "program_fatal",
                None,
                Some("backend"),
            ),
        ];
        for (ev, name, url, program) in cases {
            let j = ev.to_json("box");
            assert_eq!(j.as_object().unwrap().len(), 4);
            assert_eq!(j["event"], name);
            assert_eq!(j["login_url"].as_str(), url);
            assert_eq!(j["program"].as_str(), program);
            assert!(j["text"].as_str().unwrap().starts_with("warden on box: "));
        }
        let text = NotifyEvent::TokenRefreshed {
            user_id: Some("AB1234".into()),
            expires_at: Some(1_700_000_000),
        }
        .text("box");
        assert!(
            text.contains("AB1234") && text.contains("2023-11-14T22:13:20Z"),
            "{text}"
        );
    }

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
