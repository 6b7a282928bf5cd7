//! The checks of one token: its env file, its credentials, its broker, the URLs to register
//! with the broker's app. A lone `[token]` keeps the check names doctor always used (`kite
//! reachable`, `credentials`…); a `[tokens.NAME]` says which token: `token a (kite) reachable`.

use std::net::IpAddr;

use super::brokers::{self, Profile};
use super::probes::{error_chain, find_executable, http_client};
use super::Check;
use crate::config::{Config, Problem, ProgramConfig, TokenConfig};

/// Everything doctor checks for `t`. `set_up`: the problems of a config that loads only
/// because all it lacks are credentials; those of this token are its failed credentials.
pub async fn checks(
    cfg: &Config,
    t: &TokenConfig,
    set_up: &[Problem],
    running: bool,
) -> Vec<Check> {
    let mut checks = files(cfg, t);
    let profile = brokers::profile(t);
    checks.extend(credentials(t, profile.as_ref(), set_up));
    checks.extend(command(t));
    if let Some(p) = &profile {
        checks.extend(brokers::probe(t, p, |what| name(t, &format!("{{p}} {what}"))).await);
        if p.callback {
            checks.push(redirect(cfg, t, running).await);
        }
        if p.notifier {
            checks.push(notifier(cfg, t));
        }
    }
    checks
        .into_iter()
        .map(|c| c.for_token(&t.display_name(), &t.provider.name()))
        .collect()
}

/// The name of a check of `t`: `lone` (where `{p}` is the provider) for a lone `[token]`,
/// else `token NAME (provider) WHAT` with `lone`'s own prefix dropped.
fn name(t: &TokenConfig, lone: &str) -> String {
    let provider = t.provider.name();
    if !t.named {
        return lone.replace("{p}", &provider);
    }
    let what = lone.trim_start_matches("{p} ").trim_start_matches("token.");
    format!("token {} ({provider}) {what}", t.name)
}

fn env_file_key(t: &TokenConfig) -> String {
    if t.named {
        format!("tokens.{}.env_file", t.name)
    } else {
        "token.env_file".to_string()
    }
}

/// The env file's directory takes writes; the env file is private.
fn files(cfg: &Config, t: &TokenConfig) -> Vec<Check> {
    let key = env_file_key(t);
    let dir = match t.env_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // Tokens sharing a directory are reported once by `writable::check`: match by directory.
    let problems = crate::token::writable::check(cfg);
    let mut checks = vec![match problems
        .iter()
        .find(|p| p.key.ends_with(".env_file") && p.dir == dir)
    {
        Some(p) => Check::fail(
            name(t, "token.env_file writable"),
            format!("{}: {}", p.dir.display(), p.reason),
            format!(
                "make {} a directory writable by the user warden runs as, or point {key} \
                     somewhere writable",
                p.dir.display()
            ),
        ),
        None => Check::ok(
            name(t, "token.env_file writable"),
            t.env_file.display().to_string(),
        ),
    }];
    if let Some(warning) = crate::config::env_file::readable_by_others(&t.env_file) {
        checks.push(Check::warn(
            name(t, "token.env_file mode"),
            warning,
            format!("chmod 600 {}", t.env_file.display()),
        ));
    } else if t.env_file.exists() {
        checks.push(Check::ok(
            name(t, "token.env_file mode"),
            "readable by its owner only",
        ));
    }
    checks
}

/// What the chosen login mode needs is there; never the values, never submitted.
fn credentials(t: &TokenConfig, p: Option<&Profile>, set_up: &[Problem]) -> Vec<Check> {
    let Some(p) = p else {
        return Vec::new();
    };
    let table = format!("{}.", brokers::table(t));
    let missing: Vec<Check> = set_up
        .iter()
        .filter(|pr| pr.key.starts_with(&table))
        .map(|pr| {
            let what = if pr.message.contains("must not be empty") || pr.message.contains("needs") {
                "is missing"
            } else {
                "is not usable"
            };
            // Display already says `line N: key: message`, the message says what to do.
            Check::fail(
                name(t, "credentials"),
                format!("{} {what}", pr.key),
                pr.to_string(),
            )
        })
        .collect();
    if !missing.is_empty() {
        return missing;
    }
    vec![Check::ok(
        name(t, "credentials"),
        format!(
            "login = \"{}\": {} set (not submitted by doctor)",
            p.mode, p.credentials
        ),
    )]
}

/// A `command` token's refresh program exists and may be run.
fn command(t: &TokenConfig) -> Vec<Check> {
    let Some(c) = &t.command else {
        return Vec::new();
    };
    if t.provider != crate::config::TokenProviderKind::Command {
        return Vec::new();
    }
    let Some(arg0) = c.command.0.first() else {
        return Vec::new();
    };
    let as_program = ProgramConfig {
        cwd: c.cwd.clone(),
        ..ProgramConfig::default()
    };
    let check = name(t, "token.command");
    vec![match find_executable(arg0, &as_program) {
        Ok(path) => Check::ok(check, path.display().to_string()),
        Err(why) => Check::fail(
            check,
            format!("{arg0}: {why}"),
            "install it, fix the path (relative paths start at the command's cwd), or chmod +x it",
        ),
    }]
}

fn broker_app(t: &TokenConfig) -> String {
    format!("the {} app", brokers::broker_name(t.provider))
}

/// The redirect URL to register with the broker's app, and whether warden answers on it. A
/// `state` nobody issued makes warden answer 400 without going near the broker.
async fn redirect(cfg: &Config, t: &TokenConfig, running: bool) -> Check {
    let check = name(t, "redirect url");
    let url = format!("{}/{}/callback", cfg.http.public_url(), t.provider.name());
    let app = broker_app(t);
    if !running {
        return Check::info(
            check,
            format!("register {url} in {app}; warden is not running, so not tried"),
        );
    }
    let Some(client) = http_client() else {
        return Check::info(check, format!("register {url} in {app}"));
    };
    let answer = client
        .get(&url)
        .query(&[("state", "warden-doctor")])
        .send()
        .await
        .map(|r| r.status().as_u16());
    match answer {
        Ok(400) => Check::ok(
            check,
            format!("register {url} in {app}; warden answers on it"),
        ),
        Ok(code) => Check::fail(
            check,
            format!("{url} answered HTTP {code}, not warden's 400 for an unknown state"),
            "point http.public_url (or the proxy in front of warden) at this warden, and \
             start warden with this config",
        ),
        Err(e) => Check::fail(
            check,
            format!("{url}: {}", error_chain(&e)),
            "make http.public_url reach this warden (DNS, proxy, firewall)",
        ),
    }
}

/// Upstox `approve`: Upstox itself posts the token to the notifier URL, so it must be public.
fn notifier(cfg: &Config, t: &TokenConfig) -> Check {
    let check = name(t, "notify url");
    let public_url = cfg.http.public_url();
    let url = format!("{public_url}{}", crate::http::notify::UPSTOX_NOTIFY);
    if is_internal_host(&public_url) {
        Check::warn(
            check,
            format!(
                "{url} is on a loopback or private address: Upstox cannot post the token there"
            ),
            "set http.public_url to the https:// address Upstox's servers reach warden at (a \
             proxy in front of it), and register {public_url}/upstox/notify as the app's \
             Notifier Webhook",
        )
    } else {
        Check::ok(
            check,
            format!("register {url} as the notifier webhook of the Upstox app"),
        )
    }
}

/// Loopback, private or link-local, or `localhost`: not reachable from a broker.
pub fn is_internal_host(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let internal = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    };
    match u.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => internal(ip.into()),
        Some(url::Host::Ipv6(ip)) => internal(ip.into()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_token_keeps_the_old_names_a_named_one_says_which() {
        let lone = TokenConfig::default();
        assert_eq!(name(&lone, "{p} reachable"), "kite reachable");
        assert_eq!(name(&lone, "credentials"), "credentials");
        assert_eq!(name(&lone, "token.env_file mode"), "token.env_file mode");
        let named = TokenConfig {
            provider: crate::config::TokenProviderKind::Angelone,
            name: "angel".into(),
            named: true,
            ..TokenConfig::default()
        };
        assert_eq!(
            name(&named, "{p} reachable"),
            "token angel (angelone) reachable"
        );
        assert_eq!(
            name(&named, "credentials"),
            "token angel (angelone) credentials"
        );
        assert_eq!(
            name(&named, "token.env_file mode"),
            "token angel (angelone) env_file mode"
        );
    }

    #[test]
    fn internal_hosts() {
        assert!(is_internal_host("http://127.0.0.1:9180"));
        assert!(is_internal_host("http://localhost:9180"));
        assert!(is_internal_host("http://192.168.1.5"));
        assert!(is_internal_host("http://10.0.0.5:9180"));
        assert!(is_internal_host("http://[fd00::1]/"));
        assert!(!is_internal_host("https://stack.example.com"));
        assert!(!is_internal_host("https://8.8.8.8"));
    }
}
