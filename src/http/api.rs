//! `/healthz`, `/readyz` and `/api/v1/*`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::oneshot;

use super::page::{health_str, token_state_str};
use super::{AppState, Request};
use crate::program::ProgramState;
use crate::supervisor::{Health, ProgramStatus};
use crate::token::keeper::TokenState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/programs/{name}/restart", post(restart))
        .route("/api/v1/token/refresh", post(refresh))
        .route("/api/v1/token/unblock", post(unblock))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(st): State<AppState>) -> Response {
    let token = st.keeper.as_ref().map(|k| k.status.borrow().state);
    let programs = st.programs.borrow().clone();
    let not_ready: Vec<_> = programs.values().filter(|p| !program_ready(p)).collect();
    let token_ok = token.is_none_or(|t| t == TokenState::Valid);
    // Fleet mode reports the shared store here without letting it decide readiness: a Redis
    // outage leaves every warden running on its last token, and pulling every replica out of
    // service for it would turn a store blip into an outage.
    let store = fleet_store(&st);
    if not_ready.is_empty() && token_ok {
        let mut body = json!({"ready": true});
        if let Some(s) = store {
            body["store"] = s;
        }
        return (StatusCode::OK, Json(body)).into_response();
    }
    // One phrase per problem, naming the program or the token state, e.g.
    // "backend is running but unhealthy; token is needs_login".
    let mut reasons: Vec<String> = not_ready
        .iter()
        .map(|p| {
            let sick = !matches!(p.health, Health::Healthy | Health::Unknown);
            match (p.state, sick) {
                (ProgramState::Running, _) => {
                    format!("{} is running but {}", p.name, health_str(p.health))
                }
                (s, true) => format!("{} is {} and {}", p.name, s.as_str(), health_str(p.health)),
                (s, false) => format!("{} is {}", p.name, s.as_str()),
            }
        })
        .collect();
    if let Some(t) = token.filter(|_| !token_ok) {
        reasons.push(format!("token is {}", token_state_str(t)));
    }
    let programs: Vec<_> = not_ready
        .iter()
        .map(|p| json!({"program": p.name, "state": p.state, "health": p.health}))
        .collect();
    let mut body = json!({
        "ready": false,
        "reason": reasons.join("; "),
        "programs": programs,
        "token": token.map(token_state_str),
    });
    if let Some(s) = store {
        body["store"] = s;
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// `{"kind": "redis", "up": …, "role": …, …}` in fleet mode.
fn fleet_store(st: &AppState) -> Option<serde_json::Value> {
    let f = st.keeper.as_ref()?.fleet.as_ref()?;
    serde_json::to_value(&*f.borrow()).ok()
}

/// Ready: not fatal, not between starts, and not failing its health check.
fn program_ready(p: &ProgramStatus) -> bool {
    !matches!(
        p.state,
        ProgramState::Fatal | ProgramState::Starting | ProgramState::Backoff
    ) && matches!(p.health, Health::Healthy | Health::Unknown)
}

async fn status(State(st): State<AppState>) -> Json<serde_json::Value> {
    let programs: Vec<_> = st.programs.borrow().values().cloned().collect();
    let token = st.keeper.as_ref().map(|k| {
        let mut t = serde_json::to_value(&*k.status.borrow()).unwrap_or_default();
        if let Some(s) = fleet_store(&st) {
            t["store"] = s;
        }
        t
    });
    Json(json!({
        "programs": programs,
        "token": token,
        "warden": {
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "orphans_reaped": st.reaper.orphans_reaped(),
        },
    }))
}

/// Mutating endpoints need `Authorization: Bearer {api_token}` whenever one is configured.
fn authorized(st: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &st.api_token else {
        return true;
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(given.as_bytes(), token.expose().as_bytes())
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "missing or wrong bearer token (Authorization: Bearer <api_token>)"})),
    )
        .into_response()
}

async fn restart(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    let (reply, rx) = oneshot::channel();
    if st
        .requests
        .send(Request::Restart {
            name: name.clone(),
            reply,
        })
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "warden is shutting down"})),
        )
            .into_response();
    }
    match rx.await {
        Ok(true) => (StatusCode::ACCEPTED, Json(json!({"restarting": name}))).into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no program named {name:?}")})),
        )
            .into_response(),
    }
}

async fn refresh(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    // A refresh request never lifts a credential block (SPEC §4.1): say so instead.
    let blocked = st
        .keeper
        .as_ref()
        .and_then(|k| k.status.borrow().blocked.clone());
    if let Some(reason) = blocked {
        return conflict(format!(
            "automated login is blocked: {reason}. A refresh request does not lift this; fix the cause, then `warden token unblock` (POST /api/v1/token/unblock), or log in manually"
        ));
    }
    let _ = st.requests.send(Request::RefreshToken);
    (StatusCode::ACCEPTED, Json(json!({"refresh": "started"}))).into_response()
}

fn conflict(reason: String) -> Response {
    (StatusCode::CONFLICT, Json(json!({"reason": reason}))).into_response()
}

/// How long `unblock` waits for the keeper (it may be finishing a validation).
const UNBLOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn unblock(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    let Some(keeper) = st.keeper.as_ref() else {
        return conflict("no token provider is configured: nothing is blocked".into());
    };
    let (reply, rx) = oneshot::channel();
    if keeper
        .tx
        .send(crate::token::keeper::KeeperMsg::Unblock(reply))
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "warden is shutting down"})),
        )
            .into_response();
    }
    match tokio::time::timeout(UNBLOCK_WAIT, rx).await {
        Ok(Ok(Ok(()))) => (
            StatusCode::ACCEPTED,
            Json(json!({"unblocked": true, "refresh": "started"})),
        )
            .into_response(),
        Ok(Ok(Err(reason))) => conflict(reason),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the token keeper did not answer in time; try again"})),
        )
            .into_response(),
    }
}
