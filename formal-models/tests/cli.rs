//! The `floe-formal-models` command with no flags checks what CI checks and passes
//! (issue 14, item 14): its default depth is the CI depth, where every `always` property
//! holds and every `sometimes` property is reached.

use std::process::Command;

fn check(model: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_floe-formal-models"))
        .args(["check", model, "--threads", "2"])
        .output()
        .expect("the model checker runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

#[test]
fn a_check_with_no_flags_passes_at_the_ci_depth() {
    let (ok, text) = check("version-store");
    assert!(ok, "check version-store failed:\n{text}");
    assert!(
        text.contains(&format!(
            "to depth {}",
            floe_formal_models::version_store::CI_DEPTH
        )),
        "{text}"
    );
    assert!(
        text.contains("a stale commit lands by rebase: reached"),
        "{text}"
    );
    assert!(
        !text.contains("NEVER") && !text.contains("VIOLATED"),
        "{text}"
    );
    let (ok, text) = check("durability");
    assert!(ok, "check durability failed:\n{text}");
    let (ok, text) = check("runs");
    assert!(ok, "check runs failed:\n{text}");
    assert!(
        text.contains(&format!("to depth {}", floe_formal_models::runs::CI_DEPTH)),
        "{text}"
    );
    assert!(
        !text.contains("NEVER") && !text.contains("VIOLATED"),
        "{text}"
    );
}

#[test]
fn a_mutant_check_finds_its_counterexample_and_says_so() {
    for (model, mutant) in [("version-store", "blind-write"), ("runs", "unsealed-work")] {
        let out = Command::new(env!("CARGO_BIN_EXE_floe-formal-models"))
            .args(["check", model, "--mutant", mutant, "--threads", "2"])
            .output()
            .expect("the model checker runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("VIOLATED"), "{text}");
    }
}
