//! The layers point one way: a module names (`crate::x`) only modules of
//! the layers below its own, and the HTTP handlers reach no further than
//! the services (no catalogs, pipeline runs, plans or session).
//!
//! `definition`, `udaf`, `storage`, `format` -> `compile` -> `series` ->
//! `engine` -> services (`skill_metrics`, `metric_store`, `interaction`, `analytics`,
//! `ingest`, `generate`) -> `pipeline`, `bench` -> `api`, `repl`, `cli`
//! -> `alerts`, `cluster` -> `server` -> `main`.

use std::path::Path;

fn rank(module: &str) -> Option<u32> {
    Some(match module {
        "definition" | "udaf" | "storage" | "format" => 0,
        "compile" => 1,
        "series" => 2,
        "engine" => 3,
        "skill_metrics" | "metric_store" | "interaction" | "analytics" | "ingest" | "generate" => 4,
        "pipeline" | "bench" => 5,
        "api" | "repl" | "cli" => 6,
        // Alerts watch what the APIs answer: they use the APIs' request
        // checks, state and errors, and add their routes from above.
        "alerts" => 7,
        // The cluster carries the engine's tables and functions to other
        // processes and wraps the HTTP router: above the APIs.
        "cluster" => 7,
        "server" => 8,
        "main" | "lib" => 9,
        _ => return None,
    })
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `x` of every `crate::x` in `text`.
fn crate_paths(text: &str) -> Vec<&str> {
    text.match_indices("crate::")
        .filter(|(i, _)| {
            // Not `metricstore::crate::` or an identifier ending in `crate`.
            text[..*i]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = rank(&top) else {
            wrong.push(format!(
                "{rel}: module {top} has no layer; add it to this test"
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&text) {
            if used == top {
                continue;
            }
            match rank(used) {
                Some(r) if r >= own => wrong.push(format!("{rel}: {top} uses {used}")),
                _ => {}
            }
        }
        if top == "api" {
            for (n, line) in text.lines().enumerate() {
                let below = [
                    "storage::catalog",
                    "crate::pipeline",
                    "compile::compile",
                    "compile_batch",
                    ".ctx",
                    "LogicalPlanBuilder",
                ];
                if let Some(b) = below.iter().find(|b| line.contains(*b)) {
                    wrong.push(format!("{rel}:{}: a handler reaches {b}", n + 1));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
