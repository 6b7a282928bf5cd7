//! Getting a token from the provider: an automated login and what its grant needs (an
//! exchange, a validation), and the manual login's callback.

use super::{CallbackError, Keeper, LoginError};
use crate::config::Secret;
use crate::token::provider::{Grant, Identity, LoginKind, Obtained, Provider};
use crate::token::{TokenRecord, TokenSource};

impl<P: Provider> Keeper<P> {
    /// One automated login with the provider, then the exchange and validation it needs.
    pub(super) async fn obtain(
        &mut self,
        step: Option<u64>,
    ) -> Result<TokenRecord, LoginError<P::Error>> {
        let source = match self.login_kind() {
            LoginKind::Command => TokenSource::Command,
            LoginKind::Approve => TokenSource::Approve,
            LoginKind::Manual => TokenSource::Manual,
            LoginKind::Totp | LoginKind::None => TokenSource::Totp,
        };
        let user = self.provider.expected_user().to_string();
        let memory = &mut self.memory;
        let mut record = || {
            let Some(step) = step else { return true };
            memory.record_totp_step(&user, step);
            match memory.save() {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!("not submitting a TOTP code: {e}");
                    false
                }
            }
        };
        let grant = self
            .provider
            .login(step, &mut record)
            .await
            .map_err(LoginError::Provider)?;
        match grant {
            Grant::Code(code) => self.redeem(&code, source).await,
            Grant::Token(obtained) => self.record(obtained, source).await,
            Grant::Pending => Err(LoginError::AwaitingApproval),
        }
    }

    /// Exchange a one-time code (retrying transient failures with the same code) and
    /// validate the token.
    pub(super) async fn redeem(
        &mut self,
        code: &Secret,
        source: TokenSource,
    ) -> Result<TokenRecord, LoginError<P::Error>> {
        let obtained = self
            .exchange_with_retry(code.expose())
            .await
            .map_err(LoginError::Provider)?;
        self.record(obtained, source).await
    }

    /// Validate what a login or a refresh obtained and date it.
    pub(super) async fn record(
        &mut self,
        obtained: Obtained,
        source: TokenSource,
    ) -> Result<TokenRecord, LoginError<P::Error>> {
        let identity = self.check(&obtained.access_token).await?;
        let mut rec = self.record_of(obtained.access_token, identity, source);
        rec.companions = obtained.companions;
        Ok(rec)
    }

    /// A token the broker accepted (or that nobody can check), dated now.
    pub(super) fn record_of(
        &self,
        token: Secret,
        identity: Option<Identity>,
        source: TokenSource,
    ) -> TokenRecord {
        let now = self.clock.now();
        let identity = identity.unwrap_or_default();
        TokenRecord {
            access_token: token,
            user_id: identity.user_id,
            obtained_at: now.as_second(),
            expires_at: identity
                .expires_at
                .unwrap_or_else(|| self.expiry_after(now).as_second()),
            source,
            companions: Default::default(),
        }
    }

    pub(super) async fn on_callback(&mut self, request_token: &str) -> Result<(), CallbackError> {
        if self.provider.login_url(None).is_none() {
            return Err(CallbackError::NotKite);
        }
        self.metrics.inc_login_attempt("manual");
        let provider_error = |e: P::Error| CallbackError::Broker(Box::new(e));
        let obtained = self
            .exchange_with_retry(request_token)
            .await
            .map_err(provider_error)?;
        let expected = self.provider.expected_user().to_string();
        if !expected.is_empty() && obtained.user_id != expected {
            tracing::warn!(got = %obtained.user_id, "manual login by another broker user refused; logging that session out");
            let _ = self.provider.logout(&obtained.access_token).await;
            return Err(CallbackError::WrongUser);
        }
        let identity = self
            .provider
            .validate(&obtained.access_token)
            .await
            .map_err(provider_error)?;
        let now = self.clock.now();
        let rec = TokenRecord {
            access_token: obtained.access_token,
            user_id: obtained.user_id,
            obtained_at: now.as_second(),
            expires_at: identity
                .expires_at
                .unwrap_or_else(|| self.expiry_after(now).as_second()),
            source: TokenSource::Manual,
            companions: obtained.companions,
        };
        self.commit(rec).await?;
        self.lift_after_manual_login();
        self.retry_at = None;
        self.metrics.inc_refresh("success", "manual");
        Ok(())
    }
}
