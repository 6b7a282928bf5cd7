//! The module graph rule (README "Architecture"): no import cycles between the top-level
//! modules of `src/`, and the model imports nothing from the crate.
//!
//! An edge X -> Y is any `crate::Y` path written in X's files (outside their unit tests, which
//! may reach anywhere, and outside comments), the same reading as `cycles.py` in the team's
//! tools, so the two agree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use regex::Regex;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Top-level modules (`src/X.rs` or `src/X/`) and their files; the crate roots are left out.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut mods: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in fs::read_dir(src).expect("read src/") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && name != "bin" {
            let files = mods.entry(name).or_default();
            rust_files(&path, files);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "lib" && stem != "main" {
                mods.entry(stem.to_string()).or_default().push(path);
            }
        }
    }
    mods
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn graph(src: &Path) -> Graph {
    let tests = Regex::new(r"(?s)#\[cfg\(test\)\]\s*mod\s+tests\s*\{.*").unwrap();
    let comment = Regex::new(r"//[^\n]*").unwrap();
    let path = Regex::new(r"\bcrate::([a-z_][a-z0-9_]*)").unwrap();
    let block = Regex::new(r"(?s)\buse\s+crate::\{([^;]*)\}").unwrap();
    let in_block = Regex::new(r"(?m)(?:^|[,{\s])([a-z_][a-z0-9_]*)\s*(?:::|,|\}|$)").unwrap();
    let mods = modules(src);
    let mut g = Graph::new();
    for (m, files) in &mods {
        let deps = g.entry(m.clone()).or_default();
        for f in files {
            let text = fs::read_to_string(f).unwrap();
            let text = tests.replace(&text, "");
            let text = comment.replace_all(&text, "");
            let mut names: BTreeSet<String> = path
                .captures_iter(&text)
                .map(|c| c[1].to_string())
                .collect();
            for b in block.captures_iter(&text) {
                names.extend(in_block.captures_iter(&b[1]).map(|c| c[1].to_string()));
            }
            deps.extend(names.into_iter().filter(|n| n != m && mods.contains_key(n)));
        }
    }
    g
}

/// Every group of modules that import each other, directly or around a loop.
fn cycles(g: &Graph) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for d in &g[&m] {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for m in g.keys() {
        let group: BTreeSet<String> = reachable[m]
            .iter()
            .filter(|o| *o != m && reachable[*o].contains(m))
            .cloned()
            .chain(std::iter::once(m.clone()))
            .collect();
        if group.len() > 1 && !out.contains(&group) {
            out.push(group);
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let g = graph(&src());
    assert!(
        g.contains_key("supervisor") && g.contains_key("model"),
        "{g:?}"
    );
    let found = cycles(&g);
    assert!(
        found.is_empty(),
        "import cycles between top-level modules: {found:?}; move the shared piece into a \
         module both can import (README, Architecture)"
    );
}

#[test]
fn the_model_imports_nothing_from_the_crate() {
    let g = graph(&src());
    assert_eq!(g["model"], BTreeSet::new(), "model must stay a leaf");
}

#[test]
fn the_check_sees_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    fs::write(src.join("lib.rs"), "pub mod a; pub mod b; pub mod c;").unwrap();
    fs::write(src.join("a.rs"), "use crate::{b::Thing, c};").unwrap();
    fs::create_dir(src.join("b")).unwrap();
    fs::write(
        src.join("b/mod.rs"),
        "// crate::c in a comment is no import\nfn f() { crate::a::g() }",
    )
    .unwrap();
    fs::write(
        src.join("c.rs"),
        "#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    )
    .unwrap();
    let g = graph(src);
    assert_eq!(g["c"], BTreeSet::new(), "unit tests may reach anywhere");
    assert_eq!(g["b"], BTreeSet::from(["a".to_string()]));
    let found = cycles(&g);
    assert_eq!(
        found,
        vec![BTreeSet::from(["a".to_string(), "b".to_string()])]
    );
}
