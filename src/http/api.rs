//! `/healthz`, `/readyz` and `/api/v1/*`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::oneshot;

use super::{AppState, Request};
use crate::program::ProgramState;
use crate::supervisor::Health;

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
    if let Some(k) = &st.keeper {
        let t = k.status.borrow().clone();
        if t.state != crate::token::keeper::TokenState::Valid {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"ready": false, "reason": format!("token is {}", serde_json::to_value(t.state).unwrap_or_default().as_str().unwrap_or("unknown")), "token": t})),
            )
                .into_response();
        }
    }
    let programs = st.programs.borrow().clone();
    let not_ready: Vec<_> = programs
        .values()
        .filter(|p| {
            p.state == ProgramState::Fatal
                || (matches!(p.state, ProgramState::Starting | ProgramState::Backoff))
                || (p.health != Health::Healthy && p.health != Health::Unknown)
        })
        .map(|p| json!({"program": p.name, "state": p.state, "health": p.health}))
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, Json(json!({"ready": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "programs not ready", "programs": not_ready})),
        )
            .into_response()
    }
}

async fn status(State(st): State<AppState>) -> Json<serde_json::Value> {
    let programs: Vec<_> = st.programs.borrow().values().cloned().collect();
    let token = st.keeper.as_ref().map(|k| k.status.borrow().clone());
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
