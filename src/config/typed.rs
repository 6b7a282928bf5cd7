//! From the expanded TOML tree to the typed [`Config`], reporting every type error and every
//! unknown key.
//!
//! serde stops at the first error. To report them all, deserialization runs in passes: each
//! failing pass yields one error with its exact path (`serde_path_to_error`); that key is
//! removed from the tree (so its default applies) and the next pass finds the next error.
//! Unknown keys do not fail a pass; `serde_ignored` hands each one to a callback.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;

use super::keypath::{Found, KeyPath, Seg};
use super::schema::*;
use super::secrets;

/// A config has far fewer keys than this; it only bounds the loop.
const MAX_PASSES: usize = 500;

/// The typed config (defaults where keys were wrong), the type errors, and the unknown keys.
pub(crate) fn deserialize(mut root: toml::Table) -> (Config, Vec<Found>, Vec<Found>) {
    coerce_env_values(&mut root);
    let mut found = Vec::new();
    let mut unknown = BTreeSet::new();
    let mut cfg = None;
    for _ in 0..MAX_PASSES {
        let mut ignored = Vec::new();
        let mut on_ignored = |p: serde_ignored::Path<'_>| ignored.push(ignored_path(&p));
        let de =
            serde_ignored::Deserializer::new(toml::Value::Table(root.clone()), &mut on_ignored);
        let result = serde_path_to_error::deserialize::<_, Config>(de);
        unknown.extend(ignored);
        match result {
            Ok(c) => {
                cfg = Some(c);
                break;
            }
            Err(e) => {
                let path = error_path(e.path());
                let message = type_message(&path, e.inner().message());
                let removed = remove(&mut root, &path);
                found.push(Found::new(path, message));
                if !removed {
                    break;
                }
            }
        }
    }
    let unknown = unknown
        .into_iter()
        .map(|p| {
            let message = unknown_key_message(&p);
            Found::new(p, message)
        })
        .collect();
    (cfg.unwrap_or_default(), found, unknown)
}

/// `env = { PORT = 8000, DEBUG = true }` means what it says, as in docker-compose: numbers and
/// booleans in a program's `env` become their text.
fn coerce_env_values(root: &mut toml::Table) {
    let Some(programs) = root.get_mut("programs").and_then(|p| p.as_table_mut()) else {
        return;
    };
    for (_, program) in programs.iter_mut() {
        let Some(env) = program.get_mut("env").and_then(|e| e.as_table_mut()) else {
            continue;
        };
        for (_, v) in env.iter_mut() {
            let text = match v {
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => continue,
            };
            *v = toml::Value::String(text);
        }
    }
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> KeyPath {
    use serde_ignored::Path;
    match p {
        Path::Root => KeyPath::new(),
        Path::Seq { parent, index } => {
            let mut v = ignored_path(parent);
            v.push(Seg::Index(*index));
            v
        }
        Path::Map { parent, key } => {
            let mut v = ignored_path(parent);
            v.push(Seg::Key(key.clone()));
            v
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn error_path(p: &serde_path_to_error::Path) -> KeyPath {
    use serde_path_to_error::Segment;
    p.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// Remove the key holding `path` (for an array element: the whole array).
fn remove(table: &mut toml::Table, path: &[Seg]) -> bool {
    match path {
        [Seg::Key(k), rest @ ..] if rest.iter().all(|s| matches!(s, Seg::Index(_))) => {
            table.remove(k).is_some()
        }
        [Seg::Key(k), rest @ ..] => table.get_mut(k).is_some_and(|v| remove_in(v, rest)),
        _ => false,
    }
}

fn remove_in(value: &mut toml::Value, path: &[Seg]) -> bool {
    match (value, path.first()) {
        (toml::Value::Table(t), Some(Seg::Key(_))) => remove(t, path),
        (toml::Value::Array(a), Some(Seg::Index(i))) => {
            a.get_mut(*i).is_some_and(|v| remove_in(v, &path[1..]))
        }
        _ => false,
    }
}

/// serde's message, made safe for secrets and pointed at the fix.
fn type_message(path: &[Seg], raw: &str) -> String {
    if secrets::is_secret(path) {
        // serde would quote the offending value; a secret's value is never shown.
        return "must be a quoted string".to_string();
    }
    let raw = raw.trim_end();
    if let Some((head, _)) = raw.split_once(", expected struct ") {
        return format!(
            "{head}, expected a table: write a [section] or an inline {{ key = value }}"
        );
    }
    let hint = if raw.contains("expected a string") || raw.contains("expected path string") {
        "; put the value in quotes"
    } else if raw.contains("expected u8")
        || raw.contains("expected u16")
        || raw.contains("expected u32")
        || raw.contains("expected u64")
    {
        "; write a whole number (not negative, not in quotes)"
    } else if raw.contains("expected a sequence") {
        "; write an array like [\"a\", \"b\"]"
    } else if raw.contains("expected a map") {
        "; write a table like { KEY = \"value\" }"
    } else if raw.contains("socket address") {
        "; write an IP address and a port, like \"127.0.0.1:9180\" or \"0.0.0.0:9180\""
    } else {
        ""
    };
    format!("{raw}{hint}")
}

fn unknown_key_message(path: &[Seg]) -> String {
    let Some((Seg::Key(key), parent)) = path.split_last() else {
        return "unknown entry: remove it".to_string();
    };
    let known = known_keys(parent);
    if let (Some(base), Some(known)) = (key.strip_suffix("_file"), known) {
        if known.contains(&base) && !secrets::is_secret_file(path) {
            return format!(
                "unknown key: `{base}` is not a secret, so it has no `_file` form; \
                 set `{base}` itself"
            );
        }
    }
    let what = if parent.is_empty() { "section" } else { "key" };
    match known {
        Some(known) => match suggest(key, known) {
            Some(s) => format!("unknown {what} (typos are not ignored); did you mean `{s}`?"),
            None => format!(
                "unknown {what} (typos are not ignored); the {what}s here are: {}",
                known.join(", ")
            ),
        },
        None => format!("unknown {what} (typos are not ignored): remove it or fix its spelling"),
    }
}

/// The keys that the struct at `parent` accepts, read from the schema itself so that this
/// list can never drift from it.
fn known_keys(parent: &[Seg]) -> Option<&'static [&'static str]> {
    let parent = super::keypath::as_lone_token(parent);
    let keys: Option<Vec<&str>> = parent
        .iter()
        .map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    Some(match keys?.as_slice() {
        [] => fields_of::<Config>(),
        ["supervisor"] => fields_of::<SupervisorConfig>(),
        ["http"] => fields_of::<HttpConfig>(),
        ["token"] => fields_of::<TokenConfig>(),
        ["token", "store"] => fields_of::<StoreConfig>(),
        ["token", "kite"] => fields_of::<KiteConfig>(),
        ["token", "command"] => fields_of::<CommandProviderConfig>(),
        ["token", "fyers"] => fields_of::<FyersConfig>(),
        ["token", "dhan"] => fields_of::<DhanConfig>(),
        ["token", "angelone"] => fields_of::<AngelOneConfig>(),
        ["notify"] => fields_of::<NotifyConfig>(),
        ["market"] => fields_of::<MarketConfig>(),
        ["programs", _] => fields_of::<ProgramConfig>(),
        ["programs", _, "health"] => fields_of::<HealthConfig>(),
        _ => return None,
    })
}

/// The field names serde's derive generated for `T`: a deserializer that only answers
/// `deserialize_struct` and stops there.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{value::Error, Error as _, Visitor};
    use serde::forward_to_deserialize_any;

    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(Error::custom("fields read"))
        }
        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// The closest known key within a small edit distance (a transposition counts as one edit).
fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let limit = if key.len() >= 5 { 2 } else { 1 };
    known
        .iter()
        .map(|k| (edit_distance(&key.to_ascii_lowercase(), k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keypath::at;

    #[test]
    fn field_names_come_from_the_schema() {
        let program = fields_of::<ProgramConfig>();
        assert!(program.contains(&"restart") && program.contains(&"health"));
        let root = fields_of::<Config>();
        assert!(root.contains(&"programs") && !root.contains(&"source"));
        assert_eq!(
            known_keys(&at(&["programs", "any name", "health"])),
            Some(fields_of::<HealthConfig>())
        );
        assert_eq!(known_keys(&at(&["programs", "a", "env"])), None);
    }

    #[test]
    fn suggestions_allow_small_typos_only() {
        let known = fields_of::<ProgramConfig>();
        assert_eq!(suggest("restrat", known), Some("restart"));
        assert_eq!(suggest("Command", known), Some("command"));
        assert_eq!(suggest("dependson", known), Some("depends_on"));
        assert_eq!(suggest("cdw", known), Some("cwd"));
        assert_eq!(suggest("banana", known), None);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn removing_an_array_element_removes_the_array() {
        let mut t: toml::Table = toml::from_str("[a.b]\nc = [1, 2]\nd = 1\n").unwrap();
        let mut path = at(&["a", "b", "c"]);
        path.push(Seg::Index(1));
        assert!(remove(&mut t, &path));
        assert!(t["a"]["b"].get("c").is_none());
        assert!(remove(&mut t, &at(&["a", "b", "d"])));
        assert!(!remove(&mut t, &at(&["a", "b", "d"])));
        assert!(!remove(&mut t, &[]));
    }

    #[test]
    fn non_table_program_is_one_problem_and_others_still_load() {
        let t: toml::Table =
            toml::from_str("[programs]\nweb = 5\n[programs.api]\ncommand = \"x\"\n").unwrap();
        let (cfg, found, unknown) = deserialize(t);
        assert!(unknown.is_empty());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].message.contains("expected a table"),
            "{}",
            found[0].message
        );
        assert!(cfg.programs.contains_key("api"));
    }
}
