//! Signed token records (README "Fleet mode", "Trusting Redis"). Anyone who can write to Redis
//! could otherwise put a token of their choosing into every warden's `.env`: the leader signs
//! what it stores with a key only the fleet has (derived from the Kite app's api_secret), and a
//! record whose signature does not verify is never used.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::store::SharedToken;
use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// What the record key is derived for; a new record layout gets a new label, so an old
/// signature can never verify a new layout.
const LABEL: &[u8] = b"warden token record v1";

/// The key token records (and followers' requests) are signed with:
/// HMAC-SHA256(api_secret, LABEL). The api_secret itself
/// is never used as a key, so a signature reveals nothing usable against Kite's checksum.
#[derive(Clone)]
pub struct RecordKey([u8; 32]);

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKey(***)")
    }
}

impl RecordKey {
    /// `None` for an empty api_secret: there is nothing to derive a key from.
    pub fn derive(api_secret: &Secret) -> Option<RecordKey> {
        if api_secret.expose().is_empty() {
            return None;
        }
        let mut mac = HmacSha256::new_from_slice(api_secret.expose().as_bytes()).ok()?;
        mac.update(LABEL);
        Some(RecordKey(mac.finalize().into_bytes().into()))
    }

    /// Length-prefixed fields: no two different field lists share one byte string.
    fn mac_of(&self, fields: &[&str]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        for f in fields {
            mac.update(&(f.len() as u64).to_be_bytes());
            mac.update(f.as_bytes());
        }
        mac
    }

    fn mac(&self, slot: &str, t: &SharedToken) -> HmacSha256 {
        let (obtained, expires, fence) = (
            t.rec.obtained_at.to_string(),
            t.rec.expires_at.to_string(),
            t.fence.to_string(),
        );
        let fields: [&str; 8] = [
            slot,
            t.rec.access_token.expose(),
            &t.rec.user_id,
            &obtained,
            &expires,
            t.rec.source.as_str(),
            &fence,
            &t.writer,
        ];
        let mut mac = self.mac_of(&fields);
        // Companions only when present: a record without them signs exactly as before.
        let c = &t.rec.companions;
        let mut extra: Vec<&str> = Vec::new();
        for (k, v) in &c.env {
            extra.extend(["env", k.as_str(), v.expose()]);
        }
        if let Some(r) = &c.refresh_token {
            extra.extend(["refresh_token", r.expose()]);
        }
        for f in extra {
            mac.update(&(f.len() as u64).to_be_bytes());
            mac.update(f.as_bytes());
        }
        mac
    }

    /// The hex signature of `t` stored under the Redis key `slot` (a record copied to another
    /// fleet's key does not verify there).
    pub fn sign(&self, slot: &str, t: &SharedToken) -> String {
        hex::encode(self.mac(slot, t).finalize().into_bytes())
    }

    /// Constant-time check of a hex signature.
    pub fn verify(&self, slot: &str, t: &SharedToken, signature: &str) -> bool {
        let Ok(raw) = hex::decode(signature) else {
            return false;
        };
        self.mac(slot, t).verify_slice(&raw).is_ok()
    }

    /// The hex signature of a follower's request (its JSON text) pushed to the list `slot`.
    pub fn sign_request(&self, slot: &str, body: &str) -> String {
        hex::encode(
            self.mac_of(&["request", slot, body])
                .finalize()
                .into_bytes(),
        )
    }

    pub fn verify_request(&self, slot: &str, body: &str, signature: &str) -> bool {
        let Ok(raw) = hex::decode(signature) else {
            return false;
        };
        self.mac_of(&["request", slot, body])
            .verify_slice(&raw)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{TokenRecord, TokenSource};

    fn token() -> SharedToken {
        SharedToken {
            rec: TokenRecord {
                access_token: Secret::new("tok-1"),
                user_id: "AB1234".into(),
                obtained_at: 100,
                expires_at: 200,
                source: TokenSource::Totp,
                companions: Default::default(),
            },
            fence: 7,
            writer: "host/1/abcd".into(),
        }
    }

    #[test]
    fn a_signature_covers_every_field_and_the_slot() {
        let key = RecordKey::derive(&Secret::new("app-secret")).unwrap();
        let sig = key.sign("p:k:token", &token());
        assert!(key.verify("p:k:token", &token(), &sig));
        assert!(!key.verify("other:k:token", &token(), &sig));
        let changes: [fn(&mut SharedToken); 7] = [
            |t| t.rec.access_token = Secret::new("tok-2"),
            |t| t.rec.user_id = "ZZ9999".into(),
            |t| t.rec.obtained_at += 1,
            |t| t.rec.expires_at += 1,
            |t| t.rec.source = TokenSource::Manual,
            |t| t.fence += 1,
            |t| t.writer = "host/2/abcd".into(),
        ];
        for change in changes {
            let mut t = token();
            change(&mut t);
            assert!(!key.verify("p:k:token", &t, &sig));
        }
    }

    #[test]
    fn companions_are_signed_and_a_record_without_them_signs_as_before() {
        let key = RecordKey::derive(&Secret::new("app-secret")).unwrap();
        let plain = key.sign("s", &token());
        let mut with = token();
        with.rec.companions.env = vec![("FEED".into(), Secret::new("feed-1"))];
        with.rec.companions.refresh_token = Some(Secret::new("refresh-1"));
        let sig = key.sign("s", &with);
        assert_ne!(sig, plain);
        assert!(key.verify("s", &with, &sig));
        // Dropping or changing a companion breaks the signature.
        assert!(!key.verify("s", &token(), &sig));
        let mut forged = with.clone();
        forged.rec.companions.env[0].1 = Secret::new("feed-2");
        assert!(!key.verify("s", &forged, &sig));
        let mut forged = with.clone();
        forged.rec.companions.refresh_token = None;
        assert!(!key.verify("s", &forged, &sig));
        // The v1 layout: the eight fields, length-prefixed, nothing after them.
        let v1 = key
            .mac_of(&[
                "s",
                "tok-1",
                "AB1234",
                "100",
                "200",
                "totp",
                "7",
                "host/1/abcd",
            ])
            .finalize()
            .into_bytes();
        assert_eq!(plain, hex::encode(v1));
    }

    #[test]
    fn another_secret_or_a_malformed_signature_does_not_verify() {
        let key = RecordKey::derive(&Secret::new("app-secret")).unwrap();
        let other = RecordKey::derive(&Secret::new("not-the-secret")).unwrap();
        let sig = other.sign("s", &token());
        assert!(!key.verify("s", &token(), &sig));
        assert!(!key.verify("s", &token(), ""));
        assert!(!key.verify("s", &token(), "zz-not-hex"));
        assert!(RecordKey::derive(&Secret::new("")).is_none());
        assert_eq!(format!("{key:?}"), "RecordKey(***)");
    }

    #[test]
    fn a_request_signature_covers_its_text_and_list() {
        let key = RecordKey::derive(&Secret::new("app-secret")).unwrap();
        let sig = key.sign_request("p:k:requests", r#"{"kind":"refresh"}"#);
        assert!(key.verify_request("p:k:requests", r#"{"kind":"refresh"}"#, &sig));
        assert!(!key.verify_request("p:k:requests", r#"{"kind":"adopt"}"#, &sig));
        assert!(!key.verify_request("q:k:requests", r#"{"kind":"refresh"}"#, &sig));
        assert!(!key.verify_request("p:k:requests", r#"{"kind":"refresh"}"#, "00"));
    }

    #[test]
    fn the_key_is_derived_not_the_secret_itself() {
        let key = RecordKey::derive(&Secret::new("app-secret")).unwrap();
        assert_ne!(&key.0[..], b"app-secret");
    }
}
