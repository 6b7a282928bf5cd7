//! What changed between two configs, program by program.

use super::Config;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    for (name, cfg) in &new.programs {
        match old.programs.get(name) {
            None => d.added.push(name.clone()),
            Some(prev) if prev != cfg => d.changed.push(name.clone()),
            Some(_) => d.unchanged.push(name.clone()),
        }
    }
    d.removed = old
        .programs
        .keys()
        .filter(|n| !new.programs.contains_key(*n))
        .cloned()
        .collect();
    d
}
