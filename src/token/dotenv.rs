//! The dotenv dialect warden reads and writes.
//!
//! One parser serves two jobs: loading `programs.*.env_file` into a child's environment
//! ([`parse_dotenv`]) and locating the `env_key=` binding(s) that
//! [`crate::token::store::rewrite_env_file`] replaces. Because both use the same scanner, a
//! line warden rewrites is exactly a line the children read as that key, and nothing else.
//!
//! The dialect (what docker compose, python-dotenv and node dotenv agree on):
//!
//! - Lines end with LF or CRLF. Blank lines and lines whose first non-blank character is `#`
//!   are comments.
//! - `KEY=value`, optionally prefixed by `export ` and indented; blanks around `=` are allowed.
//!   A key is `[A-Za-z_][A-Za-z0-9_.-]*`; a line with anything else is ignored.
//! - Unquoted values are trimmed; ` # …` (a `#` after a blank) starts a comment, so
//!   `A=b#c` is `b#c` but `A=b #c` is `b`. A backslash is an ordinary character.
//! - `'single quoted'` values are literal.
//! - `"double quoted"` values understand `\n`, `\r`, `\t`, `\"`, `\\`, `\$` and `\'`;
//!   any other backslash is kept as written.
//! - A quoted value may span lines (a CRLF inside it reads as LF). Text after the closing quote
//!   on its line is ignored (normally a comment). A quote that is never closed makes the
//!   binding malformed: it is skipped when reading, and is replaced when warden rewrites that
//!   key.
//! - `KEY=` is the empty string. No `${VAR}` interpolation: values are taken literally.
//! - When a key appears more than once, the last binding wins.

use std::ops::Range;

/// How a value was written, so a rewrite can keep the same style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quote {
    None,
    Single,
    Double,
}

/// One `KEY=value` binding located in a dotenv text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    /// Byte range of the key.
    pub key: Range<usize>,
    /// The decoded value; `None` when a quote is never closed.
    pub value: Option<String>,
    /// Byte range of the value as written, quotes included. Empty (positioned right after
    /// the `=`) for an empty unquoted value, so a replacement lands before any comment.
    pub value_span: Range<usize>,
    pub quote: Quote,
}

/// Every `(key, value)` binding in `text`, in file order (duplicates included: apply them in
/// order, so the last one wins). Comments, blank lines and malformed lines are skipped.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    let bytes = text.as_bytes();
    bindings(bytes)
        .into_iter()
        .filter_map(|b| {
            let value = b.value?;
            Some((text[b.key].to_string(), value))
        })
        .collect()
}

/// Scan `text` (bytes, so a stray non-UTF-8 byte in a comment never stops a rewrite).
pub(crate) fn bindings(text: &[u8]) -> Vec<Binding> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let line_end = find_byte(text, pos, b'\n').unwrap_or(text.len());
        let content_end = if line_end > pos && text[line_end - 1] == b'\r' {
            line_end - 1
        } else {
            line_end
        };
        let next = match scan_line(text, pos, content_end) {
            Some((binding, resume)) => {
                out.push(binding);
                resume
            }
            None => line_end + 1,
        };
        pos = next;
    }
    out
}

/// Parse the line `text[start..content_end]`. On a binding, returns it and the offset where
/// scanning resumes (past the line holding the value's end: a quoted value may span lines).
fn scan_line(text: &[u8], start: usize, content_end: usize) -> Option<(Binding, usize)> {
    let mut i = skip_blanks(text, start, content_end);
    if i >= content_end || text[i] == b'#' {
        return None;
    }
    if text[i..content_end].starts_with(b"export")
        && matches!(text.get(i + 6), Some(b' ' | b'\t'))
        && i + 6 < content_end
    {
        i = skip_blanks(text, i + 6, content_end);
    }
    let key_start = i;
    while i < content_end && is_key_byte(text[i]) {
        i += 1;
    }
    let key = key_start..i;
    if key.is_empty() || text[key_start].is_ascii_digit() || matches!(text[key_start], b'.' | b'-')
    {
        return None;
    }
    i = skip_blanks(text, i, content_end);
    if i >= content_end || text[i] != b'=' {
        return None;
    }
    let after_eq = i + 1;
    let vstart = skip_blanks(text, after_eq, content_end);
    let resume_after = |end: usize| find_byte(text, end, b'\n').map_or(text.len(), |n| n + 1);

    match text.get(vstart).filter(|_| vstart < content_end) {
        Some(&q @ (b'"' | b'\'')) => {
            let quote = if q == b'"' {
                Quote::Double
            } else {
                Quote::Single
            };
            match find_closing_quote(text, vstart + 1, q) {
                Some(close) => {
                    let raw = &text[vstart + 1..close];
                    let value = match quote {
                        Quote::Double => unescape_double(raw),
                        _ => String::from_utf8_lossy(raw).replace("\r\n", "\n"),
                    };
                    let binding = Binding {
                        key,
                        value: Some(value),
                        value_span: vstart..close + 1,
                        quote,
                    };
                    Some((binding, resume_after(close)))
                }
                None => {
                    let binding = Binding {
                        key,
                        value: None,
                        value_span: vstart..content_end,
                        quote,
                    };
                    Some((binding, resume_after(content_end)))
                }
            }
        }
        _ => {
            // Unquoted: a `#` preceded by a blank starts a comment.
            let mut end = vstart;
            while end < content_end {
                if text[end] == b'#' && end > after_eq && matches!(text[end - 1], b' ' | b'\t') {
                    break;
                }
                end += 1;
            }
            while end > vstart && matches!(text[end - 1], b' ' | b'\t') {
                end -= 1;
            }
            let value_span = if end == vstart {
                after_eq..after_eq
            } else {
                vstart..end
            };
            let value = String::from_utf8_lossy(&text[vstart..end]).into_owned();
            let binding = Binding {
                key,
                value: Some(value),
                value_span,
                quote: Quote::None,
            };
            Some((binding, resume_after(content_end)))
        }
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Whether `key` is a name this dialect can bind.
pub(crate) fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| is_key_byte(c))
}

fn skip_blanks(text: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && matches!(text[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

fn find_byte(text: &[u8], from: usize, byte: u8) -> Option<usize> {
    text.get(from..)?
        .iter()
        .position(|&b| b == byte)
        .map(|p| from + p)
}

fn find_closing_quote(text: &[u8], mut i: usize, quote: u8) -> Option<usize> {
    while i < text.len() {
        match text[i] {
            b'\\' if quote == b'"' => i += 2,
            b if b == quote => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn unescape_double(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1)) {
            (b'\\', Some(&c)) => {
                match c {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'"' | b'\\' | b'$' | b'\'' => out.push(c),
                    _ => out.extend_from_slice(&[b'\\', c]),
                }
                i += 2;
            }
            (b'\r', Some(b'\n')) => {
                out.push(b'\n');
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Write `value` so that [`parse_dotenv`] reads it back exactly, keeping `style` when it can.
///
/// Plain token-like values stay unquoted (what every dotenv reader, and a shell, agrees on);
/// anything else is single-quoted when possible (literal everywhere, no `$` interpolation in
/// compose), else double-quoted with escapes. The caller has rejected newlines and NUL.
pub(crate) fn encode_value(value: &str, style: Quote) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.+/=:@,%~^".contains(&b));
    match style {
        Quote::None if plain || value.is_empty() => value.to_string(),
        Quote::Double => double_quote(value),
        _ if !value.contains('\'') => format!("'{value}'"),
        _ => double_quote(value),
    }
}

fn double_quote(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '$' => s.push_str("\\$"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse_dotenv(text)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn comments_blanks_and_export() {
        let text = "# top\n\n   \nA=1\nexport B=2\n  export   C = 3 \n#D=4\n   # E=5\n";
        assert_eq!(kv(text), pairs(&[("A", "1"), ("B", "2"), ("C", "3")]));
    }

    #[test]
    fn key_named_export_is_a_key() {
        assert_eq!(kv("export=1\nexport\n"), pairs(&[("export", "1")]));
    }

    #[test]
    fn inline_comments_only_after_blank() {
        let text = "A=b#c\nB=b #c\nC=b\t# c\nD= # only a comment\nE=#x\n";
        assert_eq!(
            kv(text),
            pairs(&[("A", "b#c"), ("B", "b"), ("C", "b"), ("D", ""), ("E", "#x")])
        );
    }

    #[test]
    fn quotes_and_escapes() {
        let text = concat!(
            "S='a \\n $b # c'\n",
            "D=\"x\\ny\\t\\\"q\\\" \\\\ \\$ \\z\"\n",
            "C=\"quoted\" # comment after\n",
            "E=''\n",
            "F=\"\"\n",
            "G=\n",
        );
        assert_eq!(
            kv(text),
            pairs(&[
                ("S", "a \\n $b # c"),
                ("D", "x\ny\t\"q\" \\ $ \\z"),
                ("C", "quoted"),
                ("E", ""),
                ("F", ""),
                ("G", ""),
            ])
        );
    }

    #[test]
    fn crlf_lines() {
        let text = "A=1\r\nB=\"two\"\r\n# c\r\nC=3 # x\r\nD=4";
        assert_eq!(
            kv(text),
            pairs(&[("A", "1"), ("B", "two"), ("C", "3"), ("D", "4")])
        );
    }

    #[test]
    fn multiline_quoted_values() {
        let text = "K=\"line1\r\nKITE=inside\r\n\"\r\nN='a\nb'\nZ=1\n";
        assert_eq!(
            kv(text),
            pairs(&[("K", "line1\nKITE=inside\n"), ("N", "a\nb"), ("Z", "1")])
        );
    }

    #[test]
    fn unterminated_quote_is_skipped_not_swallowing() {
        let text = "A=\"never closed\nB=2\nC='x\n";
        let b = bindings(text.as_bytes());
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].value, None);
        assert_eq!(&text[b[0].value_span.clone()], "\"never closed");
        assert_eq!(kv(text), pairs(&[("B", "2")]));
    }

    #[test]
    fn invalid_lines_ignored() {
        let text = "1A=x\nno equals here\n=v\nA B=c\n-x=1\nok.key-1=y\nü=z\n";
        assert_eq!(kv(text), pairs(&[("ok.key-1", "y")]));
    }

    #[test]
    fn unicode_values_and_duplicates() {
        let text = "A=héllo wörld\nA=second\n";
        assert_eq!(kv(text), pairs(&[("A", "héllo wörld"), ("A", "second")]));
    }

    #[test]
    fn empty_value_span_sits_after_equals() {
        let text = "K= # c\n";
        let b = &bindings(text.as_bytes())[0];
        assert_eq!(b.value_span, 2..2);
    }

    #[test]
    fn encode_roundtrips() {
        for v in [
            "abc123",
            "",
            "with space",
            "it's",
            "both ' and \"",
            "#hash",
            "a # b",
            "tab\there",
            "back\\slash$HOME",
            "ünïcode",
            "  padded  ",
        ] {
            for style in [Quote::None, Quote::Single, Quote::Double] {
                let line = format!("K={}\n", encode_value(v, style));
                assert_eq!(kv(&line), pairs(&[("K", v)]), "{line:?}");
            }
        }
    }

    #[test]
    fn encode_keeps_style() {
        assert_eq!(encode_value("tok", Quote::None), "tok");
        assert_eq!(encode_value("tok", Quote::Single), "'tok'");
        assert_eq!(encode_value("tok", Quote::Double), "\"tok\"");
    }
}
