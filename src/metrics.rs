//! The Prometheus metrics of SPEC §6, plus warden's own `process_*` metrics.
//!
//! [`Metrics`] is cheap to clone; every clone updates the same series. The helpers are what the
//! supervisor, the probes and the token keeper call; they take label values as `&str` and do
//! not allocate once a series exists.
//!
//! Two stores sit behind it:
//! - warden-wide metrics (token, reloads, zombies, build info, notify failures, `process_*`)
//!   are ordinary `prometheus` handles in a private [`Registry`] (not the global default, so
//!   tests and several instances never collide);
//! - per-program series (`warden_program_*`, `warden_health_*`) live in [`ProgramTable`], one
//!   row of atomics per program, rendered directly to text. `Registry::gather` clones every
//!   series with its labels and sorts them: about 35 ms for 1000 programs in a debug build.
//!   Writing the rows straight out keeps `/metrics` in the low milliseconds and allocation-free
//!   apart from the output buffer.
//!
//! Series that dashboards and alerts compare against (reload errors, refresh failures, login
//! attempts, restarts per reason, probe results) exist at 0 from the start, so `increase()`
//! sees their first increment and panels show 0 rather than "no data".
//!
//! Documented extensions beyond SPEC §6: `warden_notify_failures_total{channel}`
//! (`webhook`, `telegram`), fed by [`crate::notify::Notifier`]; and, only in fleet mode
//! (`token.store.kind = "redis"`), `warden_token_store_up`, `warden_token_leader` and
//! `warden_token_leader_changes_total` — registered on first use, so a single warden's
//! exposition does not carry a store it does not have.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use prometheus::{
    HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Program states (SPEC §5), the values of `warden_program_state{state}`.
pub const PROGRAM_STATES: [&str; 7] = [
    "starting", "running", "backoff", "stopping", "stopped", "exited", "fatal",
];
/// `warden_program_restarts_total{reason}`.
pub const RESTART_REASONS: [&str; 5] = ["exit", "unhealthy", "token", "config", "manual"];
/// `warden_health_checks_total{result}`.
pub const HEALTH_RESULTS: [&str; 4] = ["ok", "fail", "timeout", "auth"];
/// `warden_token_refreshes_total{result}`.
pub const REFRESH_RESULTS: [&str; 2] = ["success", "failure"];
/// `warden_token_refreshes_total{source}`: where the token came from (token.json's `source`).
pub const TOKEN_SOURCES: [&str; 5] = ["totp", "session", "manual", "command", "env_file"];
/// `warden_token_login_attempts_total{kind}`.
pub const LOGIN_KINDS: [&str; 4] = ["totp", "session", "manual", "command"];
/// `warden_notify_failures_total{channel}`.
pub const NOTIFY_CHANNELS: [&str; 2] = ["webhook", "telegram"];

/// Probe latencies: loopback HTTP is milliseconds; the default probe timeout is 2 s.
const HEALTH_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// A refresh is a few broker round trips, a whole login, or an operator's script.
const REFRESH_BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Fleet mode's series.
struct FleetMetrics {
    store_up: IntGaugeVec,
    leader: IntGaugeVec,
    leader_changes: IntCounterVec,
    records_rejected: IntCounterVec,
}

/// The `reason`s of `warden_token_store_records_rejected_total` (`token::fleet::Rejection`).
const STORE_REJECTIONS: [&str; 4] = ["unreadable", "signature", "user", "replay"];

impl FleetMetrics {
    fn register(r: &Registry) -> FleetMetrics {
        FleetMetrics {
            store_up: gauge_vec(
                r,
                "warden_token_store_up",
                "1 while the shared token store (Redis) answers, else 0.",
                &["token"],
            ),
            leader: gauge_vec(
                r,
                "warden_token_leader",
                "1 while this warden holds the fleet lock and is the one that logs in.",
                &["token"],
            ),
            leader_changes: counter_vec(
                r,
                "warden_token_leader_changes_total",
                "Times this warden started or stopped leading the fleet.",
                &["token"],
            ),
            records_rejected: counter_vec(
                r,
                "warden_token_store_records_rejected_total",
                "Token records read from Redis that this warden refused to use, by reason.",
                &["reason", "token"],
            ),
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    programs: Arc<ProgramTable>,
    /// The `token` label of every `warden_token_*` series this handle sets (SPEC §6, §9.1):
    /// see [`Metrics::for_token`].
    token: Arc<str>,
    token_valid: IntGaugeVec,
    token_expiry: IntGaugeVec,
    token_refreshes: IntCounterVec,
    token_refresh_duration: prometheus::HistogramVec,
    login_attempts: IntCounterVec,
    clock_skew: prometheus::GaugeVec,
    config_reloads: IntCounterVec,
    zombies_reaped: IntCounter,
    notify_failures: IntCounterVec,
    fleet: Arc<OnceLock<FleetMetrics>>,
    /// Size of the previous exposition, to allocate the next one in one go.
    last_len: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    r.register(Box::new(m.clone()))
        .expect("metric names are unique");
    m
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let token_valid = gauge_vec(
            &r,
            "warden_token_valid",
            "1 while the broker access token is known to be valid (its last validation \
             succeeded), else 0.",
            &["token"],
        );
        let token_expiry = gauge_vec(
            &r,
            "warden_token_expiry_timestamp_seconds",
            "Expected expiry of the current access token in unix seconds (a hint from the \
             daily expiry time; 0 when there is no token).",
            &["token"],
        );
        let token_refreshes = counter_vec(
            &r,
            "warden_token_refreshes_total",
            "Completed token refreshes by result (success, failure) and source of the token \
             (totp, manual, command, env_file).",
            &["result", "source", "token"],
        );
        let token_refresh_duration = register(
            &r,
            prometheus::HistogramVec::new(
                HistogramOpts::new(
                    "warden_token_refresh_duration_seconds",
                    "Time from the start of a token refresh to its outcome.",
                )
                .buckets(REFRESH_BUCKETS.to_vec()),
                &["token"],
            )
            .expect("valid metric"),
        );
        let login_attempts = counter_vec(
            &r,
            "warden_token_login_attempts_total",
            "Attempts to obtain a new session by kind: totp (automated login with password and \
             TOTP), session (the kept broker web session, no credentials), manual (Kite \
             callback), command (the operator's script).",
            &["kind", "token"],
        );
        let clock_skew = register(
            &r,
            prometheus::GaugeVec::new(
                Opts::new(
                    "warden_clock_skew_seconds",
                    "Local clock minus the broker's (its Date header), measured before each \
                     TOTP login; over 15 s in either direction no code is submitted.",
                ),
                &["token"],
            )
            .expect("valid metric"),
        );
        let config_reloads = counter_vec(
            &r,
            "warden_config_reloads_total",
            "Config reloads by result: success (applied) or error (invalid file, nothing \
             changed).",
            &["result"],
        );
        let zombies_reaped = register(
            &r,
            IntCounter::new(
                "warden_zombies_reaped_total",
                "Exited processes reaped that were not warden's own programs (orphans \
                 re-parented to warden).",
            )
            .expect("valid metric"),
        );
        let notify_failures = counter_vec(
            &r,
            "warden_notify_failures_total",
            "Notifications that could not be delivered, by channel (webhook, telegram).",
            &["channel"],
        );
        let build_info = register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "warden_build_info",
                    "Always 1; the version label says which warden is running.",
                ),
                &["version"],
            )
            .expect("valid metric"),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("metric names are unique");

        for result in ["success", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        for channel in NOTIFY_CHANNELS {
            notify_failures.with_label_values(&[channel]);
        }

        Metrics {
            registry: r,
            programs: Arc::new(ProgramTable::default()),
            token: Arc::from("kite"),
            token_valid,
            token_expiry,
            token_refreshes,
            token_refresh_duration,
            login_attempts,
            clock_skew,
            config_reloads,
            zombies_reaped,
            notify_failures,
            fleet: Arc::new(OnceLock::new()),
            last_len: Arc::new(AtomicUsize::new(8192)),
        }
    }

    /// The same metrics, with `token` = `name` on every `warden_token_*` series it sets; its
    /// series start at 0. Each keeper gets its own (SPEC §9.1).
    pub fn for_token(&self, name: &str) -> Metrics {
        let m = Metrics {
            token: Arc::from(name),
            ..self.clone()
        };
        m.token_valid.with_label_values(&[name]).set(0);
        m.token_expiry.with_label_values(&[name]).set(0);
        m.token_refresh_duration.with_label_values(&[name]);
        for result in REFRESH_RESULTS {
            for source in TOKEN_SOURCES {
                m.token_refreshes.with_label_values(&[result, source, name]);
            }
        }
        for kind in LOGIN_KINDS {
            m.login_attempts.with_label_values(&[kind, name]);
        }
        m
    }

    /// The token's series go (a reload removed the token).
    pub fn remove_token(&self, name: &str) {
        let _ = self.token_valid.remove_label_values(&[name]);
        let _ = self.token_expiry.remove_label_values(&[name]);
        let _ = self.token_refresh_duration.remove_label_values(&[name]);
        let _ = self.clock_skew.remove_label_values(&[name]);
        for result in REFRESH_RESULTS {
            for source in TOKEN_SOURCES {
                let _ = self
                    .token_refreshes
                    .remove_label_values(&[result, source, name]);
            }
        }
        for kind in LOGIN_KINDS {
            let _ = self.login_attempts.remove_label_values(&[kind, name]);
        }
    }

    /// The registry of the warden-wide metrics, for collectors this module does not know.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format (serve as `text/plain; version=0.0.4; charset=utf-8`).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.last_len.load(Ordering::Relaxed) + 4096);
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut out)
            .expect("writing to a String cannot fail");
        self.programs.render(&mut out);
        self.programs.render_dropped_lines(&mut out);
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// Create a program's series at 0: up, restarts for every reason, and, with a health
    /// check, probe results and the latency histogram. Call when a program is added.
    pub fn init_program(&self, program: &str, has_health_check: bool) {
        let row = self.programs.row(program);
        if has_health_check {
            row.health();
        }
    }

    /// Set `state` (one of [`PROGRAM_STATES`]) to 1 and the six others to 0.
    pub fn set_program_state(&self, program: &str, state: &str) {
        match index_of(&PROGRAM_STATES, state) {
            Some(i) => self.programs.row(program).state.store(i, Ordering::Relaxed),
            None => unknown_label("state", state),
        }
    }

    pub fn set_program_up(&self, program: &str, up: bool) {
        self.programs
            .row(program)
            .up
            .store(i64::from(up), Ordering::Relaxed);
    }

    /// Drop every series of `program` (it was removed by a config reload).
    pub fn remove_program(&self, program: &str) {
        self.programs
            .rows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(program);
    }

    /// `reason`: one of [`RESTART_REASONS`].
    pub fn inc_restart(&self, program: &str, reason: &str) {
        match index_of(&RESTART_REASONS, reason) {
            Some(i) => {
                self.programs.row(program).restarts[i].fetch_add(1, Ordering::Relaxed);
            }
            None => unknown_label("reason", reason),
        }
    }

    /// One finished probe: `result` is one of [`HEALTH_RESULTS`]; `seconds` how long it took.
    pub fn observe_health(&self, program: &str, result: &str, seconds: f64) {
        let Some(i) = index_of(&HEALTH_RESULTS, result) else {
            return unknown_label("result", result);
        };
        let row = self.programs.row(program);
        let h = row.health();
        h.results[i].fetch_add(1, Ordering::Relaxed);
        h.observe(seconds);
    }

    pub fn set_token_valid(&self, valid: bool) {
        self.token_valid
            .with_label_values(&[&self.token])
            .set(i64::from(valid));
    }

    /// Unix seconds; `None` (no token) shows as 0.
    pub fn set_token_expiry(&self, unix_seconds: Option<i64>) {
        self.token_expiry
            .with_label_values(&[&self.token])
            .set(unix_seconds.unwrap_or(0));
    }

    /// One completed refresh: `result` is `success` or `failure`; `source` one of
    /// [`TOKEN_SOURCES`] (for a failure, the source that was tried).
    pub fn inc_refresh(&self, result: &str, source: &str) {
        self.token_refreshes
            .with_label_values(&[result, source, &self.token])
            .inc();
    }

    pub fn observe_refresh_duration(&self, seconds: f64) {
        self.token_refresh_duration
            .with_label_values(&[&self.token])
            .observe(seconds);
    }

    /// `kind`: one of [`LOGIN_KINDS`].
    pub fn inc_login_attempt(&self, kind: &str) {
        self.login_attempts
            .with_label_values(&[kind, &self.token])
            .inc();
    }

    /// `warden_clock_skew_seconds{token}`: local minus broker, in seconds.
    pub fn set_clock_skew(&self, token: &str, seconds: f64) {
        self.clock_skew.with_label_values(&[token]).set(seconds);
    }

    pub fn inc_config_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.config_reloads.with_label_values(&[result]).inc();
    }

    pub fn inc_zombies_reaped(&self) {
        self.zombies_reaped.inc();
    }

    /// `channel`: one of [`NOTIFY_CHANNELS`].
    fn fleet(&self) -> &FleetMetrics {
        self.fleet
            .get_or_init(|| FleetMetrics::register(&self.registry))
    }

    /// The fleet metrics, with this token's counters present from the start (at 0).
    fn token_fleet(&self) -> &FleetMetrics {
        let f = self.fleet();
        f.leader_changes.with_label_values(&[&self.token]);
        for reason in STORE_REJECTIONS {
            f.records_rejected.with_label_values(&[reason, &self.token]);
        }
        f
    }

    pub fn set_token_store_up(&self, up: bool) {
        self.token_fleet()
            .store_up
            .with_label_values(&[&self.token])
            .set(i64::from(up));
    }

    pub fn set_token_leader(&self, leader: bool) {
        self.token_fleet()
            .leader
            .with_label_values(&[&self.token])
            .set(i64::from(leader));
    }

    pub fn inc_token_leader_changes(&self) {
        self.token_fleet()
            .leader_changes
            .with_label_values(&[&self.token])
            .inc();
    }

    /// `reason`: one of `STORE_REJECTIONS`.
    pub fn inc_token_store_record_rejected(&self, reason: &str) {
        self.fleet()
            .records_rejected
            .with_label_values(&[reason, &self.token])
            .inc();
    }

    pub fn inc_notify_failure(&self, channel: &str) {
        self.notify_failures.with_label_values(&[channel]).inc();
    }
}

fn index_of(set: &[&str], value: &str) -> Option<usize> {
    set.iter().position(|s| *s == value)
}

/// A label value outside the SPEC's set is a bug in the caller: loud in tests, ignored (not
/// turned into a new series) in production.
fn unknown_label(label: &str, value: &str) {
    debug_assert!(false, "unknown {label} label value {value:?}");
    tracing::warn!(label, value, "metrics: ignoring an unknown label value");
}

/// Per-program series, one row of atomics per program, kept sorted by name.
#[derive(Default)]
struct ProgramTable {
    rows: RwLock<BTreeMap<String, Arc<ProgramRow>>>,
}

const NO_STATE: usize = usize::MAX;

struct ProgramRow {
    /// `program="…"`, escaped once, ready to print.
    label: String,
    up: AtomicI64,
    /// Index into [`PROGRAM_STATES`]; `NO_STATE` until first set.
    state: AtomicUsize,
    restarts: [AtomicU64; RESTART_REASONS.len()],
    health: OnceLock<HealthRow>,
}

#[derive(Default)]
struct HealthRow {
    results: [AtomicU64; HEALTH_RESULTS.len()],
    /// Per-bucket (not cumulative) counts; the last slot is `+Inf`.
    /// The count is their total, so `_count` always equals the `+Inf` bucket.
    buckets: [AtomicU64; HEALTH_BUCKETS.len() + 1],
    /// f64 bits.
    sum: AtomicU64,
}

impl HealthRow {
    fn observe(&self, seconds: f64) {
        let i = HEALTH_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(HEALTH_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + seconds).to_bits())
            });
    }
}

/// `program="…"`, escaped for the exposition format.
fn program_label(program: &str) -> String {
    let mut label = String::with_capacity(program.len() + 10);
    label.push_str("program=\"");
    for c in program.chars() {
        match c {
            '\\' => label.push_str("\\\\"),
            '"' => label.push_str("\\\""),
            '\n' => label.push_str("\\n"),
            c => label.push(c),
        }
    }
    label.push('"');
    label
}

impl ProgramRow {
    fn new(program: &str) -> ProgramRow {
        ProgramRow {
            label: program_label(program),
            up: AtomicI64::new(0),
            state: AtomicUsize::new(NO_STATE),
            restarts: Default::default(),
            health: OnceLock::new(),
        }
    }

    fn health(&self) -> &HealthRow {
        self.health.get_or_init(HealthRow::default)
    }
}

impl ProgramTable {
    /// The row of `program`, created on first use.
    fn row(&self, program: &str) -> Arc<ProgramRow> {
        if let Some(r) = self
            .rows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(program)
        {
            return r.clone();
        }
        self.rows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(program.to_string())
            .or_insert_with(|| Arc::new(ProgramRow::new(program)))
            .clone()
    }

    /// `warden_log_lines_dropped_total`: 0 for every program, and any other source that lost
    /// lines (the token command, a program removed since). warden's own lines are not counted
    /// here (they are no program's); the log reports them once output flows again.
    fn render_dropped_lines(&self, out: &mut String) {
        let mut counts: BTreeMap<String, u64> = self
            .rows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .map(|k| (k.clone(), 0))
            .collect();
        for (source, n) in crate::log_sink::dropped_counts() {
            if source != crate::log_sink::OWN {
                counts.insert(source, n);
            }
        }
        if counts.is_empty() {
            return;
        }
        header(
            out,
            "warden_log_lines_dropped_total",
            "counter",
            "Output lines of the program dropped because warden's own output (stdout/stderr) \
             could not keep up; warden never waits for it.",
        );
        for (program, n) in counts {
            let _ = writeln!(
                out,
                "warden_log_lines_dropped_total{{{}}} {n}",
                program_label(&program)
            );
        }
    }

    fn render(&self, out: &mut String) {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        if rows.is_empty() {
            return;
        }
        let rows = || rows.values();
        // `write!` into a String cannot fail; the results are ignored below for that reason.
        header(
            out,
            "warden_program_up",
            "gauge",
            "1 while the program is running, else 0.",
        );
        for r in rows() {
            let _ = writeln!(
                out,
                "warden_program_up{{{}}} {}",
                r.label,
                r.up.load(Ordering::Relaxed)
            );
        }
        header(
            out,
            "warden_program_state",
            "gauge",
            "1 for the program's current state (starting, running, backoff, stopping, \
             stopped, exited, fatal), 0 for the others.",
        );
        for r in rows() {
            let current = r.state.load(Ordering::Relaxed);
            if current == NO_STATE {
                continue;
            }
            for (i, s) in PROGRAM_STATES.iter().enumerate() {
                let v = u8::from(i == current);
                let _ = writeln!(out, "warden_program_state{{{},state=\"{s}\"}} {v}", r.label);
            }
        }
        header(
            out,
            "warden_program_restarts_total",
            "counter",
            "Restarts of the program by reason: exit (it exited), unhealthy (liveness probe), \
             token (new broker token), config (config change), manual (API or CLI).",
        );
        for r in rows() {
            for (reason, n) in RESTART_REASONS.iter().zip(&r.restarts) {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "warden_program_restarts_total{{{},reason=\"{reason}\"}} {n}",
                    r.label
                );
            }
        }
        let probed = || rows().filter_map(|r| Some((r.label.as_str(), r.health.get()?)));
        if probed().next().is_none() {
            return;
        }
        header(
            out,
            "warden_health_checks_total",
            "counter",
            "Health probes by result: ok, fail (bad status or connection error), timeout, \
             auth (the program reports a bad broker token).",
        );
        for (label, h) in probed() {
            for (result, n) in HEALTH_RESULTS.iter().zip(&h.results) {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "warden_health_checks_total{{{label},result=\"{result}\"}} {n}"
                );
            }
        }
        let name = "warden_health_check_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "Time taken by a health probe, whatever its result.",
        );
        for (label, h) in probed() {
            let mut cumulative = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n.load(Ordering::Relaxed);
                match HEALTH_BUCKETS.get(i) {
                    Some(le) => {
                        let _ = writeln!(out, "{name}_bucket{{{label},le=\"{le}\"}} {cumulative}");
                    }
                    None => {
                        let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {cumulative}");
                    }
                }
            }
            let sum = f64::from_bits(h.sum.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_sum{{{label}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{label}}} {cumulative}");
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
