//! The tree reads as the pipeline: lower layers never import the layers
//! above them, no two top-level modules import each other, directly or
//! round a longer cycle, and neither do two files of one folder. Read from the source the way a reviewer would: the
//! `crate::<module>` paths in each file outside its `#[cfg(test)]` part.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common;

/// Modules below the pipeline: data types, parsers and storage that the
/// pipeline uses and that must build and be tested without it.
const LOWER: &[&str] = &[
    "board", "config", "event", "fs", "hex", "hw", "rand", "signing", "spool", "time", "topic",
    "units", "users",
];

/// The pipeline and what wires it: sources → dispatch → runtime → sinks →
/// spool → uplink, plus the node that starts it and the CLI.
const PIPELINE: &[&str] = &[
    "broker",
    "cli",
    "control",
    "deploy",
    "dispatch",
    "http",
    "lifecycle",
    "mqtt",
    "node",
    "runtime",
    "service",
    "sinks",
    "sources",
    "telemetry",
    "uplink",
];

/// Top-level module → the top-level modules its non-test code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = common::repo().join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    collect(&src, &mut files);
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap();
        let top = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let entry = graph.entry(top.clone()).or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or("");
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    entry.insert(name);
                }
            }
        }
    }
    graph
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn lower_layers_never_import_the_pipeline() {
    let graph = imports();
    for name in LOWER.iter().chain(PIPELINE) {
        assert!(
            graph.contains_key(*name),
            "src/{name} is listed in tests/it/layers.rs but does not exist: update the lists"
        );
    }
    for name in graph.keys() {
        assert!(
            LOWER.contains(&name.as_str())
                || PIPELINE.contains(&name.as_str())
                || name == "logging"
                || name == "metrics",
            "src/{name} is new: place it in LOWER or PIPELINE in tests/it/layers.rs"
        );
    }
    let mut upward = Vec::new();
    for lower in LOWER {
        for used in &graph[*lower] {
            if PIPELINE.contains(&used.as_str()) {
                upward.push(format!("{lower} → {used}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "lower layers import the pipeline: {upward:?}"
    );
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let graph = imports();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let cycle = find_cycle(node, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "import cycle: {}",
            cycle.unwrap().join(" → ")
        );
    }
}

/// The sibling files (by module name) that `code`, a file of folder `dir`
/// (relative to src/, "" for src/ itself), names through `super::` or
/// `crate::<dir>::`.
fn sibling_names(code: &str, dir: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let crate_prefix = format!("crate::{}::", dir.replace('/', "::"));
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        for prefix in ["super::", crate_prefix.as_str()] {
            if prefix == "crate::::" {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                rest = &rest[at + prefix.len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    // `super::{a, b::C, self}`: the first name of each item.
                    let mut depth = 0;
                    let mut item = String::new();
                    for c in group.chars() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => break,
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                names.insert(first_name(&item));
                                item.clear();
                                continue;
                            }
                            _ => {}
                        }
                        if depth == 0 {
                            item.push(c);
                        }
                    }
                    names.insert(first_name(&item));
                } else {
                    names.insert(first_name(rest));
                }
            }
        }
    }
    names
}

fn first_name(text: &str) -> String {
    text.trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn no_two_files_of_one_folder_import_each_other() {
    let src = common::repo().join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    // folder → (file module name → sibling names it uses).
    let mut folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let name = relative.file_stem().unwrap().to_string_lossy().to_string();
        if name == "mod" || name == "lib" || name == "main" {
            continue;
        }
        let dir = relative
            .parent()
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        folders
            .entry(dir.clone())
            .or_default()
            .insert(name, sibling_names(code, &dir));
    }
    for (dir, files) in &folders {
        // Edges only between files of this folder.
        let graph: BTreeMap<String, BTreeSet<String>> = files
            .iter()
            .map(|(name, used)| {
                let siblings = used
                    .iter()
                    .filter(|u| *u != name && files.contains_key(*u))
                    .cloned()
                    .collect();
                (name.clone(), siblings)
            })
            .collect();
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            let cycle = find_cycle(node, &graph, &mut Vec::new(), &mut done);
            assert!(
                cycle.is_none(),
                "import cycle in src/{dir}: {}",
                cycle.unwrap().join(" → ")
            );
        }
    }
}

/// Depth-first search for a back edge; the path on the stack is the cycle.
fn find_cycle(
    node: &str,
    graph: &BTreeMap<String, BTreeSet<String>>,
    stack: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(at) = stack.iter().position(|n| n == node) {
        let mut cycle = stack[at..].to_vec();
        cycle.push(node.to_string());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    stack.push(node.to_string());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(cycle) = find_cycle(next, graph, stack, done) {
            return Some(cycle);
        }
    }
    stack.pop();
    done.insert(node.to_string());
    None
}
