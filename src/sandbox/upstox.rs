//! `warden sandbox upstox`: a local Upstox API (v2 login, profile, logout and the v3 Access
//! Token Request, on one listener, so `api_base` = `http://ADDR`). A pending Access Token
//! Request waits for `POST /_sandbox/approve` (the person's tap), which posts the token to
//! `--notifier-url` the way Upstox posts it. Facts from `brokers/upstox.md`; docs/sandbox.md
//! lists the readings taken where they are UNCONFIRMED.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::common::core::random_id;
use super::common::page::{
    field, form, form_login, found, header_str, login_page, with_query, Params,
};
use super::common::{
    clock, faults, require_url, server, user, Broker, Check, Core, Denied, Fault, Kind, Running,
};
use super::{parse_duration, SandboxError};
use crate::token::login::unix_now;

pub const DEFAULT_CLIENT_ID: &str = "upstox-sandbox-key";
pub const DEFAULT_CLIENT_SECRET: &str = "upstox-sandbox-secret";
pub const DEFAULT_USER_ID: &str = "UX1234";
pub const DEFAULT_PIN: &str = "864209";
pub const DEFAULT_TOTP_SECRET: &str = "WARDENSANDBOXTOTPSECRETUPSTOXB23";
pub const DEFAULT_REDIRECT_URL: &str = "http://127.0.0.1:9180/upstox/callback";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9193";

const DIALOG: &str = "/v2/login/authorization/dialog";
const CODE_TTL: Duration = Duration::from_secs(600);

/// Command-line options of `warden sandbox upstox`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpstoxArgs {
    /// Address to listen on (port 0 picks a free port; the real one is printed)
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Lifetime of an access token; without it, tokens die at 03:30 IST like Upstox's
    #[arg(long, value_parser = parse_duration)]
    pub token_ttl: Option<Duration>,
    /// The app's API key (client_id)
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// The app's API secret (client_secret)
    #[arg(long, default_value = DEFAULT_CLIENT_SECRET)]
    pub client_secret: String,
    /// The one user who can log in
    #[arg(long, default_value = DEFAULT_USER_ID)]
    pub user_id: String,
    /// That user's PIN (the login page)
    #[arg(long, default_value = DEFAULT_PIN)]
    pub pin: String,
    /// That user's TOTP secret (base32; the login page)
    #[arg(long, default_value = DEFAULT_TOTP_SECRET)]
    pub totp_secret: String,
    /// The app's registered redirect URL
    #[arg(long, default_value = DEFAULT_REDIRECT_URL)]
    pub redirect_url: String,
    /// The app's Notifier Webhook: an approved Access Token Request is POSTed here
    #[arg(long)]
    pub notifier_url: Option<String>,
}

impl Default for UpstoxArgs {
    fn default() -> Self {
        UpstoxArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_ttl: None,
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            user_id: DEFAULT_USER_ID.into(),
            pin: DEFAULT_PIN.into(),
            totp_secret: DEFAULT_TOTP_SECRET.into(),
            redirect_url: DEFAULT_REDIRECT_URL.into(),
            notifier_url: None,
        }
    }
}

#[derive(Default)]
struct Own {
    /// Authorization code → when it was issued.
    codes: HashMap<String, Instant>,
    /// The pending Access Token Request: when it lapses (unix seconds).
    pending_until: Option<u64>,
}

/// The simulated Upstox.
pub struct Upstox {
    core: Core,
    pub args: UpstoxArgs,
    own: Mutex<Own>,
}

impl Broker for Upstox {
    fn core(&self) -> &Core {
        &self.core
    }
    fn fault_response(&self, fault: &Fault) -> Response {
        let code = match fault.status {
            429 => "UDAPI10005",
            401 => "UDAPI100050",
            _ => "UDAPI100500",
        };
        error(fault.status, code, &faults::message(fault))
    }
    fn reset(&self) {
        *self.own() = Own::default();
    }
}

/// Upstox's error envelope, with both the documented snake_case keys and the deprecated
/// camelCase ones (clients read either).
fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({
        "status": "error",
        "errors": [{
            "error_code": code, "message": message, "property_path": null, "invalid_value": null,
            "errorCode": code, "propertyPath": null, "invalidValue": null,
        }]
    });
    (status, Json(body)).into_response()
}

fn bad_app() -> Response {
    error(
        400,
        "UDAPI100068",
        "Check your 'client_id' and 'redirect_uri'; one or both are incorrect.",
    )
}

impl Upstox {
    fn own(&self) -> std::sync::MutexGuard<'_, Own> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ttl(&self) -> Duration {
        self.args
            .token_ttl
            .unwrap_or_else(|| clock::until_next_ist(jiff::Timestamp::now(), 3, 30))
    }

    /// A new access token (JWT) for the user; kills the previous one.
    fn mint(&self) -> (String, u64) {
        let user = self.core.user.id.clone();
        let claims = json!({"sub": user, "iss": "udapi-gateway-service", "isMultiClient": false});
        self.core
            .issue(&user, Kind::Access, self.ttl(), claims, true)
    }

    fn profile_data(&self) -> Value {
        json!({
            "email": "sandbox@example.invalid",
            "exchanges": ["NSE", "NFO", "BSE", "CDS", "MCX"],
            "products": ["D", "I", "CO", "MTF"],
            "broker": "UPSTOX",
            "user_id": self.core.user.id,
            "user_name": self.core.user.name,
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
            "user_type": "individual",
            "poa": false,
            "ddpi": false,
            "is_active": true,
        })
    }

    fn dialog_ok(&self, p: &Params) -> bool {
        field(p, "client_id") == self.args.client_id
            && field(p, "redirect_uri") == self.args.redirect_url
    }
}

fn dialog_hidden(p: &Params) -> [(&str, &str); 3] {
    [
        ("client_id", field(p, "client_id")),
        ("redirect_uri", field(p, "redirect_uri")),
        ("state", field(p, "state")),
    ]
}

async fn dialog_page(State(u): State<Arc<Upstox>>, Query(q): Query<Params>) -> Response {
    if field(&q, "response_type") != "code" || !u.dialog_ok(&q) {
        return bad_app();
    }
    login_page("Upstox", DIALOG, &dialog_hidden(&q), None)
}

async fn dialog_login(State(u): State<Arc<Upstox>>, body: Bytes) -> Response {
    let f = form(&body);
    if !u.dialog_ok(&f) {
        return bad_app();
    }
    let checked = form_login(&u.core, &f);
    if let Err(why) = checked {
        let msg = match why {
            Denied::Locked => "Your account is locked after too many failed attempts.",
            Denied::WrongTotp | Denied::ReplayedTotp => "Invalid TOTP.",
            _ => "Invalid user id or PIN.",
        };
        return login_page("Upstox", DIALOG, &dialog_hidden(&f), Some(msg));
    }
    let code = random_id(6);
    u.own().codes.insert(code.clone(), Instant::now());
    let mut pairs = vec![("code", code.as_str())];
    if !field(&f, "state").is_empty() {
        pairs.push(("state", field(&f, "state")));
    }
    match with_query(&u.args.redirect_url, &pairs) {
        Some(url) => found(&url),
        None => error(500, "UDAPI100500", "bad redirect URL"),
    }
}

/// The code exchange. A code is spent by any attempt, even a failed one.
async fn token(State(u): State<Arc<Upstox>>, body: Bytes) -> Response {
    let f = form(&body);
    let code_live = u
        .own()
        .codes
        .remove(field(&f, "code"))
        .is_some_and(|at| at.elapsed() < CODE_TTL);
    if field(&f, "client_id") != u.args.client_id
        || field(&f, "client_secret") != u.args.client_secret
    {
        u.core.bump("exchange_fail");
        return error(401, "UDAPI100016", "Invalid Credentials");
    }
    if field(&f, "redirect_uri") != u.args.redirect_url {
        u.core.bump("exchange_fail");
        return bad_app();
    }
    if field(&f, "grant_type") != "authorization_code" || !code_live {
        u.core.bump("exchange_fail");
        return error(400, "UDAPI100057", "Invalid Auth code");
    }
    let (access, _) = u.mint();
    let user = u.core.user.id.clone();
    let year = Duration::from_secs(365 * 24 * 3600);
    let (extended, _) = u.core.issue(&user, Kind::Side, year, Value::Null, true);
    let mut data = u.profile_data();
    data["access_token"] = json!(access);
    data["extended_token"] = json!(extended);
    Json(data).into_response()
}

/// The user of a live `Authorization: Bearer` token on a v2 call.
// The Err is the finished HTTP answer, returned once per request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn bearer(u: &Upstox, headers: &HeaderMap) -> Result<String, Response> {
    if header_str(headers, "api-version").is_none() {
        return Err(error(400, "UDAPI100015", "Api-Version header is missing"));
    }
    let auth = header_str(headers, "authorization").unwrap_or("");
    let token = auth.strip_prefix("Bearer ").unwrap_or(auth).trim();
    match u.core.check(token, Kind::Access) {
        Check::Live { user, .. } => Ok(user),
        _ => Err(error(
            401,
            "UDAPI100050",
            "Invalid token used to access API",
        )),
    }
}

async fn profile(State(u): State<Arc<Upstox>>, headers: HeaderMap) -> Response {
    match bearer(&u, &headers) {
        Ok(_) => {
            u.core.bump("profile_ok");
            Json(json!({"status": "success", "data": u.profile_data()})).into_response()
        }
        Err(r) => {
            u.core.bump("profile_fail");
            r
        }
    }
}

async fn logout(State(u): State<Arc<Upstox>>, headers: HeaderMap) -> Response {
    if let Err(r) = bearer(&u, &headers) {
        return r;
    }
    let auth = header_str(&headers, "authorization").unwrap_or("");
    u.core
        .revoke(auth.strip_prefix("Bearer ").unwrap_or(auth).trim());
    u.core.bump("logouts");
    Json(json!({"status": "success", "data": true})).into_response()
}

/// The Access Token Request: stays pending until approved (or 03:30 IST).
async fn token_request(
    State(u): State<Arc<Upstox>>,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    let b: Value = serde_json::from_slice(&body).unwrap_or_else(|_| json!({}));
    let secret = b.get("client_secret").and_then(Value::as_str).unwrap_or("");
    if client_id != u.args.client_id || secret != u.args.client_secret {
        u.core.bump("token_request_fail");
        return error(401, "UDAPI100016", "Invalid Credentials");
    }
    let until = unix_now() + clock::until_next_ist(jiff::Timestamp::now(), 3, 30).as_secs();
    u.own().pending_until = Some(until);
    u.core.bump("token_requests");
    let data = json!({
        "authorization_expiry": (until * 1000).to_string(),
        "notifier_url": u.args.notifier_url.clone().unwrap_or_default(),
    });
    Json(json!({"status": "success", "data": data})).into_response()
}

/// `GET /_sandbox/pending`: whether an Access Token Request waits for approval.
async fn ctl_pending(State(u): State<Arc<Upstox>>) -> Json<Value> {
    let pending = u.own().pending_until.is_some_and(|t| t > unix_now());
    Json(json!({"pending": pending}))
}

/// `POST /_sandbox/approve`: the person taps Approve. Mints a token and POSTs it to the
/// notifier URL; answers with the notifier's HTTP status (never with the token).
async fn ctl_approve(State(u): State<Arc<Upstox>>) -> Response {
    let pending = u.own().pending_until.take().is_some_and(|t| t > unix_now());
    if !pending {
        let msg = "no pending access token request";
        return (StatusCode::CONFLICT, Json(json!({"error": msg}))).into_response();
    }
    let issued = unix_now();
    let (token, exp) = u.mint();
    u.core.bump("token_requests_approved");
    let Some(url) = u.args.notifier_url.clone() else {
        return Json(json!({"approved": true, "notified": false})).into_response();
    };
    let payload = json!({
        "client_id": u.args.client_id,
        "user_id": u.core.user.id,
        "access_token": token,
        "token_type": "Bearer",
        "expires_at": (exp * 1000).to_string(),
        "issued_at": (issued * 1000).to_string(),
        "message_type": "access_token",
    });
    let sent = reqwest::Client::new()
        .post(&url)
        .timeout(Duration::from_secs(10))
        .json(&payload)
        .send()
        .await;
    match sent {
        Ok(r) => Json(
            json!({"approved": true, "notified": true, "notifier_status": r.status().as_u16()}),
        )
        .into_response(),
        Err(e) => {
            // Only the cause: never the payload (it holds the token).
            let msg = format!("notifier POST failed: {}", e.without_url());
            (
                StatusCode::BAD_GATEWAY,
                Json(json!({"approved": true, "notified": false, "error": msg})),
            )
                .into_response()
        }
    }
}

async fn not_found() -> Response {
    error(
        404,
        "UDAPI10000",
        "This request is not supported by Upstox API",
    )
}

/// Bind and serve in the background of the current tokio runtime.
pub async fn spawn(args: UpstoxArgs) -> Result<Running<Upstox>, SandboxError> {
    require_url("--redirect-url", &args.redirect_url)?;
    if let Some(n) = &args.notifier_url {
        require_url("--notifier-url", n)?;
    }
    let core = Core::new(user(&args.user_id, &args.pin, &args.totp_secret))?;
    let upstox = Arc::new(Upstox {
        core,
        args: args.clone(),
        own: Mutex::new(Own::default()),
    });
    let routes = Router::new()
        .route(DIALOG, get(dialog_page).post(dialog_login))
        .route("/v2/login/authorization/token", post(token))
        .route("/v2/user/profile", get(profile))
        .route("/v2/logout", delete(logout))
        .route(
            "/v3/login/auth/token/request/{client_id}",
            post(token_request),
        )
        .route("/_sandbox/approve", post(ctl_approve))
        .route("/_sandbox/pending", get(ctl_pending))
        .fallback(not_found)
        .with_state(upstox.clone());
    server::spawn(args.listen, upstox, routes).await
}

/// `warden sandbox upstox`: serve until SIGTERM/SIGINT.
pub async fn run(args: UpstoxArgs) -> Result<(), SandboxError> {
    let running = spawn(args).await?;
    let a = &running.broker.args;
    let lines = vec![
        format!("client_id: {}", a.client_id),
        format!("client_secret: {}", a.client_secret),
        format!("user_id: {}", a.user_id),
        format!("pin: {}", a.pin),
        format!("totp_secret: {}", a.totp_secret),
        format!("redirect_url: {}", a.redirect_url),
        format!(
            "notifier_url: {}",
            a.notifier_url.as_deref().unwrap_or("(none)")
        ),
        format!("api_base: {}", running.base_url()),
        format!(
            "token_ttl: {}",
            clock::ttl_text(a.token_ttl, "until 03:30 IST")
        ),
        "approve: POST /_sandbox/approve (the person taps Approve)".to_string(),
    ];
    server::run_until_stopped(running, lines).await
}
