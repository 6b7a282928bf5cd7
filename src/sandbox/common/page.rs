//! The broker login page a browser sees (user id, PIN, TOTP code in one form, no JavaScript),
//! and the small request helpers every broker's routes use.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

pub type Params = HashMap<String, String>;

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    crate::http::page::escape(s)
}

/// A login form posting to `action`, carrying `hidden` fields through.
pub fn login_form(
    broker: &str,
    action: &str,
    hidden: &[(&str, &str)],
    error: Option<&str>,
) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    let hidden: String = hidden
        .iter()
        .map(|(k, v)| {
            format!(
                r#"<input type="hidden" name="{}" value="{}">"#,
                esc(k),
                esc(v)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{broker} sandbox login</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f6f6f6; display: flex; justify-content: center; }}
form {{ background: #fff; margin-top: 4rem; padding: 2rem; border-radius: 6px; width: 18rem; box-shadow: 0 1px 4px #0002; }}
label {{ display: block; margin-top: 1rem; font-size: .9rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; }}
button {{ margin-top: 1.5rem; width: 100%; padding: .6rem; font-size: 1rem; }}
.error {{ color: #b00020; }}
</style>
</head>
<body>
<form method="post" action="{action}">
<h1>{broker} sandbox</h1>
<p>A local simulator: use the credentials the sandbox printed at start.</p>
{error}
{hidden}
<label>User ID <input name="user_id" autocomplete="username" required></label>
<label>PIN <input name="pin" type="password" autocomplete="current-password" required></label>
<label>TOTP code <input name="totp" inputmode="numeric" maxlength="6" autocomplete="one-time-code" required></label>
<button type="submit">Login</button>
</form>
</body>
</html>
"#,
        broker = esc(broker),
        action = esc(action),
    )
}

/// The login page, or the page again with an error (status 400).
pub fn login_page(
    broker: &str,
    action: &str,
    hidden: &[(&str, &str)],
    error: Option<&str>,
) -> Response {
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (
        status,
        axum::response::Html(login_form(broker, action, hidden, error)),
    )
        .into_response()
}

/// A urlencoded form body as a map (last value wins).
pub fn form(body: &[u8]) -> Params {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub fn field<'a>(p: &'a Params, name: &str) -> &'a str {
    p.get(name).map(String::as_str).unwrap_or("")
}

pub fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// 302 to `location`.
pub fn found(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

/// `base` with `pairs` appended to its query; `None` if `base` is not a URL.
pub fn with_query(base: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(base).ok()?;
    url.query_pairs_mut().extend_pairs(pairs);
    Some(url.to_string())
}

/// Check the login form's `user_id`, `pin` and `totp` (strikes and all).
pub fn form_login(core: &super::Core, f: &Params) -> Result<(), super::Denied> {
    core.check_login(field(f, "user_id"), field(f, "pin"), Some(field(f, "totp")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_and_appends_query() {
        let page = super::login_form("X", "/a", &[("k", "\"><script>")], Some("<b>"));
        assert!(!page.contains("<script>") && page.contains("&lt;b&gt;"));
        assert_eq!(
            super::with_query("http://h:1/cb?x=1", &[("code", "a b")]).unwrap(),
            "http://h:1/cb?x=1&code=a+b"
        );
    }
}
