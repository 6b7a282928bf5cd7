//! Start-up selection: reuse a still-valid token (the fleet's, the env file's, token.json's)
//! rather than logging in again, since a new login kills the token other copies of the stack
//! may be using.

use std::time::Duration;

use super::{Keeper, RefreshReason, TokenState};
use crate::config::Secret;
use crate::token::provider::{Failure, Provider};
use crate::token::{store, TokenRecord, TokenSource};

/// How long start-up waits for the first fleet election before deciding anything.
const FLEET_SETTLE: Duration = Duration::from_secs(3);

impl<P: Provider> Keeper<P> {
    /// Reuse a still-valid token (token.json, then the env file) rather than logging in again:
    /// a new login would kill the token other copies of the stack may be using.
    pub(super) async fn startup(&mut self) {
        match &self.cfg.env_file_link {
            Some(link) => tracing::info!(
                "token env file: {} (the symlink {} points at it; warden writes and watches this file)",
                self.cfg.env_file.display(),
                link.display()
            ),
            None => tracing::info!("token env file: {}", self.cfg.env_file.display()),
        }
        self.check_env_file_mode();
        store::remove_stale_temp_files(&self.cfg.env_file);
        let token_json = self.cfg.token_json_path(&self.state_dir);
        store::remove_stale_temp_files(&token_json);
        store::remove_stale_temp_files(self.memory.path());
        let stored = match store::read_token_json_file(&token_json) {
            Ok(rec) => rec,
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", token_json.display());
                None
            }
        };
        // What came with the last token (a refresh token) outlives it: hand it back now, so
        // that a token that died while warden was down can be renewed without a person.
        if let Some(rec) = &stored {
            self.provider.remember(&rec.companions);
        }
        // Fleet mode: the shared token is the fleet's truth; try it before anything local.
        let mut candidates = Vec::new();
        if let Some(f) = self.coordination.fleet().cloned() {
            f.settled(FLEET_SETTLE).await;
            match f.read_token().await {
                Ok(Some(shared)) => candidates.push((shared.rec, shared.fence)),
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot read the shared token: {e}"),
            }
        }
        // The env file is written before token.json, so when they differ the env file is the
        // newer one (or someone else's): try it first, token.json only as a fallback.
        if let Ok(Some(v)) = store::read_env_value(&self.cfg.env_file, &self.cfg.env_key) {
            match &stored {
                Some(rec) if rec.access_token.expose() == v => {}
                _ if v.is_empty() => {}
                _ => {
                    let now = self.clock.now();
                    candidates.push((
                        TokenRecord {
                            access_token: Secret::new(v),
                            user_id: String::new(),
                            obtained_at: now.as_second(),
                            expires_at: self.expiry_after(now).as_second(),
                            source: TokenSource::EnvFile,
                            companions: Default::default(),
                        },
                        0,
                    ));
                }
            }
        }
        candidates.extend(stored.map(|rec| (rec, 0)));
        let mut seen: Vec<Secret> = Vec::new();
        for (rec, fence) in candidates {
            if seen.contains(&rec.access_token) {
                continue;
            }
            seen.push(rec.access_token.clone());
            match self.check(&rec.access_token).await {
                Ok(identity) => {
                    let mut rec = rec;
                    if let Some(id) = identity {
                        rec.user_id = id.user_id;
                        if let Some(exp) = id.expires_at {
                            rec.expires_at = exp;
                        }
                    }
                    tracing::info!(
                        source = rec.source.as_str(),
                        "reusing the stored token: the broker accepts it"
                    );
                    if let Err(e) = self.install(rec, false) {
                        tracing::error!("cannot store the token: {e}");
                        continue;
                    }
                    self.current_fence = fence;
                    return;
                }
                Err(e) if e.failure() == Failure::Transient => {
                    // Broker unreachable: keep the token we have, validation will tell later.
                    tracing::warn!("cannot validate the stored token now ({e}); using it until the broker answers");
                    let _ = self.install(rec, false);
                    self.current_fence = fence;
                    self.set_state(TokenState::Unknown, Some(e.to_string()));
                    return;
                }
                Err(e) => {
                    tracing::info!("stored token is no longer valid ({e})");
                    self.journal.record(
                        crate::journal::Kind::TokenInvalid,
                        format!(
                            "the stored token (source: {}) is no longer valid ({e})",
                            rec.source.as_str()
                        ),
                    );
                }
            }
        }
        self.set_state(TokenState::Expired, None);
        self.refresh(RefreshReason::Startup).await;
    }
}
