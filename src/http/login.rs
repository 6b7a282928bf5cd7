//! Manual login (SPEC §5, §9.2): `/login` sends the browser to the broker's login page with a
//! one-time `state`; `/{provider}/callback` spends it and hands the callback's parameters to
//! the keeper, whose provider picks out its code. Issuing, checking and
//! spending states (single-use in every mode, fleet-wide in fleet mode) is
//! `crate::token::login_state`; `/login` is rate-limited per client (`super::rate_limit`).

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;

use super::AppState;
use crate::control::{ControlError, TokenEntry};
use crate::model::TokenState;
use crate::token::keeper::CallbackError;
use crate::token::login_state::StateError;

/// Every broker's callback route (SPEC §9.2). Only the configured token's provider answers;
/// Dhan's consent may come back with or without a slash before the query.
pub const CALLBACK_PROVIDERS: [&str; 5] = ["kite", "angelone", "dhan", "upstox", "fyers"];

pub use crate::control::LoginRoute;

/// With several tokens a `state` starts with the issuing token's name and this separator
/// (names are `[a-z0-9_-]+`; `~` is URL-safe), so the callback reaches the token that sent
/// the browser to the broker.
const STATE_OWNER: char = '~';

pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/login", get(login))
        .route("/login/{name}", get(login_named));
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

/// `/login`: the only token; with several, the only one waiting for a login, else a page
/// listing those with a manual login.
async fn login(State(st): State<AppState>) -> Response {
    let table = st.control.tokens();
    let token = match table.as_slice() {
        [] => None,
        [only] => Some(only.clone()),
        several => {
            let waiting: Vec<&TokenEntry> = several
                .iter()
                .filter(|t| t.login.is_some())
                .filter(|t| t.status.borrow().state == TokenState::NeedsLogin)
                .collect();
            match waiting.as_slice() {
                [one] => Some((*one).clone()),
                _ => return login_list(several),
            }
        }
    };
    let Some(token) = token else {
        return text(
            StatusCode::NOT_FOUND,
            "the token has no broker table (such as [token.kite]): manual login is not available",
        );
    };
    start_login(&st, &token, table.len() > 1).await
}

/// `/login/{name}`: that token's manual login.
async fn login_named(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    let table = st.control.tokens();
    match table.iter().find(|t| t.name == name) {
        Some(token) => start_login(&st, token, table.len() > 1).await,
        None => text(StatusCode::NOT_FOUND, &format!("no token named {name:?}")),
    }
}

/// A small page with one login link per token that has a manual login.
fn login_list(tokens: &[TokenEntry]) -> Response {
    let mut items = String::new();
    for t in tokens.iter().filter(|t| t.login.is_some()) {
        let state = t.status.borrow().state.as_str();
        let name = super::page::escape(&t.name);
        items.push_str(&format!(
            "<li><a href=\"/login/{name}\">Log in {name}</a> ({state})</li>\n"
        ));
    }
    if items.is_empty() {
        return text(StatusCode::NOT_FOUND, "no token here has a manual login");
    }
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>warden: log in</title></head>\n\
         <body><h1>Which token?</h1>\n<ul>\n{items}</ul>\n</body></html>\n"
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn start_login(st: &AppState, token: &TokenEntry, tag_owner: bool) -> Response {
    if token.login.is_none() {
        return text(StatusCode::NOT_FOUND, "this token has no manual login");
    }
    let state = match token.login_states.issue() {
        Ok(s) if tag_owner => format!("{}{STATE_OWNER}{s}", token.name),
        Ok(s) => s,
        Err(e @ StateError::Full { retry_after }) => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_after.as_secs().into());
            return r;
        }
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    match st.control.login_url(token, state).await {
        Ok(Ok(Some(url))) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Ok(Ok(None)) => text(StatusCode::NOT_FOUND, "this token has no manual login"),
        Ok(Err(e)) => text(
            StatusCode::BAD_GATEWAY,
            &format!("the broker did not start the login: {e}"),
        ),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "warden is shutting down"),
    }
}

/// The token a callback belongs to, and the state it must spend (`None`: the broker carries
/// none back and the provider correlates the callback itself).
fn callback_owner<'a>(
    provider: &str,
    candidates: &[&'a TokenEntry],
    state: Option<&'a str>,
) -> Result<(&'a TokenEntry, Option<&'a str>), Box<Response>> {
    let unknown = || {
        Box::new(text(
            StatusCode::BAD_REQUEST,
            &StateError::Unknown.to_string(),
        ))
    };
    if let Some(state) = state {
        if let Some((owner, inner)) = state.split_once(STATE_OWNER) {
            return match candidates.iter().find(|t| t.name == owner) {
                Some(t) => Ok((t, Some(inner))),
                None => Err(unknown()),
            };
        }
        return match candidates {
            [only] => Ok((only, Some(state))),
            _ => Err(unknown()),
        };
    }
    // No state: only a broker that cannot carry one back (Dhan) goes on, to the only token of
    // that provider, or the only one with a pending manual login.
    let carries_state = candidates
        .iter()
        .any(|t| t.login.as_ref().is_some_and(|l| l.carries_state));
    if carries_state {
        return Err(unknown());
    }
    if let [only] = candidates {
        return Ok((only, None));
    }
    let waiting: Vec<&&TokenEntry> = candidates
        .iter()
        .filter(|t| t.status.borrow().state == TokenState::NeedsLogin)
        .collect();
    match waiting.as_slice() {
        [one] => Ok((one, None)),
        _ => Err(Box::new(text(
            StatusCode::CONFLICT,
            &format!(
                "several {provider} tokens could have started this login: start it again \
                 from /login/NAME while only that token waits for a login"
            ),
        ))),
    }
}

async fn callback(
    provider: &'static str,
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let table = st.control.tokens();
    let candidates: Vec<&TokenEntry> = table
        .iter()
        .filter(|t| t.login.as_ref().is_some_and(|l| l.provider == provider))
        .collect();
    if candidates.is_empty() {
        return text(
            StatusCode::NOT_FOUND,
            &format!("no token here logs in through {provider}"),
        );
    }
    let state = q.get("state").map(String::as_str).filter(|s| !s.is_empty());
    let (token, state) = match callback_owner(provider, &candidates, state) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    // Spent before anything else: a state is good for one callback, even one that fails.
    let spent = match state {
        Some(s) => token.login_states.spend(s).await,
        // A broker that cannot carry it back: its provider correlates the callback itself.
        None => Ok(()),
    };
    match spent {
        Ok(()) => {}
        Err(e @ StateError::StoreDown(_)) => {
            return text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    }
    match st.control.complete_login(token, q.clone()).await {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::watch;

    use super::*;
    use crate::control::LoginRoute;
    use crate::model::TokenStatus;
    use crate::token::login_state::LoginStates;

    /// A token of `provider` in `state` (a watch keeps its last value without a sender).
    fn entry(name: &str, provider: &'static str, state: TokenState) -> TokenEntry {
        let (_, status) = watch::channel(TokenStatus {
            state,
            ..TokenStatus::default()
        });
        let (keeper, _) = tokio::sync::mpsc::unbounded_channel();
        TokenEntry {
            name: name.into(),
            status,
            keeper,
            login: Some(LoginRoute {
                provider,
                carries_state: provider != "dhan",
            }),
            login_states: Arc::new(LoginStates::new(None, None)),
            store: None,
        }
    }

    fn owner(candidates: &[&TokenEntry], state: Option<&str>) -> Result<String, u16> {
        callback_owner("x", candidates, state)
            .map(|(t, _)| t.name.clone())
            .map_err(|r| r.status().as_u16())
    }

    #[test]
    fn a_tagged_state_reaches_its_token_and_an_untagged_one_only_a_lone_token() {
        let a = entry("a", "kite", TokenState::NeedsLogin);
        let b = entry("b", "kite", TokenState::NeedsLogin);
        assert_eq!(owner(&[&a, &b], Some("b~nonce")), Ok("b".into()));
        assert_eq!(owner(&[&a, &b], Some("zz~nonce")), Err(400));
        assert_eq!(owner(&[&a, &b], Some("nonce")), Err(400));
        assert_eq!(owner(&[&a], Some("nonce")), Ok("a".into()));
        assert_eq!(owner(&[&a, &b], None), Err(400), "kite carries a state");
    }

    #[test]
    fn a_callback_without_state_goes_to_the_only_token_waiting_for_that_broker() {
        let waiting = entry("d1", "dhan", TokenState::NeedsLogin);
        let valid = entry("d2", "dhan", TokenState::Valid);
        assert_eq!(owner(&[&waiting, &valid], None), Ok("d1".into()));
        assert_eq!(
            owner(&[&valid], None),
            Ok("d2".into()),
            "the only dhan token"
        );
        let also_waiting = entry("d3", "dhan", TokenState::NeedsLogin);
        assert_eq!(owner(&[&waiting, &also_waiting], None), Err(409));
    }
}
