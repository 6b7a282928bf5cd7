//! Warnings about secrets the config would expose: credentials sent in clear text to another
//! machine, a token file others can read, `pass_env` entries that pass nothing.
//!
//! They are warnings, not problems: a plain-`http://` broker on a private network or a shared
//! group that must read the `.env` can be deliberate, and a bad config must never stop running
//! programs. `warden check` prints them, `warden run` logs them at start and on reload.

use super::env_file;
use super::keypath::{at, Found};
use super::schema::*;

pub(crate) fn warnings(cfg: &Config) -> Vec<Found> {
    let mut v = Vec::new();
    pass_env(cfg, &mut v);
    cleartext(cfg, &mut v);
    if let Some(t) = &cfg.token {
        if let Some(w) = env_file::readable_by_others(&t.env_file) {
            v.push(Found::new(at(&["token", "env_file"]), w));
        }
    }
    v
}

fn pass_env(cfg: &Config, v: &mut Vec<Found>) {
    for (name, p) in &cfg.programs {
        for var in &p.pass_env {
            if !cfg.secret_vars.contains_key(var) {
                v.push(Found::new(
                    at(&["programs", name, "pass_env"]),
                    format!(
                        "{var} is not a variable warden reads a secret from (no secret key \
                         names ${{{var}}}), so it is inherited anyway: remove it from pass_env"
                    ),
                ));
            }
        }
    }
}

/// Is `url` plain text to another machine? `None` when it is encrypted, loopback, or not a URL
/// (validation reports those).
fn cleartext_host(url: &str, plain_schemes: &[&str]) -> Option<String> {
    let u = url::Url::parse(url.trim()).ok()?;
    if !plain_schemes.contains(&u.scheme()) {
        return None;
    }
    let loopback = match u.host()? {
        // Schemes the URL standard does not know (redis://) keep an IP address as a name.
        url::Host::Domain(d) => match d.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost"),
        },
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    (!loopback).then(|| u.host_str().unwrap_or_default().to_string())
}

fn cleartext(cfg: &Config, v: &mut Vec<Found>) {
    let mut warn = |keys: &[&str], message: String| v.push(Found::new(at(keys), message));
    if let Some(u) = cfg.token.as_ref().and_then(|t| t.upstox.as_ref()) {
        if let Some(host) = cleartext_host(&u.api_base, &["http"]) {
            warn(
                &["token", "upstox", "api_base"],
                format!(
                    "http:// to {host}, another machine: the access token, the API secret and \
                     the code exchange would cross the network unencrypted; use https://"
                ),
            );
        }
    }
    if let Some(t) = &cfg.token {
        if let Some(k) = &t.kite {
            let sends = [
                (
                    "login_base",
                    &k.login_base,
                    "the password and TOTP codes of automated logins",
                ),
                (
                    "api_base",
                    &k.api_base,
                    "the access token and the session exchange",
                ),
            ];
            for (key, url, what) in sends {
                if let Some(host) = cleartext_host(url, &["http"]) {
                    warn(
                        &["token", "kite", key],
                        format!(
                            "http:// to {host}, another machine: {what} would cross the network \
                             unencrypted; use https://"
                        ),
                    );
                }
            }
        }
        if let Some(f) = &t.fyers {
            if let Some(host) = cleartext_host(&f.api_base, &["http"]) {
                warn(
                    &["token", "fyers", "api_base"],
                    format!(
                        "http:// to {host}, another machine: the access token, the refresh token \
                         and the PIN would cross the network unencrypted; use https://"
                    ),
                );
            }
        }
        if let Some(d) = &t.dhan {
            let sends = [
                (
                    "auth_base",
                    &d.auth_base,
                    "the PIN, TOTP codes and app_secret of logins",
                ),
                ("api_base", &d.api_base, "the access token"),
            ];
            for (key, url, what) in sends {
                if let Some(host) = cleartext_host(url, &["http"]) {
                    warn(
                        &["token", "dhan", key],
                        format!(
                            "http:// to {host}, another machine: {what} would cross the network \
                             unencrypted; use https://"
                        ),
                    );
                }
            }
        }
        if let Some(a) = &t.angelone {
            let sends = [
                ("api_base", &a.api_base, "the PIN, TOTP codes and JWTs"),
                ("login_base", &a.login_base, "the publisher login page"),
            ];
            for (key, url, what) in sends {
                if let Some(host) = cleartext_host(url, &["http"]) {
                    warn(
                        &["token", "angelone", key],
                        format!(
                            "http:// to {host}, another machine: {what} would cross the network \
                             unencrypted; use https://"
                        ),
                    );
                }
            }
        }
        let s = &t.store;
        if s.kind == StoreKind::Redis {
            let url_has_password = url::Url::parse(s.url.expose().trim())
                .ok()
                .is_some_and(|u| u.password().is_some());
            // The URL is a secret: only its host is named.
            if let Some(host) = cleartext_host(s.url.expose(), &["redis"]) {
                if url_has_password || !s.password.is_empty() {
                    warn(
                        &["token", "store", "url"],
                        format!(
                            "redis:// to {host}, another machine, with a password: the password \
                             and the shared access token would cross the network unencrypted; \
                             use rediss:// (TLS)"
                        ),
                    );
                }
            }
        }
    }
    let n = &cfg.notify;
    if !n.telegram_bot_token.is_empty() {
        if let Some(host) = cleartext_host(&n.telegram_api_base, &["http"]) {
            warn(
                &["notify", "telegram_api_base"],
                format!(
                    "http:// to {host}, another machine: the bot token (part of every request \
                     path) would cross the network unencrypted; use https://"
                ),
            );
        }
    }
    if cleartext_host(n.webhook_url.expose(), &["http"]).is_some() {
        warn(
            &["notify", "webhook_url"],
            "http:// to another machine: the webhook URL (often a secret itself) and the login \
             links in notifications would cross the network unencrypted; use https://"
                .to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::testutil::*;

    fn warned(text: &str) -> Vec<(String, String)> {
        ok(text)
            .warnings
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect()
    }

    #[test]
    fn loopback_and_tls_are_not_cleartext() {
        for url in [
            "https://kite.zerodha.com",
            "http://127.0.0.1:9",
            "http://[::1]:9",
            "http://localhost:9",
            "not a url",
        ] {
            assert_eq!(cleartext_host(url, &["http"]), None, "{url}");
        }
        assert_eq!(
            cleartext_host("http://10.0.0.5:8080/x", &["http"]).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            cleartext_host("redis://:pw@cache.internal:6379", &["redis"]).as_deref(),
            Some("cache.internal")
        );
        assert_eq!(cleartext_host("rediss://:pw@cache:6379", &["redis"]), None);
    }

    #[test]
    fn cleartext_credentials_to_other_hosts_are_warnings_that_never_show_secrets() {
        let w = warned(
            "[token]\nprovider = \"kite\"\n[token.kite]\napi_key = \"k\"\napi_secret = \"s\"\n\
             user_id = \"AB1234\"\nlogin_base = \"http://kite.example\"\n\
             api_base = \"http://127.0.0.1:1\"\n\
             [notify]\nwebhook_url = \"http://hooks.example/T0/s3cretpath\"\n\
             telegram_bot_token = \"123:abc\"\ntelegram_chat_id = \"1\"\n\
             telegram_api_base = \"http://tg.example\"\n",
        );
        let keys: Vec<&str> = w.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "token.kite.login_base",
                "notify.telegram_api_base",
                "notify.webhook_url"
            ],
            "{w:#?}"
        );
        assert!(w[0].1.contains("kite.example") && w[0].1.contains("https://"));
        assert!(!w[2].1.contains("s3cretpath"), "{}", w[2].1);
    }

    #[test]
    fn redis_with_a_password_in_clear_text_is_a_warning() {
        let base = "[token]\nprovider = \"kite\"\n[token.kite]\napi_key = \"k\"\n\
                    api_secret = \"s\"\nuser_id = \"AB1234\"\n[token.store]\nkind = \"redis\"\n";
        let w = warned(&format!("{base}url = \"redis://:hunter2@10.1.2.3:6379\"\n"));
        assert_eq!(w.len(), 1, "{w:#?}");
        assert_eq!(w[0].0, "token.store.url");
        assert!(!w[0].1.contains("hunter2"));
        assert!(warned(&format!("{base}url = \"redis://10.1.2.3:6379\"\n")).is_empty());
        assert!(warned(&format!("{base}url = \"rediss://:pw@10.1.2.3:6379\"\n")).is_empty());
        let local = warned(&format!("{base}url = \"redis://:pw@127.0.0.1:6379\"\n"));
        assert!(local.is_empty(), "{local:?}");
    }

    #[test]
    fn pass_env_of_a_variable_that_holds_no_secret_is_a_warning() {
        let f = write(
            "[http]\napi_token = \"${T_PE_API}\"\n\
             [programs.a]\ncommand = \"x\"\npass_env = [\"T_PE_API\", \"HOME\"]\n\
             [programs.b]\ncommand = \"x\"\n",
        );
        let c = load_vars(&f, &[("T_PE_API", "tok")]).unwrap();
        let w: Vec<_> = c.warnings.iter().map(|p| (&p.key, &p.message)).collect();
        assert_eq!(w.len(), 1, "{w:#?}");
        assert_eq!(w[0].0, "programs.a.pass_env");
        assert!(w[0].1.contains("HOME"));
        assert_eq!(c.secret_vars.keys().collect::<Vec<_>>(), ["T_PE_API"]);
        assert!(c.programs["a"].withheld_env.is_empty());
        assert_eq!(c.programs["b"].withheld_env, ["T_PE_API"]);
    }
}
