//! HS256 JWTs for the broker sandboxes. The sandboxes sign with a random per-process key:
//! warden only ever reads the `exp` claim and never trusts a signature, so a key that no one
//! else knows is exactly right.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signed compact JWT of `claims` (an object).
pub fn sign(claims: &Value, key: &[u8]) -> String {
    let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64url(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&mac.finalize().into_bytes()))
}

/// A fresh random signing key.
pub fn random_key() -> Vec<u8> {
    (0..32).map(|_| fastrand::u8(..)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(b"foob"), "Zm9vYg");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn token_has_three_parts_and_the_claims() {
        let t = sign(&serde_json::json!({"exp": 42}), b"k");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], b64url(br#"{"exp":42}"#));
    }
}
