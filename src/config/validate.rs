//! Cross-checks on the typed config: everything serde cannot see on its own.
//!
//! Each rule reports at the key to change and says how to fix it. Messages about secret keys
//! never include their value.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::keypath::{at, Found};
use super::schema::*;
use super::token_times::parse_hhmm;

pub(crate) fn validate(cfg: &Config) -> Vec<Found> {
    let mut v = Vec::new();
    supervisor(&cfg.supervisor, &mut v);
    http(&cfg.http, &mut v);
    if let Some(t) = &cfg.token {
        token(t, &mut v);
    }
    notify(&cfg.notify, &mut v);
    programs(&cfg.programs, &mut v);
    v
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
    if !h.listen.ip().is_loopback() && h.api_token.is_empty() {
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
    if t.store.kind == StoreKind::Redis {
        let url = t.store.url.expose();
        if !(url.starts_with("redis://") || url.starts_with("rediss://"))
            || url::Url::parse(url).is_err()
        {
            push(
                v,
                &["token", "store", "url"],
                "kind = \"redis\" needs url = \"redis://HOST:PORT\" (or rediss:// for TLS); \
                 set url or url_file",
            );
        }
    }
    match t.provider {
        TokenProviderKind::Kite => kite(t.kite.as_ref(), v),
        TokenProviderKind::Command => command_provider(t.command.as_ref(), v),
        TokenProviderKind::None => {}
    }
}

fn kite(kite: Option<&KiteConfig>, v: &mut Vec<Found>) {
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
    if kc.api_key.is_empty() {
        push(
            v,
            &k("api_key"),
            "must not be empty: set it to your Kite Connect app's api_key",
        );
    }
    if kc.api_secret.is_empty() {
        push(
            v,
            &k("api_secret"),
            "must not be empty: set api_secret or api_secret_file",
        );
    }
    if kc.user_id.is_empty() {
        push(
            v,
            &k("user_id"),
            "must not be empty: set it to the Zerodha user id the token is for",
        );
    }
    if kc.login == LoginMode::Totp {
        if kc.password.is_empty() {
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
    for key in ["login_base", "api_base"] {
        let value = if key == "login_base" {
            &kc.login_base
        } else {
            &kc.api_base
        };
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
            if c.command.0.first().is_none_or(|p| p.is_empty()) {
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
        if p.command.0.first().is_none_or(|c| c.is_empty()) {
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
        non_zero(v, &k("backoff_initial"), p.backoff_initial);
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
        push(v, &k("failure_threshold"), "must be at least 1");
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
        if let Err(e) = regex::Regex::new(&h.auth_body) {
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
