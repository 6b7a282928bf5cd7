//! Manual login (SPEC §5, §9.2): `/login` sends the browser to the broker's login page with a
//! one-time `state`; `/{provider}/callback` spends it and hands the callback's parameters to
//! the keeper, whose provider picks out its code. Issuing, checking and
//! spending states (single-use in every mode, fleet-wide in fleet mode) is
//! `crate::token::login_state`; `/login` is rate-limited per client (`super::rate_limit`).

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;

use super::AppState;
use crate::control::ControlError;
use crate::token::keeper::CallbackError;
use crate::token::login_state::StateError;

/// Every broker's callback route (SPEC §9.2). Only the configured token's provider answers;
/// Dhan's consent may come back with or without a slash before the query.
pub const CALLBACK_PROVIDERS: [&str; 5] = ["kite", "angelone", "dhan", "upstox", "fyers"];

/// Which broker's callback completes this token's manual login, and whether that broker carries
/// the `state` back.
#[derive(Debug, Clone)]
pub struct LoginRoute {
    pub provider: &'static str,
    pub carries_state: bool,
}

pub fn routes() -> Router<AppState> {
    let mut router = Router::new().route("/login", get(login));
    for provider in CALLBACK_PROVIDERS {
        let handler =
            move |st: State<AppState>, q: Query<HashMap<String, String>>| callback(provider, st, q);
        router = router
            .route(&format!("/{provider}/callback"), get(handler))
            .route(&format!("/{provider}/callback/"), get(handler));
    }
    router
}

fn text(code: StatusCode, msg: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

async fn login(State(st): State<AppState>) -> Response {
    if st.login.is_none() {
        return text(
            StatusCode::NOT_FOUND,
            "the token has no broker table (such as [token.kite]): manual login is not available",
        );
    }
    let state = match st.login_states.issue() {
        Ok(s) => s,
        Err(e @ StateError::Full { retry_after }) => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_after.as_secs().into());
            return r;
        }
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    match st.control.login_url(state).await {
        Ok(Ok(Some(url))) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Ok(Ok(None)) => text(StatusCode::NOT_FOUND, "this token has no manual login"),
        Ok(Err(e)) => text(
            StatusCode::BAD_GATEWAY,
            &format!("the broker did not start the login: {e}"),
        ),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "warden is shutting down"),
    }
}

async fn callback(
    provider: &'static str,
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(route) = st.login.as_ref().filter(|r| r.provider == provider) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("no token here logs in through {provider}"),
        );
    };
    // Spent before anything else: a state is good for one callback, even one that fails.
    let state = q.get("state").map(String::as_str).filter(|s| !s.is_empty());
    let spent = match state {
        Some(s) => st.login_states.spend(s).await,
        // A broker that cannot carry it back: its provider correlates the callback itself.
        None if !route.carries_state => Ok(()),
        None => Err(StateError::Unknown),
    };
    match spent {
        Ok(()) => {}
        Err(e @ StateError::StoreDown(_)) => {
            return text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    }
    match st.control.complete_login(q).await {
        Ok(()) => (StatusCode::FOUND, [(header::LOCATION, "/")]).into_response(),
        Err(ControlError::NoToken) => {
            text(StatusCode::NOT_FOUND, "no token provider configured")
        }
        Err(ControlError::Login(CallbackError::WrongUser)) => text(
            StatusCode::FORBIDDEN,
            &format!("that {provider} session belongs to another user than the configured user_id; it was logged out and the current token is unchanged"),
        ),
        Err(ControlError::Login(CallbackError::BadCallback(why))) => {
            text(StatusCode::BAD_REQUEST, why)
        }
        Err(ControlError::Login(e @ CallbackError::Fleet(_))) => {
            text(StatusCode::SERVICE_UNAVAILABLE, &format!("login failed: {e}"))
        }
        Err(ControlError::Login(e)) => {
            text(StatusCode::BAD_GATEWAY, &format!("login failed: {e}"))
        }
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "warden is shutting down"),
    }
}
