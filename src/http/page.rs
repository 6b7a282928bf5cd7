//! The status page (`GET /`): one server-rendered HTML document a trader can read on a phone.
//!
//! No build step and no JavaScript needed: every value is in the HTML as sent. A tiny inline
//! script only ticks the countdowns and shows times in the browser's zone; a meta refresh
//! reloads the page every [`REFRESH_SECS`] seconds. Every string that comes from the config,
//! a program or the broker goes through [`escape`].

use std::borrow::Cow;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jiff::Timestamp;

use super::AppState;
use crate::model::{Health, ProgramState, ProgramStatus};
use crate::model::{TokenState, TokenStatus};
use crate::token::fleet::{FleetStatus, Role};

/// How often the page reloads itself.
pub const REFRESH_SECS: u32 = 10;

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(index))
}

async fn index(State(st): State<AppState>) -> Response {
    let snap = st.views.snapshot();
    let table = st.control.tokens();
    let several = snap.tokens.len() > 1;
    let tokens: Vec<TokenCard<'_>> = snap
        .tokens
        .iter()
        .map(|(name, status, store)| {
            let route = table
                .iter()
                .find(|t| &t.name == name)
                .and_then(|t| t.login.as_ref());
            TokenCard {
                name: several.then_some(name.as_str()),
                status,
                store: store.as_ref(),
                manual_login: route.is_some(),
                broker: route.map(|r| r.provider),
            }
        })
        .collect();
    let programs: Vec<ProgramStatus> = snap.programs.clone().into_values().collect();
    let html = render(&Page {
        programs: &programs,
        tokens: &tokens,
        market: snap.market.as_ref(),
        now: Timestamp::now(),
        version: env!("CARGO_PKG_VERSION"),
        held: &snap.held,
    });
    let html = super::events::with_card(html, &super::events::recent_card(&st.events).await);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Everything is inline; nothing may be loaded from elsewhere, and no other site
            // may frame the login button.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

/// What the page shows.
pub struct Page<'a> {
    pub programs: &'a [ProgramStatus],
    /// Every token, in order (empty: warden manages no token).
    pub tokens: &'a [TokenCard<'a>],
    /// Market hours and each token's 7-day strip.
    pub market: Option<&'a crate::market::tracker::MarketView>,
    pub now: Timestamp,
    pub version: &'a str,
    /// Notifications held by quiet hours or a non-trading day.
    pub held: &'a [crate::model::HeldNotification],
}

/// One token's card.
pub struct TokenCard<'a> {
    /// `Some` with several tokens: the card's title, and its login goes to `/login/{name}`.
    pub name: Option<&'a str>,
    pub status: &'a TokenStatus,
    /// Fleet mode: the shared store and this warden's role.
    pub store: Option<&'a FleetStatus>,
    /// Its manual login works (its broker table is configured).
    pub manual_login: bool,
    /// The provider whose login page the button opens (`kite`, `angelone`, …).
    pub broker: Option<&'a str>,
}

/// How a provider is called on the page.
fn broker_title(provider: Option<&str>) -> &'static str {
    match provider {
        Some("angelone") => "Angel One",
        Some("dhan") => "Dhan",
        Some("upstox") => "Upstox",
        Some("fyers") => "Fyers",
        Some("kite") => "Kite",
        _ => "Broker",
    }
}

/// HTML-escape text for element content and quoted attribute values.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

pub fn program_state_str(s: ProgramState) -> &'static str {
    s.as_str()
}

pub fn health_str(h: Health) -> &'static str {
    h.as_str()
}

pub fn token_state_str(s: TokenState) -> &'static str {
    s.as_str()
}

pub use crate::present::{human_duration, login_needed};

/// Badge colour class for a word.
fn tone_program(s: ProgramState) -> &'static str {
    match s {
        ProgramState::Running => "ok",
        ProgramState::Starting | ProgramState::Backoff | ProgramState::Stopping => "warn",
        ProgramState::Exited | ProgramState::Fatal => "bad",
        ProgramState::Stopped => "mute",
    }
}

fn tone_health(h: Health) -> &'static str {
    match h {
        Health::Healthy => "ok",
        Health::Unknown => "mute",
        Health::Unhealthy | Health::AuthFailed => "bad",
    }
}

fn tone_token(s: TokenState) -> &'static str {
    match s {
        TokenState::Valid => "ok",
        TokenState::Refreshing | TokenState::Unknown => "warn",
        TokenState::Expired | TokenState::NeedsLogin => "bad",
    }
}

/// `<time>` in UTC as sent; the script rewrites it in the reader's zone.
fn time_el(t: Timestamp) -> String {
    let utc = t.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        r#"<time datetime="{}" data-local>{}</time>"#,
        t,
        utc.strftime("%a %H:%M UTC")
    )
}

/// "in 3h 05m" / "4m 10s ago", ticking when the script runs.
fn countdown_el(until: Timestamp, now: Timestamp) -> String {
    let text = crate::present::countdown(until, now);
    format!(r#"<span data-until="{until}">{text}</span>"#)
}

fn badge(tone: &str, text: &str) -> String {
    format!(r#"<span class="badge {tone}">{}</span>"#, escape(text))
}

pub fn render(p: &Page<'_>) -> String {
    let mut body = String::with_capacity(8192);
    let attention = attention(p);
    let (banner_tone, banner_text) = if attention.is_empty() {
        ("ok", "All good".to_string())
    } else {
        ("bad", format!("Needs attention: {}", attention.join("; ")))
    };
    let _ = write!(
        body,
        r#"<header><h1>warden</h1><p class="banner {banner_tone}" role="status">{}</p></header>"#,
        escape(&banner_text)
    );
    token_cards(&mut body, p);
    super::held_card::render(&mut body, p.held);
    if let Some(m) = p.market {
        super::market_card::render(&mut body, m);
    }
    programs_card(&mut body, p);
    let _ = write!(
        body,
        r#"<footer>warden {} · refreshes every {REFRESH_SECS} s · updated {} · <a href="/api/v1/status">JSON</a> · <a href="/metrics">metrics</a></footer>"#,
        escape(p.version),
        time_el(p.now),
    );
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECS}">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>{STYLE}{MARKET_STYLE}</style>
</head>
<body data-now="{now}">
<main>
{body}
</main>
<script>{SCRIPT}</script>
</body>
</html>
"#,
        title = if attention.is_empty() {
            "warden · all good"
        } else {
            "warden · needs attention"
        },
        now = p.now,
        MARKET_STYLE = super::market_card::STYLE,
    )
}

/// Short phrases for the banner: what is not as it should be.
fn attention(p: &Page<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for card in p.tokens {
        let t = card.status;
        let which = card.name.map(|n| format!(" {n}")).unwrap_or_default();
        if t.state != TokenState::Valid {
            out.push(format!(
                "token{which} {}",
                token_state_str(t.state).replace('_', " ")
            ));
        }
        if t.env_file_warning.is_some() {
            out.push("token file readable by others".to_string());
        }
    }
    let bad = p
        .programs
        .iter()
        .filter(|s| {
            !matches!(s.state, ProgramState::Running | ProgramState::Stopped)
                || matches!(s.health, Health::Unhealthy | Health::AuthFailed)
        })
        .count();
    if bad > 0 {
        out.push(format!(
            "{bad} program{} not running well",
            if bad == 1 { "" } else { "s" }
        ));
    }
    out
}

fn token_cards(out: &mut String, p: &Page<'_>) {
    if p.tokens.is_empty() {
        out.push_str(r#"<section class="card" id="token"><h2>Token</h2>"#);
        out.push_str(r#"<p class="mute-text">warden manages no token (no <code>[token]</code> provider configured).</p></section>"#);
        return;
    }
    for card in p.tokens {
        token_card(out, p, card);
    }
}

fn token_card(out: &mut String, p: &Page<'_>, card: &TokenCard<'_>) {
    let t = card.status;
    match card.name {
        None => {
            let _ = write!(
                out,
                r#"<section class="card" id="token"><h2>{} token</h2>"#,
                broker_title(card.broker)
            );
        }
        Some(n) => {
            let n = escape(n);
            let _ = write!(
                out,
                r#"<section class="card" id="token-{n}"><h2>Token {n}</h2>"#
            );
        }
    }
    let state = token_state_str(t.state);
    let _ = write!(
        out,
        r#"<div class="headline">{}"#,
        badge(tone_token(t.state), &state.replace('_', " "))
    );
    if let Some(exp) = t.expires_at {
        let verb = if exp > p.now { "expires" } else { "expired" };
        let _ = write!(
            out,
            r#"<span class="countdown">{verb} {}</span>"#,
            countdown_el(exp, p.now)
        );
    }
    out.push_str("</div>");
    if login_needed(t.state) {
        if card.manual_login {
            match card.name {
                None => {
                    let b = broker_title(card.broker);
                    let _ = write!(
                        out,
                        r#"<a class="login" href="/login">Log in with {b}</a><p class="hint">Opens {b}'s login page; after the login you come back here with a fresh token.</p>"#
                    );
                }
                Some(n) => {
                    let n = escape(n);
                    let _ = write!(
                        out,
                        r#"<a class="login" href="/login/{n}">Log in {n}</a><p class="hint">Opens the broker's login page for {n}; after the login you come back here with a fresh token.</p>"#
                    );
                }
            }
        } else {
            out.push_str(r#"<p class="hint">A new token is needed: run <code>warden token refresh</code> or fix the token command.</p>"#);
        }
    }
    out.push_str("<dl>");
    let row = |out: &mut String, k: &str, v: String| {
        let _ = write!(out, "<div><dt>{k}</dt><dd>{v}</dd></div>");
    };
    if let Some(u) = &t.user_id {
        row(out, "User", escape(u).into_owned());
    }
    if let Some(x) = t.obtained_at {
        let via = t
            .source
            .map(|s| format!(" via {}", escape(s)))
            .unwrap_or_default();
        row(out, "Obtained", format!("{}{via}", time_el(x)));
    }
    if let Some(x) = t.expires_at {
        row(out, "Expires", time_el(x));
    }
    if let Some(x) = t.next_refresh_at {
        row(
            out,
            "Next refresh",
            format!("{} ({})", time_el(x), countdown_el(x, p.now)),
        );
    }
    if let Some(l) = t.login {
        let mode = match l {
            "totp" => "automatic (TOTP)",
            "manual" => "manual",
            "command" => "token command",
            other => other,
        };
        row(out, "Login", escape(mode).into_owned());
    }
    if let Some(f) = card.store {
        let role = match (f.up, f.role) {
            (false, _) => "store unreachable: keeping the last token, not logging in".to_string(),
            (true, Role::Leader) => format!("leader (fence {}): this warden logs in", f.fence),
            (true, Role::Follower) => {
                format!("follower of {}", escape(f.leader.as_deref().unwrap_or("?")))
            }
            (true, Role::Unknown) => "electing a leader".to_string(),
        };
        row(out, "Fleet", format!("{} · {role}", escape(&f.id)));
        if f.records_rejected > 0 {
            let last = f.last_rejection.as_deref().unwrap_or("");
            row(
                out,
                "Refused from Redis",
                format!(
                    "{} token record(s); last: {}",
                    f.records_rejected,
                    escape(last)
                ),
            );
        }
    }
    out.push_str("</dl>");
    if let Some(w) = &t.env_file_warning {
        let _ = write!(
            out,
            r#"<p class="error"><strong>Token file:</strong> {}</p>"#,
            escape(w)
        );
    }
    if let Some(e) = t.last_error.as_deref().filter(|e| !e.is_empty()) {
        let _ = write!(
            out,
            r#"<p class="error"><strong>Last error:</strong> {}</p>"#,
            escape(e)
        );
    }
    out.push_str("</section>");
}

fn programs_card(out: &mut String, p: &Page<'_>) {
    let running = p
        .programs
        .iter()
        .filter(|s| s.state == ProgramState::Running)
        .count();
    let _ = write!(
        out,
        r#"<section class="card" id="programs"><h2>Programs <span class="count">{running} of {} running</span></h2>"#,
        p.programs.len()
    );
    if p.programs.is_empty() {
        out.push_str(r#"<p class="mute-text">No programs configured.</p></section>"#);
        return;
    }
    out.push_str(r#"<ul class="programs">"#);
    for s in p.programs {
        let name = escape(&s.name);
        let _ = write!(
            out,
            r#"<li class="program"><div class="line1"><span class="name">{name}</span>{}</div><div class="line2">"#,
            badge(tone_program(s.state), program_state_str(s.state)),
        );
        let _ = write!(
            out,
            r#"<span class="health {}"><span class="dot"></span>{}</span>"#,
            tone_health(s.health),
            health_str(s.health).replace('_', " "),
        );
        if let Some(pid) = s.pid {
            let _ = write!(out, r#"<span>pid {pid}</span>"#);
        }
        {
            let since = s.since;
            let word = if s.state == ProgramState::Running {
                "up"
            } else {
                "for"
            };
            let _ = write!(
                out,
                r#"<span>{word} <span data-since="{since}">{}</span></span>"#,
                crate::present::elapsed(since, p.now)
            );
        }
        let _ = write!(
            out,
            r#"<span>{} restart{}</span>"#,
            s.restarts,
            if s.restarts == 1 { "" } else { "s" }
        );
        out.push_str("</div>");
        if let Some(exit) = &s.last_exit {
            let _ = write!(
                out,
                r#"<div class="line3">last exit: {}</div>"#,
                escape(&exit.to_string())
            );
        }
        out.push_str("</li>");
    }
    out.push_str("</ul></section>");
}

const STYLE: &str = r#"
:root{--bg:#f4f5f7;--card:#fff;--fg:#1f2328;--mute:#656d76;--line:#d8dee4;
--ok:#1a7f37;--ok-bg:#dafbe1;--warn:#9a6700;--warn-bg:#fff8c5;--bad:#cf222e;--bad-bg:#ffebe9;--kite:#ff5722}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#161b22;--fg:#e6edf3;--mute:#8d96a0;--line:#30363d;
--ok:#3fb950;--ok-bg:#12261e;--warn:#d29922;--warn-bg:#272115;--bad:#f85149;--bad-bg:#2d1517}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:42rem;margin:0 auto;padding:12px}
header{display:flex;flex-wrap:wrap;align-items:center;gap:8px 12px;margin:4px 0 12px}
h1{font-size:1.35rem;margin:0;letter-spacing:.02em}
h2{font-size:1rem;margin:0 0 10px;display:flex;justify-content:space-between;align-items:baseline;gap:8px}
.banner{margin:0;padding:4px 10px;border-radius:8px;font-size:.9rem;font-weight:600}
.banner.ok{background:var(--ok-bg);color:var(--ok)}.banner.bad{background:var(--bad-bg);color:var(--bad)}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px;margin-bottom:12px}
.headline{display:flex;flex-wrap:wrap;align-items:center;gap:8px 12px;font-size:1.1rem}
.countdown{font-weight:600;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:.85rem;font-weight:600;white-space:nowrap}
.badge.ok{background:var(--ok-bg);color:var(--ok)}.badge.warn{background:var(--warn-bg);color:var(--warn)}
.badge.bad{background:var(--bad-bg);color:var(--bad)}.badge.mute{background:var(--bg);color:var(--mute)}
.login{display:block;margin:14px 0 4px;padding:14px;border-radius:8px;background:var(--kite);color:#fff;
text-align:center;font-size:1.1rem;font-weight:700;text-decoration:none}
.login:hover,.login:focus{filter:brightness(1.08)}
.hint{margin:4px 0 8px;color:var(--mute);font-size:.85rem}
dl{margin:12px 0 0;display:grid;gap:6px}
dl div{display:flex;justify-content:space-between;gap:12px;border-top:1px solid var(--line);padding-top:6px}
dt{color:var(--mute);white-space:nowrap}dd{margin:0;text-align:right;font-variant-numeric:tabular-nums}
.error{margin:12px 0 0;padding:8px 10px;border-radius:6px;background:var(--bad-bg);color:var(--bad);overflow-wrap:anywhere;font-size:.9rem}
.count{font-weight:400;color:var(--mute);font-size:.85rem}
.programs{list-style:none;margin:0;padding:0}
.program{padding:10px 0;border-top:1px solid var(--line)}.program:first-child{border-top:0;padding-top:0}
.line1{display:flex;justify-content:space-between;align-items:center;gap:8px}
.name{font-weight:600;overflow-wrap:anywhere}
.line2{display:flex;flex-wrap:wrap;gap:4px 14px;margin-top:4px;color:var(--mute);font-size:.9rem;font-variant-numeric:tabular-nums}
.line3{margin-top:2px;color:var(--mute);font-size:.85rem}
.health .dot{display:inline-block;width:.6em;height:.6em;border-radius:50%;margin-right:.35em;background:currentColor}
.health.ok{color:var(--ok)}.health.bad{color:var(--bad)}.health.mute{color:var(--mute)}
.mute-text{color:var(--mute);margin:0}
code{font-size:.9em}
footer{color:var(--mute);font-size:.8rem;text-align:center;margin:8px 0 20px}
a{color:inherit}
"#;

/// Ticks `data-since` / `data-until` every second (using the server's clock, so a phone with a
/// wrong clock still counts right) and shows `<time data-local>` in the reader's zone.
const SCRIPT: &str = r#"
(function(){
var skew=Date.parse(document.body.dataset.now)-Date.now();
function p(n){return (n<10?"0":"")+n}
function h(s){s=Math.max(0,Math.floor(s));var d=Math.floor(s/86400),hh=Math.floor(s%86400/3600),m=Math.floor(s%3600/60),x=s%60;
return d?d+"d "+hh+"h":hh?hh+"h "+p(m)+"m":m?m+"m "+p(x)+"s":x+"s"}
function tick(){var now=(Date.now()+skew)/1000;
document.querySelectorAll("[data-since]").forEach(function(e){e.textContent=h(now-Date.parse(e.dataset.since)/1000)});
document.querySelectorAll("[data-until]").forEach(function(e){var r=Date.parse(e.dataset.until)/1000-now;e.textContent=r>=0?"in "+h(r):h(-r)+" ago"})}
document.querySelectorAll("time[data-local]").forEach(function(e){var d=new Date(e.getAttribute("datetime"));
if(!isNaN(d))e.textContent=d.toLocaleString([],{weekday:"short",hour:"2-digit",minute:"2-digit"})});
tick();setInterval(tick,1000)})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn program(name: &str, state: ProgramState, health: Health) -> ProgramStatus {
        ProgramStatus {
            name: name.into(),
            state,
            pid: Some(4242),
            restarts: 2,
            health,
            since: "2024-05-01T10:00:00Z".parse().unwrap(),
            last_exit: None,
        }
    }

    fn token(state: TokenState) -> TokenStatus {
        TokenStatus {
            state,
            user_id: Some("AB1234".into()),
            obtained_at: Some("2024-05-01T03:00:00Z".parse().unwrap()),
            expires_at: Some("2024-05-02T00:30:00Z".parse().unwrap()),
            next_refresh_at: Some("2024-05-02T00:35:00Z".parse().unwrap()),
            last_error: None,
            source: Some("totp"),
            login: Some("totp"),
            ..Default::default()
        }
    }

    fn page(programs: &[ProgramStatus], token: Option<&TokenStatus>) -> String {
        with_store(programs, token, None)
    }

    fn with_store(
        programs: &[ProgramStatus],
        token: Option<&TokenStatus>,
        store: Option<&FleetStatus>,
    ) -> String {
        let cards: Vec<TokenCard<'_>> = token
            .into_iter()
            .map(|status| TokenCard {
                name: None,
                status,
                store,
                manual_login: true,
                broker: Some("kite"),
            })
            .collect();
        render(&Page {
            programs,
            tokens: &cards,
            market: None,
            now: "2024-05-01T10:05:07Z".parse().unwrap(),
            version: "0.0.0",
            held: &[],
        })
    }

    #[test]
    fn several_tokens_each_get_a_card_and_their_own_login_button() {
        let a = token(TokenState::Valid);
        let b = token(TokenState::NeedsLogin);
        let cards = [
            TokenCard {
                name: Some("a"),
                status: &a,
                store: None,
                manual_login: true,
                broker: Some("kite"),
            },
            TokenCard {
                name: Some("b"),
                status: &b,
                store: None,
                manual_login: true,
                broker: Some("kite"),
            },
        ];
        let html = render(&Page {
            programs: &[],
            tokens: &cards,
            now: "2024-05-01T10:05:07Z".parse().unwrap(),
            version: "0.0.0",
            held: &[],
            market: None,
        });
        assert!(html.contains("<h2>Token a</h2>") && html.contains("<h2>Token b</h2>"));
        assert!(html.contains(r#"<a class="login" href="/login/b">Log in b</a>"#));
        assert!(!html.contains(r#"href="/login/a""#));
        assert!(html.contains("token b needs login"), "{html}");
    }

    #[test]
    fn a_lone_token_card_names_its_broker() {
        let t = token(TokenState::NeedsLogin);
        let cards = [TokenCard {
            name: None,
            status: &t,
            store: None,
            manual_login: true,
            broker: Some("upstox"),
        }];
        let html = render(&Page {
            programs: &[],
            tokens: &cards,
            now: "2024-05-01T10:05:07Z".parse().unwrap(),
            version: "0.0.0",
            held: &[],
            market: None,
        });
        assert!(html.contains("<h2>Upstox token</h2>"), "{html}");
        assert!(html.contains(r#"<a class="login" href="/login">Log in with Upstox</a>"#));
        assert!(!html.contains("Kite"), "{html}");
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(escape("plain"), "plain");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn strings_from_programs_and_the_broker_are_escaped() {
        let mut t = token(TokenState::NeedsLogin);
        t.last_error = Some("<script>alert(1)</script>".into());
        t.user_id = Some("<b>".into());
        let html = page(
            &[program(
                "<img src=x>",
                ProgramState::Running,
                Health::Healthy,
            )],
            Some(&t),
        );
        assert!(!html.contains("<img src=x>"));
        assert!(html.contains("&lt;img src=x&gt;"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<b>"));
    }

    #[test]
    fn shows_programs_uptime_and_countdown() {
        let html = page(
            &[program("backend", ProgramState::Running, Health::Healthy)],
            Some(&token(TokenState::Valid)),
        );
        assert!(html.contains(r#"<span class="name">backend</span>"#));
        assert!(html.contains("pid 4242"));
        assert!(html.contains(">5m 07s<"), "uptime from since");
        assert!(html.contains("2 restarts"));
        assert!(
            html.contains("expires <span data-until=\"2024-05-02T00:30:00Z\">in 14h 24m</span>")
        );
        assert!(html.contains("All good"));
        assert!(!html.contains("Log in with Kite"));
        assert!(html.contains(r#"<meta http-equiv="refresh" content="10">"#));
    }

    #[test]
    fn the_login_button_appears_only_when_a_login_is_needed() {
        for (state, shown) in [
            (TokenState::Valid, false),
            (TokenState::Refreshing, false),
            (TokenState::NeedsLogin, true),
            (TokenState::Expired, true),
            (TokenState::Unknown, true),
        ] {
            let html = page(&[], Some(&token(state)));
            assert_eq!(
                html.contains(r#"<a class="login" href="/login">Log in with Kite</a>"#),
                shown,
                "{state:?}"
            );
        }
        let html = page(&[], None);
        assert!(!html.contains("Log in with Kite"));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(-5), "0s");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(247), "4m 07s");
        assert_eq!(human_duration(3 * 3600 + 5 * 60 + 9), "3h 05m");
        assert_eq!(human_duration(2 * 86_400 + 4 * 3600), "2d 4h");
    }

    #[test]
    fn the_fleet_row_names_the_role_and_escapes_ids() {
        let t = token(TokenState::Valid);
        let store = FleetStatus {
            kind: "redis",
            up: true,
            role: Role::Follower,
            id: "a<b".into(),
            leader: Some("host/1/<x>".into()),
            fence: 0,
            ..FleetStatus::default()
        };
        let html = with_store(&[], Some(&t), Some(&store));
        assert!(
            html.contains("a&lt;b · follower of host/1/&lt;x&gt;"),
            "{html}"
        );
        let down = FleetStatus { up: false, ..store };
        let html = with_store(&[], Some(&t), Some(&down));
        assert!(html.contains("store unreachable"), "{html}");
    }
}
