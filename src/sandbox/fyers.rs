//! `warden sandbox fyers`: a local Fyers API v3 (the `/api/v3` paths of api-t1.fyers.in on one
//! listener, so `api_base` = `http://ADDR/api/v3`). Facts from `brokers/fyers.md`;
//! docs/sandbox.md lists the readings taken where they are UNCONFIRMED.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::common::page::{
    field, form, form_login, found, header_str, login_page, with_query, Params,
};
use super::common::{
    clock, faults, require_url, server, user, Broker, Check, Core, Denied, Fault, Kind, Running,
};
use super::{parse_duration, SandboxError};

pub const DEFAULT_CLIENT_ID: &str = "SBXAPP1234-100";
pub const DEFAULT_SECRET_KEY: &str = "fyers-sandbox-secret";
pub const DEFAULT_USER_ID: &str = "XF01234";
pub const DEFAULT_PIN: &str = "9753";
pub const DEFAULT_TOTP_SECRET: &str = "WARDENSANDBOXTOTPSECRETFYERSAB23";
pub const DEFAULT_REDIRECT_URL: &str = "http://127.0.0.1:9180/fyers/callback";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9194";

const AUTHCODE: &str = "/api/v3/generate-authcode";
/// An auth code's lifetime (`exp = iat + 30000 s` in decoded samples).
const AUTH_CODE_TTL: Duration = Duration::from_secs(30_000);
const REFRESH_DISABLED: &str =
    "Refresh token API is currently disabled to comply with SEBI regulations.";

/// Command-line options of `warden sandbox fyers`.
#[derive(Debug, Clone, clap::Args)]
pub struct FyersArgs {
    /// Address to listen on (port 0 picks a free port; the real one is printed)
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Lifetime of an access token; without it, tokens die at 06:00 IST like Fyers'
    #[arg(long, value_parser = parse_duration)]
    pub token_ttl: Option<Duration>,
    /// Lifetime of a refresh token (Fyers: 15 days)
    #[arg(long, default_value = "15d", value_parser = parse_duration)]
    pub refresh_ttl: Duration,
    /// Answer validate-refresh-token with Fyers' "disabled" error from the start
    #[arg(long)]
    pub refresh_disabled: bool,
    /// The app id, with its `-100` suffix
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// The app's secret key
    #[arg(long, default_value = DEFAULT_SECRET_KEY)]
    pub secret_key: String,
    /// The one user (fy_id) who can log in
    #[arg(long, default_value = DEFAULT_USER_ID)]
    pub user_id: String,
    /// That user's PIN
    #[arg(long, default_value = DEFAULT_PIN)]
    pub pin: String,
    /// That user's TOTP secret (base32; the login page)
    #[arg(long, default_value = DEFAULT_TOTP_SECRET)]
    pub totp_secret: String,
    /// The app's registered redirect URL
    #[arg(long, default_value = DEFAULT_REDIRECT_URL)]
    pub redirect_url: String,
}

impl Default for FyersArgs {
    fn default() -> Self {
        FyersArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_ttl: None,
            refresh_ttl: Duration::from_secs(15 * 24 * 3600),
            refresh_disabled: false,
            client_id: DEFAULT_CLIENT_ID.into(),
            secret_key: DEFAULT_SECRET_KEY.into(),
            user_id: DEFAULT_USER_ID.into(),
            pin: DEFAULT_PIN.into(),
            totp_secret: DEFAULT_TOTP_SECRET.into(),
            redirect_url: DEFAULT_REDIRECT_URL.into(),
        }
    }
}

/// The simulated Fyers.
pub struct Fyers {
    core: Core,
    pub args: FyersArgs,
    refresh_disabled: AtomicBool,
}

impl Broker for Fyers {
    fn core(&self) -> &Core {
        &self.core
    }
    fn fault_response(&self, fault: &Fault) -> Response {
        error(fault.status, -201, &faults::message(fault))
    }
    fn reset(&self) {
        self.refresh_disabled
            .store(self.args.refresh_disabled, Ordering::Relaxed);
    }
}

/// Fyers' error shape `{"s":"error","code":<negative>,"message"}`.
fn error(status: u16, code: i64, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"s": "error", "code": code, "message": message})),
    )
        .into_response()
}

fn ok(mut extra: Value) -> Response {
    extra["s"] = json!("ok");
    extra["code"] = json!(200);
    if extra.get("message").is_none() {
        extra["message"] = json!("");
    }
    Json(extra).into_response()
}

/// hex(sha256("APPID-100:secret")): what the SDK's `get_hash` sends as `appIdHash`.
pub fn app_id_hash(client_id: &str, secret_key: &str) -> String {
    hex::encode(Sha256::digest(
        format!("{client_id}:{secret_key}").as_bytes(),
    ))
}

impl Fyers {
    fn ttl(&self) -> Duration {
        self.args
            .token_ttl
            .unwrap_or_else(|| clock::until_next_ist(jiff::Timestamp::now(), 6, 0))
    }

    fn hash_ok(&self, b: &Value) -> bool {
        b.get("appIdHash").and_then(Value::as_str)
            == Some(app_id_hash(&self.args.client_id, &self.args.secret_key).as_str())
    }

    /// A new access token (with the `hsm_key` the SDK's data socket looks for); kills the
    /// user's previous one.
    fn access_token(&self, user: &str) -> String {
        let claims = json!({
            "iss": "api.fyers.in", "sub": "access_token", "aud": [], "fy_id": user,
            "appType": 100, "hsm_key": hex::encode(fastrand::u64(..).to_be_bytes()),
        });
        self.core
            .issue(user, Kind::Access, self.ttl(), claims, true)
            .0
    }

    /// The user of `Authorization: APPID:TOKEN`, or Fyers' answer.
    // The Err is the finished HTTP answer, returned once per request: boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    fn authenticate(&self, headers: &HeaderMap) -> Result<String, Response> {
        let auth = header_str(headers, "authorization").unwrap_or("");
        let Some((app, token)) = auth.split_once(':') else {
            return Err(error(401, -16, "Could not authenticate the user"));
        };
        if app != self.args.client_id {
            return Err(error(401, -16, "Could not authenticate the user"));
        }
        match self.core.check(token.trim(), Kind::Access) {
            Check::Live { user, .. } => Ok(user),
            Check::Expired => Err(error(
                401,
                -8,
                "Your token has expired. Please generate a token",
            )),
            Check::Revoked => Err(error(401, -17, "Could not authenticate the user")),
            Check::Unknown => Err(error(401, -15, "Invalid token")),
        }
    }
}

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| json!({}))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn authcode_hidden(p: &Params) -> [(&str, &str); 3] {
    [
        ("client_id", field(p, "client_id")),
        ("redirect_uri", field(p, "redirect_uri")),
        ("state", field(p, "state")),
    ]
}

impl Fyers {
    // The Err is the finished HTTP answer, returned once per request: boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    fn app_ok(&self, p: &Params) -> Result<(), Response> {
        if field(p, "client_id") != self.args.client_id {
            return Err(error(400, -352, "Invalid App ID"));
        }
        if field(p, "redirect_uri") != self.args.redirect_url {
            return Err(error(400, -352, "Invalid redirect_uri for this App ID"));
        }
        Ok(())
    }
}

async fn authcode_page(State(f): State<Arc<Fyers>>, Query(q): Query<Params>) -> Response {
    if let Err(r) = f.app_ok(&q) {
        return r;
    }
    login_page("Fyers", AUTHCODE, &authcode_hidden(&q), None)
}

/// The browser form, then the redirect with `auth_code` and the same `state`.
async fn authcode_login(State(f): State<Arc<Fyers>>, body: Bytes) -> Response {
    let p = form(&body);
    if let Err(r) = f.app_ok(&p) {
        return r;
    }
    if let Err(why) = form_login(&f.core, &p) {
        let msg = match why {
            Denied::Locked => "Your account is locked after too many failed attempts.",
            Denied::WrongTotp | Denied::ReplayedTotp => "Invalid TOTP.",
            _ => "Invalid user id or PIN.",
        };
        return login_page("Fyers", AUTHCODE, &authcode_hidden(&p), Some(msg));
    }
    let claims = json!({"iss": "api.login.fyers.in", "sub": "auth_code", "aud": f.args.client_id, "fy_id": f.core.user.id});
    let (code, _) = f
        .core
        .issue(&f.core.user.id, Kind::Side, AUTH_CODE_TTL, claims, false);
    let pairs = [
        ("s", "ok"),
        ("code", "200"),
        ("auth_code", code.as_str()),
        ("state", field(&p, "state")),
    ];
    match with_query(&f.args.redirect_url, &pairs) {
        Some(url) => found(&url),
        None => error(500, -201, "bad redirect URL"),
    }
}

async fn validate_authcode(State(f): State<Arc<Fyers>>, body: Bytes) -> Response {
    let b = json_body(&body);
    if !f.hash_ok(&b) {
        f.core.bump("exchange_fail");
        return error(
            400,
            -371,
            "Please provide sha256 hash of appId and app secret",
        );
    }
    let code = str_of(&b, "code");
    if code.is_empty() {
        f.core.bump("exchange_fail");
        return error(400, -374, "Please provide authorization code.");
    }
    // Single use: any presentation spends it.
    let user = match f.core.check(code, Kind::Side) {
        Check::Live { user, .. } if str_of(&b, "grant_type") == "authorization_code" => user,
        _ => {
            f.core.revoke(code);
            f.core.bump("exchange_fail");
            return error(400, -374, "Invalid or expired authorization code.");
        }
    };
    f.core.revoke(code);
    let access = f.access_token(&user);
    let claims =
        json!({"iss": "api.fyers.in", "sub": "refresh_token", "fy_id": user, "appType": 100});
    let (refresh, _) = f
        .core
        .issue(&user, Kind::Refresh, f.args.refresh_ttl, claims, true);
    ok(json!({"access_token": access, "refresh_token": refresh}))
}

async fn validate_refresh_token(State(f): State<Arc<Fyers>>, body: Bytes) -> Response {
    if f.refresh_disabled.load(Ordering::Relaxed) {
        f.core.bump("refresh_fail");
        return error(400, -16, REFRESH_DISABLED);
    }
    let b = json_body(&body);
    if !f.hash_ok(&b) {
        f.core.bump("refresh_fail");
        return error(
            400,
            -371,
            "Please provide sha256 hash of appId and app secret",
        );
    }
    let user = match f.core.check(str_of(&b, "refresh_token"), Kind::Refresh) {
        Check::Live { user, .. } if str_of(&b, "grant_type") == "refresh_token" => user,
        Check::Expired => {
            f.core.bump("refresh_fail");
            return error(
                400,
                -8,
                "Your refresh token has expired. Please log in again.",
            );
        }
        _ => {
            f.core.bump("refresh_fail");
            return error(400, -17, "Invalid refresh token.");
        }
    };
    if let Err(why) = f.core.check_login(&user, str_of(&b, "pin"), None) {
        f.core.bump("refresh_fail");
        let msg = if why == Denied::Locked {
            "Your account is locked after too many failed attempts."
        } else {
            "Invalid PIN"
        };
        return error(400, -1006, msg);
    }
    f.core.bump("refresh_ok");
    ok(json!({"access_token": f.access_token(&user)}))
}

async fn profile(State(f): State<Arc<Fyers>>, headers: HeaderMap) -> Response {
    match f.authenticate(&headers) {
        Ok(user) => {
            f.core.bump("profile_ok");
            ok(json!({"data": {
                "name": f.core.user.name, "image": null, "display_name": null,
                "email_id": "sandbox@example.invalid", "PAN": "XXXXX0000X", "fy_id": user,
                "pin_change_date": "", "mobile_number": "", "totp": true,
                "pwd_change_date": null, "pwd_to_expire": 90,
                "ddpi_enabled": false, "mtf_enabled": false,
            }}))
        }
        Err(r) => {
            f.core.bump("profile_fail");
            r
        }
    }
}

async fn logout(State(f): State<Arc<Fyers>>, headers: HeaderMap) -> Response {
    if let Err(r) = f.authenticate(&headers) {
        return r;
    }
    let auth = header_str(&headers, "authorization").unwrap_or("");
    if let Some((_, token)) = auth.split_once(':') {
        f.core.revoke(token.trim());
    }
    f.core.bump("logouts");
    ok(json!({"message": "you are successfully logged out"}))
}

/// `POST /_sandbox/refresh-api?enabled=false|true`: Fyers switching the refresh API off.
async fn ctl_refresh_api(State(f): State<Arc<Fyers>>, Query(q): Query<Params>) -> Response {
    let enabled = match field(&q, "enabled") {
        "true" => true,
        "false" => false,
        _ => {
            let msg = "enabled=true or enabled=false";
            return (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response();
        }
    };
    f.refresh_disabled.store(!enabled, Ordering::Relaxed);
    Json(json!({"refresh_api_enabled": enabled})).into_response()
}

async fn not_found() -> Response {
    error(404, -201, "Not found")
}

/// Bind and serve in the background of the current tokio runtime.
pub async fn spawn(args: FyersArgs) -> Result<Running<Fyers>, SandboxError> {
    require_url("--redirect-url", &args.redirect_url)?;
    let core = Core::new(user(
        &args.user_id.trim().to_ascii_uppercase(),
        &args.pin,
        &args.totp_secret,
    ))?;
    let fyers = Arc::new(Fyers {
        core,
        refresh_disabled: AtomicBool::new(args.refresh_disabled),
        args: args.clone(),
    });
    let routes = Router::new()
        .route(AUTHCODE, get(authcode_page).post(authcode_login))
        .route("/api/v3/validate-authcode", post(validate_authcode))
        .route(
            "/api/v3/validate-refresh-token",
            post(validate_refresh_token),
        )
        .route("/api/v3/profile", get(profile))
        .route("/api/v3/logout", post(logout))
        .route("/_sandbox/refresh-api", post(ctl_refresh_api))
        .fallback(not_found)
        .with_state(fyers.clone());
    server::spawn(args.listen, fyers, routes).await
}

/// `warden sandbox fyers`: serve until SIGTERM/SIGINT.
pub async fn run(args: FyersArgs) -> Result<(), SandboxError> {
    let running = spawn(args).await?;
    let a = &running.broker.args;
    let lines = vec![
        format!("client_id: {}", a.client_id),
        format!("secret_key: {}", a.secret_key),
        format!("user_id: {}", running.broker.core().user.id),
        format!("pin: {}", a.pin),
        format!("totp_secret: {}", a.totp_secret),
        format!("redirect_url: {}", a.redirect_url),
        format!("api_base: {}/api/v3", running.base_url()),
        format!(
            "token_ttl: {}",
            clock::ttl_text(a.token_ttl, "until 06:00 IST")
        ),
        format!("refresh_ttl: {}", humantime::format_duration(a.refresh_ttl)),
    ];
    server::run_until_stopped(running, lines).await
}
