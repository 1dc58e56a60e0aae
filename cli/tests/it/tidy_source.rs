//! Tidy checks that read the source text of the crates (tests and benches aside): where a
//! few identifiers may appear, and how long a file may grow. Each rule says why; the
//! claims they check are ARCHITECTURE.md's ("Invariant:" lines and "Files over 800 lines").

use std::path::Path;

use crate::tidy::{read, relative, rust_files, strip_comments, workspace_root};

/// Identifiers confined to a few places of product code: the token, the path prefixes
/// (from the workspace root) where it may appear, and why.
const CONFINED: &[(&str, &[&str], &str)] = &[
    (
        "StatusCode",
        &["rest-api/src/"],
        "HTTP statuses live in rest-api's one error table (STYLE rule 4)",
    ),
    (
        "sled::",
        &["commits/src/sled_store/"],
        "sled is one backend, known to one module",
    ),
    (
        "tokio_postgres::",
        &["commits/src/pg_store/"],
        "PostgreSQL is one backend, known to one module",
    ),
    (
        "deadpool_postgres::",
        &["commits/src/pg_store/"],
        "PostgreSQL is one backend, known to one module",
    ),
    (
        "now_v7",
        &["catalog/src/ids.rs", "rest-api/src/error.rs", "cli/src/"],
        "ids come from the catalog's id source so tests replay exactly (STYLE rule 7); only error ids and the client's idempotency keys are made at the edge",
    ),
    (
        "Uuid::new_v4",
        &[],
        "ids come from the catalog's id source (or the edge, as UUIDv7), never a random v4 made deep inside",
    ),
    (
        "eprintln!",
        &[
            "cli/src/",
            "formal-models/src/",
            "compute-adapter/src/runs/sandbox.rs",
        ],
        "the server logs through tracing; only the command lines (and the worker launcher, whose standard error is its worker's) print to standard error",
    ),
];

/// The most lines a source file may have before its tests (`#[cfg(test)]`), unless
/// ARCHITECTURE.md lists it under "Files over 800 lines" with its reason.
const FILE_LINES_MAX: usize = 800;

/// The product code of every crate: `<member>/src/**.rs` but unit-test files (`tests.rs`),
/// each with the text before its inline unit tests (`#[cfg(test)] mod tests {`).
pub fn product_sources() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut sources = Vec::new();
    for member in [
        "commits",
        "catalog",
        "compute-adapter",
        "rest-api",
        "formal-models",
        "cli",
    ] {
        let files = rust_files(&root.join(member).join("src"));
        let test_modules = test_module_files(&files);
        for path in files {
            // A unit-test module of its own (`#[cfg(test)] mod tests;`, or any module
            // declared under `#[cfg(test)]`) is test code.
            if path.file_name().is_some_and(|n| n == "tests.rs") || test_modules.contains(&path) {
                continue;
            }
            let text = read(&path);
            let code = &text[..inline_tests_at(&text)];
            sources.push((relative(&root, &path), code.to_owned()));
        }
    }
    sources
}

/// Where a file's inline unit tests start (`#[cfg(test)]` then `mod name {`), else its
/// end. A `#[cfg(test)] mod name;` declaration above product code does not end it.
fn inline_tests_at(text: &str) -> usize {
    let mut at = 0;
    while let Some(found) = text[at..].find("\n#[cfg(test)]\n") {
        let start = at + found;
        let next = &text[start + "\n#[cfg(test)]\n".len()..];
        let line = next.lines().next().unwrap_or("");
        if line.starts_with("mod ") && line.trim_end().ends_with('{') {
            return start;
        }
        at = start + 1;
    }
    text.len()
}

/// The files of modules declared under `#[cfg(test)]` (`#[cfg(test)]\nmod name;`): `name.rs`
/// beside a `mod.rs` or `lib.rs`, else in the declaring file's own folder.
fn test_module_files(files: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for path in files {
        let text = read(path);
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.windows(2) {
            let (attr, decl) = (pair[0].trim(), pair[1].trim());
            let Some(name) = decl
                .strip_prefix("mod ")
                .and_then(|rest| rest.strip_suffix(';'))
            else {
                continue;
            };
            if attr != "#[cfg(test)]" {
                continue;
            }
            let dir = path.parent().unwrap();
            let stem = path.file_stem().unwrap().to_string_lossy();
            let folder = if stem == "mod" || stem == "lib" || stem == "main" {
                dir.to_path_buf()
            } else {
                dir.join(&*stem)
            };
            found.push(folder.join(format!("{name}.rs")));
        }
    }
    found
}

/// `path:line: token` for each use of a confined token outside its places.
fn confinement_violations(sources: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (token, places, why) in CONFINED {
        for (path, code) in sources {
            if places.iter().any(|p| path.starts_with(p)) {
                continue;
            }
            for (n, line) in strip_comments(code).lines().enumerate() {
                if line.contains(token) {
                    found.push(format!("{path}:{}: {token} ({why})", n + 1));
                }
            }
        }
    }
    found
}

#[test]
fn confined_identifiers_stay_in_their_places() {
    let found = confinement_violations(&product_sources());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The files ARCHITECTURE.md lists under "### Files over 800 lines": its bullets that
/// start with a path in backticks.
fn listed_long_files(architecture: &str) -> Vec<String> {
    let Some(start) = architecture.find("### Files over 800 lines") else {
        return Vec::new();
    };
    let section = &architecture[start + 3..];
    let section = &section[..section.find("\n### ").unwrap_or(section.len())];
    section
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn long_files_are_the_listed_exceptions() {
    let root = workspace_root();
    let architecture = read(&root.join("ARCHITECTURE.md"));
    let listed = listed_long_files(&architecture);
    let mut problems = Vec::new();
    let long: Vec<(String, usize)> = product_sources()
        .into_iter()
        .map(|(path, code)| (path, code.lines().count()))
        .filter(|(_, n)| *n > FILE_LINES_MAX)
        .collect();
    for (path, n) in &long {
        if !listed.contains(path) {
            problems.push(format!(
                "{path}: {n} lines before its tests (at most {FILE_LINES_MAX}); split it by concern, or list it with its reason under \"Files over 800 lines\" in ARCHITECTURE.md"
            ));
        }
    }
    for path in &listed {
        if !long.iter().any(|(p, _)| p == path) {
            let why = if Path::new(&root.join(path)).exists() {
                "is no longer over 800 lines"
            } else {
                "does not exist"
            };
            problems.push(format!(
                "ARCHITECTURE.md lists {path} as a long file, but it {why}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_rules_find_what_they_look_for() {
    let sources = vec![
        (
            "catalog/src/x.rs".to_owned(),
            "let s = StatusCode::OK;\n// StatusCode in a comment\n".to_owned(),
        ),
        (
            "rest-api/src/x.rs".to_owned(),
            "let s = StatusCode::OK;".to_owned(),
        ),
        (
            "catalog/src/y.rs".to_owned(),
            "eprintln!(\"x\");\nlet id = Uuid::now_v7();".to_owned(),
        ),
    ];
    assert_eq!(
        confinement_violations(&sources)
            .iter()
            .map(|v| v.split(" (").next().unwrap().to_owned())
            .collect::<Vec<_>>(),
        [
            "catalog/src/x.rs:1: StatusCode",
            "catalog/src/y.rs:2: now_v7",
            "catalog/src/y.rs:1: eprintln!"
        ]
    );
    let text = "fn a() {}\n#[cfg(test)]\nmod world;\nfn b() {}\n#[cfg(test)]\nmod tests {\n}\n";
    assert_eq!(
        &text[..inline_tests_at(text)],
        "fn a() {}\n#[cfg(test)]\nmod world;\nfn b() {}"
    );
    let architecture = "## x\n### Files over 800 lines\n\n- `a/src/b.rs` (900 lines): why.\n- not a path\n### Tidy tests\n- `c.rs`\n";
    assert_eq!(listed_long_files(architecture), ["a/src/b.rs"]);
}
