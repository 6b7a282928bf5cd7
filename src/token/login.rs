//! The automated TOTP login of SPEC §1, built so that it cannot lock the account:
//!
//! 1. `POST {login_base}/api/login` (user_id, password) → `request_id`, `twofa_type`;
//! 2. `POST {login_base}/api/twofa` with the current TOTP code;
//! 3. `GET {login_base}/connect/login?v=3&api_key=K` with the same cookies, following
//!    `Location` headers by hand (at most [`MAX_HOPS`]) until one carries `request_token`.
//!    The final redirect (the app's redirect URL) is parsed, never fetched.
//!
//! Safety rules, enforced here rather than left to callers:
//! - one attempt per call, no internal retry of any credential step;
//! - a TOTP code that was submitted once (accepted, rejected or lost to a timeout) is never
//!   submitted again: [`TotpLogin::login`] returns [`BrokerError::TotpCodeUsed`] with the
//!   time until the next 30 s step *before touching the network*, and the caller waits;
//! - after a `Credential`-class failure the [`TotpLogin`] disables itself
//!   ([`BrokerError::LoginDisabled`]) until [`TotpLogin::rearm`] or a new `TotpLogin` (a config
//!   change). Keep ONE `TotpLogin` per api_key for the life of the config: a fresh one per
//!   attempt would forget both memories.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::clock_guard::{parse_http_date, BrokerClock};
use super::kite::{
    decode, encode, http_client, redact_url, send, transport_error, BrokerError, ErrorClass, Step,
};
use crate::config::{KiteConfig, Secret};

/// Redirects followed after `/connect/login` before giving up.
pub const MAX_HOPS: usize = 10;
/// Don't submit a code with less than this left in its step: it could arrive in the next one.
const MIN_CODE_LIFE: u64 = 3;
/// How many submitted codes to remember (a few minutes' worth is plenty).
const REMEMBERED_CODES: usize = 16;

/// RFC 6238 TOTP as Kite uses it: HMAC-SHA-1, 30 s steps, 6 digits. `Debug` is redacted.
#[derive(Clone)]
pub struct Totp {
    inner: totp_rs::TOTP,
}

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Totp(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the TOTP secret is not valid base32")]
pub struct InvalidTotpSecret;

impl Totp {
    pub const STEP_SECS: u64 = 30;

    /// A base32 secret as authenticator apps show it; spaces, dashes, `=` padding and
    /// lowercase are accepted.
    pub fn from_base32(secret: &str) -> Result<Totp, InvalidTotpSecret> {
        let clean: String = secret
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '=' | '\t' | '\n' | '\r'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let key = totp_rs::Secret::Encoded(clean)
            .to_bytes()
            .map_err(|_| InvalidTotpSecret)?;
        if key.is_empty() {
            return Err(InvalidTotpSecret);
        }
        let inner = totp_rs::TOTP::new_unchecked(
            totp_rs::Algorithm::SHA1,
            6,
            0,
            Self::STEP_SECS,
            key,
            None,
            String::new(),
        );
        Ok(Totp { inner })
    }

    /// The code of the step containing `unix_secs`.
    pub fn code_at(&self, unix_secs: u64) -> String {
        self.inner.generate(unix_secs)
    }

    /// The code of step number `step` (`unix_secs / 30`).
    pub fn code_of_step(&self, step: u64) -> String {
        self.inner.generate(step * Self::STEP_SECS)
    }

    pub fn current(&self) -> String {
        self.code_at(unix_now())
    }

    pub fn step_of(unix_secs: u64) -> u64 {
        unix_secs / Self::STEP_SECS
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Deserialize)]
struct LoginData {
    request_id: String,
    #[serde(default)]
    twofa_type: Option<String>,
}

/// The automated login for one Kite user and app. See the module docs for its rules.
pub struct TotpLogin {
    login_base: String,
    api_key: String,
    user_id: String,
    password: Secret,
    totp: Totp,
    timeout: Duration,
    /// Codes already submitted, newest last.
    submitted: VecDeque<String>,
    disabled: Option<String>,
    /// The cookies (Kite web session) of the last successful login, in memory only: a later
    /// login first asks `/connect/login` with them (SPEC §4.1).
    web_session: Option<Arc<reqwest::cookie::Jar>>,
}

/// What `/connect/login` answered to the kept web session.
#[derive(Debug, Default)]
pub struct SessionProbe {
    /// The broker still knew the session and handed out a request token: no credentials
    /// needed.
    pub request_token: Option<Secret>,
    /// The broker's clock, from the first answer's `Date` header.
    pub clock: BrokerClock,
}

/// Where the walk from `/connect/login` ended.
enum ConnectEnd {
    RequestToken(Secret),
    /// The broker showed its login page: it wants credentials.
    LoginPage,
}

impl std::fmt::Debug for TotpLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpLogin")
            .field("login_base", &self.login_base)
            .field("api_key", &self.api_key)
            .field("user_id", &self.user_id)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

impl TotpLogin {
    /// Needs `login_base`, `api_key`, `user_id`, `password` and a base32 `totp_secret`.
    pub fn new(cfg: &KiteConfig) -> Result<TotpLogin, BrokerError> {
        let missing = [
            ("api_key", cfg.api_key.is_empty()),
            ("user_id", cfg.user_id.is_empty()),
            ("password", cfg.password.is_empty()),
            ("totp_secret", cfg.totp_secret.is_empty()),
        ];
        if let Some((name, _)) = missing.iter().find(|(_, empty)| *empty) {
            return Err(BrokerError::Config(format!(
                "token.kite.{name} is required for login = \"totp\""
            )));
        }
        let totp = Totp::from_base32(cfg.totp_secret.expose())
            .map_err(|e| BrokerError::Config(format!("token.kite.totp_secret: {e}")))?;
        Ok(TotpLogin {
            login_base: cfg.login_base.trim_end_matches('/').to_string(),
            api_key: cfg.api_key.clone(),
            user_id: cfg.user_id.clone(),
            password: cfg.password.clone(),
            totp,
            timeout: super::kite::DEFAULT_TIMEOUT,
            submitted: VecDeque::new(),
            disabled: None,
            web_session: None,
        })
    }

    /// Per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> TotpLogin {
        self.timeout = timeout;
        self
    }

    /// `Some(wait)` when the current code was already submitted: no attempt can start before
    /// `wait` has passed. `None`: [`Self::login`] may run now.
    pub fn fresh_code_in(&self) -> Option<Duration> {
        let now = unix_now();
        let code = self.totp.code_at(now);
        self.submitted
            .contains(&code)
            .then(|| Duration::from_secs(Totp::STEP_SECS - now % Totp::STEP_SECS))
    }

    /// Why automated login is off, if it is.
    pub fn disabled_reason(&self) -> Option<&str> {
        self.disabled.as_deref()
    }

    /// Allow attempts again after a credential rejection. Call only when a person asked for
    /// it (or the credentials changed); the memory of submitted codes is kept.
    pub fn rearm(&mut self) {
        self.disabled = None;
    }

    /// One login attempt → the `request_token` (single-use, valid a few minutes); exchange it
    /// with [`super::kite::KiteClient::exchange`]. Never retries anything itself.
    pub async fn login(&mut self) -> Result<Secret, BrokerError> {
        self.login_with(None, &mut || true).await
    }

    /// Like [`Self::login`], submitting the code of TOTP step `step`. `record` runs right
    /// before the code is sent and must persist that the step is used; `false` from it sends
    /// nothing ([`BrokerError::StepNotRecorded`]).
    pub async fn login_at(
        &mut self,
        step: u64,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Secret, BrokerError> {
        self.login_with(Some(step), record).await
    }

    /// Ask `/connect/login` with the web session of the last successful login (or none):
    /// a request token when the broker still knows the session, else `None` (the broker
    /// wants credentials). Submits no credentials; also reads the broker's clock.
    pub async fn resume_session(&mut self) -> Result<SessionProbe, BrokerError> {
        let jar = self.web_session.clone().unwrap_or_default();
        let http = http_client(self.timeout, Some(jar))?;
        let (end, clock) = self.follow_connect(&http, true).await?;
        let request_token = match end {
            ConnectEnd::RequestToken(t) => Some(t),
            ConnectEnd::LoginPage => {
                // The broker forgot it (logout, daily expiry): no use asking with it again.
                self.web_session = None;
                None
            }
        };
        Ok(SessionProbe {
            request_token,
            clock,
        })
    }

    /// Whether a web session from an earlier login is kept.
    pub fn has_web_session(&self) -> bool {
        self.web_session.is_some()
    }

    async fn login_with(
        &mut self,
        step: Option<u64>,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Secret, BrokerError> {
        if let Some(reason) = &self.disabled {
            return Err(BrokerError::LoginDisabled {
                reason: reason.clone(),
            });
        }
        let used = match step {
            Some(s) => self
                .submitted
                .contains(&self.totp.code_of_step(s))
                .then(|| Duration::from_secs(Totp::STEP_SECS - unix_now() % Totp::STEP_SECS)),
            None => self.fresh_code_in(),
        };
        if let Some(retry_in) = used {
            return Err(BrokerError::TotpCodeUsed { retry_in });
        }
        let result = self.attempt(step, record).await;
        if let Err(e) = &result {
            if e.class() == ErrorClass::Credential {
                self.disabled = Some(e.to_string());
            }
        }
        result
    }

    async fn attempt(
        &mut self,
        step: Option<u64>,
        record: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Secret, BrokerError> {
        // A fresh cookie jar per attempt: the Kite web session lives only for this login.
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = http_client(self.timeout, Some(jar.clone()))?;
        let totp_step = step;

        let step = Step::Login;
        let url = format!("{}/api/login", self.login_base);
        let req = http.post(&url).form(&[
            ("user_id", self.user_id.as_str()),
            ("password", self.password.expose()),
        ]);
        let (status, body) = send(step, req, &url, self.timeout).await?;
        let login: LoginData = decode(step, status, &body)?;
        let twofa_type = login.twofa_type.unwrap_or_else(|| "totp".into());
        if twofa_type != "totp" {
            return Err(BrokerError::UnexpectedFlow {
                step,
                detail: format!(
                    "the account's 2FA type is {twofa_type:?}; automated login needs \"totp\""
                ),
            });
        }

        let code = match totp_step {
            Some(s) => self.totp.code_of_step(s),
            None => self.usable_code().await?,
        };
        // Remember before sending: a lost answer must not lead to a second submission.
        self.remember(code.clone());
        if !record() {
            return Err(BrokerError::StepNotRecorded);
        }
        let step = Step::Twofa;
        let url = format!("{}/api/twofa", self.login_base);
        let req = http.post(&url).form(&[
            ("user_id", self.user_id.as_str()),
            ("request_id", login.request_id.as_str()),
            ("twofa_value", code.as_str()),
            ("twofa_type", twofa_type.as_str()),
            ("skip_session", "true"),
        ]);
        let (status, body) = send(step, req, &url, self.timeout).await?;
        let _: serde_json::Value = decode(step, status, &body)?;

        match self.follow_connect(&http, false).await?.0 {
            ConnectEnd::RequestToken(t) => {
                self.web_session = Some(jar);
                Ok(t)
            }
            ConnectEnd::LoginPage => Err(BrokerError::UnexpectedFlow {
                step: Step::Connect,
                detail: "the broker showed its login page again right after a successful 2FA"
                    .into(),
            }),
        }
    }

    /// The current code, if it was never submitted; waits out the last seconds of a step so
    /// the code cannot expire on its way.
    async fn usable_code(&self) -> Result<String, BrokerError> {
        let mut now = unix_now();
        let left = Totp::STEP_SECS - now % Totp::STEP_SECS;
        if left < MIN_CODE_LIFE {
            tokio::time::sleep(Duration::from_secs(left)).await;
            now = unix_now().max(now + left);
        }
        let code = self.totp.code_at(now);
        if self.submitted.contains(&code) {
            let retry_in = Duration::from_secs(Totp::STEP_SECS - now % Totp::STEP_SECS);
            return Err(BrokerError::TotpCodeUsed { retry_in });
        }
        Ok(code)
    }

    fn remember(&mut self, code: String) {
        if self.submitted.len() == REMEMBERED_CODES {
            self.submitted.pop_front();
        }
        self.submitted.push_back(code);
    }

    /// `probe`: the walk of [`Self::resume_session`], where a login page is an answer (the
    /// broker wants credentials) rather than a changed flow.
    async fn follow_connect(
        &self,
        http: &reqwest::Client,
        probe: bool,
    ) -> Result<(ConnectEnd, BrokerClock), BrokerError> {
        let mut clock = BrokerClock::Missing;
        let step = Step::Connect;
        let bad_base =
            |e: url::ParseError| BrokerError::Config(format!("token.kite.login_base: {e}"));
        let base = url::Url::parse(&self.login_base).map_err(bad_base)?;
        let mut url = base
            .join(&format!(
                "/connect/login?v=3&api_key={}",
                encode(&self.api_key)
            ))
            .map_err(bad_base)?;
        for _ in 0..MAX_HOPS {
            let resp = http
                .get(url.as_str())
                .send()
                .await
                .map_err(|e| transport_error(step, url.as_str(), self.timeout, e))?;
            let status = resp.status().as_u16();
            if clock == BrokerClock::Missing {
                if let Some(broker) = resp
                    .headers()
                    .get(reqwest::header::DATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_http_date)
                {
                    clock = BrokerClock::Read {
                        broker,
                        local: jiff::Timestamp::now(),
                    };
                }
            }
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let Some(location) = location.filter(|_| (300..400).contains(&status)) else {
                let body = resp
                    .text()
                    .await
                    .map_err(|e| transport_error(step, url.as_str(), self.timeout, e))?;
                // Kite's error envelope (an unknown api_key, …) or an error status speaks for
                // itself; anything else is a page where a redirect belongs (a first-time app
                // authorization, a changed flow): a person has to look.
                return match decode::<serde_json::Value>(step, status, &body) {
                    Err(e @ (BrokerError::Rejected { .. } | BrokerError::HttpStatus { .. })) => {
                        Err(e)
                    }
                    _ if probe && status == 200 => Ok((ConnectEnd::LoginPage, clock)),
                    _ => Err(BrokerError::UnexpectedFlow {
                        step,
                        detail: format!(
                            "{} answered HTTP {status} instead of redirecting to the app",
                            redact_url(url.as_str())
                        ),
                    }),
                };
            };
            let next = url
                .join(&location)
                .map_err(|_| BrokerError::UnexpectedFlow {
                    step,
                    detail: "unreadable Location header".into(),
                })?;
            if let Some(found) = request_token_of(&next) {
                // The app's redirect URL: parsed, never fetched.
                return found
                    .map(|t| (ConnectEnd::RequestToken(t), clock))
                    .map_err(|detail| BrokerError::UnexpectedFlow { step, detail });
            }
            if next.origin() != base.origin() {
                return Err(BrokerError::UnexpectedFlow {
                    step,
                    detail: format!(
                        "redirected to {} without a request_token",
                        redact_url(next.as_str())
                    ),
                });
            }
            url = next;
        }
        Err(BrokerError::UnexpectedFlow {
            step,
            detail: format!("no request_token after {MAX_HOPS} redirects"),
        })
    }
}

/// What to make of one `Location` on the way to the request token.
fn request_token_of(location: &url::Url) -> Option<Result<Secret, String>> {
    let mut token = None;
    let mut status = None;
    for (k, v) in location.query_pairs() {
        match k.as_ref() {
            "request_token" => token = Some(v.into_owned()),
            "status" => status = Some(v.into_owned()),
            _ => {}
        }
    }
    let token = token?;
    Some(match status.as_deref() {
        Some("success") | None if !token.is_empty() => Ok(Secret::new(token)),
        _ => Err(format!(
            "redirect to {} reports status {:?}",
            redact_url(location.as_str()),
            status.unwrap_or_default()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 key "12345678901234567890", last 6 digits.
        let key = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        let t = Totp::from_base32(key).unwrap();
        assert_eq!(t.code_at(59), "287082");
        assert_eq!(t.code_at(1111111109), "081804");
        assert_eq!(t.code_at(1234567890), "005924");
        assert_eq!(t.code_at(20000000000), "353130");
        let spaced = Totp::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(spaced.code_at(59), "287082");
        assert!(Totp::from_base32("not base32!").is_err());
        assert!(Totp::from_base32("").is_err());
    }

    #[test]
    fn request_token_parsing() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let ok = request_token_of(&u(
            "http://x/cb?request_token=R1&action=login&status=success",
        ));
        assert_eq!(ok.unwrap().unwrap().expose(), "R1");
        assert!(request_token_of(&u("http://x/connect/finish?sess_id=1")).is_none());
        assert!(
            request_token_of(&u("http://x/cb?request_token=R&status=error"))
                .unwrap()
                .is_err()
        );
    }
}
