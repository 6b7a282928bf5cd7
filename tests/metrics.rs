//! SPEC §6: names, types and labels of the exposition, and the helpers' effects.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warden::metrics::{Metrics, PROGRAM_STATES};

/// (name, TYPE) for every SPEC §6 metric.
const SPEC: &[(&str, &str)] = &[
    ("warden_program_up", "gauge"),
    ("warden_program_state", "gauge"),
    ("warden_program_restarts_total", "counter"),
    ("warden_health_checks_total", "counter"),
    ("warden_health_check_duration_seconds", "histogram"),
    ("warden_token_valid", "gauge"),
    ("warden_token_expiry_timestamp_seconds", "gauge"),
    ("warden_token_refreshes_total", "counter"),
    ("warden_token_refresh_duration_seconds", "histogram"),
    ("warden_token_login_attempts_total", "counter"),
    ("warden_config_reloads_total", "counter"),
    ("warden_zombies_reaped_total", "counter"),
    ("warden_build_info", "gauge"),
];

/// A metrics instance with one program that has been through a bit of everything.
fn exercised() -> Metrics {
    let m = Metrics::new().for_token("kite");
    m.init_program("backend", true);
    m.set_program_state("backend", "running");
    m.set_program_up("backend", true);
    m.inc_restart("backend", "exit");
    m.observe_health("backend", "ok", 0.012);
    m.set_token_valid(true);
    m.set_token_expiry(Some(1_700_030_400));
    m.inc_refresh("success", "totp");
    m.observe_refresh_duration(3.2);
    m.inc_login_attempt("totp");
    m.inc_config_reload(true);
    m.inc_zombies_reaped();
    m
}

/// The value of the series printed exactly as `series` (name plus labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_spec_metric_has_its_type_and_help() {
    let text = exercised().render();
    for (name, kind) in SPEC {
        assert!(
            text.contains(&format!("\n# TYPE {name} {kind}\n")),
            "missing TYPE for {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "missing {name}");
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(
            &text,
            &format!("warden_build_info{{version=\"{version}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "warden_token_valid{token=\"kite\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "warden_token_expiry_timestamp_seconds{token=\"kite\"}"
        ),
        Some(1_700_030_400.0)
    );
    assert_eq!(value(&text, "warden_zombies_reaped_total"), Some(1.0));
    assert_eq!(
        value(
            &text,
            "warden_token_refreshes_total{result=\"success\",source=\"totp\",token=\"kite\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "warden_health_check_duration_seconds_count{program=\"backend\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "warden_token_refresh_duration_seconds_bucket{token=\"kite\",le=\"5\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn dashboards_see_zeroes_before_anything_happens() {
    let m = Metrics::new().for_token("kite");
    m.init_program("web", false);
    let text = m.render();
    for series in [
        "warden_config_reloads_total{result=\"success\"}",
        "warden_config_reloads_total{result=\"error\"}",
        "warden_token_refreshes_total{result=\"failure\",source=\"totp\",token=\"kite\"}",
        "warden_token_refreshes_total{result=\"success\",source=\"env_file\",token=\"kite\"}",
        "warden_token_login_attempts_total{kind=\"manual\",token=\"kite\"}",
        "warden_notify_failures_total{channel=\"webhook\"}",
        "warden_notify_failures_total{channel=\"telegram\"}",
        "warden_program_restarts_total{program=\"web\",reason=\"unhealthy\"}",
        "warden_program_up{program=\"web\"}",
        "warden_token_valid{token=\"kite\"}",
        "warden_zombies_reaped_total",
    ] {
        assert_eq!(value(&text, series), Some(0.0), "{series}\n{text}");
    }
    // No health check, no probe series.
    assert!(!text.contains("warden_health_checks_total{program=\"web\""));
    m.inc_config_reload(false);
    assert_eq!(
        value(&m.render(), "warden_config_reloads_total{result=\"error\"}"),
        Some(1.0)
    );
}

#[test]
fn set_program_state_flips_exactly_one() {
    let m = Metrics::new();
    for current in PROGRAM_STATES {
        m.set_program_state("backend", current);
        let text = m.render();
        for s in PROGRAM_STATES {
            let series = format!("warden_program_state{{program=\"backend\",state=\"{s}\"}}");
            let want = if s == current { 1.0 } else { 0.0 };
            assert_eq!(
                value(&text, &series),
                Some(want),
                "{series} after {current}"
            );
        }
    }
}

#[test]
fn remove_program_drops_all_its_series() {
    let m = exercised();
    m.init_program("frontend", true);
    m.set_program_state("frontend", "backoff");
    m.inc_restart("frontend", "unhealthy");
    m.observe_health("frontend", "timeout", 2.0);
    m.remove_program("backend");
    let text = m.render();
    assert!(!text.contains("program=\"backend\""), "{text}");
    assert!(text.contains("warden_program_state{program=\"frontend\",state=\"backoff\"} 1"));
    assert!(text.contains("warden_health_check_duration_seconds_count{program=\"frontend\"} 1"));
    // Re-adding starts from zero.
    m.init_program("backend", false);
    assert_eq!(
        value(
            &m.render(),
            "warden_program_restarts_total{program=\"backend\",reason=\"exit\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    m.set_program_up("we\"ird\\name", true);
    assert!(m
        .render()
        .contains(r#"warden_program_up{program="we\"ird\\name"} 1"#));
}

#[test]
fn renders_a_thousand_programs_quickly() {
    let m = Metrics::new();
    for i in 0..1000 {
        let p = format!("program-{i:04}");
        m.init_program(&p, true);
        m.set_program_state(&p, "running");
        m.set_program_up(&p, true);
        m.observe_health(&p, "ok", 0.003);
    }
    m.render();
    let runs = 5;
    let start = Instant::now();
    let mut len = 0;
    for _ in 0..runs {
        len = m.render().len();
    }
    let each = start.elapsed() / runs;
    println!("render of 1000 programs: {each:?}, {len} bytes");
    // The 10 ms budget is for optimised builds; debug builds get headroom.
    let budget = if cfg!(debug_assertions) {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(10)
    };
    assert!(each < budget, "render took {each:?}");
}

/// What promtool checks first, so the format is verified even where promtool is absent: each
/// family declared once (HELP, then TYPE) with its samples contiguous after it, sample names
/// that belong to the family, no duplicate series, and histograms whose buckets are cumulative
/// and end in `+Inf` == `_count`.
#[test]
fn exposition_is_well_formed() {
    let m = exercised();
    m.init_program("frontend", true);
    for s in [0.001, 0.02, 0.3, 7.0] {
        m.observe_health("frontend", "ok", s);
    }
    let text = m.render();
    assert!(text.ends_with('\n'));
    let sample = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (\S+)$"#,
    )
    .unwrap();
    let mut families = std::collections::HashSet::new();
    let mut series = std::collections::HashSet::new();
    let (mut family, mut kind) = (String::new(), String::new());
    let mut last_help = String::new();
    let mut bucket_prev: Option<(String, f64)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            last_help = rest.split(' ').next().unwrap().to_string();
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, k) = rest.split_once(' ').unwrap();
            assert_eq!(name, last_help, "TYPE without HELP: {line}");
            assert!(
                families.insert(name.to_string()),
                "family {name} declared twice"
            );
            family = name.to_string();
            kind = k.to_string();
            continue;
        }
        let caps = sample
            .captures(line)
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let name = &caps[1];
        let value: f64 = caps[caps.len() - 1]
            .replace("+Inf", "inf")
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(
            series.insert(line.rsplit_once(' ').unwrap().0.to_string()),
            "duplicate {line}"
        );
        if kind == "histogram" {
            let suffix = name
                .strip_prefix(family.as_str())
                .unwrap_or_else(|| panic!("{line} outside {family}"));
            assert!(["_bucket", "_sum", "_count"].contains(&suffix), "{line}");
            let labels_wo_le = line
                .split(",le=")
                .next()
                .unwrap()
                .split("{le=")
                .next()
                .unwrap()
                .to_string();
            match suffix {
                "_bucket" => {
                    if let Some((prev_labels, prev)) = &bucket_prev {
                        if *prev_labels == labels_wo_le {
                            assert!(value >= *prev, "buckets not cumulative: {line}");
                        }
                    }
                    bucket_prev = Some((labels_wo_le, value));
                }
                "_count" => {
                    let (_, inf) = bucket_prev.take().expect("buckets before _count");
                    assert_eq!(value, inf, "_count differs from +Inf: {line}");
                }
                _ => {}
            }
        } else {
            assert_eq!(name, family, "sample {line} outside its family");
        }
    }
    assert!(text.contains(
        "warden_health_check_duration_seconds_bucket{program=\"frontend\",le=\"+Inf\"} 4"
    ));
    assert!(text.contains(
        "warden_health_check_duration_seconds_bucket{program=\"frontend\",le=\"0.025\"} 2"
    ));
    assert!(text.contains("warden_health_check_duration_seconds_count{program=\"frontend\"} 4"));
}

#[test]
fn promtool_accepts_the_exposition() {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("WARDEN_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("promtool is not installed and WARDEN_TEST_REQUIRE_ALL=1");
        }
        println!("SKIP promtool: not installed");
        return;
    }
    let text = exercised().render();
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
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
