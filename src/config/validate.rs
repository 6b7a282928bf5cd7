//! Cross-checks on the typed config: everything serde cannot see on its own.
//!
//! Each rule reports at the key to change and says how to fix it. Messages about secret keys
//! never include their value.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

mod angelone;

use super::keypath::{at, Found};
use super::schema::*;
use super::token_times::parse_hhmm;

/// Problems: any of them makes the config invalid (`warden check` exits 2, start-up and
/// reload refuse it).
pub(crate) fn validate(cfg: &Config) -> Vec<Found> {
    let mut v = Vec::new();
    supervisor(&cfg.supervisor, &mut v);
    http(&cfg.http, &mut v);
    if let Some(t) = &cfg.token {
        token(t, &mut v);
    }
    for (name, t) in &cfg.tokens {
        let mut found = Vec::new();
        token(t, &mut found);
        v.extend(super::several_tokens::relocate(name, found));
    }
    v.extend(super::several_tokens::problems(cfg));
    notify(&cfg.notify, &mut v);
    super::market_rules::market(&cfg.market, &mut v);
    programs(&cfg.programs, &mut v);
    v
}

/// Warnings: the config works, but something in it is probably not what the operator meant.
/// They never change an exit code; `warden check` prints them and `warden run` logs them.
pub(crate) fn warnings(cfg: &Config) -> Vec<Found> {
    let mut v = Vec::new();
    let broker_logins = cfg.token_list().iter().any(|t| {
        matches!(
            t.provider,
            TokenProviderKind::Kite
                | TokenProviderKind::Fyers
                | TokenProviderKind::Dhan
                | TokenProviderKind::Angelone
        )
    });
    if broker_logins && cfg.http.public_url.is_empty() {
        let listen = cfg.http.listen;
        let why = if listen.ip().is_unspecified() {
            Some("a wildcard address is where warden listens, not one a browser can open")
        } else if listen.port() == 0 {
            Some("port 0 means \"any free port\", so the link names a port nobody listens on")
        } else {
            None
        };
        if let Some(why) = why {
            push(
                &mut v,
                &["http", "public_url"],
                format!(
                    "not set, so it defaults to http://{listen} and login links (the status \
                     page button, notifications, `warden login-url`, the Kite redirect) would be \
                     unusable: {why}; set public_url to the address people reach warden at, \
                     like \"https://warden.example.com\""
                ),
            );
        }
    }
    for (name, p) in &cfg.programs {
        if p.on_token_change == OnTokenChange::Watch && p.health.is_none() {
            push(
                &mut v,
                &["programs", name, "on_token_change"],
                format!(
                    "is \"watch\" but the program has no health check: warden sends it nothing \
                     and cannot tell whether it picked up a new token; add a \
                     [programs.{name}.health] section so a program that misses it is restarted"
                ),
            );
        }
    }
    v.extend(super::exposure::warnings(cfg));
    v.extend(super::several_tokens::exposure_warnings(cfg));
    public_url_without_api_token(&cfg.http, &mut v);
    upstox_notifier_reachable(cfg, &mut v);
    v
}

/// Upstox's `approve` mode: Upstox's servers post the token to `{public_url}/upstox/notify`,
/// so public_url must be an address they can reach (the app's Notifier Webhook names it).
fn upstox_notifier_reachable(cfg: &Config, v: &mut Vec<Found>) {
    let approve = cfg.token.as_ref().is_some_and(|t| {
        t.provider == TokenProviderKind::Upstox
            && t.upstox
                .as_ref()
                .is_some_and(|u| u.login == UpstoxLogin::Approve)
    });
    if !approve {
        return;
    }
    let why = if cfg.http.public_url.is_empty() {
        Some("it is not set (it defaults to the listen address)".to_string())
    } else {
        match url::Url::parse(&cfg.http.public_url)
            .ok()
            .and_then(|u| u.host().map(|h| h.to_owned()))
        {
            Some(url::Host::Domain(d))
                if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") =>
            {
                Some(format!("{d} is this machine only"))
            }
            Some(url::Host::Ipv4(ip))
                if ip.is_loopback() || ip.is_private() || ip.is_link_local() =>
            {
                Some(format!("{ip} is not reachable from the internet"))
            }
            Some(url::Host::Ipv6(ip))
                if ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00 =>
            {
                Some(format!("{ip} is not reachable from the internet"))
            }
            _ => None,
        }
    };
    if let Some(why) = why {
        push(
            v,
            &["http", "public_url"],
            format!(
                "token.upstox.login = \"approve\": Upstox posts the approved token to \
                 {{public_url}}/upstox/notify, but {why}; set public_url to the https:// address \
                 Upstox's servers reach warden at and register {{public_url}}/upstox/notify as \
                 the app's Notifier Webhook"
            ),
        );
    }
}

/// A public_url others can reach means browsers beyond this machine: without an api_token,
/// anyone who reaches it can restart programs or force a login.
fn public_url_without_api_token(h: &HttpConfig, v: &mut Vec<Found>) {
    if !h.api_token.is_empty() || h.public_url.is_empty() {
        return;
    }
    let Ok(url) = url::Url::parse(&h.public_url) else {
        return;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return,
    };
    if !loopback {
        push(
            v,
            &["http", "public_url"],
            format!(
                "{:?} is not a loopback address but http.api_token is empty: whoever reaches                  that URL can restart programs and trigger logins; set api_token (or                  api_token_file) and give it to the CLI's config",
                h.public_url
            ),
        );
    }
}

fn push(v: &mut Vec<Found>, keys: &[&str], message: impl Into<String>) {
    v.push(Found::new(at(keys), message));
}

fn non_zero(v: &mut Vec<Found>, keys: &[&str], d: Duration) {
    if d.is_zero() {
        push(
            v,
            keys,
            "must be longer than zero: write a duration like \"5s\"",
        );
    }
}

fn supervisor(s: &SupervisorConfig, v: &mut Vec<Found>) {
    if s.state_dir.as_os_str().is_empty() {
        push(
            v,
            &["supervisor", "state_dir"],
            "must not be empty: name a directory, like \".warden\"",
        );
    }
}

fn http(h: &HttpConfig, v: &mut Vec<Found>) {
    // An `api_token_file` has been read into `api_token` by now: both forms are judged alike.
    if !h.api_token.is_empty() && blank(h.api_token.expose()) {
        push(
            v,
            &["http", "api_token"],
            "is only whitespace, which no client can send as a bearer token: set a real token, \
             or leave it empty",
        );
    } else if !h.listen.ip().is_loopback() && h.api_token.is_empty() {
        push(
            v,
            &["http", "api_token"],
            format!(
                "required because http.listen ({}) is not a loopback address (warden refuses to \
                 start without it): set api_token or api_token_file, or listen on 127.0.0.1",
                h.listen
            ),
        );
    }
    if !h.public_url.is_empty() {
        if let Err(e) = web_url(&h.public_url) {
            push(
                v,
                &["http", "public_url"],
                format!("{e}; it is how a browser reaches warden"),
            );
        }
    }
}

fn token(t: &TokenConfig, v: &mut Vec<Found>) {
    let k = |key: &'static str| ["token", key];
    if t.env_file.as_os_str().is_empty() {
        push(
            v,
            &k("env_file"),
            "must not be empty: name the dotenv file the programs read, like \".env\"",
        );
    }
    if !is_env_name(&t.env_key) {
        push(
            v,
            &k("env_key"),
            format!(
                "{:?} is not a valid environment variable name: use letters, digits and _, \
                 not starting with a digit (like \"KITE_ACCESS_TOKEN\")",
                t.env_key
            ),
        );
    }
    if jiff::tz::TimeZone::get(&t.timezone).is_err() {
        push(
            v,
            &k("timezone"),
            format!(
                "unknown time zone {:?}: use an IANA name like \"Asia/Kolkata\"",
                t.timezone
            ),
        );
    }
    for (key, value) in [("expires_at", &t.expires_at), ("refresh_at", &t.refresh_at)] {
        if let Err(e) = parse_hhmm(value) {
            push(v, &k(key), e);
        }
    }
    non_zero(v, &k("check_interval"), t.check_interval);
    non_zero(v, &k("attempt_window"), t.attempt_window);
    non_zero(v, &k("verify_timeout"), t.verify_timeout);
    if !(1..=10).contains(&t.max_attempts) {
        push(
            v,
            &k("max_attempts"),
            "must be between 1 and 10: automated logins are capped (5 wrong attempts lock a \
             Zerodha account)",
        );
    }
    let fleet = t.store.kind == StoreKind::Redis;
    if fleet {
        store(t, v);
    }
    match t.provider {
        TokenProviderKind::Kite => kite(t.kite.as_ref(), fleet, v),
        TokenProviderKind::Command => command_provider(t.command.as_ref(), v),
        TokenProviderKind::None => {}
        TokenProviderKind::Fyers => fyers(t.fyers.as_ref(), v),
        TokenProviderKind::Dhan => dhan(t.dhan.as_ref(), v),
        TokenProviderKind::Upstox => upstox(t.upstox.as_ref(), v),
        TokenProviderKind::Angelone => angelone::check(t, v),
    }
}

/// `[token.upstox]` (SPEC §9.2).
fn upstox(cfg: Option<&UpstoxConfig>, v: &mut Vec<Found>) {
    let Some(u) = cfg else {
        push(
            v,
            &["token", "upstox"],
            "provider = \"upstox\" needs a [token.upstox] section with api_key, api_secret and \
             user_id",
        );
        return;
    };
    let k = |key: &'static str| ["token", "upstox", key];
    if blank(&u.api_key) {
        push(
            v,
            &k("api_key"),
            "must not be empty: set it to your Upstox app's API key (its client_id)",
        );
    } else if u.api_key.contains(char::is_whitespace) {
        push(
            v,
            &k("api_key"),
            "contains whitespace, which no Upstox API key has: remove the stray space or newline",
        );
    }
    if blank(u.api_secret.expose()) {
        push(
            v,
            &k("api_secret"),
            "must not be empty: set api_secret or api_secret_file (the app's API secret)",
        );
    }
    if blank(&u.user_id) {
        push(
            v,
            &k("user_id"),
            "must not be empty: set it to the Upstox user id (UCC) the token is for; a token of \
             any other user is refused",
        );
    } else if u.user_id.contains(char::is_whitespace) {
        push(
            v,
            &k("user_id"),
            "contains whitespace, which no Upstox user id has: remove the stray space or newline",
        );
    }
    if let Err(e) = web_url(&u.api_base) {
        push(v, &k("api_base"), e);
    }
}

/// Shortest and longest `lock_ttl` for fleet mode.
const LOCK_TTL: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(3)..=Duration::from_secs(600);

/// `[token.store]` with kind = "redis" (fleet mode). With kind = "file" its other keys are
/// unused and not checked.
fn store(t: &TokenConfig, v: &mut Vec<Found>) {
    let s = &t.store;
    let k = |key: &'static str| ["token", "store", key];
    let url = s.url.expose();
    // The url may carry a password: no message here shows any part of it.
    match url::Url::parse(url) {
        Ok(u)
            if matches!(u.scheme(), "redis" | "rediss")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            if let Some(ca) = &s.ca_file {
                if u.scheme() != "rediss" {
                    push(
                        v,
                        &k("ca_file"),
                        "only used with TLS: set url = \"rediss://…\" or remove ca_file",
                    );
                } else if let Err(e) = std::fs::read(ca) {
                    push(
                        v,
                        &k("ca_file"),
                        format!("cannot read {}: {e}", ca.display()),
                    );
                }
            }
            if u.password().is_some() && !s.password.is_empty() {
                push(
                    v,
                    &k("password"),
                    "the url already carries a password: keep it in one place, either in the \
                     url or in password / password_file",
                );
            }
        }
        _ => push(
            v,
            &k("url"),
            "kind = \"redis\" needs url = \"redis://HOST:PORT\" (or rediss:// for TLS); \
             set url or url_file",
        ),
    }
    if s.key_prefix.is_empty() {
        push(
            v,
            &k("key_prefix"),
            "must not be empty: every Redis key of the fleet starts with it (the default is \
             \"warden:\"), so it keeps them apart from other users of the same Redis",
        );
    } else if s.key_prefix.contains(char::is_whitespace) {
        push(
            v,
            &k("key_prefix"),
            format!(
                "{:?} contains whitespace, which makes keys awkward to inspect with redis-cli: \
                 use something like \"warden:\"",
                s.key_prefix
            ),
        );
    }
    if !LOCK_TTL.contains(&s.lock_ttl) {
        push(
            v,
            &k("lock_ttl"),
            "must be between 3s and 10m: much shorter, a slow Redis round trip can cost a live \
             refresher its lock (and two refreshers kill each other's tokens); longer, a crashed \
             refresher leaves the fleet without one for that long",
        );
    }
    // The lock is per api_key: without one there is nothing to elect a refresher for. With
    // provider = "kite" a missing api_key is reported by `kite`, with this reason.
    if t.provider != TokenProviderKind::Kite {
        push(
            v,
            &k("kind"),
            "kind = \"redis\" needs provider = \"kite\" with an api_key: fleet mode elects \
             one refresher per Kite api_key; use kind = \"file\" with this provider",
        );
    }
}

/// `fleet`: `[token.store] kind = "redis"`, whose lock is keyed by the api_key.
fn kite(kite: Option<&KiteConfig>, fleet: bool, v: &mut Vec<Found>) {
    let Some(kc) = kite else {
        push(
            v,
            &["token", "kite"],
            "provider = \"kite\" needs a [token.kite] section with api_key, api_secret and \
             user_id (or set provider = \"command\" or \"none\")",
        );
        return;
    };
    let k = |key: &'static str| ["token", "kite", key];
    if blank(&kc.api_key) {
        push(
            v,
            &k("api_key"),
            if fleet {
                "must not be empty: set it to your Kite Connect app's api_key (fleet mode, \
                 [token.store] kind = \"redis\", elects one refresher per Kite api_key)"
            } else {
                "must not be empty: set it to your Kite Connect app's api_key"
            },
        );
    } else if kc.api_key.contains(char::is_whitespace) {
        push(
            v,
            &k("api_key"),
            "contains whitespace, which no Kite api_key has: remove the stray space or newline",
        );
    }
    if blank(kc.api_secret.expose()) {
        push(
            v,
            &k("api_secret"),
            "must not be empty: set api_secret or api_secret_file",
        );
    }
    if blank(&kc.user_id) {
        push(
            v,
            &k("user_id"),
            "must not be empty: set it to the Zerodha user id the token is for",
        );
    } else if kc.user_id.contains(char::is_whitespace) {
        // A session's user_id is compared exactly: a stray space would reject every login.
        push(
            v,
            &k("user_id"),
            "contains whitespace, which no Zerodha user id has: remove the stray space or newline",
        );
    }
    if kc.login == LoginMode::Totp {
        if blank(kc.password.expose()) {
            push(
                v,
                &k("password"),
                "login = \"totp\" needs the password: set password or password_file",
            );
        }
        if kc.totp_secret.is_empty() {
            push(
                v,
                &k("totp_secret"),
                "login = \"totp\" needs the TOTP secret: set totp_secret or totp_secret_file",
            );
        } else if totp_rs::Secret::Encoded(kc.totp_secret.expose().to_string())
            .to_bytes()
            .is_err()
        {
            push(
                v,
                &k("totp_secret"),
                "is not valid base32: use the secret shown when you enabled TOTP on Kite \
                 (letters A-Z and digits 2-7)",
            );
        }
    }
    for (key, value) in [("login_base", &kc.login_base), ("api_base", &kc.api_base)] {
        if let Err(e) = web_url(value) {
            push(v, &k(key), e);
        }
    }
}

fn fyers(fyers: Option<&FyersConfig>, v: &mut Vec<Found>) {
    let Some(fc) = fyers else {
        push(
            v,
            &["token", "fyers"],
            "provider = \"fyers\" needs a [token.fyers] section with client_id, secret_key and \
             user_id (pin is optional)",
        );
        return;
    };
    let k = |key: &'static str| ["token", "fyers", key];
    if blank(&fc.client_id) {
        push(
            v,
            &k("client_id"),
            "must not be empty: set it to your Fyers app's App ID, like \"XXXX-100\"",
        );
    } else if fc.client_id.contains(char::is_whitespace) {
        push(
            v,
            &k("client_id"),
            "contains whitespace, which no Fyers App ID has: remove the stray space or newline",
        );
    } else if !fc.client_id.contains('-') {
        push(
            v,
            &k("client_id"),
            format!(
                "{:?} lacks the app type suffix: Fyers App IDs look like \"XXXX-100\" (copy the \
                 whole App ID from the API dashboard)",
                fc.client_id
            ),
        );
    }
    if blank(fc.secret_key.expose()) {
        push(
            v,
            &k("secret_key"),
            "must not be empty: set secret_key or secret_key_file (the app's Secret ID)",
        );
    }
    if blank(&fc.user_id) {
        push(
            v,
            &k("user_id"),
            "must not be empty: set it to the Fyers client id (fy_id) the token is for",
        );
    } else if fc.user_id.contains(char::is_whitespace) {
        push(
            v,
            &k("user_id"),
            "contains whitespace, which no Fyers client id has: remove the stray space or newline",
        );
    }
    // An empty pin means "no refresh token path"; one of only spaces is a mistake.
    if !fc.pin.is_empty() && blank(fc.pin.expose()) {
        push(
            v,
            &k("pin"),
            "is only whitespace: set the 4-digit PIN (or pin_file), or leave it empty to always \
             log in by hand",
        );
    }
    if fc.login != LoginMode::Manual {
        push(
            v,
            &k("login"),
            "Fyers has only login = \"manual\": it documents no automated login; set pin to let \
             warden renew the token with the refresh token instead",
        );
    }
    if let Err(e) = web_url(&fc.api_base) {
        push(v, &k("api_base"), e);
    }
}

/// `[token.dhan]`: the keys the chosen login mode needs.
fn dhan(dhan: Option<&DhanConfig>, v: &mut Vec<Found>) {
    let Some(dc) = dhan else {
        push(
            v,
            &["token", "dhan"],
            "provider = \"dhan\" needs a [token.dhan] section with client_id and login \
             (\"totp\" with pin and totp_secret, or \"manual\" with app_id and app_secret)",
        );
        return;
    };
    let k = |key: &'static str| ["token", "dhan", key];
    if blank(&dc.client_id) {
        push(
            v,
            &k("client_id"),
            "must not be empty: set it to your Dhan client id (dhanClientId, shown on Dhan Web \
             under My Profile)",
        );
    } else if dc.client_id.contains(char::is_whitespace) {
        // The profile's dhanClientId is compared exactly: a stray space would refuse every token.
        push(
            v,
            &k("client_id"),
            "contains whitespace, which no Dhan client id has: remove the stray space or newline",
        );
    }
    match dc.login {
        LoginMode::Totp => {
            if blank(dc.pin.expose()) {
                push(
                    v,
                    &k("pin"),
                    "login = \"totp\" needs the Dhan login PIN: set pin or pin_file",
                );
            }
            if dc.totp_secret.is_empty() {
                push(
                    v,
                    &k("totp_secret"),
                    "login = \"totp\" needs the TOTP secret: set totp_secret or totp_secret_file",
                );
            } else if totp_rs::Secret::Encoded(dc.totp_secret.expose().to_string())
                .to_bytes()
                .is_err()
            {
                push(
                    v,
                    &k("totp_secret"),
                    "is not valid base32: use the secret shown when you set up TOTP on Dhan Web \
                     (letters A-Z and digits 2-7)",
                );
            }
        }
        LoginMode::Manual => {
            if blank(&dc.app_id) {
                push(
                    v,
                    &k("app_id"),
                    "login = \"manual\" (the consent flow) needs your API key: set app_id \
                     (Dhan Web, Access DhanHQ APIs)",
                );
            }
            if blank(dc.app_secret.expose()) {
                push(
                    v,
                    &k("app_secret"),
                    "login = \"manual\" (the consent flow) needs the API secret: set \
                     app_secret or app_secret_file",
                );
            }
        }
    }
    // An app_id without its secret (or the reverse) can never start a consent.
    if dc.login == LoginMode::Totp && blank(&dc.app_id) != blank(dc.app_secret.expose()) {
        let missing = if blank(&dc.app_id) {
            "app_id"
        } else {
            "app_secret"
        };
        push(
            v,
            &k(missing),
            "app_id and app_secret go together (they enable a manual consent login beside \
             totp): set both, or neither",
        );
    }
    for (key, value) in [("auth_base", &dc.auth_base), ("api_base", &dc.api_base)] {
        if let Err(e) = web_url(value) {
            push(v, &k(key), e);
        }
    }
}

fn command_provider(c: Option<&CommandProviderConfig>, v: &mut Vec<Found>) {
    match c {
        None => push(
            v,
            &["token", "command"],
            "provider = \"command\" needs a [token.command] section with command = [\"…\"]",
        ),
        Some(c) => {
            if c.command.0.first().is_none_or(|p| blank(p)) {
                push(
                    v,
                    &["token", "command", "command"],
                    "must name the program to run, like [\"python3\", \"auto_token_refresh.py\"]",
                );
            }
            non_zero(v, &["token", "command", "timeout"], c.timeout);
        }
    }
}

fn notify(n: &NotifyConfig, v: &mut Vec<Found>) {
    if !n.webhook_url.is_empty() && web_url(n.webhook_url.expose()).is_err() {
        // The URL often embeds a token (Slack, Mattermost): never show it.
        push(
            v,
            &["notify", "webhook_url"],
            "must be an http:// or https:// URL",
        );
    }
    match (
        n.telegram_bot_token.is_empty(),
        n.telegram_chat_id.is_empty(),
    ) {
        (false, true) => push(
            v,
            &["notify", "telegram_chat_id"],
            "telegram_bot_token is set but telegram_chat_id is not: set both, or neither",
        ),
        (true, false) => push(
            v,
            &["notify", "telegram_bot_token"],
            "telegram_chat_id is set but telegram_bot_token is not: set both (or \
             telegram_bot_token_file), or neither",
        ),
        _ => {}
    }
    if !n.telegram_api_base.is_empty() {
        if let Err(e) = web_url(&n.telegram_api_base) {
            push(v, &["notify", "telegram_api_base"], e);
        }
    }
    if !n.quiet_hours.trim().is_empty() {
        if let Err(e) = super::QuietHours::parse(&n.quiet_hours) {
            push(v, &["notify", "quiet_hours"], e);
        }
    }
    if jiff::tz::TimeZone::get(&n.timezone).is_err() {
        push(
            v,
            &["notify", "timezone"],
            format!(
                "unknown time zone {:?}: use an IANA name like \"Asia/Kolkata\"",
                n.timezone
            ),
        );
    }
    if n.lead > Duration::from_secs(24 * 3600) {
        push(
            v,
            &["notify", "lead"],
            "must be at most \"24h\": it is how long before a session opens a held problem \
             is sent anyway",
        );
    }
}

fn programs(programs: &BTreeMap<String, ProgramConfig>, v: &mut Vec<Found>) {
    for (name, p) in programs {
        let k = |key: &'static str| ["programs", name.as_str(), key];
        if !is_program_name(name) {
            push(
                v,
                &["programs", name],
                "program names may use only letters, digits, '_', '.' and '-': rename it",
            );
        }
        if p.command.0.first().is_none_or(|c| blank(c)) {
            push(
                v,
                &k("command"),
                "must name the program to run, as an array like [\"uvicorn\", \"app.main:app\"] \
                 or a string like \"uvicorn app.main:app\"",
            );
        }
        for key in p.env.keys() {
            if key.is_empty() || key.contains(['=', '\0']) {
                push(
                    v,
                    &["programs", name, "env", key],
                    "is not a usable environment variable name: remove '=' and NUL characters",
                );
            }
        }
        for dep in &p.depends_on {
            if dep == name {
                push(
                    v,
                    &k("depends_on"),
                    "a program cannot depend on itself: remove its own name",
                );
            } else if !programs.contains_key(dep) {
                let known: Vec<&str> = programs.keys().map(String::as_str).collect();
                push(
                    v,
                    &k("depends_on"),
                    format!(
                        "`{dep}` is not a program in this file (programs: {}): fix the name or \
                         remove it",
                        known.join(", ")
                    ),
                );
            }
        }
        // A zero backoff is legitimate: restart at once (the restart budget still applies).
        non_zero(v, &k("restart_window"), p.restart_window);
        if p.backoff_initial > p.backoff_max {
            push(
                v,
                &k("backoff_max"),
                format!(
                    "is shorter than backoff_initial ({}): make backoff_max at least as long",
                    humantime::format_duration(p.backoff_initial)
                ),
            );
        }
        if let Some(h) = &p.health {
            health(name, h, v);
        }
    }
    for cycle in cycles(programs) {
        let first = cycle[0].clone();
        push(
            v,
            &["programs", &first, "depends_on"],
            format!(
                "dependency cycle: {} -> {first}: remove one of these depends_on entries",
                cycle.join(" -> ")
            ),
        );
    }
}

fn health(name: &str, h: &HealthConfig, v: &mut Vec<Found>) {
    let k = |key: &'static str| ["programs", name, "health", key];
    match url::Url::parse(&h.url) {
        Ok(u) if u.scheme() == "http" && u.host_str().is_some_and(|h| !h.is_empty()) => {}
        _ => push(
            v,
            &k("url"),
            format!(
                "{:?} is not an http:// URL with a host: write the plain-HTTP address of the \
                 program's health endpoint, like \"http://127.0.0.1:8000/api/system/health\"",
                h.url
            ),
        ),
    }
    non_zero(v, &k("interval"), h.interval);
    non_zero(v, &k("timeout"), h.timeout);
    if h.failure_threshold == 0 {
        push(
            v,
            &k("failure_threshold"),
            "must be at least 1 (consecutive failed probes before a restart)",
        );
    }
    for code in &h.auth_status {
        if !(100..=599).contains(code) {
            push(
                v,
                &k("auth_status"),
                format!("{code} is not an HTTP status: use codes from 100 to 599, like 401 or 403"),
            );
        }
    }
    if !h.auth_body.is_empty() {
        if let Err(e) = regex_lite::Regex::new(&h.auth_body) {
            let first_line = e.to_string();
            push(
                v,
                &k("auth_body"),
                format!(
                    "is not a valid regex ({}): fix it, or leave it empty",
                    first_line.lines().last().unwrap_or("").trim()
                ),
            );
        }
    }
}

/// Every dependency cycle, each once, as the list of programs on it starting with the
/// alphabetically first.
fn cycles(programs: &BTreeMap<String, ProgramConfig>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        programs: &'a BTreeMap<String, ProgramConfig>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        out: &mut BTreeSet<Vec<String>>,
    ) {
        marks.insert(name, Mark::OnStack);
        stack.push(name);
        for dep in &programs[name].depends_on {
            let Some((dep, _)) = programs.get_key_value(dep.as_str()) else {
                continue;
            };
            if dep == name {
                continue; // reported as "depends on itself"
            }
            match marks.get(dep.as_str()).copied().unwrap_or(Mark::New) {
                Mark::New => visit(dep, programs, marks, stack, out),
                Mark::OnStack => {
                    let from = stack.iter().position(|n| n == dep).expect("on the stack");
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|s| s.to_string()).collect();
                    let min = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
                    cycle.rotate_left(min);
                    out.insert(cycle);
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(name, Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut out = BTreeSet::new();
    for name in programs.keys() {
        if marks.get(name.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            visit(name, programs, &mut marks, &mut Vec::new(), &mut out);
        }
    }
    out.into_iter().collect()
}

/// Empty, or only whitespace: as good as unset for a credential, an id or a program name.
fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn is_program_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// An http(s) URL with a host; the error says what is expected.
fn web_url(s: &str) -> Result<(), String> {
    match url::Url::parse(s) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{s:?} is not an http:// or https:// URL with a host"
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::testutil::{load_text, ok, problem_at, problems};

    /// A valid token section to break one key at a time.
    const KITE: &str = "[token]\nprovider = \"kite\"\n[token.kite]\napi_key = \"k\"\n\
                        api_secret = \"SECRET-VALUE-1\"\nuser_id = \"AB1234\"\n";

    fn no_leak(text: &str, secret: &str) {
        if let Err(e) = load_text(text, &[]) {
            assert!(!e.to_string().contains(secret), "{secret} leaked:\n{e}");
        }
    }

    /// A valid Dhan totp section.
    const DHAN: &str = "[token]\nprovider = \"dhan\"\n[token.dhan]\nclient_id = \"1100001234\"\n\
                        login = \"totp\"\npin = \"PIN-VALUE-9\"\ntotp_secret = \"JBSWY3DPEHPK3PXP\"\n";

    #[test]
    fn a_dhan_token_section_is_checked_for_its_login_mode() {
        let c = ok(DHAN);
        let t = c.token.unwrap();
        assert_eq!(t.env_key, "DHAN_ACCESS_TOKEN");
        let d = t.dhan.unwrap();
        assert_eq!(d.auth_base, "https://auth.dhan.co");
        assert_eq!(d.api_base, "https://api.dhan.co/v2");
        let p = problem_at(
            &DHAN.replace("pin = \"PIN-VALUE-9\"\n", ""),
            "token.dhan.pin",
        );
        assert!(p.message.contains("pin_file"), "{}", p.message);
        let p = problem_at(
            &DHAN.replace("JBSWY3DPEHPK3PXP", "not base32!"),
            "token.dhan.totp_secret",
        );
        assert!(p.message.contains("base32"), "{}", p.message);
        let manual = "[token]\nprovider = \"dhan\"\n[token.dhan]\nclient_id = \"1100001234\"\n";
        problem_at(manual, "token.dhan.app_id");
        let p = problem_at(manual, "token.dhan.app_secret");
        assert!(p.message.contains("app_secret_file"), "{}", p.message);
        ok(&format!(
            "{manual}app_id = \"a\"\napp_secret = \"APP-SECRET-7\"\n"
        ));
        problem_at(&format!("{DHAN}app_id = \"a\"\n"), "token.dhan.app_secret");
        problem_at(
            &DHAN.replace("1100001234", "1100 001234"),
            "token.dhan.client_id",
        );
        problem_at(
            &format!("{DHAN}api_base = \"ftp://x\"\n"),
            "token.dhan.api_base",
        );
        problem_at("[token]\nprovider = \"dhan\"\n", "token.dhan");
        problem_at(&format!("{DHAN}pinn = \"1\"\n"), "token.dhan.pinn");
        no_leak(
            &DHAN.replace("JBSWY3DPEHPK3PXP", "not base32!"),
            "PIN-VALUE-9",
        );
    }

    #[test]
    fn the_baseline_token_section_is_valid() {
        let c = ok(KITE);
        assert_eq!(c.token.unwrap().kite.unwrap().user_id, "AB1234");
    }

    #[test]
    fn program_names_are_restricted() {
        ok("[programs.\"api.v2_x-1\"]\ncommand = \"x\"\n");
        let p = problem_at("[programs.\"a b\"]\ncommand = \"x\"\n", "programs.\"a b\"");
        assert_eq!(p.line, Some(1));
        assert!(p.message.contains("rename"));
    }

    #[test]
    fn command_must_not_be_empty() {
        for cmd in ["\"\"", "[]", "[\"\"]", "\"   \""] {
            let p = problem_at(
                &format!("[programs.a]\ncommand = {cmd}\n"),
                "programs.a.command",
            );
            assert!(
                p.message.contains("must name the program"),
                "{cmd}: {}",
                p.message
            );
        }
        problem_at("[programs.a]\ncwd = \"x\"\n", "programs.a.command");
    }

    #[test]
    fn env_names_must_be_usable() {
        problem_at(
            "[programs.a]\ncommand = \"x\"\nenv = { \"A=B\" = \"1\" }\n",
            "programs.a.env.\"A=B\"",
        );
    }

    #[test]
    fn depends_on_must_name_other_existing_programs() {
        let text = "[programs.a]\ncommand = \"x\"\ndepends_on = [\"ghost\"]\n";
        let p = problem_at(text, "programs.a.depends_on");
        assert!(p.message.contains("`ghost`"), "{}", p.message);
        assert_eq!(p.line, Some(3));
        let p = problem_at(
            "[programs.a]\ncommand = \"x\"\ndepends_on = [\"a\"]\n",
            "programs.a.depends_on",
        );
        assert!(p.message.contains("itself"), "{}", p.message);
    }

    #[test]
    fn every_cycle_is_reported_once_with_its_path() {
        let text = "[programs.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n\
                    [programs.b]\ncommand = \"x\"\ndepends_on = [\"a\"]\n\
                    [programs.x]\ncommand = \"x\"\ndepends_on = [\"z\"]\n\
                    [programs.y]\ncommand = \"x\"\ndepends_on = [\"x\"]\n\
                    [programs.z]\ncommand = \"x\"\ndepends_on = [\"y\", \"a\"]\n";
        let all = problems(text);
        let msgs: Vec<&str> = all.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(all.len(), 2, "{all:#?}");
        assert!(msgs[0].contains("a -> b -> a"), "{msgs:?}");
        assert!(msgs[1].contains("x -> z -> y -> x"), "{msgs:?}");
        assert_eq!(all[1].key, "programs.x.depends_on");
        // A chain is not a cycle.
        ok("[programs.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n\
            [programs.b]\ncommand = \"x\"\ndepends_on = [\"c\"]\n[programs.c]\ncommand = \"x\"\n");
    }

    #[test]
    fn non_loopback_listen_needs_an_api_token() {
        let p = problem_at("[http]\nlisten = \"0.0.0.0:9180\"\n", "http.api_token");
        assert!(p.message.contains("0.0.0.0:9180") && p.message.contains("refuses"));
        assert_eq!(p.line, Some(1));
        ok("[http]\nlisten = \"0.0.0.0:9180\"\napi_token = \"t\"\n");
        ok("[http]\nlisten = \"[::1]:9180\"\n");
        no_leak(
            "[http]\nlisten = \"0.0.0.0:9180\"\napi_token = 123456789\n",
            "123456789",
        );
    }

    #[test]
    fn public_url_must_be_a_web_url() {
        problem_at(
            "[http]\npublic_url = \"127.0.0.1:9180\"\n",
            "http.public_url",
        );
        ok("[http]\npublic_url = \"https://warden.example.com/\"\n");
    }

    #[test]
    fn kite_provider_needs_its_section_and_credentials() {
        let p = problem_at("[token]\nprovider = \"kite\"\n", "token.kite");
        assert_eq!(p.line, Some(1));
        for key in ["api_key", "api_secret", "user_id"] {
            let text = KITE.replace(&format!("{key} = "), &format!("{key}_unused = \"\"\n#"));
            let all = problems(&text);
            assert!(
                all.iter().any(|p| p.key == format!("token.kite.{key}")),
                "{key}: {all:#?}"
            );
        }
        ok("[token]\nprovider = \"none\"\n");
    }

    #[test]
    fn totp_login_needs_password_and_a_base32_secret() {
        let totp = format!("{KITE}login = \"totp\"\n");
        problem_at(&totp, "token.kite.password");
        problem_at(&totp, "token.kite.totp_secret");
        let bad = format!("{totp}password = \"p\"\ntotp_secret = \"NOT-BASE32-SECRET-189\"\n");
        let p = problem_at(&bad, "token.kite.totp_secret");
        assert!(p.message.contains("base32"));
        no_leak(&bad, "NOT-BASE32-SECRET-189");
        // Spaces, lowercase and padding are accepted and normalized.
        let c = ok(&format!(
            "{totp}password = \"p\"\ntotp_secret = \"jbsw y3dp ehpk 3pxp\"\n"
        ));
        let kite = c.token.unwrap().kite.unwrap();
        assert_eq!(kite.totp_secret.expose(), "JBSWY3DPEHPK3PXP");
        // Manual login needs neither.
        ok(KITE);
    }

    #[test]
    fn kite_urls_must_be_web_urls() {
        problem_at(
            &format!("{KITE}login_base = \"kite.zerodha.com\"\n"),
            "token.kite.login_base",
        );
        ok(&format!("{KITE}api_base = \"http://127.0.0.1:5000\"\n"));
    }

    #[test]
    fn command_provider_needs_a_command() {
        problem_at("[token]\nprovider = \"command\"\n", "token.command");
        problem_at(
            "[token]\nprovider = \"command\"\n[token.command]\ncommand = []\n",
            "token.command.command",
        );
        problem_at(
            "[token]\nprovider = \"command\"\n[token.command]\ncommand = \"x\"\ntimeout = \"0s\"\n",
            "token.command.timeout",
        );
        ok("[token]\nprovider = \"command\"\n[token.command]\ncommand = \"./refresh.sh\"\n");
    }

    #[test]
    fn token_times_zone_and_env_key_are_checked() {
        let none = "[token]\nprovider = \"none\"\n";
        problem_at(
            &format!("{none}timezone = \"Mars/Olympus\"\n"),
            "token.timezone",
        );
        problem_at(
            &format!("{none}expires_at = \"25:00\"\n"),
            "token.expires_at",
        );
        problem_at(
            &format!("{none}refresh_at = \"7.45\"\n"),
            "token.refresh_at",
        );
        problem_at(
            &format!("{none}env_key = \"KITE-TOKEN\"\n"),
            "token.env_key",
        );
        problem_at(&format!("{none}env_file = \"\"\n"), "token.env_file");
        ok(&format!(
            "{none}timezone = \"UTC\"\nexpires_at = \"7:30\"\nrefresh_at = \"07:45\"\nenv_key = \"_T1\"\n"
        ));
    }

    #[test]
    fn max_attempts_is_capped() {
        let none = "[token]\nprovider = \"none\"\n";
        for n in [0, 11, 1000] {
            problem_at(&format!("{none}max_attempts = {n}\n"), "token.max_attempts");
        }
        for n in [1, 10] {
            ok(&format!("{none}max_attempts = {n}\n"));
        }
    }

    #[test]
    fn zero_backoff_means_restart_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "[programs.a]\ncommand = \"x\"\nbackoff_initial = \"0s\"\nbackoff_max = \"0s\"\n",
        )
        .unwrap();
        let cfg = crate::config::load(&path).expect("zero backoff is valid");
        assert!(cfg.programs["a"].backoff_initial.is_zero());
    }

    #[test]
    fn zero_durations_are_rejected_where_they_make_no_sense() {
        let none = "[token]\nprovider = \"none\"\n";
        for key in ["check_interval", "attempt_window", "verify_timeout"] {
            problem_at(&format!("{none}{key} = \"0s\"\n"), &format!("token.{key}"));
        }
        problem_at(
            "[programs.a]\ncommand = \"x\"\nrestart_window = \"0s\"\n",
            "programs.a.restart_window",
        );
        for key in ["interval", "timeout"] {
            problem_at(
                &format!(
                    "[programs.a]\ncommand = \"x\"\n[programs.a.health]\nurl = \"http://127.0.0.1:1/\"\n\
                     {key} = \"0s\"\n"
                ),
                &format!("programs.a.health.{key}"),
            );
        }
        // Zero is meaningful here: stop at once, probe at once, no spacing.
        ok("[supervisor]\nshutdown_timeout = \"0s\"\n[token]\nprovider = \"none\"\nmin_interval = \"0s\"\n\
            [programs.a]\ncommand = \"x\"\nstop_timeout = \"0s\"\n\
            [programs.a.health]\nurl = \"http://127.0.0.1:1/\"\ninitial_delay = \"0s\"\n");
    }

    #[test]
    fn backoff_initial_must_not_exceed_backoff_max() {
        let p = problem_at(
            "[programs.a]\ncommand = \"x\"\nbackoff_initial = \"2m\"\nbackoff_max = \"1m\"\n",
            "programs.a.backoff_max",
        );
        assert_eq!(p.line, Some(4));
        ok("[programs.a]\ncommand = \"x\"\nbackoff_initial = \"1m\"\nbackoff_max = \"1m\"\n");
    }

    #[test]
    fn health_checks_are_checked() {
        let base = "[programs.a]\ncommand = \"x\"\n[programs.a.health]\n";
        let url = "url = \"http://127.0.0.1:8000/h\"\n";
        problem_at(base, "programs.a.health.url");
        for bad in [
            "https://127.0.0.1:8000/h",
            "127.0.0.1:8000",
            "http://",
            "file:///x",
        ] {
            problem_at(&format!("{base}url = \"{bad}\"\n"), "programs.a.health.url");
        }
        ok(&format!("{base}url = \"http://localhost/h\"\n"));
        problem_at(
            &format!("{base}{url}failure_threshold = 0\n"),
            "programs.a.health.failure_threshold",
        );
        let p = problem_at(
            &format!("{base}{url}auth_status = [403, 600]\n"),
            "programs.a.health.auth_status",
        );
        assert!(p.message.contains("600"));
        problem_at(
            &format!("{base}{url}auth_status = [99]\n"),
            "programs.a.health.auth_status",
        );
        problem_at(
            &format!("{base}{url}auth_body = \"(EXPIRED\"\n"),
            "programs.a.health.auth_body",
        );
        let c = ok(&format!(
            "{base}{url}auth_status = [401, 403]\nauth_body = '\"auth\"\\s*:\\s*\"EXPIRED\"'\n"
        ));
        let h = c.programs["a"].health.as_ref().unwrap();
        assert_eq!(h.auth_status, [401, 403]);
    }

    /// A valid fleet-mode config (kind = "redis") to break one key at a time.
    fn redis(store_keys: &str) -> String {
        format!("{KITE}[token.store]\nkind = \"redis\"\n{store_keys}")
    }

    #[test]
    fn redis_store_needs_a_redis_url_and_never_shows_it() {
        problem_at(&redis(""), "token.store.url");
        for bad in [
            "http://:PASS-WORD-9@host",
            "redis://:PASS-WORD-9@",
            "127.0.0.1:6379",
        ] {
            let text = redis(&format!("url = \"{bad}\"\n"));
            problem_at(&text, "token.store.url");
            no_leak(&text, "PASS-WORD-9");
        }
        ok(&redis(
            "url = \"redis://:pw@127.0.0.1:6379/0\"\nkey_prefix = \"w:\"\n",
        ));
        ok(&redis("url = \"rediss://host:6380\"\n"));
    }

    #[test]
    fn redis_ca_file_needs_tls_and_a_readable_file() {
        let p = problem_at(
            &redis("url = \"redis://h:6379\"\nca_file = \"/nonexistent-ca.pem\"\n"),
            "token.store.ca_file",
        );
        assert!(p.message.contains("rediss://"), "{}", p.message);
        let p = problem_at(
            &redis("url = \"rediss://h:6380\"\nca_file = \"/nonexistent-ca.pem\"\n"),
            "token.store.ca_file",
        );
        assert!(p.message.contains("/nonexistent-ca.pem"), "{}", p.message);
        let ca = tempfile::NamedTempFile::new().unwrap();
        ok(&redis(&format!(
            "url = \"rediss://h:6380\"\nca_file = \"{}\"\n",
            ca.path().display()
        )));
    }

    #[test]
    fn redis_password_in_one_place_only() {
        let url = "url = \"redis://:URL-PASS-11@127.0.0.1:6379\"\n";
        let text = redis(&format!("{url}password = \"KEY-PASS-12\"\n"));
        let p = problem_at(&text, "token.store.password");
        assert!(p.message.contains("one place"), "{}", p.message);
        no_leak(&text, "URL-PASS-11");
        no_leak(&text, "KEY-PASS-12");
        // Through password_file, too.
        let f = crate::config::load::testutil::write(&redis(&format!(
            "{url}password_file = \"redis_password\"\n"
        )));
        std::fs::write(f.dir.path().join("redis_password"), "FILE-PASS-13\n").unwrap();
        let e = crate::config::load::testutil::load_vars(&f, &[]).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].key, "token.store.password");
        assert!(!e.to_string().contains("FILE-PASS-13"), "{e}");
        // A user name in the url with the password apart is fine, and so is either alone.
        ok(&redis(
            "url = \"redis://warden@127.0.0.1:6379\"\npassword = \"p\"\n",
        ));
        ok(&redis(
            "url = \"redis://127.0.0.1:6379\"\npassword = \"p\"\n",
        ));
        ok(&redis(url));
    }

    #[test]
    fn redis_key_prefix_is_non_empty_without_whitespace() {
        let url = "url = \"redis://127.0.0.1:6379\"\n";
        let p = problem_at(
            &redis(&format!("{url}key_prefix = \"\"\n")),
            "token.store.key_prefix",
        );
        assert!(p.message.contains("must not be empty"), "{}", p.message);
        for bad in ["my app:", "w:\t", " w:", "w:\n"] {
            let p = problem_at(
                &redis(&format!("{url}key_prefix = {bad:?}\n")),
                "token.store.key_prefix",
            );
            assert!(p.message.contains("whitespace"), "{bad:?}: {}", p.message);
        }
        // The default is "warden:".
        let c = ok(&redis(url));
        assert_eq!(c.token.unwrap().store.key_prefix, "warden:");
        ok(&redis(&format!("{url}key_prefix = \"prod.kite-1:\"\n")));
    }

    #[test]
    fn redis_lock_ttl_is_between_3s_and_10m() {
        let url = "url = \"redis://127.0.0.1:6379\"\n";
        for bad in ["0s", "2999ms", "10m1s", "1h"] {
            let p = problem_at(
                &redis(&format!("{url}lock_ttl = \"{bad}\"\n")),
                "token.store.lock_ttl",
            );
            assert!(p.message.contains("between 3s and 10m"), "{}", p.message);
        }
        for good in ["3s", "15s", "10m"] {
            ok(&redis(&format!("{url}lock_ttl = \"{good}\"\n")));
        }
    }

    #[test]
    fn redis_needs_a_kite_api_key_and_says_why() {
        let store = "[token.store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n";
        for provider in [
            "provider = \"none\"\n",
            "provider = \"command\"\n[token.command]\ncommand = \"./refresh\"\n",
        ] {
            let p = problem_at(&format!("[token]\n{provider}{store}"), "token.store.kind");
            assert!(
                p.message.contains("one refresher per Kite api_key"),
                "{}",
                p.message
            );
        }
        let text = format!(
            "{}{store}",
            KITE.replace("api_key = \"k\"", "api_key = \"\"")
        );
        let p = problem_at(&text, "token.kite.api_key");
        assert!(
            p.message.contains("one refresher per Kite api_key"),
            "{}",
            p.message
        );
    }

    #[test]
    fn file_store_keys_are_not_checked() {
        // kind = "file" (the default) uses none of them.
        ok(&format!(
            "{KITE}[token.store]\nkind = \"file\"\nkey_prefix = \"\"\nlock_ttl = \"0s\"\n"
        ));
        ok("[token]\nprovider = \"none\"\n[token.store]\nlock_ttl = \"1h\"\n");
    }

    #[test]
    fn blank_values_count_as_empty() {
        for key in ["api_key", "api_secret", "user_id"] {
            let text = KITE.replacen(&format!("{key} = \""), &format!("{key} = \"  \" #\""), 1);
            let p = problem_at(&text, &format!("token.kite.{key}"));
            assert!(
                p.message.contains("must not be empty"),
                "{key}: {}",
                p.message
            );
        }
        let totp = format!("{KITE}login = \"totp\"\ntotp_secret = \"JBSWY3DPEHPK3PXP\"\n");
        problem_at(
            &format!("{totp}password = \" \t \"\n"),
            "token.kite.password",
        );
        ok(&format!("{totp}password = \" pass phrase \"\n"));
        problem_at(
            "[token]\nprovider = \"command\"\n[token.command]\ncommand = [\"  \", \"x\"]\n",
            "token.command.command",
        );
        problem_at("[programs.a]\ncommand = [\" \"]\n", "programs.a.command");
    }

    #[test]
    fn api_key_and_user_id_have_no_inner_whitespace() {
        for (key, bad) in [("api_key", "kite front"), ("user_id", "AB1234\n")] {
            let text = KITE.replacen(&format!("{key} = \""), &format!("{key} = {bad:?} #\""), 1);
            let p = problem_at(&text, &format!("token.kite.{key}"));
            assert!(p.message.contains("whitespace"), "{key}: {}", p.message);
        }
    }

    #[test]
    fn api_token_from_a_file_counts_like_an_inline_one() {
        let listen = "[http]\nlisten = \"0.0.0.0:9180\"\napi_token_file = \"api_token\"\n";
        let with_file = |contents: &str| {
            let f = crate::config::load::testutil::write(listen);
            std::fs::write(f.dir.path().join("api_token"), contents).unwrap();
            crate::config::load::testutil::load_vars(&f, &[])
        };
        let c = with_file("FILE-TOKEN-14\n").expect("a token from a file is a token");
        assert_eq!(c.http.api_token.expose(), "FILE-TOKEN-14");
        // An empty file is one problem, at the key that names the file.
        let e = with_file("\n").unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].key, "http.api_token_file");
        assert_eq!(e.problems[0].line, Some(3));
        // Only whitespace is no token, from a file or inline, on any address.
        let e = with_file("  \n").unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].key, "http.api_token");
        assert!(e.problems[0].message.contains("whitespace"));
        problem_at("[http]\napi_token = \" \"\n", "http.api_token");
    }

    #[test]
    fn public_url_warnings_for_listen_addresses_a_browser_cannot_open() {
        let token = "api_token = \"t\"\n";
        for listen in ["0.0.0.0:9180", "[::]:9180", "127.0.0.1:0"] {
            let c = ok(&format!("{KITE}[http]\nlisten = \"{listen}\"\n{token}"));
            assert_eq!(c.warnings.len(), 1, "{listen}: {:#?}", c.warnings);
            let w = &c.warnings[0];
            assert_eq!(w.key, "http.public_url");
            assert_eq!(w.line, Some(7), "the [http] header");
            assert!(
                w.message.contains(&format!("http://{listen}")) && w.message.contains("login"),
                "{}",
                w.message
            );
        }
        // Not when public_url is set, the listen address is usable, or no login links exist.
        ok_without_warnings(&format!(
            "{KITE}[http]\nlisten = \"0.0.0.0:9180\"\n{token}public_url = \"https://w.example\"\n"
        ));
        ok_without_warnings(&format!("{KITE}[http]\nlisten = \"127.0.0.1:9180\"\n"));
        ok_without_warnings(KITE);
        ok_without_warnings(&format!("[http]\nlisten = \"0.0.0.0:9180\"\n{token}"));
        ok_without_warnings("[token]\nprovider = \"none\"\n[http]\nlisten = \"127.0.0.1:0\"\n");
    }

    #[test]
    fn watch_without_a_health_check_is_a_warning_not_an_error() {
        let c = ok("[programs.a]\ncommand = \"x\"\non_token_change = \"watch\"\n");
        assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
        let w = &c.warnings[0];
        assert_eq!(w.key, "programs.a.on_token_change");
        assert!(w.message.contains("[programs.a.health]"), "{}", w.message);
        let c = ok(
            "[programs.a]\ncommand = \"x\"\non_token_change = \"watch\"\n\
             [programs.a.health]\nurl = \"http://127.0.0.1:1/\"\n",
        );
        assert_eq!(
            c.programs["a"].on_token_change,
            crate::config::OnTokenChange::Watch
        );
        assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
        let p = problem_at(
            "[programs.a]\ncommand = \"x\"\non_token_change = \"wath\"\n",
            "programs.a.on_token_change",
        );
        assert!(
            p.message.contains("watch"),
            "the choices are named: {}",
            p.message
        );
    }

    #[test]
    fn a_public_url_beyond_loopback_without_an_api_token_is_a_warning() {
        let c = ok("[http]\npublic_url = \"https://warden.example.com\"\n");
        assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
        assert_eq!(c.warnings[0].key, "http.public_url");
        assert!(c.warnings[0].message.contains("api_token"));
        ok_without_warnings(
            "[http]\npublic_url = \"https://warden.example.com\"\napi_token = \"t\"\n",
        );
        for local in [
            "http://127.0.0.1:9180",
            "http://localhost:9180",
            "http://[::1]:9180",
        ] {
            ok_without_warnings(&format!("[http]\npublic_url = \"{local}\"\n"));
        }
    }

    const UPSTOX: &str = "[token]\nprovider = \"upstox\"\n[token.upstox]\napi_key = \"k\"\n\
                          api_secret = \"UPSTOX-SECRET-1\"\nuser_id = \"UX1234\"\n";

    #[test]
    fn upstox_needs_its_section_and_credentials() {
        let c = ok(UPSTOX);
        let t = c.token.unwrap();
        assert_eq!(t.env_key, "UPSTOX_ACCESS_TOKEN");
        assert_eq!(t.expires_at, "03:30", "Upstox tokens die at 03:30 IST");
        let given = ok(&UPSTOX.replace("[token.upstox]", "expires_at = \"04:00\"\n[token.upstox]"));
        assert_eq!(given.token.unwrap().expires_at, "04:00");
        let u = t.upstox.unwrap();
        assert_eq!(u.login, crate::config::UpstoxLogin::Manual);
        assert_eq!(u.api_base, "https://api.upstox.com");
        problem_at("[token]\nprovider = \"upstox\"\n", "token.upstox");
        for key in ["api_key", "api_secret", "user_id"] {
            let text = UPSTOX.replacen(&format!("{key} = \""), &format!("{key} = \" \" #\""), 1);
            let p = problem_at(&text, &format!("token.upstox.{key}"));
            assert!(p.message.contains("must not be empty"), "{}", p.message);
        }
        let p = problem_at(&format!("{UPSTOX}login = \"totp\"\n"), "token.upstox.login");
        assert!(p.message.contains("approve"), "{}", p.message);
        problem_at(
            &format!("{UPSTOX}api_base = \"api.upstox.com\"\n"),
            "token.upstox.api_base",
        );
        problem_at(&format!("{UPSTOX}pin = \"1\"\n"), "token.upstox.pin");
        no_leak(
            &UPSTOX.replace("user_id = \"UX1234\"", "user_id = 5"),
            "UPSTOX-SECRET-1",
        );
    }

    #[test]
    fn upstox_approve_warns_when_upstox_cannot_reach_public_url() {
        let approve = format!("{UPSTOX}login = \"approve\"\n");
        for http in [
            "",
            "[http]\npublic_url = \"http://127.0.0.1:9180\"\n",
            "[http]\npublic_url = \"http://192.168.1.5:9180\"\napi_token = \"t\"\n",
        ] {
            let c = ok(&format!("{approve}{http}"));
            let w = c
                .warnings
                .iter()
                .find(|w| w.message.contains("/upstox/notify"))
                .unwrap_or_else(|| panic!("{http}: {:#?}", c.warnings));
            assert_eq!(w.key, "http.public_url");
        }
        ok_without_warnings(&format!(
            "{approve}[http]\npublic_url = \"https://warden.example.com\"\napi_token = \"t\"\n"
        ));
        // Manual mode needs no webhook.
        ok_without_warnings(UPSTOX);
        let c = ok(&format!("{UPSTOX}api_base = \"http://upstox.example\"\n"));
        assert!(
            c.warnings.iter().any(|w| w.key == "token.upstox.api_base"),
            "{:#?}",
            c.warnings
        );
    }

    fn ok_without_warnings(text: &str) {
        let c = ok(text);
        assert!(c.warnings.is_empty(), "{text}\n{:#?}", c.warnings);
    }

    #[test]
    fn telegram_needs_both_or_neither() {
        problem_at(
            "[notify]\ntelegram_bot_token = \"BOT-TOKEN-8\"\n",
            "notify.telegram_chat_id",
        );
        no_leak(
            "[notify]\ntelegram_bot_token = \"BOT-TOKEN-8\"\n",
            "BOT-TOKEN-8",
        );
        problem_at(
            "[notify]\ntelegram_chat_id = \"42\"\n",
            "notify.telegram_bot_token",
        );
        ok("[notify]\ntelegram_chat_id = \"42\"\ntelegram_bot_token = \"t\"\n");
    }

    #[test]
    fn webhook_must_be_a_web_url_and_is_never_shown() {
        let bad = "[notify]\nwebhook_url = \"hooks.slack.com/HOOK-SECRET-7\"\n";
        problem_at(bad, "notify.webhook_url");
        no_leak(bad, "HOOK-SECRET-7");
        ok("[notify]\nwebhook_url = \"https://hooks.slack.com/services/x\"\n");
    }

    #[test]
    fn quiet_hours_timezone_and_lead_are_checked() {
        problem_at("[notify]\nquiet_hours = \"22:00\"\n", "notify.quiet_hours");
        problem_at(
            "[notify]\nquiet_hours = \"07:00-07:00\"\n",
            "notify.quiet_hours",
        );
        problem_at("[notify]\ntimezone = \"Mars/Olympus\"\n", "notify.timezone");
        problem_at("[notify]\nlead = \"25h\"\n", "notify.lead");
        problem_at(
            "[notify]\ntrading_days_only = \"yes\"\n",
            "notify.trading_days_only",
        );
        let c = ok(
            "[notify]\nquiet_hours = \"22:00-07:00\"\ntimezone = \"UTC\"\n\
                    trading_days_only = true\nlead = \"45m\"\n",
        );
        assert!(c.notify.quiet().is_some() && c.notify.trading_days_only);
        assert_eq!(c.notify.lead, std::time::Duration::from_secs(45 * 60));
        let d = ok("[notify]\n");
        assert_eq!(d.notify.quiet(), None);
        assert_eq!(d.notify.timezone, "Asia/Kolkata");
        assert_eq!(d.notify.lead, std::time::Duration::from_secs(90 * 60));
    }
}
