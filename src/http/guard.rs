//! Who may talk to the listener (SPEC §5 "Cross-site requests"): the `Host` a request names
//! must be one of warden's own (else 421, which stops DNS rebinding), and a mutating request
//! must not come from another site's page (`Origin` or `Sec-Fetch-Site`, else 403).
//!
//! Rebinding always goes through a DNS name the attacker controls, which the browser then puts
//! in `Host`; an IP literal or `localhost` cannot be rebound. So the Host rule is strict where
//! it matters (names) and lenient where it cannot be abused: on a non-loopback listen, where
//! probes and scrapers address warden by pod IP through port mappings, any IP literal on any
//! port is accepted, and the probe and scrape paths answer any name (a compose or Kubernetes
//! Service name): they tell nothing a LAN peer could not read directly anyway.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap, Method, StatusCode, Uri};

/// Why a request was refused, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

/// warden's own names and origins, fixed at start from the bound address and `public_url`.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The port actually bound (the config may say 0).
    port: u16,
    /// The `listen` IP, unless it is a wildcard.
    listen_ip: Option<IpAddr>,
    /// Listening beyond loopback: any IP literal and any port of our names is accepted.
    open_listen: bool,
    public: Option<PublicOrigin>,
}

/// `public_url`'s origin.
#[derive(Debug, Clone)]
struct PublicOrigin {
    scheme: String,
    /// Lowercase, IPv6 in brackets.
    host: String,
    port: u16,
    /// The URL names no port (the scheme's default), as a `Host` without one would.
    default_port: bool,
}

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Read-only paths that probes and scrapers use, by whatever name their config gives.
const PROBE_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Webhooks a broker's servers post to (SPEC §9.2): no browser is involved, so `Origin` and
/// `Sec-Fetch-Site` say nothing about them; the handler authenticates what is posted.
const WEBHOOK_PATHS: [&str; 1] = ["/upstox/notify"];

impl Guard {
    pub fn new(bound: SocketAddr, public_url: &str) -> Guard {
        let public = url::Url::parse(public_url).ok().and_then(|u| {
            Some(PublicOrigin {
                scheme: u.scheme().to_string(),
                host: u.host_str()?.to_ascii_lowercase(),
                port: u.port_or_known_default()?,
                default_port: u.port().is_none(),
            })
        });
        let ip = bound.ip();
        Guard {
            port: bound.port(),
            listen_ip: (!ip.is_unspecified()).then_some(ip),
            open_listen: !ip.is_loopback(),
            public,
        }
    }

    /// `None` when the request may go on; the refusal otherwise.
    pub fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Refusal> {
        // Two Hosts make "which one did it mean" a question for a smuggler (RFC 9112 §3.2).
        if headers.get_all(header::HOST).iter().nth(1).is_some() {
            return Some(Refusal {
                status: StatusCode::BAD_REQUEST,
                message: "more than one Host header".into(),
            });
        }
        // Browsers always send Host; a request without one (HTTP/1.0 tools) cannot be a
        // rebinding attack. An absolute-form target names a host too and must agree.
        let host = headers
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("\0"));
        let any_name = self.open_listen && is_safe(method) && PROBE_PATHS.contains(&uri.path());
        let named = host.into_iter().chain(uri.authority().map(|a| a.as_str()));
        for named in named.filter(|_| !any_name) {
            if !self.own_host(named) {
                return Some(Refusal {
                    status: StatusCode::MISDIRECTED_REQUEST,
                    message: format!(
                        "Host {named:?} is not one of warden's names (its listen address, \
                         public_url, localhost or 127.0.0.1 on port {}); set http.public_url \
                         to the name you reach warden by",
                        self.port
                    ),
                });
            }
        }
        if is_safe(method) || (method == Method::POST && WEBHOOK_PATHS.contains(&uri.path())) {
            return None;
        }
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if cross_site {
            return Some(forbidden("Sec-Fetch-Site: cross-site".into()));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let text = origin.to_str().unwrap_or("");
            if !self.own_origin(text, host) {
                return Some(forbidden(format!("Origin {text:?}")));
            }
        }
        None
    }

    fn own_host(&self, value: &str) -> bool {
        let Some((name, port)) = split_host(value) else {
            return false;
        };
        if self.open_listen && is_ip_literal(&name) {
            return true;
        }
        let port_ok = |wanted: u16| self.open_listen || port.unwrap_or(80) == wanted;
        let ours = LOOPBACK_NAMES.contains(&name.as_str())
            || self.listen_ip.is_some_and(|ip| name == bracketed(ip));
        if ours && port_ok(self.port) {
            return true;
        }
        match &self.public {
            Some(public) if public.host == name => {
                self.open_listen
                    || match port {
                        Some(p) => p == public.port,
                        // Behind a proxy that keeps the Host, the port is the scheme's default.
                        None => public.default_port,
                    }
            }
            _ => false,
        }
    }

    /// Same-origin: one of the listed origins, or `http://` the very host:port the request was
    /// sent to (already known to be ours), e.g. a LAN address on a wildcard listen.
    fn own_origin(&self, origin: &str, host: Option<&str>) -> bool {
        // `Origin: null` (sandboxed frames, file:// pages, some redirects) is nobody's own.
        let Ok(url) = url::Url::parse(origin) else {
            return false;
        };
        let (Some(name), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let scheme = url.scheme();
        if !matches!(scheme, "http" | "https") {
            return false;
        }
        let name = name.to_ascii_lowercase();
        if let Some(p) = &self.public {
            if p.scheme == scheme && p.host == name && p.port == port {
                return true;
            }
        }
        if scheme == "http"
            && port == self.port
            && (LOOPBACK_NAMES.contains(&name.as_str())
                || self.listen_ip.is_some_and(|ip| name == bracketed(ip)))
        {
            return true;
        }
        // warden itself speaks plain HTTP: an https origin is ours only through public_url.
        scheme == "http"
            && host
                .and_then(split_host)
                .is_some_and(|(h, p)| h == name && p.unwrap_or(80) == port)
    }
}

fn forbidden(what: String) -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "cross-site request refused: {what} is not warden's own; use the CLI, curl, or \
             warden's own status page"
        ),
    }
}

/// Methods that change nothing; everything else is treated as mutating.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// `name[:port]` → (lowercase name, IPv6 kept in brackets; port). `None` when malformed.
fn split_host(value: &str) -> Option<(String, Option<u16>)> {
    let value = value.trim();
    let (name, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let rest = &value[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return None,
        };
        (&value[..=end], port)
    } else {
        match value.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (value, None),
        }
    };
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '@' || c == '/') {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((name.to_ascii_lowercase(), port))
}

fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn is_ip_literal(name: &str) -> bool {
    name.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
        .parse::<IpAddr>()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(g: &Guard, method: &str, headers: &[(&str, &str)]) -> Option<u16> {
        at(g, method, "/api/v1/token/refresh", headers)
    }

    fn at(g: &Guard, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<u16> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        g.check(&m, &path.parse().unwrap(), &h)
            .map(|r| r.status.as_u16())
    }

    #[test]
    fn probes_and_scrapes_by_any_name_only_on_an_open_listen() {
        let open = Guard::new("0.0.0.0:9180".parse().unwrap(), "");
        let service = [("Host", "stack:9180")];
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(at(&open, "GET", path, &service), None, "{path}");
            assert_eq!(at(&loopback(), "GET", path, &service), Some(421), "{path}");
        }
        for path in ["/", "/api/v1/status", "/login", "/metrics/x"] {
            assert_eq!(at(&open, "GET", path, &service), Some(421), "{path}");
        }
        assert_eq!(at(&open, "POST", "/metrics", &service), Some(421));
    }

    fn loopback() -> Guard {
        Guard::new("127.0.0.1:9180".parse().unwrap(), "")
    }

    #[test]
    fn loopback_accepts_its_names_on_its_port_only() {
        let g = loopback();
        for host in [
            "127.0.0.1:9180",
            "localhost:9180",
            "LOCALHOST:9180",
            "[::1]:9180",
        ] {
            assert_eq!(req(&g, "GET", &[("Host", host)]), None, "{host}");
        }
        assert_eq!(req(&g, "GET", &[]), None, "no Host at all (HTTP/1.0 tools)");
        for host in [
            "evil.example:9180",
            "evil.example",
            "localhost:9181",
            "localhost",
            "127.0.0.1.evil.example:9180",
            "10.0.0.1:9180",
            "",
            "localhost:notaport",
            "[::1",
        ] {
            assert_eq!(req(&g, "GET", &[("Host", host)]), Some(421), "{host:?}");
        }
    }

    #[test]
    fn public_url_names_are_accepted_with_or_without_the_default_port() {
        let g = Guard::new(
            "127.0.0.1:9180".parse().unwrap(),
            "https://Warden.Example.com/",
        );
        assert_eq!(req(&g, "GET", &[("Host", "warden.example.com")]), None);
        assert_eq!(req(&g, "GET", &[("Host", "warden.example.com:443")]), None);
        assert_eq!(
            req(&g, "GET", &[("Host", "warden.example.com:9999")]),
            Some(421)
        );
        let origin = [
            ("Host", "warden.example.com"),
            ("Origin", "https://warden.example.com"),
        ];
        assert_eq!(req(&g, "POST", &origin), None);
        let http = [
            ("Host", "warden.example.com"),
            ("Origin", "http://warden.example.com:8080"),
        ];
        assert_eq!(req(&g, "POST", &http), Some(403));
    }

    #[test]
    fn an_open_listen_accepts_ip_literals_but_not_foreign_names() {
        let g = Guard::new("0.0.0.0:9180".parse().unwrap(), "http://warden.lan:9180");
        for host in [
            "10.244.1.7:9180",
            "192.168.1.5:8080",
            "[fd00::1]:9180",
            "localhost:8080",
            "warden.lan:80",
        ] {
            assert_eq!(req(&g, "GET", &[("Host", host)]), None, "{host}");
        }
        assert_eq!(
            req(&g, "GET", &[("Host", "attacker.example:9180")]),
            Some(421)
        );
        // A page on the LAN address posting to that same address is same-origin.
        let lan = [
            ("Host", "192.168.1.5:9180"),
            ("Origin", "http://192.168.1.5:9180"),
        ];
        assert_eq!(req(&g, "POST", &lan), None);
        let other = [
            ("Host", "192.168.1.5:9180"),
            ("Origin", "http://192.168.1.9:9180"),
        ];
        assert_eq!(req(&g, "POST", &other), Some(403));
    }

    #[test]
    fn mutating_requests_from_other_sites_are_forbidden() {
        let g = loopback();
        let host = ("Host", "127.0.0.1:9180");
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:3000",
            "https://127.0.0.1:9180",
            "http://localhost:9181",
            "garbage",
            "file://",
        ] {
            assert_eq!(
                req(&g, "POST", &[host, ("Origin", origin)]),
                Some(403),
                "{origin}"
            );
            // Reads stay open: a cross-origin page cannot read the answer anyway.
            assert_eq!(req(&g, "GET", &[host, ("Origin", origin)]), None);
        }
        for origin in [
            "http://127.0.0.1:9180",
            "http://localhost:9180",
            "http://[::1]:9180",
        ] {
            assert_eq!(
                req(&g, "POST", &[host, ("Origin", origin)]),
                None,
                "{origin}"
            );
        }
        assert_eq!(
            req(&g, "POST", &[host, ("Sec-Fetch-Site", "cross-site")]),
            Some(403)
        );
        assert_eq!(
            req(&g, "DELETE", &[host, ("Sec-Fetch-Site", "Cross-Site")]),
            Some(403)
        );
        assert_eq!(
            req(&g, "POST", &[host, ("Sec-Fetch-Site", "same-origin")]),
            None
        );
        // The CLI sends neither header.
        assert_eq!(req(&g, "POST", &[host]), None);
        // Host is judged first: a rebinding attempt is misdirected, whatever its Origin.
        assert_eq!(
            req(
                &g,
                "POST",
                &[
                    ("Host", "evil.example:9180"),
                    ("Origin", "http://evil.example:9180")
                ]
            ),
            Some(421)
        );
    }

    #[test]
    fn the_upstox_webhook_may_be_posted_from_anywhere_but_only_by_our_name() {
        let g = loopback();
        let host = ("Host", "127.0.0.1:9180");
        let foreign = [
            host,
            ("Origin", "https://upstox.com"),
            ("Sec-Fetch-Site", "cross-site"),
        ];
        assert_eq!(at(&g, "POST", "/upstox/notify", &foreign), None);
        assert_eq!(at(&g, "POST", "/upstox/notify", &[host]), None);
        // Only POST, only that path, and the Host rule still holds.
        assert_eq!(at(&g, "PUT", "/upstox/notify", &foreign), Some(403));
        assert_eq!(at(&g, "POST", "/upstox/notify/x", &foreign), Some(403));
        assert_eq!(at(&g, "POST", "/api/v1/token/refresh", &foreign), Some(403));
        assert_eq!(
            at(
                &g,
                "POST",
                "/upstox/notify",
                &[("Host", "evil.example:9180")]
            ),
            Some(421)
        );
    }

    #[test]
    fn two_host_headers_are_a_bad_request() {
        let g = loopback();
        let two = [("Host", "127.0.0.1:9180"), ("Host", "evil.example")];
        assert_eq!(req(&g, "GET", &two), Some(400));
        let same = [("Host", "127.0.0.1:9180"), ("Host", "127.0.0.1:9180")];
        assert_eq!(req(&g, "GET", &same), Some(400));
    }

    #[test]
    fn an_absolute_form_target_must_name_us_too() {
        let g = loopback();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:9180".parse().unwrap());
        let foreign: Uri = "http://evil.example/api/v1/status".parse().unwrap();
        assert!(g.check(&Method::GET, &foreign, &h).is_some());
        let ours: Uri = "http://127.0.0.1:9180/api/v1/status".parse().unwrap();
        assert!(g.check(&Method::GET, &ours, &h).is_none());
    }
}
