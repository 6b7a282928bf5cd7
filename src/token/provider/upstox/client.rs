//! The Upstox API calls warden makes: the Access Token Request, the code exchange, the
//! profile (the validity check) and logout. Headers as the official SDK sends them
//! (`brokers/upstox.md` §6). Nothing here logs; errors carry no token, secret or query.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::error::{Step, UpstoxError};
use crate::config::{Secret, UpstoxConfig};
use crate::token::broker_text::{chain, shorten_to as shorten, MAX_MESSAGE_CHARS};

/// Per-request budget for Upstox calls.
pub const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const API_VERSION: &str = "2.0";

/// `GET /v2/user/profile`, the fields warden uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Profile {
    pub user_id: String,
}

/// The flat answer of the code exchange. `Debug` redacts the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanged {
    pub access_token: Secret,
    pub user_id: String,
}

pub struct UpstoxClient {
    http: reqwest::Client,
    cfg: UpstoxConfig,
}

impl UpstoxClient {
    pub fn new(cfg: UpstoxConfig) -> Result<UpstoxClient, UpstoxError> {
        // A redirect from the API is an answer to read, not a place to go.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstoxError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(UpstoxClient { http, cfg })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.api_base.trim_end_matches('/'))
    }

    /// `{api_base}/v2/login/authorization/dialog?…`: the page a person logs in at.
    pub fn login_url(&self, redirect_uri: &str, state: Option<&str>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("client_id", &self.cfg.api_key)
            .append_pair("redirect_uri", redirect_uri);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("response_type", "code");
        format!(
            "{}?{}",
            self.url("/v2/login/authorization/dialog"),
            q.finish()
        )
    }

    /// The Access Token Request: Upstox asks the person to approve it. Answers when the
    /// request lapses (Unix seconds).
    pub async fn request_token(&self) -> Result<i64, UpstoxError> {
        let step = Step::TokenRequest;
        let path = format!(
            "/v3/login/auth/token/request/{}",
            url::form_urlencoded::byte_serialize(self.cfg.api_key.as_bytes()).collect::<String>()
        );
        let url = self.url(&path);
        let body = serde_json::json!({ "client_secret": self.cfg.api_secret.expose() });
        let req = self
            .http
            .post(&url)
            .header("Accept", "application/json")
            .json(&body);
        let (status, text) = send(step, req, &url).await?;
        #[derive(Deserialize)]
        struct Requested {
            authorization_expiry: Value,
        }
        let data: Requested = enveloped(step, status, &text)?;
        // Epoch milliseconds, as a string (the docs) or a number.
        let ms = match &data.authorization_expiry {
            Value::String(s) => s.trim().parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        ms.map(|ms| ms / 1000).ok_or_else(|| UpstoxError::Garbage {
            step,
            status,
            detail: "no readable authorization_expiry".into(),
        })
    }

    /// Redeem an authorization code (it works once, even when this fails).
    pub async fn exchange(&self, code: &str, redirect_uri: &str) -> Result<Exchanged, UpstoxError> {
        let step = Step::Exchange;
        let url = self.url("/v2/login/authorization/token");
        let form = [
            ("code", code),
            ("client_id", self.cfg.api_key.as_str()),
            ("client_secret", self.cfg.api_secret.expose()),
            ("redirect_uri", redirect_uri),
            ("grant_type", "authorization_code"),
        ];
        let req = self
            .http
            .post(&url)
            .header("Accept", "application/json")
            .header("Api-Version", API_VERSION)
            .form(&form);
        let (status, text) = send(step, req, &url).await?;
        if let Some(e) = rejection(step, status, &text) {
            return Err(e);
        }
        #[derive(Deserialize)]
        struct Flat {
            access_token: String,
            user_id: String,
        }
        let flat: Flat = parse(step, status, &text)?;
        Ok(Exchanged {
            access_token: Secret::new(flat.access_token),
            user_id: flat.user_id,
        })
    }

    pub async fn profile(&self, token: &Secret) -> Result<Profile, UpstoxError> {
        let step = Step::Profile;
        let url = self.url("/v2/user/profile");
        let req = self
            .http
            .get(&url)
            .header("Accept", "application/json")
            .header("Api-Version", API_VERSION)
            .bearer_auth(token.expose());
        let (status, text) = send(step, req, &url).await?;
        enveloped(step, status, &text)
    }

    pub async fn logout(&self, token: &Secret) -> Result<(), UpstoxError> {
        let step = Step::Logout;
        let url = self.url("/v2/logout");
        let req = self
            .http
            .delete(&url)
            .header("Accept", "application/json")
            .header("Api-Version", API_VERSION)
            .bearer_auth(token.expose())
            .json(&serde_json::json!({}));
        let (status, text) = send(step, req, &url).await?;
        let _: Value = enveloped(step, status, &text)?;
        Ok(())
    }
}

async fn send(
    step: Step,
    req: reqwest::RequestBuilder,
    url: &str,
) -> Result<(u16, String), UpstoxError> {
    let transport = |e: reqwest::Error| {
        let e = e.without_url();
        let url = redact(url);
        if e.is_timeout() {
            UpstoxError::Timeout {
                step,
                url,
                timeout: TIMEOUT,
            }
        } else {
            UpstoxError::Network {
                step,
                url,
                detail: chain(&e),
            }
        }
    };
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(transport)?;
    Ok((status, body))
}

/// Upstox's error envelope, read from any answer: `{"status":"error","errors":[{…}]}` with
/// the documented `error_code` or the deprecated `errorCode`.
fn rejection(step: Step, status: u16, body: &str) -> Option<UpstoxError> {
    let v: Value = serde_json::from_str(body).ok()?;
    let first = v.get("errors").and_then(|e| e.get(0));
    let is_error = v.get("status").and_then(Value::as_str) == Some("error") || first.is_some();
    if !is_error {
        return None;
    }
    let code = first
        .and_then(|e| e.get("error_code").or_else(|| e.get("errorCode")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let message = first
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(UpstoxError::Rejected {
        step,
        status,
        code: shorten(&code, 40),
        message: shorten(message, MAX_MESSAGE_CHARS),
    })
}

/// `data` of a `{"status":"success","data":…}` answer, or the right error.
fn enveloped<T: DeserializeOwned>(step: Step, status: u16, body: &str) -> Result<T, UpstoxError> {
    if let Some(e) = rejection(step, status, body) {
        return Err(e);
    }
    #[derive(Deserialize)]
    struct Envelope {
        status: Option<String>,
        #[serde(default)]
        data: Value,
    }
    let env: Envelope = parse(step, status, body)?;
    if env.status.as_deref() != Some("success") {
        return Err(UpstoxError::Garbage {
            step,
            status,
            detail: "no \"status\":\"success\"".into(),
        });
    }
    serde_json::from_value(env.data).map_err(|e| UpstoxError::Garbage {
        step,
        status,
        // serde's text can quote a value, and a value here may be a token: only the kind.
        detail: format!("unexpected data ({:?} error)", e.classify()),
    })
}

fn parse<T: DeserializeOwned>(step: Step, status: u16, body: &str) -> Result<T, UpstoxError> {
    if !(200..300).contains(&status) {
        return Err(UpstoxError::HttpStatus { step, status });
    }
    serde_json::from_str(body).map_err(|e| UpstoxError::Garbage {
        step,
        status,
        detail: format!("not the documented JSON ({:?} error)", e.classify()),
    })
}

fn redact(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::provider::Failure;

    #[test]
    fn both_spellings_of_the_error_envelope_are_read() {
        let camel = r#"{"status":"error","errors":[{"errorCode":"UDAPI100050","message":"Invalid token used to access API","propertyPath":null,"invalidValue":null}]}"#;
        let snake = r#"{"status":"error","errors":[{"error_code":"UDAPI100050","message":"Invalid token used to access API"}]}"#;
        for body in [camel, snake] {
            let e = enveloped::<Profile>(Step::Profile, 401, body).unwrap_err();
            assert!(
                matches!(&e, UpstoxError::Rejected { code, .. } if code == "UDAPI100050"),
                "{e}"
            );
            assert_eq!(e.classify(), Failure::TokenBad);
        }
        let p: Profile = enveloped(
            Step::Profile,
            200,
            r#"{"status":"success","data":{"user_id":"UX1234","user_name":"A","order_types":["MARKET"]}}"#,
        )
        .unwrap();
        assert_eq!(p.user_id, "UX1234");
        let e = enveloped::<Profile>(Step::Profile, 200, "<html>").unwrap_err();
        assert!(matches!(e, UpstoxError::Garbage { .. }), "{e}");
        let e = enveloped::<Profile>(Step::Profile, 403, "<html>error 1010</html>").unwrap_err();
        assert_eq!(e.classify(), Failure::Transient, "{e}");
    }

    #[test]
    fn the_login_url_is_the_authorization_dialog_with_state() {
        let c = UpstoxClient::new(UpstoxConfig {
            api_key: "key 1".into(),
            api_base: "https://api.upstox.com/".into(),
            ..Default::default()
        })
        .unwrap();
        let url = c.login_url("https://w.example/upstox/callback", Some("n0nce"));
        assert_eq!(
            url,
            "https://api.upstox.com/v2/login/authorization/dialog?client_id=key+1&redirect_uri=https%3A%2F%2Fw.example%2Fupstox%2Fcallback&state=n0nce&response_type=code"
        );
    }
}
