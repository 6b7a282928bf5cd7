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
use crate::model::readiness::readiness;
use crate::model::ProgramState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/programs/{name}/restart", post(restart))
        .route("/api/v1/token/refresh", post(refresh))
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
    let ready = readiness(&programs, token);
    // Fleet mode reports the shared store here without letting it decide readiness.
    let store = fleet_store(&st);
    let not_ready = &ready.not_ready;
    if ready.is_ready() {
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
            let sick = !p.health.is_ok();
            match (p.state, sick) {
                (ProgramState::Running, _) => {
                    format!("{} is running but {}", p.name, health_str(p.health))
                }
                (s, true) => format!("{} is {} and {}", p.name, s.as_str(), health_str(p.health)),
                (s, false) => format!("{} is {}", p.name, s.as_str()),
            }
        })
        .collect();
    if let Some(t) = ready.token_blocking {
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
    let _ = st.requests.send(Request::RefreshToken);
    (StatusCode::ACCEPTED, Json(json!({"refresh": "started"}))).into_response()
}
