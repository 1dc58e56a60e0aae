//! Tidy checks: the rules of DESIGN §1 and STYLE.md that a machine can check, run by plain
//! `cargo test` so that a rule is broken in a pull request, never silently on main.
//!
//! Each check is a pure function of file contents (unit-tested below on a planted
//! violation, so that every check is known to be able to fail) and one `#[test]` that runs
//! it over the workspace. A failure names the file, the offender and the rule it breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace crates each folder may name in any dependency table, `[dev-dependencies]`
/// and `[build-dependencies]` included (DESIGN §1). Adding a crate means adding it here, to
/// the table in DESIGN §1 and to the code map of ARCHITECTURE.md.
const ALLOWED: &[(&str, &[&str])] = &[
    ("commits", &[]),
    ("catalog", &["commits"]),
    ("compute-adapter", &["catalog", "commits"]),
    ("rest-api", &["catalog", "compute-adapter", "commits"]),
    ("cli", &["rest-api", "catalog", "commits"]),
    ("formal-models", &["commits"]),
];

/// Folders of the code map that are not crates.
const PLAIN_FOLDERS: &[&str] = &["clients", "openapi", "tests"];

/// Where an external crate may be named, by Cargo.toml (DESIGN §1).
#[derive(Debug)]
enum Home {
    /// Only these workspace folders may depend on the crate.
    Only(&'static [&'static str]),
    /// Every folder but these may depend on the crate.
    Never(&'static [&'static str]),
}

/// The home rules for external crates, matched by package name: an exact name, or a family
/// prefix ending in `-` (`axum-` matches `axum-extra`). Every matching rule applies.
const HOMES: &[(&[&str], Home, &str)] = &[
    (
        &["sled"],
        Home::Only(&["commits"]),
        "sled lives in one module of commits",
    ),
    (
        &["tokio-postgres", "deadpool-", "postgres-"],
        Home::Only(&["commits"]),
        "PostgreSQL is one backend of commits",
    ),
    (
        &[
            "axum", "axum-", "http", "utoipa", "utoipa-", "tower", "tower-", "hyper", "hyper-",
        ],
        Home::Only(&["rest-api", "cli"]),
        "rest-api is the only HTTP crate (cli for serve wiring)",
    ),
    (
        &["stateright"],
        Home::Only(&["formal-models"]),
        "the models live in formal-models; commits is held to them from there",
    ),
    (
        &["datafusion", "datafusion-", "iceberg-datafusion"],
        Home::Only(&["compute-adapter"]),
        "compute-adapter is the only crate that links DataFusion",
    ),
    (
        &["iceberg", "iceberg-"],
        Home::Never(&["commits"]),
        "commits knows nothing of Iceberg",
    ),
];

/// Packages of which `cargo tree --duplicates` may show one version only: the lakehouse
/// stack shares one Arrow (DESIGN §1). A trailing `-` is a family prefix as in [`HOMES`].
/// object_store (0.13 through DataFusion beside our 0.14) is the one allowed duplicate.
const SINGLE_VERSION: &[&str] = &[
    "arrow",
    "arrow-",
    "parquet",
    "datafusion",
    "datafusion-",
    "iceberg",
    "iceberg-",
    "tokio",
];

/// Types of floe-commits that rest-api must not name: holding one is how an operation gets
/// called without going through floe-catalog's `authorize`.
const COMMITS_FORBIDDEN_TYPES: &[&str] = &["Store", "Backend"];

// ---------------------------------------------------------------------------------------
// The checks, run over the workspace.

#[test]
fn workspace_crates_depend_only_in_the_design_direction() {
    let workspace = Workspace::load();
    let mut violations = Vec::new();
    for member in &workspace.members {
        for dep in workspace.dependencies_of(member) {
            violations.extend(direction_violation(&member.folder, &dep, &workspace));
        }
    }
    assert_no_violations("dependency direction (DESIGN §1)", &violations);
}

#[test]
fn external_crates_stay_in_their_home_crates() {
    let workspace = Workspace::load();
    let mut violations = Vec::new();
    for member in &workspace.members {
        for dep in workspace.dependencies_of(member) {
            violations.extend(home_violations(&member.folder, &dep));
        }
    }
    assert_no_violations("external crate homes (DESIGN §1)", &violations);
}

#[test]
fn rest_api_calls_no_version_store_operation() {
    let root = workspace_root();
    let mut violations = Vec::new();
    for file in rust_files(&root.join("rest-api/src")) {
        let source = read(&file);
        for finding in commits_operation_uses(&source) {
            violations.push(format!("{}: {finding}", relative(&root, &file)));
        }
    }
    assert_no_violations(
        "rest-api reaches the version store only through floe-catalog (DESIGN §1)",
        &violations,
    );
}

#[test]
fn lakehouse_stack_has_one_version_of_each_crate() {
    let tree = cargo_tree_duplicates(&workspace_root());
    let violations = forbidden_duplicates(&tree);
    assert_no_violations(
        "one version of arrow, parquet, datafusion, iceberg and tokio (DESIGN §1); \
         `cargo tree --duplicates --workspace` shows who pulls each",
        &violations,
    );
}

#[test]
fn architecture_code_map_lists_exactly_the_workspace() {
    let workspace = Workspace::load();
    let architecture = read(&workspace.root.join("ARCHITECTURE.md"));
    let members: Vec<(&str, &str)> = workspace
        .members
        .iter()
        .map(|member| (member.folder.as_str(), member.package.as_str()))
        .collect();
    let mut violations = code_map_violations(&architecture, &members);
    // The dependency table must cover exactly the members too, or a new crate would be
    // checked against nothing.
    for (folder, _) in &members {
        if allowed_dependencies(folder).is_none() {
            violations.push(format!(
                "member `{folder}/` has no row in ALLOWED (cli/tests/it/tidy.rs) nor, \
                 presumably, in DESIGN §1"
            ));
        }
    }
    for (folder, _) in ALLOWED {
        if !members.iter().any(|(member, _)| member == folder) {
            violations.push(format!(
                "ALLOWED (cli/tests/it/tidy.rs) names `{folder}/`, which is not a \
                 workspace member"
            ));
        }
    }
    assert_no_violations("ARCHITECTURE.md code map", &violations);
}

#[test]
fn every_rust_file_starts_with_a_doc_line() {
    let root = workspace_root();
    let violations: Vec<String> = rust_files(&root)
        .into_iter()
        .filter(|file| !starts_with_doc_line(&read(file)))
        .map(|file| format!("{}: first line is not a `//!` line", relative(&root, &file)))
        .collect();
    assert_no_violations(
        "every file starts with a `//!` line saying what it owns (STYLE.md, rule 1)",
        &violations,
    );
}

#[test]
fn ignored_tests_are_exactly_the_slow_ones() {
    let root = workspace_root();
    let mut violations = Vec::new();
    for file in rust_files(&root) {
        for problem in ignore_problems(&read(&file)) {
            violations.push(format!("{}:{problem}", relative(&root, &file)));
        }
    }
    assert_no_violations(
        "a slow test is named `slow_*` and ignored with a reason starting `slow:` (a plain \
         `cargo test` reports it ignored, never passed; `.ci/run`'s slow phase runs it with \
         `-- --ignored`); nothing else is ignored",
        &violations,
    );
}

// ---------------------------------------------------------------------------------------
// The workspace as the checks see it.

#[derive(Debug)]
struct Workspace {
    root: PathBuf,
    members: Vec<Member>,
    /// `[workspace.dependencies]` of the root Cargo.toml, where `workspace = true` points.
    root_dependencies: toml::Table,
}

#[derive(Debug)]
struct Member {
    /// The member's path in the root `members` list, such as `compute-adapter`.
    folder: String,
    /// `package.name` of its Cargo.toml, such as `floe-compute`.
    package: String,
    manifest: toml::Table,
}

impl Workspace {
    fn load() -> Workspace {
        let root = workspace_root();
        let manifest = parse_manifest(&root.join("Cargo.toml"));
        let workspace = manifest
            .get("workspace")
            .and_then(toml::Value::as_table)
            .expect("the root Cargo.toml has a [workspace] table");
        let members = workspace
            .get("members")
            .and_then(toml::Value::as_array)
            .expect("[workspace] lists its members")
            .iter()
            .map(|folder| {
                let folder = folder.as_str().expect("members are strings").to_owned();
                let manifest = parse_manifest(&root.join(&folder).join("Cargo.toml"));
                let package = manifest
                    .get("package")
                    .and_then(|package| package.get("name"))
                    .and_then(toml::Value::as_str)
                    .unwrap_or_else(|| panic!("{folder}/Cargo.toml has no package.name"))
                    .to_owned();
                Member {
                    folder,
                    package,
                    manifest,
                }
            })
            .collect();
        let root_dependencies = workspace
            .get("dependencies")
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default();
        Workspace {
            root,
            members,
            root_dependencies,
        }
    }

    fn dependencies_of(&self, member: &Member) -> Vec<Dependency> {
        dependencies(
            &member.manifest,
            &self.root_dependencies,
            &self.root,
            &self.root.join(&member.folder),
        )
    }

    /// The member a dependency points at, by package name or by path.
    fn member_of(&self, dep: &Dependency) -> Option<&Member> {
        self.members.iter().find(|member| {
            member.package == dep.package
                || dep
                    .path
                    .as_deref()
                    .is_some_and(|path| path == normalize(&self.root.join(&member.folder)))
        })
    }
}

/// One entry of a dependency table, resolved through `workspace = true` and `package =`.
#[derive(Debug, PartialEq)]
struct Dependency {
    /// The table it sits in, such as `dev-dependencies` or
    /// `target.'cfg(unix)'.dependencies`.
    table: String,
    /// The package it names (after renames).
    package: String,
    /// Its `path`, resolved and normalized, when it has one.
    path: Option<PathBuf>,
}

const DEPENDENCY_TABLES: &[&str] = &[
    "dependencies",
    "dev-dependencies",
    "build-dependencies",
    // The old spellings, which cargo still reads.
    "dev_dependencies",
    "build_dependencies",
];

/// Every dependency of a member's manifest, in every table, target-specific ones included.
/// A `path` is resolved against `member_dir`, or against `root` for an inherited one.
fn dependencies(
    manifest: &toml::Table,
    root_dependencies: &toml::Table,
    root: &Path,
    member_dir: &Path,
) -> Vec<Dependency> {
    let mut tables: Vec<(String, &toml::Table)> = Vec::new();
    for &name in DEPENDENCY_TABLES {
        if let Some(table) = manifest.get(name).and_then(toml::Value::as_table) {
            tables.push((name.to_owned(), table));
        }
    }
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for (target, body) in targets {
            for &name in DEPENDENCY_TABLES {
                if let Some(table) = body.get(name).and_then(toml::Value::as_table) {
                    tables.push((format!("target.'{target}'.{name}"), table));
                }
            }
        }
    }
    let mut deps = Vec::new();
    for (table, entries) in tables {
        for (key, spec) in entries {
            let inherited = spec.get("workspace").and_then(toml::Value::as_bool) == Some(true);
            // An inherited dependency takes its package and path from the root; a local
            // one may rename with `package =`.
            let source = if inherited {
                root_dependencies.get(key).unwrap_or(spec)
            } else {
                spec
            };
            let package = source
                .get("package")
                .and_then(toml::Value::as_str)
                .unwrap_or(key)
                .to_owned();
            let base = if inherited { root } else { member_dir };
            let path = source
                .get("path")
                .and_then(toml::Value::as_str)
                .map(|path| normalize(&base.join(path)));
            deps.push(Dependency {
                table: table.clone(),
                package,
                path,
            });
        }
    }
    deps
}

fn allowed_dependencies(folder: &str) -> Option<&'static [&'static str]> {
    ALLOWED
        .iter()
        .find(|(allowed, _)| *allowed == folder)
        .map(|(_, deps)| *deps)
}

/// A violation when `folder` names a workspace crate DESIGN §1 does not allow it.
fn direction_violation(folder: &str, dep: &Dependency, workspace: &Workspace) -> Option<String> {
    let target = workspace.member_of(dep)?;
    let allowed = allowed_dependencies(folder).unwrap_or(&[]);
    if allowed.contains(&target.folder.as_str()) {
        return None;
    }
    let rule = if allowed.is_empty() {
        "none".to_owned()
    } else {
        allowed.join(", ")
    };
    Some(format!(
        "{folder}/Cargo.toml [{}] names `{}` ({}/); the rule: {folder} -> {rule}",
        dep.table, target.package, target.folder
    ))
}

fn matches_crate(patterns: &[&str], package: &str) -> bool {
    patterns.iter().any(|pattern| {
        if pattern.ends_with('-') {
            package.starts_with(pattern)
        } else {
            package == *pattern
        }
    })
}

/// Dev-dependencies a bench takes as its in-process baseline, outside their home: they are
/// never linked into a product binary. (`cli/benches/runs.rs` compares `floe run` with
/// DataFusion doing the same work in the same run.)
const BENCH_BASELINES: &[(&str, &str)] = &[("cli", "datafusion")];

fn home_violations(folder: &str, dep: &Dependency) -> Vec<String> {
    if dep.table == "dev-dependencies"
        && BENCH_BASELINES
            .iter()
            .any(|(f, package)| *f == folder && *package == dep.package)
    {
        return Vec::new();
    }
    HOMES
        .iter()
        .filter(|(patterns, home, _)| {
            matches_crate(patterns, &dep.package)
                && match home {
                    Home::Only(folders) => !folders.contains(&folder),
                    Home::Never(folders) => folders.contains(&folder),
                }
        })
        .map(|(_, home, rule)| {
            let where_ = match home {
                Home::Only(folders) => format!("only in {}", folders.join(", ")),
                Home::Never(folders) => format!("never in {}", folders.join(", ")),
            };
            format!(
                "{folder}/Cargo.toml [{}] names `{}`, allowed {where_}: {rule}",
                dep.table, dep.package
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// rest-api and floe_commits.

/// Where Rust source uses floe-commits beyond its plain types.
///
/// The rule, kept simple on purpose (it reads text, not types): comments are removed, then
/// every path that starts with the crate name `floe_commits` is read, `use` groups
/// (`{...}`) included, and it is a finding when
/// - a segment is one of [`COMMITS_FORBIDDEN_TYPES`] (`Store`, `Backend`);
/// - a lowercase segment before any type segment is called, that is followed by `(` or
///   by a turbofish `::<` (`floe_commits::merge::merge(...)`); lowercase segments that are
///   not called are modules (`floe_commits::hash::Hash` is fine), and associated functions
///   of an allowed type are fine (`floe_commits::Hash::from_hex(...)`);
/// - the path ends in a glob `*`, or the crate is renamed (`floe_commits as x`), since
///   either hides what is used.
///
/// Types such as `Hash`, `ContentKey` or `RefName` are allowed: rest-api parses requests
/// into them and prints them. It cannot see a method called on a value whose type it never
/// names; naming neither `Store` nor `Backend` is what keeps it from holding one.
fn commits_operation_uses(source: &str) -> Vec<String> {
    const CRATE: &str = "floe_commits";
    let code = strip_comments(source);
    let chars: Vec<char> = code.chars().collect();
    let mut findings = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let at_word_start = i == 0 || !is_ident_char(chars[i - 1]);
        if at_word_start && starts_with_at(&chars, i, CRATE) {
            let mut cursor = i + CRATE.len();
            if cursor < chars.len() && is_ident_char(chars[cursor]) {
                i = cursor;
                continue; // A longer identifier, such as `floe_commits_helper`.
            }
            skip_whitespace(&chars, &mut cursor);
            if starts_with_at(&chars, cursor, "::") {
                cursor += 2;
                read_path(&chars, &mut cursor, &mut findings);
            } else if starts_with_at(&chars, cursor, "as")
                && chars.get(cursor + 2).is_some_and(|c| !is_ident_char(*c))
            {
                let line = line_of(&chars, i);
                findings.push(format!("line {line}: renames `floe_commits`"));
            }
            i = cursor.max(i + 1);
        } else {
            i += 1;
        }
    }
    findings
}

/// Reads the rest of a path after `floe_commits::` (or after a `::` within it), recursing
/// into `use` groups, and records what [`commits_operation_uses`] forbids.
fn read_path(chars: &[char], cursor: &mut usize, findings: &mut Vec<String>) {
    // After a type (`Hash::from_hex(...)`) the segments are its associated items, which
    // construct or inspect values of an allowed type: they are not store operations.
    let mut after_type = false;
    loop {
        skip_whitespace(chars, cursor);
        match chars.get(*cursor) {
            Some('{') => {
                *cursor += 1;
                loop {
                    read_path(chars, cursor, findings);
                    skip_whitespace(chars, cursor);
                    match chars.get(*cursor) {
                        Some(',') => *cursor += 1,
                        Some('}') => {
                            *cursor += 1;
                            return;
                        }
                        _ => return,
                    }
                }
            }
            Some('*') => {
                let line = line_of(chars, *cursor);
                *cursor += 1;
                findings.push(format!("line {line}: glob import from `floe_commits`"));
                return;
            }
            _ => {}
        }
        let start = *cursor;
        while chars.get(*cursor).is_some_and(|c| is_ident_char(*c)) {
            *cursor += 1;
        }
        if start == *cursor {
            return;
        }
        let segment: String = chars[start..*cursor].iter().collect();
        let line = line_of(chars, start);
        if COMMITS_FORBIDDEN_TYPES.contains(&segment.as_str()) {
            findings.push(format!(
                "line {line}: names `floe_commits` type `{segment}`"
            ));
        }
        let lowercase = segment.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
        let called_function = lowercase && !after_type;
        after_type |= !lowercase;
        skip_whitespace(chars, cursor);
        if starts_with_at(chars, *cursor, "::") {
            *cursor += 2;
            skip_whitespace(chars, cursor);
            if chars.get(*cursor) == Some(&'<') {
                if called_function {
                    findings.push(format!("line {line}: calls `floe_commits` `{segment}`"));
                }
                return;
            }
            continue;
        }
        if called_function && chars.get(*cursor) == Some(&'(') {
            findings.push(format!("line {line}: calls `floe_commits` `{segment}`"));
        }
        return;
    }
}

/// The source with `//` and `/* */` comments blanked out (newlines kept, so line numbers
/// hold). String literals are not special-cased: a `//` inside one blanks the rest of its
/// line, which can only hide a finding on that line, never invent one.
pub(crate) fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let mut block_depth = 0usize;
    let mut in_line_comment = false;
    while let Some(c) = chars.next() {
        if in_line_comment {
            if c == '\n' {
                in_line_comment = false;
                out.push('\n');
            }
            continue;
        }
        if block_depth > 0 {
            match (c, chars.peek()) {
                ('*', Some('/')) => {
                    chars.next();
                    block_depth -= 1;
                }
                ('/', Some('*')) => {
                    chars.next();
                    block_depth += 1;
                }
                ('\n', _) => out.push('\n'),
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('/', Some('/')) => in_line_comment = true,
            ('/', Some('*')) => {
                chars.next();
                block_depth = 1;
            }
            _ => out.push(c),
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn starts_with_at(chars: &[char], at: usize, text: &str) -> bool {
    text.chars()
        .enumerate()
        .all(|(offset, expected)| chars.get(at + offset) == Some(&expected))
}

fn skip_whitespace(chars: &[char], cursor: &mut usize) {
    while chars.get(*cursor).is_some_and(|c| c.is_whitespace()) {
        *cursor += 1;
    }
}

fn line_of(chars: &[char], at: usize) -> usize {
    1 + chars[..at].iter().filter(|c| **c == '\n').count()
}

// ---------------------------------------------------------------------------------------
// cargo tree.

/// `cargo tree --duplicates` over the whole workspace with every edge kind a build uses,
/// at depth 0: one `name vX.Y.Z [(source)]` line per duplicated package version, at the
/// left margin. `--offline` first, so a warm machine needs no network; without it when
/// a package it must read has not been downloaded yet (say, after `cargo test -p floe`).
fn cargo_tree_duplicates(root: &Path) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let run = |offline: bool| {
        let mut command = Command::new(&cargo);
        command.current_dir(root).args([
            "tree",
            "--workspace",
            "--duplicates",
            "--edges",
            "normal,build,dev",
            "--depth",
            "0",
            "--prefix",
            "none",
            "--locked",
        ]);
        if offline {
            command.arg("--offline");
        }
        command.output().expect("cargo runs")
    };
    let offline = run(true);
    let output = if offline.status.success() {
        offline
    } else {
        run(false)
    };
    assert!(
        output.status.success(),
        "cargo tree failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("cargo tree prints UTF-8")
}

/// The packages of [`SINGLE_VERSION`] that appear in more than one version.
fn forbidden_duplicates(tree: &str) -> Vec<String> {
    let mut versions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for line in tree.lines() {
        let line = line.trim();
        let mut words = line.split_whitespace();
        if let (Some(name), Some(version)) = (words.next(), words.next())
            && version.starts_with('v')
        {
            versions.entry(name).or_default().insert(version);
        }
    }
    versions
        .into_iter()
        .filter(|(name, versions)| versions.len() > 1 && matches_crate(SINGLE_VERSION, name))
        .map(|(name, versions)| {
            let versions: Vec<&str> = versions.into_iter().collect();
            format!("{name} appears as {}", versions.join(" and "))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// ARCHITECTURE.md.

/// Checks the `## Code map` section: each member has a heading
/// ``### `folder/` (`package`)``, and every `###` heading there is a member or one of
/// [`PLAIN_FOLDERS`] (``### `openapi/` ``).
fn code_map_violations(architecture: &str, members: &[(&str, &str)]) -> Vec<String> {
    let mut lines = architecture.lines();
    if !lines.any(|line| line.trim().eq_ignore_ascii_case("## code map")) {
        return vec!["no `## Code map` section".to_owned()];
    }
    let headings: Vec<&str> = lines
        .take_while(|line| !line.starts_with("## "))
        .filter(|line| line.starts_with("### "))
        .map(str::trim_end)
        .collect();
    let member_heading =
        |(folder, package): &(&str, &str)| format!("### `{folder}/` (`{package}`)");
    let folder_heading = |folder: &&str| format!("### `{folder}/`");
    let mut violations = Vec::new();
    for member in members {
        let expected = member_heading(member);
        if !headings.contains(&expected.as_str()) {
            violations.push(format!(
                "member `{}/` (package `{}`) has no heading `{expected}`",
                member.0, member.1
            ));
        }
    }
    let known: Vec<String> = members
        .iter()
        .map(member_heading)
        .chain(PLAIN_FOLDERS.iter().map(folder_heading))
        .collect();
    for heading in headings {
        if !known.iter().any(|known| known == heading) {
            violations.push(format!(
                "heading `{heading}` is neither a workspace member with its package name \
                 nor one of the folders {PLAIN_FOLDERS:?}"
            ));
        }
    }
    violations
}

// ---------------------------------------------------------------------------------------
// Rust sources.

fn starts_with_doc_line(source: &str) -> bool {
    source.starts_with("//!")
}

/// The attribute that hides a test from a plain `cargo test`, spelled in two pieces so that
/// this file does not match itself.
const IGNORE_ATTRIBUTE: &str = concat!("#[", "ignore");
/// The only ignore attribute allowed: one that says the test is slow.
const SLOW_IGNORE: &str = concat!("#[", "ignore=\"slow:");

/// Problems with ignored and slow tests, as `line: what`: an ignore attribute without the
/// slow reason, or on a test not named `slow_*`; a `slow_*` test without the attribute.
fn ignore_problems(source: &str) -> Vec<String> {
    let lines: Vec<String> = source
        .lines()
        .map(|line| line.chars().filter(|c| !c.is_whitespace()).collect())
        .collect();
    let mut problems = Vec::new();
    let next_fn = |from: usize| {
        lines[from..]
            .iter()
            .find(|l| {
                ["fn", "asyncfn", "pubfn", "pub(crate)fn"]
                    .iter()
                    .any(|f| l.starts_with(f))
            })
            .cloned()
            .unwrap_or_default()
    };
    for (i, line) in lines.iter().enumerate() {
        if line.contains(IGNORE_ATTRIBUTE) {
            if !line.starts_with(SLOW_IGNORE) {
                problems.push(format!(
                    "{}: an ignore attribute without a `slow:` reason",
                    i + 1
                ));
            } else if !next_fn(i).contains("fnslow_") {
                problems.push(format!("{}: an ignored test not named `slow_*`", i + 1));
            }
        }
        if ["fnslow_", "asyncfnslow_", "pubfnslow_", "pub(crate)fnslow_"]
            .iter()
            .any(|f| line.starts_with(f))
        {
            let attributes = lines[..i].iter().rev().take_while(|l| l.starts_with("#["));
            let ignored = attributes.clone().any(|l| l.contains(IGNORE_ATTRIBUTE));
            let is_test = attributes.clone().any(|l| l.contains("test"));
            if is_test && !ignored {
                problems.push(format!("{}: a `slow_*` test that is not ignored", i + 1));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------
// Helpers.

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ sits in the workspace root")
        .to_path_buf()
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn parse_manifest(path: &Path) -> toml::Table {
    read(path)
        .parse()
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

pub(crate) fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Lexically normalizes a path (`a/b/../c` -> `a/c`) so that path dependencies compare
/// equal to member folders without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every `.rs` file under `dir`, sorted, skipping hidden folders (`.git`, `.venv`),
/// `target` folders and any folder cargo marked as a build directory (`CACHEDIR.TAG`).
pub(crate) fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // A folder that does not exist (yet) has no files.
        };
        for entry in entries {
            let path = entry.expect("directory entries are readable").path();
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned());
            let name = name.unwrap_or_default();
            if path.is_dir() {
                let skip =
                    name.starts_with('.') || name == "target" || path.join("CACHEDIR.TAG").exists();
                if !skip {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn assert_no_violations(rule: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "tidy: {rule}:\n  {}",
        violations.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// Each check catches a planted violation, so that none passes by checking nothing.

mod checks_can_fail {
    use super::*;

    fn manifest(text: &str) -> toml::Table {
        text.parse().expect("test manifest parses")
    }

    fn test_workspace() -> Workspace {
        let member = |folder: &str, package: &str| Member {
            folder: folder.to_owned(),
            package: package.to_owned(),
            manifest: toml::Table::new(),
        };
        Workspace {
            root: PathBuf::from("/ws"),
            members: vec![
                member("commits", "floe-commits"),
                member("catalog", "floe-catalog"),
                member("rest-api", "floe-rest"),
            ],
            root_dependencies: manifest(
                r#"
                floe-catalog = { path = "catalog" }
                cat = { path = "catalog", package = "floe-catalog" }
                "#,
            ),
        }
    }

    #[test]
    fn direction_catches_dev_target_renamed_and_path_dependencies() {
        let workspace = test_workspace();
        let commits = manifest(
            r#"
            [dev-dependencies]
            floe-catalog.workspace = true
            [target.'cfg(unix)'.build-dependencies]
            renamed = { path = "../rest-api", package = "anything" }
            [dependencies]
            cat = { workspace = true }
            blake3 = "1"
            "#,
        );
        let deps = dependencies(
            &commits,
            &workspace.root_dependencies,
            &workspace.root,
            &workspace.root.join("commits"),
        );
        let violations: Vec<String> = deps
            .iter()
            .filter_map(|dep| direction_violation("commits", dep, &workspace))
            .collect();
        assert_eq!(
            violations,
            [
                "commits/Cargo.toml [dependencies] names `floe-catalog` (catalog/); \
                 the rule: commits -> none",
                "commits/Cargo.toml [dev-dependencies] names `floe-catalog` (catalog/); \
                 the rule: commits -> none",
                "commits/Cargo.toml [target.'cfg(unix)'.build-dependencies] names \
                 `floe-rest` (rest-api/); the rule: commits -> none",
            ]
        );
        let catalog = deps.iter().find(|dep| dep.package == "floe-catalog");
        let catalog = catalog.expect("the inherited dependency resolves");
        assert_eq!(direction_violation("rest-api", catalog, &workspace), None);
        let rest = deps.iter().find(|dep| dep.table.starts_with("target."));
        let rest = rest.expect("the target-specific dependency is read");
        assert_eq!(
            direction_violation("catalog", rest, &workspace).as_deref(),
            Some(
                "catalog/Cargo.toml [target.'cfg(unix)'.build-dependencies] names \
                 `floe-rest` (rest-api/); the rule: catalog -> commits"
            )
        );
    }

    #[test]
    fn homes_catch_http_below_rest_api_and_iceberg_in_commits() {
        let dep = |package: &str| Dependency {
            table: "dependencies".to_owned(),
            package: package.to_owned(),
            path: None,
        };
        assert_eq!(home_violations("catalog", &dep("axum")).len(), 1);
        assert_eq!(home_violations("catalog", &dep("tower-http")).len(), 1);
        assert_eq!(home_violations("rest-api", &dep("sled")).len(), 1);
        assert_eq!(home_violations("catalog", &dep("datafusion-expr")).len(), 1);
        // iceberg-datafusion breaks both the DataFusion rule and the Iceberg rule.
        assert_eq!(
            home_violations("commits", &dep("iceberg-datafusion")).len(),
            2
        );
        assert!(home_violations("cli", &dep("axum")).is_empty());
        assert!(home_violations("catalog", &dep("iceberg")).is_empty());
        assert!(home_violations("catalog", &dep("httparse")).is_empty());
    }

    #[test]
    fn rest_api_rule_catches_calls_and_store_types_only() {
        let source = "\
            //! Planted.\n\
            use floe_commits::{Hash, ContentKey, hash::HashPrefix};\n\
            use floe_commits::{\n    name::RefName,\n    Store,\n};\n\
            // floe_commits::Backend in a comment is fine.\n\
            fn f(h: floe_commits::Hash) -> floe_commits::ContentKey {\n\
                floe_commits::merge::merge(a, b);\n\
                floe_commits::name::parse::<RefName>(x);\n\
                let s: Option<floe_commits::backend::Backend> = None;\n\
            }\n\
            use floe_commits::*;\n\
            use floe_commits as fc;\n\
            use floe_commits_helper::thing;\n";
        let findings = commits_operation_uses(source);
        assert_eq!(
            findings,
            [
                "line 5: names `floe_commits` type `Store`",
                "line 9: calls `floe_commits` `merge`",
                "line 10: calls `floe_commits` `parse`",
                "line 11: names `floe_commits` type `Backend`",
                "line 13: glob import from `floe_commits`",
                "line 14: renames `floe_commits`",
            ]
        );
        assert!(commits_operation_uses("let h = floe_commits::Hash::from_hex(x);").is_empty());
    }

    #[test]
    fn tree_check_catches_a_second_tokio_or_arrow_but_not_object_store() {
        let tree = "\
arrow-buffer v57.0.0
arrow-buffer v58.0.0

object_store v0.13.1
object_store v0.14.0

tokio v1.47.0
tokio v1.48.0 (proc-macro)
tokio-util v0.7.1
parquet v58.0.0
";
        assert_eq!(
            forbidden_duplicates(tree),
            [
                "arrow-buffer appears as v57.0.0 and v58.0.0",
                "tokio appears as v1.47.0 and v1.48.0",
            ]
        );
        assert!(forbidden_duplicates("").is_empty());
    }

    #[test]
    fn code_map_check_catches_missing_renamed_and_unknown_headings() {
        let members = [("commits", "floe-commits"), ("cli", "floe")];
        let good = "# A\n## Code map\n### `commits/` (`floe-commits`)\n### `cli/` (`floe`)\n\
                    ### `tests/`\n## Cross-cutting concerns\n### `stray/`\n";
        assert!(code_map_violations(good, &members).is_empty());
        let bad = "## Code map\n### `commits/` (`commits`)\n### `cli/` (`floe`)\n### `web/`\n";
        let violations = code_map_violations(bad, &members);
        assert_eq!(violations.len(), 3, "{violations:#?}");
        assert_eq!(
            code_map_violations("# Nothing", &members),
            ["no `## Code map` section"]
        );
    }

    #[test]
    fn source_checks_catch_missing_docs_and_ignore_attributes() {
        assert!(starts_with_doc_line("//! Owns x.\n"));
        assert!(!starts_with_doc_line("// Owns x.\n"));
        assert!(!starts_with_doc_line("\n//! Owns x.\n"));
        // The attributes are assembled, so that this file does not match itself.
        let (ignore, slow) = (
            format!("{IGNORE_ATTRIBUTE}]"),
            format!("{} [ ignore = \"slow: ci\"]", '#'),
        );
        let good = format!("#[test]\n{slow}\nfn slow_a() {{}}\n#[test]\nfn b() {{}}\n");
        assert_eq!(ignore_problems(&good), Vec::<String>::new());
        let bad = format!(
            "#[test]\n{ignore}\nfn slow_a() {{}}\n#[test]\n{slow}\nfn b() {{}}\n#[test]\nfn slow_c() {{}}\n#[tokio::test]\nasync fn slow_d() {{}}\n"
        );
        assert_eq!(
            ignore_problems(&bad),
            [
                "2: an ignore attribute without a `slow:` reason",
                "5: an ignored test not named `slow_*`",
                "8: a `slow_*` test that is not ignored",
                "10: a `slow_*` test that is not ignored",
            ]
        );
    }
}
