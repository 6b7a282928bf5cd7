//! The keeper's account-safety rules around an automated login (SPEC §4.1): the credential
//! block and its persisted memory, the attempt caps, the TOTP step, the clock guard, the
//! kept web session, and the exchange retried with the same request token.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{is_rejection, Keeper, RefreshReason, TokenState};
use crate::notify::NotifyEvent;
use crate::token::attempt_budget::Verdict;
use crate::token::clock_guard::{self, ClockError};
use crate::token::login::Totp;
use crate::token::login_memory::Block;
use crate::token::provider::{Failure, LoginKind, Obtained, Provider, ProviderError};
use crate::token::TokenSource;

/// How often a refused clock is checked again.
const CLOCK_RECHECK: Duration = Duration::from_secs(60);
/// A transiently failed exchange is retried with the same request token, 1 s doubling up to
/// 15 s, for at most this long (Kite's request tokens live a few minutes).
const EXCHANGE_BUDGET: Duration = Duration::from_secs(120);
const EXCHANGE_RETRY_FIRST: Duration = Duration::from_secs(1);
const EXCHANGE_RETRY_MAX: Duration = Duration::from_secs(15);
/// Don't submit a code with less than this left in its step: it could arrive in the next one.
const MIN_CODE_LIFE: u64 = 3;

/// `last_error` while blocked: the reason and what lifts it.
pub(super) fn blocked_message(reason: &str) -> String {
    format!(
        "{reason}; automated login stays off until the credentials change, a manual login succeeds, or `warden token unblock`"
    )
}

impl<P: Provider> Keeper<P> {
    /// The token's name in metrics (SPEC §9.1).
    pub(super) fn token_name(&self) -> String {
        self.cfg.display_name()
    }

    /// The keyed fingerprint of the credentials automation would submit.
    fn fingerprint(&self) -> String {
        self.memory.fingerprint(&self.provider.credentials())
    }

    /// Why automated login may not run for the configured credentials, if it may not.
    pub(super) fn block(&self) -> Option<Block> {
        self.memory.block(&self.fingerprint())
    }

    /// Show the block (or its absence) in the status, for the API's 409.
    pub(super) fn publish_block(&self) {
        let reason = self.block().map(|b| b.reason);
        self.status.send_modify(|s| s.blocked = reason);
    }

    pub(super) fn wall_secs(&self) -> i64 {
        self.clock.now().as_second()
    }

    pub(super) fn save_memory(&self) -> bool {
        match self.memory.save() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("cannot write the login safety memory: {e}");
                false
            }
        }
    }

    /// A credential rejection: never retried, counted against these credentials for good.
    pub(super) fn on_rejection(&mut self, e: &dyn std::fmt::Display) {
        let msg = format!("login rejected: {e}");
        let fp = self.fingerprint();
        let now = self.wall_secs();
        self.memory.reject(&fp, &msg, now);
        self.save_memory();
        tracing::error!(
            "{msg}; automated login is off for these credentials until they change, a manual login succeeds, or `warden token unblock`"
        );
        self.publish_block();
        self.journal.record_with(
            crate::journal::Kind::TokenRefreshFailed,
            format!("{msg}; automated login is off for these credentials"),
            |e| e.with_reason(msg.as_str()),
        );
        self.notifier.notify(NotifyEvent::TokenRefreshFailed {
            token: self.token_name().to_string(),
            reason: msg.clone(),
            retry_in_secs: None,
        });
        self.needs_login(blocked_message(&msg));
    }

    /// `warden token unblock`: lift the block and allow one automated attempt now.
    pub(super) async fn on_unblock(&mut self, reply: oneshot::Sender<Result<(), String>>) {
        let fp = self.fingerprint();
        let step = (self.wall_secs().max(0) as u64) / Totp::STEP_SECS;
        let user = self.provider.expected_user().to_string();
        match self.memory.unblock(&fp) {
            Ok(()) => {
                // After a lost memory, the current step may have been used: skip it.
                if self.memory.last_totp_step(&user).is_none()
                    && self.login_kind() == LoginKind::Totp
                {
                    self.memory.record_totp_step(&user, step);
                }
                self.save_memory();
                self.provider.rearm();
                self.budget.grant_one();
                self.publish_block();
                tracing::info!("credential block lifted by request; one automated attempt allowed");
                self.journal.record(
                    crate::journal::Kind::TokenUnblocked,
                    "credential block lifted by request; one automated attempt allowed",
                );
                let _ = reply.send(Ok(()));
                self.refresh(RefreshReason::Unblock).await;
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }

    pub(super) fn lift_after_manual_login(&mut self) {
        let fp = self.fingerprint();
        if self.memory.lift_after_manual_login(&fp) {
            self.save_memory();
            self.provider.rearm();
            tracing::info!("a manual login succeeded: the credential block is lifted");
            self.journal.record(
                crate::journal::Kind::TokenUnblocked,
                "a manual login succeeded: the credential block is lifted",
            );
        }
        self.publish_block();
    }

    /// `max_attempts` per `attempt_window` and `min_interval`, from the persisted history.
    pub(super) fn within_caps(&mut self) -> bool {
        let now = self.wall_secs();
        match self.budget.check(now, self.memory.attempts(), None) {
            Verdict::Allowed => true,
            Verdict::Capped { attempts, retry_in } => {
                self.retry_at = Some(Instant::now() + retry_in);
                self.needs_login(format!(
                    "{attempts} automated login attempts within {:?}; waiting for a manual login or the window to pass",
                    self.budget.window()
                ));
                false
            }
            Verdict::TooSoon { retry_in } => {
                self.retry_at = Some(Instant::now() + retry_in);
                false
            }
            Verdict::Blocked { reason } => {
                self.needs_login(blocked_message(&reason));
                false
            }
        }
    }

    /// The TOTP step whose code may be submitted now, waiting out the last seconds of a step;
    /// `None` (and a retry scheduled) when this user's code of this step was already sent,
    /// by this warden or by one before a restart.
    pub(super) async fn totp_step(&mut self) -> Option<u64> {
        let mut unix = self.wall_secs().max(0) as u64;
        let left = Totp::STEP_SECS - unix % Totp::STEP_SECS;
        if left < MIN_CODE_LIFE {
            tokio::time::sleep(Duration::from_secs(left)).await;
            unix = (self.wall_secs().max(0) as u64).max(unix + left);
        }
        let step = unix / Totp::STEP_SECS;
        let user = self.provider.expected_user().to_string();
        if self.memory.last_totp_step(&user).is_some_and(|s| s >= step) {
            let wait = Totp::STEP_SECS - unix % Totp::STEP_SECS;
            self.retry_at = Some(Instant::now() + Duration::from_secs(wait));
            return None;
        }
        Some(step)
    }

    /// Persist the attempt before anything is sent: if that cannot be written, nothing is
    /// sent. (The TOTP step is recorded later, right before its code goes out.)
    pub(super) fn record_attempt(&mut self) -> bool {
        let now = self.wall_secs();
        self.memory.record_attempt(now);
        self.budget.spend();
        if self.save_memory() {
            return true;
        }
        self.fail_transient(format!(
            "cannot write {}; no credentials were submitted (a restart must know what was sent)",
            self.memory.path().display()
        ));
        false
    }

    /// A provider's refresh token, before any login: no credentials, not an attempt. `true`:
    /// go on to log in (no refresh token, or it lapsed); `false`: done here (a token was
    /// obtained, or something was reported and a retry scheduled).
    pub(super) async fn try_refresh_token(&mut self) -> bool {
        if !self.provider.can_refresh() {
            return true;
        }
        // It creates a session all the same: in a fleet only a confirmed leader may use it.
        if !self.coordination.may_log_in().await {
            return false;
        }
        let Some(result) = self.provider.refresh().await else {
            return true;
        };
        let obtained = match result {
            Ok(o) => o,
            Err(e) if e.failure() == Failure::TokenBad => {
                tracing::info!("the refresh token no longer works ({e}); logging in instead");
                return true;
            }
            Err(e) if is_rejection(e.failure()) => {
                self.on_rejection(&e);
                return false;
            }
            Err(e) => {
                self.fail_transient(e.to_string());
                return false;
            }
        };
        self.retry_at = None;
        self.metrics.inc_login_attempt("refresh_token");
        self.set_state(TokenState::Refreshing, None);
        match self.record(obtained, TokenSource::RefreshToken).await {
            Err(e) if e.failure() == Failure::TokenBad => {
                tracing::info!("the refreshed token was refused ({e}); logging in instead");
                true
            }
            r => {
                self.conclude("refresh_token", r).await;
                false
            }
        }
    }

    /// Ask with the kept web session (SPEC §4.1) and check the clock. `true`: go on to a
    /// login with credentials (the clock is fine); `false`: done here (a token was obtained,
    /// or something was reported and a retry scheduled).
    pub(super) async fn try_session(&mut self) -> bool {
        let probe = match self.provider.resume_session().await {
            Ok(p) => p,
            Err(e) if is_rejection(e.failure()) => {
                self.on_rejection(&e);
                return false;
            }
            Err(e) => {
                self.fail_transient(e.to_string());
                return false;
            }
        };
        let skew = clock_guard::check(probe.clock);
        match &skew {
            Ok(Some(s)) | Err(ClockError::Skewed { skew: s }) => {
                self.metrics.set_clock_skew(&self.token_name(), *s)
            }
            _ => {}
        }
        if let Some(request_token) = probe.request_token {
            tracing::info!("the broker's web session is still good: no credentials needed");
            self.retry_at = None;
            self.metrics.inc_login_attempt("session");
            self.set_state(TokenState::Refreshing, None);
            let started = Instant::now();
            let result = self.redeem(&request_token, TokenSource::Session).await;
            self.metrics
                .observe_refresh_duration(started.elapsed().as_secs_f64());
            match result {
                // A stale request token says nothing about the credentials: log in instead.
                Err(e) if e.failure() == Failure::TokenBad => {
                    tracing::info!("the web session's request token was refused ({e})");
                }
                r => {
                    self.conclude("session", r).await;
                    return false;
                }
            }
        }
        if let Err(e) = skew {
            tracing::error!("{e}");
            self.needs_login(e.to_string());
            self.retry_at = Some(Instant::now() + CLOCK_RECHECK);
            return false;
        }
        true
    }

    /// `POST /session/token`, retried with the same request token after a transient failure
    /// (5xx, 429, timeout, reset) while the token can still be valid: a new login would cost
    /// a TOTP step.
    pub(super) async fn exchange_with_retry(
        &mut self,
        request_token: &str,
    ) -> Result<Obtained, P::Error> {
        let started = Instant::now();
        let mut wait = EXCHANGE_RETRY_FIRST;
        loop {
            match self.provider.exchange(request_token).await {
                Err(e)
                    if e.failure() == Failure::Transient
                        && started.elapsed() + wait < EXCHANGE_BUDGET =>
                {
                    tracing::warn!(
                        "session exchange failed ({e}); retrying with the same request token in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(EXCHANGE_RETRY_MAX);
                }
                r => return r,
            }
        }
    }
}
