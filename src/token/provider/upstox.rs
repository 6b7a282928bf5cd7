//! Upstox as a [`Provider`] (SPEC §9.2, `brokers/upstox.md`).
//!
//! Two ways to a token, both involving a person, since Upstox has no official automated
//! login: `approve` sends the official Access Token Request (the person taps Approve in the
//! Upstox app or on WhatsApp, and Upstox posts the token to `{public_url}/upstox/notify`), and
//! `manual` is the authorization-code redirect (`/login` → Upstox's dialog →
//! `/upstox/callback` → the code exchange). Validation is `GET /v2/user/profile`. Tokens die at
//! 03:30 IST; a token's JWT `exp`, when present, says exactly when.

mod client;
mod error;

use std::collections::HashMap;

use serde::Deserialize;

pub use client::{Exchanged, Profile, UpstoxClient};
pub use error::{Step, UpstoxError};

use super::{DeliveryRefused, Grant, Identity, LoginKind, Obtained, PendingApproval, Provider};
use crate::config::{Secret, TokenConfig, UpstoxConfig, UpstoxLogin};

/// What the person must do while an Access Token Request waits (`last_error`, notifications).
pub const APPROVE_ASK: &str =
    "an Upstox access token request is waiting: approve the request in the Upstox app / WhatsApp";

/// Upstox tokens die at 03:30 IST the next day, whenever they were issued.
const DIES_AT: (i8, i8) = (3, 30);

/// `[token.upstox]` and the Access Token Request in flight.
pub struct UpstoxProvider {
    cfg: Option<UpstoxConfig>,
    client: Option<UpstoxClient>,
    /// `{public_url}/upstox/callback`, the redirect registered with the app.
    redirect_uri: String,
    /// When the request sent last lapses (Unix seconds), until a token settles it.
    pending_until: Option<i64>,
}

impl UpstoxProvider {
    pub fn new(cfg: Option<UpstoxConfig>) -> UpstoxProvider {
        let mut p = UpstoxProvider {
            cfg: None,
            client: None,
            redirect_uri: String::new(),
            pending_until: None,
        };
        p.configure(cfg);
        p
    }

    /// Where warden is reached from outside (`[http] public_url`): the callback is under it.
    pub fn set_public_url(&mut self, public_url: &str) {
        self.redirect_uri = format!("{}/upstox/callback", public_url.trim_end_matches('/'));
    }

    fn configure(&mut self, cfg: Option<UpstoxConfig>) {
        if cfg != self.cfg {
            // Another app or user: a request sent for the old one proves nothing now.
            self.pending_until = None;
        }
        self.client = cfg.clone().and_then(|c| UpstoxClient::new(c).ok());
        self.cfg = cfg;
    }

    fn client(&self) -> Result<&UpstoxClient, UpstoxError> {
        self.client.as_ref().ok_or_else(|| {
            UpstoxError::Config("provider = \"upstox\" needs a [token.upstox] section".into())
        })
    }
}

/// A JWT's `exp` claim (Unix seconds): it only dates the token, which validation alone makes
/// trusted.
pub use super::jwt::expires_at as jwt_exp;

/// The next 03:30 in India after now: when an Upstox token without `exp` dies.
fn next_death() -> i64 {
    let tz = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap_or(jiff::tz::TimeZone::UTC);
    crate::token::schedule::next_after(jiff::Timestamp::now(), &tz, DIES_AT).as_second()
}

/// The JSON Upstox posts to the Notifier Webhook. `Debug` redacts the token.
#[derive(Deserialize)]
struct Notification {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    access_token: Secret,
    #[serde(default)]
    message_type: String,
}

impl Provider for UpstoxProvider {
    type Error = UpstoxError;

    fn name(&self) -> &'static str {
        "upstox"
    }

    fn login_kind(&self) -> LoginKind {
        match &self.cfg {
            Some(c) if c.login == UpstoxLogin::Approve => LoginKind::Approve,
            _ => LoginKind::Manual,
        }
    }

    fn expected_user(&self) -> &str {
        self.cfg.as_ref().map_or("", |c| c.user_id.as_str())
    }

    fn credentials(&self) -> Vec<&str> {
        match &self.cfg {
            Some(c) => vec!["upstox", &c.api_key, &c.user_id, c.api_secret.expose()],
            None => vec!["none"],
        }
    }

    fn can_validate(&self) -> bool {
        self.client.is_some()
    }

    async fn validate(&mut self, token: &Secret) -> Result<Identity, UpstoxError> {
        let profile = self.client()?.profile(token).await?;
        Ok(Identity {
            user_id: profile.user_id,
            expires_at: Some(jwt_exp(token.expose()).unwrap_or_else(next_death)),
        })
    }

    /// `approve`: send the Access Token Request. The token comes later, posted by Upstox.
    async fn login(
        &mut self,
        _step: Option<u64>,
        _record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Grant, UpstoxError> {
        if self.login_kind() != LoginKind::Approve {
            return Err(UpstoxError::Config(
                "token.upstox.login = \"manual\": a person logs in through /login".into(),
            ));
        }
        let until = self.client()?.request_token().await?;
        self.pending_until = Some(until);
        Ok(Grant::Pending)
    }

    async fn exchange(&mut self, code: &str) -> Result<Obtained, UpstoxError> {
        let got = self.client()?.exchange(code, &self.redirect_uri).await?;
        Ok(Obtained {
            access_token: got.access_token,
            user_id: got.user_id,
            companions: Default::default(),
        })
    }

    fn login_url(&self, state: Option<&str>) -> Option<String> {
        Some(self.client.as_ref()?.login_url(&self.redirect_uri, state))
    }

    fn callback_code(&self, query: &HashMap<String, String>) -> Result<String, &'static str> {
        if query.contains_key("error") {
            return Err("Upstox reports the login did not succeed; try again from /login");
        }
        query
            .get("code")
            .filter(|c| !c.is_empty())
            .cloned()
            .ok_or("missing code")
    }

    async fn logout(&mut self, token: &Secret) -> Result<(), UpstoxError> {
        self.client()?.logout(token).await
    }

    fn pending_approval(&self) -> Option<PendingApproval> {
        Some(PendingApproval {
            expires_at: self.pending_until?,
            ask: APPROVE_ASK,
        })
    }

    fn take_delivery(&mut self, body: &[u8]) -> Result<Obtained, DeliveryRefused> {
        let (Some(cfg), Some(_)) = (&self.cfg, self.pending_until) else {
            return Err(DeliveryRefused::NotPending);
        };
        let n: Notification = serde_json::from_slice(body)
            .map_err(|_| DeliveryRefused::Invalid("the body is not Upstox's notification JSON"))?;
        if n.message_type != "access_token" {
            return Err(DeliveryRefused::Invalid(
                "message_type is not \"access_token\"",
            ));
        }
        if n.access_token.is_empty() {
            return Err(DeliveryRefused::Invalid("no access_token"));
        }
        if n.client_id != cfg.api_key {
            return Err(DeliveryRefused::Invalid(
                "client_id is not this app's api_key",
            ));
        }
        if n.user_id != cfg.user_id {
            return Err(DeliveryRefused::OtherUser);
        }
        Ok(Obtained {
            access_token: n.access_token,
            user_id: n.user_id,
            companions: Default::default(),
        })
    }

    fn approval_settled(&mut self) {
        self.pending_until = None;
    }

    fn reconfigure(&mut self, cfg: &TokenConfig) {
        self.configure(cfg.upstox.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(claims))
    }

    fn approve() -> UpstoxProvider {
        let mut p = UpstoxProvider::new(Some(UpstoxConfig {
            api_key: "app".into(),
            api_secret: Secret::new("s3cret"),
            user_id: "UX1234".into(),
            login: UpstoxLogin::Approve,
            ..Default::default()
        }));
        p.set_public_url("https://w.example/");
        p
    }

    #[test]
    fn exp_comes_from_the_jwt_payload() {
        assert_eq!(
            jwt_exp(&jwt(
                r#"{"sub":"UX1234","iss":"udapi-gateway-service","exp":1765059000}"#
            )),
            Some(1_765_059_000)
        );
        assert_eq!(jwt_exp(&jwt(r#"{"sub":"UX1234"}"#)), None);
        for opaque in ["", "abc", "a.b", "a.%%%.c", "a.b.c.d", &jwt("not json")] {
            assert_eq!(jwt_exp(opaque), None, "{opaque}");
        }
    }

    #[test]
    fn without_exp_the_token_dies_at_the_next_0330_ist() {
        let t = next_death();
        let now = jiff::Timestamp::now().as_second();
        assert!(t > now && t <= now + 24 * 3600, "{t}");
        // 03:30 IST is 22:00 UTC.
        assert_eq!(t.rem_euclid(86_400), 22 * 3600);
    }

    #[test]
    fn kind_user_credentials_and_the_dialog() {
        let p = approve();
        assert_eq!(p.name(), "upstox");
        assert_eq!(p.login_kind(), LoginKind::Approve);
        assert_eq!(p.expected_user(), "UX1234");
        assert_eq!(p.credentials()[..3], ["upstox", "app", "UX1234"]);
        let url = p.login_url(Some("st")).unwrap();
        assert!(
            url.contains("redirect_uri=https%3A%2F%2Fw.example%2Fupstox%2Fcallback"),
            "{url}"
        );
        assert!(url.contains("&state=st&response_type=code"), "{url}");
        let manual = UpstoxProvider::new(Some(UpstoxConfig::default()));
        assert_eq!(manual.login_kind(), LoginKind::Manual);
        assert!(UpstoxProvider::new(None).login_url(None).is_none());
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(
            p.callback_code(&q(&[("code", "c1"), ("state", "s")])),
            Ok("c1".into())
        );
        assert!(p.callback_code(&q(&[("state", "s")])).is_err());
        assert!(p.callback_code(&q(&[("error", "access_denied")])).is_err());
    }

    #[test]
    fn a_notification_is_taken_only_for_a_pending_request_of_this_app_and_user() {
        let mut p = approve();
        let body = |user: &str, client: &str, kind: &str| {
            serde_json::json!({
                "client_id": client, "user_id": user, "access_token": "tok",
                "token_type": "Bearer", "expires_at": "1765059000000",
                "issued_at": "1765000000000", "message_type": kind,
            })
            .to_string()
            .into_bytes()
        };
        let good = body("UX1234", "app", "access_token");
        assert_eq!(p.take_delivery(&good), Err(DeliveryRefused::NotPending));
        p.pending_until = Some(i64::MAX);
        assert_eq!(
            p.take_delivery(&body("UX9999", "app", "access_token")),
            Err(DeliveryRefused::OtherUser)
        );
        assert!(matches!(
            p.take_delivery(&body("UX1234", "other", "access_token")),
            Err(DeliveryRefused::Invalid(_))
        ));
        assert!(matches!(
            p.take_delivery(&body("UX1234", "app", "order_update")),
            Err(DeliveryRefused::Invalid(_))
        ));
        assert!(matches!(
            p.take_delivery(b"{"),
            Err(DeliveryRefused::Invalid(_))
        ));
        let got = p.take_delivery(&good).unwrap();
        assert_eq!(
            (got.access_token.expose(), got.user_id.as_str()),
            ("tok", "UX1234")
        );
        assert!(
            p.pending_approval().is_some(),
            "settled only once validated"
        );
        p.approval_settled();
        assert_eq!(p.take_delivery(&good), Err(DeliveryRefused::NotPending));
    }
}
