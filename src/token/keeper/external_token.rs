//! Tokens someone else wrote into the env file (a refresh script, a person): validated, and
//! adopted when the broker accepts them, exactly as if warden had obtained them (SPEC §4).

use super::{Keeper, TokenState};
use crate::config::Secret;
use crate::token::fleet::Request;
use crate::token::provider::Provider;
use crate::token::{store, TokenSource};

impl<P: Provider> Keeper<P> {
    pub(super) async fn on_env_change(&mut self, tok: Secret) {
        if self.current.as_ref().is_some_and(|c| c.access_token == tok) {
            return;
        }
        tracing::info!(
            "{} changed by someone else; validating the new token",
            self.cfg.env_file.display()
        );
        match self.check(&tok).await {
            Ok(identity) => {
                let rec = self.record_of(tok, identity, TokenSource::EnvFile);
                if let Some(f) = self.following() {
                    // Adopt it here now; the leader validates it again and shares it.
                    let req = Request::Adopt {
                        access_token: rec.access_token.expose().to_string(),
                        from: f.id().to_string(),
                    };
                    if let Err(e) = f.request(&req).await {
                        tracing::warn!("cannot hand the external token to the fleet leader: {e}");
                    }
                    if let Err(e) = self.install(rec, true) {
                        tracing::error!("cannot adopt the external token: {e}");
                    }
                } else if let Err(e) = self.commit(rec).await {
                    tracing::error!("cannot adopt the external token: {e}");
                }
            }
            Err(e) => tracing::warn!("ignoring the external token: {e}"),
        }
    }

    /// Someone else (a refresh script) may have just written a new token into the env file,
    /// and the watcher's event may still be on its way: a login now would kill that token.
    /// Adopt it instead when the broker accepts it.
    pub(super) async fn adopt_external_token(&mut self) -> bool {
        let Ok(Some(v)) = store::read_env_value(&self.cfg.env_file, &self.cfg.env_key) else {
            return false;
        };
        let known = self
            .current
            .as_ref()
            .is_some_and(|c| c.access_token.expose() == v);
        if v.is_empty() || known {
            return false;
        }
        let tok = Secret::new(v);
        if self.check(&tok).await.is_err() {
            return false;
        }
        self.on_env_change(tok).await;
        self.current
            .as_ref()
            .is_some_and(|c| c.source == TokenSource::EnvFile)
            && self.status.borrow().state == TokenState::Valid
    }
}
