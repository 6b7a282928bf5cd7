//! DhanHQ v2 over HTTP: the PIN + TOTP mint, the consent flow's two calls, and the profile
//! (the validity check). Nothing here logs or retries.
//!
//! `generateAccessToken` takes the PIN and the TOTP code in its query string (Dhan's protocol),
//! so no URL with a query is ever put into an error: requests get their query from reqwest's
//! `query()`, errors name the path only, and reqwest's own errors are stripped of their URL.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::{DhanError, Step};
use crate::config::{DhanConfig, Secret};
use crate::token::broker_text::{chain, form_encode as encode, MAX_MESSAGE_CHARS};
use crate::token::clock_guard::{parse_http_date, BrokerClock};

/// Per-request budget (connect + answer).
pub const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A `Date` reading younger than this is used again rather than asking anew.
const CLOCK_REUSE_SECS: i64 = 30;

/// A token Dhan issued (`generateAccessToken` or `consumeApp-consent`). `Debug` redacts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub access_token: Secret,
    pub client_id: String,
}

#[derive(Deserialize)]
struct MintAnswer {
    #[serde(rename = "accessToken", default)]
    access_token: String,
    #[serde(rename = "dhanClientId", default)]
    client_id: String,
}

#[derive(Deserialize)]
struct ConsentAnswer {
    #[serde(rename = "consentAppId", default)]
    consent_app_id: String,
    #[serde(default)]
    status: String,
}

/// `GET /profile`, the fields warden reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Profile {
    #[serde(rename = "dhanClientId")]
    pub client_id: String,
}

#[derive(Debug)]
pub struct DhanClient {
    auth_base: String,
    api_base: String,
    timeout: Duration,
    /// Built on first use: the TLS roots cost memory warden may never need.
    http: OnceLock<reqwest::Client>,
    /// The `Date` of the last answer and when it came (the clock guard's reading).
    clock: Mutex<BrokerClock>,
}

impl DhanClient {
    pub fn new(cfg: &DhanConfig) -> DhanClient {
        DhanClient {
            auth_base: cfg.auth_base.trim_end_matches('/').to_string(),
            api_base: cfg.api_base.trim_end_matches('/').to_string(),
            timeout: TIMEOUT,
            http: OnceLock::new(),
            clock: Mutex::new(BrokerClock::NotApplicable),
        }
    }

    /// The page a person logs in on to grant a consent.
    pub fn consent_login_url(&self, consent_app_id: &str) -> String {
        format!(
            "{}/login/consentApp-login?consentAppId={}",
            self.auth_base,
            encode(consent_app_id)
        )
    }

    /// The consent login page without a consent (what "a manual login exists" points at).
    pub fn consent_login_base(&self) -> String {
        format!("{}/login/consentApp-login", self.auth_base)
    }

    /// The broker clock read from the last answer.
    pub fn last_clock(&self) -> BrokerClock {
        *self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `POST {auth_base}/app/generateAccessToken?dhanClientId=…&pin=…&totp=…`: a new token,
    /// which kills the client's previous one.
    pub async fn mint(
        &self,
        client_id: &str,
        pin: &Secret,
        code: &str,
    ) -> Result<Minted, DhanError> {
        let step = Step::Mint;
        let url = format!("{}/app/generateAccessToken", self.auth_base);
        let req = self.http()?.post(&url).query(&[
            ("dhanClientId", client_id),
            ("pin", pin.expose()),
            ("totp", code),
        ]);
        let (status, body) = self.send(step, req, &url).await?;
        let answer: MintAnswer = read(step, status, &body, &[pin.expose(), code])?;
        minted(step, status, answer)
    }

    /// `POST {auth_base}/app/generate-consent?client_id=…` with the app's headers: the
    /// consentAppId the login page needs.
    pub async fn generate_consent(
        &self,
        client_id: &str,
        app_id: &str,
        app_secret: &Secret,
    ) -> Result<String, DhanError> {
        let step = Step::Consent;
        let url = format!("{}/app/generate-consent", self.auth_base);
        let req = self
            .http()?
            .post(&url)
            .query(&[("client_id", client_id)])
            .header("app_id", app_id)
            .header("app_secret", app_secret.expose());
        let (status, body) = self.send(step, req, &url).await?;
        let answer: ConsentAnswer = read(step, status, &body, &[app_secret.expose()])?;
        // The SDK's rule: HTTP 200 and status "success", else no consent.
        if status != 200 || answer.status != "success" || answer.consent_app_id.is_empty() {
            return Err(DhanError::Garbage {
                step,
                status,
                detail: "no consentAppId with status \"success\"".into(),
            });
        }
        Ok(answer.consent_app_id)
    }

    /// `GET {auth_base}/app/consumeApp-consent?tokenId=…` with the app's headers: the token.
    pub async fn consume_consent(
        &self,
        token_id: &str,
        app_id: &str,
        app_secret: &Secret,
    ) -> Result<Minted, DhanError> {
        let step = Step::ConsumeConsent;
        let url = format!("{}/app/consumeApp-consent", self.auth_base);
        let req = self
            .http()?
            .get(&url)
            .query(&[("tokenId", token_id)])
            .header("app_id", app_id)
            .header("app_secret", app_secret.expose());
        let (status, body) = self.send(step, req, &url).await?;
        let answer: MintAnswer = read(step, status, &body, &[app_secret.expose(), token_id])?;
        minted(step, status, answer)
    }

    /// `GET {api_base}/profile` with `access-token`: `Ok` means Dhan accepts the token now.
    /// No `dhanClientId` header is sent, so the answer says whose token it is.
    pub async fn profile(&self, token: &Secret) -> Result<Profile, DhanError> {
        let step = Step::Profile;
        let url = format!("{}/profile", self.api_base);
        let req = self
            .http()?
            .get(&url)
            .header("access-token", token.expose())
            .header("Accept", "application/json");
        let (status, body) = self.send(step, req, &url).await?;
        read(step, status, &body, &[token.expose()])
    }

    /// The clock guard's reading: the last answer's `Date` when it is recent, else that of a
    /// new request to the API host (the profile without a token: refused, costs nothing,
    /// touches no account).
    pub async fn probe_clock(&self) -> Result<BrokerClock, DhanError> {
        if let BrokerClock::Read { local, .. } = self.last_clock() {
            if jiff::Timestamp::now().as_second() - local.as_second() < CLOCK_REUSE_SECS {
                return Ok(self.last_clock());
            }
        }
        let url = format!("{}/profile", self.api_base);
        let req = self.http()?.get(&url).header("Accept", "application/json");
        self.send(Step::Profile, req, &url).await?;
        Ok(self.last_clock())
    }

    async fn send(
        &self,
        step: Step,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, String), DhanError> {
        let transport = |e: reqwest::Error| {
            let e = e.without_url();
            if e.is_timeout() {
                DhanError::Timeout {
                    step,
                    url: url.to_string(),
                    timeout: self.timeout,
                }
            } else {
                DhanError::Network {
                    step,
                    url: url.to_string(),
                    detail: chain(&e),
                }
            }
        };
        let resp = req.send().await.map_err(transport)?;
        let local = jiff::Timestamp::now();
        let reading = match resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
        {
            Some(broker) => BrokerClock::Read { broker, local },
            None => BrokerClock::Missing,
        };
        *self.clock.lock().unwrap_or_else(|p| p.into_inner()) = reading;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(transport)?;
        Ok((status, body))
    }

    fn http(&self) -> Result<&reqwest::Client, DhanError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A fresh connection for every call: calls are minutes apart, and a pooled
            // connection the server already closed would fail a mint after it may have been
            // sent, which costs a 2-minute wait.
            .pool_max_idle_per_host(0)
            .timeout(self.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(self.timeout))
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                DhanError::Config(format!("cannot build the HTTP client: {}", chain(&e)))
            })?;
        Ok(self.http.get_or_init(|| client))
    }
}

fn minted(step: Step, status: u16, answer: MintAnswer) -> Result<Minted, DhanError> {
    if answer.access_token.is_empty() {
        return Err(DhanError::Garbage {
            step,
            status,
            detail: "no accessToken".into(),
        });
    }
    Ok(Minted {
        access_token: Secret::new(answer.access_token),
        client_id: answer.client_id,
    })
}

/// Read an answer: either error shape (whatever the HTTP status), an error status without
/// one, or the success body as `T`. `secrets` are cut out of any message kept.
fn read<T: DeserializeOwned>(
    step: Step,
    status: u16,
    body: &str,
    secrets: &[&str],
) -> Result<T, DhanError> {
    let value: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let text = |v: &serde_json::Value, key: &str| {
        let s = match v.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        clean(&s, secrets)
    };
    match value {
        Some(v) if v.get("errorCode").is_some() => Err(DhanError::Api {
            step,
            status,
            code: text(&v, "errorCode"),
            error_type: text(&v, "errorType"),
            message: text(&v, "errorMessage"),
        }),
        Some(v)
            if v.get("status")
                .and_then(|s| s.as_str())
                .is_some_and(|s| s.eq_ignore_ascii_case("error") || s == "failure") =>
        {
            let mut message = text(&v, "message");
            if message.is_empty() {
                message = text(&v, "remarks");
            }
            Err(DhanError::Refused {
                step,
                status,
                message,
            })
        }
        _ if !(200..300).contains(&status) => Err(DhanError::HttpStatus { step, status }),
        None => Err(DhanError::Garbage {
            step,
            status,
            detail: "not JSON".into(),
        }),
        Some(v) => serde_json::from_value(v).map_err(|err| DhanError::Garbage {
            step,
            status,
            // serde's text can quote a value, and a value here may be a token: only the kind
            // of mismatch.
            detail: format!("unexpected answer ({:?} error)", err.classify()),
        }),
    }
}

/// A broker message fit for a log line: short, and without any secret it might quote back.
fn clean(message: &str, secrets: &[&str]) -> String {
    let mut m = message.trim().to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        m = m.replace(*s, "***");
    }
    if m.chars().count() > MAX_MESSAGE_CHARS {
        m = m.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::provider::{Failure, ProviderError};

    #[test]
    fn both_error_shapes_are_read_whatever_the_status() {
        let e = read::<Profile>(
            Step::Profile,
            401,
            r#"{"errorType":"Invalid_Authentication","errorCode":"DH-901","errorMessage":"Client ID or user generated access token is invalid or expired."}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(&e, DhanError::Api { code, .. } if code == "DH-901"),
            "{e}"
        );
        assert_eq!(e.failure(), Failure::TokenBad);
        let e = read::<serde_json::Value>(
            Step::Mint,
            200,
            r#"{"status":"error","message":"Invalid TOTP"}"#,
            &[],
        )
        .unwrap_err();
        assert_eq!(e.failure(), Failure::Credential);
        assert!(e.to_string().contains("Invalid TOTP"), "{e}");
        let e = read::<serde_json::Value>(
            Step::Mint,
            200,
            r#"{"status":"error","message":"Token can be generated once every 2 minutes."}"#,
            &[],
        )
        .unwrap_err();
        assert_eq!(e.failure(), Failure::Transient);
    }

    #[test]
    fn bodies_without_a_dhan_shape() {
        let e = read::<Profile>(Step::Profile, 502, "<html>bad gateway</html>", &[]).unwrap_err();
        assert!(matches!(e, DhanError::HttpStatus { status: 502, .. }));
        let e = read::<Profile>(Step::Profile, 200, "<html>", &[]).unwrap_err();
        assert!(matches!(e, DhanError::Garbage { .. }));
        let e = read::<Profile>(Step::Profile, 200, r#"{"dhanClientId":5}"#, &[]).unwrap_err();
        assert!(!e.to_string().contains('5'), "{e}");
        let p: Profile = read(
            Step::Profile,
            200,
            r#"{"dhanClientId":"1100001234","tokenValidity":"08/12/2026 10:00"}"#,
            &[],
        )
        .unwrap();
        assert_eq!(p.client_id, "1100001234");
    }

    #[test]
    fn messages_never_quote_a_secret_back() {
        let e = read::<serde_json::Value>(
            Step::Mint,
            200,
            r#"{"status":"error","message":"Invalid Pin 246810 with TOTP 123456"}"#,
            &["246810", "123456"],
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            !text.contains("246810") && !text.contains("123456"),
            "{text}"
        );
        let long = format!(r#"{{"status":"error","message":"{}"}}"#, "x".repeat(500));
        let e = read::<serde_json::Value>(Step::Mint, 200, &long, &[]).unwrap_err();
        assert!(e.to_string().len() < 300);
    }
}
