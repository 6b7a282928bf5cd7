//! What a reload changes: which programs to start, stop, restart or leave alone, and which
//! global sections differ.

use super::schema::Config;

/// The difference between the running config and a newly loaded one. Program names are sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// In the new config only: start them.
    pub added: Vec<String>,
    /// In the old config only: stop them.
    pub removed: Vec<String>,
    /// In both, with any setting different (including `[programs.X.health]`): restart them.
    pub changed: Vec<String>,
    /// In both and identical: keep them running, same pid.
    pub unchanged: Vec<String>,
    /// Non-program sections that differ, in file order: any of `supervisor`, `http`, `token`,
    /// `notify`.
    pub globals: Vec<&'static str>,
}

impl ConfigDiff {
    /// True when any of `[supervisor]`, `[http]`, `[token]` (with its subsections) or
    /// `[notify]` differs.
    pub fn globals_changed(&self) -> bool {
        !self.globals.is_empty()
    }

    /// True when applying the new config would change nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.globals.is_empty()
    }
}

pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    for (name, p) in &new.programs {
        match old.programs.get(name) {
            None => d.added.push(name.clone()),
            Some(o) if o == p => d.unchanged.push(name.clone()),
            Some(_) => d.changed.push(name.clone()),
        }
    }
    d.removed = old
        .programs
        .keys()
        .filter(|n| !new.programs.contains_key(*n))
        .cloned()
        .collect();
    // BTreeMap iteration is sorted, so the lists are too.
    let sections = [
        ("supervisor", old.supervisor != new.supervisor),
        ("http", old.http != new.http),
        ("token", old.token != new.token),
        ("tokens", old.tokens != new.tokens),
        ("notify", old.notify != new.notify),
    ];
    d.globals = sections
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| name)
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::testutil::{load_vars, write};

    /// Both loaded from the same directory, as a reload does (paths resolve the same).
    fn pair(old: &str, new: &str) -> (Config, Config) {
        let f = write(old);
        let old = load_vars(&f, &[]).unwrap();
        std::fs::write(&f.path, new).unwrap();
        (old, load_vars(&f, &[]).unwrap())
    }

    fn diff_of(old: &str, new: &str) -> ConfigDiff {
        let (old, new) = pair(old, new);
        diff(&old, &new)
    }

    const BASE: &str = r#"
[http]
listen = "127.0.0.1:9180"

[programs.keep]
command = "sleep 100"

[programs.edit]
command = "sleep 100"

[programs.probe]
command = "sleep 100"
[programs.probe.health]
url = "http://127.0.0.1:1/"

[programs.gone]
command = "sleep 100"
"#;

    #[test]
    fn identical_configs_have_an_empty_diff() {
        let d = diff_of(BASE, BASE);
        assert!(d.is_empty());
        assert!(!d.globals_changed());
        assert_eq!(d.unchanged, ["edit", "gone", "keep", "probe"]);
    }

    #[test]
    fn programs_are_sorted_into_added_removed_changed_unchanged() {
        let new = BASE
            .replace("[programs.gone]", "[programs.new]")
            .replace(
                "[programs.edit]\ncommand = \"sleep 100\"",
                "[programs.edit]\ncommand = \"sleep 200\"",
            )
            .replace(
                "url = \"http://127.0.0.1:1/\"",
                "url = \"http://127.0.0.1:1/\"\ninterval = \"9s\"",
            );
        let d = diff_of(BASE, &new);
        assert_eq!(d.added, ["new"]);
        assert_eq!(d.removed, ["gone"]);
        assert_eq!(d.changed, ["edit", "probe"]);
        assert_eq!(d.unchanged, ["keep"]);
        assert!(!d.globals_changed());
    }

    #[test]
    fn removing_a_health_section_is_a_change() {
        let new = BASE.replace(
            "[programs.probe.health]\nurl = \"http://127.0.0.1:1/\"\n",
            "",
        );
        let d = diff_of(BASE, &new);
        assert_eq!(d.changed, ["probe"]);
    }

    #[test]
    fn global_sections_are_reported_by_name() {
        let new = format!(
            "[supervisor]\nshutdown_timeout = \"3s\"\n[notify]\ntelegram_chat_id = \"1\"\n\
             telegram_bot_token = \"t\"\n[token]\nprovider = \"none\"\n{BASE}"
        );
        let d = diff_of(BASE, &new);
        assert_eq!(d.globals, ["supervisor", "token", "notify"]);
        assert!(d.globals_changed());
        assert!(d.changed.is_empty() && d.added.is_empty() && d.removed.is_empty());

        let new = BASE.replace("127.0.0.1:9180", "127.0.0.1:9181");
        assert_eq!(diff_of(BASE, &new).globals, ["http"]);
    }
}
