//! The Kite sandbox as an HTTP peer: wire shapes, the login hops, the browser page, token
//! rules (single use, one per api_key, ttl, expire, logout), 5-strikes lockout, faults, and
//! the real `warden sandbox kite` binary.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use warden::sandbox::kite::{
    current_totp, next_totp, spawn, SandboxHandle, SandboxOptions, SandboxStats,
};
use warden::token::kite::checksum;
use warden::token::login::{unix_now, Totp};

async fn sandbox_with(opts: SandboxOptions) -> SandboxHandle {
    spawn(opts).await.expect("sandbox starts")
}

async fn sandbox() -> SandboxHandle {
    sandbox_with(SandboxOptions::default()).await
}

/// A browser-like client that keeps cookies but never follows redirects on its own.
fn http() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let v = r.json().await.expect("JSON body");
    (status, v)
}

async fn post_form(c: &Client, url: String, form: &[(&str, &str)]) -> (StatusCode, Value) {
    json_of(c.post(url).form(form).send().await.unwrap()).await
}

async fn password(c: &Client, h: &SandboxHandle, pw: &str) -> (StatusCode, Value) {
    let user = h.options().user_id.clone();
    post_form(
        c,
        format!("{}/api/login", h.base_url()),
        &[("user_id", &user), ("password", pw)],
    )
    .await
}

async fn twofa(c: &Client, h: &SandboxHandle, request_id: &str, code: &str) -> (StatusCode, Value) {
    let user = h.options().user_id.clone();
    let form = [
        ("user_id", user.as_str()),
        ("request_id", request_id),
        ("twofa_value", code),
        ("twofa_type", "totp"),
        ("skip_session", "true"),
    ];
    post_form(c, format!("{}/api/twofa", h.base_url()), &form).await
}

/// A six-digit code that is not valid in any step the sandbox accepts right now.
fn wrong_code(secret: &str) -> String {
    let t = Totp::from_base32(secret).unwrap();
    let now = unix_now();
    let valid: Vec<String> = (0..4).map(|i| t.code_at(now + i * 30 - 30)).collect();
    (0..)
        .map(|n| format!("{:06}", 123456 + n))
        .find(|c| !valid.contains(c))
        .unwrap()
}

/// Follow `Location`s from `url` until one carries `request_token`; returns every hop.
async fn follow(c: &Client, mut url: String) -> Vec<reqwest::Url> {
    let mut hops = Vec::new();
    for _ in 0..10 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "hop {url}");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let next = reqwest::Url::parse(&url).unwrap().join(&loc).unwrap();
        hops.push(next.clone());
        if next.query_pairs().any(|(k, _)| k == "request_token") {
            return hops;
        }
        url = next.to_string();
    }
    panic!("no request_token after 10 hops: {hops:?}");
}

fn param(u: &reqwest::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Password + current TOTP + connect: a request token.
async fn request_token(h: &SandboxHandle, code: &str) -> String {
    let c = http();
    let (_, v) = password(&c, h, &h.options().password).await;
    let (s, _) = twofa(&c, h, v["data"]["request_id"].as_str().unwrap(), code).await;
    assert_eq!(s, StatusCode::OK);
    let hops = follow(
        &c,
        format!("{}/connect/login?v=3&api_key=kitefront", h.base_url()),
    )
    .await;
    param(hops.last().unwrap(), "request_token").unwrap()
}

async fn exchange(h: &SandboxHandle, rt: &str, secret: &str) -> (StatusCode, Value) {
    let sum = checksum("kitefront", rt, secret);
    let form = [
        ("api_key", "kitefront"),
        ("request_token", rt),
        ("checksum", sum.as_str()),
    ];
    post_form(&http(), format!("{}/session/token", h.base_url()), &form).await
}

async fn access_token(h: &SandboxHandle, code: &str) -> String {
    let rt = request_token(h, code).await;
    let (s, v) = exchange(h, &rt, &h.options().api_secret).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"]["access_token"].as_str().unwrap().to_string()
}

async fn profile(h: &SandboxHandle, token: &str) -> (StatusCode, Value) {
    let r = http()
        .get(format!("{}/user/profile", h.base_url()))
        .header("X-Kite-Version", "3")
        .header("Authorization", format!("token kitefront:{token}"))
        .send()
        .await
        .unwrap();
    json_of(r).await
}

async fn stats(h: &SandboxHandle) -> SandboxStats {
    http()
        .get(format!("{}/_sandbox/stats", h.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn control(h: &SandboxHandle, what: &str, body: Value) -> (StatusCode, Value) {
    let r = http()
        .post(format!("{}/_sandbox/{what}", h.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    json_of(r).await
}

fn incorrect_token() -> Value {
    json!({"status": "error", "message": "Incorrect `api_key` or `access_token`.",
           "data": null, "error_type": "TokenException"})
}

#[tokio::test]
async fn api_login_hops_and_redirect_params() {
    let h = sandbox().await;
    let c = http();
    let (s, v) = password(&c, &h, "sandbox-password").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["user_id"], "AB1234");
    assert_eq!(v["data"]["twofa_type"], "totp");
    assert_eq!(v["data"]["twofa_status"], "active");
    let request_id = v["data"]["request_id"].as_str().unwrap();

    let r = c
        .post(format!("{}/api/twofa", h.base_url()))
        .form(&[
            ("user_id", "AB1234"),
            ("request_id", request_id),
            ("twofa_value", &h.current_totp()),
            ("twofa_type", "totp"),
            ("skip_session", "true"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("kf_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    let start = format!(
        "{}/connect/login?v=3&api_key=kitefront&redirect_params=state%3Dxyz%26n%3D1",
        h.base_url()
    );
    let hops = follow(&c, start).await;
    assert!(
        hops.len() >= 3,
        "intermediate hops on the sandbox: {hops:?}"
    );
    for hop in &hops[..hops.len() - 1] {
        assert_eq!(
            hop.origin(),
            reqwest::Url::parse(&h.base_url()).unwrap().origin()
        );
    }
    let last = hops.last().unwrap();
    assert!(
        last.as_str()
            .starts_with("http://127.0.0.1:9180/kite/callback?"),
        "{last}"
    );
    assert_eq!(param(last, "action").as_deref(), Some("login"));
    assert_eq!(param(last, "status").as_deref(), Some("success"));
    assert_eq!(param(last, "state").as_deref(), Some("xyz"));
    assert_eq!(param(last, "n").as_deref(), Some("1"));
    assert!(!param(last, "request_token").unwrap().is_empty());
}

#[tokio::test]
async fn browser_gets_a_login_page_and_can_complete_it() {
    let h = sandbox().await;
    let c = http();
    let r = c
        .get(format!(
            "{}/connect/login?v=3&api_key=kitefront&redirect_params=state%3Ds1",
            h.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let page_url = h.base_url() + r.headers()["location"].to_str().unwrap();
    let r = c.get(&page_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(
        page.contains(r#"<form method="post" action="/connect/login">"#),
        "{page}"
    );
    let sess_id = regex::Regex::new(r#"name="sess_id" value="([^"]+)""#)
        .unwrap()
        .captures(&page)
        .expect("sess_id in the form")[1]
        .to_string();

    let submit = |code: String| {
        let c = c.clone();
        let url = format!("{}/connect/login", h.base_url());
        let sess_id = sess_id.clone();
        async move {
            c.post(url)
                .form(&[
                    ("api_key", "kitefront"),
                    ("sess_id", sess_id.as_str()),
                    ("user_id", "AB1234"),
                    ("password", "sandbox-password"),
                    ("twofa_value", code.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let r = submit(wrong_code(&h.options().totp_secret)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Invalid TOTP."));

    let r = submit(h.current_totp()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let next = h.base_url() + r.headers()["location"].to_str().unwrap();
    let hops = follow(&c, next).await;
    let last = hops.last().unwrap();
    assert_eq!(param(last, "state").as_deref(), Some("s1"));
    let rt = param(last, "request_token").unwrap();
    let (s, v) = exchange(&h, &rt, "kitefront-sandbox-secret").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let st = stats(&h).await;
    assert_eq!((st.twofa_fail, st.twofa_ok, st.sessions_created), (1, 1, 1));
}

#[tokio::test]
async fn session_token_shape_and_errors() {
    let h = sandbox().await;
    let rt = request_token(&h, &h.current_totp()).await;

    let form = [("api_key", "kitefront"), ("request_token", rt.as_str())];
    let (s, v) = post_form(&http(), format!("{}/session/token", h.base_url()), &form).await;
    assert_eq!(
        (s, &v["error_type"]),
        (StatusCode::BAD_REQUEST, &json!("InputException"))
    );

    let (s, v) = exchange(&h, &rt, "s3cret").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error_type"], "TokenException");
    assert_eq!(v["message"], "Invalid `checksum`.");

    // Single use: the failed attempt above already spent it.
    let (s, v) = exchange(&h, &rt, "kitefront-sandbox-secret").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["message"], "Token is invalid or has expired.");

    let rt = request_token(&h, &next_totp(&h.options().totp_secret).unwrap()).await;
    let (s, v) = exchange(&h, &rt, "kitefront-sandbox-secret").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "success");
    let d = &v["data"];
    for key in [
        "user_type",
        "email",
        "user_name",
        "user_shortname",
        "broker",
        "exchanges",
        "products",
        "order_types",
        "avatar_url",
        "user_id",
        "api_key",
        "access_token",
        "public_token",
        "enctoken",
        "refresh_token",
        "silo",
        "login_time",
        "meta",
    ] {
        assert!(
            d.get(key).is_some(),
            "generate_session data lacks {key}: {d}"
        );
    }
    assert_eq!(
        (&d["user_id"], &d["api_key"]),
        (&json!("AB1234"), &json!("kitefront"))
    );
    let lt = d["login_time"].as_str().unwrap();
    assert!(
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
            .unwrap()
            .is_match(lt),
        "{lt}"
    );
    let (s, _) = exchange(&h, &rt, "kitefront-sandbox-secret").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "reused request token");
}

#[tokio::test]
async fn request_tokens_expire() {
    let h = sandbox_with(SandboxOptions {
        request_token_ttl: Duration::from_millis(150),
        ..SandboxOptions::default()
    })
    .await;
    let rt = request_token(&h, &h.current_totp()).await;
    // The ttl is measured by the sandbox's own clock in this process: once it has passed,
    // the token is gone for certain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = exchange(&h, &rt, "kitefront-sandbox-secret").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["message"], "Token is invalid or has expired.");
}

#[tokio::test]
async fn profile_needs_version_header_and_a_live_token() {
    let h = sandbox().await;
    let token = access_token(&h, &h.current_totp()).await;
    let url = format!("{}/user/profile", h.base_url());
    let auth = format!("token kitefront:{token}");

    let (s, v) = json_of(
        http()
            .get(&url)
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, &v["error_type"]),
        (StatusCode::BAD_REQUEST, &json!("InputException"))
    );

    let r = http()
        .get(&url)
        .header("X-Kite-Version", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await, (StatusCode::FORBIDDEN, incorrect_token()));

    let r = http()
        .get(&url)
        .header("X-Kite-Version", "3")
        .header("Authorization", format!("token otherkey:{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await, (StatusCode::FORBIDDEN, incorrect_token()));

    let (s, v) = profile(&h, &token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["user_id"], "AB1234");
    assert_eq!(v["data"]["broker"], "ZERODHA");
    assert!(v["data"].get("access_token").is_none());
}

#[tokio::test]
async fn tokens_die_after_the_ttl() {
    let ttl = Duration::from_millis(800);
    let h = sandbox_with(SandboxOptions {
        token_ttl: ttl,
        ..SandboxOptions::default()
    })
    .await;
    let created = Instant::now();
    let token = access_token(&h, &h.current_totp()).await;
    assert_eq!(profile(&h, &token).await.0, StatusCode::OK);
    let deadline = created + Duration::from_secs(5);
    loop {
        let (s, v) = profile(&h, &token).await;
        if s == StatusCode::FORBIDDEN {
            assert_eq!(v, incorrect_token());
            break;
        }
        assert!(Instant::now() < deadline, "token still alive after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        created.elapsed() >= ttl,
        "died early: {:?}",
        created.elapsed()
    );
}

#[tokio::test]
async fn expire_and_logout_kill_tokens() {
    let h = sandbox().await;
    let token = access_token(&h, &h.current_totp()).await;
    let (s, v) = control(&h, "expire", json!({})).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"expired": 1})));
    assert_eq!(
        profile(&h, &token).await,
        (StatusCode::FORBIDDEN, incorrect_token())
    );
    assert_eq!(stats(&h).await.live_tokens, 0);

    let token = access_token(&h, &next_totp(&h.options().totp_secret).unwrap()).await;
    let url = format!("{}/session/token", h.base_url());
    let q = [("api_key", "kitefront"), ("access_token", token.as_str())];
    let (s, v) = json_of(http().delete(&url).query(&q).send().await.unwrap()).await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"status": "success", "data": true}))
    );
    assert_eq!(profile(&h, &token).await.0, StatusCode::FORBIDDEN);
    let (s, _) = json_of(http().delete(&url).query(&q).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(stats(&h).await.logouts, 1);
}

#[tokio::test]
async fn one_live_token_per_api_key() {
    let h = sandbox().await;
    let first = access_token(&h, &h.current_totp()).await;
    let second = access_token(&h, &next_totp(&h.options().totp_secret).unwrap()).await;
    assert_eq!(profile(&h, &first).await.0, StatusCode::FORBIDDEN);
    assert_eq!(profile(&h, &second).await.0, StatusCode::OK);
    assert_eq!(stats(&h).await.live_tokens, 1);
}

#[tokio::test]
async fn five_wrong_passwords_block_until_reset() {
    let h = sandbox().await;
    let c = http();
    for i in 1..=4 {
        let (s, v) = password(&c, &h, "wrong").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "attempt {i}");
        assert_eq!(v["error_type"], "InputException");
        assert_eq!(v["message"], "Invalid username or password.");
    }
    let (s, v) = password(&c, &h, "wrong").await;
    assert_eq!(
        (s, &v["error_type"]),
        (StatusCode::FORBIDDEN, &json!("UserException"))
    );
    assert!(v["message"].as_str().unwrap().contains("blocked"));
    // Blocked: even the right password fails now.
    let (s, v) = password(&c, &h, "sandbox-password").await;
    assert_eq!(
        (s, &v["error_type"]),
        (StatusCode::FORBIDDEN, &json!("UserException"))
    );
    let st = stats(&h).await;
    assert_eq!(
        (st.password_fail, st.locked_users),
        (6, vec!["AB1234".to_string()])
    );

    let (s, _) = control(&h, "reset", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(password(&c, &h, "sandbox-password").await.0, StatusCode::OK);
    assert!(stats(&h).await.locked_users.is_empty());
}

#[tokio::test]
async fn five_wrong_totp_codes_block_and_replays_are_refused() {
    let h = sandbox().await;
    let c = http();
    let secret = h.options().totp_secret.clone();

    // A code that was accepted once is refused the second time (RFC 6238 §5.2).
    let code = current_totp(&secret).unwrap();
    let (_, v) = password(&c, &h, "sandbox-password").await;
    assert_eq!(
        twofa(&c, &h, v["data"]["request_id"].as_str().unwrap(), &code)
            .await
            .0,
        StatusCode::OK
    );
    let (_, v) = password(&c, &h, "sandbox-password").await;
    let (s, v) = twofa(&c, &h, v["data"]["request_id"].as_str().unwrap(), &code).await;
    assert_eq!(
        (s, &v["error_type"]),
        (StatusCode::BAD_REQUEST, &json!("InputException"))
    );
    assert!(
        v["message"].as_str().unwrap().contains("already been used"),
        "{v}"
    );

    for i in 2..=4 {
        let (_, v) = password(&c, &h, "sandbox-password").await;
        let (s, v) = twofa(
            &c,
            &h,
            v["data"]["request_id"].as_str().unwrap(),
            &wrong_code(&secret),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "strike {i}");
        assert_eq!(v["message"], "Invalid TOTP.");
    }
    let (_, v) = password(&c, &h, "sandbox-password").await;
    let (s, v) = twofa(
        &c,
        &h,
        v["data"]["request_id"].as_str().unwrap(),
        &wrong_code(&secret),
    )
    .await;
    assert_eq!(
        (s, &v["error_type"]),
        (StatusCode::FORBIDDEN, &json!("UserException"))
    );
    let (s, _) = password(&c, &h, "sandbox-password").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let st = stats(&h).await;
    assert_eq!((st.twofa_ok, st.twofa_fail), (1, 5));
    assert_eq!(st.locked_users, vec!["AB1234".to_string()]);
}

#[tokio::test]
async fn controls_never_reveal_tokens() {
    let h = sandbox().await;
    let token = access_token(&h, &h.current_totp()).await;
    let text = http()
        .get(format!("{}/_sandbox/stats", h.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&token));
    let st: SandboxStats = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            st.live_tokens,
            st.sessions_created,
            st.request_tokens_issued
        ),
        (1, 1, 1)
    );
    for what in ["expire", "reset"] {
        let (_, v) = control(&h, what, json!({})).await;
        assert!(!v.to_string().contains(&token));
    }
}

#[tokio::test]
async fn faults_fail_the_next_matching_requests() {
    let h = sandbox().await;
    let url = format!("{}/user/profile", h.base_url());
    let get = || http().get(&url).header("X-Kite-Version", "3").send();

    let (s, v) = control(
        &h,
        "fault",
        json!({"path": "/user/profile", "status": 429, "count": 2}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for _ in 0..2 {
        let (s, v) = json_of(get().await.unwrap()).await;
        assert_eq!(
            (s, &v["status"]),
            (StatusCode::TOO_MANY_REQUESTS, &json!("error"))
        );
        assert!(v["error_type"].is_string());
    }
    assert_eq!(
        json_of(get().await.unwrap()).await.0,
        StatusCode::FORBIDDEN,
        "back to normal"
    );

    control(&h, "fault", json!({"kind": "garbage"})).await;
    // Control paths are never faulted; the pending fault waits for the next API call.
    assert_eq!(stats(&h).await.pending_faults, 1);
    let r = get().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());

    control(&h, "fault", json!({"path": "/user/", "kind": "drop"})).await;
    let e = get().await.unwrap_err();
    assert!(!e.is_status() && !e.is_timeout(), "{e}");

    control(
        &h,
        "fault",
        json!({"path": "/user/", "kind": "delay", "delay_ms": 300}),
    )
    .await;
    let t = Instant::now();
    assert_eq!(get().await.unwrap().status(), StatusCode::FORBIDDEN);
    assert!(t.elapsed() >= Duration::from_millis(300));

    control(&h, "fault", json!({"status": 503, "delay_ms": 200})).await;
    let t = Instant::now();
    let (s, v) = password(&http(), &h, "sandbox-password").await;
    assert_eq!(
        (s, &v["error_type"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("NetworkException"))
    );
    assert!(t.elapsed() >= Duration::from_millis(200));

    let (s, _) = control(&h, "fault", json!({"kind": "explode"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let st = stats(&h).await;
    assert_eq!(
        (st.faults_served, st.pending_faults, st.password_ok),
        (6, 0, 0)
    );
}

#[tokio::test]
async fn unknown_api_key_and_routes_get_kite_errors() {
    let h = sandbox().await;
    let r = http()
        .get(format!("{}/connect/login?v=3&api_key=nope", h.base_url()))
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(r).await;
    assert_eq!(
        (s, &v["error_type"]),
        (StatusCode::BAD_REQUEST, &json!("InputException"))
    );
    let (s, v) = json_of(
        http()
            .get(format!("{}/nope", h.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, &v["status"]), (StatusCode::NOT_FOUND, &json!("error")));
}

#[test]
fn binary_prints_address_and_credentials_and_exits_0_on_sigterm() {
    let mut kite = common::KiteSandbox::with()
        .token_ttl("90s")
        .flag("--user-id", "zz9999")
        .flag("--api-key", "k2")
        .start();
    let port: u16 = kite.addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "the real bound port is printed");
    assert_eq!(kite.startup[0], format!("listening on {}", kite.url()));
    let all = kite.startup.join("\n");
    for want in [
        "user_id: ZZ9999",
        "password: sandbox-password",
        "totp_secret: WARDENSANDBOXTOTPSECRETKITEAB234",
        "api_key: k2",
        "api_secret: kitefront-sandbox-secret",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }

    // It answers on that address.
    let (code, body) = common::http(&kite.addr, "GET", "/_sandbox/stats", &[], "");
    assert_eq!(code, 200, "{body}");

    kite.signal(libc::SIGTERM);
    let status = kite.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}
