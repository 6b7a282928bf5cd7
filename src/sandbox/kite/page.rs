//! The login page a browser sees at `/connect/login` without a session: user id, password and
//! TOTP code in one form that posts back to `/connect/login`. No JavaScript needed.

/// HTML escaping for text and attribute values: the status page's.
fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    crate::http::page::escape(s)
}

pub(super) fn login_page(
    api_key: &str,
    sess_id: &str,
    user_id: &str,
    error: Option<&str>,
) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kite sandbox login</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f6f6f6; display: flex; justify-content: center; }}
form {{ background: #fff; margin-top: 4rem; padding: 2rem; border-radius: 6px; width: 18rem; box-shadow: 0 1px 4px #0002; }}
label {{ display: block; margin-top: 1rem; font-size: .9rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; }}
button {{ margin-top: 1.5rem; width: 100%; padding: .6rem; font-size: 1rem; background: #ff5722; color: #fff; border: 0; border-radius: 4px; }}
.error {{ color: #b00020; }}
.note {{ color: #666; font-size: .8rem; }}
</style>
</head>
<body>
<form method="post" action="/connect/login">
<h1>Kite sandbox</h1>
<p class="note">A local simulator: use the credentials <code>warden sandbox kite</code> printed at start.</p>
{error}
<input type="hidden" name="api_key" value="{api_key}">
<input type="hidden" name="sess_id" value="{sess_id}">
<label>User ID <input name="user_id" value="{user_id}" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<label>TOTP code <input name="twofa_value" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" autocomplete="one-time-code" required></label>
<button type="submit">Login</button>
</form>
</body>
</html>
"#,
        api_key = esc(api_key),
        sess_id = esc(sess_id),
        user_id = esc(user_id),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_user_input() {
        let page = super::login_page("k", "s", "\"><script>", Some("<b>bad</b>"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;b&gt;bad&lt;/b&gt;"));
    }
}
