//! HTTP face of the simulated Kite: one router for both hosts (`login_base` and `api_base`
//! are the same address). Handlers only translate; the rules live in `state.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::page::login_page;
use super::state::{ApiError, Kite};
use crate::token::kite::encode;

type Params = HashMap<String, String>;
type Shared = State<Arc<Kite>>;

const SESSION_COOKIE: &str = "kf_session";

pub(super) fn router(kite: Arc<Kite>) -> Router {
    Router::new()
        .route("/api/login", post(api_login))
        .route("/api/twofa", post(api_twofa))
        .route("/connect/login", get(connect_login).post(browser_login))
        .route("/connect/finish", get(connect_finish))
        .route("/session/token", post(session_token).delete(session_logout))
        .route("/user/profile", get(user_profile))
        .route("/_sandbox/expire", post(ctl_expire))
        .route("/_sandbox/fault", post(ctl_fault))
        .route("/_sandbox/stats", get(ctl_stats))
        .route("/_sandbox/reset", post(ctl_reset))
        .route("/_sandbox/clock", post(ctl_clock))
        .route("/_sandbox/logout_web", post(ctl_logout_web))
        .route("/", get(super::ticker::upgrade))
        .fallback(not_found)
        .with_state(kite)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({
            "status": "error",
            "message": self.message,
            "data": null,
            "error_type": self.error_type,
        });
        (status, Json(body)).into_response()
    }
}

fn success(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

fn found(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

/// Form fields from the body, whatever the Content-Type says (Kite is lenient too).
fn form(body: &Bytes) -> Params {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(p: &'a Params, name: &str) -> &'a str {
    p.get(name).map(String::as_str).unwrap_or("")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn session_cookie(value: &str) -> String {
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax")
}

async fn api_login(State(k): Shared, body: Bytes) -> Response {
    let f = form(&body);
    match k.password_login(field(&f, "user_id"), field(&f, "password")) {
        Ok(data) => success(data),
        Err(e) => e.into_response(),
    }
}

async fn api_twofa(State(k): Shared, body: Bytes) -> Response {
    let f = form(&body);
    let twofa_type = match field(&f, "twofa_type") {
        "" => "totp",
        t => t,
    };
    match k.twofa(
        field(&f, "user_id"),
        field(&f, "request_id"),
        field(&f, "twofa_value"),
        twofa_type,
    ) {
        Ok(cookie) => (
            [(header::SET_COOKIE, session_cookie(&cookie))],
            success(json!({"profile": {}})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn connect_url(path: &str, api_key: &str, sess_id: &str) -> String {
    format!(
        "{path}?api_key={}&sess_id={}",
        encode(api_key),
        encode(sess_id)
    )
}

/// Hop 1 (no `sess_id`): open a flow and redirect to itself with one. Hop 2: a logged-in
/// browser goes on to `/connect/finish`; anyone else gets the login page.
async fn connect_login(State(k): Shared, Query(q): Query<Params>, headers: HeaderMap) -> Response {
    let api_key = field(&q, "api_key");
    let Some(sess_id) = q.get("sess_id") else {
        return match k.start_connect(api_key, q.get("redirect_params").map(String::as_str)) {
            Ok(sess_id) => found(&connect_url("/connect/login", api_key, &sess_id)),
            Err(e) => e.into_response(),
        };
    };
    if let Err(e) = k.connect_flow_exists(api_key, sess_id) {
        return e.into_response();
    }
    if k.session_user(cookie(&headers, SESSION_COOKIE)).is_some() {
        return found(&connect_url("/connect/finish", api_key, sess_id));
    }
    Html(login_page(api_key, sess_id, "", None)).into_response()
}

/// The browser form: password and TOTP in one post, same checks and strikes as the API.
async fn browser_login(State(k): Shared, body: Bytes) -> Response {
    let f = form(&body);
    let (api_key, sess_id, user_id) = (
        field(&f, "api_key"),
        field(&f, "sess_id"),
        field(&f, "user_id"),
    );
    let page_error = |e: ApiError| {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        let page = login_page(api_key, sess_id, user_id, Some(&e.message));
        (status, Html(page)).into_response()
    };
    if let Err(e) = k.connect_flow_exists(api_key, sess_id) {
        return page_error(e);
    }
    let login = match k.password_login(user_id, field(&f, "password")) {
        Ok(data) => data,
        Err(e) => return page_error(e),
    };
    let request_id = login["request_id"].as_str().unwrap_or_default();
    match k.twofa(user_id, request_id, field(&f, "twofa_value"), "totp") {
        Ok(cookie) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, session_cookie(&cookie)),
                (
                    header::LOCATION,
                    connect_url("/connect/finish", api_key, sess_id),
                ),
            ],
        )
            .into_response(),
        Err(e) => page_error(e),
    }
}

/// Hop 3: mint the request token and send the browser to the app's redirect URL.
async fn connect_finish(State(k): Shared, Query(q): Query<Params>, headers: HeaderMap) -> Response {
    let (api_key, sess_id) = (field(&q, "api_key"), field(&q, "sess_id"));
    let Some(user) = k.session_user(cookie(&headers, SESSION_COOKIE)) else {
        return found(&connect_url("/connect/login", api_key, sess_id));
    };
    match k.finish_connect(api_key, sess_id, &user) {
        Ok(url) => {
            k.note_connect(cookie(&headers, SESSION_COOKIE));
            found(&url)
        }
        Err(e) => e.into_response(),
    }
}

async fn session_token(State(k): Shared, body: Bytes) -> Response {
    let f = form(&body);
    match k.exchange(
        field(&f, "api_key"),
        field(&f, "request_token"),
        field(&f, "checksum"),
    ) {
        Ok(data) => success(data),
        Err(e) => e.into_response(),
    }
}

/// Kite reads `api_key` and `access_token` from the query of a DELETE; a form body works too.
async fn session_logout(State(k): Shared, Query(q): Query<Params>, body: Bytes) -> Response {
    let mut p = form(&body);
    p.extend(q);
    match k.logout(field(&p, "api_key"), field(&p, "access_token")) {
        Ok(()) => success(json!(true)),
        Err(e) => e.into_response(),
    }
}

async fn user_profile(State(k): Shared, headers: HeaderMap) -> Response {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match k.profile(h("x-kite-version"), h("authorization")) {
        Ok(data) => success(data),
        Err(e) => e.into_response(),
    }
}

async fn ctl_expire(State(k): Shared) -> Response {
    Json(json!({"expired": k.expire_all()})).into_response()
}

async fn ctl_fault(State(k): Shared, body: Bytes) -> Response {
    crate::sandbox::common::server::queue_fault(&body, |f| k.add_fault(f))
}

async fn ctl_stats(State(k): Shared) -> Response {
    Json(k.stats()).into_response()
}

/// `{"skew_secs": 60}`: the sandbox's clock runs that far ahead (negative: behind).
async fn ctl_clock(State(k): Shared, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Clock {
        skew_secs: i64,
    }
    match serde_json::from_slice::<Clock>(&body) {
        Ok(c) => {
            k.set_clock_skew(c.skew_secs);
            Json(json!({"skew_secs": c.skew_secs})).into_response()
        }
        Err(e) => {
            let msg = format!("bad clock setting (want {{\"skew_secs\": N}}): {e}");
            (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
        }
    }
}

async fn ctl_logout_web(State(k): Shared) -> Response {
    Json(json!({"ended": k.end_web_sessions()})).into_response()
}

async fn ctl_reset(State(k): Shared) -> Response {
    k.reset();
    Json(json!({"reset": true})).into_response()
}

async fn not_found() -> Response {
    ApiError {
        status: 404,
        error_type: "GeneralException",
        message: "Route not found.".into(),
    }
    .into_response()
}
