//! `warden events [--follow] [--json]`: the event history of the running warden, from
//! `GET /api/v1/events`, as lines in warden's configured timezone (or JSON Lines).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::{call, endpoint, ClientError, Endpoint};
use crate::journal::Event;
use jiff::tz::TimeZone;

/// How often `--follow` asks for new events.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// What `--follow` asks for at a time (the API's maximum).
const FOLLOW_BATCH: usize = 1000;
/// Used when warden's answer names no zone this build knows.
const FALLBACK_ZONE: &str = "Asia/Kolkata";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsOptions {
    pub follow: bool,
    pub json: bool,
    /// How many of the newest events to show first.
    pub limit: usize,
    /// Only events after this (a seq or an RFC 3339 time), oldest first.
    pub since: Option<String>,
}

/// One answer of the API: its events (oldest first), whether more matched, the zone.
struct Batch {
    events: Vec<Event>,
    more: bool,
    tz: TimeZone,
}

fn fetch(ep: &Endpoint, since: Option<&str>, limit: usize) -> Result<Batch, ClientError> {
    let mut path = format!("/api/v1/events?limit={limit}");
    if let Some(s) = since {
        path.push_str("&since=");
        path.extend(url::form_urlencoded::byte_serialize(s.as_bytes()));
    }
    let r = call(ep, "GET", &path)?;
    if r.status != 200 {
        return Err(r.refused());
    }
    let v = r.json()?;
    let events = v["events"]
        .as_array()
        .ok_or_else(|| ClientError::Protocol {
            addr: r.addr,
            detail: "GET /api/v1/events has no `events` (a warden older than the event history?)"
                .into(),
        })?
        .iter()
        .filter_map(|e| serde_json::from_value(e.clone()).ok())
        .collect();
    let tz = v["timezone"]
        .as_str()
        .and_then(|z| TimeZone::get(z).ok())
        .or_else(|| TimeZone::get(FALLBACK_ZONE).ok())
        .unwrap_or(TimeZone::UTC);
    Ok(Batch {
        events,
        more: v["more"].as_bool().unwrap_or(false),
        tz,
    })
}

fn render(events: &[Event], json: bool, tz: &TimeZone) -> String {
    let mut out = String::new();
    for e in events {
        let line = if json {
            serde_json::to_string(e).unwrap_or_default()
        } else {
            e.human_line(tz)
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Print, flushed at once (a follower reads as it comes); `false` once stdout is gone.
fn print(text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// Runs until done (or, with `--follow`, until interrupted or stdout closes).
pub fn events(config: &Path, opts: &EventsOptions) -> Result<(), ClientError> {
    let ep = endpoint(config)?;
    let mut last: Option<u64> = None;
    let mut since = opts.since.clone();
    loop {
        let batch = fetch(&ep, since.as_deref(), opts.limit)?;
        if !print(&render(&batch.events, opts.json, &batch.tz)) {
            return Ok(());
        }
        if let Some(e) = batch.events.last() {
            last = Some(e.seq);
        }
        // With `since`, the API pages forward: fetch until the history is exhausted.
        if !(since.is_some() && batch.more) {
            break;
        }
        since = last.map(|s| s.to_string());
    }
    if !opts.follow {
        return Ok(());
    }
    follow(&ep, opts.json, last.unwrap_or(0))
}

fn follow(ep: &Endpoint, json: bool, mut last: u64) -> Result<(), ClientError> {
    let mut away = false;
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        match fetch(ep, Some(&last.to_string()), FOLLOW_BATCH) {
            Ok(batch) => {
                if away {
                    eprintln!("warden: reachable again");
                    away = false;
                }
                if !print(&render(&batch.events, json, &batch.tz)) {
                    return Ok(());
                }
                if let Some(e) = batch.events.last() {
                    last = e.seq;
                }
            }
            // A warden restarting comes back with the same history: keep asking.
            Err(e) => {
                if !away {
                    eprintln!("warden: not reachable ({e}); still trying");
                    away = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn human_lines_use_the_zone_warden_names() {
        let e: Event = serde_json::from_value(serde_json::json!(
            {"seq": 3, "time": "2026-12-07T01:51:03Z", "kind": "program_exited",
             "subject": "backend", "message": "exited with exit code 3 (pid 9)", "code": 3}
        ))
        .unwrap();
        let tz = TimeZone::get("Asia/Kolkata").unwrap();
        assert_eq!(
            render(&[e], false, &tz),
            "2026-12-07 07:21:03 IST  program_exited       backend: exited with exit code 3 (pid 9)\n"
        );
    }

    #[test]
    fn json_lines_are_one_event_each() {
        let mut e = Event::new(crate::journal::Kind::TokenObtained, "kite", "new token");
        e.seq = 1;
        let out = render(&[e.clone(), e], true, &TimeZone::UTC);
        assert_eq!(out.lines().count(), 2);
        for l in out.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["kind"], "token_obtained");
        }
    }
}
