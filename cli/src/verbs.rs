//! Every verb but `serve`: each is one or a few calls to floe's own API, printed for a human
//! (aligned columns, short hashes) or, with `--json`, as the API's bodies exactly (one per
//! line when a verb makes several calls: NDJSON). The ref verbs are in `verbs/refs.rs`.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::client::{Answer, CallError, Client, EXIT_ERROR, EXIT_USAGE, Method, encode};
use crate::config::Config;
use crate::output::{Style, short, subject, table, table_lines};
use crate::{BranchVerb, LogArgs, MergeArgs, NamespaceVerb, OnConflict, Strategy, TagVerb, Verb};

mod refs;

use refs::{branch, checkout, reflog, reset, tag};

/// Items asked for per page of a listing: the API's maximum page (refs, runs, log, reflog).
pub(crate) const PAGE_MAX: usize = 1_000;
/// Prefix of run branches, hidden from `branch list` without `--all`.
const RUN_BRANCH_PREFIX: &str = "floe-run/";

/// Why a verb failed, and how to say so.
#[derive(Debug)]
pub enum Failure {
    Call(CallError),
    /// The request made no sense before reaching the server (exit 2).
    Usage(String),
    Other(String),
    /// Said already; exit with this code (a failed run: 4; a landing conflict: 3).
    Exit(u8),
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Failure {
        Failure::Call(e)
    }
}

impl Failure {
    pub fn report(self, json: bool) -> ExitCode {
        match self {
            Failure::Call(e) => {
                if let (true, CallError::Api { text, .. }) = (json, &e) {
                    println!("{text}");
                } else {
                    eprintln!("error: {}", e.message());
                    if let CallError::Api { body, .. } = &e {
                        hint(body);
                    }
                }
                ExitCode::from(e.exit_code())
            }
            Failure::Usage(m) => {
                eprintln!("error: {m}");
                ExitCode::from(EXIT_USAGE)
            }
            Failure::Other(m) => {
                eprintln!("error: {m}");
                ExitCode::from(EXIT_ERROR)
            }
            Failure::Exit(code) => ExitCode::from(code),
        }
    }
}

/// Conflict details and what to do about them, under the error line.
fn hint(body: &Value) {
    let style = Style::detect();
    let conflicts = body["conflicts"].as_array().cloned().unwrap_or_default();
    if !conflicts.is_empty() {
        let rows: Vec<Vec<String>> = conflicts
            .iter()
            .map(|c| {
                let mut why = c["kind"].as_str().unwrap_or("").to_owned();
                if let (Some(s), Some(t)) = (c["sourceChange"].as_str(), c["targetChange"].as_str())
                {
                    why.push_str(&format!(" (source {s}, target {t})"));
                }
                if let Some(o) = c["otherKey"].as_str() {
                    why.push_str(&format!(" (see {o})"));
                }
                let reason = &c["reason"];
                if let Some(rule) = reason["rule"].as_str() {
                    why.push_str(&format!(
                        ": {rule}: {}",
                        reason["message"].as_str().unwrap_or("")
                    ));
                    let involved: Vec<&str> = reason["involved"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    if !involved.is_empty() {
                        why.push_str(&format!(" [{}]", involved.join("; ")));
                    }
                    if let Some(h) = reason["hint"].as_str() {
                        why.push_str(&format!("; to resolve: {h}"));
                    }
                }
                vec![
                    "  ".to_owned(),
                    style.bad(c["key"].as_str().unwrap_or("")),
                    why,
                ]
            })
            .collect();
        eprintln!("conflicting keys:");
        for line in table_lines(&rows) {
            eprintln!("{line}");
        }
    }
    match body["type"].as_str() {
        Some("Conflict") if conflicts.iter().any(|c| c["kind"] == "both-changed") => eprintln!(
            "to resolve: rerun with --on-conflict source (take the source's side) or \
             --on-conflict target (keep the target's), or change the keys on one branch so \
             both sides agree, then merge again"
        ),
        Some("Conflict") => eprintln!(
            "to resolve: make the branch hold what the change expects (or pick another \
             commit), then try again"
        ),
        Some("ReferenceConflict") => eprintln!(
            "the branch moved (now at {}); look at `floe log` and try again",
            short(body["currentHead"].as_str().unwrap_or("?"))
        ),
        _ => {}
    }
}

pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) json: bool,
    pub(crate) style: Style,
    config: Config,
    /// The checked-out branch.
    pub(crate) current: String,
}

impl Ctx {
    pub(crate) fn print(&self, answer: &Answer) {
        println!("{}", answer.text);
    }

    pub(crate) fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Answer, Failure> {
        Ok(self.client.get(path, query)?)
    }

    pub(crate) fn write(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Option<Answer>, Failure> {
        Ok(self.client.write(method, path, query, body.as_ref())?)
    }

    /// Every item of a paged listing (the `field` array of each page), following
    /// `nextPageToken`; with `--json` each page is printed as it comes. With `count`, the
    /// first `count` items at most: each page asks for no more than remain.
    pub(crate) fn each_page(
        &self,
        path: &str,
        query: &[(&str, String)],
        field: &str,
        count: Option<usize>,
        mut item: impl FnMut(&Value),
    ) -> Result<(), Failure> {
        let mut token: Option<String> = None;
        let mut seen = 0;
        loop {
            let mut q = query.to_vec();
            if let Some(count) = count {
                if seen >= count {
                    return Ok(());
                }
                q.push(("pageSize", (count - seen).min(PAGE_MAX).to_string()));
            }
            if let Some(t) = &token {
                q.push(("pageToken", t.clone()));
            }
            let page = self.get(path, &q)?;
            if self.json {
                self.print(&page);
            }
            for v in page.value[field].as_array().into_iter().flatten() {
                item(v);
                seen += 1;
            }
            match page.value["nextPageToken"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(()),
            }
        }
    }

    /// The ref `name` as the server has it.
    fn get_ref(&self, name: &str) -> Result<Answer, Failure> {
        self.get(&format!("/api/v1/refs/{}", encode(name)), &[])
    }

    /// Every ref of a kind, following pages; with `--json` each page is printed.
    fn list_refs(&self, kind: &str) -> Result<Vec<Value>, Failure> {
        let query = [
            ("kind", kind.to_owned()),
            ("pageSize", PAGE_MAX.to_string()),
        ];
        let mut refs = Vec::new();
        self.each_page("/api/v1/refs", &query, "refs", None, |r| {
            refs.push(r.clone())
        })?;
        Ok(refs)
    }
}

pub fn run(server: &str, token: Option<&str>, json: bool, verb: Verb) -> Result<(), Failure> {
    let server = server.trim_end_matches('/').to_owned();
    let config = Config::load().map_err(Failure::Other)?;
    let current = config.branch(&server);
    let mut ctx = Ctx {
        // --token or FLOE_TOKEN, else the config file's for this server.
        client: Client::new(
            &server,
            token
                .map(str::to_owned)
                .or_else(|| config.token(&server))
                .as_deref(),
        ),
        json,
        style: Style::detect(),
        config,
        current,
    };
    match verb {
        Verb::Branch(v) => branch(&ctx, v),
        Verb::Checkout { name, create, from } => checkout(&mut ctx, &name, create, from),
        Verb::Tag(v) => tag(&ctx, v),
        Verb::Log(args) => log(&ctx, args),
        Verb::Show { commit } => show(&ctx, &commit),
        Verb::Diff { from, to } => diff(&ctx, &from, to),
        Verb::Merge(args) => merge(&ctx, args),
        Verb::CherryPick { commits, onto } => replay(&ctx, &commits, onto, false),
        Verb::Revert { commit, on } => replay(&ctx, &[commit], on, true),
        Verb::Reset { branch, target } => reset(&ctx, &branch, &target),
        Verb::Reflog { name, count } => reflog(&ctx, name, count),
        Verb::Run(v) => crate::runs::run(&ctx, v),
        Verb::Token(v) => crate::access::token(&ctx, v),
        Verb::Policy(v) => crate::access::policy(&ctx, v),
        Verb::Namespace(args) => {
            let at = args.at.unwrap_or_else(|| ctx.current.clone());
            namespace(&ctx, &at, args.verb)
        }
        Verb::Table(args) => {
            let at = args.at.unwrap_or_else(|| ctx.current.clone());
            match args.verb {
                crate::TableVerb::List { namespace } => table_list(&ctx, &at, namespace),
                crate::TableVerb::Show { table } => crate::data::table_show(&ctx, &at, &table),
                crate::TableVerb::History { table, count } => log(
                    &ctx,
                    LogArgs {
                        spec: Some(at),
                        count,
                        author: None,
                        since: None,
                        until: None,
                        grep: None,
                        path: Some(table),
                        run: None,
                    },
                ),
            }
        }
        Verb::Query(args) => crate::data::query(&ctx, args),
        Verb::Import(args) => crate::data::import(&ctx, args),
        Verb::Serve(_)
        | Verb::Store(_)
        | Verb::Openapi
        | Verb::Completions { .. }
        | Verb::Version
        | Verb::Help => Err(Failure::Usage("not a client verb".to_owned())),
    }
}

/// The run a commit belongs to, and how: `run ID` (its landing or a part of it) or
/// `reverts run ID`.
fn run_of(commit: &Value) -> Option<String> {
    let props = &commit["properties"];
    if let Some(id) = props["floe.run.id"]
        .as_str()
        .or(props["floe.run.part"].as_str())
    {
        return Some(format!("run {id}"));
    }
    props["floe.run.reverted"]
        .as_str()
        .map(|id| format!("reverts run {id}"))
}

/// One row per commit; a column naming each commit's run when any has one.
fn commit_rows(ctx: &Ctx, commits: &[Value]) -> Vec<Vec<String>> {
    let runs = commits.iter().any(|c| run_of(c).is_some());
    commits
        .iter()
        .map(|c| {
            let mut row = vec![
                ctx.style.hash(c["hash"].as_str().unwrap_or("")),
                c["authoredAt"].as_str().unwrap_or("").to_owned(),
                c["author"].as_str().unwrap_or("").to_owned(),
            ];
            if runs {
                row.push(run_of(c).unwrap_or_default());
            }
            row.push(subject(c["message"].as_str().unwrap_or("")).to_owned());
            row
        })
        .collect()
}

fn log(ctx: &Ctx, args: LogArgs) -> Result<(), Failure> {
    let spec = match (args.spec, &args.run) {
        (Some(spec), _) => spec,
        // A run's commits are on its target.
        (None, Some(run)) => ctx
            .get(&format!("/api/v1/runs/{}", encode(run)), &[])?
            .value["target"]
            .as_str()
            .map_or_else(|| ctx.current.clone(), str::to_owned),
        (None, None) => ctx.current.clone(),
    };
    let mut query: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("author", args.author),
        ("since", args.since),
        ("until", args.until),
        ("grep", args.grep),
        ("path", args.path),
        ("run", args.run),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let mut commits = Vec::new();
    let path = format!("/api/v1/trees/{}/log", encode(&spec));
    ctx.each_page(&path, &query, "commits", Some(args.count), |c| {
        commits.push(c.clone());
    })?;
    if !ctx.json {
        table(&commit_rows(ctx, &commits));
    }
    Ok(())
}

fn change_rows(ctx: &Ctx, changes: &[Value]) -> Vec<Vec<String>> {
    changes
        .iter()
        .map(|c| {
            let sign = match c["kind"].as_str() {
                Some("added") => ctx.style.good("+"),
                Some("removed") => ctx.style.bad("-"),
                _ => "~".to_owned(),
            };
            vec![
                format!("  {sign}"),
                c["key"].as_str().unwrap_or("").to_owned(),
                c["contentKind"].as_str().unwrap_or("").to_owned(),
                c["kind"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect()
}

fn show(ctx: &Ctx, commit: &str) -> Result<(), Failure> {
    let answer = ctx.get(&format!("/api/v1/commits/{}", encode(commit)), &[])?;
    if ctx.json {
        ctx.print(&answer);
        return Ok(());
    }
    let c = &answer.value["commit"];
    println!(
        "commit {}",
        ctx.style.hash_full(c["hash"].as_str().unwrap_or(""))
    );
    let parents: Vec<&str> = c["parents"]
        .as_array()
        .map(|p| p.iter().filter_map(Value::as_str).map(short).collect())
        .unwrap_or_default();
    if parents.len() > 1 {
        println!("Merge:  {}", parents.join(" "));
    } else if let Some(p) = parents.first() {
        println!("Parent: {p}");
    }
    println!("Author: {}", c["author"].as_str().unwrap_or(""));
    if c["committer"] != c["author"] {
        println!("Committer: {}", c["committer"].as_str().unwrap_or(""));
    }
    println!("Date:   {}", c["authoredAt"].as_str().unwrap_or(""));
    if let Some(run) = run_of(c) {
        let id = run.rsplit(' ').next().unwrap_or("");
        println!("Run:    {run} (floe run show {id})");
    }
    if let Some(props) = c["properties"].as_object() {
        for (k, v) in props {
            println!("{k}: {}", v.as_str().unwrap_or(""));
        }
    }
    println!();
    for line in c["message"].as_str().unwrap_or("").lines() {
        println!("    {line}");
    }
    let changes = answer.value["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !changes.is_empty() {
        println!();
        table(&change_rows(ctx, &changes));
    }
    if answer.value["nextPageToken"].is_string() {
        println!(
            "  ... more changes: `floe diff {}~1 {}`",
            short(c["hash"].as_str().unwrap_or("")),
            short(c["hash"].as_str().unwrap_or(""))
        );
    }
    Ok(())
}

fn diff(ctx: &Ctx, from: &str, to: Option<String>) -> Result<(), Failure> {
    let to = to.unwrap_or_else(|| ctx.current.clone());
    let mut changes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = Vec::new();
        if let Some(t) = &token {
            q.push(("pageToken", t.clone()));
        }
        let page = ctx.get(
            &format!("/api/v1/diff/{}/{}", encode(from), encode(&to)),
            &q,
        )?;
        if ctx.json {
            ctx.print(&page);
        } else {
            changes.extend(
                page.value["changes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        match page.value["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    if !ctx.json {
        if changes.is_empty() {
            println!("no changes from {from} to {to}");
        } else {
            table(&change_rows(ctx, &changes));
        }
    }
    Ok(())
}

fn merge(ctx: &Ctx, args: MergeArgs) -> Result<(), Failure> {
    let into = args.into.unwrap_or_else(|| ctx.current.clone());
    let strategy = match args.strategy {
        Strategy::Normal => "normal",
        Strategy::Squash => "squash",
        Strategy::FfOnly => "ff-only",
        Strategy::NoFf => "no-ff",
    };
    let on_conflict = match args.on_conflict {
        OnConflict::Fail => "fail",
        OnConflict::Source => "source",
        OnConflict::Target => "target",
    };
    let mut resolutions = serde_json::Map::new();
    for k in &args.take_source {
        resolutions.insert(k.clone(), json!("source"));
    }
    for k in &args.keep_target {
        resolutions.insert(k.clone(), json!("target"));
    }
    let mut body = json!({
        "source": args.source,
        "dryRun": args.dry_run,
        "strategy": strategy,
        "onConflict": on_conflict,
        "resolutions": resolutions,
        "tableMerge": !args.no_table_merge,
    });
    if let Some(m) = args.message {
        body["message"] = Value::String(m);
    }
    if let Some(i) = args.isolation {
        body["isolation"] = json!(match i {
            crate::IsolationArg::Serializable => "serializable",
            crate::IsolationArg::Snapshot => "snapshot",
        });
    }
    let answer = ctx
        .write(
            Method::Post,
            &format!("/api/v1/trees/{}/merge", encode(&into)),
            &[],
            Some(body),
        )
        .map_err(|e| explain_merge(e, &args.source, &into))?
        .ok_or_else(|| Failure::Other("the server answered a merge with no body".to_owned()))?;
    if ctx.json {
        ctx.print(&answer);
        return Ok(());
    }
    let v = &answer.value;
    let head = ctx.style.hash(v["head"].as_str().unwrap_or(""));
    let n = v["changeCount"].as_u64().unwrap_or(0);
    let would = if args.dry_run { "would be " } else { "" };
    match v["kind"].as_str() {
        Some("nothing-to-merge") => {
            println!("nothing to merge: {into} already has {}", args.source)
        }
        Some("fast-forward") => {
            println!("{into} {would}fast-forwarded to {head} ({n} key(s) changed)")
        }
        Some("squashed") => println!(
            "{} {would}squashed into {into}: {head} ({n} key(s) changed)",
            args.source
        ),
        _ => println!(
            "{} {would}merged into {into}: {head} ({n} key(s) changed)",
            args.source
        ),
    }
    let changes = v["changes"].as_array().cloned().unwrap_or_default();
    table(&change_rows(ctx, &changes));
    for t in v["tables"].as_array().cloned().unwrap_or_default() {
        println!(
            "table {} {would}merged file by file ({}): {} data and {} delete file(s) added, {} removed, in {} snapshot(s) from {} of the source's",
            t["key"].as_str().unwrap_or(""),
            t["isolation"].as_str().unwrap_or(""),
            t["dataFilesAdded"],
            t["deleteFilesAdded"],
            t["filesRemoved"],
            t["snapshotsReplayed"],
            t["sourceSnapshots"],
        );
        for w in t["warnings"].as_array().cloned().unwrap_or_default() {
            println!("  warning: {}", w.as_str().unwrap_or(""));
        }
    }
    Ok(())
}

/// Names the merge in the error line, keeping the API error (and its exit code).
fn explain_merge(e: Failure, source: &str, into: &str) -> Failure {
    match e {
        Failure::Call(CallError::Api {
            status: 409,
            mut body,
            text,
        }) if body["type"] == "Conflict" => {
            let n = body["conflicts"].as_array().map_or(0, Vec::len);
            body["message"] = Value::String(format!(
                "merging {source} into {into} stopped on {n} conflicting key(s); nothing was changed"
            ));
            Failure::Call(CallError::Api {
                status: 409,
                body,
                text,
            })
        }
        other => other,
    }
}

fn replay(
    ctx: &Ctx,
    commits: &[String],
    branch: Option<String>,
    invert: bool,
) -> Result<(), Failure> {
    let branch = branch.unwrap_or_else(|| ctx.current.clone());
    let (path, verb) = if invert {
        ("revert", "reverted")
    } else {
        ("cherry-pick", "applied")
    };
    for commit in commits {
        let answer = ctx
            .write(
                Method::Post,
                &format!("/api/v1/trees/{}/{path}", encode(&branch)),
                &[],
                Some(json!({ "commit": commit })),
            )?
            .ok_or_else(|| Failure::Other(format!("the server answered a {path} with no body")))?;
        if ctx.json {
            ctx.print(&answer);
        } else if answer.value["created"] == true {
            println!(
                "{verb} {} on {branch}: {}",
                short(commit),
                ctx.style.hash(answer.value["head"].as_str().unwrap_or(""))
            );
        } else {
            println!("{} changes nothing on {branch}; skipped", short(commit));
        }
    }
    Ok(())
}

fn namespace(ctx: &Ctx, at: &str, verb: NamespaceVerb) -> Result<(), Failure> {
    let base = format!("/api/v1/trees/{}/namespaces", encode(at));
    match verb {
        NamespaceVerb::List => {
            let mut rows = Vec::new();
            ctx.each_page(&base, &[], "namespaces", None, |n| {
                rows.push(vec![
                    n["namespace"].as_str().unwrap_or("").to_owned(),
                    properties_text(&n["properties"]),
                ]);
            })?;
            if !ctx.json {
                table(&rows);
            }
            Ok(())
        }
        NamespaceVerb::Create { namespace, props } => {
            let mut properties = serde_json::Map::new();
            for p in props {
                let Some((k, v)) = p.split_once('=') else {
                    return Err(Failure::Usage(format!("--prop takes key=value, got {p:?}")));
                };
                properties.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            let elements: Vec<&str> = namespace.split('.').collect();
            let answer = ctx
                .write(
                    Method::Post,
                    &base,
                    &[],
                    Some(json!({ "namespace": elements, "properties": properties })),
                )?
                .ok_or_else(|| {
                    Failure::Other("the server answered a create with no body".to_owned())
                })?;
            if ctx.json {
                ctx.print(&answer);
            } else {
                println!(
                    "created namespace {namespace} on {at}: {}",
                    ctx.style.hash(answer.value["head"].as_str().unwrap_or(""))
                );
            }
            Ok(())
        }
        NamespaceVerb::Drop { namespace } => {
            let answer = ctx.write(
                Method::Delete,
                &format!("{base}/{}", encode(&namespace)),
                &[],
                None,
            )?;
            match answer {
                Some(a) if ctx.json => ctx.print(&a),
                Some(a) => println!(
                    "dropped namespace {namespace} on {at}: {}",
                    ctx.style.hash(a.value["head"].as_str().unwrap_or(""))
                ),
                None => {}
            }
            Ok(())
        }
        NamespaceVerb::Show { namespace } => {
            let answer = ctx.get(&format!("{base}/{}", encode(&namespace)), &[])?;
            if ctx.json {
                ctx.print(&answer);
                return Ok(());
            }
            let n = &answer.value["namespace"];
            let mut rows = vec![
                vec![
                    "namespace".to_owned(),
                    n["namespace"].as_str().unwrap_or("").to_owned(),
                ],
                vec![
                    "content id".to_owned(),
                    n["contentId"].as_str().unwrap_or("").to_owned(),
                ],
                vec![
                    "at".to_owned(),
                    ctx.style.hash(answer.value["head"].as_str().unwrap_or("")),
                ],
            ];
            if let Some(props) = n["properties"].as_object() {
                for (k, v) in props {
                    rows.push(vec![format!("  {k}"), v.as_str().unwrap_or("").to_owned()]);
                }
            }
            table(&rows);
            Ok(())
        }
    }
}

/// Tables at a ref (under a namespace), from the entries listing.
fn table_list(ctx: &Ctx, at: &str, namespace: Option<String>) -> Result<(), Failure> {
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = Vec::new();
        if let Some(ns) = &namespace {
            q.push(("prefix", ns.clone()));
        }
        if let Some(t) = &token {
            q.push(("pageToken", t.clone()));
        }
        let page = ctx.get(&format!("/api/v1/trees/{}/entries", encode(at)), &q)?;
        if ctx.json {
            ctx.print(&page);
        }
        for e in page.value["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if e["kind"] == "iceberg-table" {
                rows.push(vec![
                    e["key"].as_str().unwrap_or("").to_owned(),
                    ctx.style.hash(e["contentHash"].as_str().unwrap_or("")),
                ]);
            }
        }
        match page.value["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    if !ctx.json {
        table(&rows);
    }
    Ok(())
}

fn properties_text(props: &Value) -> String {
    props
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
