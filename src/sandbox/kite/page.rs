//! The login page a browser sees at `/connect/login` without a session: user id, password and
//! TOTP code in one form that posts back to `/connect/login`. No JavaScript needed.

use crate::sandbox::common::page::{render_login_form, Input, LoginForm};

pub(super) fn login_page(
    api_key: &str,
    sess_id: &str,
    user_id: &str,
    error: Option<&str>,
) -> String {
    render_login_form(&LoginForm {
        broker: "Kite",
        action: "/connect/login",
        hidden: &[("api_key", api_key), ("sess_id", sess_id)],
        inputs: &[
            Input {
                label: "User ID",
                name: "user_id",
                value: Some(user_id),
                attrs: r#" autocomplete="username" required"#,
            },
            Input {
                label: "Password",
                name: "password",
                value: None,
                attrs: r#" type="password" autocomplete="current-password" required"#,
            },
            Input {
                label: "TOTP code",
                name: "twofa_value",
                value: None,
                attrs: r#" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" autocomplete="one-time-code" required"#,
            },
        ],
        note_html: r#"<p class="note">A local simulator: use the credentials <code>warden sandbox kite</code> printed at start.</p>"#,
        extra_style: "button { background: #ff5722; color: #fff; border: 0; border-radius: 4px; }\n.note { color: #666; font-size: .8rem; }\n",
        error,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_user_input() {
        let page = super::login_page("k", "s", "\"><script>", Some("<b>bad</b>"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;b&gt;bad&lt;/b&gt;"));
        // Kite's own field names, through the shared form.
        assert!(page.contains(r#"<input type="hidden" name="sess_id" value="s">"#));
        assert!(page.contains(r#"name="password" type="password""#));
        assert!(page.contains(r#"name="twofa_value" inputmode="numeric" pattern="[0-9]{6}""#));
    }
}
