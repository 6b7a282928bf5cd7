//! Kite Connect API client: session exchange, profile (the validity check), logout, and the
//! classification of every broker answer into [`ErrorClass`].
//!
//! Nothing here logs. Errors carry the step, the HTTP status, Kite's `error_type` and
//! `message`, and URLs with their query string removed, never a token or a secret: the one
//! URL that must carry a token (`DELETE /session/token?…&access_token=…`, Kite's protocol) is
//! only ever reported without its query.

mod error;
mod wire;

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub(crate) use crate::token::broker_text::form_encode as encode;
pub use error::{BrokerError, ErrorClass, Step};
pub(crate) use wire::{decode, http_client, redact_url, send, transport_error};

use crate::config::{KiteConfig, Secret};

/// Per-request budget for broker calls unless [`KiteClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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
        let data: SessionData = decode(step, status, &body)
            .map_err(|e| e.redact(&[request_token, api_secret.expose()]))?;
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
        // A broker (or a proxy) that quotes the token back must not put it into our logs.
        decode(step, status, &body).map_err(|e| e.redact(&[access_token.expose()]))
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
        let _: serde_json::Value =
            decode(step, status, &body).map_err(|e| e.redact(&[access_token.expose()]))?;
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
