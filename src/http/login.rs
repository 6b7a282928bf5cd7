//! Manual login (SPEC §5): `/login` sends the browser to Kite with a one-time `state`;
//! `/kite/callback` spends it and hands the request token to the keeper. Issuing, checking and
//! spending states (single-use in every mode, fleet-wide in fleet mode) is
//! `crate::token::login_state`; `/login` is rate-limited per client (`super::rate_limit`).

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::AppState;
use crate::config::KiteConfig;
use crate::control::ControlError;
use crate::token::keeper::CallbackError;
use crate::token::login_state::StateError;

/// What `/login` needs of `[token.kite]`: where Kite's login page is and the app's public
/// key (never the api_secret).
#[derive(Debug, Clone)]
pub struct LoginLink {
    login_base: String,
    api_key: String,
}

impl LoginLink {
    pub fn from_kite(kite: &KiteConfig) -> LoginLink {
        LoginLink {
            login_base: kite.login_base.clone(),
            api_key: kite.api_key.clone(),
        }
    }

    /// Kite's login page, coming back to `/kite/callback` with `state`.
    fn url(&self, state: &str) -> String {
        format!(
            "{}/connect/login?v=3&api_key={}&redirect_params=state%3D{state}",
            self.login_base.trim_end_matches('/'),
            url::form_urlencoded::byte_serialize(self.api_key.as_bytes()).collect::<String>()
        )
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route("/kite/callback", get(callback))
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
    let Some(link) = &st.login else {
        return text(
            StatusCode::NOT_FOUND,
            "no [token.kite] configured: manual Kite login is not available",
        );
    };
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
    (StatusCode::FOUND, [(header::LOCATION, link.url(&state))]).into_response()
}

#[derive(Deserialize)]
struct CallbackQuery {
    request_token: Option<String>,
    state: Option<String>,
    status: Option<String>,
}

async fn callback(State(st): State<AppState>, Query(q): Query<CallbackQuery>) -> Response {
    // Spent before anything else: a state is good for one callback, even one that fails.
    let spent = match q.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => st.login_states.spend(s).await,
        None => Err(StateError::Unknown),
    };
    match spent {
        Ok(()) => {}
        Err(e @ StateError::StoreDown(_)) => {
            return text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    }
    if q.status.as_deref().is_some_and(|s| s != "success") {
        return text(
            StatusCode::BAD_REQUEST,
            "Kite reports the login did not succeed; try again from /login",
        );
    }
    let Some(request_token) = q.request_token.filter(|t| !t.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "missing request_token");
    };
    match st.control.complete_login(request_token).await {
        Ok(()) => (StatusCode::FOUND, [(header::LOCATION, "/")]).into_response(),
        Err(ControlError::NoToken) => {
            text(StatusCode::NOT_FOUND, "no token provider configured")
        }
        Err(ControlError::Login(CallbackError::WrongUser)) => text(
            StatusCode::FORBIDDEN,
            "that Kite session belongs to another user than token.kite.user_id; it was logged out and the current token is unchanged",
        ),
        Err(ControlError::Login(e @ CallbackError::Fleet(_))) => {
            text(StatusCode::SERVICE_UNAVAILABLE, &format!("login failed: {e}"))
        }
        Err(ControlError::Login(e)) => {
            text(StatusCode::BAD_GATEWAY, &format!("login failed: {e}"))
        }
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "warden is shutting down"),
    }
}
