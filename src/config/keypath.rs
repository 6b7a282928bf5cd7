//! Key paths: how a problem says *where* it is.
//!
//! Paths are kept as segments rather than dotted strings because program names may contain
//! dots (`[programs."api.v2"]`); only [`render`] turns them into text, quoting like TOML does.

use std::fmt::Write as _;

/// One step into the TOML tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

pub(crate) type KeyPath = Vec<Seg>;

/// A problem before it is given a line: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub path: KeyPath,
    pub message: String,
}

impl Found {
    pub fn new(path: KeyPath, message: impl Into<String>) -> Self {
        Found {
            path,
            message: message.into(),
        }
    }
}

/// A path of plain keys: `at(&["programs", name, "command"])`.
pub(crate) fn at(keys: &[&str]) -> KeyPath {
    keys.iter().map(|k| Seg::Key((*k).to_string())).collect()
}

/// The `[token]` path that `path` corresponds to: `tokens.NAME.rest` → `token.rest` (each
/// `[tokens.NAME]` holds what `[token]` holds, SPEC §9.1); any other path is itself.
pub(crate) fn as_lone_token(path: &[Seg]) -> std::borrow::Cow<'_, [Seg]> {
    match path {
        [Seg::Key(t), Seg::Key(_), rest @ ..] if t == "tokens" => {
            let mut p = vec![Seg::Key("token".into())];
            p.extend_from_slice(rest);
            std::borrow::Cow::Owned(p)
        }
        _ => std::borrow::Cow::Borrowed(path),
    }
}

/// `a.b.c`, `programs."api.v2".cwd`, `programs.web.command[1]`.
pub(crate) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if is_bare_key(k) {
                    out.push_str(k);
                } else {
                    out.push('"');
                    for c in k.chars() {
                        match c {
                            '"' => out.push_str("\\\""),
                            '\\' => out.push_str("\\\\"),
                            c if c.is_control() => {
                                let _ = write!(out, "\\u{:04X}", c as u32);
                            }
                            c => out.push(c),
                        }
                    }
                    out.push('"');
                }
            }
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

fn is_bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// True when one path is a prefix of the other (or they are equal): such problems are about
/// the same thing, and the later one is usually a consequence of the earlier.
pub(crate) fn related(a: &[Seg], b: &[Seg]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bare_quoted_and_indexed_segments() {
        let mut p = at(&["programs", "api.v2", "command"]);
        p.push(Seg::Index(1));
        assert_eq!(render(&p), "programs.\"api.v2\".command[1]");
        assert_eq!(render(&at(&["a", "b-c", "d_e"])), "a.b-c.d_e");
        assert_eq!(render(&at(&["x", "say \"hi\""])), "x.\"say \\\"hi\\\"\"");
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn related_means_prefix_either_way() {
        assert!(related(&at(&["a", "b"]), &at(&["a", "b", "c"])));
        assert!(related(&at(&["a", "b", "c"]), &at(&["a", "b"])));
        assert!(related(&at(&["a"]), &at(&["a"])));
        assert!(!related(&at(&["a", "b"]), &at(&["a", "c"])));
    }
}
