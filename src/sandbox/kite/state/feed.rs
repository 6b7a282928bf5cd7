//! What the ticker asks of the session state: is this token alive, until when, and news of
//! tokens dying early.

use std::time::Instant;

use super::{ApiError, Kite, BAD_TOKEN};

impl Kite {
    /// The upgrade check of `/?api_key&access_token`: the token's expiry when it is alive and
    /// belongs to `api_key`, else the 403 the real ticker answers (counted as refused).
    pub fn ticker_session(&self, api_key: &str, access_token: &str) -> Result<Instant, ApiError> {
        let mut g = self.inner();
        match g.access_tokens.get(access_token) {
            Some(t) if t.api_key == api_key && !api_key.is_empty() => Ok(t.expires),
            _ => {
                g.stats.ticker_refused += 1;
                Err(ApiError::token(BAD_TOKEN))
            }
        }
    }

    pub fn token_alive(&self, api_key: &str, access_token: &str) -> bool {
        let g = self.inner();
        matches!(g.access_tokens.get(access_token), Some(t) if t.api_key == api_key)
    }

    /// Changes whenever tokens die before their TTL.
    pub fn token_deaths(&self) -> tokio::sync::watch::Receiver<u64> {
        self.token_deaths.subscribe()
    }

    /// Counts open ticker connections for `/_sandbox/stats`.
    pub fn ticker_opened(&self) {
        self.inner().stats.ticker_open += 1;
    }

    pub fn ticker_closed(&self) {
        let mut g = self.inner();
        g.stats.ticker_open = g.stats.ticker_open.saturating_sub(1);
    }
}
