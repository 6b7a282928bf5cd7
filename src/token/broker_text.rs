//! Text from a broker, made fit for a log line or an error: every broker client needs the
//! same three things, kept here once.
//!
//! Nothing here sees a secret on purpose: callers strip URLs (which can carry a PIN in a query)
//! from reqwest errors with `without_url()` before [`chain`], and redact echoed credentials
//! before [`shorten`].

/// How much of a broker's message an error keeps: enough to read, never a whole page.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// An error and its sources, one line, each source once.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// `message` trimmed and cut to `max` characters (with `…` when cut).
pub fn shorten_to(message: &str, max: usize) -> String {
    let m = message.trim();
    if m.chars().count() <= max {
        return m.to_string();
    }
    let mut s: String = m.chars().take(max).collect();
    s.push('…');
    s
}

/// `message` trimmed and cut to [`MAX_MESSAGE_CHARS`].
pub fn shorten(message: &str) -> String {
    shorten_to(message, MAX_MESSAGE_CHARS)
}

/// `s` for a query string or form body.
pub fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_cuts_on_characters_not_bytes() {
        assert_eq!(shorten_to("  ok  ", 5), "ok");
        assert_eq!(shorten_to("ऊँट ऊँट", 3), "ऊँट…");
        assert_eq!(
            shorten(&"x".repeat(500)).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    #[derive(Debug)]
    struct Outer(std::io::Error, &'static str);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_chain_names_each_source_once() {
        let reset = || std::io::Error::other("connection reset");
        assert_eq!(
            chain(&Outer(reset(), "profile: request failed")),
            "profile: request failed: connection reset"
        );
        // A source its parent already quotes is not repeated.
        assert_eq!(
            chain(&Outer(reset(), "profile: connection reset")),
            "profile: connection reset"
        );
        assert_eq!(form_encode("a b&c"), "a+b%26c");
    }
}
