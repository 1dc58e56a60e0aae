//! `floe run [DIR]`: packs a project (the project file, `.py`, `.sql`, `requirements.txt`)
//! into one tar, submits it, follows its log and ends with the run's exit code (0
//! succeeded, 4 failed at planning or execution, 3 landing conflict). `floe run
//! list|show|logs|promote` read and promote runs (imports too).
//!
//! Without `--detach` the log streams: on a terminal as a live status line per node
//! (waiting, running with elapsed time, done with rows, failed) above the log's lines;
//! elsewhere as plain lines. `--json` prints exactly one JSON document on stdout (the
//! final record, or with `--detach` the record as submitted); the log goes to stderr.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use crate::client::{CallError, EXIT_CONFLICT, Method, encode};
use crate::output::{short, table};
use crate::verbs::{Ctx, Failure, PAGE_MAX};
use crate::{PreviewArg, RunArgs, RunOpts, RunStart, RunVerb};

/// A run that failed, at planning or execution.
pub const EXIT_RUN_FAILED: u8 = 4;
/// How the server shows a secret parameter's value (floe_compute's `MASK`).
const PARAM_MASK: &str = "********";
/// `floe run` of a run that was cancelled (DESIGN §7).
pub const EXIT_RUN_CANCELLED: u8 = 130;

/// The project files a run needs; everything else in the folder stays home.
const PROJECT_FILES: [&str; 2] = ["bauplan_project.yml", "bauplan_project.yaml"];

pub fn run(ctx: &Ctx, args: RunArgs) -> Result<(), Failure> {
    match args.verb {
        None => start(ctx, args.start),
        Some(RunVerb::List {
            state,
            kind,
            target,
            project,
            table,
        }) => list(ctx, state, kind, target, project, table),
        Some(RunVerb::Show { id }) => {
            let answer = ctx.get(&format!("/api/v1/runs/{}", encode(&id)), &[])?;
            if ctx.json {
                ctx.print(&answer);
            } else {
                show(ctx, &answer.value);
            }
            Ok(())
        }
        Some(RunVerb::Logs { id, follow }) => {
            let query = [("follow", follow.to_string())];
            let mut stream = ctx
                .client
                .get_stream(&format!("/api/v1/runs/{}/logs", encode(&id)), &query)?;
            std::io::copy(&mut stream, &mut std::io::stdout())
                .map_err(|e| Failure::Other(format!("reading the log: {e}")))?;
            Ok(())
        }
        Some(RunVerb::Rerun { id, opts }) => rerun(ctx, &id, &opts),
        Some(RunVerb::Wait { id }) => {
            // The log streams until the run ends; what it says is not shown here.
            let stream = ctx.client.get_stream(
                &format!("/api/v1/runs/{}/logs", encode(&id)),
                &[("follow", "true".to_owned())],
            )?;
            std::io::copy(&mut std::io::BufReader::new(stream), &mut std::io::sink())
                .map_err(|e| Failure::Other(format!("following the run: {e}")))?;
            ended(ctx, &id)
        }
        Some(RunVerb::Cancel { id }) => {
            let answer = cancel(ctx, &id)?;
            if ctx.json {
                ctx.print(&answer);
            } else {
                show(ctx, &answer.value);
            }
            Ok(())
        }
        Some(RunVerb::Revert { id, on }) => {
            let answer = ctx
                .write(
                    Method::Post,
                    &format!("/api/v1/runs/{}/revert", encode(&id)),
                    &[],
                    Some(json!({ "on": on })),
                )?
                .ok_or_else(|| Failure::Other("the server answered with no body".to_owned()))?;
            let v = &answer.value;
            if ctx.json {
                ctx.print(&answer);
            } else if v["created"] == Value::Bool(true) {
                println!(
                    "reverted run {} on {} as {} (its landing {} undone)",
                    v["run"].as_str().unwrap_or(""),
                    v["branch"].as_str().unwrap_or(""),
                    ctx.style.hash(v["head"].as_str().unwrap_or("")),
                    short(v["reverted"].as_str().unwrap_or(""))
                );
            } else {
                println!(
                    "nothing to revert: every table run {} wrote is already as before it on {}",
                    v["run"].as_str().unwrap_or(""),
                    v["branch"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        Some(RunVerb::Promote { id }) => {
            let answer = ctx
                .write(
                    Method::Post,
                    &format!("/api/v1/runs/{}/promote", encode(&id)),
                    &[],
                    None,
                )?
                .ok_or_else(|| Failure::Other("the server answered with no body".to_owned()))?;
            if ctx.json {
                ctx.print(&answer);
            } else {
                println!(
                    "promoted run {}: its commits on {} may be used",
                    answer.value["id"].as_str().unwrap_or(""),
                    answer.value["branch"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
    }
}

/// Ctrl-C while `floe run` follows a run asks the server to cancel it, says so, and exits
/// 130 once the run has ended. The handler holds `INTERRUPT` from the signal to its exit,
/// so a follow that ends meanwhile (the run ended, cancelled) waits for it (`interrupted`)
/// and the terminal reads the cancel's answer whichever side saw the end first.
fn cancel_on_interrupt(client: &crate::client::Client, id: &str) {
    let (client, id) = (client.clone(), id.to_owned());
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    // Listened for from here on, before the thread runs: a Ctrl-C at once is not lost.
    let interrupt = {
        let _here = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    };
    let Ok(mut interrupt) = interrupt else {
        return;
    };
    std::thread::spawn(move || {
        if runtime.block_on(interrupt.recv()).is_none() {
            return;
        }
        let _held = INTERRUPT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        // (Written, not printed: a closed stderr must not end the handler.)
        let say = |line: String| {
            let _ = writeln!(std::io::stderr(), "{line}");
        };
        say(format!(
            "\ncancelling run {id} (Ctrl-C again to stop waiting) ..."
        ));
        // The cancel answers once the run ended; a second Ctrl-C stops waiting for it.
        let (sent, answered) = tokio::sync::oneshot::channel();
        let path = format!("/api/v1/runs/{}/cancel", encode(&id));
        std::thread::spawn(move || {
            let _ = sent.send(client.write(Method::Post, &path, &[], None));
        });
        let answer = runtime.block_on(async {
            tokio::select! {
                answer = answered => answer.ok(),
                _ = interrupt.recv() => None,
            }
        });
        // The run's own exit code once it ended: one that ended before the cancel
        // reached it ends as it did.
        let code = match answer {
            Some(Ok(Some(answer))) => {
                let state = answer.value["state"].as_str();
                say(format!("run {id} {}", state.unwrap_or("ended")));
                match state {
                    Some("queued" | "running") => EXIT_RUN_CANCELLED,
                    _ => exit_code(&answer.value),
                }
            }
            Some(Ok(None)) => {
                say(format!("run {id}: the server answered with no body"));
                EXIT_RUN_CANCELLED
            }
            Some(Err(e)) => {
                say(format!("could not cancel run {id}: {}", e.message()));
                EXIT_RUN_CANCELLED
            }
            None => {
                say(format!(
                    "not waiting for run {id}: the cancel may not have reached the server (floe run show {id} tells how it is; floe run cancel {id} asks again)"
                ));
                EXIT_RUN_CANCELLED
            }
        };
        std::process::exit(i32::from(code));
    });
}

/// Held by the Ctrl-C handler from the signal until it exits the process.
static INTERRUPT: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// Set (under `INTERRUPT`) once Ctrl-C was taken.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// After Ctrl-C, waits for its handler to report the cancel and exit (it holds
/// `INTERRUPT` until then); returns at once otherwise.
fn interrupted() {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        drop(INTERRUPT.lock());
    }
}

/// Asks the server to cancel run `id`; its record once it ended.
fn cancel(ctx: &Ctx, id: &str) -> Result<crate::client::Answer, Failure> {
    ctx.write(
        Method::Post,
        &format!("/api/v1/runs/{}/cancel", encode(id)),
        &[],
        None,
    )?
    .ok_or_else(|| Failure::Other("the server answered with no body".to_owned()))
}

/// The files of a project folder a run needs, by path relative to it: the project file,
/// `.py`, `.sql` and `requirements.txt` files, outside hidden folders and `__pycache__`.
/// Symbolic links are not followed: they are left out, saying so.
pub fn project_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, Failure> {
    if !PROJECT_FILES.iter().any(|f| dir.join(f).is_file()) {
        return Err(Failure::Usage(format!(
            "{} has no bauplan_project.yml (or .yaml): run floe run in a project folder, or name one",
            dir.display()
        )));
    }
    let mut files = BTreeMap::new();
    let mut folders = vec![PathBuf::new()];
    while let Some(rel) = folders.pop() {
        let here = dir.join(&rel);
        let entries = std::fs::read_dir(&here)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", here.display())))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", here.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry
                .file_type()
                .map_err(|e| Failure::Usage(format!("cannot read {name}: {e}")))?;
            let path = rel.join(&name);
            if kind.is_dir() {
                if !name.starts_with('.') && name != "__pycache__" {
                    folders.push(path);
                }
                continue;
            }
            if kind.is_symlink() {
                eprintln!(
                    "warning: {} is a symbolic link and is not sent (a run takes files only)",
                    here.join(&name).display()
                );
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let wanted = (rel.as_os_str().is_empty() && PROJECT_FILES.contains(&name.as_str()))
                || name.ends_with(".py")
                || name.ends_with(".sql")
                || name == "requirements.txt";
            if wanted {
                let key = path
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                files.insert(key, dir.join(&path));
            }
        }
    }
    Ok(files)
}

/// The project as an uncompressed tar.
fn pack(files: &BTreeMap<String, PathBuf>) -> Result<Vec<u8>, Failure> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, path) in files {
        let data = std::fs::read(path)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mtime(0);
        builder
            .append_data(&mut header, name, data.as_slice())
            .map_err(|e| Failure::Usage(format!("cannot pack {name}: {e}")))?;
    }
    builder
        .into_inner()
        .map_err(|e| Failure::Other(format!("cannot pack the project: {e}")))
}

fn start(ctx: &Ctx, args: RunStart) -> Result<(), Failure> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let archive = pack(&project_files(&dir)?)?;
    submit(ctx, archive, &args.opts, None)
}

/// `floe run rerun ID`: the run's code snapshot again, with its recorded ref, namespace and
/// parameters (secrets, masked in the record, are not sent: they come from `--param` or the
/// server's environment again) unless the options give them.
fn rerun(ctx: &Ctx, id: &str, opts: &RunOpts) -> Result<(), Failure> {
    let record = ctx.get(&format!("/api/v1/runs/{}", encode(id)), &[])?.value;
    let Some(pipeline) = record.get("pipeline").filter(|p| p.is_object()) else {
        return Err(Failure::Usage(format!(
            "run {id} is not a pipeline run (an import has no code to run again)"
        )));
    };
    let mut code = Vec::new();
    ctx.client
        .get_stream(&format!("/api/v1/runs/{}/code", encode(id)), &[])?
        .read_to_end(&mut code)
        .map_err(|e| Failure::Other(format!("reading run {id}'s code: {e}")))?;
    submit(ctx, code, opts, Some((&record, pipeline)))
}

/// Posts a run of `archive` with `opts` (over what a `recorded` run had) and follows it.
fn submit(
    ctx: &Ctx,
    archive: Vec<u8>,
    opts: &RunOpts,
    recorded: Option<(&Value, &Value)>,
) -> Result<(), Failure> {
    let args = RunStart {
        dir: None,
        opts: opts.clone(),
    };
    let mut params = serde_json::Map::new();
    if let Some((_, pipeline)) = recorded {
        for (k, v) in pipeline["parameters"].as_object().into_iter().flatten() {
            let text = match v {
                Value::String(s) if s == PARAM_MASK => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            params.insert(k.clone(), json!(text));
        }
    }
    for p in &args.opts.params {
        let Some((k, v)) = p.split_once('=') else {
            return Err(Failure::Usage(format!(
                "--param takes key=value, got {p:?}"
            )));
        };
        params.insert(k.trim().to_owned(), json!(v));
    }
    let options = json!({
        "ref": args.opts.at.clone().unwrap_or_else(|| {
            recorded
                .and_then(|(r, _)| r["target"].as_str().map(str::to_owned))
                .unwrap_or_else(|| ctx.current.clone())
        }),
        "namespace": args.opts.namespace.clone().or_else(|| {
            recorded.and_then(|(_, p)| p["namespace"].as_str().map(str::to_owned))
        }),
        "params": params,
        "dryRun": args.opts.dry_run,
        "plan": args.opts.plan,
        "strict": args.opts.strict,
        "noTransaction": args.opts.no_transaction,
        "noCache": args.opts.no_cache,
        "preview": match args.opts.preview {
            PreviewArg::Head => "head",
            PreviewArg::Tail => "tail",
            PreviewArg::Off => "off",
        },
        // Seconds, rounded up: a deadline is never shortened.
        "timeoutSeconds": args.opts.timeout.map(|ms| (ms.max(1) as u64).div_ceil(1000)),
    });
    let boundary = format!("floe-{}", uuid::Uuid::now_v7().simple());
    let body = || -> Result<Box<dyn Read + Send>, String> {
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"options\"\r\nContent-Type: application/json\r\n\r\n{options}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"project\"; filename=\"project.tar\"\r\nContent-Type: application/x-tar\r\n\r\n"
        );
        Ok(Box::new(
            std::io::Cursor::new(head)
                .chain(std::io::Cursor::new(archive.clone()))
                .chain(std::io::Cursor::new(format!("\r\n--{boundary}--\r\n"))),
        ))
    };
    let answer = match ctx.client.post_multipart("/api/v1/runs", &boundary, body) {
        Ok(a) => a.ok_or_else(|| Failure::Other("the server answered with no body".to_owned()))?,
        Err(CallError::Api { body, text, .. }) if body["type"] == "InvalidProject" => {
            // A run that does not plan failed (exit 4), like one that fails later.
            if ctx.json {
                println!("{text}");
            } else {
                eprintln!("error: {}", body["message"].as_str().unwrap_or(&text));
            }
            return Err(Failure::Exit(EXIT_RUN_FAILED));
        }
        Err(e) => return Err(e.into()),
    };
    if args.opts.plan {
        if ctx.json {
            ctx.print(&answer);
        } else {
            print_plan(&answer.value);
        }
        return Ok(());
    }
    let id = answer.value["id"].as_str().unwrap_or_default().to_owned();
    if args.opts.detach {
        if ctx.json {
            ctx.print(&answer);
        } else {
            println!(
                "run {id} queued on {}",
                answer.value["target"].as_str().unwrap_or("")
            );
            println!("follow it with: floe run logs {id} -f");
        }
        return Ok(());
    }
    cancel_on_interrupt(&ctx.client, &id);
    let end = follow(ctx, &id, &answer.value).and_then(|()| ended(ctx, &id));
    interrupted();
    end
}

/// A run that ended: shown (its record with `--json`), and the exit code of its end.
fn ended(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    let last = ctx.get(&format!("/api/v1/runs/{}", encode(id)), &[])?;
    if ctx.json {
        ctx.print(&last);
    } else {
        summary(ctx, &last.value);
    }
    match exit_code(&last.value) {
        0 => Ok(()),
        code => Err(Failure::Exit(code)),
    }
}

/// The exit code of a run that ended, from its record.
fn exit_code(record: &Value) -> u8 {
    match record["state"].as_str() {
        Some("succeeded") => 0,
        Some("cancelled") => EXIT_RUN_CANCELLED,
        _ if record["pipeline"]["failure"] == "conflict" => EXIT_CONFLICT,
        _ => EXIT_RUN_FAILED,
    }
}

fn print_plan(plan: &Value) {
    println!(
        "plan for {} (namespace {})",
        plan["target"].as_str().unwrap_or(""),
        plan["namespace"].as_str().unwrap_or("")
    );
    let mut rows = vec![vec![
        "  node".to_owned(),
        "kind".to_owned(),
        "reads".to_owned(),
        "writes".to_owned(),
        "at".to_owned(),
    ]];
    for n in plan["nodes"].as_array().into_iter().flatten() {
        let inputs: Vec<&str> = n["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let writes = match n["outputTable"].as_str() {
            Some(t) => format!("{t} ({})", n["materialization"].as_str().unwrap_or("")),
            None => "-".to_owned(),
        };
        rows.push(vec![
            format!("  {}", n["name"].as_str().unwrap_or("")),
            n["kind"].as_str().unwrap_or("").to_owned(),
            if inputs.is_empty() {
                "-".to_owned()
            } else {
                inputs.join(", ")
            },
            writes,
            format!("{}:{}", n["file"].as_str().unwrap_or(""), n["line"]),
        ]);
    }
    table(&rows);
}

/// Where the log goes: stderr with `--json` (stdout holds the one document).
fn out(ctx: &Ctx) -> Box<dyn Write> {
    if ctx.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    }
}

/// Streams the run's log until it ends: a live status line per node on a terminal, plain
/// lines otherwise.
fn follow(ctx: &Ctx, id: &str, record: &Value) -> Result<(), Failure> {
    let stream = ctx.client.get_stream(
        &format!("/api/v1/runs/{}/logs", encode(id)),
        &[("follow", "true".to_owned())],
    )?;
    let live = !ctx.json && std::io::stdout().is_terminal();
    let nodes: Vec<String> = record["pipeline"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(str::to_owned))
        .collect();
    let mut board = Board::new(nodes);
    let mut out = out(ctx);
    for line in std::io::BufReader::new(stream).lines() {
        let line = line.map_err(|e| Failure::Other(format!("reading the log: {e}")))?;
        if live {
            board.clear(&mut out);
        }
        board.note(&line);
        let _ = writeln!(out, "{}", board.shown(&line));
        if live {
            board.draw(&mut out, ctx);
        }
    }
    if live {
        board.clear(&mut out);
    }
    Ok(())
}

/// The status of each node, from the log's lines.
struct Board {
    nodes: Vec<(String, String, Option<Instant>)>,
    drawn: usize,
}

impl Board {
    fn new(nodes: Vec<String>) -> Board {
        Board {
            nodes: nodes
                .into_iter()
                .map(|n| (n, "waiting".to_owned(), None))
                .collect(),
            drawn: 0,
        }
    }

    /// A log line `<time> <node> <stream> <text>` moves its node.
    fn note(&mut self, line: &str) {
        let mut parts = line.splitn(4, ' ');
        let (_, Some(node), Some(_), Some(text)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let Some(entry) = self.nodes.iter_mut().find(|(n, ..)| n == node) else {
            return;
        };
        if text == "running" {
            entry.1 = "running".to_owned();
            entry.2 = Some(Instant::now());
        } else if text.starts_with("cached") {
            entry.1 = "cached".to_owned();
        } else if let Some(rows) = text.strip_suffix(" rows") {
            entry.1 = format!("done, {rows} rows{}", cached(&entry.1));
        } else if text == "expectation passed" {
            entry.1 = format!("done, passed{}", cached(&entry.1));
        } else if text.starts_with("expectation failed") {
            entry.1 = "expectation failed (a warning)".to_owned();
        } else if text.starts_with("failed") {
            entry.1 = "failed".to_owned();
        } else if text.starts_with("skipped") {
            entry.1 = "skipped".to_owned();
        }
    }

    /// A log line as shown: without its time stamp.
    fn shown<'a>(&self, line: &'a str) -> &'a str {
        line.split_once(' ').map_or(line, |(_, rest)| rest)
    }

    fn draw(&mut self, out: &mut dyn Write, ctx: &Ctx) {
        for (name, state, since) in &self.nodes {
            let state = match (state.as_str(), since) {
                ("running", Some(t)) => format!("running {:.1}s", t.elapsed().as_secs_f64()),
                ("failed", _) => ctx.style.bad("failed"),
                (s, _) if s.starts_with("expectation failed") => ctx.style.bad(s),
                (s, _) if s.starts_with("done") => ctx.style.good(s),
                (s, _) => s.to_owned(),
            };
            let _ = writeln!(out, "  {name}: {state}");
        }
        self.drawn = self.nodes.len();
        let _ = out.flush();
    }

    fn clear(&mut self, out: &mut dyn Write) {
        for _ in 0..self.drawn {
            let _ = write!(out, "\x1b[1A\x1b[2K");
        }
        self.drawn = 0;
    }
}

/// What the board adds to a node's end when its output came from the results cache.
fn cached(state: &str) -> &'static str {
    if state == "cached" { " (cached)" } else { "" }
}

/// The end of a run, for people.
fn summary(ctx: &Ctx, r: &Value) {
    println!();
    show(ctx, r);
    let mut rows = vec![vec![
        "  node".to_owned(),
        "state".to_owned(),
        "rows".to_owned(),
        "writes".to_owned(),
    ]];
    for n in r["pipeline"]["nodes"].as_array().into_iter().flatten() {
        let state = n["state"].as_str().unwrap_or("");
        rows.push(vec![
            format!("  {}", n["name"].as_str().unwrap_or("")),
            match state {
                "succeeded" if n["passed"] == Value::Bool(false) => {
                    ctx.style.bad("expectation failed (a warning)")
                }
                "succeeded" if n["cached"] == Value::Bool(true) => {
                    ctx.style.good("succeeded (cached)")
                }
                "succeeded" => ctx.style.good(state),
                "failed" => ctx.style.bad(state),
                other => other.to_owned(),
            },
            n["rows"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |r| r.to_string()),
            n["outputTable"].as_str().unwrap_or("-").to_owned(),
        ]);
    }
    if rows.len() > 1 {
        println!();
        table(&rows);
    }
}

fn list(
    ctx: &Ctx,
    state_filter: Option<String>,
    kind: Option<String>,
    target: Option<String>,
    project: Option<String>,
    table_filter: Option<String>,
) -> Result<(), Failure> {
    let mut rows = vec![vec![
        "id".to_owned(),
        "kind".to_owned(),
        "state".to_owned(),
        "target".to_owned(),
        "source".to_owned(),
    ]];
    let mut query = vec![("pageSize", PAGE_MAX.to_string())];
    for (name, value) in [
        ("state", state_filter),
        ("kind", kind),
        ("target", target),
        ("project", project),
        ("table", table_filter),
    ] {
        if let Some(v) = value {
            query.push((name, v));
        }
    }
    ctx.each_page("/api/v1/runs", &query, "runs", None, |r| {
        rows.push(vec![
            r["id"].as_str().unwrap_or("").to_owned(),
            r["kind"].as_str().unwrap_or("").to_owned(),
            state(ctx, r),
            r["target"].as_str().unwrap_or("").to_owned(),
            r["source"].as_str().unwrap_or("").to_owned(),
        ]);
    })?;
    if !ctx.json {
        table(&rows);
    }
    Ok(())
}

/// The state, coloured, with `sealed` or `promoted` beside a failed one.
fn state(ctx: &Ctx, r: &Value) -> String {
    let state = r["state"].as_str().unwrap_or("");
    let text = match state {
        "succeeded" => ctx.style.good(state),
        "failed" | "cancelled" => ctx.style.bad(state),
        other => other.to_owned(),
    };
    if r["promoted"].as_bool() == Some(true) {
        format!("{text} (promoted)")
    } else if r["sealed"].as_bool() == Some(true) {
        format!("{text} (sealed)")
    } else {
        text
    }
}

/// What became of a run's branch: deleted when it landed; a failed or cancelled run's kept
/// (sealed unless promoted) until retention prunes it.
fn branch_fate(ctx: &Ctx, r: &Value) -> String {
    let (state, branch) = (
        r["state"].as_str().unwrap_or(""),
        r["branch"].as_str().unwrap_or(""),
    );
    let forked = r["fork"].as_str().is_some_and(|f| !f.is_empty());
    match state {
        "succeeded" => " (deleted: the run landed)".to_owned(),
        "failed" | "cancelled" if forked => {
            match ctx
                .client
                .get(&format!("/api/v1/refs/{}", encode(branch)), &[])
            {
                Ok(_) if r["promoted"] == Value::Bool(true) => " (kept, promoted)".to_owned(),
                Ok(_) => " (kept, sealed, until retention prunes it)".to_owned(),
                Err(CallError::Api { status: 404, .. }) => " (pruned by retention)".to_owned(),
                Err(_) => String::new(),
            }
        }
        _ => String::new(),
    }
}

fn show(ctx: &Ctx, r: &Value) {
    let field = |name: &str| r[name].as_str().unwrap_or("").to_owned();
    let mut rows = vec![
        vec!["run".to_owned(), field("id")],
        vec!["kind".to_owned(), field("kind")],
        vec!["state".to_owned(), state(ctx, r)],
        vec!["by".to_owned(), field("principal")],
        vec!["target".to_owned(), field("target")],
    ];
    if !field("fork").is_empty() {
        rows.push(vec!["fork".to_owned(), ctx.style.hash(&field("fork"))]);
    }
    rows.push(vec![
        "branch".to_owned(),
        field("branch") + &branch_fate(ctx, r),
    ]);
    rows.push(vec!["source".to_owned(), field("source")]);
    let tables: Vec<&str> = r["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !tables.is_empty() {
        rows.push(vec!["writes".to_owned(), tables.join(", ")]);
    }
    if let Some(landed) = r["landed"].as_str() {
        rows.push(vec!["landed".to_owned(), ctx.style.hash(landed)]);
    }
    if let Some(error) = r["error"].as_str() {
        rows.push(vec!["error".to_owned(), error.to_owned()]);
    }
    if let Some(by) = r["promotedBy"].as_str() {
        rows.push(vec!["promoted by".to_owned(), by.to_owned()]);
    }
    table(&rows);
}
