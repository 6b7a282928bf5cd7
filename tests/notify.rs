//! Notifications against a real HTTP sink on 127.0.0.1:0.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Json;
use tokio::sync::mpsc;
use warden::config::{NotifyConfig, Secret};
use warden::metrics::Metrics;
use warden::notify::{Channel, Notifier, NotifyEvent};

const WAIT: Duration = Duration::from_secs(5);

type Requests = mpsc::UnboundedSender<(String, serde_json::Value)>;

/// Records every POST (path, JSON body) and answers with `status`.
struct Sink {
    addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<(String, serde_json::Value)>,
    status: Arc<AtomicU16>,
}

impl Sink {
    async fn start() -> Sink {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(AtomicU16::new(200));
        let state = (tx, status.clone());
        let app = axum::Router::new()
            .fallback(
                |State((tx, status)): State<(Requests, Arc<AtomicU16>)>,
                 uri: Uri,
                 Json(body): Json<serde_json::Value>| async move {
                    let _ = tx.send((uri.path().to_string(), body));
                    let code = StatusCode::from_u16(status.load(Ordering::Relaxed)).unwrap();
                    (code, Json(serde_json::json!({"ok": code.is_success()})))
                },
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Sink { addr, rx, status }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn next(&mut self) -> (String, serde_json::Value) {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a request within the deadline")
            .unwrap()
    }
}

fn webhook(url: &str) -> NotifyConfig {
    NotifyConfig {
        webhook_url: Secret::new(url),
        ..Default::default()
    }
}

fn fatal(program: &str) -> NotifyEvent {
    NotifyEvent::ProgramFatal {
        program: program.into(),
    }
}

#[tokio::test]
async fn each_event_arrives_as_json() {
    let mut sink = Sink::start().await;
    let n = Notifier::new(&webhook(&sink.url("/hook")));
    assert!(n.is_enabled());

    n.notify(NotifyEvent::TokenNeedsLogin {
        token: "kite".into(),
        login_url: "http://127.0.0.1:9180/login".into(),
        reason: "manual login mode".into(),
    });
    let (path, body) = sink.next().await;
    assert_eq!(path, "/hook");
    assert_eq!(body["event"], "token_needs_login");
    assert_eq!(body["login_url"], "http://127.0.0.1:9180/login");
    assert!(body["program"].is_null());
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("http://127.0.0.1:9180/login") && text.contains("log in"),
        "{text}"
    );

    n.notify(NotifyEvent::TokenRefreshFailed {
        token: "kite".into(),
        reason: "TOTP rejected".into(),
        retry_in_secs: None,
    });
    let (_, body) = sink.next().await;
    assert_eq!(body["event"], "token_refresh_failed");
    assert!(body["login_url"].is_null() && body["program"].is_null());
    assert!(body["text"].as_str().unwrap().contains("TOTP rejected"));

    n.notify(NotifyEvent::TokenRefreshed {
        token: "kite".into(),
        user_id: Some("AB1234".into()),
        expires_at: None,
    });
    let (_, body) = sink.next().await;
    assert_eq!(body["event"], "token_refreshed");
    assert!(body["text"].as_str().unwrap().contains("AB1234"));

    n.notify(fatal("backend"));
    let (_, body) = sink.next().await;
    assert_eq!(body["event"], "program_fatal");
    assert_eq!(body["program"], "backend");
    assert!(body["login_url"].is_null());
    assert!(body["text"]
        .as_str()
        .unwrap()
        .contains("warden restart backend"));
    let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["event", "login_url", "program", "text"]);
}

#[tokio::test]
async fn repeats_are_suppressed_per_event_and_program() {
    let mut sink = Sink::start().await;
    let n = Notifier::new(&webhook(&sink.url("/hook")));
    n.notify(fatal("backend"));
    n.notify(fatal("backend")); // suppressed
    n.clone().notify(fatal("backend")); // clones share the dedup state
    n.notify(fatal("frontend")); // another program: sent
    n.notify(NotifyEvent::TokenRefreshFailed {
        token: "kite".into(),
        reason: "x".into(),
        retry_in_secs: Some(30),
    }); // another event: sent
        // Delivery is in order, so a duplicate would arrive before these.
    assert_eq!(sink.next().await.1["program"], "backend");
    assert_eq!(sink.next().await.1["program"], "frontend");
    assert_eq!(sink.next().await.1["event"], "token_refresh_failed");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sink.rx.recv())
            .await
            .is_err(),
        "a suppressed repeat was delivered"
    );
}

#[tokio::test]
async fn a_repeat_after_the_window_is_sent() {
    let mut sink = Sink::start().await;
    let window = Duration::from_millis(100);
    let n = Notifier::with_dedup_window(&webhook(&sink.url("/hook")), window);
    n.notify(fatal("backend"));
    assert_eq!(sink.next().await.1["program"], "backend");
    // Let the window pass: the precondition of this test, not a wait for its result.
    tokio::time::sleep(window + Duration::from_millis(50)).await;
    n.notify(fatal("backend"));
    assert_eq!(sink.next().await.1["program"], "backend");
}

#[tokio::test]
async fn telegram_gets_chat_id_and_text() {
    let mut sink = Sink::start().await;
    let cfg = NotifyConfig {
        telegram_bot_token: Secret::new("123:ABC-secret"),
        telegram_chat_id: "-100777".into(),
        telegram_api_base: sink.url("/tg/"),
        ..Default::default()
    };
    let n = Notifier::new(&cfg);
    n.notify(NotifyEvent::TokenNeedsLogin {
        token: "kite".into(),
        login_url: "http://box/login".into(),
        reason: "manual login mode".into(),
    });
    let (path, body) = sink.next().await;
    assert_eq!(path, "/tg/bot123:ABC-secret/sendMessage");
    assert_eq!(body["chat_id"], "-100777");
    assert!(body["text"].as_str().unwrap().contains("http://box/login"));
}

#[tokio::test]
async fn webhook_and_telegram_both_receive() {
    let mut sink = Sink::start().await;
    let cfg = NotifyConfig {
        webhook_url: Secret::new(sink.url("/hook")),
        telegram_bot_token: Secret::new("9:T"),
        telegram_chat_id: "42".into(),
        telegram_api_base: sink.url(""),
        ..Default::default()
    };
    Notifier::new(&cfg).notify(fatal("backend"));
    let mut paths = vec![sink.next().await.0, sink.next().await.0];
    paths.sort();
    assert_eq!(paths, ["/bot9:T/sendMessage", "/hook"]);
}

#[tokio::test]
async fn telegram_needs_both_token_and_chat() {
    let cfg = NotifyConfig {
        telegram_bot_token: Secret::new("9:T"),
        ..Default::default()
    };
    assert!(!Notifier::new(&cfg).is_enabled());
    assert!(!Notifier::new(&NotifyConfig::default()).is_enabled());
    // Disabled: notify is a harmless no-op.
    Notifier::new(&NotifyConfig::default()).notify(fatal("x"));
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_dead_sink_is_counted_and_never_blocks() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let n = Notifier::new(&webhook(&format!("http://{addr}/hook")));
    let metrics = Metrics::new();
    n.set_metrics(&metrics);

    let start = Instant::now();
    n.notify(fatal("a"));
    n.notify(fatal("b"));
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "notify blocked"
    );

    wait_for(|| n.failures(Channel::Webhook) == 2).await;
    assert_eq!(n.failures(Channel::Telegram), 0);
    assert!(metrics
        .render()
        .contains("warden_notify_failures_total{channel=\"webhook\"} 2"));
}

#[tokio::test]
async fn server_errors_are_retried_once_client_errors_never() {
    let mut sink = Sink::start().await;
    let n = Notifier::new(&webhook(&sink.url("/hook")));

    sink.status.store(500, Ordering::Relaxed);
    n.notify(fatal("a"));
    assert_eq!(sink.next().await.1["program"], "a");
    assert_eq!(sink.next().await.1["program"], "a"); // the one retry
    wait_for(|| n.failures(Channel::Webhook) == 1).await;

    sink.status.store(404, Ordering::Relaxed);
    n.notify(fatal("b"));
    n.notify(fatal("marker"));
    assert_eq!(sink.next().await.1["program"], "b");
    assert_eq!(sink.next().await.1["program"], "marker"); // no retry of "b" in between
    wait_for(|| n.failures(Channel::Webhook) == 3).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sink.rx.recv())
            .await
            .is_err(),
        "more than one retry"
    );
}

/// A wall clock the test sets (seconds since the epoch).
fn settable_clock(at: &str) -> (Arc<std::sync::atomic::AtomicI64>, warden::notify::WallClock) {
    let secs = Arc::new(std::sync::atomic::AtomicI64::new(ist(at).as_second()));
    let read = secs.clone();
    let clock: warden::notify::WallClock =
        Arc::new(move || jiff::Timestamp::from_second(read.load(Ordering::Relaxed)).unwrap());
    (secs, clock)
}

/// `"2026-12-12 12:00"` in IST (a Saturday).
fn ist(s: &str) -> jiff::Timestamp {
    let dt: jiff::civil::DateTime = s.parse().unwrap();
    dt.to_zoned(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap())
        .unwrap()
        .timestamp()
}

fn login(reason: &str) -> NotifyEvent {
    NotifyEvent::TokenNeedsLogin {
        token: "kite".into(),
        login_url: "http://box/login".into(),
        reason: reason.into(),
    }
}

#[tokio::test]
async fn outside_trading_days_events_are_held_collapsed_and_resolved() {
    let mut sink = Sink::start().await;
    let (secs, clock) = settable_clock("2026-12-12 12:00");
    let cfg = NotifyConfig {
        quiet_hours: "22:00-08:30".into(),
        trading_days_only: true,
        ..webhook(&sink.url("/hook"))
    };
    let n = Notifier::with_options(
        &cfg,
        warden::notify::NotifierOptions {
            clock: Some(clock),
            ..Default::default()
        },
    );
    let held = n.held_view();
    n.notify(login("first"));
    n.notify(login("second"));
    n.notify(NotifyEvent::TokenRefreshFailed {
        token: "kite".into(),
        reason: "timeout".into(),
        retry_in_secs: Some(60),
    });
    n.notify(fatal("backend"));
    n.notify(fatal("worker"));
    let list = held.borrow().clone();
    assert_eq!(list.len(), 4, "{list:?}");
    // Problems wait for 90 minutes before Monday's open (quiet hours end later, at 08:30).
    assert!(list.iter().all(|h| h.send_at == ist("2026-12-14 07:45")
        && h.reason == "not_a_trading_day"
        && h.send_at_local == "Mon 07:45 IST"));
    let l = list
        .iter()
        .find(|h| h.event == "token_needs_login")
        .unwrap();
    assert_eq!(
        (l.count, l.summary.as_str()),
        (2, "token kite needs a login: second")
    );

    // Good news for the token drops its problems (and waits itself, until quiet hours end);
    // a program that runs again drops its fatal.
    n.notify(NotifyEvent::TokenRefreshed {
        token: "kite".into(),
        user_id: None,
        expires_at: None,
    });
    n.program_recovered("worker");
    let list = held.borrow().clone();
    let mut events: Vec<_> = list
        .iter()
        .map(|h| (h.event, h.send_at_local.as_str()))
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            ("program_fatal", "Mon 07:45 IST"),
            ("token_refreshed", "Mon 08:30 IST")
        ]
    );
    assert!(sink.rx.try_recv().is_err(), "nothing was sent");

    // Monday 07:50: quiet, but the session opens in 85 minutes. A new problem goes out at once,
    // and one of a kind already held goes out in its place, saying since when it waited.
    secs.store(ist("2026-12-14 07:50").as_second(), Ordering::Relaxed);
    n.notify(login("third"));
    n.notify(fatal("backend"));
    let (_, body) = sink.next().await;
    assert_eq!(body["event"], "token_needs_login");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("third") && !text.contains("held since"),
        "{text}"
    );
    let (_, body) = sink.next().await;
    assert_eq!(body["program"], "backend");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.ends_with("(held since Sat 12:00 IST: not a trading day)"),
        "{text}"
    );
    let events: Vec<_> = held.borrow().iter().map(|h| h.event).collect();
    assert_eq!(events, ["token_refreshed"]);
}

#[tokio::test]
async fn a_reload_without_quiet_hours_releases_what_is_held() {
    let mut sink = Sink::start().await;
    let (_secs, clock) = settable_clock("2026-12-12 12:00");
    let quiet = NotifyConfig {
        trading_days_only: true,
        ..webhook(&sink.url("/hook"))
    };
    let n = Notifier::with_options(
        &quiet,
        warden::notify::NotifierOptions {
            clock: Some(clock),
            ..Default::default()
        },
    );
    n.notify(login("on a Saturday"));
    assert_eq!(n.held_view().borrow().len(), 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sink.rx.recv())
            .await
            .is_err(),
        "held on a Saturday"
    );
    let open = webhook(&sink.url("/hook"));
    n.reconfigure(&quiet, &open);
    let (_, body) = sink.next().await;
    assert_eq!(body["event"], "token_needs_login");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.ends_with("(held since Sat 12:00 IST: not a trading day)"),
        "{text}"
    );
    wait_for(|| n.held_view().borrow().is_empty()).await;
}
