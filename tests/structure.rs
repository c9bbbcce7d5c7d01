//! The shape of `src/`, held by a test: no two modules reach each other through
//! `crate::` imports (data flows one way: server → agent → providers, tools, memory), the
//! layers below the server never import it or `app`, and no source file grows past 800
//! lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and main.rs).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every top-level module named after `crate::` in `text` (comments stripped), including
/// those inside `crate::{a, b::c}` groups.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = top_module(&src, file) else {
            continue;
        };
        let text = fs::read_to_string(file).expect("read");
        let entry = graph.entry(from.clone()).or_default();
        for to in crate_imports(&text) {
            if to != from {
                entry.insert(to);
            }
        }
    }
    graph
}

/// A path from `from` to `to` in `graph`, if there is one.
fn path(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![vec![from.to_string()]];
    while let Some(trail) = stack.pop() {
        let last = trail.last().expect("non-empty").clone();
        if last == to && trail.len() > 1 {
            return Some(trail);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in graph.get(&last).into_iter().flatten() {
            let mut longer = trail.clone();
            longer.push(next.clone());
            stack.push(longer);
        }
    }
    None
}

#[test]
fn no_two_modules_reach_each_other() {
    let graph = module_graph();
    assert!(
        graph.contains_key("agent") && graph.contains_key("server"),
        "{graph:?}"
    );
    for (from, targets) in &graph {
        for to in targets {
            if let Some(back) = path(&graph, to, from) {
                panic!("{from} imports {to}, and {to} reaches {from} again: {back:?}");
            }
        }
    }
}

#[test]
fn the_layers_below_the_server_never_import_it() {
    let graph = module_graph();
    for layer in [
        "agent",
        "memory",
        "providers",
        "mcp",
        "reach",
        "heartbeat",
        "sessions",
    ] {
        let imports = graph.get(layer).cloned().unwrap_or_default();
        for forbidden in ["app", "server"] {
            assert!(
                !imports.contains(forbidden),
                "{layer} imports crate::{forbidden}"
            );
        }
    }
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    for file in files {
        let lines = fs::read_to_string(&file).expect("read").lines().count();
        assert!(
            lines <= MAX_LINES,
            "{} has {lines} lines (at most {MAX_LINES}: split it by idea)",
            file.display()
        );
    }
}
