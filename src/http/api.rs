//! `/healthz`, `/readyz` and `/api/v1/*`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::control::{ControlError, Snapshot, TokenEntry};
use crate::model::readiness::readiness;
use crate::model::TokenState;
use crate::present::not_ready_reason;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/programs/{name}/restart", post(restart))
        .route("/api/v1/token/refresh", post(refresh))
        .route("/api/v1/token/unblock", post(unblock))
        .route("/api/v1/tokens/{name}/refresh", post(refresh_named))
        .route("/api/v1/tokens/{name}/unblock", post(unblock_named))
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
    let snap = st.views.snapshot();
    let token = snap.readiness_token_state();
    let ready = readiness(&snap.programs, token);
    // Fleet mode reports the shared store here without letting it decide readiness.
    let store = fleet_store(&snap);
    let not_ready = &ready.not_ready;
    if ready.is_ready() {
        let mut body = json!({"ready": true});
        if let Some(s) = store {
            body["store"] = s;
        }
        return (StatusCode::OK, Json(body)).into_response();
    }
    let programs: Vec<_> = not_ready
        .iter()
        .map(|p| json!({"program": p.name, "state": p.state, "health": p.health}))
        .collect();
    let mut body = json!({
        "ready": false,
        "reason": not_ready_reason(&ready),
        "programs": programs,
        "token": token.map(TokenState::as_str),
    });
    if let Some(s) = store {
        body["store"] = s;
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// `{"kind": "redis", "up": …, "role": …, …}` in fleet mode.
fn fleet_store(snap: &Snapshot) -> Option<serde_json::Value> {
    serde_json::to_value(snap.store.as_ref()?).ok()
}

/// `token` (the only or first token) and `tokens` (every token by name, each the same shape;
/// SPEC §9.1).
async fn status(State(st): State<AppState>) -> Json<serde_json::Value> {
    let snap = st.views.snapshot();
    let programs: Vec<_> = snap.programs.values().collect();
    let tokens: serde_json::Map<String, serde_json::Value> = snap
        .tokens
        .iter()
        .map(|(name, tok, store)| {
            let mut t = serde_json::to_value(tok).unwrap_or_default();
            if let Some(s) = store.as_ref().and_then(|s| serde_json::to_value(s).ok()) {
                t["store"] = s;
            }
            t["name"] = name.clone().into();
            (name.clone(), t)
        })
        .collect();
    let token = tokens.values().next().cloned();
    Json(json!({
        "programs": programs,
        "token": token,
        "tokens": tokens,
        "market": snap.market,
        "warden": {
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "orphans_reaped": snap.orphans_reaped,
        },
        "held_notifications": snap.held,
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
    match st.control.restart(&name).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"restarting": name}))).into_response(),
        Err(e @ ControlError::ShuttingDown) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
        Err(e) => (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

async fn refresh(State(st): State<AppState>, headers: HeaderMap) -> Response {
    refresh_token(st, headers, None).await
}

async fn refresh_named(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    refresh_token(st, headers, Some(name)).await
}

/// A token a request names (`None`: the only one): 404 for an unknown name; 400 naming the
/// tokens when there are several and the request named none.
fn pick_token(st: &AppState, name: Option<&str>) -> Result<TokenEntry, Box<Response>> {
    st.control.token(name).map_err(|e| {
        Box::new(match e {
            ControlError::NoSuchToken(_) => {
                (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response()
            }
            ControlError::NameNeeded(names) => (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": format!(
                        "this warden keeps several tokens ({}): use /api/v1/tokens/NAME/…",
                        names.join(", ")
                    ),
                    "tokens": names,
                })),
            )
                .into_response(),
            ControlError::NoToken => conflict("no token provider is configured".into()),
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "warden is shutting down"})),
            )
                .into_response(),
        })
    })
}

async fn refresh_token(st: AppState, headers: HeaderMap, name: Option<String>) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    let token = match pick_token(&st, name.as_deref()) {
        Ok(t) => t,
        // As before: with no token at all the request is accepted and does nothing.
        Err(_) if name.is_none() && st.control.tokens().is_empty() => {
            return (StatusCode::ACCEPTED, Json(json!({"refresh": "started"}))).into_response()
        }
        Err(r) => return *r,
    };
    // A refresh request never lifts a credential block (SPEC §4.1): say so instead.
    let blocked = token.status.borrow().blocked.clone();
    if let Some(reason) = blocked {
        return conflict(format!(
            "automated login is blocked: {reason}. A refresh request does not lift this; fix the cause, then `warden token unblock` (POST /api/v1/token/unblock), or log in manually"
        ));
    }
    // Accepted even while stopping, as before: the keeper's rules decide what happens.
    let _ = st.control.refresh(&token);
    (
        StatusCode::ACCEPTED,
        Json(json!({"refresh": "started", "token": token.name})),
    )
        .into_response()
}

fn conflict(reason: String) -> Response {
    (StatusCode::CONFLICT, Json(json!({"reason": reason}))).into_response()
}

/// How long `unblock` waits for the keeper (it may be finishing a validation).
const UNBLOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn unblock(State(st): State<AppState>, headers: HeaderMap) -> Response {
    unblock_token(st, headers, None).await
}

async fn unblock_named(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    unblock_token(st, headers, Some(name)).await
}

async fn unblock_token(st: AppState, headers: HeaderMap, name: Option<String>) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    let token = match st.control.token(name.as_deref()) {
        Ok(t) => t,
        Err(ControlError::NoToken) => {
            return conflict("no token provider is configured: nothing is blocked".into())
        }
        Err(_) => match pick_token(&st, name.as_deref()) {
            Err(r) => return *r,
            Ok(t) => t,
        },
    };
    let rx = match st.control.unblock(&token) {
        Ok(rx) => rx,
        Err(_) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "warden is shutting down"})),
            )
                .into_response()
        }
    };
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
