//! Telling people: a refresh that failed (and when it is tried again), a login a person must
//! make. In a fleet, only the leader sends messages.

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
            reason: msg.clone(),
        });
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
        self.set_state(TokenState::NeedsLogin, Some(reason));
        if self.coordination.announces() {
            self.notifier.notify(NotifyEvent::TokenNeedsLogin {
                login_url: self.login_url.clone(),
            });
        }
    }
}
