//! The loading pipeline: read → parse → expand → secrets → typed → paths → validate.

use std::path::{Path, PathBuf};

use super::expand::{self, Env};
use super::keypath::{related, render, Found};
use super::locate::{line_of, Locator};
use super::schema::{Config, TokenConfig, TokenProviderKind};
use super::{env_file, secrets, typed, validate, ConfigError, Problem};

/// Read, expand, resolve and validate a config file. On failure the error holds every problem
/// found, each with its key path and line.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, &|name| std::env::var_os(name))
}

/// Like [`load`], but a file whose every problem `tolerated` accepts still gives its config,
/// with those problems beside it: `warden doctor` checks a set-up whose only gaps are
/// credentials still to fill in.
pub fn load_tolerating(
    path: &Path,
    tolerated: &dyn Fn(&Problem) -> bool,
) -> Result<(Config, Vec<Problem>), ConfigError> {
    load_parts(path, &|name| std::env::var_os(name), tolerated)
}

pub(crate) fn load_with_env(path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
    load_parts(path, env, &|_| false).map(|(cfg, _)| cfg)
}

fn load_parts(
    path: &Path,
    env: Env<'_>,
    tolerated: &dyn Fn(&Problem) -> bool,
) -> Result<(Config, Vec<Problem>), ConfigError> {
    let fail = |problems: Vec<Problem>| ConfigError {
        file: path.to_path_buf(),
        problems,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(vec![Problem {
            key: String::new(),
            line: None,
            message: format!(
                "cannot read the config file: {e}; pass the right file with -c FILE or set \
                 WARDEN_CONFIG"
            ),
        }])
    })?;
    let syntax = |span: Option<std::ops::Range<usize>>, message: &str| {
        fail(vec![Problem {
            key: String::new(),
            line: span.map(|s| line_of(&text, s.start)),
            message: syntax_message(message),
        }])
    };
    let locator = Locator::parse(&text).map_err(|e| syntax(e.span(), e.message()))?;
    // The same text again, into the tree the pipeline edits (toml_edit's document is for
    // positions only); it parsed above, so this cannot fail in practice.
    let mut root: toml::Table = toml::from_str(&text).map_err(|e| syntax(e.span(), e.message()))?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = abs.parent().map(Path::to_path_buf).unwrap_or_default();

    let secret_vars = secrets::referenced_vars(&root);
    let expanded = expand::expand_tree(&mut root, env);
    let from_files = secrets::resolve_files(&mut root, &base);
    secrets::normalize_totp_secret(&mut root);
    let expiry_given = expiry_given(&root);
    let (mut cfg, type_errors, unknown_keys) = typed::deserialize(root);
    resolve_paths(&mut cfg, &base);
    name_tokens(&mut cfg);
    default_env_keys(&mut cfg);
    fyers_redirect_uri(&mut cfg);
    default_expiry(&mut cfg, &expiry_given);
    let env_file = resolve_env_file(&mut cfg);
    withhold_secret_vars(&mut cfg, secret_vars);
    cfg.source = abs;
    let mut semantic = validate::validate(&cfg);
    semantic.extend(env_file);

    // A problem of a later stage about the same key as an earlier one is a consequence of it
    // (an unset variable leaves a key empty, which is then "missing") and would only be noise.
    // Unknown keys come first: for a misspelt key, the spelling is what needs fixing.
    let stages = [unknown_keys, expanded, from_files, type_errors, semantic];
    let mut kept: Vec<Found> = Vec::new();
    for stage in stages {
        let earlier = kept.len();
        for f in stage {
            let subject = secrets::subject(&f.path);
            if !kept[..earlier]
                .iter()
                .any(|k| related(&secrets::subject(&k.path), &subject))
            {
                kept.push(f);
            }
        }
    }
    let locate = |f: Found| Problem {
        line: locator.line(&f.path),
        key: render(&f.path),
        message: f.message,
    };
    let mut problems: Vec<Problem> = kept.into_iter().map(&locate).collect();
    // Compiler order: by line; problems without a line (none so far) go last.
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    if problems.iter().all(tolerated) {
        cfg.warnings = validate::warnings(&cfg).into_iter().map(locate).collect();
        return Ok((cfg, problems));
    }
    Err(fail(problems))
}

/// One line, and only the parser's message: toml's full error display quotes the source line,
/// which may hold a secret.
fn syntax_message(raw: &str) -> String {
    let one_line = raw.trim().lines().collect::<Vec<_>>().join("; ");
    let hint = if one_line.contains("invalid time") || one_line.contains("invalid date") {
        " (times and durations are strings here: put them in quotes, like \"06:00\" or \"5s\")"
    } else {
        ""
    };
    format!("TOML syntax error: {one_line}{hint}")
}

/// Every configured token with the key path of its table (`token` or `tokens.NAME`).
fn tokens_mut(cfg: &mut Config) -> Vec<(Vec<String>, &mut TokenConfig)> {
    let mut out: Vec<(Vec<String>, &mut TokenConfig)> = Vec::new();
    if let Some(t) = cfg.token.as_mut() {
        out.push((vec!["token".into()], t));
    }
    for (name, t) in cfg.tokens.iter_mut() {
        out.push((vec!["tokens".into(), name.clone()], t));
    }
    out
}

/// SPEC §9.1: a lone `[token]` is named after its provider; `[tokens.NAME]` after NAME.
fn name_tokens(cfg: &mut Config) {
    if let Some(t) = cfg.token.as_mut() {
        t.name = t.provider.name();
        t.named = false;
    }
    for (name, t) in cfg.tokens.iter_mut() {
        t.name = name.clone();
        t.named = true;
    }
}

/// Fyers checks the redirect URL the login page is opened with against the app's registered
/// one: warden's own callback, `{public_url}/fyers/callback`.
fn fyers_redirect_uri(cfg: &mut Config) {
    let public_url = cfg.http.public_url();
    for (_, t) in tokens_mut(cfg) {
        if let Some(f) = t.fyers.as_mut() {
            f.redirect_uri = format!("{public_url}/fyers/callback");
        }
    }
}

/// Where the file sets `expires_at` (key paths of the token tables that have it).
fn expiry_given(root: &toml::Table) -> Vec<Vec<String>> {
    let has = |t: &toml::Value| t.as_table().is_some_and(|t| t.contains_key("expires_at"));
    let mut out = Vec::new();
    if root.get("token").is_some_and(has) {
        out.push(vec!["token".to_string()]);
    }
    if let Some(tokens) = root.get("tokens").and_then(|t| t.as_table()) {
        for (name, t) in tokens {
            if has(t) {
                out.push(vec!["tokens".to_string(), name.clone()]);
            }
        }
    }
    out
}

/// A token without `expires_at` gets its provider's daily death (SPEC §9.2): Upstox's tokens
/// die at 03:30 IST, Kite's around 06:00 (the schema's default).
fn default_expiry(cfg: &mut Config, given: &[Vec<String>]) {
    for (path, t) in tokens_mut(cfg) {
        if t.provider == TokenProviderKind::Upstox && !given.contains(&path) {
            t.expires_at = "03:30".into();
        }
    }
}

/// A token without `env_key` gets its provider's (SPEC §9.2).
fn default_env_keys(cfg: &mut Config) {
    for (_, t) in tokens_mut(cfg) {
        if t.env_key.is_empty() {
            t.env_key = t.provider.default_env_key().to_string();
            t.env_key_defaulted = true;
        }
    }
}

/// Each token's env file is resolved here, once (see [`env_file`]): a symlink is replaced by
/// the regular file it points at, and a link to anything else is a problem.
fn resolve_env_file(cfg: &mut Config) -> Vec<Found> {
    let mut found = Vec::new();
    for (table, t) in tokens_mut(cfg) {
        if t.env_file.as_os_str().is_empty() {
            continue;
        }
        match env_file::resolve(&t.env_file) {
            Ok(r) => {
                t.env_file = r.path;
                t.env_file_link = r.link;
            }
            Err(message) => {
                let mut keys: Vec<&str> = table.iter().map(String::as_str).collect();
                keys.push("env_file");
                found.push(Found::new(super::keypath::at(&keys), message));
            }
        }
    }
    found
}

/// SPEC §7.1: what each child must not inherit from warden's environment. Programs lose every
/// secret variable they do not list in `pass_env`. The token command is the operator's own
/// login script: it keeps the broker credentials (`[token.kite]`) it may log in with, and loses
/// the rest (the API token, the store password, notification tokens).
fn withhold_secret_vars(cfg: &mut Config, secret_vars: std::collections::BTreeMap<String, String>) {
    for p in cfg.programs.values_mut() {
        p.withheld_env = secret_vars
            .keys()
            .filter(|v| !p.pass_env.contains(v))
            .cloned()
            .collect();
    }
    for (table, t) in tokens_mut(cfg) {
        // The command keeps the credentials of its own token's Kite table only.
        let own_kite = format!("{}.kite.", table.join("."));
        if let Some(c) = t.command.as_mut() {
            c.withheld_env = secret_vars
                .iter()
                .filter(|(_, key)| !key.starts_with(&own_kite))
                .map(|(v, _)| v.clone())
                .collect();
        }
    }
    cfg.secret_vars = secret_vars;
}

/// Relative paths are relative to the config file's directory, as in docker-compose, so a
/// config works the same from whatever directory warden is started in.
fn resolve_paths(cfg: &mut Config, base: &Path) {
    let join = |p: &mut PathBuf| {
        *p = if p.as_os_str().is_empty() {
            base.to_path_buf()
        } else {
            base.join(&*p)
        }
    };
    if !cfg.supervisor.state_dir.as_os_str().is_empty() {
        join(&mut cfg.supervisor.state_dir);
    }
    for (_, t) in tokens_mut(cfg) {
        if !t.env_file.as_os_str().is_empty() {
            join(&mut t.env_file);
        }
        if let Some(c) = &mut t.command {
            join(&mut c.cwd);
        }
        if let Some(f) = &mut t.store.ca_file {
            join(f);
        }
    }
    for p in cfg.programs.values_mut() {
        join(&mut p.cwd);
        if let Some(f) = &mut p.env_file {
            join(f);
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::collections::HashMap;
    use std::ffi::OsString;

    use super::*;

    /// A config file in a fresh temp dir.
    pub struct Fixture {
        pub dir: tempfile::TempDir,
        pub path: PathBuf,
    }

    pub fn write(text: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("supervisor.toml");
        std::fs::write(&path, text).expect("write config");
        Fixture { dir, path }
    }

    /// Load `text` with exactly the variables in `vars` set.
    pub fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let f = write(text);
        load_vars(&f, vars)
    }

    pub fn load_vars(f: &Fixture, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        load_with_env(&f.path, &|n| map.get(n).cloned())
    }

    /// The problems of an invalid config.
    pub fn problems(text: &str) -> Vec<Problem> {
        match load_text(text, &[]) {
            Ok(_) => panic!("expected problems in:\n{text}"),
            Err(e) => e.problems,
        }
    }

    /// The one problem at `key`, failing if there is not exactly one.
    pub fn problem_at(text: &str, key: &str) -> Problem {
        let all = problems(text);
        let mut at: Vec<_> = all.iter().filter(|p| p.key == key).cloned().collect();
        assert_eq!(at.len(), 1, "want one problem at {key}, got {all:#?}");
        at.pop().unwrap()
    }

    pub fn ok(text: &str) -> Config {
        match load_text(text, &[]) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn empty_file_is_a_valid_config_with_defaults() {
        let c = ok("");
        assert!(c.programs.is_empty());
        assert!(c.token.is_none());
        assert!(c.source.is_absolute());
    }

    #[test]
    fn missing_file_is_one_problem() {
        let e = load(Path::new("/nonexistent/dir/supervisor.toml")).unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert!(e.problems[0].message.contains("cannot read"));
    }

    #[test]
    fn syntax_error_has_its_line_and_never_quotes_the_source() {
        let e = problems("[http]\nlisten = \"127.0.0.1:1\"\napi_token = \"hunter2\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, Some(3));
        assert!(e[0].message.starts_with("TOML syntax error"));
        assert!(!e[0].message.contains('\n'));
        assert!(!e[0].message.contains("hunter2"), "{}", e[0].message);
    }

    #[test]
    fn multi_line_parser_messages_become_one_line_with_hints() {
        let e = problems("a = \n");
        assert_eq!(e.len(), 1);
        assert!(!e[0].message.contains('\n'), "{}", e[0].message);
        let e = problems("[token]\nexpires_at = 06:00\n");
        assert_eq!(e[0].line, Some(2));
        assert!(e[0].message.contains("in quotes"), "{}", e[0].message);
    }

    #[test]
    fn expansion_applies_before_types_everywhere() {
        let f = write(
            "[supervisor]\nshutdown_timeout = \"${T_EXP_TIMEOUT}\"\n\
             [programs.web]\ncommand = [\"${T_EXP_BIN:-/bin/true}\", \"--port=${T_EXP_PORT}\"]\n\
             env = { URL = \"http://${T_EXP_HOST:-localhost}:1\", LIT = \"$${NOT}\" }\n",
        );
        let c = load_vars(&f, &[("T_EXP_TIMEOUT", "7s"), ("T_EXP_PORT", "81")]).unwrap();
        assert_eq!(
            c.supervisor.shutdown_timeout,
            std::time::Duration::from_secs(7)
        );
        let web = &c.programs["web"];
        assert_eq!(web.command.0, ["/bin/true", "--port=81"]);
        assert_eq!(web.env["URL"], "http://localhost:1");
        assert_eq!(web.env["LIT"], "${NOT}");
    }

    #[test]
    fn real_process_environment_is_used() {
        // A name no other test uses: tests run in parallel in one process.
        std::env::set_var("WARDEN_T_LOAD_REAL_ENV", "from-env");
        let f = write("[programs.a]\ncommand = \"echo ${WARDEN_T_LOAD_REAL_ENV}\"\n");
        let c = load(&f.path).unwrap();
        assert_eq!(c.programs["a"].command.0, ["echo", "from-env"]);
        let f = write("[programs.a]\ncommand = \"echo ${WARDEN_T_LOAD_SURELY_UNSET}\"\n");
        let e = load(&f.path).unwrap_err();
        assert_eq!(e.problems[0].key, "programs.a.command");
        assert!(e.problems[0].message.contains("WARDEN_T_LOAD_SURELY_UNSET"));
    }

    #[test]
    fn unset_variable_names_key_line_and_variable_once() {
        let text = "[token]\nprovider = \"kite\"\n[token.kite]\napi_key = \"${T_UNSET_KEY}\"\n\
                    api_secret = \"s\"\nuser_id = \"AB1234\"\n";
        let all = problems(text);
        assert_eq!(all.len(), 1, "{all:#?}");
        let p = &all[0];
        assert_eq!(p.key, "token.kite.api_key");
        assert_eq!(p.line, Some(4));
        assert!(p.message.contains("T_UNSET_KEY") && p.message.contains("export"));
    }

    #[test]
    fn every_type_error_is_reported_with_key_and_line() {
        let text = r#"
[supervisor]
shutdown_timeout = "soon"
log_format = "xml"

[http]
listen = "localhost"

[programs.web]
command = ["a", 5]
restart = "sometimes"
stop_signal = "SIGNOPE"
max_restarts = -1
backoff_initial = 5

[programs.web.health]
url = "http://127.0.0.1:1/"
auth_status = [403, "x"]
"#;
        let all = problems(text);
        let got: Vec<(&str, Option<usize>)> =
            all.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            got,
            [
                ("supervisor.shutdown_timeout", Some(3)),
                ("supervisor.log_format", Some(4)),
                ("http.listen", Some(7)),
                ("programs.web.command[1]", Some(10)),
                ("programs.web.restart", Some(11)),
                ("programs.web.stop_signal", Some(12)),
                ("programs.web.max_restarts", Some(13)),
                ("programs.web.backoff_initial", Some(14)),
                ("programs.web.health.auth_status[1]", Some(18)),
            ]
        );
        let msg = |k: &str| all.iter().find(|p| p.key == k).unwrap().message.clone();
        assert!(msg("supervisor.shutdown_timeout").contains("\"5s\""));
        assert!(msg("supervisor.log_format").contains("`json`"));
        assert!(msg("http.listen").contains("127.0.0.1:9180"));
        assert!(msg("programs.web.stop_signal").contains("SIGTERM"));
        assert!(msg("programs.web.backoff_initial").contains("duration"));
    }

    #[test]
    fn every_unknown_key_is_reported_with_path_line_and_suggestion() {
        let text = r#"[supervisor]
shutdown_timout = "1s"

[programs.backend]
command = "x"
restrat = "always"

[programs.backend.health]
url = "http://127.0.0.1:1/"
intervall = "1s"

[programz.x]
a = 1

[token]
provider = "none"
env_fil = ".env"
[token.kite]
api_key_file = "k"
"#;
        let all = problems(text);
        let got: Vec<(&str, Option<usize>)> =
            all.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            got,
            [
                ("supervisor.shutdown_timout", Some(2)),
                ("programs.backend.restrat", Some(6)),
                ("programs.backend.health.intervall", Some(10)),
                ("programz", Some(12)),
                ("token.env_fil", Some(17)),
                ("token.kite.api_key_file", Some(19)),
            ]
        );
        assert!(
            all[1].message.contains("did you mean `restart`"),
            "{}",
            all[1].message
        );
        assert!(all[3].message.contains("`programs`"), "{}", all[3].message);
        assert!(
            all[5].message.contains("not a secret"),
            "{}",
            all[5].message
        );
    }

    #[test]
    fn unknown_key_without_close_match_lists_the_known_ones() {
        let p = problem_at("[http]\nzzzzzzzz = 1\n", "http.zzzzzzzz");
        assert!(
            p.message.contains("listen, api_token, public_url"),
            "{}",
            p.message
        );
    }

    #[test]
    fn secret_type_errors_never_show_the_value() {
        let p = problem_at("[http]\napi_token = 987654321\n", "http.api_token");
        assert!(!p.message.contains("987654321"), "{}", p.message);
    }

    #[test]
    fn secret_file_is_read_relative_to_the_config_dir() {
        let f = write(
            "[token]\n[token.kite]\napi_key = \"k\"\nuser_id = \"AB1234\"\n\
             api_secret_file = \"secrets/api_secret\"\n",
        );
        std::fs::create_dir(f.dir.path().join("secrets")).unwrap();
        std::fs::write(f.dir.path().join("secrets/api_secret"), "s3cret\n").unwrap();
        let c = load_vars(&f, &[]).unwrap();
        assert_eq!(c.token.unwrap().kite.unwrap().api_secret.expose(), "s3cret");
    }

    #[test]
    fn secret_file_problem_suppresses_the_follow_up_empty_value_problem() {
        let all = problems(
            "[token.kite]\napi_key = \"k\"\nuser_id = \"AB1234\"\napi_secret_file = \"nope\"\n",
        );
        assert_eq!(all.len(), 1, "{all:#?}");
        assert_eq!(all[0].key, "token.kite.api_secret_file");
        assert_eq!(all[0].line, Some(4));
        assert!(all[0].message.contains("nope"));
    }

    #[test]
    fn relative_paths_resolve_against_the_config_dir() {
        let f = write(
            "[supervisor]\nstate_dir = \"state\"\n\
             [token]\nprovider = \"command\"\nenv_file = \"app/.env\"\n\
             [token.command]\ncommand = \"./refresh\"\ncwd = \"scripts\"\n\
             [programs.a]\ncommand = \"x\"\ncwd = \"backend\"\nenv_file = \"/abs/.env\"\n\
             [programs.b]\ncommand = \"x\"\n",
        );
        let c = load_vars(&f, &[]).unwrap();
        let base = std::path::absolute(f.dir.path()).unwrap();
        assert_eq!(c.source, base.join("supervisor.toml"));
        assert_eq!(c.supervisor.state_dir, base.join("state"));
        let t = c.token.as_ref().unwrap();
        assert_eq!(t.env_file, base.join("app/.env"));
        assert_eq!(t.command.as_ref().unwrap().cwd, base.join("scripts"));
        assert_eq!(c.programs["a"].cwd, base.join("backend"));
        assert_eq!(
            c.programs["a"].env_file.as_deref(),
            Some(Path::new("/abs/.env"))
        );
        assert_eq!(c.programs["b"].cwd, base);
        assert_eq!(c.programs["b"].env_file, None);
    }

    #[test]
    fn a_misspelt_key_is_reported_as_unknown_even_if_its_value_does_not_expand() {
        let all = problems("[http]\nlistne = \"${T_UNSET_ADDR}\"\n");
        assert_eq!(all.len(), 1, "{all:#?}");
        assert!(
            all[0].message.contains("did you mean `listen`"),
            "{}",
            all[0].message
        );
    }

    #[test]
    fn env_numbers_and_booleans_become_text() {
        let c = ok("[programs.a]\ncommand = \"x\"\nenv = { PORT = 8000, DEBUG = true }\n");
        assert_eq!(c.programs["a"].env["PORT"], "8000");
        assert_eq!(c.programs["a"].env["DEBUG"], "true");
    }

    #[test]
    fn problems_are_sorted_by_line() {
        let all =
            problems("[programs.b]\ncommand = \"\"\n[programs.a]\nrestrat = 1\ncommand = \"\"\n");
        let lines: Vec<_> = all.iter().map(|p| p.line).collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted);
        assert_eq!(all.len(), 3, "{all:#?}");
    }

    #[test]
    fn tolerated_problems_still_give_the_config_others_do_not() {
        let f = testutil::write(
            "[token]\nprovider = \"kite\"\n[token.kite]\napi_key = \"k\"\napi_secret = \"s\"\n\
             user_id = \"AB1234\"\nlogin = \"totp\"\n",
        );
        let is_credential = |p: &Problem| p.key.starts_with("token.kite.");
        let (cfg, problems) = load_tolerating(&f.path, &is_credential).unwrap();
        assert_eq!(cfg.token.unwrap().kite.unwrap().user_id, "AB1234");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["token.kite.password", "token.kite.totp_secret"]);
        assert!(load(&f.path).is_err(), "plain load still refuses it");
        assert!(load_tolerating(&f.path, &|_| false).is_err());
    }
}
