//! The tree reads as the pipeline: lower layers never import the layers
//! above them, and no two top-level modules import each other, directly or
//! round a longer cycle. Read from the source the way a reviewer would: the
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
    // Depth-first search for a back edge; the path on the stack is the cycle.
    fn visit(
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
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let cycle = visit(node, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "import cycle: {}",
            cycle.unwrap().join(" → ")
        );
    }
}
