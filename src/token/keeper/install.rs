//! Putting a token in place: the env file, then token.json, then the status and the metrics,
//! then (for a new token) the supervisor and the notifier.

use std::sync::atomic::Ordering;

use super::{rfc3339, Keeper, KeeperEvent, TokenState};
use crate::notify::NotifyEvent;
use crate::token::provider::Provider;
use crate::token::{store, TokenRecord};

impl<P: Provider> Keeper<P> {
    pub(super) fn set_state(&self, state: TokenState, last_error: Option<String>) {
        let next = self.next_refresh_at();
        self.status.send_modify(|s| {
            s.state = state;
            if last_error.is_some() || state == TokenState::Valid {
                s.last_error = last_error;
            }
            s.next_refresh_at = rfc3339(next.as_second());
        });
        self.metrics.set_token_valid(state == TokenState::Valid);
        if state == TokenState::Valid {
            self.notifier.token_valid(&self.token_name());
        }
    }

    /// Keep the status page's warning about a group- or world-readable env file current (the
    /// config check and the start-up log say it too; the file's mode can change any time).
    pub(super) fn check_env_file_mode(&self) {
        let warning = crate::config::env_file::readable_by_others(&self.cfg.env_file);
        self.status.send_if_modified(|s| {
            let changed = s.env_file_warning != warning;
            s.env_file_warning = warning;
            changed
        });
    }

    /// Write the token (env file, then token.json), publish it, and (when `announce`) tell
    /// the supervisor so programs get it.
    pub(super) fn install(
        &mut self,
        rec: TokenRecord,
        announce: bool,
    ) -> Result<(), store::StoreError> {
        if let Some(w) = &self.env_watch {
            w.set_known(&rec.access_token);
        }
        // Companion values first: a program that reloads when the token changes must find the
        // ones that belong to it already there.
        for (key, value) in &rec.companions.env {
            store::rewrite_env_file(&self.cfg.env_file, key, value.expose())?;
        }
        let on_disk = store::read_env_value(&self.cfg.env_file, &self.cfg.env_key)
            .ok()
            .flatten();
        if on_disk.as_deref() != Some(rec.access_token.expose()) {
            store::rewrite_env_file(
                &self.cfg.env_file,
                &self.cfg.env_key,
                rec.access_token.expose(),
            )?;
        }
        self.check_env_file_mode();
        if let Err(e) =
            store::write_token_json_file(&self.cfg.token_json_path(&self.state_dir), &rec)
        {
            // The env file has it, which is what programs need; token.json only saves a
            // validation at the next start.
            tracing::warn!("the new token is in place, but {e}");
        }
        self.provider.remember(&rec.companions);
        // A token in place makes a request still waiting for approval moot.
        self.provider.approval_settled();
        self.pending = None;
        self.write_retry_at = None;
        self.write_failures = 0;
        let changed = self
            .current
            .as_ref()
            .is_none_or(|c| c.access_token != rec.access_token);
        self.status.send_modify(|s| {
            s.user_id = Some(rec.user_id.clone()).filter(|u| !u.is_empty());
            s.obtained_at = rfc3339(rec.obtained_at);
            s.expires_at = rfc3339(rec.expires_at);
            s.source = Some(rec.source.as_str());
        });
        self.metrics.set_token_expiry(Some(rec.expires_at));
        let source = rec.source;
        let refreshed = NotifyEvent::TokenRefreshed {
            token: self.token_name().to_string(),
            user_id: Some(rec.user_id.clone()).filter(|u| !u.is_empty()),
            expires_at: Some(rec.expires_at),
        };
        self.current = Some(rec);
        self.set_state(TokenState::Valid, None);
        if changed {
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            if announce {
                tracing::info!(source = source.as_str(), generation, "new token in place");
                self.journal.record_with(
                    crate::journal::Kind::TokenObtained,
                    format!("new token in place (source: {})", source.as_str()),
                    |e| e.with_source(source.as_str()),
                );
                self.notifier.notify(refreshed);
                let _ = self.events.send(KeeperEvent::TokenChanged {
                    token: self.cfg.display_name(),
                    generation,
                });
            }
        }
        Ok(())
    }
}
