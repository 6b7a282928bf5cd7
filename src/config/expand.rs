//! `${VAR}` and `${VAR:-default}` expansion in string values.
//!
//! Rules (also in docs/config.md):
//! - `${NAME}` is the value of the environment variable NAME; unset is an error (set-but-empty
//!   is the empty string, as in a shell).
//! - `${NAME:-default}` is the default when NAME is unset *or empty*. The default is itself
//!   expanded, so `${A:-${B:-x}}` works.
//! - `$$` is a literal `$`. Any other `$` (not followed by `{` or `$`) is kept as is, so regexes
//!   like `EXPIRED$` need no escaping; write `$${` for a literal `${`.
//! - Only values are expanded, never keys. The values of variables are not expanded again.

use std::ffi::OsString;

use super::keypath::{Found, KeyPath, Seg};
use super::secrets;

/// Where variables come from: the process environment in production, a map in tests.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// Defaults may nest; this bounds the recursion on hostile input.
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    Unset(String),
    NotUnicode(String),
    /// `${` followed by something that is not `NAME}` or `NAME:-…}`. Carries the text of the
    /// reference so non-secret keys can show it.
    BadReference(String),
    Unterminated,
}

impl ExpandError {
    /// The message for a problem. `secret` keys never show any of their text.
    pub(crate) fn message(&self, secret: bool) -> String {
        match self {
            ExpandError::Unset(v) => format!(
                "environment variable {v} is not set (used as ${{{v}}}): export {v}, \
                 or give a default with ${{{v}:-default}}"
            ),
            ExpandError::NotUnicode(v) => format!(
                "environment variable {v} is set but is not valid UTF-8: export it as UTF-8 text"
            ),
            ExpandError::BadReference(text) => {
                let shown = if secret {
                    String::new()
                } else {
                    format!(" `{text}`")
                };
                format!(
                    "malformed variable reference{shown}: write ${{NAME}} or ${{NAME:-default}} \
                     (NAME is letters, digits and _), or $$ for a literal $"
                )
            }
            ExpandError::Unterminated => {
                "`${` has no closing `}`: close it, or write $$ for a literal $".to_string()
            }
        }
    }
}

/// Expand one string. Returns the expansion (with unresolvable references left empty) and
/// every error found in it.
pub(crate) fn expand_str(input: &str, env: Env<'_>) -> (String, Vec<ExpandError>) {
    let mut p = Parser {
        s: input.chars().collect(),
        i: 0,
        env,
        errors: Vec::new(),
    };
    let mut out = String::with_capacity(input.len());
    p.seq(&mut out, false, true, 0);
    (out, p.errors)
}

struct Parser<'a> {
    s: Vec<char>,
    i: usize,
    env: Env<'a>,
    errors: Vec<ExpandError>,
}

impl Parser<'_> {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.s.get(self.i + ahead).copied()
    }

    /// Text up to the end, or (inside a default) up to the `}` that closes it, which is left
    /// for the caller. `live` is false inside a default that is not used: its unset variables
    /// are not errors, but its syntax still is.
    fn seq(&mut self, out: &mut String, in_default: bool, live: bool, depth: usize) {
        while let Some(c) = self.peek(0) {
            match c {
                '}' if in_default => return,
                '$' => match self.peek(1) {
                    Some('$') => {
                        out.push('$');
                        self.i += 2;
                    }
                    Some('{') => {
                        self.i += 2;
                        self.reference(out, live, depth);
                    }
                    _ => {
                        out.push('$');
                        self.i += 1;
                    }
                },
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// After `${`.
    fn reference(&mut self, out: &mut String, live: bool, depth: usize) {
        let start = self.i;
        while self
            .peek(0)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.i += 1;
        }
        let name: String = self.s[start..self.i].iter().collect();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        match (self.peek(0), self.peek(1)) {
            (Some('}'), _) if valid => {
                self.i += 1;
                match self.lookup(&name) {
                    Ok(Some(v)) => out.push_str(&v),
                    Ok(None) if live => self.errors.push(ExpandError::Unset(name)),
                    Ok(None) => {}
                    Err(e) => self.errors.push(e),
                }
            }
            (Some(':'), Some('-')) if valid && depth < MAX_DEPTH => {
                self.i += 2;
                let value = match self.lookup(&name) {
                    Ok(v) => v.filter(|v| !v.is_empty()),
                    Err(e) => {
                        self.errors.push(e);
                        None
                    }
                };
                let mut default = String::new();
                self.seq(&mut default, true, live && value.is_none(), depth + 1);
                if self.peek(0) == Some('}') {
                    self.i += 1;
                    out.push_str(value.as_deref().unwrap_or(&default));
                } else {
                    self.errors.push(ExpandError::Unterminated);
                }
            }
            (None, _) => self.errors.push(ExpandError::Unterminated),
            _ => {
                // Skip to the closing brace so the rest of the string is still checked.
                match self.s[self.i..].iter().position(|&c| c == '}') {
                    Some(n) => {
                        let text: String = self.s[start - 2..self.i + n + 1].iter().collect();
                        self.i += n + 1;
                        self.errors.push(ExpandError::BadReference(text));
                    }
                    None => {
                        self.i = self.s.len();
                        self.errors.push(ExpandError::Unterminated);
                    }
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Result<Option<String>, ExpandError> {
        match (self.env)(name) {
            None => Ok(None),
            Some(v) => v
                .into_string()
                .map(Some)
                .map_err(|_| ExpandError::NotUnicode(name.to_string())),
        }
    }
}

/// Expand every string value in the tree (tables, arrays, inline tables), in place.
/// Returns one problem per error, at the path of the string.
pub(crate) fn expand_tree(root: &mut toml::Table, env: Env<'_>) -> Vec<Found> {
    let mut found = Vec::new();
    let mut path = KeyPath::new();
    for (k, v) in root.iter_mut() {
        path.push(Seg::Key(k.clone()));
        walk(v, &mut path, env, &mut found);
        path.pop();
    }
    found
}

fn walk(v: &mut toml::Value, path: &mut KeyPath, env: Env<'_>, found: &mut Vec<Found>) {
    match v {
        toml::Value::String(s) => {
            let (expanded, errors) = expand_str(s, env);
            let secret = secrets::is_secret(path);
            for e in errors {
                found.push(Found::new(path.clone(), e.message(secret)));
            }
            *s = expanded;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                walk(item, path, env, found);
                path.pop();
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                path.push(Seg::Key(k.clone()));
                walk(item, path, env, found);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(name: &str) -> Option<OsString> {
        match name {
            "HOME_DIR" => Some("/home/x".into()),
            "EMPTY" => Some("".into()),
            "TOKEN" => Some("t$ok${NOT_EXPANDED}".into()),
            _ => None,
        }
    }

    fn x(s: &str) -> (String, Vec<ExpandError>) {
        expand_str(s, &env)
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(x("hello world"), ("hello world".into(), vec![]));
        assert_eq!(x(""), ("".into(), vec![]));
    }

    #[test]
    fn set_variables_expand_and_values_are_not_reexpanded() {
        assert_eq!(x("${HOME_DIR}/app").0, "/home/x/app");
        assert_eq!(x("a${TOKEN}b"), ("at$ok${NOT_EXPANDED}b".into(), vec![]));
    }

    #[test]
    fn unset_without_default_is_an_error_naming_the_variable() {
        let (_, errs) = x("${NOPE_A} and ${NOPE_B}");
        assert_eq!(
            errs,
            vec![
                ExpandError::Unset("NOPE_A".into()),
                ExpandError::Unset("NOPE_B".into())
            ]
        );
        let msg = errs[0].message(false);
        assert!(msg.contains("NOPE_A") && msg.contains("export"), "{msg}");
    }

    #[test]
    fn set_but_empty_without_default_is_empty() {
        assert_eq!(x("[${EMPTY}]"), ("[]".into(), vec![]));
    }

    #[test]
    fn default_applies_when_unset_or_empty() {
        assert_eq!(x("${NOPE:-8000}").0, "8000");
        assert_eq!(x("${EMPTY:-fallback}").0, "fallback");
        assert_eq!(x("${HOME_DIR:-fallback}").0, "/home/x");
        assert_eq!(x("${NOPE:-}"), ("".into(), vec![]));
    }

    #[test]
    fn defaults_nest_and_unused_defaults_are_not_errors() {
        assert_eq!(x("${NOPE:-${HOME_DIR}}").0, "/home/x");
        assert_eq!(x("${NOPE:-${ALSO_NOPE:-deep}}").0, "deep");
        assert_eq!(
            x("${HOME_DIR:-${UNSET_BUT_UNUSED}}"),
            ("/home/x".into(), vec![])
        );
        assert_eq!(
            x("${NOPE:-${UNSET_AND_USED}}").1,
            vec![ExpandError::Unset("UNSET_AND_USED".into())]
        );
    }

    #[test]
    fn dollar_escapes() {
        assert_eq!(x("$$"), ("$".into(), vec![]));
        assert_eq!(x("$${HOME_DIR}"), ("${HOME_DIR}".into(), vec![]));
        assert_eq!(x("price$ 5$"), ("price$ 5$".into(), vec![]));
        assert_eq!(x("^EXPIRED$"), ("^EXPIRED$".into(), vec![]));
        assert_eq!(x("$HOME_DIR"), ("$HOME_DIR".into(), vec![]));
    }

    #[test]
    fn malformed_references_are_errors_and_the_rest_is_still_checked() {
        assert_eq!(x("${").1, vec![ExpandError::Unterminated]);
        assert_eq!(x("${NAME").1, vec![ExpandError::Unterminated]);
        assert_eq!(x("${NOPE:-abc").1, vec![ExpandError::Unterminated]);
        assert_eq!(
            x("${1X} ${NOPE}").1,
            vec![
                ExpandError::BadReference("${1X}".into()),
                ExpandError::Unset("NOPE".into())
            ]
        );
        assert_eq!(
            x("${A B}").1,
            vec![ExpandError::BadReference("${A B}".into())]
        );
        assert_eq!(x("${}").1, vec![ExpandError::BadReference("${}".into())]);
    }

    #[test]
    fn secret_messages_never_show_the_text() {
        let e = ExpandError::BadReference("${hunter2 x}".into());
        assert!(!e.message(true).contains("hunter2"));
        assert!(e.message(false).contains("hunter2"));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let s = "${A:-".repeat(1000);
        let (_, errs) = x(&s);
        assert!(!errs.is_empty());
    }

    #[test]
    fn tree_walk_reaches_nested_tables_arrays_and_inline_tables() {
        let mut t: toml::Table = toml::from_str(
            r#"
            top = "${HOME_DIR}"
            [programs.web]
            command = ["run", "${HOME_DIR}/bin", "${NOPE_CMD}"]
            env = { A = "${HOME_DIR}", N = 5 }
            "#,
        )
        .unwrap();
        let found = expand_tree(&mut t, &env);
        assert_eq!(t["top"].as_str(), Some("/home/x"));
        let web = &t["programs"]["web"];
        assert_eq!(web["command"][1].as_str(), Some("/home/x/bin"));
        assert_eq!(web["env"]["A"].as_str(), Some("/home/x"));
        assert_eq!(found.len(), 1);
        assert_eq!(
            super::super::keypath::render(&found[0].path),
            "programs.web.command[2]"
        );
        assert!(found[0].message.contains("NOPE_CMD"));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = x(&s);
        }

        #[test]
        fn never_panics_on_dollar_heavy_input(s in "[${}:A-Z_ -]{0,200}") {
            let _ = x(&s);
        }

        #[test]
        fn escaping_every_dollar_gives_back_the_text(s in ".{0,200}") {
            let escaped = s.replace('$', "$$");
            prop_assert_eq!(x(&escaped), (s, vec![]));
        }

        #[test]
        fn text_without_dollars_is_unchanged(s in "[^$]{0,200}") {
            prop_assert_eq!(x(&s), (s.clone(), vec![]));
        }
    }
}
