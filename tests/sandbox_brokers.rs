//! The rules of `warden sandbox angelone|dhan|upstox|fyers` (SPEC §9.3), over raw HTTP against
//! the real binary: each broker's login, profile and dead-token answers, lockout after 5
//! wrong PINs/TOTPs, TOTP replay, one live token per user, Dhan's 2-minute rule, the consent
//! and redirect flows, Upstox's approve → notifier POST, Fyers' refresh token lapsing, faults
//! and expiry. The official SDKs against the same sandboxes: tests/sandbox_sdk_conformance.rs.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const JSON_CT: (&str, &str) = ("Content-Type", "application/json");

// ---------------------------------------------------------------- Angel One

fn angel_headers(s: &BrokerSandbox) -> Vec<(&'static str, String)> {
    vec![
        ("X-PrivateKey", s.printed("api_key").to_string()),
        ("X-UserType", "USER".into()),
        ("X-SourceID", "WEB".into()),
        ("Content-Type", "application/json".into()),
    ]
}

fn angel(s: &BrokerSandbox, path: &str, bearer: Option<&str>, body: Value) -> Value {
    let mut h = angel_headers(s);
    if let Some(t) = bearer {
        h.push(("Authorization", format!("Bearer {t}")));
    }
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let method = if path.ends_with("getProfile") {
        "GET"
    } else {
        "POST"
    };
    let (code, v) = s.json(method, path, &h, &body.to_string());
    assert_eq!(
        code, 200,
        "Angel One answers {path} with 200 whatever happens: {v}"
    );
    v
}

const A_LOGIN: &str = "/rest/auth/angelbroking/user/v1/loginByPassword";
const A_PROFILE: &str = "/rest/secure/angelbroking/user/v1/getProfile";
const A_REFRESH: &str = "/rest/auth/angelbroking/jwt/v1/generateTokens";

fn angel_login(s: &BrokerSandbox, step: i64) -> Value {
    angel_login_with(s, &totp_code(s.printed("totp_secret"), step))
}

fn angel_login_with(s: &BrokerSandbox, totp: &str) -> Value {
    let body = json!({"clientcode": s.printed("client_code"), "password": s.printed("pin"), "totp": totp, "state": "st"});
    angel(s, A_LOGIN, None, body)
}

#[test]
fn angelone_login_refresh_profile_and_dead_tokens() {
    let s = BrokerSandbox::start("angelone", &[]);
    // A wrong API key is refused before any credential is looked at.
    let (code, v) = s.json("POST", A_LOGIN, &[JSON_CT, ("X-PrivateKey", "nope")], "{}");
    assert_eq!(
        (code, v["errorcode"].as_str()),
        (200, Some("AG8004")),
        "{v}"
    );

    let login = angel_login(&s, 0);
    assert_eq!(login["status"], true, "{login}");
    assert_eq!(login["errorcode"], "");
    assert_eq!(login["data"]["state"], "st");
    let jwt = login["data"]["jwtToken"].as_str().unwrap().to_string();
    let exp = jwt_claims(&jwt)["exp"].as_u64().unwrap();
    let now = warden::token::login::unix_now();
    assert!(
        exp > now + 23 * 3600 && exp <= now + 24 * 3600 + 5,
        "exp = now + 24h"
    );
    assert!(login["data"]["feedToken"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));

    let p = angel(&s, A_PROFILE, Some(&jwt), json!({}));
    assert_eq!(p["data"]["clientcode"], s.printed("client_code"), "{p}");

    // generateTokens: a new JWT (and refresh token); the old JWT dies with it.
    let refresh = login["data"]["refreshToken"].as_str().unwrap();
    let r = angel(&s, A_REFRESH, Some(&jwt), json!({"refreshToken": refresh}));
    assert_eq!(r["status"], true, "{r}");
    let jwt2 = r["data"]["jwtToken"].as_str().unwrap().to_string();
    let dead = angel(&s, A_PROFILE, Some(&jwt), json!({}));
    assert_eq!(
        dead,
        json!({"success": false, "message": "Invalid Token", "errorCode": "AG8001", "data": ""})
    );
    let spent = angel(&s, A_REFRESH, Some(&jwt2), json!({"refreshToken": refresh}));
    assert_eq!(spent["errorcode"], "AB8050", "{spent}");
    let refresh2 = r["data"]["refreshToken"].as_str().unwrap();
    s.expire("refresh");
    let lapsed = angel(
        &s,
        A_REFRESH,
        Some(&jwt2),
        json!({"refreshToken": refresh2}),
    );
    assert_eq!(lapsed["errorcode"], "AB8051", "{lapsed}");

    // Expired: AG8002, still HTTP 200.
    s.expire("access");
    let expired = angel(&s, A_PROFILE, Some(&jwt2), json!({}));
    assert_eq!(expired["errorCode"], "AG8002", "{expired}");
    let missing = angel(&s, A_PROFILE, None, json!({}));
    assert_eq!(missing["errorCode"], "AG8003", "{missing}");

    // Logout kills the token it is called with.
    let fresh = angel_login(&s, 1)["data"]["jwtToken"]
        .as_str()
        .unwrap()
        .to_string();
    let out = angel(
        &s,
        "/rest/secure/angelbroking/user/v1/logout",
        Some(&fresh),
        json!({"clientcode": s.printed("client_code")}),
    );
    assert_eq!(out["status"], true, "{out}");
    assert_eq!(
        angel(&s, A_PROFILE, Some(&fresh), json!({}))["errorCode"],
        "AG8001"
    );
}

#[test]
fn angelone_locks_after_five_wrong_pins_and_never_takes_a_code_twice() {
    let s = BrokerSandbox::start("angelone", &[]);
    // One code, sent twice (a code computed twice could straddle a step boundary).
    let totp = totp_code(s.printed("totp_secret"), 0);
    let ok = angel_login_with(&s, &totp);
    assert_eq!(ok["status"], true, "{ok}");
    let replay = angel_login_with(&s, &totp);
    assert_eq!(
        replay["errorcode"], "AB1050",
        "a spent TOTP code is refused: {replay}"
    );
    s.call("POST", "/_sandbox/reset", &[], "");
    let code = s.printed("client_code").to_string();
    for i in 1..=5 {
        let v = angel(
            &s,
            A_LOGIN,
            None,
            json!({"clientcode": code, "password": "0000", "totp": "000000"}),
        );
        let want = if i < 5 { "AB1007" } else { "AB1006" };
        assert_eq!(v["errorcode"], want, "attempt {i}: {v}");
        assert_eq!(v["status"], false);
    }
    let locked = angel_login(&s, 1);
    assert_eq!(
        locked["errorcode"], "AB1006",
        "the right PIN no longer helps: {locked}"
    );
    assert_eq!(s.stats()["locked_users"], json!([code]));
}

#[test]
fn angelone_publisher_login_redirects_with_auth_and_feed_token() {
    let s = BrokerSandbox::start("angelone", &["--redirect-url", "http://127.0.0.1:9/cb"]);
    let key = s.printed("api_key").to_string();
    let page = s.call(
        "GET",
        &format!("/publisher-login?api_key={key}&state=xyz"),
        &[],
        "",
    );
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("name=\"state\" value=\"xyz\""),
        "{}",
        page.body
    );
    let form = format!(
        "api_key={key}&state=xyz&user_id={}&pin={}&totp={}",
        s.printed("client_code"),
        s.printed("pin"),
        totp_code(s.printed("totp_secret"), 0)
    );
    let r = s.call("POST", "/publisher-login", &[FORM], &form);
    assert_eq!(r.status, 302, "{}", r.body);
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with("http://127.0.0.1:9/cb?"), "{loc}");
    assert_eq!(query_param(loc, "state").as_deref(), Some("xyz"));
    assert!(query_param(loc, "feed_token").is_some());
    let jwt = query_param(loc, "auth_token").unwrap();
    assert_eq!(angel(&s, A_PROFILE, Some(&jwt), json!({}))["status"], true);
}

// ---------------------------------------------------------------- Dhan

fn dhan_mint(s: &BrokerSandbox, step: i64) -> Value {
    let path = format!(
        "/app/generateAccessToken?dhanClientId={}&pin={}&totp={}",
        s.printed("client_id"),
        s.printed("pin"),
        totp_code(s.printed("totp_secret"), step)
    );
    let (code, v) = s.json("POST", &path, &[], "");
    assert_eq!(
        code, 200,
        "generateAccessToken answers 200 even on failure: {v}"
    );
    v
}

fn dhan_profile(s: &BrokerSandbox, token: &str) -> (u16, Value) {
    s.json(
        "GET",
        "/v2/profile",
        &[
            ("access-token", token),
            ("dhanClientId", s.printed("client_id")),
        ],
        "",
    )
}

#[test]
fn dhan_one_token_per_client_two_minute_rule_and_expiry() {
    let s = BrokerSandbox::start("dhan", &["--token-ttl", "3s"]);
    let a = dhan_mint(&s, 0);
    let token_a = a["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{a}"))
        .to_string();
    let claims = jwt_claims(&token_a);
    assert_eq!(
        (claims["iss"].as_str(), claims["tokenConsumerType"].as_str()),
        (Some("dhan"), Some("APP"))
    );
    assert_eq!(claims["dhanClientId"], s.printed("client_id"));
    let (code, p) = dhan_profile(&s, &token_a);
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["dhanClientId"], s.printed("client_id"));

    // A second mint right away: refused, with no strike and no code spent.
    let early = dhan_mint(&s, 1);
    assert_eq!(
        early,
        json!({"status": "error", "message": "Token can be generated once every 2 minutes."})
    );
    assert_eq!(s.stats()["mint_too_soon"], 1);

    // Expiry after --token-ttl: DH-901 with 401.
    wait_until("the token expires", Duration::from_secs(10), || {
        dhan_profile(&s, &token_a).0 == 401
    });
    let (_, dead) = dhan_profile(&s, &token_a);
    assert_eq!(dead["errorCode"], "DH-901", "{dead}");
    assert_eq!(dead["errorType"], "Invalid_Authentication");
    let (code, foreign) = dhan_profile(&s, "not-a-token");
    assert_eq!(
        (code, foreign["errorCode"].as_str()),
        (401, Some("DH-906")),
        "{foreign}"
    );
}

#[test]
fn dhan_new_token_kills_the_old_one() {
    let s = BrokerSandbox::start("dhan", &["--mint-interval", "0s"]);
    let a = dhan_mint(&s, 0)["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let b = dhan_mint(&s, 1)["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(dhan_profile(&s, &a).0, 401, "one live token per client");
    assert_eq!(dhan_profile(&s, &b).0, 200);
    let (code, renew) = s.json("GET", "/v2/RenewToken", &[("access-token", &b)], "");
    assert_eq!(
        (code, renew["errorCode"].as_str()),
        (400, Some("DH-905")),
        "{renew}"
    );
}

#[test]
fn dhan_locks_after_five_wrong_totps() {
    let s = BrokerSandbox::start("dhan", &[]);
    let path = format!(
        "/app/generateAccessToken?dhanClientId={}&pin={}&totp=000000",
        s.printed("client_id"),
        s.printed("pin")
    );
    for i in 1..=5 {
        let (_, v) = s.json("POST", &path, &[], "");
        assert_eq!(v["status"], "error", "{v}");
        let locked = v["message"].as_str().unwrap().contains("locked");
        assert_eq!(locked, i == 5, "attempt {i}: {v}");
    }
    let v = dhan_mint(&s, 0);
    assert!(v["message"].as_str().unwrap().contains("locked"), "{v}");
}

#[test]
fn dhan_consent_flow_redirects_with_token_id_once() {
    let s = BrokerSandbox::start(
        "dhan",
        &["--redirect-url", "http://127.0.0.1:9/dhan/callback"],
    );
    let client = s.printed("client_id").to_string();
    let app = [
        ("app_id", s.printed("app_id")),
        ("app_secret", s.printed("app_secret")),
    ];
    let (code, _) = s.json(
        "POST",
        &format!("/app/generate-consent?client_id={client}"),
        &[("app_id", "x"), ("app_secret", "y")],
        "",
    );
    assert_eq!(code, 401);
    let (code, c) = s.json(
        "POST",
        &format!("/app/generate-consent?client_id={client}"),
        &app,
        "",
    );
    assert_eq!(
        (code, c["status"].as_str(), c["consentAppStatus"].as_str()),
        (200, Some("success"), Some("GENERATED")),
        "{c}"
    );
    let id = c["consentAppId"].as_str().unwrap();
    let page = s.call(
        "GET",
        &format!("/login/consentApp-login?consentAppId={id}"),
        &[],
        "",
    );
    assert_eq!(page.status, 200);
    let form = format!(
        "consentAppId={id}&user_id={client}&pin={}&totp={}",
        s.printed("pin"),
        totp_code(s.printed("totp_secret"), 0)
    );
    let r = s.call("POST", "/login/consentApp-login", &[FORM], &form);
    assert_eq!(r.status, 302, "{}", r.body);
    let loc = r.header("location").unwrap();
    assert!(
        loc.starts_with("http://127.0.0.1:9/dhan/callback/?tokenId="),
        "{loc}"
    );
    let token_id = query_param(loc, "tokenId").unwrap();
    let consume = format!("/app/consumeApp-consent?tokenId={token_id}");
    let (code, t) = s.json("GET", &consume, &app, "");
    assert_eq!(code, 200, "{t}");
    assert_eq!(t["dhanClientId"], client);
    assert!(
        t["expiryTime"].as_str().unwrap().len() == 19,
        "IST, no offset: {t}"
    );
    assert_eq!(dhan_profile(&s, t["accessToken"].as_str().unwrap()).0, 200);
    assert_eq!(
        s.json("GET", &consume, &app, "").0,
        400,
        "a tokenId is consumed once"
    );
}

// ---------------------------------------------------------------- Upstox

/// An OAuth-style browser login (Upstox's dialog, Fyers' generate-authcode): open `path` as
/// the app would, fill the sandbox user's PIN and TOTP (`step` steps from now), and return the
/// redirect, checked to go to the registered URL with `state` echoed.
fn oauth_login(s: &BrokerSandbox, path: &str, state: &str, step: i64) -> String {
    let (id, redirect) = (s.printed("client_id"), s.printed("redirect_url"));
    let app = format!(
        "client_id={id}&redirect_uri={}&state={state}",
        enc(redirect)
    );
    let page = s.call("GET", &format!("{path}?response_type=code&{app}"), &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    let form = format!(
        "{app}&user_id={}&pin={}&totp={}",
        s.printed("user_id"),
        s.printed("pin"),
        totp_code(s.printed("totp_secret"), step)
    );
    let r = s.call("POST", path, &[FORM], &form);
    assert_eq!(r.status, 302, "{}", r.body);
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.starts_with(redirect), "{loc}");
    assert_eq!(
        query_param(&loc, "state").as_deref(),
        Some(state),
        "state echoed: {loc}"
    );
    loc
}

fn upstox_login_code(s: &BrokerSandbox, state: &str, step: i64) -> String {
    let loc = oauth_login(s, "/v2/login/authorization/dialog", state, step);
    query_param(&loc, "code").unwrap()
}

fn upstox_exchange(s: &BrokerSandbox, code: &str) -> (u16, Value) {
    let form = format!(
        "code={code}&client_id={}&client_secret={}&redirect_uri={}&grant_type=authorization_code",
        s.printed("client_id"),
        s.printed("client_secret"),
        enc(s.printed("redirect_url"))
    );
    s.json(
        "POST",
        "/v2/login/authorization/token",
        &[FORM, ("Api-Version", "2.0")],
        &form,
    )
}

fn upstox_profile(s: &BrokerSandbox, token: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    s.json(
        "GET",
        "/v2/user/profile",
        &[
            ("Authorization", &auth),
            ("Api-Version", "2.0"),
            ("Accept", "application/json"),
        ],
        "",
    )
}

#[test]
fn upstox_code_flow_profile_and_dead_token() {
    let s = BrokerSandbox::start("upstox", &[]);
    let code = upstox_login_code(&s, "s1", 0);
    let (status, t) = upstox_exchange(&s, &code);
    assert_eq!(status, 200, "{t}");
    assert!(t.get("status").is_none(), "the token answer is flat: {t}");
    assert_eq!(t["user_id"], s.printed("user_id"));
    let token = t["access_token"].as_str().unwrap().to_string();
    // No --token-ttl: dies at 03:30 IST = 22:00 UTC.
    let exp = jwt_claims(&token)["exp"].as_u64().unwrap();
    assert_eq!(exp % 86_400, 22 * 3600, "exp falls at 03:30 IST");
    assert!(exp - warden::token::login::unix_now() <= 24 * 3600);
    let (status, p) = upstox_profile(&s, &token);
    assert_eq!(
        (status, p["status"].as_str()),
        (200, Some("success")),
        "{p}"
    );
    assert_eq!(p["data"]["user_id"], s.printed("user_id"));

    let (status, reuse) = upstox_exchange(&s, &code);
    assert_eq!(status, 400, "a code works once: {reuse}");

    s.expire("access");
    let (status, dead) = upstox_profile(&s, &token);
    assert_eq!(status, 401);
    let e = &dead["errors"][0];
    assert_eq!(
        (e["errorCode"].as_str(), e["error_code"].as_str()),
        (Some("UDAPI100050"), Some("UDAPI100050")),
        "{dead}"
    );

    let bad = format!(
        "/v2/login/authorization/dialog?response_type=code&client_id=x&redirect_uri={}",
        enc(s.printed("redirect_url"))
    );
    let (status, v) = s.json("GET", &bad, &[], "");
    assert_eq!(
        (status, v["errors"][0]["errorCode"].as_str()),
        (400, Some("UDAPI100068"))
    );
}

/// One HTTP request accepted on `listener`, answered 200; returns its body.
fn receive_one_post(listener: TcpListener) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = conn.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len || n == 0 {
                    conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .unwrap();
                    return format!("{head}\r\n\r\n{body}");
                }
            }
            assert!(n > 0, "the notifier request ended early: {text}");
        }
    })
}

#[test]
fn upstox_access_token_request_is_approved_and_posted_to_the_notifier() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let notifier = format!("http://{}/upstox/notify", listener.local_addr().unwrap());
    let s = BrokerSandbox::start("upstox", &["--notifier-url", &notifier]);
    let (status, _) = s.json("POST", "/_sandbox/approve", &[], "");
    assert_eq!(status, 409, "nothing to approve yet");

    let path = format!("/v3/login/auth/token/request/{}", s.printed("client_id"));
    let (status, bad) = s.json("POST", &path, &[JSON_CT], r#"{"client_secret":"wrong"}"#);
    assert_eq!(
        (status, bad["errors"][0]["errorCode"].as_str()),
        (401, Some("UDAPI100016"))
    );
    let body = json!({"client_secret": s.printed("client_secret")}).to_string();
    let (status, req) = s.json("POST", &path, &[JSON_CT], &body);
    assert_eq!(
        (status, req["status"].as_str()),
        (200, Some("success")),
        "{req}"
    );
    assert_eq!(req["data"]["notifier_url"], notifier);
    assert!(req["data"]["authorization_expiry"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert_eq!(
        s.json("GET", "/_sandbox/pending", &[], "").1["pending"],
        true
    );

    let received = receive_one_post(listener);
    let (status, approved) = s.json("POST", "/_sandbox/approve", &[], "");
    assert_eq!(
        (status, approved["notifier_status"].as_u64()),
        (200, Some(200)),
        "{approved}"
    );
    assert!(
        !approved.to_string().contains("access_token"),
        "the control never shows the token"
    );
    let raw = received.join().unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("POST /upstox/notify "), "{head}");
    let posted: Value = serde_json::from_str(body).unwrap();
    assert_eq!(posted["message_type"], "access_token");
    assert_eq!(posted["token_type"], "Bearer");
    assert_eq!(posted["user_id"], s.printed("user_id"));
    assert_eq!(posted["client_id"], s.printed("client_id"));
    for k in ["expires_at", "issued_at"] {
        assert!(
            posted[k].as_str().unwrap().parse::<u64>().unwrap() > 1_000_000_000_000,
            "{k} in epoch ms"
        );
    }
    let (status, _) = upstox_profile(&s, posted["access_token"].as_str().unwrap());
    assert_eq!(status, 200, "the posted token works");
    assert_eq!(
        s.json("GET", "/_sandbox/pending", &[], "").1["pending"],
        false
    );
}

// ---------------------------------------------------------------- Fyers

fn fyers_auth_code(s: &BrokerSandbox, state: &str, step: i64) -> String {
    let loc = oauth_login(s, "/api/v3/generate-authcode", state, step);
    query_param(&loc, "auth_code").unwrap()
}

fn fyers_hash(s: &BrokerSandbox) -> String {
    warden::sandbox::fyers::app_id_hash(s.printed("client_id"), s.printed("secret_key"))
}

fn fyers_post(s: &BrokerSandbox, path: &str, body: Value) -> (u16, Value) {
    s.json("POST", path, &[JSON_CT], &body.to_string())
}

fn fyers_profile(s: &BrokerSandbox, token: &str) -> (u16, Value) {
    let auth = format!("{}:{token}", s.printed("client_id"));
    s.json(
        "GET",
        "/api/v3/profile",
        &[("Authorization", &auth), ("version", "3")],
        "",
    )
}

fn fyers_refresh(s: &BrokerSandbox, refresh: &str, pin: &str) -> (u16, Value) {
    let body = json!({"grant_type": "refresh_token", "appIdHash": fyers_hash(s), "refresh_token": refresh, "pin": pin});
    fyers_post(s, "/api/v3/validate-refresh-token", body)
}

#[test]
fn fyers_authcode_profile_refresh_and_lapse() {
    let s = BrokerSandbox::start("fyers", &["--refresh-ttl", "4s"]);
    let code = fyers_auth_code(&s, "st-1", 0);
    let (status, bad) = fyers_post(
        &s,
        "/api/v3/validate-authcode",
        json!({"grant_type": "authorization_code", "appIdHash": "00", "code": code}),
    );
    assert_eq!((status, bad["code"].as_i64()), (400, Some(-371)), "{bad}");
    let code = fyers_auth_code(&s, "st-2", 1);
    let good =
        json!({"grant_type": "authorization_code", "appIdHash": fyers_hash(&s), "code": code});
    let (status, t) = fyers_post(&s, "/api/v3/validate-authcode", good.clone());
    assert_eq!((status, t["s"].as_str()), (200, Some("ok")), "{t}");
    let access = t["access_token"].as_str().unwrap().to_string();
    let claims = jwt_claims(&access);
    assert!(
        claims["hsm_key"].is_string() && claims["exp"].as_u64().unwrap() % 86_400 == 1800,
        "exp at 06:00 IST: {claims}"
    );
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        fyers_post(&s, "/api/v3/validate-authcode", good).1["s"],
        "error",
        "an auth code works once"
    );

    let (status, p) = fyers_profile(&s, &access);
    assert_eq!(
        (status, p["data"]["fy_id"].as_str()),
        (200, Some(s.printed("user_id"))),
        "{p}"
    );
    let (status, wrong_app) = s.json(
        "GET",
        "/api/v3/profile",
        &[("Authorization", &format!("OTHER-100:{access}"))],
        "",
    );
    assert_eq!((status, wrong_app["code"].as_i64()), (401, Some(-16)));

    let (status, r) = fyers_refresh(&s, &refresh, s.printed("pin"));
    assert_eq!((status, r["s"].as_str()), (200, Some("ok")), "{r}");
    assert!(r.get("refresh_token").is_none(), "no new refresh token");
    assert_eq!(
        fyers_profile(&s, &access).1["code"],
        -17,
        "the new access token killed the old"
    );
    let access2 = r["access_token"].as_str().unwrap().to_string();
    s.expire("access");
    assert_eq!(fyers_profile(&s, &access2).1["code"], -8);
    assert_eq!(fyers_profile(&s, "garbage").1["code"], -15);

    // Disabled by Fyers: -16 with the SEBI message.
    s.call("POST", "/_sandbox/refresh-api?enabled=false", &[], "");
    let (status, off) = fyers_refresh(&s, &refresh, s.printed("pin"));
    assert_eq!((status, off["code"].as_i64()), (400, Some(-16)), "{off}");
    assert!(off["message"].as_str().unwrap().contains("disabled"));
    s.call("POST", "/_sandbox/refresh-api?enabled=true", &[], "");

    // The refresh token lapses after --refresh-ttl.
    wait_until("the refresh token lapses", Duration::from_secs(10), || {
        fyers_refresh(&s, &refresh, s.printed("pin")).1["code"] == -8
    });
}

#[test]
fn fyers_refresh_with_wrong_pin_locks_after_five() {
    let s = BrokerSandbox::start("fyers", &[]);
    let code = fyers_auth_code(&s, "x", 0);
    let good =
        json!({"grant_type": "authorization_code", "appIdHash": fyers_hash(&s), "code": code});
    let refresh = fyers_post(&s, "/api/v3/validate-authcode", good).1["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 1..=5 {
        let (_, v) = fyers_refresh(&s, &refresh, "0000");
        assert_eq!(v["code"], -1006, "attempt {i}: {v}");
        assert_eq!(
            v["message"].as_str().unwrap().contains("locked"),
            i == 5,
            "{v}"
        );
    }
    assert!(fyers_refresh(&s, &refresh, s.printed("pin")).1["message"]
        .as_str()
        .unwrap()
        .contains("locked"));
}

// ---------------------------------------------------------------- shared controls

#[test]
fn faults_answer_in_each_brokers_envelope_then_stop() {
    let s = BrokerSandbox::start("dhan", &[]);
    s.fault(r#"{"path":"/v2/profile","status":503,"count":1}"#);
    let (status, v) = dhan_profile(&s, "x");
    assert_eq!(
        (status, v["errorCode"].as_str()),
        (503, Some("DH-908")),
        "{v}"
    );
    assert_eq!(
        dhan_profile(&s, "x").0,
        401,
        "a fault with count 1 fires once"
    );
    s.fault(r#"{"kind":"garbage"}"#);
    let r = s.call("GET", "/v2/profile", &[], "");
    assert!(r.status == 200 && serde_json::from_str::<Value>(&r.body).is_err());
    s.fault(r#"{"kind":"drop"}"#);
    assert_eq!(
        s.call("GET", "/v2/profile", &[], "").status,
        0,
        "dropped without an answer"
    );
    assert_eq!(s.stats()["faults_served"], 3);

    let a = BrokerSandbox::start("angelone", &[]);
    a.fault(r#"{"status":403}"#);
    let r = a.call("GET", A_PROFILE, &[], "");
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("exceeding access rate"),
        "Angel One's rate limit is plain text: {}",
        r.body
    );
    let (status, _) = a.json(
        "POST",
        "/_sandbox/fault",
        &[JSON_CT],
        r#"{"kind":"explode"}"#,
    );
    assert_eq!(status, 400);

    let u = BrokerSandbox::start("upstox", &[]);
    u.fault(r#"{"status":429}"#);
    let (status, v) = upstox_profile(&u, "x");
    assert_eq!(
        (status, v["errors"][0]["errorCode"].as_str()),
        (429, Some("UDAPI10005"))
    );

    let f = BrokerSandbox::start("fyers", &[]);
    f.fault(r#"{"status":500}"#);
    let (status, v) = fyers_profile(&f, "x");
    assert_eq!((status, v["s"].as_str()), (500, Some("error")));
}

#[test]
fn every_broker_sandbox_prints_its_credentials_and_stops_on_sigterm() {
    for (broker, keys) in [
        (
            "angelone",
            &[
                "api_key",
                "client_code",
                "pin",
                "totp_secret",
                "redirect_url",
                "token_ttl",
            ][..],
        ),
        (
            "dhan",
            &[
                "client_id",
                "pin",
                "totp_secret",
                "app_id",
                "app_secret",
                "redirect_url",
                "token_ttl",
            ][..],
        ),
        (
            "upstox",
            &[
                "client_id",
                "client_secret",
                "user_id",
                "pin",
                "totp_secret",
                "notifier_url",
                "token_ttl",
            ][..],
        ),
        (
            "fyers",
            &[
                "client_id",
                "secret_key",
                "user_id",
                "pin",
                "totp_secret",
                "redirect_url",
                "refresh_ttl",
            ][..],
        ),
    ] {
        let mut s = BrokerSandbox::start(broker, &["--token-ttl", "90s"]);
        for k in keys {
            assert!(!s.printed(k).is_empty(), "{broker} {k}");
        }
        assert_eq!(s.printed("token_ttl"), "1m 30s", "{broker}");
        assert_eq!(s.stats()["live_tokens"], 0, "{broker}");
        assert!(s.terminate().success(), "{broker} exits 0 on SIGTERM");
    }
}
