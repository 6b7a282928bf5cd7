//! `[token.fyers]` (SPEC §9.2): what a valid table holds, and a message at the key to fix for
//! each way it can be wrong, never showing the secret key or the PIN.

use super::load::testutil::{load_text, load_vars, ok, problem_at, write};
use super::TokenProviderKind;

const FYERS: &str = "[http]\nlisten = \"127.0.0.1:9180\"\n[token]\nprovider = \"fyers\"\n\
                     [token.fyers]\nclient_id = \"APP1-100\"\nsecret_key = \"SECRET-KEY-21\"\n\
                     user_id = \"XF01234\"\n";

fn no_leak(text: &str, secret: &str) {
    if let Err(e) = load_text(text, &[]) {
        assert!(!e.to_string().contains(secret), "{secret} leaked:\n{e}");
    }
}

#[test]
fn a_fyers_table_gets_its_env_key_redirect_and_default_api_base() {
    let c = ok(FYERS);
    let t = c.token.unwrap();
    assert_eq!(t.provider, TokenProviderKind::Fyers);
    assert_eq!(t.env_key, "FYERS_ACCESS_TOKEN");
    let f = t.fyers.unwrap();
    assert_eq!(f.api_base, "https://api-t1.fyers.in/api/v3");
    assert_eq!(f.redirect_uri, "http://127.0.0.1:9180/fyers/callback");
    assert!(f.pin.is_empty(), "pin is optional");
    let c = ok(&FYERS.replace(
        "listen = \"127.0.0.1:9180\"\n",
        "listen = \"127.0.0.1:9180\"\npublic_url = \"https://w.example/\"\n",
    ));
    assert_eq!(
        c.token.unwrap().fyers.unwrap().redirect_uri,
        "https://w.example/fyers/callback"
    );
    ok(&format!("{FYERS}pin = \"1234\"\nlogin = \"manual\"\n"));
}

#[test]
fn missing_or_malformed_keys_are_named() {
    let p = problem_at("[token]\nprovider = \"fyers\"\n", "token.fyers");
    assert!(p.message.contains("[token.fyers]"), "{}", p.message);
    for key in ["client_id", "secret_key", "user_id"] {
        let text = FYERS.replacen(&format!("{key} = \""), &format!("{key} = \" \" #\""), 1);
        let p = problem_at(&text, &format!("token.fyers.{key}"));
        assert!(
            p.message.contains("must not be empty"),
            "{key}: {}",
            p.message
        );
    }
    let p = problem_at(&FYERS.replace("APP1-100", "APP1"), "token.fyers.client_id");
    assert!(p.message.contains("-100"), "{}", p.message);
    problem_at(&FYERS.replace("XF01234", "XF 01234"), "token.fyers.user_id");
    let p = problem_at(&format!("{FYERS}login = \"totp\"\n"), "token.fyers.login");
    assert!(p.message.contains("manual"), "{}", p.message);
    problem_at(
        &format!("{FYERS}api_base = \"api-t1.fyers.in\"\n"),
        "token.fyers.api_base",
    );
    let p = problem_at(&format!("{FYERS}pin = \"  \"\n"), "token.fyers.pin");
    assert!(p.message.contains("pin_file"), "{}", p.message);
    let p = problem_at(
        &format!("{FYERS}totp_secret = \"X\"\n"),
        "token.fyers.totp_secret",
    );
    assert!(p.message.contains("unknown"), "{}", p.message);
    no_leak(&FYERS.replace("APP1-100", "APP1"), "SECRET-KEY-21");
}

#[test]
fn secret_key_and_pin_may_come_from_files() {
    let text = FYERS.replace(
        "secret_key = \"SECRET-KEY-21\"\n",
        "secret_key_file = \"secret\"\npin_file = \"pin\"\n",
    );
    let f = write(&text);
    std::fs::write(f.dir.path().join("secret"), "FILE-SECRET-22\n").unwrap();
    std::fs::write(f.dir.path().join("pin"), "4321\n").unwrap();
    let c = load_vars(&f, &[]).unwrap();
    let fy = c.token.unwrap().fyers.unwrap();
    assert_eq!(fy.secret_key.expose(), "FILE-SECRET-22");
    assert_eq!(fy.pin.expose(), "4321");
    // Both forms of one key are refused, naming the file key.
    let both = format!("{text}pin = \"1111\"\n");
    let f = write(&both);
    std::fs::write(f.dir.path().join("secret"), "FILE-SECRET-22\n").unwrap();
    std::fs::write(f.dir.path().join("pin"), "4321\n").unwrap();
    let e = load_vars(&f, &[]).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    assert_eq!(e.problems[0].key, "token.fyers.pin_file");
    assert!(
        !e.to_string().contains("4321") && !e.to_string().contains("1111"),
        "{e}"
    );
}

#[test]
fn variables_behind_the_secret_key_and_pin_are_withheld_from_programs() {
    let text = FYERS
        .replace("\"SECRET-KEY-21\"", "\"${FYERS_SECRET_KEY}\"")
        .replace(
            "user_id = \"XF01234\"\n",
            "user_id = \"XF01234\"\npin = \"${FYERS_PIN:-}\"\n",
        );
    let f = write(&text);
    let c = load_vars(&f, &[("FYERS_SECRET_KEY", "k"), ("FYERS_PIN", "1234")]).unwrap();
    assert!(
        c.secret_vars.contains_key("FYERS_SECRET_KEY"),
        "{:?}",
        c.secret_vars
    );
    assert!(
        c.secret_vars.contains_key("FYERS_PIN"),
        "{:?}",
        c.secret_vars
    );
}

#[test]
fn plain_http_to_another_machine_is_a_warning() {
    let c = ok(&format!(
        "{FYERS}api_base = \"http://fyers.example/api/v3\"\n"
    ));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.key == "token.fyers.api_base" && w.message.contains("https://")),
        "{:#?}",
        c.warnings
    );
    let c = ok(&format!(
        "{FYERS}api_base = \"http://127.0.0.1:9194/api/v3\"\n"
    ));
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
}
