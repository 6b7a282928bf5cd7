//! The repo's example FastAPI backend (`deploy/examples/app/backend`) under real uvicorn, as a
//! warden program: the closest thing to a user's backend that we ship.
//!
//! `python3 -m uvicorn --app-dir <backend dir> app.main:app` runs in warden's directory (the
//! config's), so `KITE_ENV_FILE = ".env"` is the file warden keeps the token in.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The example backend's directory (holds `requirements.txt` and the `app` package).
pub fn example_backend_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/app/backend")
}

/// A file of `tests/python/`.
pub fn python_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// `Err(why)` unless `python3` can import every one of `modules`; pass the reason to
/// `common::skip`.
pub fn python_modules(modules: &[&str]) -> Result<(), String> {
    let imports = format!("import {}", modules.join(", "));
    let ok = Command::new("python3")
        .args(["-c", &imports])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "python3 cannot `{imports}` (pip install -r {}/requirements.txt)",
            example_backend_dir().display()
        ))
    }
}

/// What the example backend needs: `python_modules(EXAMPLE_BACKEND_MODULES)`.
pub const EXAMPLE_BACKEND_MODULES: &[&str] = &["fastapi", "uvicorn", "watchdog", "kiteconnect"];

/// `[programs.{name}]` running the example backend on `127.0.0.1:{port}` against the Kite API
/// at `kite_url` (a sandbox's `url()`), with `on_token_change = "{on_change}"` and a health
/// check every `interval` that treats the backend's 403 `"auth": "EXPIRED"` as a bad token.
pub fn example_backend_program(
    name: &str,
    port: u16,
    kite_url: &str,
    on_change: &str,
    interval: &str,
) -> String {
    let app_dir = example_backend_dir();
    let app_dir = app_dir.display();
    // The sandbox serves the ticker WebSocket on its API port.
    let ticker_url = kite_url.replacen("http://", "ws://", 1);
    // `watch`: the backend's own env-file watcher is what picks the token up.
    let watch = if on_change == "watch" {
        ", KITE_ENV_WATCH = \"1\""
    } else {
        ""
    };
    format!(
        r#"
[programs.{name}]
command = ["python3", "-m", "uvicorn", "--app-dir", "{app_dir}", "app.main:app", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]
env_file = ".env"
env = {{ PYTHONUNBUFFERED = "1", PYTHONDONTWRITEBYTECODE = "1", KITE_ENV_FILE = ".env", KITE_API_BASE = "{kite_url}", KITE_TICKER_URL = "{ticker_url}", KITE_API_KEY = "kitefront"{watch} }}
on_token_change = "{on_change}"
backoff_initial = "200ms"
[programs.{name}.health]
url = "http://127.0.0.1:{port}/api/system/health"
interval = "{interval}"
timeout = "3s"
initial_delay = "300ms"
failure_threshold = 60
auth_status = [403]
auth_body = '"auth"\s*:\s*"EXPIRED"'
"#
    )
}
