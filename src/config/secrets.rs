//! Secret keys and their `X_file` form.
//!
//! Any secret key `X` may be given as `X_file = "path"` instead: the file's contents with
//! trailing newlines stripped become the value of `X` (Docker/Kubernetes secrets, systemd
//! credentials). Relative paths are relative to the config file's directory. Messages name the
//! key and the path, never the contents.

use std::collections::BTreeMap;
use std::path::Path;

use super::keypath::{at, Found, Seg};

/// Every key that holds a credential. These accept `_file`, and no message ever shows their
/// value (or any part of it).
pub(crate) const SECRET_KEYS: &[&[&str]] = &[
    &["http", "api_token"],
    &["token", "store", "url"],
    &["token", "store", "password"],
    &["token", "kite", "api_secret"],
    &["token", "kite", "password"],
    &["token", "kite", "totp_secret"],
    &["token", "fyers", "secret_key"],
    &["token", "fyers", "pin"],
    &["token", "dhan", "pin"],
    &["token", "dhan", "totp_secret"],
    &["token", "dhan", "app_secret"],
    &["token", "upstox", "api_secret"],
    &["token", "angelone", "pin"],
    &["token", "angelone", "totp_secret"],
    &["notify", "webhook_url"],
    &["notify", "telegram_bot_token"],
];

pub(crate) fn is_secret(path: &[Seg]) -> bool {
    let path = super::keypath::as_lone_token(path);
    SECRET_KEYS.iter().any(|keys| {
        keys.len() == path.len()
            && keys
                .iter()
                .zip(path.iter())
                .all(|(k, seg)| matches!(seg, Seg::Key(s) if s == k))
    })
}

/// The secret `X` that `path` names in its `X_file` form, if it does.
fn secret_of_file_key(path: &[Seg]) -> Option<Vec<Seg>> {
    let (Seg::Key(last), parent) = path.split_last()? else {
        return None;
    };
    let mut secret = parent.to_vec();
    secret.push(Seg::Key(last.strip_suffix("_file")?.to_string()));
    is_secret(&secret).then_some(secret)
}

/// Is `path` the `X_file` form of a secret key?
pub(crate) fn is_secret_file(path: &[Seg]) -> bool {
    secret_of_file_key(path).is_some()
}

/// What a problem is about: `X_file` of a secret is about `X` (a missing file and the empty
/// `X` it leaves are one problem, not two).
pub(crate) fn subject(path: &[Seg]) -> Vec<Seg> {
    secret_of_file_key(path).unwrap_or_else(|| path.to_vec())
}

/// Every secret key's path in this tree: those of `[token]` also under each `[tokens.NAME]`.
fn secret_paths(root: &toml::Table) -> Vec<Vec<String>> {
    let names: Vec<String> = root
        .get("tokens")
        .and_then(|t| t.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for keys in SECRET_KEYS {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
        if keys[0] == "token" {
            for name in &names {
                let mut named = vec!["tokens".to_string(), name.clone()];
                named.extend_from_slice(&keys[1..]);
                out.push(named);
            }
        }
        out.push(keys);
    }
    out
}

/// Replace every `X_file` of a secret key by `X` read from that file.
pub(crate) fn resolve_files(root: &mut toml::Table, base: &Path) -> Vec<Found> {
    let mut found = Vec::new();
    for keys in secret_paths(root) {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (name, parents) = keys.split_last().expect("secret paths are not empty");
        let Some(table) = table_at(root, parents) else {
            continue;
        };
        let file_key = format!("{name}_file");
        let Some(file_value) = table.remove(&file_key) else {
            continue;
        };
        let mut file_path = parents.to_vec();
        file_path.push(&file_key);
        let here = at(&file_path);
        let Some(rel) = file_value.as_str() else {
            found.push(Found::new(
                here,
                format!("must be a path string (the file that holds `{name}`)"),
            ));
            continue;
        };
        let given = match table.get(*name) {
            Some(toml::Value::String(s)) => !s.is_empty(),
            Some(_) => true,
            None => false,
        };
        if given {
            found.push(Found::new(
                here,
                format!(
                    "`{name}` and `{file_key}` are both set: keep one (an empty `{name}` is \
                     allowed next to `{file_key}`)"
                ),
            ));
            continue;
        }
        let path = base.join(rel);
        let shown = path.display();
        match std::fs::read(&path) {
            Err(e) => found.push(Found::new(
                here,
                format!(
                    "cannot read secret file {shown}: {e}; create it, fix the path \
                     (relative paths start at the config file's directory) or its permissions"
                ),
            )),
            Ok(bytes) => match String::from_utf8(bytes) {
                Err(_) => found.push(Found::new(
                    here,
                    format!("secret file {shown} is not UTF-8 text: write the secret as text"),
                )),
                Ok(mut text) => {
                    let kept = text.trim_end_matches(['\n', '\r']).len();
                    text.truncate(kept);
                    if text.is_empty() {
                        found.push(Found::new(
                            here,
                            format!(
                                "secret file {shown} is empty: put the value of `{name}` in it, \
                                 or remove `{file_key}`"
                            ),
                        ));
                    } else {
                        table.insert((*name).to_string(), toml::Value::String(text));
                    }
                }
            },
        }
    }
    found
}

/// Every environment variable named by a `${VAR}` reference inside a secret key (defaults
/// included: `${A:-${B}}` names both), mapped to the dotted path of the first key that names
/// it. Run on the tree before expansion. The `X_file` forms name a path, not a secret, and
/// are not looked at.
pub(crate) fn referenced_vars(root: &toml::Table) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for keys in secret_paths(root) {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (name, parents) = keys.split_last().expect("secret paths are not empty");
        let mut t = Some(root);
        for k in parents {
            t = t.and_then(|t| t.get(*k)).and_then(|v| v.as_table());
        }
        let Some(toml::Value::String(text)) = t.and_then(|t| t.get(*name)) else {
            continue;
        };
        let named = std::cell::RefCell::new(Vec::new());
        let _ = super::expand::expand_str(text, &|var: &str| {
            named.borrow_mut().push(var.to_string());
            None
        });
        for var in named.into_inner() {
            vars.entry(var).or_insert_with(|| keys.join("."));
        }
    }
    vars
}

/// Base32 is case-insensitive and authenticator apps show secrets in groups with spaces:
/// accept those forms and hand the rest of warden one canonical spelling.
pub(crate) fn normalize_totp_secret(root: &mut toml::Table) {
    for keys in secret_paths(root) {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let Some((&"totp_secret", parents)) = keys.split_last() else {
            continue;
        };
        if let Some(toml::Value::String(s)) =
            table_at(root, parents).and_then(|t| t.get_mut("totp_secret"))
        {
            *s = s
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '=')
                .map(|c| c.to_ascii_uppercase())
                .collect();
        }
    }
}

fn table_at<'a>(root: &'a mut toml::Table, keys: &[&str]) -> Option<&'a mut toml::Table> {
    let mut t = root;
    for k in keys {
        t = t.get_mut(*k)?.as_table_mut()?;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keypath::render;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn knows_the_secret_keys() {
        assert!(is_secret(&at(&["token", "kite", "api_secret"])));
        assert!(is_secret(&at(&["http", "api_token"])));
        assert!(!is_secret(&at(&["token", "kite", "api_key"])));
        assert!(!is_secret(&at(&["token", "kite"])));
        assert!(is_secret_file(&at(&["token", "kite", "password_file"])));
        assert!(!is_secret_file(&at(&["token", "kite", "api_key_file"])));
        assert!(!is_secret_file(&at(&["token", "env_file"])));
        assert_eq!(
            subject(&at(&["notify", "webhook_url_file"])),
            at(&["notify", "webhook_url"])
        );
        assert_eq!(
            subject(&at(&["token", "env_file"])),
            at(&["token", "env_file"])
        );
    }

    #[test]
    fn reads_relative_file_and_strips_trailing_newlines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s3cr3t value\r\n\n").unwrap();
        let mut t = table("[token.kite]\napi_secret_file = \"secret.txt\"\n");
        let found = resolve_files(&mut t, dir.path());
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(
            t["token"]["kite"]["api_secret"].as_str(),
            Some("s3cr3t value")
        );
        assert!(t["token"]["kite"].get("api_secret_file").is_none());
    }

    #[test]
    fn absolute_paths_are_used_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "abc").unwrap();
        let mut t = table(&format!(
            "[http]\napi_token_file = {:?}\n",
            f.display().to_string()
        ));
        assert!(resolve_files(&mut t, Path::new("/nonexistent")).is_empty());
        assert_eq!(t["http"]["api_token"].as_str(), Some("abc"));
    }

    #[test]
    fn both_forms_is_a_problem_but_empty_value_next_to_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p"), "pw").unwrap();
        let mut t = table("[token.kite]\npassword = \"inline\"\npassword_file = \"p\"\n");
        let found = resolve_files(&mut t, dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(render(&found[0].path), "token.kite.password_file");
        assert!(!found[0].message.contains("inline"));

        let mut t = table("[token.kite]\npassword = \"\"\npassword_file = \"p\"\n");
        assert!(resolve_files(&mut t, dir.path()).is_empty());
        assert_eq!(t["token"]["kite"]["password"].as_str(), Some("pw"));
    }

    #[test]
    fn unreadable_empty_and_non_text_files_are_problems_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe, 0x00]).unwrap();
        let mut t = table(
            "[notify]\nwebhook_url_file = \"missing\"\ntelegram_bot_token_file = \"empty\"\n\
             [token.kite]\ntotp_secret_file = \"bin\"\n[token.store]\nurl_file = 5\n",
        );
        let found = resolve_files(&mut t, dir.path());
        let keys: Vec<String> = found.iter().map(|f| render(&f.path)).collect();
        assert_eq!(
            keys,
            [
                "token.store.url_file",
                "token.kite.totp_secret_file",
                "notify.webhook_url_file",
                "notify.telegram_bot_token_file"
            ]
        );
        assert!(found[2].message.contains("missing"));
        assert!(found[3].message.contains("empty"));
    }

    #[test]
    fn variables_named_in_secret_keys_are_found_with_their_key() {
        let t = table(
            "[http]\napi_token = \"${API_TOK:-}\"\n\
             [token.kite]\napi_key = \"${KITE_API_KEY}\"\napi_secret = \"${KITE_API_SECRET}\"\n\
             password = \"x${KITE_PASSWORD:-${PW_FALLBACK}}\"\ntotp_secret_file = \"${DIR}/t\"\n\
             [notify]\ntelegram_bot_token = \"${KITE_API_SECRET}\"\n",
        );
        let vars = referenced_vars(&t);
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("API_TOK", "http.api_token"),
                ("KITE_API_SECRET", "token.kite.api_secret"),
                ("KITE_PASSWORD", "token.kite.password"),
                ("PW_FALLBACK", "token.kite.password"),
            ]
        );
    }

    #[test]
    fn totp_secret_is_normalized() {
        let mut t = table("[token.kite]\ntotp_secret = \"jbsw y3dp ehpk 3pxp==\"\n");
        normalize_totp_secret(&mut t);
        assert_eq!(
            t["token"]["kite"]["totp_secret"].as_str(),
            Some("JBSWY3DPEHPK3PXP")
        );
    }
}
