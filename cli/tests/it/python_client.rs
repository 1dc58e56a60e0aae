//! The Python client (`clients/python/`, distribution `floe-client`) by its own test suite:
//! `python -m unittest discover -s clients/python/tests`, run with the pinned test venv
//! (`FLOE_TEST_VENV`, which has pyarrow) against this build of `floe` (`FLOE_BIN`). Each
//! Python test starts its own `floe serve`, so this test starts none. Slow: ignored by a
//! plain `cargo test` and run by `.ci/run`'s slow phase (`-- --ignored`), which provides
//! `FLOE_TEST_VENV`.

use std::process::Command;

#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_python_client_suite_passes_against_this_floe() {
    let venv = std::env::var("FLOE_TEST_VENV").expect(
        "FLOE_TEST_VENV names the Python venv with the pinned test clients (tests/requirements.txt); \
         .ci/run creates it",
    );
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = Command::new(format!("{venv}/bin/python"))
        .args([
            "-B",
            "-m",
            "unittest",
            "discover",
            "-s",
            "clients/python/tests",
            "-v",
        ])
        .current_dir(root)
        .env("FLOE_BIN", env!("CARGO_BIN_EXE_floe"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The suite names its servers itself; a developer's own must not leak in.
        .env_remove("FLOE_URL")
        .env_remove("FLOE_TOKEN")
        .output()
        .expect("the venv's python runs");
    // unittest reports on standard error; the runs' streamed logs go to standard output.
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    println!("{out}\n{err}");
    assert!(
        output.status.success(),
        "the Python client's tests failed:\n{out}\n{err}"
    );
    // Every test ran: a missing FLOE_BIN or pyarrow would skip rather than fail.
    assert!(
        err.contains("\nOK") && !err.contains("skipped"),
        "the Python client's tests did not all run:\n{err}"
    );
    let ran: usize = err
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(ran >= 40, "only {ran} Python tests ran:\n{err}");
}
