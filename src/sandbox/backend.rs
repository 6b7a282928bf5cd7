//! `warden sandbox backend`: the demo child of SPEC §8, standing in for a FastAPI backend.
//!
//! It reads the access token from a dotenv file at start and on SIGHUP, and answers
//! `GET /api/system/health` by asking Kite (`GET {kite}/user/profile`) on every call:
//! - 200 `{"status":"ok","auth":"VALID"}` while Kite accepts the token;
//! - 403 `{"status":"error","auth":"EXPIRED"}` when there is no token or Kite refuses it
//!   (TokenException, or any other non-transient refusal);
//! - 503 `{"status":"error","auth":"UNKNOWN"}` when Kite is unreachable, slow, rate-limits
//!   (429) or fails (5xx): a broker outage is not an auth failure, and a supervisor must not
//!   burn a login on it.
//!
//! It never spawns or waits for processes: under warden, the supervisor owns `waitpid`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::kite::DEFAULT_API_KEY;
use super::{parse_duration, say, termination, SandboxError};
use crate::config::{KiteConfig, Secret};
use crate::token::kite::{ErrorClass, KiteClient};

/// Command-line options of `warden sandbox backend`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Address to listen on (port 0 picks a free port; the real one is printed)
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// The dotenv file holding the token (read at start and on SIGHUP)
    #[arg(long, default_value = ".env")]
    pub env_file: PathBuf,
    /// The variable in that file that holds the access token
    #[arg(long, default_value = "KITE_ACCESS_TOKEN")]
    pub env_key: String,
    /// Kite's API base URL
    #[arg(long, default_value = "http://127.0.0.1:9190")]
    pub kite: String,
    /// api_key for the Authorization header [default: KITE_API_KEY from the env file, else
    /// from the environment, else the sandbox's demo key]
    #[arg(long)]
    pub api_key: Option<String>,
    /// How long to wait for Kite before answering 503 (keep it below the probe's timeout)
    #[arg(long, default_value = "1500ms", value_parser = parse_duration)]
    pub kite_timeout: Duration,
}

/// What was read from the env file.
struct Loaded {
    token: Option<Secret>,
    client: Arc<KiteClient>,
}

struct App {
    args: BackendArgs,
    loaded: RwLock<Loaded>,
    reloads: AtomicU64,
}

impl App {
    fn load(&self) -> bool {
        let loaded = load(&self.args);
        let present = loaded.token.is_some();
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        present
    }
}

/// `KEY=VALUE` lines; `export `, quotes and `#` comments handled like docker-compose and
/// python-dotenv do for the simple cases. A missing file is an empty one.
fn read_env_file(path: &Path) -> HashMap<String, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("cannot read {}: {e}", path.display());
            }
            return HashMap::new();
        }
    };
    text.lines().filter_map(parse_env_line).collect()
}

fn parse_env_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (key, value) = line.split_once('=')?;
    let value = value.trim();
    let value = match value.chars().next() {
        Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or(""),
        _ => value.split(" #").next().unwrap_or("").trim_end(),
    };
    Some((key.trim().to_string(), value.to_string()))
}

fn load(args: &BackendArgs) -> Loaded {
    let vars = read_env_file(&args.env_file);
    let token = vars
        .get(&args.env_key)
        .filter(|t| !t.is_empty())
        .map(|t| Secret::new(t.clone()));
    let api_key = args
        .api_key
        .clone()
        .or_else(|| vars.get("KITE_API_KEY").cloned())
        .or_else(|| std::env::var("KITE_API_KEY").ok())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| DEFAULT_API_KEY.to_string());
    let cfg = KiteConfig {
        api_key,
        api_base: args.kite.clone(),
        ..KiteConfig::default()
    };
    Loaded {
        token,
        client: Arc::new(KiteClient::new(&cfg).with_timeout(args.kite_timeout)),
    }
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let (token, client) = {
        let l = app.loaded.read().unwrap_or_else(|p| p.into_inner());
        (l.token.clone(), l.client.clone())
    };
    let expired = |detail: String| {
        let body = json!({"status": "error", "auth": "EXPIRED", "detail": detail});
        (StatusCode::FORBIDDEN, Json(body)).into_response()
    };
    let Some(token) = token else {
        return expired(format!("no {} in the env file", app.args.env_key));
    };
    match client.profile(&token).await {
        Ok(_) => Json(json!({"status": "ok", "auth": "VALID"})).into_response(),
        Err(e) if e.class() == ErrorClass::Transient => {
            let body = json!({"status": "error", "auth": "UNKNOWN", "detail": e.to_string()});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(e) => expired(e.to_string()),
    }
}

async fn info(State(app): State<Arc<App>>) -> Response {
    Json(json!({
        "pid": std::process::id(),
        "token_reloads": app.reloads.load(Ordering::SeqCst),
    }))
    .into_response()
}

/// `warden sandbox backend`: serve until SIGTERM/SIGINT, then exit 0.
pub async fn run(args: BackendArgs) -> Result<(), SandboxError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a SIGHUP that lands before they exist would kill the process.
    let mut hup = signal(SignalKind::hangup()).map_err(SandboxError::Signal)?;
    let stop = termination()?;

    let app = Arc::new(App {
        loaded: RwLock::new(load(&args)),
        reloads: AtomicU64::new(0),
        args,
    });
    let listener = tokio::net::TcpListener::bind(app.args.listen)
        .await
        .map_err(|source| SandboxError::Bind {
            addr: app.args.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(SandboxError::Serve)?;
    let present = app
        .loaded
        .read()
        .map(|l| l.token.is_some())
        .unwrap_or(false);
    say(&[
        format!("listening on http://{addr}"),
        format!(
            "token {} in {}",
            if present { "loaded" } else { "absent" },
            app.args.env_file.display()
        ),
    ]);

    let reloader = app.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let present = reloader.load();
            reloader.reloads.fetch_add(1, Ordering::SeqCst);
            say(&[format!(
                "token reloaded ({})",
                if present { "present" } else { "absent" }
            )]);
        }
    });

    let router = Router::new()
        .route("/api/system/health", get(health))
        .route("/api/system/info", get(info))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
        .map_err(SandboxError::Serve)
}

#[cfg(test)]
mod tests {
    use super::parse_env_line as p;

    #[test]
    fn env_lines() {
        let kv = |k: &str, v: &str| Some((k.to_string(), v.to_string()));
        assert_eq!(p("KITE_ACCESS_TOKEN=abc"), kv("KITE_ACCESS_TOKEN", "abc"));
        assert_eq!(p("export A = \"x y\" # c"), kv("A", "x y"));
        assert_eq!(p("A='q'"), kv("A", "q"));
        assert_eq!(p("A=v # comment"), kv("A", "v"));
        assert_eq!(p("A="), kv("A", ""));
        assert_eq!(p("# A=b"), None);
        assert_eq!(p("junk"), None);
    }
}
