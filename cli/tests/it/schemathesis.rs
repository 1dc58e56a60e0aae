//! schemathesis on a real server, negative data included: against floe's own API
//! (`openapi/floe-api.json`), and against the official Iceberg REST spec restricted to the
//! operations floe serves (branch prefix pinned). Zero server errors and zero responses
//! that break the documents.
//! Slow, and it needs the pinned Python venv: ignored by a plain `cargo test`, run by
//! `.ci/run`'s slow phase (`-- --ignored`), which creates the venv and sets `FLOE_TEST_VENV`.

use std::process::Command;

use crate::harness::Running;

/// schemathesis's command line with a Hypothesis crash worked around (see the script).
const RUNNER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/schemathesis_run.py");

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_schemathesis_finds_no_server_errors_and_no_schema_violations() {
    let venv = std::env::var("FLOE_TEST_VENV").expect(
        "FLOE_TEST_VENV names the Python venv with the pinned test clients (tests/requirements.txt); \
         .ci/run creates it",
    );
    let s = Running::start();
    // Something to find: a namespace and a second branch.
    s.namespace("main", "sales");
    s.branch("dev", "main");
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/floe-api.json");
    let config = s.dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        "[parameters]\n\"path.ref\" = \"main\"\n\"path.name\" = \"dev\"\n",
    )
    .unwrap();
    let reports = s.dir.path().join("reports");
    let output = Command::new(format!("{venv}/bin/python"))
        .arg(RUNNER)
        .arg("--config-file")
        .arg(&config)
        .args(["run", spec, "--url", &s.url()])
        .args([
            "-c",
            "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
            "-n",
            "40",
            "--seed",
            "1",
            "--max-time",
            "90",
            "--suppress-health-check",
            "all",
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(&reports)
        .env("NO_COLOR", "1")
        // schemathesis keeps a cache in its working folder: not in the checkout.
        .current_dir(s.dir.path())
        .output()
        .expect("schemathesis runs from the test venv");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{out}\n{err}"
    );
    assert!(out.contains("passed"), "{out}");
    // The server is still healthy afterwards.
    assert_eq!(s.get("/ready").status, 200);
}

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_schemathesis_finds_nothing_against_the_official_iceberg_spec() {
    let venv = std::env::var("FLOE_TEST_VENV").expect(
        "FLOE_TEST_VENV names the Python venv with the pinned test clients (tests/requirements.txt); \
         .ci/run creates it",
    );
    let s = Running::start();
    s.namespace("main", "accounting");
    let spec = official_spec();
    let config = s.dir.path().join("schemathesis.toml");
    std::fs::write(&config, "[parameters]\n\"path.prefix\" = \"main\"\n").unwrap();
    let tests_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests");
    let output = Command::new(format!("{venv}/bin/python"))
        .arg(RUNNER)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(&spec)
        .args(["--url", &format!("{}/iceberg", s.url())])
        // Exactly what config advertises: scan planning, credentials, signing, functions
        // and oauth are not served.
        .args([
            "--exclude-deprecated",
            "--exclude-path-regex",
            "plan|tasks|credentials|sign|functions|oauth",
            // Not the stateful phase: it feeds names from responses into URLs without
            // encoding `?`, so the server receives another operation than the one the
            // answer is checked against (see tests/schemathesis_hooks.py).
            "--phases",
            "examples,coverage,fuzzing",
            "-c",
            "not_a_server_error,status_code_conformance,response_schema_conformance",
            "-n",
            "20",
            "--seed",
            "1",
            "--max-time",
            "90",
            // Hypothesis's health checks judge the data generator, not the server: a
            // generator that filters too much is not a finding.
            "--suppress-health-check",
            "all",
        ])
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", tests_dir)
        .env("NO_COLOR", "1")
        // schemathesis keeps a cache in its working folder: not in the checkout.
        .current_dir(s.dir.path())
        .output()
        .expect("schemathesis runs from the test venv");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{out}\n{err}"
    );
    assert!(out.contains("passed"), "{out}");
    assert_eq!(s.get("/ready").status, 200);
}

/// The official Iceberg REST spec (kept beside the project, never copied into it):
/// `FLOE_ICEBERG_SPEC`, else `../shared/specs/` next to the checkout, else `/work/shared/specs/`.
fn official_spec() -> std::path::PathBuf {
    let name = "iceberg-rest-catalog-open-api.yaml";
    let candidates = [
        std::env::var_os("FLOE_ICEBERG_SPEC").map(std::path::PathBuf::from),
        Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/specs")
                .join(name),
        ),
        Some(std::path::Path::new("/work/shared/specs").join(name)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("the official Iceberg REST spec ({name}) is not beside the checkout; set FLOE_ICEBERG_SPEC")
        })
}
