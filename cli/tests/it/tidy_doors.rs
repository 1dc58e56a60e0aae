//! No door without a lock (issue 19): every public method of the types through which a
//! request reaches the store or the warehouse (`floe_catalog::Catalog`; floe-compute's
//! `Runner`, `QueryEngine`, `Importer`) takes the `Principal` it acts for, so it can call
//! `authorize`. The few that do not are listed here with the reason each needs none.

use crate::tidy_source::product_sources;

/// The entry-point types: the crate's source folder and the type's name.
const ENTRY_TYPES: &[(&str, &str)] = &[
    ("catalog/src/", "Catalog"),
    ("compute-adapter/src/", "Runner"),
    ("compute-adapter/src/", "QueryEngine"),
    ("compute-adapter/src/", "Importer"),
];

/// Public methods of entry-point types without a `Principal`, and why each needs none.
const UNLOCKED: &[(&str, &str, &str)] = &[
    ("Catalog", "new", "a constructor"),
    ("Catalog", "with_policy", "a constructor"),
    ("Catalog", "with_warehouse", "a constructor"),
    ("Catalog", "with_ids", "a constructor (tests' id source)"),
    ("Catalog", "in_memory", "a constructor (tests)"),
    ("Catalog", "in_memory_at", "a constructor (tests)"),
    ("Catalog", "with_server_id", "a constructor (server start)"),
    (
        "Catalog",
        "store_gauges",
        "/metrics: the store's pool gauges, beside the server's other metrics",
    ),
    ("Catalog", "server_id", "the server's own id"),
    (
        "Catalog",
        "durable_now",
        "waits for durability of what this thread's request already did: reads or changes nothing",
    ),
    (
        "Catalog",
        "reads_inline",
        "whether the store answers from memory: says nothing about any content",
    ),
    (
        "Catalog",
        "is_shared",
        "whether servers share the store (no data)",
    ),
    (
        "Catalog",
        "renew_server_lease",
        "the server's own heartbeat, from its start and its timer",
    ),
    (
        "Catalog",
        "take_maintenance_lease",
        "the server's maintenance loop, before the pass (which authorizes)",
    ),
    (
        "Catalog",
        "cancel_requested",
        "the executing server's poll for a cancel request of its own run",
    ),
    (
        "Catalog",
        "share_run_file",
        "the executing server keeps its own run's log and code for the other servers",
    ),
    (
        "Catalog",
        "share_live_log",
        "the executing server shares its own live run's log for the other servers",
    ),
    (
        "Catalog",
        "share_final_log",
        "the executing server keeps its own ended run's log for the other servers",
    ),
    (
        "Catalog",
        "cancel_taken",
        "the executing server, once it acted on a cancel request of its own run",
    ),
    (
        "Catalog",
        "with_rules",
        "server start, before any request: loads the policy",
    ),
    (
        "Catalog",
        "policy_stored",
        "server start: whether a policy is kept",
    ),
    (
        "Catalog",
        "auth_was_on",
        "server start: whether the catalog has had tokens",
    ),
    (
        "Catalog",
        "policy_defines",
        "server start: checks --anonymous names a role",
    ),
    (
        "Catalog",
        "with_confined_runs",
        "server start: workers are confined, so `run` starts runs",
    ),
    (
        "Catalog",
        "storage_properties",
        "the warehouse's endpoint, region and addressing: configuration, no data",
    ),
    ("Catalog", "new_uuid", "an id; reads nothing"),
    ("Catalog", "now_ms", "the clock; reads nothing"),
    (
        "Catalog",
        "authenticate",
        "makes the principal from a token",
    ),
    ("Catalog", "ready", "the readiness probe, open to all"),
    (
        "Catalog",
        "data_files",
        "derives a writer confined to the table's own location from metadata the caller read through an authorized entry point",
    ),
    (
        "Catalog",
        "table_file_io",
        "derives a FileIO confined to the table's own location from metadata the caller read through an authorized entry point",
    ),
    ("Runner", "new", "a constructor"),
    ("Runner", "with_landing_hook", "a constructor (fault tests)"),
    (
        "Runner",
        "clear_scratch",
        "server start: clears its own scratch folders",
    ),
    (
        "Runner",
        "environments",
        "the worker environments' cache; no catalog data",
    ),
    (
        "Runner",
        "log_path",
        "a path; the log is served after get_run authorizes",
    ),
    (
        "Runner",
        "code_path",
        "a path; the code is served after get_run authorizes",
    ),
    ("QueryEngine", "new", "a constructor"),
    ("QueryEngine", "limits", "its configuration"),
    ("Importer", "new", "a constructor"),
    ("Importer", "with_sync_hook", "a constructor (fault tests)"),
    (
        "Importer",
        "with_landing_hook",
        "a constructor (fault tests)",
    ),
];

/// `(type, method, path:line)` of each public method of an entry-point type whose
/// signature names no `Principal`.
fn unlocked(sources: &[(String, String)]) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for (path, code) in sources {
        let types: Vec<&str> = ENTRY_TYPES
            .iter()
            .filter(|(dir, _)| path.starts_with(dir))
            .map(|(_, t)| *t)
            .collect();
        if types.is_empty() {
            continue;
        }
        let lines: Vec<&str> = code.lines().collect();
        let mut inside: Option<&str> = None;
        for (n, line) in lines.iter().enumerate() {
            if line.starts_with("impl") {
                // `impl Catalog {`, `impl super::Runner {`; never `impl Trait for T`.
                let head = line.trim_end_matches('{').trim();
                inside = (!head.contains(" for "))
                    .then(|| head.rsplit([' ', ':']).next().unwrap_or(""))
                    .and_then(|t| types.iter().find(|x| **x == t).copied());
                continue;
            }
            if line.starts_with('}') {
                inside = None;
                continue;
            }
            let Some(ty) = inside else { continue };
            let Some(rest) = line
                .strip_prefix("    pub fn ")
                .or_else(|| line.strip_prefix("    pub async fn "))
            else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // The signature: to the line that opens the body.
            let mut signature = String::new();
            for l in &lines[n..] {
                signature.push_str(l);
                if l.trim_end().ends_with('{') || l.trim_end().ends_with(';') {
                    break;
                }
            }
            if !parameters(&signature).contains("Principal") {
                found.push((ty.to_owned(), name, format!("{path}:{}", n + 1)));
            }
        }
    }
    found
}

/// The parameter list of a signature (between its first `(` and the matching `)`): a
/// `Principal` in the return type takes none.
fn parameters(signature: &str) -> &str {
    let Some(open) = signature.find('(') else {
        return "";
    };
    let mut depth = 0;
    for (i, c) in signature[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &signature[open..open + i];
                }
            }
            _ => {}
        }
    }
    &signature[open..]
}

#[test]
fn every_public_entry_point_takes_the_principal_it_acts_for() {
    let found = unlocked(&product_sources());
    let mut problems: Vec<String> = found
        .iter()
        .filter(|(ty, name, _)| !UNLOCKED.iter().any(|(t, n, _)| t == ty && n == name))
        .map(|(ty, name, at)| {
            format!("{at}: {ty}::{name} takes no Principal: take the principal it acts for and authorize it, or list it in UNLOCKED with the reason it needs none")
        })
        .collect();
    for (ty, name, _) in UNLOCKED {
        if !found.iter().any(|(t, n, _)| t == ty && n == name) {
            problems.push(format!(
                "UNLOCKED lists {ty}::{name}, which no longer exists or takes a Principal: remove it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_door_check_finds_what_it_looks_for() {
    let code = "impl Catalog {\n    pub fn open(&self, id: &str) -> X {\n    }\n    pub fn who(&self, t: &str) -> Option<Principal> {\n    }\n    pub fn fine(\n        &self,\n        principal: &Principal,\n    ) -> X {\n    }\n}\nimpl Debug for Catalog {\n    pub fn fmt(&self) {\n    }\n}\nimpl Other {\n    pub fn free(&self) {\n    }\n}\n";
    let found = unlocked(&[("catalog/src/x.rs".to_owned(), code.to_owned())]);
    assert_eq!(
        found,
        [
            (
                "Catalog".to_owned(),
                "open".to_owned(),
                "catalog/src/x.rs:2".to_owned()
            ),
            (
                "Catalog".to_owned(),
                "who".to_owned(),
                "catalog/src/x.rs:4".to_owned()
            )
        ]
    );
}
