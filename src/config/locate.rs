//! Map a key path back to its line in the original file, for error messages.
//!
//! The typed pipeline works on a `toml::Value` tree that has no positions; `toml_edit` keeps
//! spans, so the file is parsed a second time with it just to answer "which line is
//! `programs.backend.restrat` on?". A path that does not exist in the file (a required key that
//! is missing) is located at its deepest existing ancestor, e.g. the `[token.kite]` header.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Value};

use super::keypath::Seg;

pub(crate) struct Locator {
    doc: ImDocument<String>,
}

impl Locator {
    pub fn parse(text: &str) -> Result<Self, toml_edit::TomlError> {
        ImDocument::parse(text.to_string()).map(|doc| Locator { doc })
    }

    /// 1-based line of the key (or array element) at `path`, or of its nearest ancestor.
    pub fn line(&self, path: &[Seg]) -> Option<usize> {
        self.span(path).map(|s| line_of(self.doc.raw(), s.start))
    }

    fn span(&self, path: &[Seg]) -> Option<Range<usize>> {
        let mut node = Node::Item(self.doc.as_item());
        let mut best = None;
        for seg in path {
            let (span, next) = match (seg, node) {
                (Seg::Key(k), node) => {
                    let Some((key, child)) = node.table_get(k) else {
                        break;
                    };
                    (key.span().or_else(|| child.span()), child)
                }
                (Seg::Index(i), Node::Item(Item::ArrayOfTables(a))) => {
                    let Some(t) = a.get(*i) else { break };
                    (t.span(), Node::Table(t))
                }
                (Seg::Index(i), node) => {
                    let Some(v) = node.as_array().and_then(|a| a.get(*i)) else {
                        break;
                    };
                    (v.span(), Node::Value(v))
                }
            };
            best = span.or(best);
            node = next;
        }
        best
    }
}

/// 1-based line containing byte `offset` of `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Items (from `[tables]` and `key = value`) and values (inside arrays and inline tables) are
/// different types in toml_edit; this walks both the same way.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn table_get(self, key: &str) -> Option<(&'a toml_edit::Key, Node<'a>)> {
        let t: &dyn toml_edit::TableLike = match self {
            Node::Item(i) => i.as_table_like()?,
            Node::Value(v) => v.as_inline_table()?,
            Node::Table(t) => t,
        };
        t.get_key_value(key).map(|(k, i)| (k, Node::Item(i)))
    }

    fn as_array(self) -> Option<&'a toml_edit::Array> {
        match self {
            Node::Item(i) => i.as_array(),
            Node::Value(v) => v.as_array(),
            Node::Table(_) => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keypath::at;

    const DOC: &str = r#"# comment
[http]
listen = "127.0.0.1:1"

[programs.backend]
command = [
  "a",
  "b",
]
env = { X = "1", Y = "2" }

[programs.backend.health]
url = "http://x"

[programs."api.v2"]
cwd = "x"
token.kite.api_key = "dotted"
"#;

    #[test]
    fn finds_keys_headers_elements_and_inline_tables() {
        let l = Locator::parse(DOC).unwrap();
        assert_eq!(l.line(&at(&["http", "listen"])), Some(3));
        assert_eq!(l.line(&at(&["http"])), Some(2));
        assert_eq!(l.line(&at(&["programs", "backend"])), Some(5));
        assert_eq!(l.line(&at(&["programs", "backend", "command"])), Some(6));
        let mut elem = at(&["programs", "backend", "command"]);
        elem.push(Seg::Index(1));
        assert_eq!(l.line(&elem), Some(8));
        assert_eq!(l.line(&at(&["programs", "backend", "env", "Y"])), Some(10));
        assert_eq!(
            l.line(&at(&["programs", "backend", "health", "url"])),
            Some(13)
        );
        assert_eq!(l.line(&at(&["programs", "api.v2", "cwd"])), Some(16));
        assert_eq!(
            l.line(&at(&["programs", "api.v2", "token", "kite", "api_key"])),
            Some(17)
        );
    }

    #[test]
    fn missing_keys_fall_back_to_the_nearest_ancestor() {
        let l = Locator::parse(DOC).unwrap();
        assert_eq!(
            l.line(&at(&["programs", "backend", "health", "nope"])),
            Some(12)
        );
        assert_eq!(l.line(&at(&["http", "api_token"])), Some(2));
        assert_eq!(l.line(&at(&["token", "kite"])), None);
        assert_eq!(l.line(&[]), None);
    }

    #[test]
    fn line_of_counts_newlines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
