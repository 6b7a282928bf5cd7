//! The status page's "Market hours" card: open or closed, and per token a strip of the last 7
//! trading days (green when no second was lost while the market was open, else how long).

use std::fmt::Write as _;

use super::page::escape;
use crate::market::continuity::{DayVerdict, StripDay};
use crate::market::tracker::MarketView;

pub fn render(out: &mut String, m: &MarketView) {
    let state = match (m.open, m.next_close, m.next_open) {
        (true, Some(close), _) => format!("open · closes {}", local_time(close, &m.timezone)),
        (true, None, _) => "open".to_string(),
        (false, _, Some(open)) => format!("closed · opens {}", local_time(open, &m.timezone)),
        (false, _, None) => "closed".to_string(),
    };
    let _ = write!(
        out,
        r#"<section class="card" id="market" data-open="{}"><h2>Market hours <span class="count">{}</span></h2>"#,
        m.open,
        escape(&state)
    );
    if m.tokens.is_empty() {
        out.push_str(r#"<p class="mute-text">No token to follow.</p></section>"#);
        return;
    }
    for (name, t) in &m.tokens {
        let name = escape(name);
        let _ = write!(
            out,
            r#"<div class="strip" data-token="{name}"><div class="strip-name">{name} · last {} trading days</div><ol class="days">"#,
            t.strip.len()
        );
        for day in &t.strip {
            cell(out, day);
        }
        out.push_str("</ol></div>");
    }
    out.push_str(
        r#"<p class="hint">One cell per trading day: ✓ valid all session, red: time not valid while open, grey: not watched.</p></section>"#,
    );
}

fn cell(out: &mut String, day: &StripDay) {
    let (class, text, title) = match day.verdict {
        DayVerdict::Ok => ("ok", "✓".to_string(), "valid while open".to_string()),
        DayVerdict::Lost => (
            "lost",
            short_duration(day.invalid_seconds),
            format!("{} s not valid while open", day.invalid_seconds),
        ),
        DayVerdict::Unwatched => ("unwatched", "–".to_string(), "not watched".to_string()),
    };
    let label = day.date.strftime("%a %-d");
    let _ = write!(
        out,
        r#"<li class="day {class}" data-date="{}" data-verdict="{class}" data-invalid-seconds="{}" title="{} {}: {title}"><span class="dname">{label}</span><span class="dval">{text}</span></li>"#,
        day.date, day.invalid_seconds, day.date, label
    );
}

/// Fits a cell at phone width: `45s`, `12m`, `1h05`.
fn short_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        _ => format!("{}h{:02}", secs / 3600, secs % 3600 / 60),
    }
}

fn local_time(t: jiff::Timestamp, tz: &str) -> String {
    let zone = jiff::tz::TimeZone::get(tz).unwrap_or(jiff::tz::TimeZone::UTC);
    t.to_zoned(zone).strftime("%a %H:%M %Z").to_string()
}

pub const STYLE: &str = r#"
.strip{margin-top:8px}.strip-name{font-weight:600;font-size:.9rem;margin-bottom:4px}
.days{list-style:none;margin:0;padding:0;display:grid;grid-template-columns:repeat(7,1fr);gap:4px}
.day{border-radius:6px;padding:4px 2px;text-align:center;font-size:.75rem;line-height:1.3;font-variant-numeric:tabular-nums;min-width:0}
.day .dname{display:block;color:var(--mute);white-space:nowrap}.day .dval{display:block;font-weight:700;white-space:nowrap}
.day.ok{background:var(--ok-bg);color:var(--ok)}.day.lost{background:var(--bad-bg);color:var(--bad)}
.day.unwatched{background:var(--bg);color:var(--mute)}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::tracker::TokenContinuity;

    #[test]
    fn cells_say_green_lost_or_unwatched() {
        let strip = [
            (jiff::civil::date(2026, 12, 3), DayVerdict::Unwatched, 0),
            (jiff::civil::date(2026, 12, 4), DayVerdict::Ok, 0),
            (jiff::civil::date(2026, 12, 7), DayVerdict::Lost, 150),
        ]
        .map(|(date, verdict, invalid_seconds)| StripDay {
            date,
            verdict,
            invalid_seconds,
            watched_seconds: 22_500,
        })
        .to_vec();
        let mut view = MarketView {
            open: true,
            timezone: "Asia/Kolkata".into(),
            next_close: Some("2026-12-07T10:00:00Z".parse().unwrap()),
            ..MarketView::default()
        };
        view.tokens.insert(
            "kite".into(),
            TokenContinuity {
                invalid_market_seconds_total: 150.0,
                strip,
            },
        );
        let mut html = String::new();
        render(&mut html, &view);
        assert!(html.contains("open · closes Mon 15:30 IST"), "{html}");
        assert!(html.contains(r#"data-date="2026-12-04" data-verdict="ok""#));
        assert!(html.contains(r#"data-verdict="lost" data-invalid-seconds="150""#));
        assert!(html.contains(r#"<span class="dval">2m</span>"#));
        assert!(html.contains(r#"data-verdict="unwatched""#));
    }

    #[test]
    fn short_durations_fit_a_cell() {
        assert_eq!(short_duration(45), "45s");
        assert_eq!(short_duration(150), "2m");
        assert_eq!(short_duration(3900), "1h05");
    }
}
