//! Keeps platform's modules a tree: a unit test reads every source file,
//! collects the `crate::<module>` paths each top-level module uses, and fails
//! naming the circle if one module's dependencies lead back to it. A circle
//! means a type lives in the wrong module; move it to the one that owns it
//! (as `tokens` and `grpc` were split out of `layers`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it refers to (itself excluded).
type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifier at the start of `text`.
fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first segment of every path a `crate::` at the start of `text` names:
/// `crate::a::b` → `a`; `crate::{a::b, c}` → `a`, `c`.
fn first_segments(text: &str) -> Vec<&str> {
    let Some(group) = text.strip_prefix('{') else {
        return vec![ident(text)];
    };
    let mut depth = 1;
    let mut items = Vec::new();
    let mut start = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(&group[start..i]);
                    break;
                }
            }
            ',' if depth == 1 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .map(|item| ident(item.trim()))
        .filter(|name| !name.is_empty())
        .collect()
}

/// Reads `src/`: each top-level module's references to the others. Names
/// re-exported at the root (`crate::ErrorResponse`) count as their module.
fn graph(src: &Path) -> Graph {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let mut reexports = BTreeMap::new();
    for line in lib.lines() {
        if let Some(rest) = line.trim().strip_prefix("pub use ") {
            let module = ident(rest).to_owned();
            let names = rest.trim_end_matches(';');
            let names = names.rsplit("::").next().unwrap_or_default();
            for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
                reexports.insert(name.trim().to_owned(), module.clone());
            }
        }
    }
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap_or(&file);
        let Some(first) = relative.components().next() else {
            continue;
        };
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" || module == "module_graph" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let uses = graph.entry(module.clone()).or_default();
        for line in text.lines() {
            // Comments (doc links included) are not dependencies.
            let code = line.split("//").next().unwrap_or_default();
            for (at, _) in code.match_indices("crate::") {
                if at > 0 && code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                    continue; // e.g. `some_crate::`
                }
                for name in first_segments(&code[at + "crate::".len()..]) {
                    let target = reexports.get(name).map_or(name, String::as_str);
                    if target != module {
                        uses.insert(target.to_owned());
                    }
                }
            }
        }
    }
    graph
}

/// A circle in `graph`, as the modules along it (first repeated at the end).
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_module_graph_has_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(graph.len() > 10, "read too few modules: {graph:?}");
    assert!(
        graph["server"].contains("config") && graph["layers"].contains("error"),
        "references not seen: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("platform's modules form a circle: {}", cycle.join(" -> "));
    }
}

#[test]
fn a_circle_is_found_and_named() {
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    graph.entry("d".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph).map(|c| c.join(" -> ")).as_deref(),
        Some("a -> b -> c -> a")
    );
    assert_eq!(
        first_segments("{ops, telemetry::{a, b}, tls};"),
        ["ops", "telemetry", "tls"]
    );
}
