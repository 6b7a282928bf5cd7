//! A real Prometheus scrapes warden's /metrics: the exposition is accepted, the SPEC §6 series
//! are queryable, and `promtool check metrics` finds nothing to complain about.
//! Needs the `prometheus` and `promtool` binaries (Debian package `prometheus`); else a skip.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn have(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Prometheus as a child; killed (and its storage removed) on drop, even when a test panics.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: warden\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Result vector of an instant query, or None while Prometheus is not answering yet.
    fn query(&mut self, q: &str) -> Option<Vec<Value>> {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("prometheus exited: {st}");
        }
        std::net::TcpStream::connect(&self.addr).ok()?;
        let r = request(
            &self.addr,
            "GET",
            &format!("/api/v1/query?query={}", enc(q)),
            &[],
            "",
        );
        let v: Value = serde_json::from_str(&r.body).ok()?;
        (v["status"] == "success")
            .then(|| v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample value of the first series of a result.
fn first_value(result: &[Value]) -> Option<String> {
    result.first()?["value"][1].as_str().map(str::to_string)
}

#[test]
fn prometheus_scrapes_every_spec_metric_and_promtool_accepts_the_text() {
    if !have("prometheus") || !have("promtool") {
        skip(
            "prometheus_scrapes_every_spec_metric_and_promtool_accepts_the_text",
            "prometheus/promtool not installed (apt-get install prometheus)",
        );
        return;
    }
    let port = free_port();
    let kite = KiteSandbox::with().redirect_to_warden(port).start();
    // The program's health check probes warden's own /healthz: a real probe, no extra server.
    let cfg = format!(
        "{}\n[programs.web]\ncommand = [\"sleep\", \"300\"]\n\
         [programs.web.health]\nurl = \"http://127.0.0.1:{port}/healthz\"\n\
         interval = \"200ms\"\ninitial_delay = \"100ms\"\n",
        kite.warden_config(port, "totp", None)
    );
    let w = Warden::start(&cfg);
    w.wait_state("web", "running", T);
    wait_until("token valid", T, || w.status()["token"]["state"] == "valid");

    let mut prom = Prometheus::start(&w.addr);
    let mut up = Vec::new();
    wait_until("prometheus to have scraped warden", T, || {
        up = prom.query(r#"up{job="warden"}"#).unwrap_or_default();
        first_value(&up).as_deref() == Some("1")
    });
    let mut program_up = Vec::new();
    wait_until("warden_program_up in prometheus", T, || {
        program_up = prom.query("warden_program_up").unwrap_or_default();
        !program_up.is_empty()
    });
    assert_eq!(program_up[0]["metric"]["program"], "web", "{program_up:?}");
    assert_eq!(first_value(&program_up).as_deref(), Some("1"));
    let valid = prom.query("warden_token_valid").unwrap();
    assert_eq!(first_value(&valid).as_deref(), Some("1"), "{valid:?}");
    // The other families arrived too (histograms as _bucket/_sum/_count).
    for q in [
        r#"warden_program_state{program="web",state="running"}"#,
        "warden_program_restarts_total",
        r#"warden_health_checks_total{result="ok"} > 0"#,
        "warden_health_check_duration_seconds_count",
        "warden_token_expiry_timestamp_seconds",
        "warden_token_refreshes_total",
        "warden_token_refresh_duration_seconds_count",
        "warden_token_login_attempts_total",
        "warden_config_reloads_total",
        "warden_zombies_reaped_total",
        "warden_build_info",
        "process_resident_memory_bytes",
    ] {
        let r = prom.query(q).unwrap();
        assert!(!r.is_empty(), "{q}: no series in prometheus");
    }

    // promtool lints the very text warden serves.
    let metrics = request(&w.addr, "GET", "/metrics", &[], "").body;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}
