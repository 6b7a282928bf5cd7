//! The broker login page a browser sees (user id, PIN, TOTP code in one form, no JavaScript),
//! and the small request helpers every broker's routes use.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

pub type Params = HashMap<String, String>;

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    crate::http::page::escape(s)
}

/// One visible field of a login form.
pub struct Input<'a> {
    pub label: &'a str,
    pub name: &'a str,
    /// Pre-filled value (escaped), if any.
    pub value: Option<&'a str>,
    /// Further attributes as written in the HTML (our own constants, not escaped).
    pub attrs: &'a str,
}

/// Everything that differs between the brokers' login pages.
pub struct LoginForm<'a> {
    pub broker: &'a str,
    pub action: &'a str,
    pub hidden: &'a [(&'a str, &'a str)],
    pub inputs: &'a [Input<'a>],
    /// The paragraph under the heading (our own HTML, not escaped).
    pub note_html: &'a str,
    /// CSS rules after the common ones.
    pub extra_style: &'a str,
    pub error: Option<&'a str>,
}

/// User id, PIN and TOTP code: the fields of every sandbox's form but Kite's.
const PIN_INPUTS: &[Input<'static>] = &[
    Input {
        label: "User ID",
        name: "user_id",
        value: None,
        attrs: r#" autocomplete="username" required"#,
    },
    Input {
        label: "PIN",
        name: "pin",
        value: None,
        attrs: r#" type="password" autocomplete="current-password" required"#,
    },
    Input {
        label: "TOTP code",
        name: "totp",
        value: None,
        attrs: r#" inputmode="numeric" maxlength="6" autocomplete="one-time-code" required"#,
    },
];

/// A login form posting to `action`, carrying `hidden` fields through.
pub fn login_form(
    broker: &str,
    action: &str,
    hidden: &[(&str, &str)],
    error: Option<&str>,
) -> String {
    render_login_form(&LoginForm {
        broker,
        action,
        hidden,
        inputs: PIN_INPUTS,
        note_html: "<p>A local simulator: use the credentials the sandbox printed at start.</p>",
        extra_style: "",
        error,
    })
}

/// The page of `form`: one form, no JavaScript.
pub fn render_login_form(form: &LoginForm<'_>) -> String {
    let error = form
        .error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    let hidden: String = form
        .hidden
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
    let inputs: String = form
        .inputs
        .iter()
        .map(|i| {
            let value = i
                .value
                .map(|v| format!(r#" value="{}""#, esc(v)))
                .unwrap_or_default();
            format!(
                r#"<label>{} <input name="{}"{value}{}></label>"#,
                esc(i.label),
                esc(i.name),
                i.attrs
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
{extra_style}</style>
</head>
<body>
<form method="post" action="{action}">
<h1>{broker} sandbox</h1>
{note}
{error}
{hidden}
{inputs}
<button type="submit">Login</button>
</form>
</body>
</html>
"#,
        broker = esc(form.broker),
        action = esc(form.action),
        note = form.note_html,
        extra_style = form.extra_style,
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
