//! Presentation, computed once: the words, durations, countdowns and one-line summaries that
//! the status page, `warden status` / `warden token status` and sdnotify's `STATUS=` show.
//!
//! Pure functions of the model and a clock reading, so every reader says the same thing and
//! each phrase is tested here.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::model::readiness::Readiness;
use crate::model::{ProgramState, ProgramsView, TokenState, TokenStatus};

/// At most this many not-running programs are named in a one-line summary.
const NAMED_PROGRAMS: usize = 3;

/// `5s`, `4m 07s`, `3h 05m`, `2d 4h`: short and stable in width (the page's script ticks the
/// same way). Negative spans read as `0s`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, x) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {x:02}s")
    } else {
        format!("{x}s")
    }
}

/// How long since `since`: an uptime, or how long a program has been in its state.
pub fn elapsed(since: Timestamp, now: Timestamp) -> String {
    human_duration(now.as_second() - since.as_second())
}

/// `in 3h 05m` before `t`, `4m 10s ago` after it.
pub fn countdown(t: Timestamp, now: Timestamp) -> String {
    let left = t.as_second() - now.as_second();
    if left >= 0 {
        format!("in {}", human_duration(left))
    } else {
        format!("{} ago", human_duration(-left))
    }
}

/// `06:00 IST`: a time of day in `tz`, with the zone's abbreviation.
pub fn clock_time(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone()).strftime("%H:%M %Z").to_string()
}

/// `2026-05-01 06:00:00 IST (in 3h 05m)`: a full local time and its countdown.
pub fn when(t: Timestamp, now: Timestamp, tz: &TimeZone) -> String {
    let local = t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M:%S %Z");
    format!("{local} ({})", countdown(t, now))
}

/// A person must log in: the states in which the page offers its login button and the CLI
/// prints the login link.
pub fn login_needed(s: TokenState) -> bool {
    matches!(
        s,
        TokenState::NeedsLogin | TokenState::Expired | TokenState::Unknown
    )
}

/// The token in a few words: `token valid until 06:00 IST`, or
/// `token needs a login: open http://…/login`.
pub fn token_phrase(t: &TokenStatus, tz: &TimeZone, login_url: &str) -> String {
    match t.state {
        TokenState::Valid => match t.expires_at {
            Some(at) => format!("token valid until {}", clock_time(at, tz)),
            None => "token valid".to_string(),
        },
        TokenState::Expired => "token expired".to_string(),
        TokenState::Refreshing => "token refreshing".to_string(),
        TokenState::NeedsLogin => format!("token needs a login: open {login_url}"),
        TokenState::Unknown => "token being checked".to_string(),
    }
}

/// The one-line summary: `3/3 programs running; token valid until 06:00 IST`, or
/// `1/2 programs running (frontend: backoff); token needs a login: open http://…/login`.
pub fn summary_line(
    programs: &ProgramsView,
    token: Option<&TokenStatus>,
    tz: &TimeZone,
    login_url: &str,
) -> String {
    let running = programs
        .values()
        .filter(|p| p.state == ProgramState::Running)
        .count();
    let mut line = if programs.is_empty() {
        "no programs".to_string()
    } else {
        format!("{running}/{} programs running", programs.len())
    };
    let others: Vec<String> = programs
        .values()
        .filter(|p| p.state != ProgramState::Running)
        .map(|p| format!("{}: {}", p.name, p.state.as_str()))
        .collect();
    if !others.is_empty() {
        let mut named = others[..others.len().min(NAMED_PROGRAMS)].join(", ");
        if others.len() > NAMED_PROGRAMS {
            named.push_str(&format!(", +{} more", others.len() - NAMED_PROGRAMS));
        }
        line.push_str(&format!(" ({named})"));
    }
    if let Some(t) = token {
        line.push_str("; ");
        line.push_str(&token_phrase(t, tz, login_url));
    }
    line
}

/// Why `/readyz` says no, one phrase per problem naming the program or the token state, e.g.
/// `backend is running but unhealthy; token is needs_login`.
pub fn not_ready_reason(r: &Readiness<'_>) -> String {
    let mut reasons: Vec<String> = r
        .not_ready
        .iter()
        .map(|p| {
            let health = p.health.as_str();
            match (p.state, !p.health.is_ok()) {
                (ProgramState::Running, _) => format!("{} is running but {health}", p.name),
                (s, true) => format!("{} is {} and {health}", p.name, s.as_str()),
                (s, false) => format!("{} is {}", p.name, s.as_str()),
            }
        })
        .collect();
    if let Some(t) = r.token_blocking {
        reasons.push(format!("token is {}", t.as_str()));
    }
    reasons.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::readiness::readiness;
    use crate::model::{Health, ProgramStatus};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn durations_and_countdowns() {
        assert_eq!(human_duration(-5), "0s");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(247), "4m 07s");
        assert_eq!(human_duration(3 * 3600 + 5 * 60 + 9), "3h 05m");
        assert_eq!(human_duration(2 * 86_400 + 4 * 3600), "2d 4h");
        let now = at("2024-05-01T10:05:07Z");
        assert_eq!(elapsed(at("2024-05-01T10:00:00Z"), now), "5m 07s");
        assert_eq!(countdown(at("2024-05-01T13:10:07Z"), now), "in 3h 05m");
        assert_eq!(countdown(at("2024-05-01T10:00:57Z"), now), "4m 10s ago");
    }

    #[test]
    fn times_in_the_configured_zone() {
        let ist = TimeZone::get("Asia/Kolkata").unwrap();
        let t = at("2025-01-02T00:30:00Z");
        assert_eq!(clock_time(t, &ist), "06:00 IST");
        assert_eq!(
            when(t, at("2025-01-01T21:25:00Z"), &ist),
            "2025-01-02 06:00:00 IST (in 3h 05m)"
        );
    }

    #[test]
    fn readiness_reasons_name_programs_and_the_token() {
        let mut programs = ProgramsView::new();
        for (name, state, health) in [
            ("api", ProgramState::Running, Health::Unhealthy),
            ("web", ProgramState::Backoff, Health::AuthFailed),
            ("job", ProgramState::Fatal, Health::Unknown),
        ] {
            let mut p = ProgramStatus::new(name, Timestamp::UNIX_EPOCH);
            p.state = state;
            p.health = health;
            programs.insert(name.into(), p);
        }
        let r = readiness(&programs, Some(TokenState::NeedsLogin));
        assert_eq!(
            not_ready_reason(&r),
            "api is running but unhealthy; job is fatal; web is backoff and auth_failed; \
             token is needs_login"
        );
    }
}
