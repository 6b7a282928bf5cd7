//! `warden sandbox angelone`: a local Angel One SmartAPI (apiconnect.angelone.in and the
//! publisher login of smartapi.angelone.in on one listener, so `api_base` = `login_base` =
//! `http://ADDR`). Facts from `brokers/angelone.md`; docs/sandbox.md lists the readings taken
//! where they are UNCONFIRMED.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::common::page::{
    field, form, form_login, found, header_str, login_page, with_query, Params,
};
use super::common::{
    faults, require_url, server, user, Broker, Check, Core, Denied, Fault, Kind, Running,
};
use super::{parse_duration, SandboxError};

pub const DEFAULT_API_KEY: &str = "angelsbx";
pub const DEFAULT_CLIENT_CODE: &str = "S123456";
pub const DEFAULT_PIN: &str = "1357";
pub const DEFAULT_TOTP_SECRET: &str = "WARDENSANDBOXTOTPSECRETANGELB234";
pub const DEFAULT_REDIRECT_URL: &str = "http://127.0.0.1:9180/angelone/callback";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9191";

const LOGIN: &str = "/rest/auth/angelbroking/user/v1/loginByPassword";
const GENERATE_TOKENS: &str = "/rest/auth/angelbroking/jwt/v1/generateTokens";
const PROFILE: &str = "/rest/secure/angelbroking/user/v1/getProfile";
const LOGOUT: &str = "/rest/secure/angelbroking/user/v1/logout";
const PUBLISHER_LOGIN: &str = "/publisher-login";

/// Command-line options of `warden sandbox angelone`.
#[derive(Debug, Clone, clap::Args)]
pub struct AngeloneArgs {
    /// Address to listen on (port 0 picks a free port; the real one is printed)
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Lifetime of a JWT (its `exp`), of the feed token and of the refresh token
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub token_ttl: Duration,
    /// The app's API key (sent as X-PrivateKey)
    #[arg(long, default_value = DEFAULT_API_KEY)]
    pub api_key: String,
    /// The one client code that can log in
    #[arg(long, default_value = DEFAULT_CLIENT_CODE)]
    pub client_code: String,
    /// That client's PIN (the `password` of loginByPassword)
    #[arg(long, default_value = DEFAULT_PIN)]
    pub pin: String,
    /// That client's TOTP secret (base32)
    #[arg(long, default_value = DEFAULT_TOTP_SECRET)]
    pub totp_secret: String,
    /// The app's registered redirect URL (where publisher login sends the browser)
    #[arg(long, default_value = DEFAULT_REDIRECT_URL)]
    pub redirect_url: String,
}

impl Default for AngeloneArgs {
    fn default() -> Self {
        AngeloneArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_ttl: Duration::from_secs(24 * 3600),
            api_key: DEFAULT_API_KEY.into(),
            client_code: DEFAULT_CLIENT_CODE.into(),
            pin: DEFAULT_PIN.into(),
            totp_secret: DEFAULT_TOTP_SECRET.into(),
            redirect_url: DEFAULT_REDIRECT_URL.into(),
        }
    }
}

/// The simulated Angel One.
pub struct AngelOne {
    core: Core,
    pub args: AngeloneArgs,
}

impl Broker for AngelOne {
    fn core(&self) -> &Core {
        &self.core
    }
    /// 403 is Angel One's rate limit: a plain-text body, not JSON. Others: the standard dialect.
    fn fault_response(&self, fault: &Fault) -> Response {
        if fault.status == 403 {
            let text = "Access denied because of exceeding access rate";
            return (StatusCode::FORBIDDEN, text).into_response();
        }
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        (status, failure("AB1004", &faults::message(fault))).into_response()
    }
}

/// The standard dialect: `{"status":false,"message","errorcode","data":null}` (HTTP 200).
fn failure(code: &str, message: &str) -> Response {
    Json(json!({"status": false, "message": message, "errorcode": code, "data": null}))
        .into_response()
}

fn success(data: Value) -> Response {
    Json(json!({"status": true, "message": "SUCCESS", "errorcode": "", "data": data}))
        .into_response()
}

/// The gateway dialect for a dead or missing token: HTTP 200 with `success`/`errorCode`.
fn gateway_failure(code: &str, message: &str) -> Response {
    Json(json!({"success": false, "message": message, "errorCode": code, "data": ""}))
        .into_response()
}

fn denied(d: Denied) -> Response {
    match d {
        Denied::UnknownUser => failure("AB1032", "User Not Found"),
        Denied::WrongPin => failure("AB1007", "Login Id or password is invalid"),
        Denied::WrongTotp | Denied::ReplayedTotp => failure("AB1050", "Invalid totp"),
        Denied::Locked => failure("AB1006", "Client is block for trading"),
    }
}

impl AngelOne {
    fn api_key_ok(&self, headers: &HeaderMap) -> bool {
        header_str(headers, "x-privatekey") == Some(self.args.api_key.as_str())
    }

    /// jwtToken + refreshToken + feedToken; a new session kills the client's older ones.
    fn session(&self) -> Value {
        let user = self.core.user.id.clone();
        let ttl = self.args.token_ttl;
        let claims = |kind: &str| json!({"username": user, "sub": user, "token": kind, "API-KEY": self.args.api_key, "iss": "trade_login_service"});
        let (jwt, _) =
            self.core
                .issue(&user, Kind::Access, ttl, claims("trade_access_token"), true);
        let (refresh, _) = self.core.issue(
            &user,
            Kind::Refresh,
            ttl,
            claims("trade_refresh_token"),
            true,
        );
        let (feed, _) = self
            .core
            .issue(&user, Kind::Side, ttl, claims("feed_token"), true);
        json!({"jwtToken": jwt, "refreshToken": refresh, "feedToken": feed})
    }

    /// The client of a live `Authorization: Bearer` JWT, or the gateway's answer.
    // The Err is the finished HTTP answer, returned once per request: boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    fn bearer(&self, headers: &HeaderMap) -> Result<String, Response> {
        let Some(auth) = header_str(headers, "authorization") else {
            return Err(gateway_failure("AG8003", "Token missing"));
        };
        let token = auth.strip_prefix("Bearer ").unwrap_or(auth).trim();
        match self.core.check(token, Kind::Access) {
            Check::Live { user, .. } => Ok(user),
            Check::Expired => Err(gateway_failure("AG8002", "Token Expired")),
            Check::Revoked | Check::Unknown => Err(gateway_failure("AG8001", "Invalid Token")),
        }
    }
}

/// A JSON body, or an empty object for anything else (the real API answers such calls with
/// its own "invalid" messages, which the checks below produce).
fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| json!({}))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

async fn login(State(a): State<Arc<AngelOne>>, headers: HeaderMap, body: Bytes) -> Response {
    if !a.api_key_ok(&headers) {
        return failure("AG8004", "Invalid API Key");
    }
    let b = json_body(&body);
    let checked = a.core.check_login(
        str_of(&b, "clientcode"),
        str_of(&b, "password"),
        Some(str_of(&b, "totp")),
    );
    if let Err(why) = checked {
        return denied(why);
    }
    let mut data = a.session();
    data["state"] = b.get("state").cloned().unwrap_or(Value::Null);
    success(data)
}

/// New JWT and feed token (and a new refresh token) for a live refresh token. The bearer JWT
/// the SDK sends may already be dead: refreshing is what it is for.
async fn generate_tokens(
    State(a): State<Arc<AngelOne>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !a.api_key_ok(&headers) {
        return failure("AG8004", "Invalid API Key");
    }
    let b = json_body(&body);
    match a.core.check(str_of(&b, "refreshToken"), Kind::Refresh) {
        Check::Live { .. } => {
            a.core.bump("refresh_ok");
            success(a.session())
        }
        Check::Expired => {
            a.core.bump("refresh_fail");
            failure("AB8051", "Refresh Token Expired")
        }
        _ => {
            a.core.bump("refresh_fail");
            failure("AB8050", "Invalid Refresh Token")
        }
    }
}

/// The SDK sends its parameters as a JSON query string here; they are ignored.
async fn profile(State(a): State<Arc<AngelOne>>, headers: HeaderMap) -> Response {
    match a.bearer(&headers) {
        Ok(user) if a.api_key_ok(&headers) => {
            a.core.bump("profile_ok");
            success(json!({
                "clientcode": user,
                "name": a.core.user.name,
                "email": "",
                "mobileno": "",
                "exchanges": ["nse_cm", "bse_cm", "nse_fo"],
                "products": ["MARGIN", "MIS", "NRML", "CNC", "CO", "BO"],
                "lastlogintime": "",
                "brokerid": "B2C",
            }))
        }
        Ok(_) => failure("AG8004", "Invalid API Key"),
        Err(r) => {
            a.core.bump("profile_fail");
            r
        }
    }
}

async fn logout(State(a): State<Arc<AngelOne>>, headers: HeaderMap) -> Response {
    if let Err(r) = a.bearer(&headers) {
        return r;
    }
    let auth = header_str(&headers, "authorization").unwrap_or("");
    a.core
        .revoke(auth.strip_prefix("Bearer ").unwrap_or(auth).trim());
    a.core.bump("logouts");
    Json(json!({"status": true, "message": "SUCCESS", "errorcode": "", "data": ""})).into_response()
}

async fn publisher_page(State(a): State<Arc<AngelOne>>, Query(q): Query<Params>) -> Response {
    if field(&q, "api_key") != a.args.api_key {
        return failure("AG8004", "Invalid API Key");
    }
    let hidden = [
        ("api_key", field(&q, "api_key")),
        ("state", field(&q, "state")),
    ];
    login_page("Angel One", PUBLISHER_LOGIN, &hidden, None)
}

/// The browser form: same checks and strikes as loginByPassword, then the redirect with
/// `auth_token` and `feed_token` (no refresh token: none is documented for this flow).
async fn publisher_login(State(a): State<Arc<AngelOne>>, body: Bytes) -> Response {
    let f = form(&body);
    let hidden = [
        ("api_key", field(&f, "api_key")),
        ("state", field(&f, "state")),
    ];
    if field(&f, "api_key") != a.args.api_key {
        return login_page(
            "Angel One",
            PUBLISHER_LOGIN,
            &hidden,
            Some("Invalid API Key"),
        );
    }
    let checked = form_login(&a.core, &f);
    if let Err(why) = checked {
        let msg = match why {
            Denied::Locked => "Client is block for trading",
            Denied::WrongTotp | Denied::ReplayedTotp => "Invalid totp",
            _ => "Login Id or password is invalid",
        };
        return login_page("Angel One", PUBLISHER_LOGIN, &hidden, Some(msg));
    }
    let s = a.session();
    let mut pairs = vec![
        ("auth_token", str_of(&s, "jwtToken")),
        ("feed_token", str_of(&s, "feedToken")),
    ];
    if !field(&f, "state").is_empty() {
        pairs.push(("state", field(&f, "state")));
    }
    match with_query(&a.args.redirect_url, &pairs) {
        Some(url) => found(&url),
        None => failure("AB2001", "Internal Error"),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        failure("AB2000", "Error not specified"),
    )
        .into_response()
}

/// Bind and serve in the background of the current tokio runtime.
pub async fn spawn(args: AngeloneArgs) -> Result<Running<AngelOne>, SandboxError> {
    require_url("--redirect-url", &args.redirect_url)?;
    let core = Core::new(user(&args.client_code, &args.pin, &args.totp_secret))?;
    let angel = Arc::new(AngelOne {
        core,
        args: args.clone(),
    });
    let routes = Router::new()
        .route(LOGIN, post(login))
        .route(GENERATE_TOKENS, post(generate_tokens))
        .route(PROFILE, get(profile))
        .route(LOGOUT, post(logout))
        .route(PUBLISHER_LOGIN, get(publisher_page).post(publisher_login))
        .fallback(not_found)
        .with_state(angel.clone());
    server::spawn(args.listen, angel, routes).await
}

/// `warden sandbox angelone`: serve until SIGTERM/SIGINT.
pub async fn run(args: AngeloneArgs) -> Result<(), SandboxError> {
    let running = spawn(args).await?;
    let a = &running.broker.args;
    let lines = vec![
        format!("api_key: {}", a.api_key),
        format!("client_code: {}", a.client_code),
        format!("pin: {}", a.pin),
        format!("totp_secret: {}", a.totp_secret),
        format!("redirect_url: {}", a.redirect_url),
        format!("api_base: {}", running.base_url()),
        format!("login_base: {}", running.base_url()),
        format!("token_ttl: {}", humantime::format_duration(a.token_ttl)),
    ];
    server::run_until_stopped(running, lines).await
}
