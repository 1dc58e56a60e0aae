//! Python nodes through the whole engine: real worker processes in a real environment
//! (the default one, built by uv once into the shared cache), reading tables at the fork
//! and upstream outputs as Arrow IPC files.

use std::collections::BTreeMap;

use floe_catalog::RunState;

use super::tests::{World, config, files_with, sleepers, world};
use super::*;

const PARAMS: &str = "project:\n  id: py1\n  name: python\nparameters:\n  low:\n    type: int\n    default: 10\n  factor:\n    type: float\n    default: 2.5\n  label:\n    type: str\n    default: \"it's\"\n  flag:\n    type: bool\n    default: true\n  token:\n    type: secret\n    default: s3cr3t-value\ndefaults:\n  namespace: db\n";

fn project(models: &[(&str, &str)]) -> Vec<u8> {
    files_with(PARAMS, models)
}

fn pipeline(record: &RunRecord) -> Pipeline {
    Pipeline::from_value(record.pipeline.as_ref().unwrap()).unwrap()
}

fn node<'a>(p: &'a Pipeline, name: &str) -> &'a NodeRecord {
    p.nodes.iter().find(|n| n.name == name).unwrap()
}

fn log_of(w: &World, record: &RunRecord) -> String {
    std::fs::read_to_string(w.runner.log_path(&record.id)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_feeds_python_feeds_python_feeds_sql_in_both_decorator_generations() {
    let w = world().await;
    let archive = project(&[
        ("a.sql", "SELECT id, id * 2 AS x FROM t WHERE id < 50"),
        (
            "models/legacy.py",
            r#"
import bauplan
import pyarrow.compute as pc

@bauplan.model(materialization_strategy="REPLACE")
def doubled(data=bauplan.Model("a", columns=["id", "x"], filter="id >= $low"),
            factor=bauplan.Parameter("factor")):
    assert isinstance(factor, float)
    return data.append_column("y", pc.multiply(data["x"], factor))
"#,
        ),
        (
            "models/typed.py",
            r#"
from typing import Annotated
import pyarrow as pa
import bauplan

class Out(bauplan.TableSchema):
    id: bauplan.Int64
    y: bauplan.Float64

@bauplan.python("3.11")
@bauplan.model(materialization_strategy="REPLACE")
def typed_out(
    rows: Annotated[pa.Table, bauplan.Model("doubled", projection_schema=Out)],
) -> Annotated[pa.Table, Out]:
    assert rows.column_names == ["id", "y"], rows.column_names
    return rows
"#,
        ),
        (
            "final.sql",
            "-- bauplan: materialization_strategy = REPLACE\nSELECT count(*) AS n, sum(y) AS s FROM typed_out",
        ),
    ]);
    let options = RunOptions {
        strict: true,
        ..RunOptions::default()
    };
    let record = w.run(archive, options).await.unwrap();
    let log = log_of(&w, &record);
    assert_eq!(
        record.state,
        RunState::Succeeded,
        "{:?}\n{log}",
        record.error
    );
    let p = pipeline(&record);
    // ids 10..50 (the filter's $low is 10), y = 2 * id * 2.5.
    assert_eq!(node(&p, "doubled").rows, Some(40));
    assert_eq!(node(&p, "typed_out").rows, Some(40));
    assert!(node(&p, "doubled").environment.is_some());
    assert_eq!(w.count("main", "db.doubled").await, 40);
    let sum = w.scalar("main", "SELECT s FROM db.final").await;
    let expected: f64 = (10..50).map(|i| f64::from(i) * 5.0).sum();
    assert_eq!(sum, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_return_type_becomes_a_table_and_anything_else_fails_naming_it() {
    let w = world().await;
    let returns = r#"
import bauplan
import pyarrow as pa

@bauplan.model(materialization_strategy="REPLACE")
def as_pandas(data=bauplan.Model("t", filter="id < 5")):
    df = data.to_pandas()
    df.index = df.index + 100  # not written: the index is dropped
    return df

@bauplan.model(materialization_strategy="REPLACE")
def as_dicts(data=bauplan.Model("t", columns=["id"], filter="id < 3")):
    # Rows need not have the same keys: each key is a column.
    return [{"id": i, "name": f"n{i}"} if i != 1 else {"id": i, "late": True}
            for i in data["id"].to_pylist()]

class Stream:
    def __init__(self, table):
        self.table = table
    def __arrow_c_stream__(self, requested_schema=None):
        return self.table.__arrow_c_stream__(requested_schema)

@bauplan.model(materialization_strategy="REPLACE")
def as_stream(data=bauplan.Model("t", filter="id < 7")):
    return Stream(data)

@bauplan.model(materialization_strategy="REPLACE")
def as_batch(data=bauplan.Model("t", filter="id < 2")):
    return data.to_batches()[0]
"#;
    // The worker itself imports neither pandas nor polars.
    let probe = r#"
import sys
import bauplan
import pyarrow as pa

@bauplan.model(materialization_strategy="REPLACE")
def probe(data=bauplan.Model("t", filter="id < 1")):
    return pa.table({"pandas": ["pandas" in sys.modules], "polars": ["polars" in sys.modules]})
"#;
    let record = w
        .run(
            project(&[("returns.py", returns), ("probe.py", probe)]),
            RunOptions::default(),
        )
        .await
        .unwrap();
    let log = log_of(&w, &record);
    assert_eq!(
        record.state,
        RunState::Succeeded,
        "{:?}\n{log}",
        record.error
    );
    assert_eq!(w.count("main", "db.as_pandas").await, 5);
    assert_eq!(w.count("main", "db.as_dicts").await, 3);
    assert_eq!(w.count("main", "db.as_stream").await, 7);
    assert_eq!(w.count("main", "db.as_batch").await, 2);
    let columns = w.columns("main", "db.as_pandas").await;
    assert!(!columns.iter().any(|c| c.contains("index")), "{columns:?}");
    assert_eq!(
        w.columns("main", "db.as_dicts").await,
        ["id", "name", "late"]
    );
    assert_eq!(
        w.text("main", "SELECT count(*) FROM db.as_dicts WHERE late")
            .await,
        "1"
    );

    let before = w.head();
    let none = r#"
import bauplan

@bauplan.model()
def nothing(data=bauplan.Model("t")):
    print("about to return nothing")
"#;
    let record = w
        .run(project(&[("none.py", none)]), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(record.state, RunState::Failed);
    assert_eq!(w.head(), before);
    let message = node(&pipeline(&record), "nothing")
        .error
        .clone()
        .unwrap()
        .message;
    assert!(message.contains("nothing returned NoneType"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_of_each_type_arrive_typed_and_secrets_stay_masked() {
    let w = world().await;
    let code = r#"
import bauplan
import pyarrow as pa

@bauplan.model(materialization_strategy="REPLACE")
def params(data=bauplan.Model("t", columns=["id"], filter="id = $low"),
           low=bauplan.Parameter("low"), factor=bauplan.Parameter("factor"),
           label=bauplan.Parameter("label"), flag=bauplan.Parameter("flag"),
           token=bauplan.Parameter("token")):
    print("the token is", token)
    # A long line, the secret across where the log cuts it.
    print("x" * 65530 + token + "y" * 40000)
    types = [type(v).__name__ for v in (low, factor, label, flag, token)]
    return pa.table({"types": [",".join(types)], "label": [label], "low": [low],
                     "rows": [data.num_rows], "token_len": [len(token)]})
"#;
    let options = RunOptions {
        params: BTreeMap::from([("low".to_owned(), "7".to_owned())]),
        ..RunOptions::default()
    };
    let record = w.run(project(&[("p.py", code)]), options).await.unwrap();
    let log = log_of(&w, &record);
    assert_eq!(
        record.state,
        RunState::Succeeded,
        "{:?}\n{log}",
        record.error
    );
    let row = w
        .text("main", "SELECT types || '|' || label || '|' || CAST(low AS VARCHAR) || '|' || CAST(\"rows\" AS VARCHAR) || '|' || CAST(token_len AS VARCHAR) FROM db.params")
        .await;
    assert_eq!(row, "int,float,str,bool,str|it's|7|1|12");
    // The function printed the secret: the log shows it masked.
    assert!(log.contains("the token is"), "{log}");
    assert!(!log.contains("s3cr3t"), "no part of the secret is shown");
    // Masked first (8 asterisks), then cut at 64 KiB: 65,530 x and 6 of the asterisks.
    assert!(
        log.contains("x****** [cut]"),
        "the long line is cut after masking"
    );
    let shown = serde_json::to_string(&record).unwrap();
    assert!(!shown.contains("s3cr3t-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expectations_warn_without_strict_and_fail_with_it() {
    let w = world().await;
    let code = r#"
import bauplan
from bauplan.standard_expectations import expect_column_no_nulls, expect_column_all_unique

@bauplan.model()
def base(data=bauplan.Model("t", columns=["id"])):
    return data

@bauplan.expectation()
def ids_have_no_nulls(data=bauplan.Model("base")):
    return expect_column_no_nulls(data, "id")

@bauplan.expectation()
def ids_are_few(data=bauplan.Model("base")):
    return data.num_rows < 10
"#;
    let lenient = w
        .run(project(&[("e.py", code)]), RunOptions::default())
        .await
        .unwrap();
    let log = log_of(&w, &lenient);
    assert_eq!(
        lenient.state,
        RunState::Succeeded,
        "{:?}\n{log}",
        lenient.error
    );
    let p = pipeline(&lenient);
    assert_eq!(node(&p, "ids_have_no_nulls").passed, Some(true));
    assert_eq!(node(&p, "ids_are_few").passed, Some(false));
    assert_eq!(node(&p, "ids_are_few").state, NodeState::Succeeded);
    assert!(
        log.contains(" ids_are_few warn expectation failed"),
        "{log}"
    );

    let strict = RunOptions {
        strict: true,
        ..RunOptions::default()
    };
    let failed = w.run(project(&[("e.py", code)]), strict).await.unwrap();
    assert_eq!(failed.state, RunState::Failed);
    let p = pipeline(&failed);
    assert_eq!(node(&p, "ids_are_few").state, NodeState::Failed);
    let message = node(&p, "ids_are_few").error.clone().unwrap().message;
    assert!(message.contains("returned False (--strict)"), "{message}");
    // Its answer came from the cache (the lenient run's): --strict still fails it.
    assert!(node(&p, "ids_are_few").cached);

    // An assert fails the run with or without --strict.
    let asserting = r#"
import bauplan

@bauplan.expectation()
def no_big_ids(data=bauplan.Model("t")):
    assert data.num_rows < 10, f"{data.num_rows} rows"
    return True
"#;
    let failed = w
        .run(project(&[("a.py", asserting)]), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(failed.state, RunState::Failed);
    let message = node(&pipeline(&failed), "no_big_ids")
        .error
        .clone()
        .unwrap()
        .message;
    assert_eq!(message, "assertion failed: 100 rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_python_node_does_not_run_until_its_code_or_a_helper_changes() {
    let w = world().await;
    let model = r#"
import bauplan
import helper

@bauplan.model(materialization_strategy="REPLACE")
def scaled(data=bauplan.Model("t", columns=["id"])):
    print("executing scaled")
    return helper.scale(data)
"#;
    // The module it imports defines a node of its own, too.
    let helper = |factor: &str| {
        format!(
            "import bauplan\nimport pyarrow.compute as pc\n\ndef scale(t):\n    return t.append_column('y', pc.multiply(t['id'], {factor}))\n\n@bauplan.model()\ndef side(data=bauplan.Model('t', columns=['id'])):\n    return data\n"
        )
    };
    let run = |helper: String| {
        let archive = project(&[("m.py", model), ("helper.py", &helper)]);
        let w = &w;
        async move {
            let record = w.run(archive, RunOptions::default()).await.unwrap();
            let log = log_of(w, &record);
            assert_eq!(
                record.state,
                RunState::Succeeded,
                "{:?}\n{log}",
                record.error
            );
            (node(&pipeline(&record), "scaled").cached, log)
        }
    };
    let (cached, log) = run(helper("2")).await;
    assert!(!cached);
    assert!(log.contains("scaled stdout executing scaled"), "{log}");
    let (cached, log) = run(helper("2")).await;
    assert!(cached, "{log}");
    assert!(!log.contains("executing scaled"), "{log}");
    assert_eq!(
        w.scalar("main", "select sum(y) from db.scaled").await,
        9900.0
    );
    // A module the function imports changed: it runs again, with the new code.
    let (cached, log) = run(helper("3")).await;
    assert!(!cached);
    assert!(log.contains("executing scaled"), "{log}");
    assert_eq!(
        w.scalar("main", "select sum(y) from db.scaled").await,
        14850.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raising_function_fails_with_its_traceback_in_the_log() {
    let w = world().await;
    let before = w.head();
    let code = r#"
import bauplan

def helper(n):
    raise ValueError(f"bad value {n}")

@bauplan.model(materialization_strategy="REPLACE")
def raises(data=bauplan.Model("t")):
    return helper(data.num_rows)
"#;
    let record = w
        .run(
            project(&[("models/raises.py", code)]),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(record.state, RunState::Failed);
    assert_eq!(w.head(), before);
    let p = pipeline(&record);
    let error = node(&p, "raises").error.clone().unwrap();
    assert_eq!(error.message, "ValueError: bad value 100");
    assert_eq!(error.excerpt.as_deref(), Some("def raises(...)"));
    let log = log_of(&w, &record);
    assert!(
        log.contains("models/raises.py\", line 5, in helper"),
        "{log}"
    );
    assert!(
        !log.contains("floe_worker.py"),
        "the worker's own frames are left out: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_and_a_signal_kill_the_worker_and_say_so() {
    let w = world().await;
    let sleeps = r#"
import bauplan, subprocess, sys, time

@bauplan.resources(timeout=1)
@bauplan.model()
def sleeps(data=bauplan.Model("t")):
    # A child of the worker goes with its process group.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(600)
"#;
    let started = std::time::Instant::now();
    let timed = w
        .run(project(&[("s.py", sleeps)]), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(timed.state, RunState::Failed);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let message = node(&pipeline(&timed), "sleeps")
        .error
        .clone()
        .unwrap()
        .message;
    assert!(
        message.starts_with("it ran longer than its timeout (1 s)"),
        "{message}"
    );
    let killed = r#"
import bauplan, os, signal

@bauplan.model()
def killed(data=bauplan.Model("t")):
    os.kill(os.getpid(), signal.SIGKILL)
"#;
    let record = w
        .run(project(&[("k.py", killed)]), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(record.state, RunState::Failed);
    let message = node(&pipeline(&record), "killed")
        .error
        .clone()
        .unwrap()
        .message;
    assert_eq!(message, "its worker was killed by SIGKILL");
    // No sleeper survives its process group.
    let survivors = sleepers(600);
    assert!(survivors.is_empty(), "left running: {survivors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_reaches_the_log_while_the_function_still_runs() {
    let w = world().await;
    let gate = tempfile::tempdir().unwrap();
    let go = gate.path().join("go");
    let code = format!(
        r#"
import bauplan, os, time

@bauplan.model()
def waits(data=bauplan.Model("t")):
    print("waiting for the gate")
    while not os.path.exists({go:?}):
        time.sleep(0.01)
    print("through the gate")
    return data
"#,
        go = go.to_string_lossy()
    );
    let record = w
        .start(project(&[("w.py", &code)]), RunOptions::default())
        .await;
    let text = w
        .until_logged(&record.id, " waits stdout waiting for the gate")
        .await;
    // The node is still running: its gate is closed.
    assert!(!text.contains("through the gate"));
    std::fs::write(&go, b"").unwrap();
    let done = w
        .runner
        .wait(&floe_catalog::Principal::anonymous(), &record.id)
        .await
        .unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{:?}", done.error);
    let text = log_of(&w, &done);
    assert!(text.contains(" waits stdout through the gate"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_is_cut_without_internet_access() {
    let w = world().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        r#"
import bauplan, socket
import pyarrow as pa

def reach():
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
        return "connected"
    except OSError as e:
        return "refused"

@bauplan.model(materialization_strategy="REPLACE")
def offline(data=bauplan.Model("t", filter="id = 1")):
    return pa.table({{"r": [reach()]}})

@bauplan.model(materialization_strategy="REPLACE", internet_access=True)
def online(data=bauplan.Model("t", filter="id = 1")):
    return pa.table({{"r": [reach()]}})
"#
    );
    let record = w
        .run(project(&[("n.py", &code)]), RunOptions::default())
        .await
        .unwrap();
    let log = log_of(&w, &record);
    assert_eq!(
        record.state,
        RunState::Succeeded,
        "{:?}\n{log}",
        record.error
    );
    assert_eq!(w.text("main", "SELECT r FROM db.online").await, "connected");
    if worker::network_isolation().is_some() {
        assert_eq!(w.text("main", "SELECT r FROM db.offline").await, "refused");
    } else {
        // This host cannot isolate: the log says so, once.
        assert_eq!(
            log.matches("cannot cut workers off the network").count(),
            1,
            "{log}"
        );
        eprintln!("SKIPPED: network namespaces are not available on this host");
    }
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_bounded_and_pandas_works_under_the_bound() {
    let w = world().await;
    let pandas = r#"
import bauplan, resource

@bauplan.resources(memory="1GB")
@bauplan.model(materialization_strategy="REPLACE")
def pandas_under_a_limit(data=bauplan.Model("t")):
    df = data.to_pandas()
    df["double"] = df["id"] * 2
    out = df.groupby(df["id"] % 3).sum().reset_index(drop=True)
    # How the bound holds: a cgroup of its own, or RLIMIT_DATA.
    out["rlimit"] = resource.getrlimit(resource.RLIMIT_DATA)[0]
    out["cgroup"] = "floe-worker-" in open("/proc/self/cgroup").read()
    return out
"#;
    let ok = w
        .run(project(&[("m.py", pandas)]), RunOptions::default())
        .await
        .unwrap();
    let log = log_of(&w, &ok);
    assert_eq!(ok.state, RunState::Succeeded, "{:?}\n{log}", ok.error);
    assert_eq!(w.count("main", "db.pandas_under_a_limit").await, 3);
    let how = w
        .text(
            "main",
            "SELECT CAST(rlimit AS VARCHAR) || ' ' || CAST(cgroup AS VARCHAR) FROM db.pandas_under_a_limit LIMIT 1",
        )
        .await;
    if cgroup::available() {
        assert_eq!(how, "-1 true", "a cgroup bounds it, not RLIMIT_DATA");
    } else {
        assert_eq!(how, format!("{} false", 1u64 << 30));
    }
    let hog = r#"
import bauplan

@bauplan.resources(memory="256MB")
@bauplan.model()
def too_big(data=bauplan.Model("t")):
    hog = bytearray(1024 * 1024 * 1024)
    return data
"#;
    let record = w
        .run(project(&[("h.py", hog)]), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(record.state, RunState::Failed);
    let message = node(&pipeline(&record), "too_big")
        .error
        .clone()
        .unwrap()
        .message;
    assert!(message.contains("ran out of memory"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_returned_does_not_wait_for_what_it_started() {
    let w = world().await;
    let code = r#"
import bauplan, subprocess, threading, time

@bauplan.model()
def leaves_things_running(data=bauplan.Model("t")):
    # A child holding the worker's stdout, and a thread that never ends.
    subprocess.Popen(["python3", "-c", "import time; time.sleep(301); print('still here')"])
    threading.Thread(target=time.sleep, args=(301,)).start()
    print("returning")
    return data
"#;
    let started = std::time::Instant::now();
    let record = w
        .run(project(&[("l.py", code)]), RunOptions::default())
        .await
        .unwrap();
    let log = log_of(&w, &record);
    assert_eq!(
        record.state,
        RunState::Succeeded,
        "{:?}\n{log}",
        record.error
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the node waited for what it started: {:?}",
        started.elapsed()
    );
    assert!(
        log.contains(" leaves_things_running stdout returning"),
        "{log}"
    );
    let survivors = sleepers(301);
    assert!(survivors.is_empty(), "left running: {survivors}");
}

#[test]
fn a_restart_stops_the_workers_a_stopped_server_left_running() {
    let runs = tempfile::tempdir().unwrap();
    let folder = runs
        .path()
        .join("scratch")
        .join("run-1")
        .join("workers")
        .join("0");
    let home = folder.join("home");
    std::fs::create_dir_all(&home).unwrap();
    use std::os::unix::process::CommandExt;
    // A process where a worker is (in the worker's folder), in a group of its own, as a
    // worker is.
    let mut leftover = std::process::Command::new("sleep")
        .arg("300")
        .current_dir(&home)
        .process_group(0)
        .spawn()
        .unwrap();
    std::fs::write(folder.join("pgid"), leftover.id().to_string()).unwrap();
    clear_scratch(runs.path());
    let status = leftover.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(!home.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_needing_a_new_environment_build_it_once() {
    let mut w = world().await;
    let cache = tempfile::tempdir().unwrap();
    let runs = tempfile::tempdir().unwrap();
    w.runner = Runner::new(
        w.f.catalog.clone(),
        w.engine.clone(),
        RunnerConfig {
            env_cache: cache.path().to_owned(),
            ..config(runs.path(), 2, 2)
        },
    );
    let code = r#"
import bauplan

@bauplan.python("3.11", pip={"six": "1.16.0"})
@bauplan.model()
def with_six(data=bauplan.Model("t")):
    import six
    return data
"#;
    let submit = || async {
        w.start(project(&[("s.py", code)]), RunOptions::default())
            .await
    };
    let (a, b) = (submit().await, submit().await);
    let anyone = floe_catalog::Principal::anonymous();
    let (a, b) = tokio::join!(w.runner.wait(&anyone, &a.id), w.runner.wait(&anyone, &b.id));
    let (a, b) = (a.unwrap(), b.unwrap());
    let logs = format!("{}{}", log_of(&w, &a), log_of(&w, &b));
    assert_eq!(
        (a.state, b.state),
        (RunState::Succeeded, RunState::Succeeded),
        "{logs}"
    );
    assert_eq!(logs.matches("building environment").count(), 1, "{logs}");
    let key = node(&pipeline(&a), "with_six").environment.clone().unwrap();
    assert_eq!(
        node(&pipeline(&b), "with_six").environment.as_deref(),
        Some(key.as_str())
    );
    assert!(cache.path().join(&key).join("floe-env.json").exists());
}
