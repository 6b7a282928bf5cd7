//! The claims warden reads from a Dhan access token (a JWT): `exp` dates it, `iat` says when it
//! was minted (Dhan mints at most one token per client every 2 minutes), `dhanClientId` whose it
//! is. The signature is not checked: nothing here makes a token trusted, only the broker's
//! profile endpoint does.

use serde::Deserialize;

/// The claims of interest; each is absent when the token does not carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// Unix seconds when the token dies.
    #[serde(default)]
    pub exp: Option<i64>,
    /// Unix seconds when it was issued.
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default, rename = "dhanClientId")]
    pub client_id: Option<String>,
}

/// The claims of a Dhan token, or `None` when `token` is not a JWT.
pub fn claims(token: &str) -> Option<Claims> {
    crate::token::provider::jwt::payload(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload.as_bytes())
        )
    }

    #[test]
    fn reads_exp_iat_and_the_client_of_a_dhan_token() {
        let t = jwt(
            r#"{"iss":"dhan","iat":1700000000,"exp":1700086400,"dhanClientId":"1100001234","tokenConsumerType":"APP"}"#,
        );
        let c = claims(&t).unwrap();
        assert_eq!(c.exp, Some(1_700_086_400));
        assert_eq!(c.iat, Some(1_700_000_000));
        assert_eq!(c.client_id.as_deref(), Some("1100001234"));
    }

    #[test]
    fn padded_payloads_and_missing_claims_are_read() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":5}"#);
        let t = format!("h.{payload}==.s");
        assert_eq!(claims(&t).unwrap().exp, Some(5));
        assert_eq!(claims(&jwt("{}")).unwrap(), Claims::default());
    }

    #[test]
    fn anything_but_a_jwt_has_no_claims() {
        assert_eq!(claims("opaque-token"), None);
        assert_eq!(claims("a.b"), None);
        assert_eq!(claims("a.b.c.d"), None);
        assert_eq!(claims("h.!!!.s"), None);
        assert_eq!(claims(&jwt("not json")), None);
        assert_eq!(claims(&jwt(r#"{"exp":"tomorrow"}"#)), None);
    }
}
