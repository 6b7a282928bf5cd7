//! The event history (issue 16, README "Event history"): `{state_dir}/events.jsonl` written by
//! the real binary, read back through `GET /api/v1/events`, `warden events` and the status
//! page (in headless Chromium at phone width).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn events(w: &Warden, query: &str) -> Value {
    get_json(&w.addr, &format!("/api/v1/events{query}"))
}

/// Every event in the history (both files), oldest first, paged through with `since`.
fn all_events(w: &Warden) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let since = all.last().map_or(0, |e| e["seq"].as_u64().unwrap());
        let page = events(w, &format!("?since={since}&limit=1000"));
        all.extend(page["events"].as_array().unwrap().iter().cloned());
        if page["more"] != true {
            return all;
        }
    }
}

fn find<'a>(evs: &'a [Value], kind: &str, subject: &str) -> Option<&'a Value> {
    evs.iter()
        .find(|e| e["kind"] == kind && e["subject"] == subject)
}

/// Wait until an event of `kind` about `subject` is listed; returns it.
fn wait_event(w: &Warden, kind: &str, subject: &str) -> Value {
    let mut found = Value::Null;
    wait_until(&format!("a {kind} event for {subject}"), T, || {
        match find(&all_events(w), kind, subject) {
            Some(e) => {
                found = e.clone();
                true
            }
            None => false,
        }
    });
    found
}

fn journal_text(state_dir: &Path) -> String {
    let mut text = std::fs::read_to_string(state_dir.join("events.jsonl.1")).unwrap_or_default();
    text.push_str(&std::fs::read_to_string(state_dir.join("events.jsonl")).unwrap_or_default());
    text
}

#[test]
fn exits_by_code_and_by_signal_survive_a_restart_of_warden() {
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        r#"[supervisor]
state_dir = "{}"

[programs.coded]
command = ["sh", "-c", "exit 3"]
restart = "never"

[programs.killed]
command = ["sh", "-c", "kill -9 $$$$"]  # $$ is a literal $ in the config
restart = "never"
"#,
        state.path().display()
    );
    let mut first = Warden::start(&config);
    let coded = wait_event(&first, "program_exited", "coded");
    assert_eq!(coded["code"], 3, "{coded}");
    assert!(coded.get("signal").is_none(), "{coded}");
    assert!(coded["pid"].as_i64().unwrap() > 0);
    let killed = wait_event(&first, "program_exited", "killed");
    assert_eq!(killed["signal"], "SIGKILL", "{killed}");
    assert!(killed.get("code").is_none(), "{killed}");
    wait_event(&first, "program_started", "coded");
    // Times are RFC 3339.
    let t = coded["time"].as_str().unwrap();
    assert!(t.parse::<jiff::Timestamp>().is_ok(), "{t}");

    first.signal(libc::SIGTERM);
    assert!(first.wait_exit(T).success());
    let before = journal_text(state.path());
    assert!(before.contains("\"warden_stopping\""), "{before}");

    let second = Warden::start(&config);
    wait_until("the second warden's start in the history", T, || {
        all_events(&second)
            .iter()
            .filter(|e| e["kind"] == "warden_started")
            .count()
            == 2
    });
    let evs = all_events(&second);
    // The first run's events are still listed, and numbering went on from them.
    let old = find(&evs, "program_exited", "killed").expect("the first run's exit");
    let starts: Vec<u64> = evs
        .iter()
        .filter(|e| e["kind"] == "warden_started")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(old["seq"].as_u64().unwrap() < starts[1], "{evs:?}");
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

/// One synthetic event line (as an older warden would have written it), `pad` spaces longer.
fn line(seq: u64, pad: usize) -> String {
    format!(
        "{{\"seq\":{seq},\"time\":\"2026-01-05T04:00:00Z\",\"kind\":\"program_started\",\"subject\":\"old\",\"message\":\"started{}\",\"pid\":{seq}}}\n",
        " ".repeat(pad)
    )
}

#[test]
fn rotation_keeps_the_history_bounded_and_both_files_are_read() {
    const MIB: usize = 1 << 20;
    let mut last = 0;
    let w = Warden::start_with(
        "[programs.idle]\ncommand = [\"sleep\", \"300\"]\n",
        |dir| {
            // A journal just short of the 1 MiB limit: warden's first event rotates it.
            let state = dir.join(".warden");
            std::fs::create_dir(&state).unwrap();
            std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            let mut text = String::new();
            while text.len() + line(last + 1, 0).len() < MIB - 400 {
                last += 1;
                text.push_str(&line(last, 0));
            }
            // The last line fills the file to 20 bytes short: any event is longer.
            last += 1;
            let short = MIB - 20 - text.len() - line(last, 0).len();
            text.push_str(&line(last, short));
            assert_eq!(text.len(), MIB - 20);
            std::fs::write(state.join("events.jsonl"), text).unwrap();
        },
        Vec::new(),
    );
    let state = w.dir.path().join(".warden");
    wait_event(&w, "program_started", "idle");
    let rotated = std::fs::metadata(state.join("events.jsonl.1"))
        .unwrap()
        .len() as usize;
    let current = std::fs::metadata(state.join("events.jsonl")).unwrap().len() as usize;
    assert_eq!(rotated, MIB - 20);
    assert!(
        current < 4096,
        "the new file holds only the new events: {current}"
    );

    // ?limit: the newest, oldest first, from the new file; more were left.
    let newest = events(&w, "?limit=2");
    let evs = newest["events"].as_array().unwrap();
    assert_eq!(evs.len(), 2);
    assert_eq!(newest["more"], true);
    assert!(evs[0]["seq"].as_u64() < evs[1]["seq"].as_u64());
    assert!(evs[1]["seq"].as_u64().unwrap() > last);
    // ?since=seq crosses from the previous file into the new one.
    let across = events(&w, &format!("?since={}&limit=3", last - 2));
    let seqs: Vec<u64> = across["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [last - 1, last, last + 1], "{across}");
    assert_eq!(across["events"][0]["subject"], "old");
    assert_eq!(across["events"][2]["kind"], "warden_started");
    // ?since=time: only what happened after it (the synthetic events are from January).
    let recent = events(&w, "?since=2026-01-05T09:30:00%2B05:30&limit=1000");
    let recent = recent["events"].as_array().unwrap();
    assert!(!recent.is_empty() && recent.iter().all(|e| e["subject"] != "old"));
    // The default limit is 100; the oldest of the previous file are still there.
    assert_eq!(events(&w, "")["events"].as_array().unwrap().len(), 100);
    assert_eq!(events(&w, "?since=0&limit=1")["events"][0]["seq"], 1);
    // Bad parameters say what is expected.
    let (code, body) = http(&w.addr, "GET", "/api/v1/events?since=yesterday", &[], "");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("RFC 3339"), "{body}");
    let (code, body) = http(&w.addr, "GET", "/api/v1/events?limit=0", &[], "");
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        events(&w, "?limit=5000")["events"]
            .as_array()
            .unwrap()
            .len(),
        1000
    );
}

#[test]
fn a_rejected_reload_and_an_accepted_one_are_recorded() {
    let w = Warden::start("[programs.a]\ncommand = [\"sleep\", \"300\"]\n");
    wait_event(&w, "program_started", "a");
    w.write_config("[programs.a]\ncommand = [\"sleep\", \"300\"]\nrestrat = \"always\"\n");
    let rejected = wait_event(&w, "config_rejected", "config");
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("programs.a.restrat"),
        "{rejected}"
    );
    w.write_config(
        "[programs.a]\ncommand = [\"sleep\", \"300\"]\n[programs.b]\ncommand = [\"sleep\", \"300\"]\n",
    );
    let reloaded = wait_event(&w, "config_reloaded", "config");
    assert!(
        reloaded["message"].as_str().unwrap().contains("added b"),
        "{reloaded}"
    );
    wait_event(&w, "program_started", "b");
}

#[test]
fn a_token_refresh_against_the_sandbox_is_recorded_without_secrets() {
    let kite = KiteSandbox::start(&[]);
    // The first automated login meets a broker outage: one failure, then a retry.
    kite.fault(r#"{"path": "/api/login", "status": 503, "count": 1}"#);
    let w = Warden::start(&kite.backend_stack_config("totp", SANDBOX_TOTP, "signal"));
    let failed = wait_event(&w, "token_refresh_failed", "kite");
    assert!(failed["reason"].as_str().is_some(), "{failed}");
    let obtained = wait_event(&w, "token_obtained", "kite");
    assert_eq!(obtained["source"], "totp", "{obtained}");
    wait_until("token valid", T, || w.status()["token"]["state"] == "valid");
    let first_token = w.env_token();

    // The broker kills the token: the backend's probe says so, warden validates, refreshes.
    kite.expire();
    wait_event(&w, "token_invalid", "kite");
    wait_until("a second token_obtained", T, || {
        all_events(&w)
            .iter()
            .filter(|e| e["kind"] == "token_obtained")
            .count()
            == 2
    });
    wait_until("the new token in .env", T, || {
        let t = w.env_token();
        !t.is_empty() && t != first_token
    });

    let text = journal_text(&w.dir.path().join(".warden"));
    for secret in [
        first_token.as_str(),
        w.env_token().as_str(),
        kite.printed("password"),
        kite.printed("totp_secret"),
        kite.printed("api_secret"),
    ] {
        assert!(!secret.is_empty());
        assert!(!text.contains(secret), "a secret in events.jsonl:\n{text}");
    }
}

#[test]
fn the_cli_prints_json_lines_and_follows_new_events() {
    // The CLI finds warden through the config: a fixed port.
    let w = Warden::start(&format!(
        "[http]\nlisten = \"127.0.0.1:{}\"\n[programs.a]\ncommand = [\"sleep\", \"300\"]\n",
        free_port()
    ));
    wait_event(&w, "program_started", "a");

    let out = warden_cli(&["events", "--json"], &w.config);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert!(
        find(&lines, "warden_started", "warden").is_some(),
        "{lines:?}"
    );
    assert!(find(&lines, "program_started", "a").is_some(), "{lines:?}");

    // Human lines: in the default zone (no [token]): Asia/Kolkata.
    let out = warden_cli(&["events"], &w.config);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(" IST  program_started") && l.contains(" a: started (pid ")),
        "{text}"
    );

    let mut follower = Command::new(BIN)
        .args(["events", "--follow", "--json", "-c"])
        .arg(&w.config)
        .env_remove("WARDEN_API_TOKEN")
        .env_remove("WARDEN_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_channel(follower.stdout.take().unwrap());
    // The history so far comes first...
    let deadline = std::time::Instant::now() + T;
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("\"program_started\""))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        seen.push(lines.recv_timeout(left).expect("the history so far"));
    }
    // ...then what happens while following.
    let (code, body) = http(&w.addr, "POST", "/api/v1/programs/a/restart", &[], "");
    assert_eq!(code, 202, "{body}");
    let restarted = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let l = lines
            .recv_timeout(left)
            .expect("a new event while following");
        let v: Value = serde_json::from_str(&l).unwrap();
        if v["kind"] == "program_restarted" {
            break v;
        }
    };
    assert_eq!(restarted["reason"], "manual", "{restarted}");
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn the_status_page_lists_events_newest_first_at_phone_width() {
    let name = "the_status_page_lists_events_newest_first_at_phone_width";
    if which("chromium").is_none() || which("chromedriver").is_none() {
        skip(
            name,
            "chromium/chromedriver not on PATH (apt-get install chromium chromium-driver)",
        );
        return;
    }
    let w = Warden::start(
        "[programs.crashy]\ncommand = [\"sh\", \"-c\", \"exit 4\"]\nrestart = \"never\"\n",
    );
    wait_event(&w, "program_exited", "crashy");
    let evs = all_events(&w);
    let b = Browser::start().expect("checked above");
    b.emulate_phone(390, 844);
    b.go(&format!("http://{}/", w.addr));
    b.find("#events li.event");
    let rows = b.eval(
        r#"return Array.from(document.querySelectorAll('#events li.event')).map(function(li){
             return {seq: Number(li.dataset.seq), kind: li.dataset.kind,
                     time: li.querySelector('time').textContent, text: li.textContent};});"#,
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), evs.len().min(20), "{rows:?}");
    let seqs: Vec<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|p| p[0] > p[1]),
        "newest first: {seqs:?}"
    );
    assert_eq!(rows[0]["kind"], evs.last().unwrap()["kind"]);
    let exit = rows
        .iter()
        .find(|r| r["kind"] == "program_exited")
        .expect("the exit on the page");
    assert!(
        exit["text"].as_str().unwrap().contains("exit code 4"),
        "{exit}"
    );
    // Times in the configured zone (Asia/Kolkata by default), as the server wrote them.
    let t: jiff::Timestamp = evs.last().unwrap()["time"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let local = t
        .to_zoned(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap())
        .strftime("%H:%M:%S")
        .to_string();
    assert!(
        rows[0]["time"].as_str().unwrap().contains(&local),
        "{rows:?}"
    );
    let heading = b.text(&b.find("#events h2"));
    assert!(heading.contains("IST"), "{heading}");
    // Phone width: nothing wider than the screen.
    let widths = b.eval(
        "return [document.documentElement.scrollWidth, window.innerWidth, \
         document.querySelector('#events').getBoundingClientRect().right];",
    );
    let (scroll, inner, right) = (
        widths[0].as_f64().unwrap(),
        widths[1].as_f64().unwrap(),
        widths[2].as_f64().unwrap(),
    );
    assert!(inner <= 400.0, "the window is phone-sized: {widths}");
    assert!(scroll <= inner && right <= inner, "{widths}");
    let above_footer = b.eval(
        "return !!(document.querySelector('#events').compareDocumentPosition(\
         document.querySelector('footer')) & Node.DOCUMENT_POSITION_FOLLOWING);",
    );
    assert_eq!(
        above_footer, true,
        "the events card comes before the footer"
    );
    b.screenshot("events-390.png");
}

/// A webhook receiver: answers every request 200 and counts them.
fn webhook_sink() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 8192];
            // The request is small: headers and a JSON body arrive in a read or two.
            let _ = conn.read(&mut buf);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (addr, hits)
}

#[test]
fn a_fatal_program_and_its_notifications_sent_and_failed_are_recorded() {
    let (hook, hits) = webhook_sink();
    // Nothing listens there: the Telegram delivery fails.
    let dead = free_port();
    let bot_token = "123456:events-test-bot-token";
    let w = Warden::start(&format!(
        r#"[notify]
webhook_url = "http://{hook}/hook"
telegram_bot_token = "{bot_token}"
telegram_chat_id = "42"
telegram_api_base = "http://127.0.0.1:{dead}"

[programs.flaky]
command = ["sh", "-c", "exit 1"]
backoff_initial = "10ms"
max_restarts = 1
restart_window = "1m"
"#
    ));
    let fatal = wait_event(&w, "program_fatal", "flaky");
    assert!(
        fatal["message"]
            .as_str()
            .unwrap()
            .contains("warden restart flaky"),
        "{fatal}"
    );
    let restarted = wait_event(&w, "program_restarted", "flaky");
    assert_eq!(restarted["reason"], "exit", "{restarted}");
    let sent = wait_event(&w, "notification_sent", "flaky");
    assert_eq!(sent["channel"], "webhook", "{sent}");
    assert!(
        sent["message"].as_str().unwrap().contains("program_fatal"),
        "{sent}"
    );
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let failed = wait_event(&w, "notification_failed", "flaky");
    assert_eq!(failed["channel"], "telegram", "{failed}");
    let text = journal_text(&w.dir.path().join(".warden"));
    assert!(
        !text.contains(bot_token),
        "the bot token in events.jsonl:\n{text}"
    );
}

/// A throwaway redis-server on loopback (killed on drop); `None` after a visible skip.
struct Redis(std::process::Child, u16);

impl Redis {
    fn start(test: &str) -> Option<Redis> {
        if which("redis-server").is_none() {
            skip(
                test,
                "redis-server is not installed (apt-get install redis-server)",
            );
            return None;
        }
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let r = Redis(child, port);
        wait_until("redis answers PING", Duration::from_secs(10), || {
            use std::io::{Read, Write};
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let mut buf = [0u8; 16];
            s.write_all(b"PING\r\n").is_ok()
                && s.read(&mut buf)
                    .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
        });
        Some(r)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn fleet_leadership_changes_are_recorded_on_leader_and_follower() {
    let Some(redis) = Redis::start("fleet_leadership_changes_are_recorded_on_leader_and_follower")
    else {
        return;
    };
    let kite = KiteSandbox::start(&[]);
    let config = kite
        .backend_stack_config("totp", SANDBOX_TOTP, "signal")
        .replace(
            "verify_timeout = \"5s\"\n",
            &format!(
                "verify_timeout = \"10s\"\n[token.store]\nkind = \"redis\"\n\
                 url = \"redis://127.0.0.1:{}\"\nkey_prefix = \"events:\"\nlock_ttl = \"3s\"\n",
                redis.1
            ),
        );
    let mut wardens = vec![Warden::start(&config), Warden::start(&config)];
    let role = |w: &Warden| w.status()["token"]["store"]["role"].clone();
    wait_until("a leader and a follower", T, || {
        let roles: Vec<Value> = wardens.iter().map(role).collect();
        roles.contains(&"leader".into()) && roles.contains(&"follower".into())
    });
    let leader = wardens.iter().position(|w| role(w) == "leader").unwrap();
    let leader_id = wardens[leader].status()["token"]["store"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let led = wait_event(&wardens[leader], "fleet_leader", "fleet");
    assert!(
        led["message"]
            .as_str()
            .unwrap()
            .contains("leads the fleet now"),
        "{led}"
    );
    let follower = &wardens[1 - leader];
    let followed = wait_event(follower, "fleet_leader", "fleet");
    assert_eq!(
        followed["message"],
        format!("following the fleet leader {leader_id}"),
        "{followed}"
    );

    // The leader stops (and hands the lock over at once): the follower leads.
    let mut old = wardens.remove(leader);
    old.signal(libc::SIGTERM);
    assert!(old.wait_exit(T).success());
    let survivor = &wardens[0];
    wait_until("the survivor records that it leads", T, || {
        all_events(survivor).iter().any(|e| {
            e["kind"] == "fleet_leader"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .contains("leads the fleet now")
        })
    });
}

#[test]
fn a_journal_that_cannot_be_written_is_reported_once_and_holds_nothing_up() {
    let w = Warden::start_with(
        "[programs.a]\ncommand = [\"sleep\", \"300\"]\n\
         [programs.blip]\ncommand = [\"true\"]\nrestart = \"always\"\nbackoff_initial = \"50ms\"\n",
        |dir| {
            // A directory where the journal file should be: every write fails.
            let state = dir.join(".warden");
            std::fs::create_dir(&state).unwrap();
            std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            std::fs::create_dir(state.join("events.jsonl")).unwrap();
        },
        Vec::new(),
    );
    w.wait_state("a", "running", T);
    // blip keeps exiting and restarting: many events, each write failing.
    wait_until("blip restarted a few times", T, || {
        w.program("blip")["restarts"].as_u64().unwrap_or(0) >= 3
    });
    w.wait_log("event history: cannot write", T);
    assert_eq!(
        w.logs().matches("event history: cannot write").count(),
        1,
        "{}",
        w.logs()
    );
    let (code, _) = http(&w.addr, "GET", "/healthz", &[], "");
    assert_eq!(code, 200);
    let (code, body) = http(&w.addr, "GET", "/api/v1/events", &[], "");
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("events.jsonl"), "{body}");
    let (code, page) = http(&w.addr, "GET", "/", &[], "");
    assert_eq!(code, 200);
    assert!(page.contains(r#"id="events""#) && page.contains("cannot read the event history"));
}
