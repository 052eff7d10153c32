//! The shape of the code, held by a test so that it stays: in every crate no module imports one
//! that imports it back (directly or round a longer circle), a module imports only those its parent
//! lists below it (`# Layout` in `lib.rs`, the list in a folder's file), no source file outside
//! tests is over 400 lines, and each `lib.rs` names every one of its modules under `# Layout`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose layout is held.
const CRATES: [&str; 6] = [
    "protocol",
    "relay-server",
    "relay-agent",
    "service",
    "test-support",
    "bench",
];

/// The longest a file of code may be (its tests live in a sibling `*_tests.rs`).
const MAX_LINES: usize = 400;

/// A module path inside a crate: `[]` for the root, `["edge", "webhook"]` for `edge/webhook.rs`.
type Module = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds tests/")
        .to_owned()
}

/// Every non-test source file of `krate`, by module path. Binaries (`main.rs`) are left out:
/// they sit above the library and only import it.
fn modules(krate: &str) -> BTreeMap<Module, String> {
    let src = workspace().join(krate).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".rs")
                || name.ends_with("_tests.rs")
                || name.starts_with("test_")
                || name == "main.rs"
            {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let mut module: Module = relative
                .iter()
                .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if module == ["lib"] {
                module.clear();
            } else if module.last().is_some_and(|last| last == "mod") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            out.insert(module, text);
        }
    }
    out
}

/// The code of a file without comments and without the test modules it declares
/// (`#[cfg(test)]`, its other attributes, and the `mod …;` line).
fn code(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_test_item = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            in_test_item = true;
            continue;
        }
        if in_test_item {
            if !trimmed.starts_with("#[") {
                in_test_item = false;
            }
            continue;
        }
        out.push(match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        });
    }
    out.join("\n")
}

/// The paths a file names: `crate::a::b`, `super::x`, `self::x`, and `child::x` in `use` lines,
/// with one level of `{…}` groups opened up.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let starts_word = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':';
        let rest = &code[i..];
        let head = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|head| rest.starts_with(head));
        if let (true, Some(head)) = (starts_word, head) {
            let root = head.trim_end_matches("::").to_owned();
            let tail = &rest[head.len()..];
            for path in expand(tail) {
                let mut full = vec![root.clone()];
                full.extend(path);
                paths.push(full);
            }
            i += head.len();
        } else {
            i += 1;
        }
    }
    // `use child::…` inside the module that declares `mod child;`.
    for line in code.lines() {
        let line = line.trim_start();
        let Some(used) = line
            .strip_prefix("use ")
            .or_else(|| line.strip_prefix("pub use "))
            .or_else(|| line.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        if ["crate::", "super::", "self::", "std::", "core::"]
            .iter()
            .any(|head| used.starts_with(head))
        {
            continue;
        }
        for path in expand(used) {
            let mut full = vec!["self".to_owned()];
            full.extend(path);
            paths.push(full);
        }
    }
    paths
}

/// `a::b::{c, d::e}` → `[a, b, c]`, `[a, b, d, e]`; a plain path → itself.
fn expand(tail: &str) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    let mut rest = tail;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            return group[..end]
                .split(',')
                .map(|item| {
                    let mut path = prefix.clone();
                    path.extend(idents(item.trim()));
                    path
                })
                .collect();
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            return vec![prefix];
        }
        prefix.push(rest[..end].to_owned());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(next) => rest = next,
            None => return vec![prefix],
        }
    }
}

fn idents(path: &str) -> Vec<String> {
    path.split("::")
        .map(|part| {
            part.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .take_while(|part| !part.is_empty())
        .collect()
}

/// The module a path names, resolved from `from`: the longest prefix that is a module.
fn resolve(from: &Module, path: &[String], known: &BTreeSet<Module>) -> Option<Module> {
    let (mut base, rest) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("super") => (from[..from.len().saturating_sub(1)].to_vec(), &path[1..]),
        Some("self") => (from.clone(), &path[1..]),
        _ => return None,
    };
    let mut rest = rest;
    // `super::super::x`.
    while rest.first().is_some_and(|p| p == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut found = known.contains(&base).then(|| base.clone());
    for part in rest {
        base.push(part.clone());
        if known.contains(&base) {
            found = Some(base.clone());
        } else {
            break;
        }
    }
    found
}

/// The import edges between a crate's modules (a module's own children declared with `mod` are
/// not imports unless it also `use`s them).
fn imports(modules: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let known: BTreeSet<Module> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(module, text)| {
            let targets = named_paths(&code(text))
                .iter()
                .filter_map(|path| resolve(module, path, &known))
                .filter(|target| target != module)
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// One circle of imports, if there is any.
fn find_circle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        marks: &mut BTreeMap<Module, Mark>,
        trail: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = trail.iter().position(|m| m == node).unwrap_or(0);
                let mut circle = trail[start..].to_vec();
                circle.push(node.clone());
                return Some(circle);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Open);
        trail.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, marks, trail) {
                return Some(circle);
            }
        }
        trail.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut marks, &mut Vec::new()))
}

fn show(module: &Module) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("::")
    }
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for krate in CRATES {
        let edges = imports(&modules(krate));
        if let Some(circle) = find_circle(&edges) {
            let names: Vec<String> = circle.iter().map(show).collect();
            panic!("{krate}: import circle {}", names.join(" -> "));
        }
    }
}

#[test]
fn the_circle_finder_finds_circles() {
    // A check that cannot fail proves nothing: two modules naming each other are found.
    let mut modules = BTreeMap::new();
    modules.insert(vec![], "mod a;\nmod b;\n".to_owned());
    modules.insert(vec!["a".to_owned()], "use crate::b::Thing;\n".to_owned());
    modules.insert(
        vec!["b".to_owned()],
        "use super::{a::Other, c};\n".to_owned(),
    );
    let circle = find_circle(&imports(&modules)).expect("a circle");
    assert_eq!(circle.len(), 3, "{circle:?}");
    modules.insert(vec!["b".to_owned()], "use std::fmt;\n".to_owned());
    assert!(find_circle(&imports(&modules)).is_none());
}

#[test]
fn no_file_of_code_is_over_400_lines() {
    let mut over = Vec::new();
    for krate in CRATES.iter().chain(["tests"].iter()) {
        let src = workspace().join(krate).join("src");
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = path.to_string_lossy();
                if !name.ends_with(".rs") || name.ends_with("_tests.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read");
                let lines = text
                    .lines()
                    .take_while(|line| !line.starts_with("#[cfg(test)]"))
                    .count();
                if lines > MAX_LINES {
                    over.push(format!("{name}: {lines} lines"));
                }
            }
        }
    }
    assert!(over.is_empty(), "over {MAX_LINES} lines: {over:#?}");
}

#[test]
fn every_lib_rs_names_each_of_its_modules_under_layout() {
    for krate in CRATES {
        let lib = workspace().join(krate).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).expect("lib.rs");
        let layout: String = text
            .lines()
            .skip_while(|line| !line.starts_with("//! # Layout"))
            .take_while(|line| line.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!layout.is_empty(), "{krate}: lib.rs has no `# Layout`");
        for line in code(&text).lines() {
            let line = line.trim();
            let declared = ["pub mod ", "pub(crate) mod ", "mod "]
                .iter()
                .find_map(|head| line.strip_prefix(head))
                .and_then(|rest| rest.strip_suffix(';'));
            let Some(module) = declared else {
                continue;
            };
            assert!(
                layout.contains(&format!("`{module}`")),
                "{krate}: module {module} is not in lib.rs's # Layout"
            );
        }
    }
}

/// The order a module's doc lists its child modules in: the first `name` of each `//! - ` line
/// of its leading doc comment that names one of them.
fn listed_order(module: &Module, text: &str, modules: &BTreeMap<Module, String>) -> Vec<String> {
    text.lines()
        .take_while(|line| line.starts_with("//!") || line.trim().is_empty())
        .filter_map(|line| line.strip_prefix("//! - "))
        .filter_map(|item| item.split('`').nth(1).map(str::to_owned))
        .filter(|name| {
            let mut child = module.clone();
            child.push(name.clone());
            modules.contains_key(&child)
        })
        .collect()
}

#[test]
fn modules_import_only_those_their_parent_lists_below_them() {
    for krate in CRATES {
        let modules = modules(krate);
        let edges = imports(&modules);
        let mut checked = 0;
        for (parent, text) in &modules {
            let order = listed_order(parent, text, &modules);
            if order.is_empty() {
                continue;
            }
            checked += 1;
            let rank = |name: &str| order.iter().position(|n| n == name);
            let depth = parent.len();
            for (from, targets) in &edges {
                // Only imports between two different children of `parent` (or their insides).
                if from.len() <= depth || from[..depth] != parent[..] {
                    continue;
                }
                for to in targets {
                    assert!(
                        !to.is_empty(),
                        "{krate}: {} imports the crate root, which sits above everything",
                        show(from)
                    );
                    if to.len() <= depth || to[..depth] != parent[..] || to[depth] == from[depth] {
                        continue;
                    }
                    let (Some(a), Some(b)) = (rank(&from[depth]), rank(&to[depth])) else {
                        panic!(
                            "{krate}: {} or {} is not first on a line of {}'s list",
                            show(from),
                            show(to),
                            show(parent)
                        );
                    };
                    assert!(
                        a < b,
                        "{krate}: {} imports {}, which {} lists above it",
                        show(from),
                        show(to),
                        show(parent)
                    );
                }
            }
        }
        let single_file = modules.len() == 1;
        assert!(
            checked > 0 || single_file,
            "{krate}: no module lists its children"
        );
    }
}
