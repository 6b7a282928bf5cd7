//! What doctor looks at for each token's broker, described once per provider ([`profile`]),
//! and the one probe that walks any description: every base URL answers over HTTP, and the
//! first one's `Date` agrees with this machine's clock.

use super::probes::{error_chain, http_client};
use super::Check;
use crate::config::{LoginMode, TokenConfig, TokenProviderKind, UpstoxLogin};
use crate::token::clock_guard::{parse_http_date, skew_secs, MAX_SKEW_SECS};

/// One base URL of a broker and the key that sets it.
pub struct Endpoint {
    pub key: &'static str,
    pub base: String,
    /// Appended to `base` for the probe.
    pub path: &'static str,
}

/// What a token's broker needs from this machine and from its config.
pub struct Profile {
    pub endpoints: Vec<Endpoint>,
    /// The login mode, as written in the config.
    pub mode: &'static str,
    /// The keys that mode needs (names only: doctor never shows or submits a value).
    pub credentials: &'static str,
    /// A person logs in on the broker's page, which comes back to `/{provider}/callback`.
    pub callback: bool,
    /// Upstox `approve`: Upstox posts the token to `{public_url}/upstox/notify`.
    pub notifier: bool,
}

fn endpoint(key: &'static str, base: &str, path: &'static str) -> Endpoint {
    Endpoint {
        key,
        base: base.trim_end_matches('/').to_string(),
        path,
    }
}

fn mode(login: LoginMode) -> &'static str {
    match login {
        LoginMode::Manual => "manual",
        LoginMode::Totp => "totp",
    }
}

/// The description of `t`'s broker; `None` for a token warden does not log in itself
/// (`command`, `none`) or whose table is missing.
pub fn profile(t: &TokenConfig) -> Option<Profile> {
    let totp = |login| login == LoginMode::Totp;
    Some(match t.provider {
        TokenProviderKind::Kite => {
            let k = t.kite.as_ref()?;
            Profile {
                // Without a token Kite answers 403 TokenException: proof it is Kite's API.
                endpoints: vec![endpoint("api_base", &k.api_base, "/user/profile")],
                mode: mode(k.login),
                credentials: if totp(k.login) {
                    "api_key, api_secret, user_id, password, totp_secret"
                } else {
                    "api_key, api_secret, user_id"
                },
                callback: true,
                notifier: false,
            }
        }
        TokenProviderKind::Angelone => {
            let a = t.angelone.as_ref()?;
            Profile {
                endpoints: vec![
                    endpoint("api_base", &a.api_base, ""),
                    endpoint("login_base", &a.login_base, ""),
                ],
                mode: mode(a.login),
                credentials: if totp(a.login) {
                    "api_key, client_code, pin, totp_secret"
                } else {
                    "api_key, client_code"
                },
                callback: !totp(a.login),
                notifier: false,
            }
        }
        TokenProviderKind::Dhan => {
            let d = t.dhan.as_ref()?;
            Profile {
                endpoints: vec![
                    endpoint("api_base", &d.api_base, ""),
                    endpoint("auth_base", &d.auth_base, ""),
                ],
                mode: mode(d.login),
                credentials: if totp(d.login) {
                    "client_id, pin, totp_secret"
                } else {
                    "client_id, app_id, app_secret"
                },
                callback: !totp(d.login),
                notifier: false,
            }
        }
        TokenProviderKind::Upstox => {
            let u = t.upstox.as_ref()?;
            let approve = u.login == UpstoxLogin::Approve;
            Profile {
                endpoints: vec![endpoint("api_base", &u.api_base, "")],
                mode: if approve { "approve" } else { "manual" },
                credentials: "api_key, api_secret, user_id",
                callback: !approve,
                notifier: approve,
            }
        }
        TokenProviderKind::Fyers => {
            let f = t.fyers.as_ref()?;
            Profile {
                endpoints: vec![endpoint("api_base", &f.api_base, "")],
                mode: "manual",
                credentials: "client_id, secret_key, user_id",
                callback: true,
                notifier: false,
            }
        }
        TokenProviderKind::Command | TokenProviderKind::None => return None,
    })
}

/// The broker as people call it, for messages.
pub fn broker_name(kind: TokenProviderKind) -> &'static str {
    match kind {
        TokenProviderKind::Kite => "Kite",
        TokenProviderKind::Angelone => "Angel One",
        TokenProviderKind::Dhan => "Dhan",
        TokenProviderKind::Upstox => "Upstox",
        TokenProviderKind::Fyers => "Fyers",
        TokenProviderKind::Command => "the command",
        TokenProviderKind::None => "no broker",
    }
}

/// The table a token's keys live in: `token.kite` or `tokens.NAME.kite`.
pub fn table(t: &TokenConfig) -> String {
    let provider = t.provider.name();
    if t.named {
        format!("tokens.{}.{provider}", t.name)
    } else {
        format!("token.{provider}")
    }
}

/// Every endpoint answers (DNS, TLS, HTTP: any HTTP answer will do, except that Kite must
/// answer like Kite), and the first answer's `Date` is within the skew a TOTP login allows.
/// Two checks: `reachable` and `clock`, named by `name`.
pub async fn probe(t: &TokenConfig, p: &Profile, name: impl Fn(&str) -> String) -> Vec<Check> {
    let who = broker_name(t.provider);
    let table = table(t);
    let Some(client) = http_client() else {
        return vec![Check::fail(
            name("reachable"),
            "cannot build an HTTP client",
            "report this as a bug",
        )];
    };
    let mut answered = Vec::new();
    let mut date = None;
    let mut tried: Vec<String> = Vec::new();
    for e in &p.endpoints {
        let url = format!("{}{}", e.base, e.path);
        // Angel One's login page may live on its API's host: one answer is enough.
        if tried.contains(&url) {
            continue;
        }
        tried.push(url.clone());
        let mut req = client.get(&url);
        if t.provider == TokenProviderKind::Kite {
            req = req.header("X-Kite-Version", "3");
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(err) => {
                return vec![Check::fail(
                    name("reachable"),
                    format!("GET {url}: {}", error_chain(&err)),
                    format!(
                        "check {table}.{} ({}), DNS, the firewall and any proxy: this machine \
                         must reach it over HTTPS",
                        e.key, e.base
                    ),
                )]
            }
        };
        let local = jiff::Timestamp::now();
        let status = resp.status().as_u16();
        if date.is_none() {
            date = resp
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_http_date)
                .map(|broker| (broker, local));
        }
        if t.provider == TokenProviderKind::Kite {
            let body = resp.text().await.unwrap_or_default();
            let envelope: Option<serde_json::Value> = serde_json::from_str(&body).ok();
            let error_type = envelope
                .as_ref()
                .and_then(|v| v["error_type"].as_str())
                .unwrap_or("");
            if status != 403 || error_type != "TokenException" {
                return vec![Check::fail(
                    name("reachable"),
                    format!("{url} answered HTTP {status}, not Kite's 403 TokenException"),
                    format!(
                        "check {table}.{} ({}): it must be the Kite Connect API \
                         (https://api.kite.trade), not a proxy or login page",
                        e.key, e.base
                    ),
                )];
            }
            answered.push(format!(
                "{url} answered 403 TokenException, as Kite does without a token"
            ));
        } else {
            answered.push(format!("{url} answered HTTP {status}"));
        }
    }
    let reachable = Check::ok(name("reachable"), answered.join("; "));
    let clock = match date {
        None => Check::fail(
            name("clock"),
            "the answer had no usable Date header, so the clock cannot be compared",
            format!(
                "check that nothing between here and {who} strips headers; TOTP logins \
                 need it"
            ),
        ),
        Some((broker, local)) => {
            let skew = skew_secs(broker, local);
            if skew.abs() > MAX_SKEW_SECS {
                Check::fail(
                    name("clock"),
                    format!(
                        "this machine's clock is {} s {} {who}'s (at most {MAX_SKEW_SECS} s)",
                        skew.abs().round(),
                        if skew > 0.0 { "ahead of" } else { "behind" }
                    ),
                    "sync the clock with NTP (`timedatectl set-ntp true`): warden submits no \
                     TOTP code from a skewed clock",
                )
            } else {
                Check::ok(
                    name("clock"),
                    format!("within {} s of {who}'s", skew.abs().round()),
                )
            }
        }
    };
    vec![reachable, clock]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AngelOneConfig, DhanConfig, FyersConfig, UpstoxConfig};

    fn token(provider: TokenProviderKind) -> TokenConfig {
        TokenConfig {
            provider,
            ..TokenConfig::default()
        }
    }

    #[test]
    fn each_provider_says_what_to_probe_and_what_its_mode_needs() {
        let mut dhan = token(TokenProviderKind::Dhan);
        dhan.dhan = Some(DhanConfig::default());
        let p = profile(&dhan).unwrap();
        let keys: Vec<&str> = p.endpoints.iter().map(|e| e.key).collect();
        assert_eq!(keys, ["api_base", "auth_base"]);
        assert_eq!(p.credentials, "client_id, app_id, app_secret");
        assert!(p.callback && !p.notifier);
        dhan.dhan.as_mut().unwrap().login = LoginMode::Totp;
        let p = profile(&dhan).unwrap();
        assert_eq!(p.credentials, "client_id, pin, totp_secret");
        assert!(!p.callback, "a totp login has no callback to register");

        let mut upstox = token(TokenProviderKind::Upstox);
        upstox.upstox = Some(UpstoxConfig {
            login: UpstoxLogin::Approve,
            ..UpstoxConfig::default()
        });
        let p = profile(&upstox).unwrap();
        assert!(p.notifier && !p.callback);
        assert_eq!(p.mode, "approve");

        let mut angel = token(TokenProviderKind::Angelone);
        angel.angelone = Some(AngelOneConfig::default());
        let p = profile(&angel).unwrap();
        assert_eq!(p.endpoints.len(), 2);
        assert!(p.callback);

        let mut fyers = token(TokenProviderKind::Fyers);
        fyers.fyers = Some(FyersConfig::default());
        assert_eq!(
            profile(&fyers).unwrap().endpoints[0].base,
            "https://api-t1.fyers.in/api/v3"
        );
        // No table, or no broker of its own: nothing to probe.
        assert!(profile(&token(TokenProviderKind::Kite)).is_none());
        assert!(profile(&token(TokenProviderKind::Command)).is_none());
    }

    #[test]
    fn a_named_tokens_keys_live_in_its_own_table() {
        let mut t = token(TokenProviderKind::Dhan);
        assert_eq!(table(&t), "token.dhan");
        t.name = "d1".into();
        t.named = true;
        assert_eq!(table(&t), "tokens.d1.dhan");
    }
}
