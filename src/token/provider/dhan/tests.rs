use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::*;

fn cfg(login: LoginMode) -> DhanConfig {
    DhanConfig {
        client_id: "1100001234".into(),
        login,
        pin: Secret::new("246810"),
        totp_secret: Secret::new("JBSWY3DPEHPK3PXP"),
        app_id: "app".into(),
        app_secret: Secret::new("app-secret"),
        auth_base: "http://127.0.0.1:9/".into(),
        api_base: "http://127.0.0.1:9/v2".into(),
    }
}

fn token(client: &str, iat: i64) -> Secret {
    let payload = format!(
        r#"{{"iss":"dhan","iat":{iat},"exp":{},"dhanClientId":"{client}"}}"#,
        iat + 86_400
    );
    Secret::new(format!(
        "eyJhbGciOiJIUzUxMiJ9.{}.sig",
        URL_SAFE_NO_PAD.encode(payload)
    ))
}

fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn kind_user_and_credentials_come_from_the_dhan_table() {
    let p = DhanProvider::new(Some(cfg(LoginMode::Totp)));
    assert_eq!(p.name(), "dhan");
    assert_eq!(p.login_kind(), LoginKind::Totp);
    assert_eq!(p.expected_user(), "1100001234");
    assert_eq!(
        p.credentials(),
        ["dhan", "1100001234", "246810", "JBSWY3DPEHPK3PXP"]
    );
    assert!(!p.callback_carries_state());
    let m = DhanProvider::new(Some(cfg(LoginMode::Manual)));
    assert_eq!(m.login_kind(), LoginKind::Manual);
    let none = DhanProvider::new(None);
    assert_eq!(none.credentials(), ["none"]);
    assert!(!none.can_validate());
    assert_eq!(none.login_url(None), None);
}

#[test]
fn a_manual_login_exists_only_with_the_api_key() {
    let p = DhanProvider::new(Some(cfg(LoginMode::Manual)));
    assert_eq!(
        p.login_url(None).as_deref(),
        Some("http://127.0.0.1:9/login/consentApp-login")
    );
    let mut no_app = cfg(LoginMode::Totp);
    no_app.app_id.clear();
    assert_eq!(DhanProvider::new(Some(no_app)).login_url(None), None);
}

#[test]
fn a_token_id_is_taken_only_while_a_consent_is_pending() {
    let mut p = DhanProvider::new(Some(cfg(LoginMode::Manual)));
    let q = query(&[("tokenId", "tid-1")]);
    assert!(p.callback_code(&q).unwrap_err().contains("no Dhan consent"));
    p.consent = Some(PendingConsent {
        id: "c-1".into(),
        started: Instant::now(),
    });
    assert_eq!(p.callback_code(&q).unwrap(), "tid-1");
    assert_eq!(p.callback_code(&query(&[])).unwrap_err(), "missing tokenId");
    assert_eq!(
        p.login_url(None).as_deref(),
        Some("http://127.0.0.1:9/login/consentApp-login?consentAppId=c-1")
    );
    // A consent left waiting too long is no longer pending.
    p.consent = Some(PendingConsent {
        id: "c-2".into(),
        started: Instant::now() - CONSENT_TTL - Duration::from_secs(1),
    });
    assert!(p.callback_code(&q).is_err());
}

#[test]
fn exchange_without_a_pending_consent_sends_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut p = DhanProvider::new(Some(cfg(LoginMode::Manual)));
    // The base points at a closed port: reaching the network would be a Network error.
    let e = rt.block_on(p.exchange("tid")).unwrap_err();
    assert!(matches!(e, DhanError::NoConsent), "{e}");
}

#[test]
fn no_mint_sooner_than_two_minutes_after_the_last_one_known() {
    let now = unix_now() as i64;
    let mut p = DhanProvider::new(Some(cfg(LoginMode::Totp)));
    assert_eq!(p.fresh_code_in(), None);
    // A token minted 30 s ago (read at start from token.json, say).
    p.note_token(&token("1100001234", now - 30));
    let wait = p.fresh_code_in().expect("must wait");
    assert!(
        (Duration::from_secs(88)..=Duration::from_secs(93)).contains(&wait),
        "{wait:?}"
    );
    // An older token does not move the mark back.
    p.note_token(&token("1100001234", now - 600));
    assert!(p.fresh_code_in().is_some());
    // Long ago: free to mint.
    let mut q = DhanProvider::new(Some(cfg(LoginMode::Totp)));
    q.note_token(&token("1100001234", now - 200));
    assert_eq!(q.fresh_code_in(), None);
    // Another client's token says nothing about ours; manual mode never mints.
    let mut r = DhanProvider::new(Some(cfg(LoginMode::Totp)));
    r.note_token(&token("1100009999", now));
    assert_eq!(r.fresh_code_in(), None);
    let mut m = DhanProvider::new(Some(cfg(LoginMode::Manual)));
    m.note_token(&token("1100001234", now));
    assert_eq!(m.fresh_code_in(), None);
}

#[test]
fn login_too_soon_submits_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut p = DhanProvider::new(Some(cfg(LoginMode::Totp)));
    p.note_mint(unix_now() as i64);
    let mut recorded = false;
    let mut record = || {
        recorded = true;
        true
    };
    let e = rt.block_on(p.login(Some(1), &mut record)).unwrap_err();
    assert!(matches!(e, DhanError::MintTooSoon { .. }), "{e}");
    assert!(
        !recorded,
        "no TOTP step may be spent on a mint that will not be sent"
    );
}

#[test]
fn reconfigure_to_another_client_forgets_its_token_and_consent() {
    let mut p = DhanProvider::new(Some(cfg(LoginMode::Manual)));
    p.current = Some(Secret::new("t"));
    p.consent = Some(PendingConsent {
        id: "c".into(),
        started: Instant::now(),
    });
    p.note_mint(unix_now() as i64);
    let mut same = TokenConfig {
        dhan: Some(cfg(LoginMode::Manual)),
        ..Default::default()
    };
    same.dhan.as_mut().unwrap().app_id = "app2".into();
    p.reconfigure(&same);
    assert!(p.current.is_some() && p.consent.is_some());
    let mut other = same.clone();
    other.dhan.as_mut().unwrap().client_id = "1100005678".into();
    p.reconfigure(&other);
    assert!(p.current.is_none() && p.consent.is_none());
    assert!(
        p.last_mint.is_some(),
        "Dhan's 2-minute rule outlives a reload"
    );
}
