//! The Redis keys of one Kite app (one api_key). README "Fleet mode" documents them.

/// Every name is `{key_prefix}{api_key}:{what}`, so several Kite apps (or several fleets with
/// different prefixes) share one Redis without touching each other's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `"{warden_id} {fence}"` of the current leader, with a TTL.
    pub lock: String,
    /// The fencing counter: incremented on every lock acquisition.
    pub fence: String,
    /// The shared token (JSON).
    pub token: String,
    /// The last TOTP time step any leader submitted: a new leader must not reuse it.
    pub totp_step: String,
    /// Why the leader needs a person to log in (cleared by the next shared token).
    pub needs_login: String,
    /// Followers' requests to the leader (a list of JSON objects).
    pub requests: String,
    /// Pub/sub channel: `token {fence}` after a new token, `request` after a push to
    /// `requests`, `released` when a leader gives the lock up.
    pub events: String,
    reply_prefix: String,
    login_state_prefix: String,
}

impl Keys {
    pub fn new(prefix: &str, api_key: &str) -> Keys {
        let base = format!("{prefix}{api_key}:");
        Keys {
            lock: format!("{base}lock"),
            fence: format!("{base}fence"),
            token: format!("{base}token"),
            totp_step: format!("{base}totp_step"),
            needs_login: format!("{base}needs_login"),
            requests: format!("{base}requests"),
            events: format!("{base}events"),
            reply_prefix: format!("{base}reply:"),
            login_state_prefix: format!("{base}login_state:"),
        }
    }

    /// Where the leader answers one forwarded manual login.
    pub fn reply(&self, id: &str) -> String {
        format!("{}{id}", self.reply_prefix)
    }

    /// Present while a manual-login `state` nonce is spent (until the state would expire).
    pub fn login_state(&self, nonce: &str) -> String {
        format!("{}{nonce}", self.login_state_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_scoped_by_prefix_and_api_key() {
        let k = Keys::new("warden:", "abc");
        assert_eq!(k.lock, "warden:abc:lock");
        assert_eq!(k.fence, "warden:abc:fence");
        assert_eq!(k.token, "warden:abc:token");
        assert_eq!(k.requests, "warden:abc:requests");
        assert_eq!(k.events, "warden:abc:events");
        assert_eq!(k.reply("r1"), "warden:abc:reply:r1");
        assert_eq!(k.login_state("n1"), "warden:abc:login_state:n1");
        assert_ne!(Keys::new("prod:", "abc").lock, k.lock);
    }
}
