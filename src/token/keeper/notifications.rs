//! Telling people: a refresh that failed (and when it is tried again), a login a person must
//! make. In a fleet, only the leader sends messages.

use std::time::Duration;

use tokio::time::Instant;

use super::{Keeper, TokenState, TRANSIENT_FIRST, TRANSIENT_MAX};
use crate::notify::NotifyEvent;
use crate::token::provider::Provider;

impl<P: Provider> Keeper<P> {
    pub(super) fn fail_transient(&mut self, msg: String) {
        self.transient_failures += 1;
        let wait = TRANSIENT_FIRST
            .saturating_mul(1 << self.transient_failures.min(8).saturating_sub(1))
            .min(TRANSIENT_MAX)
            .max(self.cfg.min_interval);
        tracing::warn!("token refresh failed ({msg}); retrying in {wait:?}");
        self.journal.record_with(
            crate::journal::Kind::TokenRefreshFailed,
            format!("refresh failed ({msg}); retrying in {wait:?}"),
            |e| e.with_reason(msg.as_str()),
        );
        self.retry_at = Some(Instant::now() + wait);
        self.notifier.notify(NotifyEvent::TokenRefreshFailed {
            token: self.token_name().to_string(),
            reason: msg.clone(),
            retry_in_secs: Some(wait.as_secs()),
        });
        self.set_state(TokenState::Expired, Some(msg));
    }

    /// The broker refused a login until a time its rules fix: try again right then. The refused
    /// login is taken off the attempt history (it said nothing about the credentials, and
    /// counting it would exhaust the cap on the broker's clock); the TOTP step stays spent.
    pub(super) fn wait_out_broker_window(&mut self, wait: Duration, msg: String) {
        self.memory.forget_attempt(self.wall_secs());
        let _ = self.save_memory();
        let wait = wait.max(self.cfg.min_interval);
        tracing::warn!("token refresh refused for now ({msg}); retrying in {wait:?}, as the broker's rules allow");
        self.retry_at = Some(Instant::now() + wait);
        self.broker_not_before = self.retry_at;
        self.set_state(TokenState::Expired, Some(msg));
    }

    pub(super) fn needs_login(&mut self, reason: String) {
        if self.status.borrow().state != TokenState::NeedsLogin {
            tracing::warn!("a person must log in: {reason}; open {}", self.login_url);
        }
        let news = {
            let s = self.status.borrow();
            s.state != TokenState::NeedsLogin || s.last_error.as_deref() != Some(reason.as_str())
        };
        if news {
            self.journal.record_with(
                crate::journal::Kind::TokenNeedsLogin,
                format!("a person must log in: {reason}"),
                |e| e.with_reason(reason.as_str()),
            );
        }
        self.coordination.share_needs_login(&reason);
        self.set_state(TokenState::NeedsLogin, Some(reason.clone()));
        if self.coordination.announces() {
            self.notifier.notify(NotifyEvent::TokenNeedsLogin {
                token: self.token_name().to_string(),
                login_url: self.login_url.clone(),
                reason,
            });
        }
    }
}
