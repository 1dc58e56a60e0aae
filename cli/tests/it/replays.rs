//! Retries under an Idempotency-Key get the first answer field for field, however the
//! history around them is shaped (issue 14, item 6).

use serde_json::json;

use crate::harness::{Running, key};

/// A fast-forward to a source whose head is itself a merge commit (two parents) or a
/// squash commit (one parent, `floe.merge.source`) replays as a fast-forward: a merge is
/// one exactly when its new head equals the source.
#[test]
fn a_replayed_fast_forward_to_a_merge_or_squash_commit_says_fast_forward() {
    let s = Running::start();
    s.namespace("main", "base");
    for (strategy, source_kind) in [("normal", "merged"), ("squash", "squashed")] {
        let side = format!("side-{strategy}");
        s.branch(&side, "main");
        s.namespace(&side, &format!("from_{strategy}"));
        s.namespace("main", &format!("on_main_{strategy}"));
        let behind = format!("behind-{strategy}");
        s.branch(&behind, "main");
        let merged = s.post(
            "/api/v1/trees/main/merge",
            json!({"source": side, "strategy": strategy}),
        );
        assert_eq!(merged.body["kind"], source_kind, "{:?}", merged.body);
        let source = s.head("main");

        let k = key();
        let path = format!("/api/v1/trees/{behind}/merge");
        let first = s.send("POST", &path, &json!({"source": "main"}), Some(&k));
        assert_eq!(first.status, 200, "{:?}", first.body);
        assert_eq!(first.body["kind"], "fast-forward");
        assert_eq!(first.body["head"], source.as_str());
        let retry = s.send("POST", &path, &json!({"source": "main"}), Some(&k));
        assert_eq!(retry.status, 200, "{:?}", retry.body);
        assert_eq!(
            retry.body, first.body,
            "a retry of a fast-forward to a {source_kind} commit gets the first answer"
        );
    }
}
