//! Fleet mode (`token.store.kind = "redis"`): several real wardens, one real sandbox Kite, one
//! real redis-server. Each warden runs its own sandbox backend from its own directory.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const LOCK_TTL_SECS: u64 = 3;

/// A throwaway redis-server on loopback, without persistence.
struct Redis {
    child: Option<Child>,
    port: u16,
    extra: Vec<String>,
    /// TLS only: ready once the port accepts connections.
    tls: bool,
}

impl Redis {
    /// `None` (after a visible SKIP) when redis-server is not installed.
    fn start(test: &str) -> Option<Redis> {
        Redis::start_with(test, &[])
    }

    fn start_with(test: &str, extra: &[&str]) -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            skip(
                test,
                "redis-server is not installed (apt-get install redis-server)",
            );
            return None;
        }
        let mut r = Redis {
            child: None,
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls: false,
        };
        r.restart();
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A TLS-only redis-server with a certificate from a private CA made for this test (in
    /// `dir`); `None` after a SKIP when openssl or TLS support is missing.
    fn start_tls(test: &str, dir: &std::path::Path) -> Option<Redis> {
        let openssl = |args: &[&str]| {
            Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        let made = openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=warden-test-ca",
        ]) && openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]) && openssl(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        if !made {
            skip(
                test,
                "openssl could not make a test CA (apt-get install openssl)",
            );
            return None;
        }
        let file = |n: &str| dir.join(n).display().to_string();
        let mut r = Redis::start_with(
            test,
            &[
                "--tls-cert-file",
                &file("srv.crt"),
                "--tls-key-file",
                &file("srv.key"),
                "--tls-ca-cert-file",
                &file("ca.crt"),
                "--tls-auth-clients",
                "no",
            ],
        )?;
        // Same port, TLS only: the plain-text PING above proved the server runs.
        r.stop();
        r.extra.extend([
            "--tls-port".into(),
            r.port.to_string(),
            "--port".into(),
            "0".into(),
        ]);
        r.tls = true;
        r.restart();
        Some(r)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        if self.tls {
            wait_until("redis listens", Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            });
            return;
        }
        wait_until("redis answers PING", Duration::from_secs(10), || {
            // A password-protected server answers -NOAUTH: up all the same.
            self.command("PING")
                .is_some_and(|r| r.starts_with("+PONG") || r.starts_with("-NOAUTH"))
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One inline command; the raw reply.
    fn command(&self, cmd: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).to_string())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The token-cycle stack (one demo backend per warden) plus the shared store.
fn fleet_config(kite: &KiteSandbox, redis: &str, login: &str) -> String {
    kite.backend_stack_config(login, SANDBOX_TOTP, "signal")
        .replace(
            "verify_timeout = \"5s\"\n",
            &format!(
                "verify_timeout = \"10s\"\n[token.store]\nkind = \"redis\"\nurl = \"{redis}\"\n\
                 key_prefix = \"test:\"\nlock_ttl = \"{LOCK_TTL_SECS}s\"\n"
            ),
        )
        // Backends stay unhealthy through a store outage; that must not restart them.
        .replace("failure_threshold = 5", "failure_threshold = 1000")
}

fn store(w: &Warden) -> Value {
    w.status()["token"]["store"].clone()
}

fn leaders(ws: &[&Warden]) -> Vec<usize> {
    ws.iter()
        .enumerate()
        .filter(|(_, w)| store(w)["role"] == "leader")
        .map(|(i, _)| i)
        .collect()
}

fn all_healthy_on_one_token(ws: &[&Warden]) -> bool {
    let first = ws[0].env_token();
    !first.is_empty()
        && ws.iter().all(|w| {
            w.env_token() == first
                && w.status()["token"]["state"] == "valid"
                && w.program("backend")["health"] == "healthy"
        })
}

/// `wait_until`, but a timeout shows every warden's log first.
fn wait_fleet(ws: &[&Warden], what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            for (i, w) in ws.iter().enumerate() {
                eprintln!("--- warden {i} ---\n{}", w.logs());
            }
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sessions(kite: &KiteSandbox) -> u64 {
    kite.stats()["sessions_created"].as_u64().unwrap()
}

/// Kite refuses a TOTP code twice and warden never resubmits one, so each automated login
/// needs its own 30 s step: tests that log in twice take that long.
fn start_fleet(kite: &KiteSandbox, redis: &Redis, n: usize, login: &str) -> Vec<Warden> {
    (0..n)
        .map(|_| Warden::start(&fleet_config(kite, &redis.url(), login)))
        .collect()
}

#[test]
fn three_wardens_log_in_once_and_after_expiry_once_more() {
    let Some(redis) = Redis::start("three_wardens_log_in_once_and_after_expiry_once_more") else {
        return;
    };
    let kite = KiteSandbox::start(&[]);
    let fleet = start_fleet(&kite, &redis, 3, "totp");
    let ws: Vec<&Warden> = fleet.iter().collect();
    wait_until("all three healthy on one token", T, || {
        all_healthy_on_one_token(&ws)
    });
    assert_eq!(leaders(&ws).len(), 1, "exactly one leader");
    assert_eq!(sessions(&kite), 1, "one login for the whole fleet");
    let leader = leaders(&ws)[0];
    let metrics = |w: &Warden| http(&w.addr, "GET", "/metrics", &[], "").1;
    for (i, w) in ws.iter().enumerate() {
        let m = metrics(w);
        assert!(m.contains("warden_token_store_up{token=\"kite\"} 1"), "{m}");
        let want = if i == leader { 1 } else { 0 };
        assert!(
            m.contains(&format!("warden_token_leader{{token=\"kite\"}} {want}")),
            "{m}"
        );
        assert!(m.contains("warden_token_leader_changes_total"), "{m}");
        let (code, body) = http(&w.addr, "GET", "/readyz", &[], "");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""up":true"#), "{body}");
    }
    let before = ws[0].env_token();
    let pids: Vec<Value> = ws
        .iter()
        .map(|w| w.program("backend")["pid"].clone())
        .collect();

    kite.expire();
    wait_until(
        "all three healthy on a new token",
        Duration::from_secs(90),
        || ws[0].env_token() != before && all_healthy_on_one_token(&ws),
    );
    assert_eq!(sessions(&kite), 2, "exactly one login after the expiry");
    // The leader's Kite web session is still good: no password, no TOTP (SPEC §4.1).
    assert_eq!(kite.stats()["password_ok"], 1);
    assert_eq!(kite.stats()["session_resumes"], 1);
    let after: Vec<Value> = ws
        .iter()
        .map(|w| w.program("backend")["pid"].clone())
        .collect();
    assert_eq!(pids, after, "signalled, not restarted");
    for w in &ws {
        let logs = w.logs();
        assert!(
            !logs.contains(&w.env_token()),
            "a token leaked into the log"
        );
    }
}

#[test]
fn killing_the_leader_hands_over_within_the_lock_ttl_and_the_next_refresh_happens_once() {
    let Some(redis) = Redis::start("killing_the_leader_hands_over") else {
        return;
    };
    let kite = KiteSandbox::start(&[]);
    let mut fleet = start_fleet(&kite, &redis, 3, "totp");
    {
        let ws: Vec<&Warden> = fleet.iter().collect();
        wait_until("all healthy", T, || all_healthy_on_one_token(&ws));
    }
    let leader = leaders(&fleet.iter().collect::<Vec<_>>())[0];
    let mut dead = fleet.remove(leader);
    let orphan = dead.pid_of("backend");
    let killed_at = Instant::now();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    if let Some(p) = orphan {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let ws: Vec<&Warden> = fleet.iter().collect();
    wait_until(
        "a new leader",
        Duration::from_secs(LOCK_TTL_SECS + 5),
        || leaders(&ws).len() == 1,
    );
    let took = killed_at.elapsed();
    println!("takeover after {took:?} (lock_ttl {LOCK_TTL_SECS}s)");
    // The lock lapses at most one TTL after the kill and the next follower tries right then;
    // the slack covers this test's status polling on a loaded machine.
    assert!(
        took <= Duration::from_millis(LOCK_TTL_SECS * 1000 + 1500),
        "takeover took {took:?}"
    );

    let before = ws[0].env_token();
    let logins = sessions(&kite);
    kite.expire();
    wait_fleet(
        &ws,
        "both healthy on a new token",
        Duration::from_secs(90),
        || ws[0].env_token() != before && all_healthy_on_one_token(&ws),
    );
    assert_eq!(
        sessions(&kite),
        logins + 1,
        "exactly one login after the takeover"
    );
}

#[test]
fn a_leader_stopping_gracefully_hands_over_at_once_not_after_the_ttl() {
    let Some(redis) = Redis::start("a_leader_stopping_gracefully_hands_over") else {
        return;
    };
    let kite = KiteSandbox::start(&[]);
    let long_ttl = |_| {
        Warden::start(&fleet_config(&kite, &redis.url(), "totp").replace(
            &format!("lock_ttl = \"{LOCK_TTL_SECS}s\""),
            "lock_ttl = \"60s\"",
        ))
    };
    let mut fleet: Vec<Warden> = (0..2).map(long_ttl).collect();
    {
        let ws: Vec<&Warden> = fleet.iter().collect();
        wait_until("both healthy", T, || all_healthy_on_one_token(&ws));
    }
    let leader = leaders(&fleet.iter().collect::<Vec<_>>())[0];
    let mut old = fleet.remove(leader);
    let stopped_at = Instant::now();
    old.signal(libc::SIGTERM);
    assert!(old.wait_exit(Duration::from_secs(20)).success());
    assert!(old.logs().contains("fleet lock released"), "{}", old.logs());
    let ws: Vec<&Warden> = fleet.iter().collect();
    wait_fleet(&ws, "the survivor leads", Duration::from_secs(15), || {
        leaders(&ws).len() == 1
    });
    let took = stopped_at.elapsed();
    println!("graceful handover after {took:?} (lock_ttl 60s)");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn without_redis_programs_keep_running_nobody_logs_in_and_the_fleet_resyncs_after() {
    let Some(mut redis) = Redis::start("without_redis_programs_keep_running") else {
        return;
    };
    let kite = KiteSandbox::start(&[]);
    let fleet = start_fleet(&kite, &redis, 3, "totp");
    let ws: Vec<&Warden> = fleet.iter().collect();
    wait_until("all healthy", T, || all_healthy_on_one_token(&ws));
    let pids: Vec<Value> = ws
        .iter()
        .map(|w| w.program("backend")["pid"].clone())
        .collect();
    let logins = sessions(&kite);
    let before = ws[0].env_token();

    redis.stop();
    wait_until("every warden reports the store down", T, || {
        ws.iter().all(|w| store(w)["up"] == false)
    });
    // The leader leads on until its lock would have lapsed, and not a moment longer.
    wait_until(
        "nobody leads",
        Duration::from_secs(LOCK_TTL_SECS + 3),
        || leaders(&ws).is_empty(),
    );
    for w in &ws {
        let m = http(&w.addr, "GET", "/metrics", &[], "").1;
        assert!(m.contains("warden_token_store_up{token=\"kite\"} 0"), "{m}");
        assert!(m.contains("warden_token_leader{token=\"kite\"} 0"), "{m}");
        let (code, body) = http(&w.addr, "GET", "/readyz", &[], "");
        assert_eq!(
            code, 200,
            "the store alone does not decide readiness: {body}"
        );
        assert!(body.contains(r#""up":false"#), "{body}");
    }
    // The token dies while the store is away: the backends see 403, and still nobody may log
    // in, because nobody can prove it is the only one.
    kite.expire();
    let outage = Instant::now() + Duration::from_secs(30);
    while Instant::now() < outage {
        assert_eq!(sessions(&kite), logins, "a login without the store");
        for (w, pid) in ws.iter().zip(&pids) {
            assert_eq!(&w.program("backend")["pid"], pid, "programs keep running");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(ws
        .iter()
        .all(|w| w.program("backend")["health"] != "healthy"));

    // Back, and empty (no persistence): a leader is elected, finds the token rejected, logs
    // in once, and every warden takes the new token.
    redis.restart();
    wait_until(
        "all healthy on a new token",
        Duration::from_secs(90),
        || ws[0].env_token() != before && all_healthy_on_one_token(&ws),
    );
    assert_eq!(
        sessions(&kite),
        logins + 1,
        "exactly one login after the outage"
    );
    assert!(ws.iter().all(|w| store(w)["up"] == true));
}

#[test]
fn a_manual_login_started_on_one_warden_and_landing_on_another_is_completed_by_the_leader() {
    let Some(redis) = Redis::start("a_manual_login_landing_on_a_follower") else {
        return;
    };
    let kite = KiteSandbox::start(&[]);
    let fleet = start_fleet(&kite, &redis, 2, "manual");
    let ws: Vec<&Warden> = fleet.iter().collect();
    wait_until("both need a login and one leads", T, || {
        ws.iter()
            .all(|w| w.status()["token"]["state"] == "needs_login")
            && leaders(&ws).len() == 1
    });
    let leader = leaders(&ws)[0];
    let follower = 1 - leader;
    // The browser starts on the leader's /login and Kite sends it back to the follower.
    let location = {
        let mut s = TcpStream::connect(&ws[leader].addr).unwrap();
        write!(
            s,
            "GET /login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            ws[leader].addr
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("location: ")
                    .then(|| l[10..].trim().to_string())
            })
            .unwrap()
    };
    let state = location.rsplit("state%3D").next().unwrap().to_string();
    let (code, _) = http(
        &ws[follower].addr,
        "GET",
        "/kite/callback?request_token=x&action=login&status=success&state=forged.1.00",
        &[],
        "",
    );
    assert_eq!(code, 400, "a forged state is refused on any warden");
    let request_token = kite.request_token();
    let path = format!(
        "/kite/callback?request_token={}&action=login&status=success&state={state}",
        request_token.expose()
    );
    let (code, body) = http(&ws[follower].addr, "GET", &path, &[], "");
    assert_eq!(code, 302, "{body}");
    wait_until("both healthy on the manual token", T, || {
        all_healthy_on_one_token(&ws)
    });
    assert_eq!(sessions(&kite), 1);
    assert_eq!(ws[follower].status()["token"]["source"], "manual");
    // Single use.
    let (code, _) = http(&ws[follower].addr, "GET", &path, &[], "");
    assert_eq!(code, 400);
}

#[test]
fn a_stale_leaders_write_with_an_old_fence_is_rejected() {
    use warden::config::{Secret, StoreConfig, StoreKind};
    use warden::token::fleet::record::RecordKey;
    use warden::token::fleet::store::{Acquire, RedisStore, SharedToken};
    use warden::token::{TokenRecord, TokenSource};

    let Some(redis) = Redis::start("a_stale_leaders_write_with_an_old_fence_is_rejected") else {
        return;
    };
    let cfg = StoreConfig {
        kind: StoreKind::Redis,
        url: Secret::new(redis.url()),
        ..StoreConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let key = || RecordKey::derive(&Secret::new("app-secret")).unwrap();
        let a = RedisStore::new(&cfg, "app", key()).unwrap();
        let b = RedisStore::new(&cfg, "app", key()).unwrap();
        let ttl = Duration::from_millis(300);
        let Acquire::Won(fa) = a.acquire("A", ttl).await.unwrap() else {
            panic!("A should win an empty lock")
        };
        assert!(matches!(
            b.acquire("B", ttl).await.unwrap(),
            Acquire::Held { .. }
        ));
        // A pauses past its TTL; B takes over with a newer fence.
        let deadline = Instant::now() + Duration::from_secs(5);
        let fb = loop {
            if let Acquire::Won(f) = b.acquire("B", Duration::from_secs(30)).await.unwrap() {
                break f;
            }
            assert!(Instant::now() < deadline, "B never got the lock");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(fb > fa);
        let token = |t: &str, fence: u64, writer: &str| SharedToken {
            rec: TokenRecord {
                access_token: Secret::new(t),
                user_id: "AB1234".into(),
                obtained_at: 1,
                expires_at: 2,
                source: TokenSource::Totp,
                companions: Default::default(),
            },
            fence,
            writer: writer.into(),
        };
        assert!(b.write_token(&token("new", fb, "B")).await.unwrap());
        // A wakes up and tries to store what it obtained: refused, and nothing changed.
        assert!(!a.write_token(&token("old", fa, "A")).await.unwrap());
        assert!(!a.renew(&format!("A {fa}"), ttl).await.unwrap());
        let stored = a.read_token().await.unwrap().unwrap();
        assert_eq!(stored.rec.access_token.expose(), "new");
        assert_eq!(stored.fence, fb);
        assert_eq!(stored.writer, "B");
    });
}

#[test]
fn a_password_from_a_file_opens_the_store_and_a_wrong_one_is_reported_without_showing_it() {
    let Some(redis) = Redis::start_with(
        "a_password_from_a_file_opens_the_store",
        &["--requirepass", "fleet-pw-4242"],
    ) else {
        return;
    };
    let kite = KiteSandbox::start(&[]);
    let with_password = |pw: &str| {
        let pw = pw.to_string();
        Warden::start_with(
            &fleet_config(&kite, &redis.url(), "totp").replace(
                "key_prefix = \"test:\"",
                "key_prefix = \"test:\"\npassword_file = \"redis.pw\"",
            ),
            move |dir| std::fs::write(dir.join("redis.pw"), format!("{pw}\n")).unwrap(),
            Vec::new(),
        )
    };
    let good = with_password("fleet-pw-4242");
    wait_until("the store is up and this warden leads", T, || {
        store(&good)["up"] == true && store(&good)["role"] == "leader"
    });
    let bad = with_password("not-the-password");
    wait_until("the wrong password is reported", T, || {
        store(&bad)["up"] == false && !store(&bad)["last_error"].is_null()
    });
    let shown = format!("{}\n{}\n{}", store(&bad), bad.logs(), good.logs());
    for secret in ["fleet-pw-4242", "not-the-password"] {
        assert!(!shown.contains(secret), "a Redis password leaked: {shown}");
    }
    assert_ne!(store(&bad)["role"], "leader");
}

#[test]
fn rediss_with_a_private_ca_works_with_ca_file_and_is_refused_without_it() {
    let certs = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start_tls("rediss_with_a_private_ca", certs.path()) else {
        return;
    };
    let kite = KiteSandbox::start(&[]);
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let ca = certs.path().join("ca.crt");
    let trusted = Warden::start(&fleet_config(&kite, &url, "totp").replace(
        "key_prefix = \"test:\"",
        &format!("key_prefix = \"test:\"\nca_file = \"{}\"", ca.display()),
    ));
    wait_until("TLS store up, leading, token valid", T, || {
        store(&trusted)["up"] == true
            && store(&trusted)["role"] == "leader"
            && trusted.status()["token"]["state"] == "valid"
    });
    // The same server is not trusted through the bundled public roots.
    let untrusted = Warden::start(&fleet_config(&kite, &url, "totp"));
    wait_until("the certificate problem is reported", T, || {
        store(&untrusted)["up"] == false && !store(&untrusted)["last_error"].is_null()
    });
    assert_ne!(store(&untrusted)["role"], "leader");
    assert_eq!(
        kite.stats()["sessions_created"],
        1,
        "only the trusted warden logged in"
    );
}

#[test]
fn a_rejected_login_is_tried_once_for_the_fleet_and_every_page_offers_the_manual_login() {
    let Some(redis) = Redis::start("a_rejected_login_is_tried_once_for_the_fleet") else {
        return;
    };
    let kite = KiteSandbox::start(&[]);
    let wrong_totp = |_| {
        Warden::start(&fleet_config(&kite, &redis.url(), "totp").replace(
            &format!("totp_secret = \"{SANDBOX_TOTP}\""),
            "totp_secret = \"JBSWY3DPEHPK3PXP\"",
        ))
    };
    let fleet: Vec<Warden> = (0..2).map(wrong_totp).collect();
    let ws: Vec<&Warden> = fleet.iter().collect();
    wait_fleet(&ws, "every warden needs a login", T, || {
        ws.iter()
            .all(|w| w.status()["token"]["state"] == "needs_login")
    });
    let stats = kite.stats();
    assert_eq!(
        stats["twofa_fail"], 1,
        "one wrong code for the whole fleet: {stats}"
    );
    assert_eq!(stats["sessions_created"], 0);
    let follower = ws[1 - leaders(&ws)[0]];
    let reason = follower.status()["token"]["last_error"].to_string();
    assert!(reason.contains("fleet leader needs a person"), "{reason}");
    let (code, page) = http(&follower.addr, "GET", "/", &[], "");
    assert_eq!(code, 200);
    assert!(page.contains("Log in with Kite"), "{page}");
    // Still only one attempt a while later: followers never try, the leader stays blocked.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(kite.stats()["twofa_fail"], 1);
}

// ---- Trusting Redis (README "Trusting Redis") and fleet-wide login states ----

mod trust {
    use super::*;
    use warden::config::{Secret, StoreConfig, StoreKind};
    use warden::sandbox::kite::{current_totp, DEFAULT_API_SECRET};
    use warden::token::fleet::record::RecordKey;
    use warden::token::fleet::store::{RedisStore, SharedToken};
    use warden::token::kite::KiteClient;
    use warden::token::{TokenRecord, TokenSource};

    const TOKEN_KEY: &str = "test:kitefront:token";
    const EVENTS: &str = "test:kitefront:events";

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The fleet's store as a warden with api_secret `secret` sees it.
    fn store_signed_with(redis: &Redis, secret: &str) -> RedisStore {
        let cfg = StoreConfig {
            kind: StoreKind::Redis,
            url: Secret::new(redis.url()),
            key_prefix: "test:".into(),
            ..StoreConfig::default()
        };
        let key = RecordKey::derive(&Secret::new(secret)).unwrap();
        RedisStore::new(&cfg, "kitefront", key).unwrap()
    }

    /// One raw Redis command (no checks: what an intruder with Redis access could send).
    pub(super) fn raw(redis: &Redis, args: &[&str]) -> redis::Value {
        rt().block_on(async {
            let client = redis::Client::open(redis.url()).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            cmd.query_async(&mut c).await.unwrap()
        })
    }

    fn raw_token_record(redis: &Redis) -> String {
        match raw(redis, &["GET", TOKEN_KEY]) {
            redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
            other => panic!("no token record: {other:?}"),
        }
    }

    /// Put a record into Redis the way a leader does (fenced write + announcement), signed
    /// with a key derived from `secret`, under the newest fence.
    fn push_signed(redis: &Redis, secret: &str, token: &Secret, user_id: &str, obtained_at: i64) {
        let store = store_signed_with(redis, secret);
        rt().block_on(async {
            let fence = store.current_fence().await.unwrap();
            let written = store
                .write_token(&SharedToken {
                    rec: TokenRecord {
                        access_token: token.clone(),
                        user_id: user_id.into(),
                        obtained_at,
                        expires_at: obtained_at + 3600,
                        source: TokenSource::Manual,
                        companions: Default::default(),
                    },
                    fence,
                    writer: "test/1/0000".into(),
                })
                .await
                .unwrap();
            assert!(written, "the fenced write took the newest fence");
        });
    }

    fn now() -> i64 {
        jiff::Timestamp::now().as_second()
    }

    /// A person logged in to Kite in a browser (cookie) and an app exchanging request tokens:
    /// each call is a genuine new access token of the sandbox's user, and kills the previous
    /// one. Only the first call submits a TOTP code.
    pub(super) struct KiteUser<'a> {
        kite: &'a KiteSandbox,
        cookie: String,
    }

    impl<'a> KiteUser<'a> {
        pub(super) fn new(kite: &'a KiteSandbox) -> KiteUser<'a> {
            KiteUser {
                kite,
                cookie: String::new(),
            }
        }

        pub(super) fn request_token(&mut self) -> String {
            let addr = self.kite.addr.clone();
            let mut path = "/connect/login?v=3&api_key=kitefront".to_string();
            for _ in 0..10 {
                let headers: Vec<(&str, &str)> = if self.cookie.is_empty() {
                    vec![]
                } else {
                    vec![("Cookie", self.cookie.as_str())]
                };
                let r = request(&addr, "GET", &path, &headers, "");
                if r.status == 302 {
                    let loc = r.header("location").unwrap().to_string();
                    if let Some(rt) = loc.split("request_token=").nth(1) {
                        return rt.split('&').next().unwrap().to_string();
                    }
                    path = match loc.strip_prefix("http://") {
                        Some(rest) => rest[rest.find('/').unwrap()..].to_string(),
                        None => loc,
                    };
                    continue;
                }
                assert_eq!(r.status, 200, "{path}: {}", r.body);
                let totp = current_totp(SANDBOX_TOTP).unwrap();
                let (r, cookie) = post_login_form(&addr, &r.body, &totp);
                self.cookie = cookie;
                path = r.header("location").unwrap().to_string();
            }
            panic!("no request token within 10 hops");
        }

        pub(super) fn access_token(&mut self) -> Secret {
            let request_token = self.request_token();
            let cfg = self.kite.kite_config();
            rt().block_on(async {
                KiteClient::new(&cfg)
                    .exchange(&request_token, &Secret::new(DEFAULT_API_SECRET))
                    .await
                    .unwrap()
                    .access_token
            })
        }
    }

    /// `warden_token_store_records_rejected_total{reason}` of one warden.
    pub(super) fn rejected(w: &Warden, reason: &str) -> u64 {
        let (_, m) = http(&w.addr, "GET", "/metrics", &[], "");
        let series = format!(
            "warden_token_store_records_rejected_total{{reason=\"{reason}\",token=\"kite\"}} "
        );
        m.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0)
    }

    /// Two manual-login wardens (nobody logs in by itself), one leading.
    pub(super) fn manual_pair(kite: &KiteSandbox, redis: &Redis, user_id: &str) -> Vec<Warden> {
        let cfg = || {
            fleet_config(kite, &redis.url(), "manual")
                .replace("user_id = \"AB1234\"", &format!("user_id = \"{user_id}\""))
        };
        let fleet: Vec<Warden> = (0..2).map(|_| Warden::start(&cfg())).collect();
        {
            let ws: Vec<&Warden> = fleet.iter().collect();
            wait_fleet(&ws, "both need a login and one leads", T, || {
                ws.iter()
                    .all(|w| w.status()["token"]["state"] == "needs_login")
                    && leaders(&ws).len() == 1
            });
        }
        fleet
    }

    /// Neither in a log nor in the status (the `.env` is checked by each test).
    fn never_shown(ws: &[&Warden], tokens: &[&Secret]) {
        for w in ws {
            let logs = w.logs();
            let status = w.status().to_string();
            for t in tokens {
                assert!(!logs.contains(t.expose()), "a token in the log");
                assert!(!status.contains(t.expose()), "a token in the status");
            }
        }
    }

    #[test]
    fn forged_and_replayed_records_in_redis_never_reach_an_env_file_and_are_reported() {
        let Some(redis) = Redis::start("forged_and_replayed_records_in_redis") else {
            return;
        };
        let kite = KiteSandbox::start(&[]);
        let fleet = manual_pair(&kite, &redis, "AB1234");
        let ws: Vec<&Warden> = fleet.iter().collect();
        let mut user = KiteUser::new(&kite);
        // A genuine, valid token of the right user: only the signature can keep it out.
        let g1 = user.access_token();

        // 1. Unsigned, with a fence far ahead, announced like a leader's write.
        let unsigned = serde_json::json!({
            "access_token": g1.expose(), "user_id": "AB1234", "obtained_at": now(),
            "expires_at": now() + 3600, "source": "manual", "fence": 1000, "writer": "mallory"
        })
        .to_string();
        raw(&redis, &["SET", TOKEN_KEY, &unsigned]);
        raw(&redis, &["PUBLISH", EVENTS, "token 1000"]);
        wait_fleet(&ws, "the unsigned record is refused", T, || {
            ws.iter().all(|w| rejected(w, "signature") >= 1)
        });

        // 2. Signed with a key not derived from this app's api_secret.
        push_signed(&redis, "not-the-api-secret", &g1, "AB1234", now());
        wait_fleet(&ws, "the wrongly signed record is refused", T, || {
            ws.iter().all(|w| rejected(w, "signature") >= 2)
        });

        // 3. Signed, but for another user than the configured one.
        push_signed(&redis, DEFAULT_API_SECRET, &g1, "ZZ9999", now());
        wait_fleet(&ws, "the record for another user is refused", T, || {
            ws.iter().all(|w| rejected(w, "user") >= 1)
        });
        for w in &ws {
            assert_eq!(w.status()["token"]["state"], "needs_login");
            assert!(w.env_token().is_empty(), "nothing was written");
            let st = store(w);
            assert!(st["records_rejected"].as_u64().unwrap() >= 3, "{st}");
            assert!(
                st["last_rejection"].as_str().unwrap().starts_with("user:"),
                "{st}"
            );
        }
        never_shown(&ws, &[&g1]);

        // The same token, correctly signed: installed everywhere (so only the signature and
        // the user kept it out above).
        let t1 = now();
        push_signed(&redis, DEFAULT_API_SECRET, &g1, "AB1234", t1);
        wait_fleet(&ws, "the genuine record is installed", T, || {
            ws.iter()
                .all(|w| w.env_token() == g1.expose() && w.status()["token"]["state"] == "valid")
        });
        let r1 = raw_token_record(&redis);

        // 4. A newer genuine record, then the old one put back: a replay never wins.
        let g2 = user.access_token();
        push_signed(&redis, DEFAULT_API_SECRET, &g2, "AB1234", t1 + 1);
        wait_fleet(&ws, "the newer genuine record is installed", T, || {
            ws.iter().all(|w| w.env_token() == g2.expose())
        });
        raw(&redis, &["SET", TOKEN_KEY, &r1]);
        raw(&redis, &["PUBLISH", EVENTS, "token 1"]);
        wait_fleet(&ws, "the replayed record is refused", T, || {
            ws.iter().all(|w| rejected(w, "replay") >= 1)
        });
        for w in &ws {
            assert_eq!(w.env_token(), g2.expose(), "the replay changed nothing");
            assert_eq!(w.status()["token"]["state"], "valid");
            assert!(w.logs().contains("ignoring the token record in Redis"));
        }
        let signed = raw_token_record(&redis);
        assert!(signed.contains("\"sig\""), "records carry their signature");

        // 5. An unsigned request in the followers' queue: a genuine request token handed to
        // the leader past every warden's `state` check. Dropped, not exchanged.
        let before = sessions(&kite);
        let forged = serde_json::json!({
            "kind": "callback", "request_token": user.request_token(),
            "reply": "test:kitefront:reply:x", "from": "mallory", "deadline": now() + 60
        })
        .to_string();
        raw(&redis, &["RPUSH", "test:kitefront:requests", &forged]);
        raw(&redis, &["PUBLISH", EVENTS, "request"]);
        wait_fleet(&ws, "the leader drops the unsigned request", T, || {
            ws.iter().any(|w| {
                w.logs()
                    .contains("dropping a fleet request without a valid signature")
            })
        });
        assert_eq!(sessions(&kite), before, "nothing was exchanged");
        for w in &ws {
            assert_eq!(w.env_token(), g2.expose());
        }
        never_shown(&ws, &[&g1, &g2]);
    }

    #[test]
    fn a_genuine_token_of_another_kite_user_pushed_through_redis_is_refused() {
        let Some(redis) = Redis::start("a_genuine_token_of_another_kite_user") else {
            return;
        };
        let kite = KiteSandbox::start(&[]);
        // The fleet trades for ZZ9999; the only user who can log in at the sandbox is AB1234.
        let fleet = manual_pair(&kite, &redis, "ZZ9999");
        let ws: Vec<&Warden> = fleet.iter().collect();
        let theirs = KiteUser::new(&kite).access_token();
        // Correctly signed and claiming the right user: only the broker can tell.
        push_signed(&redis, DEFAULT_API_SECRET, &theirs, "ZZ9999", now());
        wait_fleet(&ws, "the other user's token is refused", T, || {
            ws.iter().all(|w| rejected(w, "user") >= 1)
        });
        for w in &ws {
            assert_eq!(w.status()["token"]["state"], "needs_login");
            assert!(w.env_token().is_empty());
            let why = store(w)["last_rejection"].to_string();
            assert!(why.contains("AB1234"), "{why}");
        }
        never_shown(&ws, &[&theirs]);
    }

    fn login_state(w: &Warden) -> String {
        let r = request(&w.addr, "GET", "/login", &[], "");
        assert_eq!(r.status, 302, "{}", r.body);
        let loc = r.header("location").unwrap();
        loc.rsplit("state%3D").next().unwrap().to_string()
    }

    fn callback(w: &Warden, request_token: &str, state: &str) -> (u16, String) {
        http(
            &w.addr,
            "GET",
            &format!(
                "/kite/callback?request_token={request_token}&action=login&status=success&state={state}"
            ),
            &[],
            "",
        )
    }

    #[test]
    fn a_login_state_is_single_use_across_the_fleet_without_an_eviction_hole_and_fails_closed() {
        let Some(mut redis) = Redis::start("a_login_state_is_single_use_across_the_fleet") else {
            return;
        };
        let kite = KiteSandbox::start(&[]);
        let fleet = manual_pair(&kite, &redis, "AB1234");
        let (a, b) = (&fleet[0], &fleet[1]);

        // Spent by a callback whose exchange fails: still spent, here and on the other warden.
        let state = login_state(a);
        let (code, body) = callback(a, "not-a-request-token", &state);
        assert!(
            code == 502 || code == 503,
            "the state passed: {code} {body}"
        );
        for w in [a, b] {
            let (code, body) = callback(w, "not-a-request-token", &state);
            assert_eq!(code, 400, "{body}");
            assert!(body.contains("already used"), "{body}");
        }

        // Forged: a bad MAC, an altered issue time, an expired or future issue time.
        let kite_cfg = kite.kite_config();
        let minted = warden::token::login_state::LoginStates::new(Some(&kite_cfg), None);
        let expired = minted.issue_at(now() - 15 * 60 - 1).unwrap();
        let future = minted.issue_at(now() + 3600).unwrap();
        let (nonce, rest) = state.split_once('.').unwrap();
        let mac = rest.split_once('.').unwrap().1;
        let altered = format!("{nonce}.{}.{mac}", now());
        let other_app = warden::token::login_state::LoginStates::new(
            Some(&warden::config::KiteConfig {
                api_secret: Secret::new("another-app-secret"),
                ..kite_cfg.clone()
            }),
            None,
        )
        .issue()
        .unwrap();
        for forged in ["forged.1.00", &altered, &expired, &future, &other_app, ""] {
            for w in [a, b] {
                let (code, body) = callback(w, "x", forged);
                assert_eq!(code, 400, "{forged}: {body}");
            }
        }

        // No eviction hole: 100 `/login`s later (from 20 addresses, within their rate limit),
        // the spent state is still spent and an unused one is still good.
        let unused = login_state(b);
        for i in 0..100 {
            let source = format!("127.0.0.{}", 10 + i / 5);
            let w = if i % 2 == 0 { a } else { b };
            let r = request_from(&source, &w.addr, "GET", "/login");
            assert_eq!(r.status, 302, "/login #{i} from {source}: {}", r.body);
        }
        for w in [a, b] {
            assert_eq!(callback(w, "x", &state).0, 400);
        }
        let (code, body) = callback(a, "not-a-request-token", &unused);
        assert!(code == 502 || code == 503, "{code} {body}");

        // Without Redis nobody can tell whether a state was used: refused, clearly.
        let fresh = login_state(a);
        redis.stop();
        let (code, body) = callback(b, "x", &fresh);
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("token store"), "{body}");
        redis.restart();

        // And a real login still works once: the first use of a fresh state.
        wait_fleet(&[a, b], "the store is back", T, || {
            store(a)["up"] == true && store(b)["up"] == true && leaders(&[a, b]).len() == 1
        });
        let state = login_state(a);
        let request_token = KiteUser::new(&kite).request_token();
        let (code, body) = callback(b, &request_token, &state);
        assert_eq!(code, 302, "{body}");
        wait_fleet(&[a, b], "both valid on the manual token", T, || {
            [a, b]
                .iter()
                .all(|w| w.status()["token"]["state"] == "valid")
        });
        assert_eq!(callback(a, &request_token, &state).0, 400);
    }

    #[test]
    fn login_is_rate_limited_per_client_address() {
        let kite = KiteSandbox::start(&[]);
        let port = free_port();
        let w = Warden::start(&kite.warden_config(port, "manual", None));
        let addr = format!("127.0.0.1:{port}");
        for i in 0..5 {
            let r = request_from("127.0.0.2", &addr, "GET", "/login");
            assert_eq!(r.status, 302, "#{i}: {}", r.body);
        }
        let r = request_from("127.0.0.2", &addr, "GET", "/login");
        assert_eq!(r.status, 429, "{}", r.body);
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=6).contains(&retry), "Retry-After {retry}");
        // Other clients, and other pages, are not affected.
        assert_eq!(
            request_from("127.0.0.3", &addr, "GET", "/login").status,
            302
        );
        assert_eq!(
            request_from("127.0.0.2", &addr, "GET", "/healthz").status,
            200
        );
        // A lone warden: a state stays good through 100 `/login`s and is single-use.
        let state = {
            let r = request_from("127.0.0.4", &addr, "GET", "/login");
            r.header("location")
                .unwrap()
                .rsplit("state%3D")
                .next()
                .unwrap()
                .to_string()
        };
        for i in 0..100 {
            let r = request_from(&format!("127.0.1.{}", i / 5), &addr, "GET", "/login");
            assert_eq!(r.status, 302, "#{i}: {}", r.body);
        }
        let cb = |st: &str| callback(&w, "not-a-request-token", st);
        assert_eq!(
            cb(&state).0,
            502,
            "the state survived: only the exchange failed"
        );
        assert_eq!(cb(&state).0, 400, "and it is spent now");
        // Forged, expired, or correctly signed but never issued by this warden.
        let minted = warden::token::login_state::LoginStates::new(Some(&kite.kite_config()), None);
        let expired = minted.issue_at(now() - 15 * 60 - 1).unwrap();
        let not_ours = minted.issue().unwrap();
        for forged in ["forged.1.00", expired.as_str(), not_ours.as_str()] {
            let (code, body) = cb(forged);
            assert_eq!(code, 400, "{forged}: {body}");
        }
    }
}
