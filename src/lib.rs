//! logproxy: `GET /v1/apps/{app_id}/logs` for many tenants, cached and rate-limited per app,
//! in front of ClickHouse.

pub mod actors;
pub mod api;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod clickhouse;
pub mod config;
pub mod domain;
pub mod encoding;
pub mod fleet;
pub mod lifecycle;
pub mod metrics;
pub mod page;
pub mod seed;
pub mod slots;
pub mod startup;
pub mod state;
pub mod tail;
pub mod telemetry;

/// Dependencies point down: no import cycle among the top-level modules (nor among the
/// files of `actors/`), and nothing below the HTTP layer imports `api`.
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// `module -> modules it names` (as `crate::m` or `super::m`) for the files under `dir`,
    /// grouped by `group` (a file's top-level module, or its file stem).
    fn imports(dir: &Path, group: &dyn Fn(&Path) -> String) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let from = group(&path);
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap(); // tests may look anywhere
            for prefix in ["crate::", "super::"] {
                for part in code.split(prefix).skip(1) {
                    let name: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != from {
                        graph.entry(from.clone()).or_default().insert(name);
                    }
                }
            }
        }
        graph
    }

    fn assert_acyclic(graph: &BTreeMap<String, BTreeSet<String>>) {
        fn visit<'a>(
            node: &'a str,
            graph: &'a BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if let Some(i) = path.iter().position(|n| *n == node) {
                panic!("import cycle: {}", path[i..].join(" -> ") + " -> " + node);
            }
            if !done.insert(node) {
                return;
            }
            path.push(node);
            for next in graph.get(node).into_iter().flatten() {
                visit(next, graph, path, done);
            }
            path.pop();
        }
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            visit(node, graph, &mut Vec::new(), &mut done);
        }
    }

    fn src() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    fn stem(p: &Path) -> String {
        p.file_stem().unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn top_level_modules_form_no_import_cycle_and_only_the_top_imports_api() {
        let root = src();
        let graph = imports(&root, &|p| {
            let rel = p.strip_prefix(&root).unwrap();
            stem(Path::new(rel.components().next().unwrap().as_os_str()))
        });
        // `super::x` inside a folder names a sibling file, not a top-level module.
        let graph = graph
            .into_iter()
            .map(|(m, deps)| {
                let deps = deps
                    .into_iter()
                    .filter(|d| root.join(format!("{d}.rs")).exists() || root.join(d).is_dir());
                (m, deps.collect())
            })
            .collect();
        assert_acyclic(&graph);
        for (module, deps) in &graph {
            let top =
                ["api", "startup", "lifecycle", "cli", "main", "lib"].contains(&module.as_str());
            assert!(top || !deps.contains("api"), "{module} imports api");
        }
    }

    #[test]
    fn the_files_of_actors_form_no_import_cycle() {
        let graph = imports(&src().join("actors"), &|p| stem(p));
        assert_acyclic(&graph);
    }
}
