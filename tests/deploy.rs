//! Everything under deploy/, checked by the tools that will consume it: the real `warden check`
//! on every supervisor.toml, `promtool` on the alert rules and their unit tests,
//! `systemd-analyze verify` on the unit, `kubernetes-validate` (offline schemas) on the
//! manifests; plus what no tool checks: files that are referenced exist, metric names are the
//! ones SPEC §6 promises, and the numbers that must agree across files do.
//!
//! YAML is read through `python3 -c 'import yaml'` (PyPI pyyaml) and converted to JSON here.
//! A missing tool skips its test, or fails it under WARDEN_TEST_REQUIRE_ALL=1 (CI).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{skip, BIN};
use serde_json::Value;

/// SPEC §6, exactly. `true` marks histograms (their series end in _bucket, _sum, _count).
const SPEC_METRICS: [(&str, bool); 16] = [
    ("warden_program_up", false),
    ("warden_program_state", false),
    ("warden_program_restarts_total", false),
    ("warden_health_checks_total", false),
    ("warden_health_check_duration_seconds", true),
    ("warden_token_valid", false),
    ("warden_token_expiry_timestamp_seconds", false),
    ("warden_token_refreshes_total", false),
    ("warden_token_refresh_duration_seconds", true),
    ("warden_token_login_attempts_total", false),
    ("warden_config_reloads_total", false),
    ("warden_zombies_reaped_total", false),
    ("warden_build_info", false),
    // Market hours (issue 16; docs/metrics.md).
    ("warden_market_open", false),
    ("warden_market_next_open_timestamp_seconds", false),
    ("warden_token_invalid_market_seconds_total", false),
];

/// Secret files the configs may reference; `warden check` gets a dummy for each.
const SECRET_FILES: &[&str] = &[
    "warden_api_token",
    "fyers_secret_key",
    "kite_api_secret",
    "upstox_api_secret",
    "kite_password",
    "kite_totp_secret",
    "webhook_url",
    "redis_password",
    "dhan_pin",
    "dhan_totp_secret",
    "dhan_app_secret",
    "angelone_pin",
    "angelone_totp_secret",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// True when `tool` can be started (it answers `args`).
fn tool_works(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn have_pyyaml() -> bool {
    tool_works("python3", &["-c", "import yaml"])
}

/// Every YAML document in `path`, as JSON. None (after a visible skip) without pyyaml.
fn yaml_docs(test: &str, path: &Path) -> Option<Vec<Value>> {
    if !have_pyyaml() {
        skip(
            test,
            "python3 with pyyaml is not installed (pip install pyyaml)",
        );
        return None;
    }
    let out = run(Command::new("python3").arg("-c").arg(
        "import sys, json, yaml\n\
         with open(sys.argv[1]) as f:\n    docs = [d for d in yaml.safe_load_all(f) if d is not None]\n\
         json.dump(docs, sys.stdout)",
    ).arg(path));
    assert!(
        out.status.success(),
        "{} is not valid YAML:\n{}",
        path.display(),
        output_text(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(v.as_array().unwrap().clone())
}

fn yaml_doc(test: &str, path: &Path) -> Option<Value> {
    let docs = yaml_docs(test, path)?;
    assert_eq!(docs.len(), 1, "{}: expected one document", path.display());
    docs.into_iter().next()
}

/// Files under `dir` (recursively) whose name ends with `suffix`, skipping build output.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                if !matches!(name.as_str(), "node_modules" | ".next" | "__pycache__") {
                    todo.push(p);
                }
            } else if name.ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `${VAR:-default}` → default (what compose uses when VAR is unset); anything else as is.
fn compose_default(s: &str) -> String {
    match s
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .and_then(|r| r.split_once(":-"))
    {
        Some((_, default)) => default.to_string(),
        None => s.to_string(),
    }
}

fn toml_duration(doc: &toml::Value, section: &str, key: &str) -> Duration {
    let s = doc[section][key]
        .as_str()
        .unwrap_or_else(|| panic!("{section}.{key} missing"));
    humantime::parse_duration(s).unwrap()
}

// ---- metric names ----

/// Every `warden_*` identifier in a PromQL expression.
fn warden_metrics_in(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\bwarden_[a-z_]+").unwrap();
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

/// The SPEC metric a series name belongs to, if any.
fn spec_metric(series: &str) -> Option<&'static str> {
    SPEC_METRICS.iter().find_map(|(name, histogram)| {
        let hit = series == *name
            || (*histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| series.strip_suffix(s) == Some(name)));
        hit.then_some(*name)
    })
}

#[test]
fn spec_metric_list_matches_docs_metrics_md() {
    let doc = read(&repo().join("docs/metrics.md"));
    for (name, _) in SPEC_METRICS {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "{name} missing from docs/metrics.md"
        );
    }
    assert_eq!(
        spec_metric("warden_health_check_duration_seconds_bucket"),
        Some("warden_health_check_duration_seconds")
    );
    assert_eq!(spec_metric("warden_token_valid_bucket"), None);
    assert_eq!(spec_metric("warden_token_invalid"), None);
}

// ---- supervisor.toml ----

/// Every supervisor.toml under deploy/, including the one inside the Kubernetes ConfigMap,
/// as (name, text).
fn all_configs(test: &str) -> Option<Vec<(String, String)>> {
    let mut configs: Vec<(String, String)> = files_ending(&deploy(), ".toml")
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(repo()).unwrap().display().to_string();
            (name, read(&p))
        })
        .collect();
    let cm = yaml_doc(test, &deploy().join("kubernetes/configmap.yaml"))?;
    let toml = cm["data"]["supervisor.toml"]
        .as_str()
        .expect("the ConfigMap has data.supervisor.toml")
        .to_string();
    configs.push((
        "deploy/kubernetes/configmap.yaml#supervisor.toml".into(),
        toml,
    ));
    Some(configs)
}

#[test]
fn every_supervisor_toml_passes_warden_check() {
    let test = "every_supervisor_toml_passes_warden_check";
    let Some(configs) = all_configs(test) else {
        return;
    };
    assert!(configs.len() >= 4, "found only {configs:?}");
    let creds = tempfile::tempdir().unwrap();
    for name in SECRET_FILES {
        // A TOTP secret must be base32 to pass the check.
        let dummy = if name.ends_with("totp_secret") {
            "JBSWY3DPEHPK3PXP"
        } else {
            "dummy-value"
        };
        std::fs::write(creds.path().join(name), format!("{dummy}\n")).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    for (i, (name, text)) in configs.iter().enumerate() {
        // Where the file sits matters only for relative paths, which `check` does not open.
        let path = work.path().join(format!("{i}-supervisor.toml"));
        std::fs::write(&path, text).unwrap();
        // A clean environment: only what the docs tell the user to set.
        let out = run(Command::new(BIN)
            .arg("check")
            .arg("-c")
            .arg(&path)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CREDENTIALS_DIRECTORY", creds.path())
            .env("KITE_API_KEY", "dummy_api_key")
            .env("KITE_USER_ID", "AB1234")
            .env("FYERS_APP_ID", "XXXX-100")
            .env("FYERS_USER_ID", "XF01234")
            .env("DHAN_CLIENT_ID", "1100001234")
            .env("UPSTOX_API_KEY", "dummy_upstox_key")
            .env("UPSTOX_USER_ID", "UX1234")
            .env("ANGELONE_API_KEY", "dummy_api_key")
            .env("ANGELONE_CLIENT_CODE", "S123456"));
        assert!(
            out.status.success(),
            "warden check {name}:\n{}",
            output_text(&out)
        );

        // Secrets come from files, never from the config or the environment.
        for key in ["api_secret", "password", "totp_secret", "api_token"] {
            let inline = regex::Regex::new(&format!(r"(?m)^\s*{key}\s*=")).unwrap();
            assert!(
                !inline.is_match(text),
                "{name}: {key} is given inline; use {key}_file"
            );
        }
    }
}

#[test]
fn a_broken_supervisor_toml_fails_warden_check() {
    // The check above can fail: the same harness on a config with a typo.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("supervisor.toml");
    let mut text = read(&deploy().join("examples/supervisor.toml"));
    text = text.replace("on_token_change = \"none\"", "on_token_chnage = \"none\"");
    std::fs::write(&path, text).unwrap();
    let no_secrets = tempfile::tempdir().unwrap();
    let out = run(Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(&path)
        .env_clear()
        .env("CREDENTIALS_DIRECTORY", no_secrets.path())
        .env("KITE_API_KEY", "k")
        .env("KITE_USER_ID", "AB1234"));
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let msg = output_text(&out);
    assert!(msg.contains("programs.frontend.on_token_chnage"), "{msg}");
    assert!(
        msg.contains("warden_api_token"),
        "missing secret file not reported: {msg}"
    );
}

// ---- Docker ----

/// Dockerfile instructions with continuation lines joined and comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') && cur.is_empty() || t.is_empty() {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            cur.push_str(part);
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

#[test]
fn dockerfile_copy_sources_exist_and_warden_is_pid1_as_non_root() {
    let text = read(&deploy().join("Dockerfile"));
    let ignore = read(&deploy().join("Dockerfile.dockerignore"));
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .collect();
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        "the .dockerignore should be an allowlist (target/ is gigabytes)"
    );

    let mut stages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    let mut app_dir: Option<PathBuf> = None;
    let mut copies = 0;
    for ins in dockerfile_instructions(&text) {
        let (op, rest) = ins.split_once(' ').unwrap_or((&ins, ""));
        match op.to_ascii_uppercase().as_str() {
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                current = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                    _ => format!("stage{}", stages.len()),
                };
                stages.insert(current.clone(), vec![ins.clone()]);
            }
            "COPY" => {
                copies += 1;
                let words: Vec<&str> = rest.split_whitespace().collect();
                let from = words
                    .iter()
                    .find_map(|w| w.strip_prefix("--from="))
                    .map(str::to_string);
                let args: Vec<&str> = words
                    .iter()
                    .filter(|w| !w.starts_with("--"))
                    .copied()
                    .collect();
                let (sources, _dest) = args.split_at(args.len() - 1);
                assert!(!sources.is_empty(), "COPY without a source: {ins}");
                match from.as_deref() {
                    None => {
                        for s in sources {
                            let p = repo().join(s);
                            assert!(p.exists(), "COPY source {s} does not exist ({ins})");
                            assert!(
                                allowed.iter().any(|a| s
                                    .trim_end_matches('/')
                                    .starts_with(a.trim_end_matches('/'))),
                                "COPY source {s} is excluded by Dockerfile.dockerignore"
                            );
                            if current == "app" {
                                app_dir = Some(p);
                            }
                        }
                    }
                    Some("app") => {
                        let base = app_dir
                            .as_ref()
                            .expect("the app stage is defined before it is used");
                        for s in sources {
                            assert!(
                                base.join(s).exists(),
                                "COPY --from=app {s}: not in the default app {}",
                                base.display()
                            );
                        }
                    }
                    Some(stage) => assert!(
                        stages.contains_key(stage),
                        "COPY --from={stage}: no such stage"
                    ),
                }
            }
            _ => {}
        }
        if let Some(s) = stages.get_mut(&current) {
            if !ins.starts_with("FROM") {
                s.push(ins.clone());
            }
        }
    }
    assert!(copies >= 8, "parsed only {copies} COPY instructions");
    assert!(app_dir.is_some(), "no default `app` stage");

    // The runtime stages: warden is the exec-form ENTRYPOINT (so it is PID 1), runs as a
    // non-root user, and the health check asks /healthz.
    let warden = &stages["warden"];
    let has = |stage: &[String], prefix: &str| -> Vec<String> {
        stage
            .iter()
            .filter(|i| i.starts_with(prefix))
            .cloned()
            .collect()
    };
    assert_eq!(
        has(warden, "ENTRYPOINT"),
        vec!["ENTRYPOINT [\"/usr/local/bin/warden\"]".to_string()]
    );
    assert!(has(warden, "HEALTHCHECK")[0].contains("/healthz"));
    assert!(stages["stack"][0].contains("FROM warden AS stack"));
    for stage in ["warden", "stack"] {
        let user = has(&stages[stage], "USER");
        assert_eq!(
            user.last().map(String::as_str),
            Some("USER warden"),
            "stage {stage} must end as the warden user"
        );
    }
    // The stack stage installs the example config where WARDEN_CONFIG points.
    assert!(has(warden, "ENV WARDEN_CONFIG=/etc/warden/supervisor.toml").len() == 1);
    assert!(
        has(&stages["stack"], "COPY deploy/examples/supervisor.toml")
            .iter()
            .any(|c| c.ends_with("/etc/warden/"))
    );
}

#[test]
fn dockerfile_builds_the_lean_binary_without_the_sandbox() {
    let text = read(&deploy().join("Dockerfile"));
    let builds: Vec<String> = dockerfile_instructions(&text)
        .into_iter()
        .filter(|i| i.starts_with("RUN") && i.contains("deploy/build.sh"))
        .collect();
    assert_eq!(
        builds.len(),
        1,
        "expected one RUN of deploy/build.sh: {builds:?}"
    );
    // Every cargo invocation of the build script builds the lean release binary.
    let script = read(&deploy().join("build.sh"));
    let mut joined = String::new();
    let mut cargo_calls = Vec::new();
    for line in script
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
    {
        if let Some(part) = line.strip_suffix('\\') {
            joined.push_str(part);
            continue;
        }
        joined.push_str(line);
        let call = std::mem::take(&mut joined);
        if call.contains("cargo ") {
            cargo_calls.push(call);
        }
    }
    assert!(cargo_calls.len() >= 2, "deploy/build.sh: {cargo_calls:?}");
    for call in &cargo_calls {
        let words: Vec<&str> = call.split_whitespace().collect();
        for flag in ["--release", "--locked", "--no-default-features"] {
            assert!(
                words.contains(&flag),
                "deploy/build.sh: `{call}` lacks {flag}"
            );
        }
        // Turning a feature back on would put the sandbox in again.
        assert!(
            !words
                .iter()
                .any(|w| w.starts_with("--features") || *w == "-F"),
            "deploy/build.sh enables features: {call}"
        );
    }
}

#[test]
fn compose_parses_and_references_files_that_exist() {
    let test = "compose_parses_and_references_files_that_exist";
    let Some(compose) = yaml_doc(test, &deploy().join("docker-compose.yml")) else {
        return;
    };
    let base = deploy();
    let services = compose["services"].as_object().unwrap();
    let stack = &services["stack"];

    let build = &stack["build"];
    let context = base.join(build["context"].as_str().unwrap());
    assert!(
        context
            .join(build["dockerfile"].as_str().unwrap())
            .is_file(),
        "build.dockerfile not found from build.context"
    );
    assert_eq!(build["target"], "stack");
    let app = base.join(compose_default(
        build["additional_contexts"]["app"].as_str().unwrap(),
    ));
    for f in [
        "backend/requirements.txt",
        "frontend/package.json",
        "frontend/package-lock.json",
    ] {
        assert!(app.join(f).is_file(), "default app lacks {f}");
    }

    // Bind mounts and secret files: in the repo, or created by the user in a git-ignored place.
    for (name, svc) in services {
        for v in svc["volumes"].as_array().into_iter().flatten() {
            let spec = v.as_str().unwrap();
            let source = spec.split(':').next().unwrap();
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    base.join(source).exists(),
                    "{name}: volume source {source} does not exist"
                );
            } else {
                assert!(
                    compose["volumes"].get(source).is_some(),
                    "{name}: named volume {source} is not declared"
                );
            }
        }
        for s in svc["secrets"].as_array().into_iter().flatten() {
            let s = s.as_str().unwrap();
            assert!(
                compose["secrets"][s]["file"].is_string(),
                "{name}: secret {s} not declared with a file"
            );
        }
    }
    for (s, def) in compose["secrets"].as_object().unwrap() {
        let file = base.join(def["file"].as_str().unwrap());
        let dir = file.parent().unwrap();
        let ignore = read(&dir.join(".gitignore"));
        assert!(
            ignore.lines().any(|l| l.trim() == "*"),
            "secret {s}: {} must be git-ignored",
            dir.display()
        );
        assert!(SECRET_FILES.contains(&s.as_str()), "unknown secret {s}");
    }
    // `.env` is the user's copy of examples/.env.example.
    assert_eq!(stack["env_file"], ".env");
    assert!(base.join("examples/.env.example").is_file());
    let gitignore = read(&repo().join(".gitignore"));
    assert!(gitignore.lines().any(|l| l.trim() == ".env"));

    // warden is PID 1 (no extra init) and gets time for its ordered stop.
    assert_ne!(stack["init"], true);
    let grace = humantime::parse_duration(stack["stop_grace_period"].as_str().unwrap()).unwrap();
    let cfg: toml::Value = read(&base.join("examples/supervisor.toml"))
        .parse()
        .unwrap();
    let shutdown = toml_duration(&cfg, "supervisor", "shutdown_timeout");
    assert!(
        grace > shutdown,
        "stop_grace_period {grace:?} must exceed shutdown_timeout {shutdown:?}"
    );
    // warden's API is not published beyond the host.
    let ports: Vec<&str> = stack["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(ports.contains(&"127.0.0.1:9180:9180"), "{ports:?}");

    // Prometheus scrapes the stack service as job "warden" (the alerts select on it) and loads
    // the rules from the directory compose mounts.
    let prom = yaml_doc(test, &base.join("prometheus/prometheus.yml")).unwrap();
    let job = &prom["scrape_configs"][0];
    assert_eq!(job["job_name"], "warden");
    let target = job["static_configs"][0]["targets"][0].as_str().unwrap();
    let (host, port) = target.split_once(':').unwrap();
    assert!(services.contains_key(host), "scrape target {target}");
    assert_eq!(port, "9180");
    for rule_file in prom["rule_files"].as_array().unwrap() {
        assert!(base
            .join("prometheus")
            .join(rule_file.as_str().unwrap())
            .is_file());
    }
}

// ---- Prometheus ----

fn have_promtool(test: &str) -> bool {
    if tool_works("promtool", &["--version"]) {
        true
    } else {
        skip(
            test,
            "promtool is not installed (Debian: apt-get install prometheus)",
        );
        false
    }
}

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    let test = "prometheus_config_and_rules_pass_promtool";
    if !have_promtool(test) {
        return;
    }
    let dir = deploy().join("prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["check", "config", "prometheus.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = run(Command::new("promtool").args(&args).current_dir(&dir));
        assert!(
            out.status.success(),
            "promtool {}:\n{}",
            args.join(" "),
            output_text(&out)
        );
    }
}

#[test]
fn every_alert_has_firing_and_quiet_unit_tests_and_uses_spec_metrics() {
    let test = "every_alert_has_firing_and_quiet_unit_tests_and_uses_spec_metrics";
    let dir = deploy().join("prometheus");
    let (Some(rules), Some(tests)) = (
        yaml_doc(test, &dir.join("alerts.yml")),
        yaml_doc(test, &dir.join("alerts_test.yml")),
    ) else {
        return;
    };
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().expect("only alerting rules here");
            let expr = rule["expr"].as_str().unwrap();
            for m in warden_metrics_in(expr) {
                assert!(
                    spec_metric(&m).is_some(),
                    "{name}: {m} is not a SPEC §6 metric"
                );
            }
            assert!(
                rule["labels"]["severity"].is_string(),
                "{name} has no severity"
            );
            assert!(alerts.insert(name.to_string()), "duplicate alert {name}");
        }
    }
    let wanted = [
        "WardenTokenInvalidDuringMarketHours",
        "WardenLoginNeededBeforeMarketOpen",
        "WardenTokenRefreshFailing",
        "WardenProgramFatal",
        "WardenProgramFlapping",
        "WardenDown",
    ];
    for w in wanted {
        assert!(alerts.contains(w), "missing alert {w}");
    }

    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in tests["tests"].as_array().unwrap() {
        for case in t["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_string();
            assert!(alerts.contains(&name), "test for unknown alert {name}");
            let fires = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            if fires {
                firing.insert(name);
            } else {
                quiet.insert(name);
            }
        }
        for s in t["input_series"].as_array().into_iter().flatten() {
            let series = s["series"].as_str().unwrap();
            for m in warden_metrics_in(series) {
                assert!(spec_metric(&m).is_some(), "test series uses {m}");
            }
        }
    }
    for a in &alerts {
        assert!(firing.contains(a), "no unit test where {a} fires");
        assert!(quiet.contains(a), "no unit test where {a} stays quiet");
    }
}

// ---- Grafana ----

fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

#[test]
fn grafana_dashboard_imports_cleanly_and_uses_only_spec_metrics() {
    let path = deploy().join("grafana/warden.json");
    let dash: Value = serde_json::from_str(&read(&path)).expect("valid JSON");
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 30);
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "DS_PROMETHEUS")
        .expect("a DS_PROMETHEUS variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");

    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    let mut used = BTreeSet::new();
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "{title}: gridPos.{k}");
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = t["expr"].as_str().unwrap();
            for m in warden_metrics_in(expr) {
                let spec = spec_metric(&m)
                    .unwrap_or_else(|| panic!("{title}: {m} is not a SPEC §6 metric"));
                used.insert(spec);
            }
            exprs.push((format!("{title}/{}", t["refId"]), expr.to_string()));
        }
    }
    for (name, _) in SPEC_METRICS {
        assert!(used.contains(name), "no panel shows {name}");
    }

    // Every query is valid PromQL: promtool parses them as recording rules, with Grafana's
    // variables replaced by what they expand to.
    let test = "grafana_dashboard_imports_cleanly_and_uses_only_spec_metrics";
    if !have_promtool(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in exprs.iter().enumerate() {
        let e = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let file = dir.path().join("dashboard_rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = run(Command::new("promtool").args(["check", "rules"]).arg(&file));
    assert!(
        out.status.success(),
        "dashboard queries are not valid PromQL:\n{}\n{exprs:#?}",
        output_text(&out)
    );
}

// ---- systemd ----

/// `systemd-analyze verify` on a copy of the unit whose ExecStart points at the built binary.
/// verify exits 0 even for unknown keys and unparsable values, so any line it prints about
/// the unit counts as a failure.
fn verify_unit(unit_text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.service");
    std::fs::write(&path, unit_text.replace("/usr/local/bin/warden", BIN)).unwrap();
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("SYSTEMD_LOG_LEVEL", "notice"));
    let all = output_text(&out);
    let about_us: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("warden.service") || l.contains(dir.path().to_str().unwrap()))
        .collect();
    (out.status.success() && about_us.is_empty(), all.to_string())
}

fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let test = "systemd_unit_passes_systemd_analyze_verify";
    if !tool_works("systemd-analyze", &["--version"]) {
        skip(
            test,
            "systemd-analyze is not installed (Debian: apt-get install systemd)",
        );
        return;
    }
    let unit = read(&deploy().join("systemd/warden.service"));
    let (ok, out) = verify_unit(&unit);
    assert!(ok, "systemd-analyze verify:\n{out}");

    // The check can fail: a typo in a value is reported.
    let (ok, out) = verify_unit(&unit.replace("Type=notify", "Type=notifyy"));
    assert!(!ok, "a broken unit passed verify:\n{out}");

    // What the sdnotify module and the config rely on.
    assert_eq!(unit_values(&unit, "Type"), ["notify"]);
    assert_eq!(unit_values(&unit, "NotifyAccess"), ["main"]);
    assert_eq!(unit_values(&unit, "KillMode"), ["mixed"]);
    assert_eq!(unit_values(&unit, "ProtectSystem"), ["strict"]);
    assert!(!unit_values(&unit, "WatchdogSec").is_empty());
    assert!(!unit_values(&unit, "ReadWritePaths").is_empty());
    assert!(!unit_values(&unit, "StateDirectory").is_empty());
    for key in [
        "NoNewPrivileges",
        "PrivateTmp",
        "ProtectHome",
        "RestrictSUIDSGID",
    ] {
        assert_eq!(unit_values(&unit, key), ["yes"], "{key}");
    }
    let exec = unit_values(&unit, "ExecStart")[0];
    let config = exec.rsplit(' ').next().unwrap();
    assert!(exec.contains(" run -c "), "{exec}");
    // The unit's config is deploy/systemd/supervisor.toml installed at that path; its app
    // directory is writable and its shutdown fits in TimeoutStopSec.
    let app_dir = Path::new(config).parent().unwrap().to_str().unwrap();
    assert!(
        unit_values(&unit, "ReadWritePaths")
            .iter()
            .any(|p| p.split_whitespace().any(|d| d == app_dir)),
        "ReadWritePaths must include {app_dir} (the env file is rewritten there)"
    );
    let cfg: toml::Value = read(&deploy().join("systemd/supervisor.toml"))
        .parse()
        .unwrap();
    let shutdown = toml_duration(&cfg, "supervisor", "shutdown_timeout");
    let stop = humantime::parse_duration(unit_values(&unit, "TimeoutStopSec")[0]).unwrap();
    assert!(stop > shutdown, "TimeoutStopSec {stop:?} ≤ {shutdown:?}");
    for cred in unit_values(&unit, "LoadCredential") {
        let name = cred.split(':').next().unwrap();
        assert!(SECRET_FILES.contains(&name), "unknown credential {name}");
    }
}

// ---- Kubernetes ----

fn k8s_dir() -> PathBuf {
    deploy().join("kubernetes")
}

/// The manifests of built-in kinds (validated against the bundled schemas).
fn core_manifests() -> Vec<PathBuf> {
    files_ending(&k8s_dir(), ".yaml")
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n != "kustomization.yaml" && n != "servicemonitor.yaml"
        })
        .collect()
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let test = "kubernetes_manifests_validate_against_the_schemas";
    if !tool_works("python3", &["-m", "kubernetes_validate", "--version"]) {
        skip(
            test,
            "the kubernetes_validate Python module is not installed (pip install kubernetes-validate)",
        );
        return;
    }
    let files = core_manifests();
    assert!(files.len() >= 6, "{files:?}");
    // --strict rejects unknown fields; the schemas ship inside the package (no network).
    let out = run(Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(&files));
    let report = output_text(&out);
    assert!(out.status.success(), "kubernetes-validate:\n{report}");
    assert!(
        !report.contains("ERROR") && !report.contains("WARN"),
        "{report}"
    );

    // And it does reject a broken manifest.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        read(&k8s_dir().join("deployment.yaml")).replace("replicas: 1", "replicas: one"),
    )
    .unwrap();
    let out = run(Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .arg(&bad));
    assert!(!out.status.success(), "a broken Deployment validated");
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn kubernetes_manifests_agree_with_each_other_and_the_config() {
    let test = "kubernetes_manifests_agree_with_each_other_and_the_config";
    let Some(kustomization) = yaml_doc(test, &k8s_dir().join("kustomization.yaml")) else {
        return;
    };
    let mut docs = Vec::new();
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    for f in core_manifests() {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        // The Secret is created once by hand: re-applying the kustomization must not reset it.
        assert_eq!(
            listed.contains(&name),
            name != "secret.yaml",
            "kustomization.yaml and {name}"
        );
        docs.extend(yaml_docs(test, &f).unwrap());
    }
    for r in &listed {
        assert!(
            k8s_dir().join(r).is_file(),
            "kustomization lists missing {r}"
        );
    }

    let deployment = find(&docs, "Deployment", "trading-stack");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1, "one token per api_key: one replica");
    assert_eq!(spec["strategy"]["type"], "Recreate");
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let port_of = |name: &str| -> u64 {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    for probe in ["livenessProbe", "readinessProbe"] {
        let port = c[probe]["httpGet"]["port"].as_str().unwrap();
        port_of(port);
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    // The config inside the ConfigMap: listen port, shutdown budget, secret files.
    let cm = find(&docs, "ConfigMap", "warden-config");
    let toml_text = cm["data"]["supervisor.toml"].as_str().unwrap();
    let cfg: toml::Value = toml_text.parse().unwrap();
    let listen = cfg["http"]["listen"].as_str().unwrap();
    let listen_port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(port_of("warden"), listen_port);
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], listen_port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let shutdown = toml_duration(&cfg, "supervisor", "shutdown_timeout");
    assert!(Duration::from_secs(grace) > shutdown);

    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |path: &str| -> String {
        mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .and_then(|m| m["name"].as_str())
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))
            .to_string()
    };
    let volume = |name: &str| -> &Value {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
    };
    let config_vol = volume(&mount("/etc/warden"));
    assert_eq!(config_vol["configMap"]["name"], "warden-config");
    let secret_vol = volume(&mount("/run/secrets"));
    let secret_name = secret_vol["secret"]["secretName"].as_str().unwrap();
    let secret = find(&docs, "Secret", secret_name);
    let state = cfg["supervisor"]["state_dir"].as_str().unwrap();
    assert!(volume(&mount(state))["persistentVolumeClaim"].is_object());
    // Every secret file the config uses (outside comments) is a key of the Secret.
    let used = regex::Regex::new(
        r#"(?m)^[^#\n]*_file = "\$\{CREDENTIALS_DIRECTORY:-/run/secrets\}/([a-z_]+)""#,
    )
    .unwrap();
    let mut n = 0;
    for cap in used.captures_iter(toml_text) {
        n += 1;
        assert!(
            secret["stringData"].get(&cap[1]).is_some(),
            "Secret {secret_name} lacks {}",
            &cap[1]
        );
    }
    assert!(n >= 2, "the config reads its secrets from /run/secrets");

    // Services: the app one follows readiness, the warden one must not (login and scrapes
    // have to work exactly when the token is bad). The ServiceMonitor selects the latter.
    let pod_labels = &spec["template"]["metadata"]["labels"];
    for name in ["trading", "warden"] {
        let svc = find(&docs, "Service", name);
        for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&pod_labels[k], v, "Service {name} does not select the pod");
        }
        for p in svc["spec"]["ports"].as_array().unwrap() {
            port_of(p["targetPort"].as_str().unwrap());
        }
    }
    let warden_svc = find(&docs, "Service", "warden");
    assert_eq!(warden_svc["spec"]["publishNotReadyAddresses"], true);
    let sm = yaml_doc(test, &k8s_dir().join("servicemonitor.yaml")).unwrap();
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["kind"], "ServiceMonitor");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &warden_svc["metadata"]["labels"][k], v,
            "ServiceMonitor selector {k}"
        );
    }
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert!(warden_svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == endpoint["port"]));
}
