//! `warden sandbox dhan`: a local DhanHQ v2 (auth.dhan.co and api.dhan.co/v2 on one
//! listener, so `auth_base` = `http://ADDR` and `api_base` = `http://ADDR/v2`). Facts from
//! `brokers/dhan.md`; docs/sandbox.md lists the readings taken where they are UNCONFIRMED.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    clock, faults, require_url, server, user, Broker, Check, Core, Denied, Fault, Kind, Running,
};
use super::{parse_duration, SandboxError};

pub const DEFAULT_CLIENT_ID: &str = "1100001234";
pub const DEFAULT_PIN: &str = "246810";
pub const DEFAULT_TOTP_SECRET: &str = "WARDENSANDBOXTOTPSECRETDHANAB234";
pub const DEFAULT_APP_ID: &str = "dhan-sandbox-app";
pub const DEFAULT_APP_SECRET: &str = "dhan-sandbox-app-secret";
pub const DEFAULT_REDIRECT_URL: &str = "http://127.0.0.1:9180/dhan/callback";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9192";
/// "Token can be generated once every 2 minutes."
pub const MINT_INTERVAL: &str = "2m";
/// Consents a client may generate per day (DOC).
const CONSENTS_PER_DAY: u32 = 25;
const CONSENT_TTL: Duration = Duration::from_secs(600);

/// Command-line options of `warden sandbox dhan`.
#[derive(Debug, Clone, clap::Args)]
pub struct DhanArgs {
    /// Address to listen on (port 0 picks a free port; the real one is printed)
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Lifetime of an access token (Dhan: 24 h from issue)
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub token_ttl: Duration,
    /// Least time between two successful generateAccessToken calls of one client
    #[arg(long, default_value = MINT_INTERVAL, value_parser = parse_duration)]
    pub mint_interval: Duration,
    /// The one client (dhanClientId) who can log in
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// That client's PIN
    #[arg(long, default_value = DEFAULT_PIN)]
    pub pin: String,
    /// That client's TOTP secret (base32)
    #[arg(long, default_value = DEFAULT_TOTP_SECRET)]
    pub totp_secret: String,
    /// The API key's app_id (consent flow)
    #[arg(long, default_value = DEFAULT_APP_ID)]
    pub app_id: String,
    /// The API key's app_secret (consent flow)
    #[arg(long, default_value = DEFAULT_APP_SECRET)]
    pub app_secret: String,
    /// The app's redirect URL (where the consent login sends the browser with `tokenId`)
    #[arg(long, default_value = DEFAULT_REDIRECT_URL)]
    pub redirect_url: String,
}

impl Default for DhanArgs {
    fn default() -> Self {
        DhanArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_ttl: Duration::from_secs(24 * 3600),
            mint_interval: Duration::from_secs(120),
            client_id: DEFAULT_CLIENT_ID.into(),
            pin: DEFAULT_PIN.into(),
            totp_secret: DEFAULT_TOTP_SECRET.into(),
            app_id: DEFAULT_APP_ID.into(),
            app_secret: DEFAULT_APP_SECRET.into(),
            redirect_url: DEFAULT_REDIRECT_URL.into(),
        }
    }
}

struct Consent {
    created: Instant,
    /// Set by the browser login; consumed once.
    token_id: Option<String>,
}

#[derive(Default)]
struct Own {
    last_mint: Option<Instant>,
    consents: HashMap<String, Consent>,
    consents_today: u32,
}

/// The simulated Dhan.
pub struct Dhan {
    core: Core,
    pub args: DhanArgs,
    own: Mutex<Own>,
}

impl Broker for Dhan {
    fn core(&self) -> &Core {
        &self.core
    }
    fn fault_response(&self, fault: &Fault) -> Response {
        let code = match fault.status {
            429 => "DH-904",
            400 => "DH-905",
            _ => "DH-908",
        };
        api_error(
            fault.status,
            "Internal_Server_Error",
            code,
            &faults::message(fault),
        )
    }
    fn reset(&self) {
        *self.own() = Own::default();
    }
}

/// The REST error shape `{"errorType","errorCode","errorMessage"}`.
fn api_error(status: u16, error_type: &str, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({"errorType": error_type, "errorCode": code, "errorMessage": message});
    (status, Json(body)).into_response()
}

/// Wrong `app_id`/`app_secret` headers on the consent endpoints.
fn bad_app() -> Response {
    let body = json!({"status": "error", "message": "Invalid app_id or app_secret"});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// The auth host's failure shape: HTTP 200 with `status: error`.
fn auth_error(message: &str) -> Response {
    Json(json!({"status": "error", "message": message})).into_response()
}

fn denied_message(d: Denied) -> &'static str {
    match d {
        Denied::UnknownUser => "Invalid Client ID",
        Denied::WrongPin => "Invalid Pin",
        Denied::WrongTotp => "Invalid TOTP",
        Denied::ReplayedTotp => "TOTP already used. Wait for the next one.",
        Denied::Locked => "Your account is locked after too many failed attempts. Reset your PIN.",
    }
}

impl Dhan {
    fn own(&self) -> std::sync::MutexGuard<'_, Own> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn app_ok(&self, headers: &HeaderMap) -> bool {
        header_str(headers, "app_id") == Some(self.args.app_id.as_str())
            && header_str(headers, "app_secret") == Some(self.args.app_secret.as_str())
    }

    /// A new token: kills the client's previous one (one live token per client).
    fn mint(&self) -> Value {
        let c = &self.core.user;
        let claims = json!({
            "iss": "dhan",
            "dhanClientId": c.id,
            "tokenConsumerType": "APP",
            "partnerId": "",
            "webhookUrl": "",
        });
        let (token, exp) = self
            .core
            .issue(&c.id, Kind::Access, self.args.token_ttl, claims, true);
        json!({
            "dhanClientId": c.id,
            "dhanClientName": c.name,
            "dhanClientUcc": "SBX1234",
            "givenPowerOfAttorney": false,
            "accessToken": token,
            "expiryTime": clock::ist_format(exp, "%Y-%m-%dT%H:%M:%S"),
        })
    }
}

async fn generate_access_token(State(d): State<Arc<Dhan>>, Query(q): Query<Params>) -> Response {
    let client = field(&q, "dhanClientId");
    if client != d.core.user.id {
        d.core.bump("mint_fail");
        return auth_error(denied_message(Denied::UnknownUser));
    }
    // The 2-minute rule comes first: a too-early call costs no strike and spends no code.
    if let Some(last) = d.own().last_mint {
        if last.elapsed() < d.args.mint_interval {
            d.core.bump("mint_too_soon");
            return auth_error("Token can be generated once every 2 minutes.");
        }
    }
    if let Err(why) = d
        .core
        .check_login(client, field(&q, "pin"), Some(field(&q, "totp")))
    {
        d.core.bump("mint_fail");
        return auth_error(denied_message(why));
    }
    d.own().last_mint = Some(Instant::now());
    Json(d.mint()).into_response()
}

async fn generate_consent(
    State(d): State<Arc<Dhan>>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> Response {
    if !d.app_ok(&headers) {
        return bad_app();
    }
    if field(&q, "client_id") != d.core.user.id {
        let body = json!({"status": "error", "message": "Invalid Client ID"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let mut own = d.own();
    if own.consents_today >= CONSENTS_PER_DAY {
        let body = json!({"status": "error", "message": "Consent limit reached for today"});
        return (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    }
    own.consents_today += 1;
    own.consents
        .retain(|_, c| c.created.elapsed() < CONSENT_TTL);
    let id = uuid_like();
    own.consents.insert(
        id.clone(),
        Consent {
            created: Instant::now(),
            token_id: None,
        },
    );
    Json(json!({"consentAppId": id, "consentAppStatus": "GENERATED", "status": "success"}))
        .into_response()
}

fn uuid_like() -> String {
    let hex: String = (0..32).map(|_| fastrand::digit(16)).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

const CONSENT_LOGIN: &str = "/login/consentApp-login";

async fn consent_page(State(d): State<Arc<Dhan>>, Query(q): Query<Params>) -> Response {
    let id = field(&q, "consentAppId");
    if !d.own().consents.contains_key(id) {
        return api_error(400, "Input_Exception", "DH-905", "Invalid consentAppId");
    }
    login_page("Dhan", CONSENT_LOGIN, &[("consentAppId", id)], None)
}

async fn consent_login(State(d): State<Arc<Dhan>>, body: axum::body::Bytes) -> Response {
    let f = form(&body);
    let id = field(&f, "consentAppId");
    let hidden = [("consentAppId", id)];
    if !d.own().consents.contains_key(id) {
        return login_page(
            "Dhan",
            CONSENT_LOGIN,
            &hidden,
            Some("This consent has expired."),
        );
    }
    let checked = form_login(&d.core, &f);
    if let Err(why) = checked {
        return login_page("Dhan", CONSENT_LOGIN, &hidden, Some(denied_message(why)));
    }
    let token_id = super::common::core::random_id(24);
    if let Some(c) = d.own().consents.get_mut(id) {
        c.token_id = Some(token_id.clone());
    }
    match with_query(
        &slash_before_query(&d.args.redirect_url),
        &[("tokenId", &token_id)],
    ) {
        Some(url) => found(&url),
        None => api_error(500, "Other_Error", "DH-910", "bad redirect URL"),
    }
}

async fn consume_consent(
    State(d): State<Arc<Dhan>>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> Response {
    if !d.app_ok(&headers) {
        return bad_app();
    }
    let token_id = field(&q, "tokenId");
    let mut own = d.own();
    let consent = own
        .consents
        .iter()
        .find(|(_, c)| !token_id.is_empty() && c.token_id.as_deref() == Some(token_id))
        .map(|(k, _)| k.clone());
    let Some(consent) = consent else {
        let body = json!({"status": "error", "message": "Invalid or already used tokenId"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    own.consents.remove(&consent);
    drop(own);
    Json(d.mint()).into_response()
}

/// Dhan redirects to `<redirect_URL>/?tokenId=…` (DOC): a slash is added to the path.
fn slash_before_query(redirect: &str) -> String {
    match url::Url::parse(redirect) {
        Ok(mut u) if !u.path().ends_with('/') => {
            let path = format!("{}/", u.path());
            u.set_path(&path);
            u.to_string()
        }
        _ => redirect.to_string(),
    }
}

/// The token of `access-token`, if it is live and (when the header is sent) the client's.
// The Err is the finished HTTP answer, returned once per request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn authenticate(d: &Dhan, headers: &HeaderMap) -> Result<String, Response> {
    let token = header_str(headers, "access-token").unwrap_or("");
    let claimed = header_str(headers, "dhanClientId").or(header_str(headers, "client-id"));
    match d.core.check(token, Kind::Access) {
        Check::Live { user, .. } if claimed.is_none_or(|c| c == user) => Ok(user),
        Check::Unknown if token.split('.').count() != 3 => Err(api_error(
            401,
            "Invalid_Authentication",
            "DH-906",
            "Invalid Token",
        )),
        _ => Err(api_error(
            401,
            "Invalid_Authentication",
            "DH-901",
            "Client ID or user generated access token is invalid or expired.",
        )),
    }
}

async fn profile(State(d): State<Arc<Dhan>>, headers: HeaderMap) -> Response {
    let token = header_str(&headers, "access-token")
        .unwrap_or("")
        .to_string();
    match authenticate(&d, &headers) {
        Ok(user) => {
            d.core.bump("profile_ok");
            let exp = match d.core.check(&token, Kind::Access) {
                Check::Live { exp, .. } => exp,
                _ => 0,
            };
            Json(json!({
                "dhanClientId": user,
                "tokenValidity": clock::ist_format(exp, "%d/%m/%Y %H:%M"),
                "activeSegment": "Equity, Derivative, Currency, Commodity",
                "ddpi": "Deactive",
                "mtf": "Deactive",
                "dataPlan": "Active",
                "dataValidity": "2099-12-31 23:59:59.0",
            }))
            .into_response()
        }
        Err(r) => {
            d.core.bump("profile_fail");
            r
        }
    }
}

/// RenewToken works only for tokens made on Dhan Web; every token here is an APP token.
async fn renew_token(State(d): State<Arc<Dhan>>, headers: HeaderMap) -> Response {
    if let Err(r) = authenticate(&d, &headers) {
        return r;
    }
    api_error(
        400,
        "Input_Exception",
        "DH-905",
        "Renewal of token not allowed for this token type",
    )
}

async fn not_found() -> Response {
    api_error(404, "Input_Exception", "DH-905", "Route not found")
}

/// Bind and serve in the background of the current tokio runtime.
pub async fn spawn(args: DhanArgs) -> Result<Running<Dhan>, SandboxError> {
    require_url("--redirect-url", &args.redirect_url)?;
    let core = Core::new(user(&args.client_id, &args.pin, &args.totp_secret))?;
    let dhan = Arc::new(Dhan {
        core,
        args: args.clone(),
        own: Mutex::new(Own::default()),
    });
    let routes = Router::new()
        .route("/app/generateAccessToken", post(generate_access_token))
        .route("/app/generate-consent", post(generate_consent))
        .route(CONSENT_LOGIN, get(consent_page).post(consent_login))
        .route(
            "/app/consumeApp-consent",
            get(consume_consent).post(consume_consent),
        )
        .route("/v2/profile", get(profile))
        .route("/v2/RenewToken", get(renew_token).post(renew_token))
        .fallback(not_found)
        .with_state(dhan.clone());
    server::spawn(args.listen, dhan, routes).await
}

/// `warden sandbox dhan`: serve until SIGTERM/SIGINT.
pub async fn run(args: DhanArgs) -> Result<(), SandboxError> {
    let running = spawn(args).await?;
    let a = &running.broker.args;
    let lines = vec![
        format!("client_id: {}", a.client_id),
        format!("pin: {}", a.pin),
        format!("totp_secret: {}", a.totp_secret),
        format!("app_id: {}", a.app_id),
        format!("app_secret: {}", a.app_secret),
        format!("redirect_url: {}", a.redirect_url),
        format!("auth_base: {}", running.base_url()),
        format!("api_base: {}/v2", running.base_url()),
        format!("token_ttl: {}", humantime::format_duration(a.token_ttl)),
        format!(
            "mint_interval: {}",
            humantime::format_duration(a.mint_interval)
        ),
    ];
    server::run_until_stopped(running, lines).await
}
