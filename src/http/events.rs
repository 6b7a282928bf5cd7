//! `GET /api/v1/events` and the status page's "Recent events" card (issue 16).
//!
//! Both read the journal files off the runtime's thread (`spawn_blocking`): a slow disk delays
//! one answer, never the supervisor.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jiff::tz::TimeZone;
use serde_json::json;

use super::page::escape;
use super::AppState;
use crate::journal::{self, Event, Journal, Since, Window};

/// `limit` when none is given.
pub const DEFAULT_LIMIT: usize = 100;
/// A larger `limit` is lowered to this.
pub const MAX_LIMIT: usize = 1000;
/// How many events the status page shows.
pub const PAGE_EVENTS: usize = 20;
/// Used when no `[token] timezone` is configured.
pub const DEFAULT_TIMEZONE: &str = "Asia/Kolkata";

/// What the handlers need: the journal, and the zone people read times in.
#[derive(Clone, Debug)]
pub struct EventsState {
    journal: Journal,
    tz_name: String,
    tz: TimeZone,
}

impl EventsState {
    /// `timezone`: the configured one (`[token] timezone`), else Asia/Kolkata.
    pub fn new(journal: Journal, timezone: Option<&str>) -> EventsState {
        let name = timezone.unwrap_or(DEFAULT_TIMEZONE);
        let (tz_name, tz) = match TimeZone::get(name) {
            Ok(tz) => (name.to_string(), tz),
            Err(_) => (
                DEFAULT_TIMEZONE.to_string(),
                TimeZone::get(DEFAULT_TIMEZONE).unwrap_or(TimeZone::UTC),
            ),
        };
        EventsState {
            journal,
            tz_name,
            tz,
        }
    }

    async fn read(&self, q: journal::Query) -> Result<Window, String> {
        if !self.journal.is_enabled() {
            return Ok(Window::default());
        }
        let dir = self.journal.dir().to_path_buf();
        tokio::task::spawn_blocking(move || journal::read(&dir, &q).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())?
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/events", get(events))
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
}

/// `?since=` (a seq or an RFC 3339 time) and `?limit=` (1..=1000, default 100).
fn query(params: &HashMap<String, String>) -> Result<journal::Query, String> {
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.trim().parse::<usize>() {
            Ok(n) if n > 0 => n.min(MAX_LIMIT),
            _ => {
                return Err(format!(
                    "limit={l:?}: give a whole number from 1 to {MAX_LIMIT}"
                ))
            }
        },
    };
    let since = params
        .get("since")
        .filter(|s| !s.trim().is_empty())
        .map(|s| Since::parse(s))
        .transpose()?;
    Ok(journal::Query { since, limit })
}

async fn events(
    State(st): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let q = match query(&params) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    match st.events.read(q).await {
        Ok(w) => Json(json!({
            "events": w.events,
            "more": w.more,
            "timezone": st.events.tz_name,
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e}))).into_response(),
    }
}

/// The status page's card: the last [`PAGE_EVENTS`] events, newest first.
pub async fn recent_card(st: &EventsState) -> String {
    let q = journal::Query {
        since: None,
        limit: PAGE_EVENTS,
    };
    match st.read(q).await {
        Ok(w) => card(&w.events, &st.tz, &st.tz_name),
        Err(e) => card_error(&e),
    }
}

/// `html` with `card` as the last section of its `<main>`, above the footer.
pub fn with_card(mut html: String, card: &str) -> String {
    if let Some(at) = html.rfind("<footer").or_else(|| html.rfind("</main>")) {
        html.insert_str(at, card);
    }
    html
}

fn card_error(e: &str) -> String {
    format!(
        r#"<section class="card" id="events"><h2>Recent events</h2><p class="error">{}</p></section>"#,
        escape(e)
    )
}

/// `events` oldest first, shown newest first with times in `tz`.
pub fn card(events: &[Event], tz: &TimeZone, tz_name: &str) -> String {
    let mut out = String::with_capacity(512 + events.len() * 256);
    let zone = jiff::Timestamp::now()
        .to_zoned(tz.clone())
        .strftime("%Z")
        .to_string();
    let _ = write!(
        out,
        r#"<section class="card" id="events"><style>{STYLE}</style><h2>Recent events <span class="count">times in {} ({})</span></h2>"#,
        escape(&zone),
        escape(tz_name)
    );
    if events.is_empty() {
        out.push_str(r#"<p class="mute-text">Nothing has happened yet.</p></section>"#);
        return out;
    }
    out.push_str(r#"<ol class="events">"#);
    for e in events.iter().rev() {
        let tone = e.kind.tone().as_str();
        let local = e.time.to_zoned(tz.clone());
        let _ = write!(
            out,
            r#"<li class="event {tone}" data-seq="{seq}" data-kind="{kind}"><div class="ev-head"><time datetime="{utc}">{when}</time><span class="badge {tone}">{label}</span></div><div class="ev-text"><span class="subject">{subject}</span> {message}</div></li>"#,
            seq = e.seq,
            kind = e.kind.as_str(),
            utc = e.time,
            when = local.strftime("%a %d %b %H:%M:%S"),
            label = e.kind.as_str().replace('_', " "),
            subject = escape(&e.subject),
            message = escape(&e.message),
        );
    }
    out.push_str("</ol></section>");
    out
}

const STYLE: &str = "\
.events{list-style:none;margin:0;padding:0}\
.event{padding:8px 0;border-top:1px solid var(--line)}.event:first-child{border-top:0;padding-top:0}\
.ev-head{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center;gap:4px 8px;\
color:var(--mute);font-size:.85rem;font-variant-numeric:tabular-nums}\
.ev-text{margin-top:2px;font-size:.9rem;overflow-wrap:anywhere}\
.ev-text .subject{font-weight:600}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Kind;

    fn ev(seq: u64, kind: Kind, subject: &str, message: &str) -> Event {
        let mut e = Event::new(kind, subject, message);
        e.seq = seq;
        e.time = "2026-12-07T01:51:03Z".parse().unwrap();
        e
    }

    #[test]
    fn the_card_lists_newest_first_in_the_zone_and_escapes() {
        let tz = TimeZone::get("Asia/Kolkata").unwrap();
        let html = card(
            &[
                ev(1, Kind::ProgramStarted, "backend", "started (pid 7)"),
                ev(2, Kind::ProgramExited, "<b>", "exited with <code>"),
            ],
            &tz,
            "Asia/Kolkata",
        );
        let first = html.find(r#"data-seq="2""#).unwrap();
        let second = html.find(r#"data-seq="1""#).unwrap();
        assert!(first < second, "{html}");
        assert!(html.contains("Mon 07 Dec 07:21:03"), "{html}");
        assert!(html.contains("times in IST (Asia/Kolkata)"), "{html}");
        assert!(
            html.contains("&lt;b&gt;") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains(r#"<li class="event warn""#), "{html}");
    }

    #[test]
    fn query_parameters_have_defaults_bounds_and_clear_errors() {
        let p = |pairs: &[(&str, &str)]| {
            query(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(
            p(&[]).unwrap(),
            journal::Query {
                since: None,
                limit: DEFAULT_LIMIT
            }
        );
        assert_eq!(p(&[("limit", "5000")]).unwrap().limit, MAX_LIMIT);
        assert!(p(&[("limit", "0")]).unwrap_err().contains("limit"));
        assert!(p(&[("limit", "x")]).is_err());
        assert_eq!(p(&[("since", "12")]).unwrap().since, Some(Since::Seq(12)));
        assert!(p(&[("since", "monday")]).unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn the_card_goes_last_in_main_above_the_footer() {
        let html = with_card("<main>\n<p>x</p>\n</main>".into(), "<section/>");
        assert_eq!(html, "<main>\n<p>x</p>\n<section/></main>");
        let html = with_card(
            "<main><p>x</p><footer>f</footer></main>".into(),
            "<section/>",
        );
        assert_eq!(html, "<main><p>x</p><section/><footer>f</footer></main>");
    }

    #[test]
    fn an_unknown_zone_falls_back_to_kolkata() {
        let st = EventsState::new(Journal::disabled(), Some("Mars/Olympus"));
        assert_eq!(st.tz_name, DEFAULT_TIMEZONE);
    }
}
