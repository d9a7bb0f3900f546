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

/// Dependencies point down: no import cycle among the top-level modules, nor among the
/// files of any folder, and nothing below the HTTP layer imports `api`.
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// `module or file -> the modules or files it imports`.
    type Graph = BTreeMap<String, BTreeSet<String>>;

    /// Cycles that are known and fixed elsewhere: each goes with its fix (the test fails
    /// while one is listed that is no longer found).
    const KNOWN: &[&str] = &[];

    /// What a file says before its tests (tests may import anything), without `//` lines.
    fn code(path: &Path) -> String {
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let lines = code.lines().filter(|l| !l.trim_start().starts_with("//"));
        lines.collect::<Vec<_>>().join("\n")
    }

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }

    /// The name `text` starts with (`*` for a glob).
    fn ident(text: &str) -> String {
        let text = text.trim_start();
        match text.starts_with('*') {
            true => "*".into(),
            false => text.chars().take_while(|c| is_ident(*c)).collect(),
        }
    }

    /// Whether `code` names `word` whole.
    fn names(code: &str, word: &str) -> bool {
        code.match_indices(word).any(|(at, _)| {
            !code[..at].ends_with(is_ident) && !code[at + word.len()..].starts_with(is_ident)
        })
    }

    /// The first segment of each path that starts with `prefix` in `code`: `prefix::a::b`
    /// gives `a`, `prefix::{a::b, c}` gives `a` and `c` (`x::prefix::..` is not one).
    fn heads(code: &str, prefix: &str) -> Vec<String> {
        let mut heads = Vec::new();
        for (at, _) in code.match_indices(prefix) {
            if code[..at].ends_with(|c: char| is_ident(c) || c == ':') {
                continue;
            }
            let rest = code[at + prefix.len()..].trim_start();
            let Some(group) = rest.strip_prefix('{') else {
                heads.push(ident(rest));
                continue;
            };
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth > 0 => depth -= 1,
                    ',' | '}' if depth == 0 => {
                        heads.push(ident(&group[start..i]));
                        start = i + 1;
                        if c == '}' {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        heads.retain(|h| !h.is_empty());
        heads
    }

    /// The top-level modules and the top-level modules each names (`crate::m`, or `super::m`
    /// where `super` is the crate: in `src/x.rs` and `src/x/mod.rs`).
    fn top_level_imports(root: &Path) -> Graph {
        let mut graph = Graph::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let rel = path.strip_prefix(root).unwrap();
            let from = stem(Path::new(rel.components().next().unwrap().as_os_str()));
            let code = code(&path);
            let mut named = heads(&code, "crate::");
            if rel.parent() == Some(Path::new("")) || path.ends_with(format!("{from}/mod.rs")) {
                named.extend(heads(&code, "super::"));
            }
            let module =
                |m: &String| root.join(format!("{m}.rs")).exists() || root.join(m).is_dir();
            let deps = graph.entry(from.clone()).or_default();
            deps.extend(named.into_iter().filter(|m| *m != from && module(m)));
        }
        graph
    }

    /// The files of the folder `dir` (module path `module`, e.g. `tail`) by stem (`mod` for
    /// its `mod.rs`), and the files of the folder each imports. A file imports a sibling it
    /// names in a path (`super::sibling::..`, `crate::module::sibling::..`), and `mod.rs`
    /// when it names an item there (`super::Item`, where no sibling defines `Item`).
    /// `mod.rs` imports a child it uses: in a `use` (`use child::..`), a path in its code
    /// (`child::f()`), or a name it re-exports from the child and uses itself; declaring
    /// the child (`mod child;`) or only re-exporting from it (`pub use child::Item;`) does
    /// not. A file declared only for tests is left out.
    fn folder_imports(dir: &Path, module: &str) -> Graph {
        let own = code(&dir.join("mod.rs"));
        let declared = |line: &str| {
            let line = line.trim_start();
            let line = ["pub ", "pub(crate) "]
                .iter()
                .find_map(|v| line.strip_prefix(v))
                .unwrap_or(line);
            line.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_owned)
        };
        let children: Vec<String> = own.lines().filter_map(declared).collect();
        let codes: BTreeMap<&str, String> = children
            .iter()
            .map(|c| (c.as_str(), code(&dir.join(format!("{c}.rs")))))
            .collect();
        // The file that defines `item`: a child, else `mod` (there, or not found).
        let owner = |item: &str| -> String {
            let defines = |code: &str| {
                ["struct", "enum", "fn", "type", "trait", "const", "static"]
                    .iter()
                    .any(|kw| names(code, &format!("{kw} {item}")))
            };
            match codes.iter().find(|(_, code)| defines(code)) {
                Some((child, _)) if !defines(&own) => child.to_string(),
                _ => "mod".into(),
            }
        };
        let in_folder = format!("crate::{module}::");
        let mut graph = Graph::new();
        for (child, code) in &codes {
            let named = heads(code, "super::").into_iter();
            let deps =
                named
                    .chain(heads(code, &in_folder))
                    .filter_map(|name| match name.as_str() {
                        "super" => None,
                        "self" | "*" => Some("mod".to_string()),
                        n if children.iter().any(|c| c == n) => Some(name),
                        n => Some(owner(n)),
                    });
            let deps = deps.filter(|d| d != child).collect();
            graph.insert(child.to_string(), deps);
        }
        // `mod.rs`: its `use` statements, then the rest of its code.
        let (mut uses, mut body, mut in_use) = (Vec::<String>::new(), String::new(), false);
        for line in own.lines().filter(|l| declared(l).is_none()) {
            let start = line.trim_start();
            let opens = ["use ", "pub use ", "pub(crate) use "];
            if !in_use && opens.iter().any(|o| start.starts_with(o)) {
                uses.push(String::new());
                in_use = true;
            }
            match in_use {
                true => uses.last_mut().unwrap().push_str(line),
                false => body.push_str(&format!("{line}\n")),
            }
            in_use &= !line.trim_end().ends_with(';');
        }
        let mut deps = BTreeSet::new();
        for statement in &uses {
            let path = statement.trim_start();
            let reexport = path.starts_with("pub");
            let path = path
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ");
            let path = path.trim_start_matches("use ").trim_start_matches("self::");
            let path = path.trim_start_matches(in_folder.as_str());
            let child = ident(path);
            if !children.contains(&child) {
                continue;
            }
            // A re-export imports its child only if this file uses a name it brings.
            let brought = path.split(|c: char| !is_ident(c)).filter(|n| !n.is_empty());
            if !reexport || brought.skip(1).any(|n| names(&body, n)) {
                deps.insert(child);
            }
        }
        let mut paths = heads(&body, "self::");
        paths.extend(heads(&body, &in_folder));
        for child in &children {
            if paths.contains(child) || !heads(&body, &format!("{child}::")).is_empty() {
                deps.insert(child.clone());
            }
        }
        graph.insert("mod".into(), deps);
        graph
    }

    /// Each import cycle a depth-first walk meets, as `[a, b, a]`.
    fn cycles(graph: &Graph) -> Vec<Vec<String>> {
        fn visit(
            node: &str,
            graph: &Graph,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            found: &mut Vec<Vec<String>>,
        ) {
            if let Some(i) = path.iter().position(|n| n == node) {
                found.push([&path[i..], &[node.to_string()]].concat());
                return;
            }
            if !done.insert(node.to_string()) {
                return;
            }
            path.push(node.to_string());
            for next in graph.get(node).into_iter().flatten() {
                visit(next, graph, path, done, found);
            }
            path.pop();
        }
        let (mut done, mut found) = (BTreeSet::new(), Vec::new());
        for node in graph.keys() {
            visit(node, graph, &mut Vec::new(), &mut done, &mut found);
        }
        found
    }

    /// The cycles between the files of each folder under `root` (one with a `mod.rs`), as
    /// `src/tail/: hub.rs -> mod.rs -> hub.rs`.
    fn folder_cycles(root: &Path) -> Vec<String> {
        let (mut folders, mut stack) = (Vec::new(), vec![root.to_path_buf()]);
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.join("mod.rs").is_file() {
                    folders.push(path.clone());
                    stack.push(path);
                }
            }
        }
        folders.sort();
        let mut found = Vec::new();
        for dir in &folders {
            let rel = dir
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            for cycle in cycles(&folder_imports(dir, &rel.replace('/', "::"))) {
                let files: Vec<String> = cycle.iter().map(|f| format!("{f}.rs")).collect();
                found.push(format!("src/{rel}/: {}", files.join(" -> ")));
            }
        }
        found
    }

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    fn stem(p: &Path) -> String {
        p.file_stem().unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn top_level_modules_form_no_import_cycle_and_only_the_top_imports_api() {
        let graph = top_level_imports(&src());
        let found: Vec<String> = cycles(&graph).iter().map(|c| c.join(" -> ")).collect();
        assert!(
            found.is_empty(),
            "import cycles between the top-level modules: {}",
            found.join("; ")
        );
        for (module, deps) in &graph {
            let top =
                ["api", "startup", "lifecycle", "cli", "main", "lib"].contains(&module.as_str());
            assert!(top || !deps.contains("api"), "{module} imports api");
        }
    }

    #[test]
    fn the_files_of_every_folder_form_no_import_cycle() {
        let found = folder_cycles(&src());
        let new: Vec<&String> = found
            .iter()
            .filter(|c| !KNOWN.contains(&c.as_str()))
            .collect();
        let gone: Vec<&&str> = KNOWN
            .iter()
            .filter(|k| !found.iter().any(|c| c == *k))
            .collect();
        assert!(
            new.is_empty(),
            "import cycles between the files of a folder:\n{}",
            new.iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(gone.is_empty(), "fixed: take these out of KNOWN: {gone:?}");
    }

    #[test]
    fn a_cycle_between_files_is_found_and_a_declaration_or_re_export_is_not_one() {
        let root = std::env::temp_dir().join(format!("layering-{}", std::process::id()));
        let write = |dir: &str, files: &[(&str, &str)]| {
            let dir = root.join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in files {
                std::fs::write(dir.join(name), text).unwrap();
            }
        };
        // A child that uses an item of `mod.rs`, which only declares and re-exports it.
        let children = "mod a;\nmod b;\npub use a::A;\npub struct Item;\n";
        let b_uses_mod = "use super::{a::A, Item};\npub struct B;\n";
        write(
            "fine",
            &[
                ("mod.rs", children),
                ("a.rs", "pub struct A;\n"),
                ("b.rs", b_uses_mod),
            ],
        );
        // `mod.rs` uses what it re-exports from `b`, and `b` an item of `mod.rs`.
        let uses_b = "mod b;\npub use b::B;\npub struct Item(B);\n";
        let b_uses_mod = "pub struct B(super::Item);\n";
        write("up", &[("mod.rs", uses_b), ("b.rs", b_uses_mod)]);
        // Siblings through a grouped `use` and a crate path; tests may import anything.
        let c = "use super::{d::D};\npub struct C;\n#[cfg(test)]\nuse super::e::E;\n";
        let d = "pub struct D(crate::side::c::C);\n";
        let e = "pub struct E(super::c::C);\n";
        write(
            "side",
            &[
                ("mod.rs", "mod c;\nmod d;\nmod e;\n"),
                ("c.rs", c),
                ("d.rs", d),
                ("e.rs", e),
            ],
        );
        let found = folder_cycles(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            found,
            [
                "src/side/: c.rs -> d.rs -> c.rs",
                "src/up/: b.rs -> mod.rs -> b.rs"
            ]
        );
    }
}
