//! HTTP plumbing shared by the API client and the login flow: one way to send, one way to
//! read Kite's envelope, one way to report a URL (never with its query).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{BrokerError, Step};
use crate::token::broker_text::{chain, shorten};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
                // serde's text can quote a value ("invalid type: string \"…\""), and a value
                // here may be a token: report only the kind of mismatch and where.
                detail: format!(
                    "unexpected data ({:?} error at column {})",
                    err.classify(),
                    err.column()
                ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::kite::{ErrorClass, Profile};

    #[test]
    fn redact_url_drops_query_and_userinfo() {
        assert_eq!(
            redact_url("http://u:p@127.0.0.1:1/session/token?api_key=k&access_token=T#x"),
            "http://127.0.0.1:1/session/token"
        );
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
}
