//! Approve-style logins (Upstox's Access Token Request): the request waits for a person, and
//! the broker later posts the token to warden.
//!
//! While a request is open nothing sends another one (a person is asked once, not in a loop);
//! after it lapses, the next trigger or the schedule may send a new one, within the attempt
//! budget like any login. A posted token is taken only while a request is open, only for
//! this app and the configured user, and only after the broker's profile answers for that
//! user with it: anyone can post, and a forged post must never reach the env file.

use std::time::Duration;

use super::{rfc3339, DeliveryError, Failure, Keeper, LoginError, TokenState};
use crate::notify::NotifyEvent;
use crate::token::provider::{DeliveryRefused, Provider};
use crate::token::TokenSource;

/// A transiently failed profile check of a posted token is retried this often, this many
/// times (the broker posts once; the keeper does nothing else meanwhile, so briefly).
const CHECK_RETRIES: u32 = 3;
const CHECK_RETRY_WAIT: Duration = Duration::from_secs(1);

impl<P: Provider> Keeper<P> {
    /// `true` while a request sent earlier is still open: the status says what the person
    /// must do, and no new request goes out.
    pub(super) fn awaiting_approval(&mut self) -> bool {
        let Some(p) = self.provider.pending_approval() else {
            return false;
        };
        if p.expires_at <= self.clock.now().as_second() {
            return false;
        }
        let until =
            rfc3339(p.expires_at).map_or_else(String::new, |t| format!(" (open until {t})"));
        let reason = format!("{}{until}", p.ask);
        if self.status.borrow().state != TokenState::NeedsLogin {
            tracing::warn!(
                "a person must act: {reason}; or log in at {}",
                self.login_url
            );
        }
        self.coordination.share_needs_login(&reason);
        self.set_state(TokenState::NeedsLogin, Some(reason.clone()));
        if self.coordination.announces() {
            // A person is needed (to tap Approve, or to log in by hand instead).
            self.notifier.notify(NotifyEvent::TokenNeedsLogin {
                token: self.token_name(),
                login_url: self.login_url.clone(),
                reason,
            });
        }
        true
    }

    /// A token the broker posted (`POST /upstox/notify`).
    pub(super) async fn on_delivery(&mut self, body: &[u8]) -> Result<(), DeliveryError> {
        if self.following().is_some() {
            return Err(DeliveryError::Follower);
        }
        let open = self
            .provider
            .pending_approval()
            .is_some_and(|p| p.expires_at > self.clock.now().as_second());
        if !open {
            return Err(DeliveryRefused::NotPending.into());
        }
        let obtained = self.provider.take_delivery(body)?;
        let mut tries = 0;
        let identity = loop {
            match self.check(&obtained.access_token).await {
                Ok(identity) => break identity,
                Err(LoginError::WrongUser { got, .. }) => {
                    tracing::warn!(got = %got, "a posted token of another broker user was refused");
                    return Err(DeliveryError::WrongUser);
                }
                Err(e) if e.failure() == Failure::Transient && tries < CHECK_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(CHECK_RETRY_WAIT * tries).await;
                }
                Err(e) if e.failure() == Failure::Transient => {
                    return Err(DeliveryError::Unavailable(e.to_string()))
                }
                Err(e) => return Err(DeliveryError::TokenRefused(e.to_string())),
            }
        };
        // Nobody could be asked: a token nobody vouched for is never taken from a post.
        let Some(identity) = identity else {
            return Err(DeliveryError::TokenRefused(
                "the broker cannot be asked about it".into(),
            ));
        };
        let mut rec = self.record_of(obtained.access_token, Some(identity), TokenSource::Approve);
        rec.companions = obtained.companions;
        self.commit(rec).await?;
        self.provider.approval_settled();
        // A person approved: like a manual login, that proves the app's credentials.
        self.lift_after_manual_login();
        self.retry_at = None;
        self.transient_failures = 0;
        self.metrics.inc_refresh("success", "approve");
        tracing::info!(
            "the approved token was delivered, checked with the broker and put in place"
        );
        Ok(())
    }
}
