//! Reading SmartAPI answers: both dialects of its envelope (`status`/`errorcode` and the
//! gateway's `success`/`errorCode`, booleans or the strings the docs show), and a JWT's `exp`.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{AngelError, Call};
use crate::token::broker_text::shorten;

/// `true`, or the string `"true"` the docs' examples use.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn text_of<'a>(obj: &'a serde_json::Map<String, Value>, keys: &[&str]) -> &'a str {
    keys.iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .unwrap_or("")
}

/// The `data` of a successful answer as `T`, or the right [`AngelError`]: a refusal by its
/// error code whatever the HTTP status, a non-JSON body as such.
pub fn decode<T: DeserializeOwned>(call: Call, status: u16, body: &str) -> Result<T, AngelError> {
    let obj = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(obj)) => obj,
        _ => {
            return Err(AngelError::NotJson {
                call,
                status,
                detail: shorten(body),
            })
        }
    };
    let ok = truthy(obj.get("status")) || truthy(obj.get("success"));
    if !ok {
        return Err(AngelError::Rejected {
            call,
            status,
            code: shorten(text_of(&obj, &["errorcode", "errorCode"])),
            message: shorten(text_of(&obj, &["message"])),
        });
    }
    if !(200..300).contains(&status) {
        return Err(AngelError::Garbage {
            call,
            status,
            detail: "a success body with an error status".into(),
        });
    }
    let data = obj.get("data").cloned().unwrap_or(Value::Null);
    serde_json::from_value(data).map_err(|err| AngelError::Garbage {
        call,
        status,
        // serde's text can quote a value, and a value here may be a token: only the kind of
        // mismatch is reported.
        detail: format!("unexpected data ({:?} error)", err.classify()),
    })
}

/// The JWT's `exp` claim (unix seconds): a hint for when to expect the token to die, never a
/// reason to trust it.
pub use crate::token::provider::jwt::expires_at as jwt_exp;

/// The token without the `Bearer ` some answers put in front of it: env files get the raw
/// token (SPEC §9.1).
pub fn raw_token(token: &str) -> &str {
    let t = token.trim();
    match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => t[7..].trim_start(),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::provider::{Failure, ProviderError};

    #[derive(serde::Deserialize, Debug)]
    struct Profile {
        clientcode: String,
    }

    #[test]
    fn both_dialects_and_string_booleans_are_read() {
        let p: Profile = decode(
            Call::Profile,
            200,
            r#"{"status":true,"message":"SUCCESS","errorcode":"","data":{"clientcode":"S1"}}"#,
        )
        .unwrap();
        assert_eq!(p.clientcode, "S1");
        let gateway =
            r#"{"success":false,"message":"Invalid Token","errorCode":"AG8001","data":""}"#;
        let e = decode::<Profile>(Call::Profile, 200, gateway).unwrap_err();
        assert_eq!(e.code(), Some("AG8001"));
        assert_eq!(e.failure(), Failure::TokenBad);
        let docs = r#"{"status":"false","message":"Login Id or password is invalid","errorcode":"AB1007","data":"null"}"#;
        let e = decode::<Profile>(Call::Login, 200, docs).unwrap_err();
        assert_eq!(e.code(), Some("AB1007"));
        assert_eq!(e.failure(), Failure::Credential);
        let expired =
            r#"{"status":false,"message":"Token Expired","errorcode":"AG8002","data":null}"#;
        let e = decode::<Profile>(Call::Profile, 401, expired).unwrap_err();
        assert_eq!(
            e.failure(),
            Failure::TokenBad,
            "by the body, not the status"
        );
    }

    #[test]
    fn non_json_and_odd_bodies_are_transient() {
        let e = decode::<Profile>(
            Call::Login,
            403,
            "Access denied because of exceeding access rate",
        )
        .unwrap_err();
        assert!(matches!(e, AngelError::NotJson { status: 403, .. }), "{e}");
        assert_eq!(e.failure(), Failure::Transient);
        let e =
            decode::<Profile>(Call::Profile, 200, r#"{"status":true,"data":null}"#).unwrap_err();
        assert!(matches!(e, AngelError::Garbage { .. }), "{e}");
        let e = decode::<Profile>(Call::Profile, 502, "<html>bad gateway</html>").unwrap_err();
        assert_eq!(e.failure(), Failure::Transient);
        let long = "x".repeat(1000);
        let e = decode::<Profile>(Call::Profile, 500, &long).unwrap_err();
        assert!(e.to_string().len() < 400);
    }

    fn jwt(claims: &str) -> String {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(claims))
    }

    #[test]
    fn exp_is_read_from_the_payload() {
        assert_eq!(
            jwt_exp(&jwt(r#"{"sub":"S1","exp":1765000000}"#)),
            Some(1765000000)
        );
        assert_eq!(jwt_exp(&jwt(r#"{"exp":1765000000.5}"#)), Some(1765000000));
        assert_eq!(jwt_exp(&jwt(r#"{"sub":"S1"}"#)), None);
        assert_eq!(jwt_exp(&jwt(r#"{"exp":"soon"}"#)), None);
        assert_eq!(jwt_exp(&jwt(r#"{"exp":-5}"#)), None);
        assert_eq!(jwt_exp("opaque-token"), None);
        assert_eq!(jwt_exp("a.b.c.d"), None);
        assert_eq!(jwt_exp("a.!!!.c"), None);
    }

    #[test]
    fn a_bearer_prefix_is_dropped() {
        assert_eq!(raw_token("Bearer eyJ.x.y"), "eyJ.x.y");
        assert_eq!(raw_token("bearer  eyJ.x.y "), "eyJ.x.y");
        assert_eq!(raw_token("eyJ.x.y"), "eyJ.x.y");
    }
}
