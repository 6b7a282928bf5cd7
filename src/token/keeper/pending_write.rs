//! A token in hand is never thrown away (SPEC §4.1): once the broker issued it, every earlier
//! token is dead, so a token whose env-file write failed (disk full, read-only directory) is
//! kept in memory and written as soon as the disk allows; no new login happens meanwhile.

use std::time::Duration;

use tokio::time::Instant;

use super::{Keeper, TokenState};
use crate::token::provider::Provider;
use crate::token::store::StoreError;
use crate::token::TokenRecord;

const WRITE_RETRY_FIRST: Duration = Duration::from_millis(500);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(30);

impl<P: Provider> Keeper<P> {
    /// The env file could not be written: keep `rec` and try again with backoff.
    pub(super) fn keep_unwritten(&mut self, rec: TokenRecord, e: StoreError) {
        self.write_failures += 1;
        let wait = WRITE_RETRY_FIRST
            .saturating_mul(1 << self.write_failures.min(8).saturating_sub(1))
            .min(WRITE_RETRY_MAX);
        let msg = format!(
            "a new token was obtained but cannot be written: {e}; it is kept in memory and the write is retried (next in {wait:?}); no new login is made meanwhile"
        );
        if self.write_failures == 1 {
            tracing::error!("{msg}");
        } else {
            tracing::warn!("{msg}");
        }
        self.pending = Some(rec);
        self.write_retry_at = Some(Instant::now() + wait);
        self.set_state(TokenState::Refreshing, Some(msg));
    }

    /// Try the kept token's write again; on success it is handed to programs as usual.
    pub(super) async fn retry_write(&mut self) {
        let Some(rec) = self.pending.take() else {
            return;
        };
        self.write_retry_at = None;
        match self.install(rec.clone(), true) {
            Ok(()) => tracing::info!("the kept token is written at last"),
            Err(e) => self.keep_unwritten(rec, e),
        }
    }
}
