//! The connect redirects, request tokens, access tokens: exchange, profile, logout.

use std::time::Instant;

use serde_json::{json, Value};

use super::{
    ist_now, random_id, short_name, AccessToken, ApiError, ConnectFlow, Inner, Kite, RequestToken,
    BAD_TOKEN, STALE_REQUEST_TOKEN,
};

impl Kite {
    fn check_api_key(&self, api_key: &str) -> Result<(), ApiError> {
        if api_key == self.opts.api_key {
            Ok(())
        } else {
            Err(ApiError::input("Invalid `api_key`."))
        }
    }

    /// `GET /connect/login?api_key&v=3[&redirect_params]` → a new `sess_id`.
    pub fn start_connect(
        &self,
        api_key: &str,
        redirect_params: Option<&str>,
    ) -> Result<String, ApiError> {
        self.check_api_key(api_key)?;
        let redirect_params = redirect_params
            .map(|p| {
                url::form_urlencoded::parse(p.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let sess_id = random_id(32);
        self.inner().connect_flows.insert(
            sess_id.clone(),
            ConnectFlow {
                redirect_params,
                created: Instant::now(),
            },
        );
        Ok(sess_id)
    }

    pub fn connect_flow_exists(&self, api_key: &str, sess_id: &str) -> Result<(), ApiError> {
        self.check_api_key(api_key)?;
        if self.inner().connect_flows.contains_key(sess_id) {
            Ok(())
        } else {
            Err(ApiError::input(
                "This login link has expired. Open the app's login link again.",
            ))
        }
    }

    /// The last hop: mint a request token for `user_id` and return the app's redirect URL.
    pub fn finish_connect(
        &self,
        api_key: &str,
        sess_id: &str,
        user_id: &str,
    ) -> Result<String, ApiError> {
        self.connect_flow_exists(api_key, sess_id)?;
        let mut g = self.inner();
        let flow = g
            .connect_flows
            .remove(sess_id)
            .ok_or_else(|| ApiError::input("This login link has expired."))?;
        let token = random_id(32);
        g.request_tokens.insert(
            token.clone(),
            RequestToken {
                user_id: user_id.to_string(),
                created: Instant::now(),
            },
        );
        g.stats.request_tokens_issued += 1;
        let mut url = url::Url::parse(&self.opts.redirect_url)
            .map_err(|_| ApiError::input("The app's redirect URL is invalid."))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("request_token", &token);
            q.append_pair("action", "login");
            q.append_pair("status", "success");
            for (k, v) in &flow.redirect_params {
                q.append_pair(k, v);
            }
        }
        Ok(url.into())
    }

    /// `POST /session/token` → `data` of the generate_session answer. Kills every earlier
    /// access token of the api_key.
    pub fn exchange(
        &self,
        api_key: &str,
        request_token: &str,
        checksum: &str,
    ) -> Result<Value, ApiError> {
        let mut g = self.inner();
        let result = self.exchange_locked(&mut g, api_key, request_token, checksum);
        match &result {
            Ok(_) => g.stats.sessions_created += 1,
            Err(_) => g.stats.exchange_fail += 1,
        }
        result
    }

    fn exchange_locked(
        &self,
        g: &mut Inner,
        api_key: &str,
        request_token: &str,
        checksum: &str,
    ) -> Result<Value, ApiError> {
        for (name, value) in [
            ("api_key", api_key),
            ("request_token", request_token),
            ("checksum", checksum),
        ] {
            if value.is_empty() {
                return Err(ApiError::input(format!("Missing `{name}`.")));
            }
        }
        self.check_api_key(api_key)?;
        // Single use: any attempt spends the request token, even one with a bad checksum.
        let rt = g
            .request_tokens
            .remove(request_token)
            .ok_or_else(|| ApiError::token(STALE_REQUEST_TOKEN))?;
        let want = crate::token::kite::checksum(api_key, request_token, &self.opts.api_secret);
        if !checksum.eq_ignore_ascii_case(&want) {
            return Err(ApiError::token("Invalid `checksum`."));
        }
        Ok(self.create_session(g, api_key, &rt.user_id))
    }

    /// A new access token for `user_id`; every earlier token of `api_key` dies (one valid
    /// token per api_key).
    fn create_session(&self, g: &mut Inner, api_key: &str, user_id: &str) -> Value {
        g.access_tokens.retain(|_, t| t.api_key != api_key);
        self.tokens_died();
        let access_token = random_id(32);
        g.access_tokens.insert(
            access_token.clone(),
            AccessToken {
                api_key: api_key.to_string(),
                user_id: user_id.to_string(),
                expires: Instant::now() + self.opts.token_ttl,
            },
        );
        let mut data = self.profile_json(user_id);
        let extra = json!({
            "api_key": api_key,
            "access_token": access_token,
            "public_token": random_id(32),
            "enctoken": random_id(48),
            "refresh_token": "",
            "silo": "",
            "login_time": ist_now(),
        });
        if let (Some(d), Value::Object(e)) = (data.as_object_mut(), extra) {
            d.extend(e);
        }
        data
    }

    /// A session as if the user had just logged in and the app exchanged the request token
    /// (counted in `sessions_created`, kills earlier tokens). For tests that need a valid
    /// token without a login, e.g. several within one TOTP step. Returns the access token.
    pub fn issue_session(&self) -> String {
        let mut g = self.inner();
        let data = self.create_session(&mut g, &self.opts.api_key, &self.opts.user_id);
        g.stats.sessions_created += 1;
        data["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `GET /user/profile` with its two headers.
    pub fn profile(
        &self,
        version: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut g = self.inner();
        let result = (|| {
            if version.map(str::trim) != Some("3") {
                return Err(ApiError::input(
                    "Missing or invalid `X-Kite-Version` header; send `X-Kite-Version: 3`.",
                ));
            }
            let user = self.authorized(&g, authorization)?;
            Ok(self.profile_json(&user))
        })();
        match &result {
            Ok(_) => g.stats.profile_ok += 1,
            Err(_) => g.stats.profile_fail += 1,
        }
        result
    }

    fn authorized(&self, g: &Inner, authorization: Option<&str>) -> Result<String, ApiError> {
        let (key, token) = authorization
            .and_then(|h| h.trim().strip_prefix("token "))
            .and_then(|kt| kt.split_once(':'))
            .ok_or_else(|| ApiError::token(BAD_TOKEN))?;
        match g.access_tokens.get(token.trim()) {
            Some(t) if t.api_key == key.trim() => Ok(t.user_id.clone()),
            _ => Err(ApiError::token(BAD_TOKEN)),
        }
    }

    /// `DELETE /session/token?api_key&access_token`.
    pub fn logout(&self, api_key: &str, access_token: &str) -> Result<(), ApiError> {
        let mut g = self.inner();
        match g.access_tokens.get(access_token) {
            Some(t) if t.api_key == api_key => {
                g.access_tokens.remove(access_token);
                g.stats.logouts += 1;
                self.tokens_died();
                Ok(())
            }
            _ => Err(ApiError::token(BAD_TOKEN)),
        }
    }

    fn profile_json(&self, user_id: &str) -> Value {
        json!({
            "user_id": user_id,
            "user_type": "individual",
            "email": format!("{}@sandbox.invalid", user_id.to_ascii_lowercase()),
            "user_name": self.opts.user_name,
            "user_shortname": short_name(&self.opts.user_name),
            "broker": "ZERODHA",
            "exchanges": ["NSE", "NFO", "BSE", "BFO", "CDS", "BCD", "MCX", "MF"],
            "products": ["CNC", "NRML", "MIS", "BO", "CO"],
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
            "avatar_url": null,
            "meta": { "demat_consent": "physical" },
        })
    }
}
