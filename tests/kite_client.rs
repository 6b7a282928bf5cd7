//! KiteClient and TotpLogin against the in-process Kite sandbox (real HTTP on 127.0.0.1:0):
//! the whole login → exchange → profile → logout cycle, the classification of every kind of
//! failure, and the account-safety rules of the automated login.

use std::time::Duration;

use warden::config::{KiteConfig, Secret};
use warden::sandbox::kite::{spawn, Fault, FaultKind, SandboxHandle, SandboxOptions};
use warden::token::kite::{checksum, BrokerError, ErrorClass, KiteClient};
use warden::token::login::TotpLogin;

async fn sandbox() -> SandboxHandle {
    spawn(SandboxOptions::default())
        .await
        .expect("sandbox starts")
}

/// A fresh token through the real automated flow.
async fn logged_in(h: &SandboxHandle) -> (KiteClient, Secret) {
    let cfg = h.kite_config();
    let rt = TotpLogin::new(&cfg).unwrap().login().await.expect("login");
    let client = KiteClient::new(&cfg);
    let s = client
        .exchange(rt.expose(), &cfg.api_secret)
        .await
        .expect("exchange");
    (client, s.access_token)
}

/// Neither Display nor Debug of an error may carry a credential.
fn assert_clean(e: &BrokerError, cfg: &KiteConfig, token: Option<&Secret>) {
    let text = format!("{e} / {e:?}");
    let mut secrets = vec![
        cfg.api_secret.expose(),
        cfg.password.expose(),
        cfg.totp_secret.expose(),
    ];
    if let Some(t) = token {
        secrets.push(t.expose());
    }
    for s in secrets.into_iter().filter(|s| !s.is_empty()) {
        assert!(!text.contains(s), "error text leaks a secret: {text}");
    }
}

#[test]
fn spec_checksum_vector() {
    assert_eq!(
        checksum("kitefront", "abc123", "s3cret"),
        "26f7dc7a4c89ff086fb05f714abbc28ceb545a4718d3bd5f19a310af1d3c04a4"
    );
    assert_eq!(
        KiteClient::checksum("kitefront", "abc123", "s3cret"),
        checksum("kitefront", "abc123", "s3cret")
    );
}

#[tokio::test]
async fn login_url_carries_version_key_and_encoded_redirect_params() {
    let h = sandbox().await;
    let client = KiteClient::new(&h.kite_config());
    assert_eq!(
        client.login_url(Some("state=a b&x=1")),
        format!(
            "{}/connect/login?v=3&api_key=kitefront&redirect_params=state%3Da+b%26x%3D1",
            h.base_url()
        )
    );
    assert_eq!(
        client.login_url(None),
        format!("{}/connect/login?v=3&api_key=kitefront", h.base_url())
    );
}

#[tokio::test]
async fn totp_login_exchange_profile_logout_cycle() {
    let h = sandbox().await;
    let cfg = h.kite_config();
    let mut login = TotpLogin::new(&cfg).unwrap();
    let rt = login.login().await.expect("automated login");
    let client = KiteClient::new(&cfg);
    let session = client.exchange(rt.expose(), &cfg.api_secret).await.unwrap();
    assert_eq!(session.user_id, "AB1234");
    assert_eq!(session.user_name, "Sandbox Trader");
    let login_at = session
        .login_timestamp()
        .expect("login_time is YYYY-MM-DD HH:MM:SS IST");
    let skew = jiff::Timestamp::now()
        .duration_since(login_at)
        .as_secs()
        .abs();
    assert!(skew < 60, "login_time is IST wall clock ({skew}s off)");

    let profile = client.profile(&session.access_token).await.unwrap();
    assert_eq!(profile.user_id, "AB1234");
    assert_eq!(profile.broker, "ZERODHA");

    client.logout(&session.access_token).await.unwrap();
    let e = client.profile(&session.access_token).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::TokenBad, "{e}");
    assert_eq!(
        (e.status(), e.error_type()),
        (Some(403), Some("TokenException"))
    );
    assert_clean(&e, &cfg, Some(&session.access_token));

    let s = h.stats();
    assert_eq!((s.password_ok, s.twofa_ok, s.sessions_created), (1, 1, 1));
    assert_eq!(
        (s.profile_ok, s.profile_fail, s.logouts, s.live_tokens),
        (1, 1, 1, 0)
    );

    // The same TotpLogin never submits the code it just used.
    match login.login().await {
        Err(BrokerError::TotpCodeUsed { retry_in }) => {
            assert!(retry_in <= Duration::from_secs(30));
            assert!(login.fresh_code_in().is_some());
        }
        other => panic!("expected TotpCodeUsed, got {other:?}"),
    }
    assert_eq!(h.stats().password_ok, 1, "no network call for a used code");
}

#[tokio::test]
async fn request_token_is_single_use_and_bad_checksum_is_credential() {
    let h = sandbox().await;
    let cfg = h.kite_config();
    let client = KiteClient::new(&cfg);
    let rt = TotpLogin::new(&cfg).unwrap().login().await.unwrap();
    let first = client.exchange(rt.expose(), &cfg.api_secret).await.unwrap();
    let e = client
        .exchange(rt.expose(), &cfg.api_secret)
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), Some("TokenException"));
    assert!(
        e.to_string().contains("Token is invalid or has expired."),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::TokenBad);

    let wrong = Secret::new("not-the-secret");
    let rt = login_by_hand(&h).await;
    let e = client.exchange(&rt, &wrong).await.unwrap_err();
    assert!(e.to_string().contains("Invalid `checksum`."), "{e}");
    assert_eq!(e.class(), ErrorClass::Credential);
    assert_clean(&e, &cfg, Some(&first.access_token));
    assert!(!e.to_string().contains("not-the-secret"));
}

/// A second login in the same 30 s step: by hand, with the next step's code (the sandbox
/// accepts ±1 step and refuses replays).
async fn login_by_hand(h: &SandboxHandle) -> String {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let b = h.base_url();
    let o = h.options();
    let v: serde_json::Value = http
        .post(format!("{b}/api/login"))
        .form(&[
            ("user_id", o.user_id.as_str()),
            ("password", o.password.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let request_id = v["data"]["request_id"].as_str().unwrap().to_string();
    let code = warden::sandbox::kite::next_totp(&o.totp_secret).unwrap();
    let r = http
        .post(format!("{b}/api/twofa"))
        .form(&[
            ("user_id", o.user_id.as_str()),
            ("request_id", &request_id),
            ("twofa_value", &code),
            ("twofa_type", "totp"),
            ("skip_session", "true"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut url = format!("{b}/connect/login?v=3&api_key={}", o.api_key);
    for _ in 0..10 {
        let r = http.get(&url).send().await.unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let next = reqwest::Url::parse(&url).unwrap().join(&loc).unwrap();
        if let Some((_, t)) = next.query_pairs().find(|(k, _)| k == "request_token") {
            return t.into_owned();
        }
        url = next.to_string();
    }
    panic!("no request_token");
}

async fn logged_in_again(h: &SandboxHandle) -> (KiteClient, Secret) {
    let cfg = h.kite_config();
    let client = KiteClient::new(&cfg);
    let rt = login_by_hand(h).await;
    let s = client.exchange(&rt, &cfg.api_secret).await.unwrap();
    (client, s.access_token)
}

#[tokio::test]
async fn a_new_session_kills_the_previous_token() {
    let h = sandbox().await;
    let (client, first) = logged_in(&h).await;
    client.profile(&first).await.unwrap();
    let (_, second) = logged_in_again(&h).await;
    assert_ne!(first, second);
    let e = client.profile(&first).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::TokenBad, "{e}");
    client.profile(&second).await.unwrap();
    assert_eq!(h.stats().live_tokens, 1);
}

#[tokio::test]
async fn wrong_totp_secret_makes_exactly_one_twofa_attempt() {
    let h = sandbox().await;
    let mut cfg = h.kite_config();
    cfg.totp_secret = Secret::new("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
    let mut login = TotpLogin::new(&cfg).unwrap();
    let e = login.login().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Credential, "{e}");
    assert_eq!(e.error_type(), Some("InputException"));
    assert_clean(&e, &cfg, None);

    // Disabled after a credential rejection: no second attempt of any kind.
    let e = login.login().await.unwrap_err();
    assert!(matches!(e, BrokerError::LoginDisabled { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Credential);
    assert!(login.disabled_reason().is_some());
    // Even re-armed, the rejected code is never sent again.
    login.rearm();
    let e = login.login().await.unwrap_err();
    assert!(matches!(e, BrokerError::TotpCodeUsed { .. }), "{e}");

    let s = h.stats();
    assert_eq!((s.password_ok, s.twofa_fail, s.twofa_ok), (1, 1, 0));
    assert!(s.locked_users.is_empty());
}

#[tokio::test]
async fn wrong_password_is_credential_and_never_retried() {
    let h = sandbox().await;
    let mut cfg = h.kite_config();
    cfg.password = Secret::new("hunter2-wrong");
    let mut login = TotpLogin::new(&cfg).unwrap();
    let e = login.login().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Credential, "{e}");
    assert_eq!(
        (e.status(), e.error_type()),
        (Some(400), Some("InputException"))
    );
    assert_clean(&e, &cfg, None);
    let e = login.login().await.unwrap_err();
    assert!(matches!(e, BrokerError::LoginDisabled { .. }), "{e}");
    let s = h.stats();
    assert_eq!((s.password_fail, s.twofa_ok, s.twofa_fail), (1, 0, 0));
}

#[tokio::test]
async fn blocked_account_is_credential() {
    let h = sandbox().await;
    let mut bad = h.kite_config();
    bad.password = Secret::new("wrong");
    for _ in 0..5 {
        // A new TotpLogin each time only to drive the sandbox into its lockout.
        let e = TotpLogin::new(&bad).unwrap().login().await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::Credential);
    }
    let e = TotpLogin::new(&h.kite_config())
        .unwrap()
        .login()
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.error_type()),
        (Some(403), Some("UserException"))
    );
    assert!(e.to_string().contains("blocked"), "{e}");
    assert_eq!(e.class(), ErrorClass::Credential);
    assert_eq!(h.stats().locked_users, vec!["AB1234".to_string()]);
}

#[tokio::test]
async fn every_fault_kind_is_classified() {
    let h = sandbox().await;
    let cfg = h.kite_config();
    let (_, token) = logged_in(&h).await;
    let client = KiteClient::new(&cfg).with_timeout(Duration::from_millis(400));
    let on_profile = |f: Fault| Fault {
        path: Some("/user/profile".into()),
        ..f
    };
    let cases = [
        (
            Fault {
                status: 503,
                ..Fault::default()
            },
            ErrorClass::Transient,
        ),
        (
            Fault {
                status: 429,
                ..Fault::default()
            },
            ErrorClass::Transient,
        ),
        (
            Fault {
                status: 500,
                ..Fault::default()
            },
            ErrorClass::Transient,
        ),
        (
            Fault {
                status: 502,
                ..Fault::default()
            },
            ErrorClass::Transient,
        ),
        (
            Fault {
                kind: FaultKind::Garbage,
                ..Fault::default()
            },
            ErrorClass::Transient,
        ),
        (
            Fault {
                kind: FaultKind::Drop,
                ..Fault::default()
            },
            ErrorClass::Transient,
        ),
        (
            Fault {
                kind: FaultKind::Delay,
                delay_ms: 1500,
                ..Fault::default()
            },
            ErrorClass::Transient,
        ),
        (
            Fault {
                status: 403,
                error_type: Some("PermissionException".into()),
                message: Some("Insufficient permission for that call.".into()),
                ..Fault::default()
            },
            ErrorClass::Credential,
        ),
        (
            Fault {
                status: 403,
                ..Fault::default()
            },
            ErrorClass::TokenBad,
        ),
    ];
    for (fault, want) in cases {
        let label = format!("{:?}/{}", fault.kind, fault.status);
        h.inject(on_profile(fault));
        let e = client.profile(&token).await.unwrap_err();
        assert_eq!(e.class(), want, "{label}: {e}");
        assert_clean(&e, &cfg, Some(&token));
        match label.as_str() {
            "Garbage/503" => assert!(matches!(e, BrokerError::Garbage { .. }), "{e}"),
            "Drop/503" => assert!(matches!(e, BrokerError::Network { .. }), "{e}"),
            "Delay/503" => assert!(matches!(e, BrokerError::Timeout { .. }), "{e}"),
            _ => {}
        }
        // Each fault fires once; the token itself is still good.
        client
            .profile(&token)
            .await
            .unwrap_or_else(|e| panic!("{label}: after: {e}"));
    }
    assert_eq!(h.stats().pending_faults, 0);
}

#[tokio::test]
async fn logout_errors_never_show_the_token_from_the_query() {
    let h = sandbox().await;
    let cfg = h.kite_config();
    let (_, token) = logged_in(&h).await;
    let client = KiteClient::new(&cfg).with_timeout(Duration::from_millis(300));
    for fault in [
        Fault {
            kind: FaultKind::Drop,
            ..Fault::default()
        },
        Fault {
            kind: FaultKind::Delay,
            delay_ms: 1000,
            ..Fault::default()
        },
        Fault {
            status: 502,
            ..Fault::default()
        },
    ] {
        h.inject(Fault {
            path: Some("/session/token".into()),
            ..fault
        });
        let e = client.logout(&token).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::Transient, "{e}");
        assert_clean(&e, &cfg, Some(&token));
    }
    client.logout(&token).await.unwrap();
}

#[tokio::test]
async fn unreachable_broker_is_transient() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = KiteConfig {
        api_key: "k".into(),
        api_base: format!("http://127.0.0.1:{port}"),
        login_base: format!("http://127.0.0.1:{port}"),
        ..KiteConfig::default()
    };
    let token = Secret::new("tok-abc-123");
    let e = KiteClient::new(&cfg).profile(&token).await.unwrap_err();
    assert!(matches!(e, BrokerError::Network { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_clean(&e, &cfg, Some(&token));
}

#[tokio::test]
async fn login_faults_transient_and_code_never_resubmitted() {
    let h = sandbox().await;
    let cfg = h.kite_config();
    let mut login = TotpLogin::new(&cfg).unwrap();

    // Broker trouble before the 2FA step: transient, nothing spent, login stays enabled.
    h.inject(Fault {
        path: Some("/api/login".into()),
        status: 503,
        ..Fault::default()
    });
    let e = login.login().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    assert!(login.disabled_reason().is_none());
    assert!(login.fresh_code_in().is_none());

    // The 2FA answer is lost: we cannot know whether the code was counted, so it is never
    // sent again.
    h.inject(Fault {
        path: Some("/api/twofa".into()),
        kind: FaultKind::Drop,
        ..Fault::default()
    });
    let e = login.login().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    let e = login.login().await.unwrap_err();
    assert!(matches!(e, BrokerError::TotpCodeUsed { .. }), "{e}");
    let s = h.stats();
    assert_eq!((s.password_ok, s.twofa_ok + s.twofa_fail), (1, 0));
}

#[tokio::test]
async fn a_page_instead_of_a_redirect_is_credential() {
    let h = sandbox().await;
    let cfg = h.kite_config();
    h.inject(Fault {
        path: Some("/connect/".into()),
        kind: FaultKind::Garbage,
        ..Fault::default()
    });
    let mut login = TotpLogin::new(&cfg).unwrap();
    let e = login.login().await.unwrap_err();
    assert!(matches!(e, BrokerError::UnexpectedFlow { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Credential);
    assert_eq!(h.stats().twofa_ok, 1);
}

#[tokio::test]
async fn the_web_session_of_a_login_gets_a_request_token_without_credentials() {
    use warden::token::clock_guard::{check, BrokerClock};
    let h = sandbox().await;
    let cfg = h.kite_config();
    let mut login = TotpLogin::new(&cfg).unwrap();
    // No session yet: the broker shows its login page; its clock is read all the same.
    let probe = login.resume_session().await.expect("probe");
    assert!(probe.request_token.is_none());
    assert!(matches!(probe.clock, BrokerClock::Read { .. }));
    assert!(check(probe.clock).unwrap().unwrap().abs() <= 2.0);

    let rt = login.login().await.expect("login");
    let before = h.stats();
    let probe = login.resume_session().await.expect("resume");
    let again = probe
        .request_token
        .expect("a request token from the web session");
    assert_ne!(again.expose(), rt.expose());
    let after = h.stats();
    assert_eq!(after.password_ok, before.password_ok, "no password sent");
    assert_eq!(
        after.twofa_ok + after.twofa_fail,
        before.twofa_ok + before.twofa_fail
    );
    assert_eq!(after.session_resumes, 1);
    KiteClient::new(&cfg)
        .exchange(again.expose(), &cfg.api_secret)
        .await
        .expect("the session's request token is a real one");

    // The broker ends the session (a logout on the web): credentials are needed again.
    h.end_web_sessions();
    assert!(login
        .resume_session()
        .await
        .unwrap()
        .request_token
        .is_none());
    assert!(!login.has_web_session());

    // A skewed broker clock shows in the reading.
    h.set_clock_skew(-90);
    let probe = login.resume_session().await.unwrap();
    let e = check(probe.clock).unwrap_err();
    assert!(e.to_string().contains("ahead of the broker"), "{e}");
}

#[tokio::test]
async fn login_at_records_the_step_before_the_code_goes_out_and_never_sends_it_twice() {
    let h = sandbox().await;
    let cfg = h.kite_config();
    let mut login = TotpLogin::new(&cfg).unwrap();
    let step = warden::token::login::Totp::step_of(warden::token::login::unix_now());
    // The record fails: nothing is submitted.
    let e = login.login_at(step, &mut || false).await.unwrap_err();
    assert!(matches!(e, BrokerError::StepNotRecorded), "{e}");
    assert_eq!(h.stats().twofa_ok + h.stats().twofa_fail, 0);
    // The same step again is refused before the network (it may have been recorded).
    let mut recorded = 0;
    let e = login
        .login_at(step, &mut || {
            recorded += 1;
            true
        })
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::TotpCodeUsed { .. }), "{e}");
    assert_eq!(recorded, 0);
    // The next step's code goes out once, recorded first.
    login
        .login_at(step + 1, &mut || {
            recorded += 1;
            true
        })
        .await
        .expect("login with the next step's code");
    assert_eq!(recorded, 1);
    assert_eq!(h.stats().twofa_ok, 1);
}
