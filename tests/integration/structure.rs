//! The layout of the code: the stage modules of `src/lib.rs` depend on each other without a
//! cycle, so each stage can be read (and changed) knowing only the stages before it. Read from
//! the `crate::` paths of `src/` as text; `error` (the crate error, which folds every stage's
//! error) is not a stage.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module -> the modules its code names through `crate::`.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level modules `src/lib.rs` declares, but the crate error.
fn stages(src: &Path) -> Vec<String> {
    fs::read_to_string(src.join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix("pub ").unwrap_or(line.trim());
            line.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_owned)
        })
        .filter(|module| module != "error")
        .collect()
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The top-level modules that `code` names: `crate::x` and the `x` of `crate::{x, y::z}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let words = |text: &str| -> Option<String> {
        let name: String = text
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        (!name.is_empty()).then_some(name)
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(group.split(',').filter_map(words));
            }
            None => out.extend(words(rest)),
        }
    }
    out
}

/// The dependency graph among `stages` in the code below `src` (comments left out).
fn graph(src: &Path, stages: &[String]) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        if !stages.contains(&module) {
            continue;
        }
        let code: String = fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let named: Vec<String> = named_modules(&code)
            .into_iter()
            .filter(|m| *m != module && stages.contains(m))
            .collect();
        graph.entry(module).or_default().extend(named);
    }
    graph
}

/// A cycle of `graph` as a path `a -> b -> ... -> a`, if there is one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn paths_name_modules_alone_and_in_groups() {
    let named = named_modules("use crate::atlas::{self, X};\nuse crate::{index, runs::Need};");
    let expected: BTreeSet<String> = ["atlas", "index", "runs"].map(String::from).into();
    assert_eq!(named, expected);
}

#[test]
fn a_cycle_is_found_and_a_chain_is_not() {
    let edges = |pairs: &[(&str, &str)]| -> Graph {
        let mut graph = Graph::new();
        for (a, b) in pairs {
            graph
                .entry(a.to_string())
                .or_default()
                .insert(b.to_string());
        }
        graph
    };
    assert_eq!(cycle(&edges(&[("a", "b"), ("b", "c")])), None);
    let found = cycle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap();
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(found.first(), found.last());
}

#[test]
fn stage_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let stages = stages(&src);
    assert!(
        ["io", "atlas", "runs", "index", "sql"]
            .iter()
            .all(|s| stages.contains(&s.to_string())),
        "lib.rs lists the stages: {stages:?}"
    );
    let graph = graph(&src, &stages);
    assert!(
        graph["sql"].contains("model") && graph["index"].contains("runs"),
        "the graph holds known edges: {graph:?}"
    );
    if let Some(found) = cycle(&graph) {
        panic!("import cycle among stage modules: {}", found.join(" -> "));
    }
}
