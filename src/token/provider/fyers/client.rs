//! The Fyers API v3 calls warden makes: the auth-code exchange, the refresh-token exchange,
//! the profile (the validity check) and logout, with the same client settings as the Kite
//! client (timeouts, rustls, no redirects). Nothing here logs; errors never carry a token, the
//! secret key or the PIN.

use std::sync::OnceLock;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::{FyersError, Step};
use crate::config::{FyersConfig, Secret};
use crate::token::broker_text::{chain, shorten};
use crate::token::kite::{encode, redact_url};

/// Per-request budget (connect + answer), as for Kite.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `appIdHash`: lowercase hex SHA-256 of `client_id:secret_key`, the whole App ID with its
/// `-100` suffix (the SDK's `get_hash`).
pub fn app_id_hash(client_id: &str, secret_key: &Secret) -> String {
    hex::encode(Sha256::digest(
        format!("{client_id}:{}", secret_key.expose()).as_bytes(),
    ))
}

/// What `validate-authcode` answers.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
}

#[derive(Deserialize)]
struct TokensWire {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct ProfileWire {
    data: ProfileData,
}

#[derive(Deserialize)]
struct ProfileData {
    fy_id: String,
}

/// The `s`/`code`/`message` every Fyers answer carries.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    s: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

/// The API of one Fyers app (`client_id`).
#[derive(Debug)]
pub struct FyersClient {
    client_id: String,
    secret_key: Secret,
    api_base: String,
    /// Built on first use: loading the TLS roots costs memory warden may never need.
    http: OnceLock<reqwest::Client>,
}

impl FyersClient {
    pub fn new(cfg: &FyersConfig) -> FyersClient {
        FyersClient {
            client_id: cfg.client_id.clone(),
            secret_key: cfg.secret_key.clone(),
            api_base: cfg.api_base.trim_end_matches('/').to_string(),
            http: OnceLock::new(),
        }
    }

    /// The page a person logs in at: `{api_base}/generate-authcode?client_id&redirect_uri&
    /// response_type=code[&state]`. Fyers sends the browser back to `redirect_uri` with
    /// `auth_code` and the same `state`.
    pub fn login_url(&self, redirect_uri: &str, state: Option<&str>) -> String {
        let mut url = format!(
            "{}/generate-authcode?client_id={}&redirect_uri={}&response_type=code",
            self.api_base,
            encode(&self.client_id),
            encode(redirect_uri)
        );
        if let Some(s) = state {
            url.push_str("&state=");
            url.push_str(&encode(s));
        }
        url
    }

    /// Redeem an auth code (single use) for an access token and a 15-day refresh token.
    pub async fn exchange(&self, auth_code: &str) -> Result<Tokens, FyersError> {
        let body = json!({
            "grant_type": "authorization_code",
            "appIdHash": app_id_hash(&self.client_id, &self.secret_key),
            "code": auth_code,
        });
        let t: TokensWire = self
            .post(Step::Exchange, "validate-authcode", &body)
            .await?;
        Ok(Tokens {
            access_token: Secret::new(t.access_token),
            refresh_token: t.refresh_token.filter(|r| !r.is_empty()).map(Secret::new),
        })
    }

    /// A new access token from the refresh token and the PIN (no new refresh token).
    pub async fn refresh(
        &self,
        refresh_token: &Secret,
        pin: &Secret,
    ) -> Result<Secret, FyersError> {
        let body = json!({
            "grant_type": "refresh_token",
            "appIdHash": app_id_hash(&self.client_id, &self.secret_key),
            "refresh_token": refresh_token.expose(),
            "pin": pin.expose(),
        });
        let t: TokensWire = self
            .post(Step::Refresh, "validate-refresh-token", &body)
            .await?;
        Ok(Secret::new(t.access_token))
    }

    /// The `fy_id` the token belongs to, if Fyers accepts it.
    pub async fn profile(&self, token: &Secret) -> Result<String, FyersError> {
        let step = Step::Profile;
        let url = format!("{}/profile", self.api_base);
        let req = self.http()?.get(&url).headers(self.auth(token));
        let (status, body) = send(step, req, &url).await?;
        let p: ProfileWire = decode(step, status, &body)?;
        Ok(p.data.fy_id)
    }

    /// End the session of `token` (for this app only).
    pub async fn logout(&self, token: &Secret) -> Result<(), FyersError> {
        let step = Step::Logout;
        let url = format!("{}/logout", self.api_base);
        let req = self
            .http()?
            .post(&url)
            .headers(self.auth(token))
            .body("null");
        let (status, body) = send(step, req, &url).await?;
        decode::<serde_json::Value>(step, status, &body).map(|_| ())
    }

    /// `Authorization: APPID-100:TOKEN` and the headers the SDK sends.
    fn auth(&self, token: &Secret) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        if let Ok(mut v) =
            format!("{}:{}", self.client_id, token.expose()).parse::<reqwest::header::HeaderValue>()
        {
            v.set_sensitive(true);
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
        h.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        h.insert("version", reqwest::header::HeaderValue::from_static("3"));
        h
    }

    async fn post<T: DeserializeOwned>(
        &self,
        step: Step,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, FyersError> {
        let url = format!("{}/{path}", self.api_base);
        let req = self.http()?.post(&url).json(body);
        let (status, text) = send(step, req, &url).await?;
        decode(step, status, &text)
    }

    fn http(&self) -> Result<&reqwest::Client, FyersError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FyersError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(self.http.get_or_init(|| c))
    }
}

/// Send and read the whole answer; transport failures name the URL without its query.
async fn send(
    step: Step,
    req: reqwest::RequestBuilder,
    url: &str,
) -> Result<(u16, String), FyersError> {
    let transport = |e: reqwest::Error| {
        let e = e.without_url();
        if e.is_timeout() {
            FyersError::Timeout {
                step,
                url: redact_url(url),
                timeout: TIMEOUT,
            }
        } else {
            FyersError::Network {
                step,
                url: redact_url(url),
                detail: chain(&e),
            }
        }
    };
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(transport)?;
    Ok((status, body))
}

/// Read Fyers' answer: the payload of `"s":"ok"`, or the right [`FyersError`]. An error is
/// told by `"s":"error"` or a negative `code`, whatever the HTTP status.
fn decode<T: DeserializeOwned>(step: Step, status: u16, body: &str) -> Result<T, FyersError> {
    let garbage = |detail: String| FyersError::Garbage {
        step,
        status,
        detail,
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return Err(garbage("not JSON".into()));
    };
    let env: Envelope = serde_json::from_value(value.clone())
        .map_err(|_| garbage("not Fyers' {\"s\",\"code\",\"message\"} shape".into()))?;
    let failed = env.s.as_deref() == Some("error") || env.code.is_some_and(|c| c < 0);
    if failed {
        return Err(FyersError::Rejected {
            step,
            status,
            code: env.code.unwrap_or(0),
            message: shorten(env.message.as_deref().unwrap_or("")),
        });
    }
    if env.s.as_deref() != Some("ok") || !(200..300).contains(&status) {
        return Err(garbage("no \"s\":\"ok\"".into()));
    }
    serde_json::from_value(value).map_err(|err| {
        // serde's text can quote a value, and a value here may be a token: report only the
        // kind of mismatch.
        garbage(format!("unexpected answer ({:?} error)", err.classify()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_id_hash_covers_the_whole_app_id() {
        // sha256("SBXAPP1234-100:fyers-sandbox-secret"), computed apart.
        assert_eq!(
            app_id_hash("SBXAPP1234-100", &Secret::new("fyers-sandbox-secret")),
            "a95ea50e63df936d2b8d9bb53c1d40dc366e39d6564061a36eaad2332b6ea880"
        );
        assert_ne!(
            app_id_hash("SBXAPP1234", &Secret::new("fyers-sandbox-secret")),
            app_id_hash("SBXAPP1234-100", &Secret::new("fyers-sandbox-secret"))
        );
    }

    #[test]
    fn the_login_url_carries_app_redirect_and_state() {
        let c = FyersClient::new(&FyersConfig {
            client_id: "APP1-100".into(),
            api_base: "http://127.0.0.1:9/api/v3/".into(),
            ..Default::default()
        });
        assert_eq!(
            c.login_url("http://127.0.0.1:9180/fyers/callback", Some("s t")),
            "http://127.0.0.1:9/api/v3/generate-authcode?client_id=APP1-100&redirect_uri=\
             http%3A%2F%2F127.0.0.1%3A9180%2Ffyers%2Fcallback&response_type=code&state=s+t"
        );
    }

    #[test]
    fn answers_are_read_by_their_envelope() {
        let e = decode::<ProfileWire>(
            Step::Profile,
            401,
            r#"{"s":"error","code":-8,"message":"Your token has expired. Please generate a token"}"#,
        )
        .err().expect("an error");
        assert!(
            matches!(
                e,
                FyersError::Rejected {
                    code: -8,
                    status: 401,
                    ..
                }
            ),
            "{e}"
        );
        // An error inside a 200 is still an error.
        let e = decode::<ProfileWire>(
            Step::Profile,
            200,
            r#"{"s":"error","code":-15,"message":"x"}"#,
        )
        .err()
        .expect("an error");
        assert!(matches!(e, FyersError::Rejected { code: -15, .. }), "{e}");
        let e = decode::<ProfileWire>(Step::Profile, 403, "<html>1015</html>")
            .err()
            .expect("an error");
        assert!(matches!(e, FyersError::Garbage { .. }), "{e}");
        let e = decode::<TokensWire>(Step::Exchange, 200, r#"{"s":"ok","code":200}"#)
            .err()
            .expect("an error");
        assert!(matches!(e, FyersError::Garbage { .. }), "{e}");
        assert!(!e.to_string().contains("access_token\":"), "{e}");
        let p: ProfileWire = decode(
            Step::Profile,
            200,
            r#"{"s":"ok","code":200,"message":"","data":{"fy_id":"XF01234","name":"X"}}"#,
        )
        .unwrap();
        assert_eq!(p.data.fy_id, "XF01234");
    }
}
