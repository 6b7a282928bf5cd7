//! Notifications that respect sleep, with the real binary: quiet hours computed from the
//! current time (in UTC), a login-needed event from a manual-login warden against the sandbox
//! Kite, and a webhook sink on a local HTTP server that records when each POST arrived.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// A webhook receiver: every POST body with the wall-clock time it arrived.
struct Sink {
    url: String,
    got: Arc<Mutex<Vec<(SystemTime, Value)>>>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    line.clear();
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_ok() {
                    let at = SystemTime::now();
                    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    sink.lock().unwrap().push((at, json));
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        Sink { url, got }
    }

    fn received(&self) -> Vec<(SystemTime, Value)> {
        self.got.lock().unwrap().clone()
    }
}

/// `HH:MM:SS` in UTC of `secs` since the epoch.
fn clock(secs: u64) -> String {
    let s = secs % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rfc3339(secs: u64) -> String {
    jiff::Timestamp::from_second(secs as i64)
        .unwrap()
        .to_string()
}

fn notify_section(sink: &Sink, quiet: &str) -> String {
    // The market's one session is half a day away: a login-needed event is sent at once from
    // `lead` (90 min) before a session until it closes, which must not decide these tests.
    let open_min = ((now_secs() / 60 + 12 * 60) % (24 * 60)).min(24 * 60 - 2);
    let hm = |m: u64| format!("{:02}:{:02}", m / 60, m % 60);
    format!(
        "[notify]\nwebhook_url = \"{}\"\nquiet_hours = \"{quiet}\"\ntimezone = \"UTC\"\n\
         [market]\ntimezone = \"UTC\"\nopen = \"{}\"\nclose = \"{}\"\n",
        sink.url,
        hm(open_min),
        hm(open_min + 1)
    )
}

fn held(w: &Warden) -> Vec<Value> {
    w.status()["held_notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A manual-login warden on the sandbox Kite (the token needs a login at once), with `notify`.
fn start(notify: &str) -> (Warden, KiteSandbox) {
    let port = free_port();
    let kite = KiteSandbox::with().redirect_to_warden(port).start();
    let warden = Warden::start(&format!(
        "{}\n{notify}",
        kite.warden_config(port, "manual", None)
    ));
    (warden, kite)
}

#[test]
fn a_login_needed_in_quiet_hours_is_held_resolved_by_a_login_and_survives_a_restart() {
    let sink = Sink::start();
    let now = now_secs();
    let end = now + 2 * 3600;
    let quiet = format!("{}-{}", clock(now - 3600), clock(end));
    let (w, _kite) = start(&notify_section(&sink, &quiet));

    wait_until("token needs_login", T, || {
        w.status()["token"]["state"] == "needs_login"
    });
    wait_until("the login-needed event held", T, || {
        held(&w).iter().any(|h| h["event"] == "token_needs_login")
    });
    let h = held(&w)[0].clone();
    assert_eq!(h["token"], "kite", "{h}");
    assert_eq!(h["reason"], "quiet_hours", "{h}");
    assert_eq!(h["send_at"], rfc3339(end), "{h}");
    assert!(
        h["summary"].as_str().unwrap().contains("needs a login"),
        "{h}"
    );
    let page = http(&w.addr, "GET", "/", &[], "").1;
    assert!(
        page.contains(r#"<section class="card" id="held">"#),
        "{page}"
    );
    assert!(page.contains("<strong>held until "), "{page}");
    // The decision is taken when the event happens: had it been sent, it would be here by now.
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.received().is_empty(), "{:?}", sink.received());

    // The login ends the problem: the held message goes, the good news waits in its place.
    let totp = warden::sandbox::kite::current_totp(SANDBOX_TOTP).unwrap();
    assert_eq!(manual_login(&w.addr, &totp).status, 302);
    wait_until("token valid", T, || w.status()["token"]["state"] == "valid");
    wait_until("only the good news held", T, || {
        let h = held(&w);
        h.len() == 1 && h[0]["event"] == "token_refreshed"
    });
    w.wait_log("held notification dropped: token kite is valid again", T);
    assert!(sink.received().is_empty(), "{:?}", sink.received());

    // Across a restart (here: another warden on the same state directory, without quiet
    // hours), the held event is kept and goes out at once.
    let file = w.dir.path().join(".warden/notify-held.json");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("token_refreshed"), "{saved}");
    let mut w = w;
    w.signal(libc::SIGTERM);
    assert!(w.wait_exit(T).success());
    let w2 = Warden::start_with(
        &format!("[notify]\nwebhook_url = \"{}\"\n", sink.url),
        |dir| {
            std::fs::create_dir_all(dir.join(".warden")).unwrap();
            std::fs::write(dir.join(".warden/notify-held.json"), &saved).unwrap();
        },
        Vec::new(),
    );
    wait_until("the held event delivered after the restart", T, || {
        !sink.received().is_empty()
    });
    let got = sink.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let body = &got[0].1;
    assert_eq!(body["event"], "token_refreshed");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("token kite") && text.contains("(held since "),
        "{text}"
    );
    wait_until("nothing held any more", T, || held(&w2).is_empty());
    assert!(!w2.dir.path().join(".warden/notify-held.json").exists());
}

#[test]
fn a_held_notification_goes_out_when_quiet_hours_end_and_not_before() {
    let sink = Sink::start();
    let port = free_port();
    let kite = KiteSandbox::with().redirect_to_warden(port).start();
    // Quiet hours from an hour ago until 15 s from now, to the second.
    let now = now_secs();
    let end = now + 15;
    let quiet = format!("{}-{}", clock(now - 3600), clock(end));
    let w = Warden::start(&format!(
        "{}\n{}",
        kite.warden_config(port, "manual", None),
        notify_section(&sink, &quiet)
    ));
    wait_until("the login-needed event held", T, || {
        held(&w).iter().any(|h| h["event"] == "token_needs_login")
    });
    let seen_held = SystemTime::now();
    assert!(
        seen_held < UNIX_EPOCH + Duration::from_secs(end),
        "warden took too long to start: the window had opened before the event"
    );
    assert_eq!(held(&w)[0]["send_at"], rfc3339(end));

    wait_until(
        "the held event delivered",
        Duration::from_secs(15 + 20),
        || !sink.received().is_empty(),
    );
    let got = sink.received();
    let (arrived, body) = &got[0];
    assert!(
        *arrived >= UNIX_EPOCH + Duration::from_secs(end),
        "arrived {arrived:?}, before the window opened at {end}"
    );
    assert_eq!(body["event"], "token_needs_login");
    assert_eq!(
        body["login_url"],
        format!("http://127.0.0.1:{port}/login"),
        "{body}"
    );
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("token kite needs a person to log in")
            && text.contains("(held since ")
            && text.contains("quiet hours"),
        "{text}"
    );
    wait_until("nothing held any more", T, || held(&w).is_empty());
}
