//! `[tokens.NAME]` (SPEC §9.1): the rules that only exist because there can be several tokens.
//! Each `[tokens.NAME]` is checked by the same rules as `[token]`; [`relocate`] points what
//! they find at the named table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::keypath::{at, Found, Seg};
use super::schema::{Config, TokenConfig};

/// Problems found by the `[token]` rules in `[tokens.NAME]`, moved to where they are: the path
/// `token.x` becomes `tokens.NAME.x`, and so does a `[token.…]` a message names.
pub(crate) fn relocate(name: &str, found: Vec<Found>) -> Vec<Found> {
    found
        .into_iter()
        .map(|f| {
            let path = match f.path.split_first() {
                Some((Seg::Key(t), rest)) if t == "token" => {
                    let mut p = at(&["tokens", name]);
                    p.extend_from_slice(rest);
                    p
                }
                _ => f.path,
            };
            let message = f
                .message
                .replace("[token.", &format!("[tokens.{name}."))
                .replace("[token]", &format!("[tokens.{name}]"));
            Found::new(path, message)
        })
        .collect()
}

fn is_token_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `[token]` and `[tokens.*]` together, bad names, two tokens writing the same env key, and
/// programs naming tokens that do not exist.
pub(crate) fn problems(cfg: &Config) -> Vec<Found> {
    let mut v = Vec::new();
    if cfg.token.is_some() && !cfg.tokens.is_empty() {
        v.push(Found::new(
            at(&["tokens"]),
            "[token] and [tokens.NAME] cannot both be used: keep [token] for one token, or move \
             it to a [tokens.NAME] table (with its [tokens.NAME.<provider>] table) next to the \
             others",
        ));
    }
    for name in cfg.tokens.keys() {
        if !is_token_name(name) {
            v.push(Found::new(
                at(&["tokens", name]),
                "token names may use only lowercase letters, digits, '_' and '-' (they appear \
                 in URLs, file names and metric labels): rename it",
            ));
        }
    }
    same_env_key(cfg, &mut v);
    program_tokens(cfg, &mut v);
    v
}

/// Two tokens writing one key of one file would overwrite each other's token; two tokens of
/// one provider must each name their key (SPEC §9.1), since its default is the same for both.
fn same_env_key(cfg: &Config, v: &mut Vec<Found>) {
    let mut defaulted = Vec::new();
    for (name, t) in &cfg.tokens {
        let same_provider: Vec<&str> = cfg
            .tokens
            .iter()
            .filter(|(other, o)| *other != name && o.provider == t.provider)
            .map(|(other, _)| other.as_str())
            .collect();
        if t.env_key_defaulted && !same_provider.is_empty() {
            v.push(Found::new(
                at(&["tokens", name]),
                format!(
                    "has no env_key, and {} is the {} provider's default for every token of it \
                     (also {}): with two tokens of one provider, set env_key in each, like \
                     env_key = \"{}_ACCESS_TOKEN\"",
                    t.env_key,
                    t.provider.name(),
                    same_provider.join(", "),
                    name.to_ascii_uppercase().replace('-', "_")
                ),
            ));
            defaulted.push(name);
        }
    }
    let mut writers: BTreeMap<(PathBuf, String), &str> = BTreeMap::new();
    for (name, t) in cfg.tokens.iter().filter(|(n, _)| !defaulted.contains(n)) {
        let key = (t.env_file.clone(), t.env_key.clone());
        match writers.get(&key) {
            Some(first) => {
                let default = t.provider.default_env_key();
                let hint = if t.env_key == default {
                    format!(
                        " ({default} is the {} provider's default: with two tokens of one \
                         provider, set env_key in each)",
                        t.provider.name()
                    )
                } else {
                    String::new()
                };
                v.push(Found::new(
                    at(&["tokens", name, "env_key"]),
                    format!(
                        "tokens {first} and {name} would both write {} in {}, each overwriting \
                         the other's token{hint}: give each token its own env_key",
                        t.env_key,
                        t.env_file.display()
                    ),
                ));
            }
            None => {
                writers.insert(key, name);
            }
        }
    }
}

fn program_tokens(cfg: &Config, v: &mut Vec<Found>) {
    let known: Vec<String> = cfg.token_list().iter().map(|t| t.display_name()).collect();
    for (program, p) in &cfg.programs {
        for (i, name) in p.tokens.iter().flatten().enumerate() {
            if !known.contains(name) {
                let mut path = at(&["programs", program, "tokens"]);
                path.push(Seg::Index(i));
                let list = if known.is_empty() {
                    "this file configures no token".to_string()
                } else {
                    format!("the tokens are: {}", known.join(", "))
                };
                v.push(Found::new(
                    path,
                    format!("`{name}` is not a token of this file ({list}): fix the name"),
                ));
            }
        }
    }
}

/// The exposure warnings of `[token]`, for each `[tokens.NAME]`.
pub(crate) fn exposure_warnings(cfg: &Config) -> Vec<Found> {
    let mut v = Vec::new();
    for (name, t) in &cfg.tokens {
        let alone = Config {
            token: Some(TokenConfig::clone(t)),
            ..Config::default()
        };
        v.extend(relocate(name, super::exposure::warnings(&alone)));
    }
    v
}

#[cfg(test)]
mod tests {
    use crate::config::load::testutil::*;

    const TWO: &str = "[tokens.a]\nprovider = \"kite\"\nenv_key = \"A_TOKEN\"\n\
        [tokens.a.kite]\napi_key = \"ka\"\napi_secret = \"sa\"\nuser_id = \"AB1234\"\n\
        [tokens.b]\nprovider = \"kite\"\nenv_key = \"B_TOKEN\"\n\
        [tokens.b.kite]\napi_key = \"kb\"\napi_secret_file = \"secret_b\"\nuser_id = \"CD5678\"\n";

    #[test]
    fn named_tokens_load_with_their_names_paths_and_secret_files() {
        let f = write(TWO);
        std::fs::write(f.dir.path().join("secret_b"), "sb\n").unwrap();
        let c = load_vars(&f, &[]).unwrap();
        assert!(c.token.is_none());
        let names: Vec<String> = c.token_list().iter().map(|t| t.display_name()).collect();
        assert_eq!(names, ["a", "b"]);
        let b = c.token_named("b").unwrap();
        assert!(b.named);
        assert_eq!(b.kite.as_ref().unwrap().api_secret.expose(), "sb");
        assert!(b.env_file.is_absolute());
        let state = std::path::Path::new("/s");
        assert_eq!(b.token_json_path(state), state.join("tokens/b.json"));
        assert_eq!(b.login_json_path(state), state.join("tokens/b.login.json"));
    }

    #[test]
    fn a_lone_token_is_named_after_its_provider_and_keeps_token_json() {
        let c = ok("[token]\nprovider = \"command\"\n[token.command]\ncommand = \"x\"\n");
        let t = c.token.as_ref().unwrap();
        assert_eq!(t.name, "command");
        assert!(!t.named);
        let state = std::path::Path::new("/s");
        assert_eq!(t.token_json_path(state), state.join("token.json"));
    }

    #[test]
    fn token_and_tokens_together_is_an_error_at_the_tokens_line() {
        let text = format!("[token]\nprovider = \"none\"\n{TWO}");
        let f = write(&text);
        std::fs::write(f.dir.path().join("secret_b"), "sb\n").unwrap();
        let all = load_vars(&f, &[]).unwrap_err().problems;
        let p = all
            .iter()
            .find(|p| p.key == "tokens")
            .expect("a problem at tokens");
        assert_eq!(p.line, Some(3), "{all:#?}");
        assert!(
            p.message.contains("[token] and [tokens.NAME]"),
            "{}",
            p.message
        );
    }

    #[test]
    fn problems_in_a_named_token_are_located_in_its_table() {
        let p = problem_at(
            "[tokens.a]\nprovider = \"kite\"\nmax_attempts = 0\n[tokens.a.kite]\napi_key = \"k\"\n\
             api_secret = \"s\"\nuser_id = \"AB1234\"\n",
            "tokens.a.max_attempts",
        );
        assert_eq!(p.line, Some(3));
        let p = problem_at("[tokens.a]\nprovider = \"kite\"\n", "tokens.a.kite");
        assert!(p.message.contains("[tokens.a.kite]"), "{}", p.message);
        let p = problem_at(
            "[tokens.a]\nprovider = \"none\"\nenv_fiel = \"x\"\n",
            "tokens.a.env_fiel",
        );
        assert!(
            p.message.contains("did you mean `env_file`"),
            "{}",
            p.message
        );
    }

    #[test]
    fn two_tokens_of_one_provider_need_their_own_env_keys() {
        let p = problem_at(
            "[tokens.a]\nprovider = \"none\"\nenv_key = \"A\"\n[tokens.b]\nprovider = \"none\"\n\
             env_file = \"other.env\"\n",
            "tokens.b",
        );
        assert!(
            p.message.contains("KITE_ACCESS_TOKEN") && p.message.contains("set env_key"),
            "{}",
            p.message
        );
        let p = problem_at(
            "[tokens.a]\nprovider = \"none\"\nenv_key = \"K\"\n\
             [tokens.b]\nprovider = \"command\"\nenv_key = \"K\"\n[tokens.b.command]\ncommand = \"x\"\n",
            "tokens.b.env_key",
        );
        assert!(p.message.contains("overwriting"), "{}", p.message);
        ok("[tokens.a]\nprovider = \"none\"\nenv_key = \"A\"\n\
            [tokens.b]\nprovider = \"none\"\nenv_key = \"B\"\n");
    }

    #[test]
    fn token_names_and_program_token_lists_are_checked() {
        problem_at("[tokens.Big]\nprovider = \"none\"\n", "tokens.Big");
        let p = problem_at(
            "[tokens.a]\nprovider = \"none\"\n[programs.p]\ncommand = \"x\"\ntokens = [\"a\", \"zz\"]\n",
            "programs.p.tokens[1]",
        );
        assert!(p.message.contains("the tokens are: a"), "{}", p.message);
        let c = ok(
            "[token]\nprovider = \"none\"\n[programs.p]\ncommand = \"x\"\ntokens = [\"none\"]\n",
        );
        assert!(c.programs["p"].uses_token("none"));
        assert!(!c.programs["p"].uses_token("other"));
    }
}
