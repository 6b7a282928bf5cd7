//! The SmartAPI calls warden makes (brokers/angelone.md): loginByPassword, generateTokens,
//! getProfile, logout, the publisher login's URL, and a bare request that reads the broker's
//! clock. Nothing here logs, retries or remembers; URLs in errors never carry a query.

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::error::{AngelError, Call};
use super::wire::{decode, raw_token};
use crate::config::{AngelOneConfig, Secret};
use crate::token::broker_text::{chain, form_encode as encode};
use crate::token::clock_guard::{parse_http_date, BrokerClock};
use crate::token::kite::redact_url;

const LOGIN: &str = "/rest/auth/angelbroking/user/v1/loginByPassword";
const GENERATE_TOKENS: &str = "/rest/auth/angelbroking/jwt/v1/generateTokens";
const PROFILE: &str = "/rest/secure/angelbroking/user/v1/getProfile";
const LOGOUT: &str = "/rest/secure/angelbroking/user/v1/logout";
const PUBLISHER_LOGIN: &str = "/publisher-login";

/// Per-request budget (the official SDK uses 7 s).
pub const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client identification headers every SDK call carries. warden sends fixed, neutral
/// values: it does not look up the machine's public address (the SDK asks api.ipify.org).
const CLIENT_LOCAL_IP: &str = "127.0.0.1";
const CLIENT_PUBLIC_IP: &str = "127.0.0.1";
const CLIENT_MAC: &str = "00:00:00:00:00:00";

/// What a login or a refresh answers. `Debug` redacts every token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub jwt: Secret,
    /// Empty when the answer had none.
    pub refresh_token: Secret,
    /// Empty when the answer had none.
    pub feed_token: Secret,
}

/// `getProfile`, the fields warden uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Profile {
    pub clientcode: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize)]
struct SessionData {
    #[serde(rename = "jwtToken")]
    jwt_token: String,
    #[serde(rename = "refreshToken", default)]
    refresh_token: Option<String>,
    #[serde(rename = "feedToken", default)]
    feed_token: Option<String>,
}

/// One Angel One app (api_key) at `api_base`.
#[derive(Debug)]
pub struct AngelClient {
    api_key: String,
    api_base: String,
    login_base: String,
    timeout: Duration,
    /// Built on first use: the TLS roots cost memory warden may never need.
    http: OnceLock<reqwest::Client>,
}

impl AngelClient {
    pub fn new(cfg: &AngelOneConfig) -> AngelClient {
        AngelClient {
            api_key: cfg.api_key.clone(),
            api_base: cfg.api_base.trim_end_matches('/').to_string(),
            login_base: cfg.login_base.trim_end_matches('/').to_string(),
            timeout: TIMEOUT,
            http: OnceLock::new(),
        }
    }

    /// `{login_base}/publisher-login?api_key=K[&state=S]`: Angel One sends the browser back
    /// to the app's registered redirect URL with `auth_token`, `feed_token` and `state`.
    pub fn publisher_login_url(&self, state: Option<&str>) -> String {
        let mut url = format!(
            "{}{PUBLISHER_LOGIN}?api_key={}",
            self.login_base,
            encode(&self.api_key)
        );
        if let Some(s) = state {
            url.push_str("&state=");
            url.push_str(&encode(s));
        }
        url
    }

    /// `loginByPassword`: the client code, the PIN (as `password`) and one TOTP code.
    pub async fn login(
        &self,
        client_code: &str,
        pin: &Secret,
        totp_code: &str,
    ) -> Result<Session, AngelError> {
        let body = json!({
            "clientcode": client_code,
            "password": pin.expose(),
            "totp": totp_code,
        });
        let (status, text, _) = self.post(Call::Login, LOGIN, &body, None).await?;
        session(Call::Login, status, &text).map_err(|e| e.redact(&[pin.expose(), totp_code]))
    }

    /// `generateTokens`: a new JWT, feed token and (rotated) refresh token for a live refresh
    /// token. `jwt` is the latest access token, sent as the docs' sample does (it may be dead:
    /// refreshing is what this is for).
    pub async fn generate_tokens(
        &self,
        refresh_token: &Secret,
        jwt: Option<&Secret>,
    ) -> Result<Session, AngelError> {
        let body = json!({ "refreshToken": refresh_token.expose() });
        let call = Call::GenerateTokens;
        let (status, text, _) = self.post(call, GENERATE_TOKENS, &body, jwt).await?;
        let jwt = jwt.map_or("", |t| t.expose());
        session(call, status, &text).map_err(|e| e.redact(&[refresh_token.expose(), jwt]))
    }

    /// `getProfile`: `Ok` means Angel One accepts the JWT right now (a dead one can come back
    /// as HTTP 200 with `AG8001`/`AG8002`: the body decides).
    pub async fn profile(&self, jwt: &Secret) -> Result<Profile, AngelError> {
        let call = Call::Profile;
        let url = format!("{}{PROFILE}", self.api_base);
        let req = self.headers(self.http(call)?.get(&url), Some(jwt));
        let (status, text, _) = self.send(call, req, &url).await?;
        let profile: Profile =
            decode(call, status, &text).map_err(|e| e.redact(&[jwt.expose()]))?;
        if profile.clientcode.trim().is_empty() {
            return Err(AngelError::Garbage {
                call,
                status,
                detail: "a profile without a client code".into(),
            });
        }
        Ok(profile)
    }

    /// `logout`: ends the session the JWT belongs to.
    pub async fn logout(&self, client_code: &str, jwt: &Secret) -> Result<(), AngelError> {
        let body = json!({ "clientcode": client_code });
        let (status, text, _) = self.post(Call::Logout, LOGOUT, &body, Some(jwt)).await?;
        let _: serde_json::Value =
            decode(Call::Logout, status, &text).map_err(|e| e.redact(&[jwt.expose()]))?;
        Ok(())
    }

    /// The broker's clock, from the `Date` of an unauthenticated profile request (it carries
    /// no token and no credentials; its answer, "token missing", is not read).
    pub async fn clock(&self) -> Result<BrokerClock, AngelError> {
        let call = Call::Clock;
        let url = format!("{}{PROFILE}", self.api_base);
        let req = self.headers(self.http(call)?.get(&url), None);
        let (status, _, date) = self.send(call, req, &url).await?;
        if status == 429 || status >= 500 {
            return Err(AngelError::NotJson {
                call,
                status,
                detail: "the broker is in trouble".into(),
            });
        }
        let local = jiff::Timestamp::now();
        Ok(match date.as_deref().and_then(parse_http_date) {
            Some(broker) => BrokerClock::Read { broker, local },
            None => BrokerClock::Missing,
        })
    }

    async fn post(
        &self,
        call: Call,
        path: &str,
        body: &serde_json::Value,
        jwt: Option<&Secret>,
    ) -> Result<(u16, String, Option<String>), AngelError> {
        let url = format!("{}{path}", self.api_base);
        let req = self.headers(self.http(call)?.post(&url), jwt).json(body);
        self.send(call, req, &url).await
    }

    /// The headers the official SDK sends with every call.
    fn headers(
        &self,
        req: reqwest::RequestBuilder,
        jwt: Option<&Secret>,
    ) -> reqwest::RequestBuilder {
        let req = req
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .header("X-UserType", "USER")
            .header("X-SourceID", "WEB")
            .header("X-ClientLocalIP", CLIENT_LOCAL_IP)
            .header("X-ClientPublicIP", CLIENT_PUBLIC_IP)
            .header("X-MACAddress", CLIENT_MAC)
            .header("X-PrivateKey", &self.api_key);
        match jwt {
            Some(t) => req.header("Authorization", format!("Bearer {}", t.expose())),
            None => req,
        }
    }

    /// Send and read the whole answer: status, body and `Date` header.
    async fn send(
        &self,
        call: Call,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, String, Option<String>), AngelError> {
        let transport = |e: reqwest::Error| {
            let e = e.without_url();
            if e.is_timeout() {
                AngelError::Timeout {
                    call,
                    url: redact_url(url),
                    timeout: self.timeout,
                }
            } else {
                AngelError::Network {
                    call,
                    url: redact_url(url),
                    detail: chain(&e),
                }
            }
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let date = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.map_err(transport)?;
        Ok((status, body, date))
    }

    fn http(&self, call: Call) -> Result<&reqwest::Client, AngelError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        // An answer that redirects is an answer to read, not a place to go.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(self.timeout))
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                AngelError::Config(format!(
                    "{call}: cannot build the HTTP client: {}",
                    chain(&e)
                ))
            })?;
        Ok(self.http.get_or_init(|| client))
    }
}

/// A login's or a refresh's tokens, the JWT without any `Bearer ` prefix.
fn session(call: Call, status: u16, body: &str) -> Result<Session, AngelError> {
    let data: SessionData = decode(call, status, body)?;
    let jwt = raw_token(&data.jwt_token);
    if jwt.is_empty() {
        return Err(AngelError::Garbage {
            call,
            status,
            detail: "no jwtToken".into(),
        });
    }
    Ok(Session {
        jwt: Secret::new(jwt),
        refresh_token: Secret::new(data.refresh_token.unwrap_or_default().trim()),
        feed_token: Secret::new(data.feed_token.unwrap_or_default().trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publisher_login_url_carries_the_key_and_the_state() {
        let cfg = AngelOneConfig {
            api_key: "my key".into(),
            login_base: "https://smartapi.angelone.in/".into(),
            ..Default::default()
        };
        let c = AngelClient::new(&cfg);
        assert_eq!(
            c.publisher_login_url(Some("a+b")),
            "https://smartapi.angelone.in/publisher-login?api_key=my+key&state=a%2Bb"
        );
        assert_eq!(
            c.publisher_login_url(None),
            "https://smartapi.angelone.in/publisher-login?api_key=my+key"
        );
    }

    #[test]
    fn a_session_answer_gives_raw_tokens() {
        let body = r#"{"status":true,"message":"SUCCESS","errorcode":"","data":{"jwtToken":"Bearer eyJ.a.b","refreshToken":"r1","feedToken":"f1","state":null}}"#;
        let s = session(Call::Login, 200, body).unwrap();
        assert_eq!(s.jwt.expose(), "eyJ.a.b");
        assert_eq!(s.refresh_token.expose(), "r1");
        assert_eq!(s.feed_token.expose(), "f1");
        let empty = r#"{"status":true,"errorcode":"","data":{"jwtToken":""}}"#;
        assert!(matches!(
            session(Call::Login, 200, empty),
            Err(AngelError::Garbage { .. })
        ));
    }
}
