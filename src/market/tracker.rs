//! The running side of [`Continuity`]: follows each token's status, ticks once a second, keeps
//! `warden_market_open`, `warden_market_next_open_timestamp_seconds` and
//! `warden_token_invalid_market_seconds_total{token}` current,
//! publishes a [`MarketView`] for the status page and API, and saves the per-day totals to
//! `{state_dir}/market.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use prometheus::{CounterVec, IntGauge, Opts, Registry};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::calendar::MarketCalendar;
use super::continuity::{Continuity, StripDay};
use super::strip_file;
use crate::model::{TokenState, TokenStatus};

/// How often the totals advance (and the gauge follows the calendar).
const TICK: Duration = Duration::from_secs(1);
/// Longest a change of the per-day totals waits before it is saved (a transition saves at
/// once): at most this much of a day is lost to a crash.
const SAVE_EVERY: Duration = Duration::from_secs(15);

/// The `market` object of `/api/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MarketView {
    pub open: bool,
    pub timezone: String,
    #[serde(serialize_with = "crate::model::time::rfc3339_opt")]
    pub next_open: Option<Timestamp>,
    #[serde(serialize_with = "crate::model::time::rfc3339_opt")]
    pub next_close: Option<Timestamp>,
    /// By token name.
    pub tokens: BTreeMap<String, TokenContinuity>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenContinuity {
    /// The counter's value: seconds not valid while open, since warden started.
    pub invalid_market_seconds_total: f64,
    /// The last 7 trading days, oldest first.
    pub strip: Vec<StripDay>,
}

/// The two market series, registered in warden's registry.
#[derive(Clone)]
struct MarketMetrics {
    open: IntGauge,
    next_open: IntGauge,
    invalid_seconds: CounterVec,
}

impl MarketMetrics {
    fn register(r: &Registry) -> MarketMetrics {
        let open = IntGauge::new(
            "warden_market_open",
            "1 while the market is open by the [market] calendar, else 0.",
        )
        .expect("valid metric");
        let next_open = IntGauge::new(
            "warden_market_next_open_timestamp_seconds",
            "When the next session opens (unix seconds; while open, the one after this); 0 \
             when none is within about a year.",
        )
        .expect("valid metric");
        let invalid_seconds = CounterVec::new(
            Opts::new(
                "warden_token_invalid_market_seconds_total",
                "Seconds the token was not valid while the market was open.",
            ),
            &["token"],
        )
        .expect("valid metric");
        for c in [
            Box::new(open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(next_open.clone()),
            Box::new(invalid_seconds.clone()),
        ] {
            if let Err(e) = r.register(c) {
                tracing::warn!("market metrics not exported: {e}");
            }
        }
        MarketMetrics {
            open,
            next_open,
            invalid_seconds,
        }
    }
}

/// What the tracker needs. `tokens` are (name, status) pairs: the name is the `token` label.
pub struct TrackerSetup {
    pub calendar: watch::Receiver<MarketCalendar>,
    pub tokens: Vec<(String, watch::Receiver<TokenStatus>)>,
    pub state_dir: PathBuf,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Start following; the view is current from the first tick on.
pub fn spawn(setup: TrackerSetup) -> watch::Receiver<MarketView> {
    let (view_tx, view_rx) = watch::channel(MarketView::default());
    tokio::spawn(run(setup, view_tx));
    view_rx
}

async fn run(setup: TrackerSetup, view: watch::Sender<MarketView>) {
    let TrackerSetup {
        mut calendar,
        tokens,
        state_dir,
        metrics,
    } = setup;
    let series = MarketMetrics::register(metrics.registry());
    warn_about_missing_holidays(&calendar.borrow(), Timestamp::now());
    let file = strip_file::path(&state_dir);
    let mut ledger = Continuity::new(calendar.borrow_and_update().clone());
    match strip_file::read(&file) {
        Ok(history) => {
            // A token no longer configured is neither shown nor exported, and the next save
            // forgets it.
            for (token, days) in history {
                if tokens.iter().any(|(name, _)| *name == token) {
                    ledger.restore(&token, days);
                }
            }
        }
        Err(e) => tracing::warn!("{e}"),
    }
    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    let now = Timestamp::now();
    for (name, mut status) in tokens {
        let valid = status.borrow_and_update().state == TokenState::Valid;
        ledger.observe(&name, now, valid);
        series.invalid_seconds.with_label_values(&[&name]);
        let tx = changes_tx.clone();
        tokio::spawn(async move {
            let mut was = valid;
            while status.changed().await.is_ok() {
                let valid = status.borrow_and_update().state == TokenState::Valid;
                if valid != was && tx.send((name.clone(), Timestamp::now(), valid)).is_err() {
                    return;
                }
                was = valid;
            }
        });
    }
    drop(changes_tx);
    let mut exported: BTreeMap<String, u64> = BTreeMap::new();
    let mut saved = ledger_history(&ledger);
    let mut last_save = tokio::time::Instant::now();
    let mut write_failing = false;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut calendar_open = true;
    loop {
        let mut transition = false;
        tokio::select! {
            _ = ticks.tick() => {}
            Some((name, at, valid)) = changes.recv() => {
                ledger.observe(&name, at, valid);
                transition = true;
            }
            changed = calendar.changed(), if calendar_open => match changed {
                Ok(()) => ledger.set_calendar(calendar.borrow_and_update().clone()),
                Err(_) => calendar_open = false,
            },
        }
        let now = Timestamp::now();
        ledger.tick(now);
        let today = ledger.calendar().date_of(now);
        ledger.prune(today);
        series.open.set(i64::from(ledger.calendar().is_open(now)));
        series.next_open.set(
            ledger
                .calendar()
                .next_open(now)
                .map_or(0, |t| t.as_second()),
        );
        for token in ledger.tokens().map(str::to_string).collect::<Vec<_>>() {
            let total = ledger.invalid_total_ms(&token);
            let before = exported.insert(token.clone(), total).unwrap_or(0);
            if total > before {
                series
                    .invalid_seconds
                    .with_label_values(&[&token])
                    .inc_by((total - before) as f64 / 1000.0);
            }
        }
        let next = current_view(&ledger, now);
        view.send_if_modified(|v| {
            let changed = *v != next;
            *v = next;
            changed
        });
        let history = ledger_history(&ledger);
        if history != saved && (transition || last_save.elapsed() >= SAVE_EVERY) {
            match strip_file::write(&file, &history) {
                Ok(()) => {
                    if write_failing {
                        tracing::info!("{} written again", file.display());
                    }
                    write_failing = false;
                    saved = history;
                }
                // Said once per streak: a read-only state_dir would otherwise log every 15 s.
                Err(e) if !write_failing => {
                    tracing::warn!("{e}; the market strip will not survive a restart");
                    write_failing = true;
                }
                Err(_) => {}
            }
            last_save = tokio::time::Instant::now();
        }
    }
}

/// A month ahead of a year without any holiday (2027 is not built in): say so once at start.
fn warn_about_missing_holidays(calendar: &MarketCalendar, now: Timestamp) {
    let soon = now
        .checked_add(jiff::SignedDuration::from_hours(31 * 24))
        .unwrap_or(now);
    let year = calendar.date_of(soon).year();
    if !calendar.lists_holidays_in(year) {
        tracing::warn!(
            "[market] lists no trading holiday in {year}: the built-in NSE list does not cover \
             it yet; add that year's holidays from the exchange's circular to [market] holidays \
             (until then those days count as trading days)"
        );
    }
}

fn ledger_history(ledger: &Continuity) -> strip_file::History {
    ledger
        .tokens()
        .map(|t| (t.to_string(), ledger.days(t)))
        .collect()
}

fn current_view(ledger: &Continuity, now: Timestamp) -> MarketView {
    let cal = ledger.calendar();
    let today = cal.date_of(now);
    MarketView {
        open: cal.is_open(now),
        timezone: cal.time_zone().iana_name().unwrap_or("UTC").to_string(),
        next_open: cal.next_open(now),
        next_close: cal.next_close(now),
        tokens: ledger
            .tokens()
            .map(|t| {
                let c = TokenContinuity {
                    invalid_market_seconds_total: ledger.invalid_total_ms(t) as f64 / 1000.0,
                    strip: ledger.strip(t, today),
                };
                (t.to_string(), c)
            })
            .collect(),
    }
}
