//! `[token.angelone]` (SPEC §9.2): what the Angel One provider needs for the chosen login.

use super::{blank, is_env_name, push, web_url, Found};
use crate::config::schema::{AngelOneConfig, LoginMode, TokenConfig};

pub(super) fn check(t: &TokenConfig, v: &mut Vec<Found>) {
    let Some(a) = &t.angelone else {
        push(
            v,
            &["token", "angelone"],
            "provider = \"angelone\" needs a [token.angelone] section with api_key and \
             client_code (plus pin and totp_secret for login = \"totp\")",
        );
        return;
    };
    let k = |key: &'static str| ["token", "angelone", key];
    identifiers(a, v);
    if a.login == LoginMode::Totp {
        if blank(a.pin.expose()) {
            push(
                v,
                &k("pin"),
                "login = \"totp\" needs the trading PIN: set pin or pin_file",
            );
        }
        if a.totp_secret.is_empty() {
            push(
                v,
                &k("totp_secret"),
                "login = \"totp\" needs the TOTP secret: set totp_secret or totp_secret_file",
            );
        } else if !is_base32(a.totp_secret.expose()) {
            push(
                v,
                &k("totp_secret"),
                "is not valid base32: use the secret shown when you enabled TOTP at \
                 smartapi.angelbroking.com/enable-totp (letters A-Z and digits 2-7)",
            );
        }
    }
    for (key, value) in [("api_base", &a.api_base), ("login_base", &a.login_base)] {
        if let Err(e) = web_url(value) {
            push(v, &k(key), e);
        }
    }
    if !is_env_name(&a.feed_env_key) {
        push(
            v,
            &k("feed_env_key"),
            format!(
                "{:?} is not a valid environment variable name: use letters, digits and _, \
                 not starting with a digit (like \"ANGELONE_FEED_TOKEN\")",
                a.feed_env_key
            ),
        );
    } else if a.feed_env_key == t.env_key {
        push(
            v,
            &k("feed_env_key"),
            format!(
                "is the same as token.env_key ({:?}): the feed token would overwrite the JWT; \
                 give it its own name (the default is \"ANGELONE_FEED_TOKEN\")",
                t.env_key
            ),
        );
    }
}

/// Base32 as authenticator apps show it: spaces, dashes, `=` padding and lowercase allowed
/// (the provider reads it the same way).
fn is_base32(secret: &str) -> bool {
    let clean: String = secret
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '='))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    !clean.is_empty() && totp_rs::Secret::Encoded(clean).to_bytes().is_ok()
}

fn identifiers(a: &AngelOneConfig, v: &mut Vec<Found>) {
    let k = |key: &'static str| ["token", "angelone", key];
    let ids = [
        (
            "api_key",
            &a.api_key,
            "set it to your SmartAPI app's API key (smartapi.angelbroking.com, My Apps)",
        ),
        (
            "client_code",
            &a.client_code,
            "set it to the Angel One client code the token is for",
        ),
    ];
    for (key, value, what) in ids {
        if blank(value) {
            push(v, &k(key), format!("must not be empty: {what}"));
        } else if value.contains(char::is_whitespace) {
            // Sent as a header and compared exactly: a stray space would refuse every login.
            push(
                v,
                &k(key),
                "contains whitespace, which no Angel One value of this kind has: remove the \
                 stray space or newline",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::testutil::{load_text, load_vars, ok, problem_at, write};

    const MANUAL: &str = "[token]\nprovider = \"angelone\"\n[token.angelone]\n\
                          api_key = \"angelsbx\"\nclient_code = \"S123456\"\n";

    fn totp(extra: &str) -> String {
        format!("{MANUAL}login = \"totp\"\n{extra}")
    }

    #[test]
    fn a_manual_table_needs_only_the_key_and_the_client_code() {
        let c = ok(MANUAL);
        let t = c.token.unwrap();
        assert_eq!(t.env_key, "ANGELONE_JWT", "the provider's default env_key");
        let a = t.angelone.unwrap();
        assert_eq!(a.feed_env_key, "ANGELONE_FEED_TOKEN");
        assert_eq!(a.api_base, "https://apiconnect.angelone.in");
        assert_eq!(a.login_base, "https://smartapi.angelone.in");
    }

    #[test]
    fn the_table_and_its_identifiers_are_required() {
        let p = problem_at("[token]\nprovider = \"angelone\"\n", "token.angelone");
        assert!(p.message.contains("[token.angelone]"), "{}", p.message);
        for key in ["api_key", "client_code"] {
            let text = MANUAL.replacen(&format!("{key} = \""), &format!("{key} = \" "), 1);
            let p = problem_at(&text, &format!("token.angelone.{key}"));
            assert!(p.message.contains("whitespace"), "{}", p.message);
        }
        let p = problem_at(
            &MANUAL.replace("client_code = \"S123456\"", "client_code = \"\""),
            "token.angelone.client_code",
        );
        assert!(p.message.contains("client code"), "{}", p.message);
    }

    #[test]
    fn totp_mode_needs_a_pin_and_a_base32_secret_without_showing_them() {
        let p = problem_at(
            &totp("totp_secret = \"JBSWY3DPEHPK3PXP\"\n"),
            "token.angelone.pin",
        );
        assert!(p.message.contains("pin_file"), "{}", p.message);
        problem_at(&totp("pin = \"1357\"\n"), "token.angelone.totp_secret");
        let bad = totp("pin = \"1357\"\ntotp_secret = \"NOT-BASE32-!!1\"\n");
        let p = problem_at(&bad, "token.angelone.totp_secret");
        assert!(!p.message.contains("NOT-BASE32"), "{}", p.message);
        let c = ok(&totp(
            "pin = \"1357\"\ntotp_secret = \"jbsw y3dp ehpk 3pxp\"\n",
        ));
        assert_eq!(c.token.unwrap().angelone.unwrap().pin.expose(), "1357");
    }

    #[test]
    fn secrets_may_come_from_files() {
        let f = write(&totp(
            "pin_file = \"pin\"\ntotp_secret = \"JBSWY3DPEHPK3PXP\"\n",
        ));
        std::fs::write(f.dir.path().join("pin"), "2468\n").unwrap();
        let c = load_vars(&f, &[]).unwrap();
        assert_eq!(c.token.unwrap().angelone.unwrap().pin.expose(), "2468");
        let missing = totp("pin_file = \"nope\"\ntotp_secret = \"JBSWY3DPEHPK3PXP\"\n");
        problem_at(&missing, "token.angelone.pin_file");
    }

    #[test]
    fn urls_feed_key_and_unknown_keys_are_checked() {
        problem_at(
            &format!("{MANUAL}api_base = \"apiconnect.angelone.in\"\n"),
            "token.angelone.api_base",
        );
        problem_at(
            &format!("{MANUAL}login_base = \"ftp://smartapi\"\n"),
            "token.angelone.login_base",
        );
        problem_at(
            &format!("{MANUAL}feed_env_key = \"1FEED\"\n"),
            "token.angelone.feed_env_key",
        );
        let p = problem_at(
            &format!("{MANUAL}feed_env_key = \"ANGELONE_JWT\"\n"),
            "token.angelone.feed_env_key",
        );
        assert!(p.message.contains("overwrite"), "{}", p.message);
        problem_at(
            &format!("{MANUAL}client_id = \"x\"\n"),
            "token.angelone.client_id",
        );
        let e = load_text(&format!("{MANUAL}login = \"approve\"\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("token.angelone.login"), "{e}");
    }

    #[test]
    fn plain_http_to_another_machine_is_a_warning() {
        let text = format!(
            "[http]\npublic_url = \"http://127.0.0.1:9180\"\napi_token = \"t\"\n{MANUAL}\
             api_base = \"http://angel.example\"\nlogin_base = \"http://127.0.0.1:9191\"\n"
        );
        let keys: Vec<String> = ok(&text).warnings.into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["token.angelone.api_base"]);
    }
}
