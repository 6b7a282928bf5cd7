//! Manual login (SPEC §5): `/login` sends the browser to Kite with a one-time `state`;
//! `/kite/callback` checks it and hands the request token to the keeper.
//!
//! In fleet mode the callback may land on another warden than the one that sent the browser
//! away (one redirect URL per Kite app, many wardens): there the `state` carries an HMAC keyed
//! by the app's api_secret, which every warden of the fleet has, so any of them can verify it.

use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::oneshot;

use super::AppState;
use crate::token::keeper::{CallbackError, KeeperMsg};

/// A login link stays usable this long (Kite's request tokens live only minutes anyway).
const NONCE_TTL: Duration = Duration::from_secs(15 * 60);
const MAX_NONCES: usize = 64;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route("/kite/callback", get(callback))
}

fn random_nonce() -> String {
    let mut buf = [0u8; 16];
    // /dev/urandom: the nonce guards the callback against forged logins, so it must not be
    // guessable; fall back to fastrand only if the device is missing.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_err()
    {
        buf.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    hex::encode(buf)
}

/// `{nonce}.{issued unix seconds}.{hmac}`; `None` without an api_secret to key it with.
fn signed_state(st: &AppState, nonce: &str) -> Option<String> {
    let issued = jiff::Timestamp::now().as_second();
    let mac = state_mac(st, nonce, issued)?;
    Some(format!("{nonce}.{issued}.{mac}"))
}

fn state_mac(st: &AppState, nonce: &str, issued: i64) -> Option<String> {
    let kite = st.kite.as_ref()?;
    if kite.api_secret.is_empty() {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(kite.api_secret.expose().as_bytes()).ok()?;
    mac.update(b"warden login state\0");
    mac.update(kite.api_key.as_bytes());
    mac.update(b"\0");
    mac.update(nonce.as_bytes());
    mac.update(format!("\0{issued}").as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

/// A state issued by another warden of the fleet: genuine, unexpired, not seen here before.
fn fleet_state_ok(st: &AppState, state: &str) -> bool {
    if st.keeper.as_ref().is_none_or(|k| k.fleet.is_none()) {
        return false;
    }
    let mut parts = state.splitn(3, '.');
    let (Some(nonce), Some(issued), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(issued) = issued.parse::<i64>() else {
        return false;
    };
    let age = jiff::Timestamp::now().as_second() - issued;
    if !(0..NONCE_TTL.as_secs() as i64).contains(&age) {
        return false;
    }
    let Some(expected) = state_mac(st, nonce, issued) else {
        return false;
    };
    if !super::api::constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
        return false;
    }
    // Single use here as well: remember it as spent until it would expire anyway.
    let mut nonces = st.nonces.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("spent:{nonce}");
    if nonces.contains_key(&key) {
        return false;
    }
    nonces.insert(key, Instant::now());
    true
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
    let Some(kite) = &st.kite else {
        return text(
            StatusCode::NOT_FOUND,
            "no [token.kite] configured: manual Kite login is not available",
        );
    };
    let nonce = random_nonce();
    let state = signed_state(&st, &nonce).unwrap_or_else(|| nonce.clone());
    {
        let mut nonces = st.nonces.lock().unwrap_or_else(|e| e.into_inner());
        nonces.retain(|_, t| t.elapsed() < NONCE_TTL);
        if nonces.len() >= MAX_NONCES {
            if let Some(oldest) = nonces
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                nonces.remove(&oldest);
            }
        }
        nonces.insert(state.clone(), Instant::now());
    }
    let url = format!(
        "{}/connect/login?v=3&api_key={}&redirect_params=state%3D{state}",
        kite.login_base.trim_end_matches('/'),
        url::form_urlencoded::byte_serialize(kite.api_key.as_bytes()).collect::<String>()
    );
    (StatusCode::FOUND, [(header::LOCATION, url)]).into_response()
}

#[derive(Deserialize)]
struct CallbackQuery {
    request_token: Option<String>,
    state: Option<String>,
    status: Option<String>,
}

async fn callback(State(st): State<AppState>, Query(q): Query<CallbackQuery>) -> Response {
    let known = q.state.as_ref().is_some_and(|s| {
        let mut nonces = st.nonces.lock().unwrap_or_else(|e| e.into_inner());
        nonces.remove(s).is_some_and(|t| t.elapsed() < NONCE_TTL)
    }) || q.state.as_ref().is_some_and(|s| fleet_state_ok(&st, s));
    if !known {
        return text(
            StatusCode::BAD_REQUEST,
            "missing or unknown state: start the login again from warden's /login",
        );
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
    let Some(keeper) = &st.keeper else {
        return text(StatusCode::NOT_FOUND, "no token provider configured");
    };
    let (reply, rx) = oneshot::channel();
    if keeper
        .tx
        .send(KeeperMsg::Callback {
            request_token,
            reply,
        })
        .is_err()
    {
        return text(StatusCode::SERVICE_UNAVAILABLE, "warden is shutting down");
    }
    match rx.await {
        Ok(Ok(())) => (StatusCode::FOUND, [(header::LOCATION, "/")]).into_response(),
        Ok(Err(CallbackError::WrongUser)) => text(
            StatusCode::FORBIDDEN,
            "that Kite session belongs to another user than token.kite.user_id; it was logged out and the current token is unchanged",
        ),
        Ok(Err(e @ CallbackError::Fleet(_))) => {
            text(StatusCode::SERVICE_UNAVAILABLE, &format!("login failed: {e}"))
        }
        Ok(Err(e)) => text(StatusCode::BAD_GATEWAY, &format!("login failed: {e}")),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "warden is shutting down"),
    }
}
