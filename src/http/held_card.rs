//! The status page's "Held notifications" card: what quiet hours (or a non-trading day) keep
//! back, and until when. Absent when nothing is held.

use std::fmt::Write as _;

use super::page::escape;
use crate::model::HeldNotification;

pub fn render(out: &mut String, held: &[HeldNotification]) {
    if held.is_empty() {
        return;
    }
    let _ = write!(
        out,
        r#"<section class="card" id="held"><h2>Held notifications <span class="count">{}</span></h2><ul class="held">"#,
        held.len()
    );
    for h in held {
        let why = match h.reason {
            "not_a_trading_day" => "not a trading day",
            _ => "quiet hours",
        };
        let times = if h.count > 1 {
            format!("; {} times", h.count)
        } else {
            String::new()
        };
        let _ = write!(
            out,
            r#"<li data-event="{}"><strong>held until {}</strong>: {} <span class="mute-text">({why}{times})</span></li>"#,
            escape(h.event),
            escape(&h.send_at_local),
            escape(&h.summary),
        );
    }
    out.push_str("</ul></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_held_event_with_its_time() {
        let mut out = String::new();
        render(&mut out, &[]);
        assert!(out.is_empty());
        let h = HeldNotification {
            event: "token_needs_login",
            token: Some("kite".into()),
            program: None,
            summary: "token kite needs a login: <manual>".into(),
            held_since: "2026-12-07T17:40:00Z".parse().unwrap(),
            send_at: "2026-12-08T01:30:00Z".parse().unwrap(),
            send_at_local: "Tue 07:00 IST".into(),
            reason: "quiet_hours",
            count: 2,
        };
        render(&mut out, &[h]);
        assert!(out.contains(r#"<li data-event="token_needs_login"><strong>held until Tue 07:00 IST</strong>: token kite needs a login: &lt;manual&gt; <span class="mute-text">(quiet hours; 2 times)</span></li>"#), "{out}");
    }
}
