//! The claims warden reads from a broker's JWT access token, without verifying it: `exp` (when
//! the token dies) becomes `expires_at` (SPEC §9.1), and a provider may read more (Dhan's `iat`
//! and client id). A token is never trusted because of its claims; only the broker's profile
//! endpoint is the truth. Every JWT broker (Angel One, Dhan, Upstox, Fyers) reads it here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The payload of a compact JWT (`header.payload.signature`), or `None` when `token` is not
/// one (an opaque token, a garbled one).
pub fn payload<T: DeserializeOwned>(token: &str) -> Option<T> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // base64url without padding (RFC 7515); tolerate the padding some encoders leave.
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Unix seconds of the `exp` claim, when the token carries a positive one.
pub fn expires_at(token: &str) -> Option<i64> {
    let exp = payload::<Value>(token)?.get("exp")?.clone();
    exp.as_i64()
        .or_else(|| exp.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        .filter(|s| *s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload.as_bytes())
        )
    }

    #[test]
    fn exp_is_read_from_the_payload() {
        // 2026-12-08 06:00:00 IST.
        let t = jwt(
            r#"{"iss":"api.fyers.in","sub":"access_token","fy_id":"XF01234","exp":1796689800}"#,
        );
        assert_eq!(expires_at(&t), Some(1_796_689_800));
        assert_eq!(
            expires_at(&jwt(r#"{"exp":1796689800.0}"#)),
            Some(1_796_689_800)
        );
        let padded = format!("h.{}==.s", URL_SAFE_NO_PAD.encode(br#"{"exp":1796689800}"#));
        assert_eq!(expires_at(&padded), Some(1_796_689_800));
    }

    #[test]
    fn tokens_without_a_usable_exp_give_none() {
        for t in [
            "opaque-token".to_string(),
            "a.b".to_string(),
            "a.!!!.c".to_string(),
            jwt(r#"{"sub":"access_token"}"#),
            jwt(r#"{"exp":"tomorrow"}"#),
            jwt(r#"{"exp":-5}"#),
            jwt("not json"),
        ] {
            assert_eq!(expires_at(&t), None, "{t}");
        }
    }
}
