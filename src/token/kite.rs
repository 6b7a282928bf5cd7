//! Kite Connect API client: session exchange, profile (the validity check), logout, and the
//! classification of every broker answer into [`ErrorClass`].
//!
//! Nothing here logs. Errors carry the step, the HTTP status, Kite's `error_type` and
//! `message`, and URLs with their query string removed, never a token or a secret: the one
//! URL that must carry a token (`DELETE /session/token?…&access_token=…`, Kite's protocol) is
//! only ever reported without its query.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{KiteConfig, Secret};

/// Per-request budget for broker calls unless [`KiteClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Broker messages are short; anything longer is a page we do not want in a log line.
const MAX_MESSAGE_CHARS: usize = 200;

/// What the caller should do about a failed broker call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The access (or request) token is expired or invalidated: obtain a new one.
    TokenBad,
    /// The broker rejected who we are (password, 2FA, blocked account, permission, api_secret)
    /// or the login flow changed under us: a person must act. Never retry automatically.
    Credential,
    /// Rate limits, broker outages, timeouts, unreadable answers: retry later within a budget.
    Transient,
}

/// Which broker call an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST {login_base}/api/login`
    Login,
    /// `POST {login_base}/api/twofa`
    Twofa,
    /// `GET {login_base}/connect/login` and the redirects after it
    Connect,
    /// `POST {api_base}/session/token`
    Exchange,
    /// `GET {api_base}/user/profile`
    Profile,
    /// `DELETE {api_base}/session/token`
    Logout,
}

impl Step {
    /// Steps that submit credentials: any refusal there is a credential problem.
    fn is_login(self) -> bool {
        matches!(self, Step::Login | Step::Twofa | Step::Connect)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Login => "login (POST /api/login)",
            Step::Twofa => "2FA (POST /api/twofa)",
            Step::Connect => "connect (GET /connect/login)",
            Step::Exchange => "session exchange (POST /session/token)",
            Step::Profile => "profile (GET /user/profile)",
            Step::Logout => "logout (DELETE /session/token)",
        })
    }
}

/// Every way a broker call can fail. See [`BrokerError::class`] for what each means.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Kite answered with its error envelope `{"status":"error","message","error_type"}`.
    #[error("{step}: HTTP {status} {error_type}: {message}")]
    Rejected {
        step: Step,
        status: u16,
        error_type: String,
        message: String,
    },
    /// An error status without Kite's envelope (a proxy page, a load balancer).
    #[error("{step}: HTTP {status} without a Kite error body")]
    HttpStatus { step: Step, status: u16 },
    /// A body that is not the JSON Kite sends.
    #[error("{step}: unreadable answer (HTTP {status}): {detail}")]
    Garbage {
        step: Step,
        status: u16,
        detail: String,
    },
    #[error("{step}: no answer from {url} within {timeout:?}")]
    Timeout {
        step: Step,
        url: String,
        timeout: Duration,
    },
    /// Connection refused, reset or closed before an answer.
    #[error("{step}: cannot talk to {url}: {detail}")]
    Network {
        step: Step,
        url: String,
        detail: String,
    },
    /// The login flow did not go the way Kite's flow goes (a consent page, a changed flow).
    #[error("{step}: {detail}")]
    UnexpectedFlow { step: Step, detail: String },
    /// [`crate::token::login::TotpLogin`] already submitted the current TOTP code (accepted
    /// or not) and never submits a code twice: wait `retry_in`, then try again.
    #[error("the current TOTP code was already submitted; a fresh code comes in {retry_in:?}")]
    TotpCodeUsed { retry_in: Duration },
    /// [`crate::token::login::TotpLogin`] refuses to run after a credential rejection.
    #[error("automated login is off after a credential rejection ({reason}); log in manually or fix the config")]
    LoginDisabled { reason: String },
    /// Unusable configuration (bad base URL, TOTP secret that is not base32, …).
    #[error("kite config: {0}")]
    Config(String),
}

impl BrokerError {
    /// How to react. The rules, in order:
    /// - HTTP 429 or 5xx (any body) → `Transient`: rate limit or broker trouble.
    /// - `TokenException` → `TokenBad`, except `Invalid checksum` on the exchange (a wrong
    ///   api_secret: `Credential`) and anything during the login steps (`Credential`).
    /// - any other Kite error (`PermissionException`, `InputException`, `UserException` for
    ///   a blocked account, …) → `Credential`.
    /// - a 4xx without Kite's envelope → `Credential` during the login steps (a refused
    ///   credential must never be retried), `Transient` elsewhere.
    /// - timeouts, network errors, unreadable bodies, a reused TOTP code → `Transient`.
    /// - an unexpected login flow, a disabled login, bad config → `Credential`.
    pub fn class(&self) -> ErrorClass {
        use ErrorClass::*;
        match self {
            BrokerError::Rejected {
                step,
                status,
                error_type,
                message,
            } => {
                if *status == 429 || *status >= 500 {
                    Transient
                } else if error_type == "TokenException" {
                    let checksum = message.to_ascii_lowercase().contains("checksum");
                    if step.is_login() || (*step == Step::Exchange && checksum) {
                        Credential
                    } else {
                        TokenBad
                    }
                } else {
                    Credential
                }
            }
            BrokerError::HttpStatus { step, status } => {
                if *status == 429 || *status >= 500 || !step.is_login() {
                    Transient
                } else {
                    Credential
                }
            }
            BrokerError::Garbage { .. }
            | BrokerError::Timeout { .. }
            | BrokerError::Network { .. }
            | BrokerError::TotpCodeUsed { .. } => Transient,
            BrokerError::UnexpectedFlow { .. }
            | BrokerError::LoginDisabled { .. }
            | BrokerError::Config(_) => Credential,
        }
    }

    /// The HTTP status, when the broker answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            BrokerError::Rejected { status, .. }
            | BrokerError::HttpStatus { status, .. }
            | BrokerError::Garbage { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Kite's `error_type`, when the broker sent its error envelope.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            BrokerError::Rejected { error_type, .. } => Some(error_type),
            _ => None,
        }
    }
}

/// `checksum` of `POST /session/token`: lowercase hex SHA-256 of
/// `api_key + request_token + api_secret`.
pub fn checksum(api_key: &str, request_token: &str, api_secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(api_key.as_bytes());
    h.update(request_token.as_bytes());
    h.update(api_secret.as_bytes());
    hex::encode(h.finalize())
}

/// A new session from `POST /session/token`. `Debug` redacts the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub access_token: Secret,
    pub user_id: String,
    pub user_name: String,
    /// As Kite sends it: `"YYYY-MM-DD HH:MM:SS"`, IST, no zone.
    pub login_time: String,
}

impl Session {
    /// `login_time` read as Asia/Kolkata wall-clock time.
    pub fn login_timestamp(&self) -> Option<jiff::Timestamp> {
        let civil: jiff::civil::DateTime = self.login_time.trim().parse().ok()?;
        civil.in_tz("Asia/Kolkata").ok().map(|z| z.timestamp())
    }
}

/// `GET /user/profile`, the fields warden uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Profile {
    pub user_id: String,
    #[serde(default)]
    pub user_name: String,
    #[serde(default)]
    pub user_shortname: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub broker: String,
}

#[derive(Deserialize)]
struct SessionData {
    access_token: String,
    user_id: String,
    #[serde(default)]
    user_name: String,
    #[serde(default)]
    login_time: Option<String>,
}

/// The API half of Kite Connect (`api_base`), for one api_key.
#[derive(Debug)]
pub struct KiteClient {
    api_key: String,
    api_base: String,
    login_base: String,
    timeout: Duration,
    /// Built on first use: loading the TLS roots costs memory warden may never need.
    http: OnceLock<reqwest::Client>,
}

impl KiteClient {
    pub fn new(cfg: &KiteConfig) -> KiteClient {
        KiteClient {
            api_key: cfg.api_key.clone(),
            api_base: cfg.api_base.trim_end_matches('/').to_string(),
            login_base: cfg.login_base.trim_end_matches('/').to_string(),
            timeout: DEFAULT_TIMEOUT,
            http: OnceLock::new(),
        }
    }

    /// Per-request timeout (connect + answer).
    pub fn with_timeout(mut self, timeout: Duration) -> KiteClient {
        self.timeout = timeout;
        self.http = OnceLock::new();
        self
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Same as the free [`checksum`].
    pub fn checksum(api_key: &str, request_token: &str, api_secret: &str) -> String {
        checksum(api_key, request_token, api_secret)
    }

    /// `{login_base}/connect/login?v=3&api_key=K[&redirect_params=…]`; `redirect_params` is a
    /// query string (`state=abc`) that Kite hands back on the redirect; it is URL-encoded here.
    pub fn login_url(&self, redirect_params: Option<&str>) -> String {
        let mut url = format!(
            "{}/connect/login?v=3&api_key={}",
            self.login_base,
            encode(&self.api_key)
        );
        if let Some(p) = redirect_params {
            url.push_str("&redirect_params=");
            url.push_str(&encode(p));
        }
        url
    }

    /// Exchange a request token for a session. Creating a session kills every earlier access
    /// token of this api_key (one valid token per api_key).
    pub async fn exchange(
        &self,
        request_token: &str,
        api_secret: &Secret,
    ) -> Result<Session, BrokerError> {
        let step = Step::Exchange;
        let url = format!("{}/session/token", self.api_base);
        let sum = checksum(&self.api_key, request_token, api_secret.expose());
        let req = self
            .http()?
            .post(&url)
            .header("X-Kite-Version", "3")
            .form(&[
                ("api_key", self.api_key.as_str()),
                ("request_token", request_token),
                ("checksum", sum.as_str()),
            ]);
        let (status, body) = send(step, req, &url, self.timeout).await?;
        let data: SessionData = decode(step, status, &body)?;
        if data.access_token.is_empty() {
            return Err(BrokerError::Garbage {
                step,
                status,
                detail: "empty access_token".into(),
            });
        }
        Ok(Session {
            access_token: Secret::new(data.access_token),
            user_id: data.user_id,
            user_name: data.user_name,
            login_time: data.login_time.unwrap_or_default(),
        })
    }

    /// The cheap validity check: `Ok` means the broker accepts the token right now.
    pub async fn profile(&self, access_token: &Secret) -> Result<Profile, BrokerError> {
        let step = Step::Profile;
        let url = format!("{}/user/profile", self.api_base);
        let req = self.authorized(self.http()?.get(&url), access_token);
        let (status, body) = send(step, req, &url, self.timeout).await?;
        decode(step, status, &body)
    }

    /// Invalidate the token at the broker (`DELETE /session/token`).
    pub async fn logout(&self, access_token: &Secret) -> Result<(), BrokerError> {
        let step = Step::Logout;
        let url = format!("{}/session/token", self.api_base);
        // Kite reads these from the query string of a DELETE; the URL is never reported
        // with its query (see `send`).
        let req = self.http()?.delete(&url).query(&[
            ("api_key", self.api_key.as_str()),
            ("access_token", access_token.expose()),
        ]);
        let req = self.authorized(req, access_token);
        let (status, body) = send(step, req, &url, self.timeout).await?;
        let _: serde_json::Value = decode(step, status, &body)?;
        Ok(())
    }

    fn authorized(
        &self,
        req: reqwest::RequestBuilder,
        access_token: &Secret,
    ) -> reqwest::RequestBuilder {
        req.header("X-Kite-Version", "3").header(
            "Authorization",
            format!("token {}:{}", self.api_key, access_token.expose()),
        )
    }

    fn http(&self) -> Result<&reqwest::Client, BrokerError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let client = http_client(self.timeout, None)?;
        Ok(self.http.get_or_init(|| client))
    }
}

/// A reqwest client that never follows redirects (a redirect from Kite's API is an answer to
/// read, not a place to go) and gives up after `timeout`.
pub(crate) fn http_client(
    timeout: Duration,
    cookies: Option<std::sync::Arc<reqwest::cookie::Jar>>,
) -> Result<reqwest::Client, BrokerError> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")));
    if let Some(jar) = cookies {
        b = b.cookie_provider(jar);
    }
    b.build()
        .map_err(|e| BrokerError::Config(format!("cannot build the HTTP client: {}", chain(&e))))
}

/// A failure below HTTP, with the URL stripped of its query.
pub(crate) fn transport_error(
    step: Step,
    url: &str,
    timeout: Duration,
    e: reqwest::Error,
) -> BrokerError {
    let e = e.without_url();
    if e.is_timeout() {
        BrokerError::Timeout {
            step,
            url: redact_url(url),
            timeout,
        }
    } else {
        BrokerError::Network {
            step,
            url: redact_url(url),
            detail: chain(&e),
        }
    }
}

/// Send and read the whole answer. Transport failures become `Timeout` / `Network` with the
/// URL stripped of its query.
pub(crate) async fn send(
    step: Step,
    req: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
) -> Result<(u16, String), BrokerError> {
    let transport = |e| transport_error(step, url, timeout, e);
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(transport)?;
    Ok((status, body))
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_type: Option<String>,
}

/// Read Kite's envelope: `data` of a success, or the right [`BrokerError`].
pub(crate) fn decode<T: DeserializeOwned>(
    step: Step,
    status: u16,
    body: &str,
) -> Result<T, BrokerError> {
    let env: Option<Envelope> = serde_json::from_str(body).ok();
    let is_error = |e: &Envelope| e.status.as_deref() == Some("error") || e.error_type.is_some();
    match env {
        Some(e) if is_error(&e) => Err(BrokerError::Rejected {
            step,
            status,
            error_type: e.error_type.unwrap_or_else(|| "GeneralException".into()),
            message: shorten(e.message.as_deref().unwrap_or("")),
        }),
        _ if !(200..300).contains(&status) => Err(BrokerError::HttpStatus { step, status }),
        None => Err(BrokerError::Garbage {
            step,
            status,
            detail: "not JSON".into(),
        }),
        Some(e) => {
            if e.status.as_deref() != Some("success") {
                return Err(BrokerError::Garbage {
                    step,
                    status,
                    detail: "no \"status\":\"success\"".into(),
                });
            }
            let data = e.data.unwrap_or(serde_json::Value::Null);
            serde_json::from_value(data).map_err(|err| BrokerError::Garbage {
                step,
                status,
                // serde's message names the missing/mistyped field, never a value.
                detail: format!("unexpected data: {err}"),
            })
        }
    }
}

/// `scheme://host[:port]/path`: no credentials, query or fragment.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or("").to_string(),
    }
}

/// An error and its sources, one line. reqwest's own text may name the URL, so callers strip
/// it first (`without_url`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

fn shorten(message: &str) -> String {
    let m = message.trim();
    if m.chars().count() <= MAX_MESSAGE_CHARS {
        m.to_string()
    } else {
        let mut s: String = m.chars().take(MAX_MESSAGE_CHARS).collect();
        s.push('…');
        s
    }
}

pub(crate) fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_checksum_vector() {
        assert_eq!(
            checksum("kitefront", "abc123", "s3cret"),
            "26f7dc7a4c89ff086fb05f714abbc28ceb545a4718d3bd5f19a310af1d3c04a4"
        );
    }

    #[test]
    fn redact_url_drops_query_and_userinfo() {
        assert_eq!(
            redact_url("http://u:p@127.0.0.1:1/session/token?api_key=k&access_token=T#x"),
            "http://127.0.0.1:1/session/token"
        );
    }

    #[test]
    fn classification_table() {
        let rej = |step, status, et: &str, msg: &str| BrokerError::Rejected {
            step,
            status,
            error_type: et.into(),
            message: msg.into(),
        };
        use ErrorClass::*;
        let cases = [
            (
                rej(Step::Profile, 403, "TokenException", "Incorrect"),
                TokenBad,
            ),
            (
                rej(Step::Profile, 403, "PermissionException", ""),
                Credential,
            ),
            (
                rej(Step::Exchange, 403, "TokenException", "Invalid `checksum`."),
                Credential,
            ),
            (
                rej(
                    Step::Exchange,
                    403,
                    "TokenException",
                    "Token is invalid or has expired.",
                ),
                TokenBad,
            ),
            (
                rej(
                    Step::Login,
                    400,
                    "InputException",
                    "Invalid username or password.",
                ),
                Credential,
            ),
            (
                rej(Step::Twofa, 403, "TokenException", "Request expired"),
                Credential,
            ),
            (
                rej(Step::Login, 403, "UserException", "blocked"),
                Credential,
            ),
            (rej(Step::Profile, 429, "NetworkException", ""), Transient),
            (rej(Step::Profile, 503, "NetworkException", ""), Transient),
            (rej(Step::Login, 502, "DataException", ""), Transient),
            (
                BrokerError::HttpStatus {
                    step: Step::Profile,
                    status: 404,
                },
                Transient,
            ),
            (
                BrokerError::HttpStatus {
                    step: Step::Twofa,
                    status: 400,
                },
                Credential,
            ),
            (
                BrokerError::HttpStatus {
                    step: Step::Twofa,
                    status: 429,
                },
                Transient,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.class(), want, "{e}");
        }
    }

    #[test]
    fn decode_envelopes() {
        let e = decode::<Profile>(Step::Profile, 403, r#"{"status":"error","message":"Incorrect `api_key` or `access_token`.","error_type":"TokenException"}"#).unwrap_err();
        assert_eq!(e.class(), ErrorClass::TokenBad);
        assert_eq!(e.error_type(), Some("TokenException"));
        let e = decode::<Profile>(Step::Profile, 200, "<html>").unwrap_err();
        assert!(matches!(e, BrokerError::Garbage { .. }));
        let e = decode::<Profile>(Step::Profile, 502, "<html>bad gateway</html>").unwrap_err();
        assert!(matches!(e, BrokerError::HttpStatus { status: 502, .. }));
        let p: Profile = decode(
            Step::Profile,
            200,
            r#"{"status":"success","data":{"user_id":"AB1234","user_name":"X","avatar_url":null}}"#,
        )
        .unwrap();
        assert_eq!(p.user_id, "AB1234");
    }

    #[test]
    fn login_time_is_ist() {
        let s = Session {
            access_token: Secret::new("t"),
            user_id: "AB1234".into(),
            user_name: String::new(),
            login_time: "2021-01-01 16:15:14".into(),
        };
        let ts = s.login_timestamp().unwrap();
        assert_eq!(ts.to_string(), "2021-01-01T10:45:14Z");
    }
}
