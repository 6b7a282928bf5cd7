//! `POST /upstox/notify` (SPEC §9.2): Upstox's Notifier Webhook, where Upstox posts the token
//! once the person approved the Access Token Request. Unauthenticated by design (Upstox signs
//! nothing and sends no credential), so the keeper takes a token here only while it has a
//! request pending for the configured user, and only after the broker's profile answers for
//! that user with it; anything else is a 4xx and changes nothing. The guard lets this one
//! path be posted without a same-site `Origin` (`super::guard`), and `super::rate_limit`
//! bounds how often one client may post.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::control::ControlError;
use crate::token::keeper::{CommitError, DeliveryError};
use crate::token::provider::DeliveryRefused;

pub const UPSTOX_NOTIFY: &str = "/upstox/notify";

pub fn routes() -> Router<AppState> {
    Router::new().route(UPSTOX_NOTIFY, post(upstox_notify))
}

fn answer(status: StatusCode, message: &str) -> Response {
    let body = if status.is_success() {
        json!({"status": "success", "message": message})
    } else {
        json!({"status": "error", "error": message})
    };
    (status, Json(body)).into_response()
}

async fn upstox_notify(State(st): State<AppState>, body: Bytes) -> Response {
    if !st.control.has_provider("upstox") {
        return answer(
            StatusCode::NOT_FOUND,
            "no token here is obtained from Upstox",
        );
    }
    let refused = |status, e: &dyn std::fmt::Display| answer(status, &format!("refused: {e}"));
    match st.control.deliver_token("upstox", body.to_vec()).await {
        Ok(()) => answer(StatusCode::OK, "token accepted"),
        Err(ControlError::Delivery(e)) => {
            let status = match &e {
                DeliveryError::Refused(DeliveryRefused::NotPending)
                | DeliveryError::Store(CommitError::Fenced) => StatusCode::CONFLICT,
                DeliveryError::Refused(DeliveryRefused::NotSupported) => StatusCode::NOT_FOUND,
                DeliveryError::Refused(DeliveryRefused::Invalid(_)) => StatusCode::BAD_REQUEST,
                DeliveryError::Refused(DeliveryRefused::OtherUser)
                | DeliveryError::WrongUser
                | DeliveryError::TokenRefused(_) => StatusCode::FORBIDDEN,
                DeliveryError::Unavailable(_)
                | DeliveryError::Follower
                | DeliveryError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::warn!("POST {UPSTOX_NOTIFY}: {e}");
            refused(status, &e)
        }
        Err(ControlError::NoToken) => answer(StatusCode::NOT_FOUND, "no token provider configured"),
        Err(e) => answer(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
