//! The `floe` command line end to end against a real server: human output, `--json`
//! parsed, exit codes, and the checked-out branch kept per server in `FLOE_CONFIG_DIR`.

use crate::harness::Running;

#[test]
fn branches_checkout_namespaces_log_show_diff_and_tags() {
    let s = Running::start();
    let cfg = s.config_dir();
    let floe = |args: &[&str]| s.floe(&cfg, args);

    // A fresh config has main checked out.
    let out = floe(&["namespace", "create", "sales", "--prop", "owner=ana"]);
    assert!(
        out.expect(0).contains("created namespace sales on main"),
        "{}",
        out.stdout
    );
    let out = floe(&["checkout", "-b", "dev"]);
    assert!(
        out.expect(0).starts_with("on branch dev at "),
        "{}",
        out.stdout
    );
    let config = std::fs::read_to_string(cfg.join("config.toml")).unwrap();
    assert!(
        config.contains(&s.url()) && config.contains("branch = \"dev\""),
        "{config}"
    );
    // Verbs without a branch now act on dev.
    floe(&["namespace", "create", "sales.eu"]).expect(0);
    floe(&["namespace", "create", "ops"]).expect(0);
    assert_eq!(s.get("/api/v1/trees/main/namespaces/ops").status, 404);

    // branch list: aligned columns, the checked-out one marked, short hashes.
    let list = floe(&["branch", "list"]);
    let lines: Vec<&str> = list.expect(0).lines().collect();
    assert_eq!(lines.len(), 2, "{}", list.stdout);
    assert!(lines[0].starts_with("*  dev   "), "{:?}", lines);
    assert!(lines[1].starts_with("   main  "), "{:?}", lines);
    let dev_head = s.head("dev");
    assert!(
        lines[0].contains(&dev_head[..12]) && !lines[0].contains(&dev_head[..13]),
        "{:?}",
        lines
    );
    let main_head = s.head("main");
    assert_eq!(
        lines[0].find(&dev_head[..12]),
        lines[1].find(&main_head[..12]),
        "hash columns align"
    );
    // --json: exactly the API body, with full hashes.
    let json = floe(&["branch", "list", "--json"]);
    json.expect(0);
    assert_eq!(json.json()["refs"][0]["head"], dev_head.as_str());

    // log, show, diff.
    let log = floe(&["log", "-n", "2"]);
    let log_lines: Vec<&str> = log.expect(0).lines().collect();
    assert_eq!(log_lines.len(), 2);
    assert!(
        log_lines[0].ends_with("create namespace ops"),
        "{:?}",
        log_lines
    );
    let log = floe(&["log", "main", "--json"]);
    assert_eq!(log.json()["commits"].as_array().unwrap().len(), 2);
    assert_eq!(
        floe(&["log", "--grep", "SALES.EU", "--json"]).json()["commits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        floe(&["log", "--path", "ops", "--json"]).json()["commits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let show = floe(&["show", "dev"]);
    let text = show.expect(0);
    assert!(text.starts_with(&format!("commit {dev_head}")), "{text}");
    assert!(
        text.contains("    create namespace ops") && text.contains("+  ops  namespace  added"),
        "{text}"
    );
    let diff = floe(&["diff", "main"]);
    assert_eq!(
        diff.expect(0).lines().collect::<Vec<_>>(),
        [
            "  +  ops       namespace  added",
            "  +  sales.eu  namespace  added"
        ]
    );
    assert_eq!(
        floe(&["diff", "main", "main"]).expect(0),
        "no changes from main to main\n"
    );

    // Namespaces: list, show (human and JSON), drop.
    assert_eq!(
        floe(&["namespace", "list"]).expect(0),
        "ops\nsales     owner=ana\nsales.eu\n"
    );
    assert_eq!(
        floe(&["namespace", "list", "--ref", "main"]).expect(0),
        "sales  owner=ana\n"
    );
    let shown = floe(&["namespace", "show", "sales", "--json"]);
    assert_eq!(shown.json()["namespace"]["properties"]["owner"], "ana");
    assert!(
        floe(&["namespace", "show", "sales"])
            .expect(0)
            .contains("  owner     ana")
    );
    floe(&["namespace", "drop", "ops"]).expect(0);
    let drop = floe(&["namespace", "drop", "sales"]);
    drop.expect(3);
    assert!(drop.stderr.contains("not empty"), "{}", drop.stderr);

    // Tags: create at a spec, list, refuse to move them, delete.
    floe(&["tag", "create", "v1", "--at", "main"]).expect(0);
    let tags = floe(&["tag", "list"]);
    assert!(tags.expect(0).starts_with("   v1  "), "{}", tags.stdout);
    let reset_tag = floe(&["reset", "v1", "dev"]);
    reset_tag.expect(1);
    assert!(
        reset_tag.stderr.contains("tags never move"),
        "{}",
        reset_tag.stderr
    );
    let checkout_tag = floe(&["checkout", "v1"]);
    checkout_tag.expect(1);
    assert!(
        checkout_tag.stderr.contains("is a tag"),
        "{}",
        checkout_tag.stderr
    );
    floe(&["branch", "delete", "v1"]).expect(1);
    floe(&["tag", "delete", "v1"]).expect(0);
    floe(&["tag", "delete", "v1"]).expect(5);

    // branch show / create / delete; the checked-out branch cannot be deleted.
    let shown = floe(&["branch", "show", "dev"]);
    assert!(
        shown.expect(0).contains("checked out  yes"),
        "{}",
        shown.stdout
    );
    floe(&["branch", "create", "tmp", "--from", "main~1"]).expect(0);
    assert_eq!(
        s.head("tmp"),
        s.get("/api/v1/trees/main~1/log").body["head"]
            .as_str()
            .unwrap()
    );
    floe(&["branch", "delete", "dev"]).expect(1);
    floe(&["branch", "delete", "tmp"]).expect(0);
    floe(&["branch", "show", "tmp"]).expect(5);
    // Checkout of an existing branch, and back.
    floe(&["checkout", "main"]).expect(0);
    assert!(
        floe(&["branch", "list"])
            .expect(0)
            .lines()
            .any(|l| l.starts_with("*  main"))
    );
    floe(&["checkout", "nope"]).expect(5);
}

#[test]
fn merge_conflicts_cherry_pick_revert_reset_reflog_and_exit_codes() {
    let s = Running::start();
    let cfg = s.config_dir();
    let floe = |args: &[&str]| s.floe(&cfg, args);
    floe(&["namespace", "create", "a"]).expect(0);
    floe(&["branch", "create", "dev"]).expect(0);
    floe(&["namespace", "create", "b", "--ref", "dev"]).expect(0);

    // A dry run says what would happen and changes nothing.
    let before = s.head("main");
    let dry = floe(&["merge", "dev", "--dry-run"]);
    assert!(
        dry.expect(0).contains("main would be fast-forwarded to"),
        "{}",
        dry.stdout
    );
    assert_eq!(s.head("main"), before);
    let merged = floe(&["merge", "dev", "--json"]);
    assert_eq!(merged.json()["kind"], "fast-forward");

    // A conflict prints the keys and how to resolve them; exit 3; nothing changes.
    s.post(
        "/api/v1/trees/dev/namespaces/a/properties",
        serde_json::json!({"updates": {"k": "dev"}}),
    );
    s.post(
        "/api/v1/trees/main/namespaces/a/properties",
        serde_json::json!({"updates": {"k": "main"}}),
    );
    let head = s.head("main");
    let conflict = floe(&["merge", "dev", "--into", "main"]);
    conflict.expect(3);
    assert!(
        conflict
            .stderr
            .contains("merging dev into main stopped on 1 conflicting key(s)"),
        "{}",
        conflict.stderr
    );
    assert!(
        conflict
            .stderr
            .contains("a  both-changed (source modified, target modified)"),
        "{}",
        conflict.stderr
    );
    assert!(
        conflict.stderr.contains("--on-conflict source"),
        "{}",
        conflict.stderr
    );
    assert_eq!(s.head("main"), head);
    let json = floe(&["merge", "dev", "--json"]);
    json.expect(3);
    assert_eq!(
        json.json()["type"],
        "Conflict",
        "--json prints the error body"
    );
    assert_eq!(json.json()["currentHead"], head.as_str());
    floe(&["namespace", "create", "e", "--ref", "dev"]).expect(0);
    let resolved = floe(&[
        "merge",
        "dev",
        "--on-conflict",
        "target",
        "-m",
        "keep main's a",
    ]);
    assert!(
        resolved.expect(0).contains("dev merged into main"),
        "{}",
        resolved.stdout
    );
    assert_eq!(
        s.get("/api/v1/commits/main").body["commit"]["message"],
        "keep main's a"
    );
    assert_eq!(
        s.get("/api/v1/trees/main/namespaces/a").body["namespace"]["properties"]["k"],
        "main"
    );
    assert_eq!(s.get("/api/v1/trees/main/namespaces/e").status, 200);

    // Cherry-pick two commits, one already present; revert one.
    let c = {
        floe(&["namespace", "create", "c", "--ref", "dev"]).expect(0);
        s.head("dev")
    };
    let d = {
        floe(&["namespace", "create", "d", "--ref", "dev"]).expect(0);
        s.head("dev")
    };
    floe(&["branch", "create", "hot", "--from", &head]).expect(0);
    let picked = floe(&["cherry-pick", &c[..10], &d, "--onto", "hot"]);
    let lines: Vec<&str> = picked.expect(0).lines().collect();
    assert_eq!(lines.len(), 2, "{}", picked.stdout);
    assert!(
        lines[0].starts_with(&format!("applied {} on hot", &c[..10])),
        "{lines:?}"
    );
    assert!(
        floe(&["cherry-pick", &d, "--onto", "hot"])
            .expect(0)
            .contains("skipped")
    );
    let ndjson = floe(&["cherry-pick", &c, &d, "--onto", "hot", "--json"]);
    assert_eq!(
        ndjson.expect(0).lines().count(),
        2,
        "one JSON line per commit"
    );
    for line in ndjson.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["created"], false);
    }
    let reverted = floe(&["revert", &d, "--on", "hot"]);
    assert!(
        reverted
            .expect(0)
            .starts_with(&format!("reverted {} on hot", &d[..12])),
        "{}",
        reverted.stdout
    );
    assert_eq!(s.get("/api/v1/trees/hot/namespaces/d").status, 404);

    // Reset moves a branch anywhere; the reflog keeps the old head and the principal.
    let old = s.head("hot");
    let reset = floe(&["reset", "hot", "main~2"]);
    assert!(
        reset.expect(0).contains(&format!("(was {}", &old[..12])),
        "{}",
        reset.stdout
    );
    let reflog = floe(&["reflog", "hot", "-n", "2"]);
    let lines: Vec<&str> = reflog.expect(0).lines().collect();
    assert!(
        lines[0].contains("  hot  assign  ")
            && lines[0].contains(&old[..12])
            && lines[0].ends_with("anonymous"),
        "{lines:?}"
    );
    assert!(lines[1].contains("revert"), "{lines:?}");
    let reflog = floe(&["reflog", "--json", "-n", "3"]);
    assert_eq!(reflog.json()["entries"].as_array().unwrap().len(), 3);

    // Exit codes: 5 not found, 2 usage, 1 error (bad input, unreachable server).
    floe(&["show", "0000000000000000"]).expect(5);
    floe(&["merge", "nope"]).expect(5);
    floe(&["merge", "dev", "--strategy", "sideways"]).expect(2);
    floe(&["namespace", "create", "x", "--prop", "novalue"]).expect(2);
    let bad = floe(&["branch", "create", "a..b"]);
    bad.expect(1);
    assert!(bad.stderr.contains("ref name"), "{}", bad.stderr);
    let down = s.floe(&cfg, &["--server", "http://127.0.0.1:9", "branch", "list"]);
    down.expect(1);
    assert!(
        down.stderr
            .contains("cannot reach the floe server at http://127.0.0.1:9"),
        "{}",
        down.stderr
    );
}

#[test]
fn openapi_and_completions_need_no_server() {
    let s = Running::start();
    let cfg = s.config_dir();
    let doc = s.floe(&cfg, &["openapi"]);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../openapi/floe-api.json"
    ))
    .unwrap();
    assert_eq!(doc.expect(0), committed);
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef floe"),
        ("fish", "complete -c floe"),
    ] {
        let out = s.floe(&cfg, &["completions", shell]);
        let text = out.expect(0);
        assert!(
            text.contains(marker) && text.contains("cherry-pick"),
            "{shell}: {}",
            &text[..200.min(text.len())]
        );
    }
    s.floe(&cfg, &["completions", "tcsh"]).expect(2);
}
