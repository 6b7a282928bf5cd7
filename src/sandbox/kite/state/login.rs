//! Password and TOTP checks, 5-strikes lockout, web sessions.

use std::time::Instant;

use serde_json::{json, Value};

use super::{
    random_id, short_name, ApiError, Inner, Kite, PendingLogin, REPLAYED_TOTP, STRIKES,
    WRONG_PASSWORD, WRONG_TOTP,
};
use crate::token::login::Totp;

impl Inner {
    /// One more failed attempt; the strike that reaches [`STRIKES`] blocks the account.
    fn strike(&mut self, user_id: &str, twofa: bool, error: ApiError) -> ApiError {
        let strikes = if twofa {
            &mut self.twofa_strikes
        } else {
            &mut self.password_strikes
        };
        let n = strikes.entry(user_id.to_string()).or_insert(0);
        *n += 1;
        if *n >= STRIKES {
            self.locked.insert(user_id.to_string());
            self.web_sessions.retain(|_, s| s.user_id != user_id);
            self.pending_logins.retain(|_, p| p.user_id != user_id);
            return ApiError::blocked();
        }
        error
    }
}

impl Kite {
    fn known_user(&self, user_id: &str) -> bool {
        user_id == self.opts.user_id
    }

    /// `POST /api/login` → `data` of the success envelope.
    pub fn password_login(&self, user_id: &str, password: &str) -> Result<Value, ApiError> {
        let mut g = self.inner();
        let user_id = user_id.trim().to_ascii_uppercase();
        if g.locked.contains(&user_id) {
            g.stats.password_fail += 1;
            return Err(ApiError::blocked());
        }
        if !self.known_user(&user_id) {
            g.stats.password_fail += 1;
            return Err(ApiError::input(WRONG_PASSWORD));
        }
        if password != self.opts.password {
            g.stats.password_fail += 1;
            return Err(g.strike(&user_id, false, ApiError::input(WRONG_PASSWORD)));
        }
        g.stats.password_ok += 1;
        g.password_strikes.remove(&user_id);
        let request_id = random_id(40);
        g.pending_logins.insert(
            request_id.clone(),
            PendingLogin {
                user_id: user_id.clone(),
                created: Instant::now(),
            },
        );
        Ok(json!({
            "user_id": user_id,
            "request_id": request_id,
            "twofa_type": "totp",
            "twofa_types": ["totp"],
            "twofa_status": "active",
            "profile": {
                "user_name": self.opts.user_name,
                "user_shortname": short_name(&self.opts.user_name),
                "avatar_url": null,
            }
        }))
    }

    /// `POST /api/twofa` → the new web session's cookie value.
    pub fn twofa(
        &self,
        user_id: &str,
        request_id: &str,
        code: &str,
        twofa_type: &str,
    ) -> Result<String, ApiError> {
        let mut g = self.inner();
        let user_id = user_id.trim().to_ascii_uppercase();
        if g.locked.contains(&user_id) {
            g.stats.twofa_fail += 1;
            return Err(ApiError::blocked());
        }
        match g.pending_logins.get(request_id) {
            Some(p) if p.user_id == user_id => {}
            _ => {
                g.stats.twofa_fail += 1;
                return Err(ApiError::input(
                    "Your login request has expired or is invalid. Please log in again.",
                ));
            }
        }
        if twofa_type != "totp" {
            g.stats.twofa_fail += 1;
            return Err(ApiError::input("Invalid `twofa_type`."));
        }
        let now_step = Totp::step_of(self.unix_now());
        let matched = (now_step.saturating_sub(1)..=now_step + 1)
            .find(|s| self.totp.code_of_step(*s) == code.trim());
        let verdict = match matched {
            None => Err(WRONG_TOTP),
            Some(step) if g.used_steps.contains(&(user_id.clone(), step)) => {
                g.stats.twofa_replayed += 1;
                Err(REPLAYED_TOTP)
            }
            Some(step) => Ok(step),
        };
        let step = match verdict {
            Ok(step) => step,
            Err(message) => {
                g.stats.twofa_fail += 1;
                return Err(g.strike(&user_id, true, ApiError::input(message)));
            }
        };
        g.used_steps.insert((user_id.clone(), step));
        g.used_steps.retain(|(_, s)| *s + 2 >= now_step);
        g.pending_logins.remove(request_id);
        g.twofa_strikes.remove(&user_id);
        g.stats.twofa_ok += 1;
        let cookie = random_id(32);
        g.web_sessions.insert(
            cookie.clone(),
            super::WebSession {
                user_id,
                created: Instant::now(),
                connects: 0,
            },
        );
        Ok(cookie)
    }

    /// The user of a `kf_session` cookie, if it is a live web session.
    pub fn session_user(&self, cookie: Option<&str>) -> Option<String> {
        let g = self.inner();
        cookie.and_then(|c| g.web_sessions.get(c).map(|s| s.user_id.clone()))
    }

    /// A connect flow finished for the web session `cookie`: a later one is a re-login
    /// without credentials.
    pub fn note_connect(&self, cookie: Option<&str>) {
        let mut g = self.inner();
        let resumed = match cookie.and_then(|c| g.web_sessions.get_mut(c)) {
            Some(s) => {
                s.connects += 1;
                s.connects > 1
            }
            None => false,
        };
        if resumed {
            g.stats.session_resumes += 1;
        }
    }
}
