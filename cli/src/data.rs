//! Verbs about data: `floe query` (SQL at a ref spec) and `floe table show`.

use std::io::{IsTerminal, Read, Write};

use serde_json::{Value, json};

use crate::client::encode;
use crate::output::table;
use crate::verbs::{Ctx, Failure};
use crate::{ImportArgs, ImportMode, QueryArgs, QueryFormat};

/// Rows a table on a terminal shows unless `--max-rows` says otherwise.
const TERMINAL_ROWS: u64 = 1_000;

fn media_type(format: QueryFormat) -> &'static str {
    match format {
        QueryFormat::Table | QueryFormat::Arrow => "application/vnd.apache.arrow.stream",
        QueryFormat::Csv => "text/csv",
        QueryFormat::Json => "application/json",
        QueryFormat::Ndjson => "application/x-ndjson",
        QueryFormat::Parquet => "application/vnd.apache.parquet",
    }
}

/// `floe query`: a readable table on a terminal, the exact bytes of the format otherwise.
pub fn query(ctx: &Ctx, args: QueryArgs) -> Result<(), Failure> {
    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let format = args.format.unwrap_or(if to_terminal && !ctx.json {
        QueryFormat::Table
    } else if ctx.json {
        QueryFormat::Json
    } else {
        QueryFormat::Csv
    });
    // A table shows TERMINAL_ROWS by default; one more row tells whether there were more.
    let shown = match (format, args.max_rows) {
        (QueryFormat::Table, None) => Some(TERMINAL_ROWS),
        (_, n) => n,
    };
    let asked = match (format, args.max_rows) {
        (QueryFormat::Table, None) => Some(TERMINAL_ROWS + 1),
        (_, n) => n,
    };
    let mut body = json!({
        "sql": args.sql,
        "ref": args.at.clone().unwrap_or_else(|| ctx.current.clone()),
    });
    if let Some(ns) = &args.namespace {
        body["namespace"] = json!(ns);
    }
    if let Some(n) = asked {
        body["maxRows"] = json!(n);
    }
    if let Some(t) = args.timeout {
        body["timeoutMs"] = json!(t.saturating_mul(1_000));
    }
    let mut answer = ctx
        .client
        .post_stream("/api/v1/query", &body, media_type(format))?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Failure::Other(format!("cannot create {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let written = if format == QueryFormat::Table {
        print_table(&mut answer, &mut out, shown)
    } else {
        std::io::copy(&mut answer, &mut out)
            .map(|_| ())
            .map_err(|e| format!("the answer broke off: {e}"))
    };
    written.map_err(Failure::Other)?;
    out.flush()
        .map_err(|e| Failure::Other(format!("cannot write the answer: {e}")))
}

fn print_table(
    answer: &mut dyn Read,
    out: &mut dyn Write,
    shown: Option<u64>,
) -> Result<(), String> {
    let reader = arrow::ipc::reader::StreamReader::try_new(answer, None)
        .map_err(|e| format!("the answer is not an Arrow stream: {e}"))?;
    let schema = reader.schema();
    let limit = shown.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut more = false;
    for batch in reader {
        let batch = batch.map_err(|e| format!("the answer broke off: {e}"))?;
        if rows >= limit {
            more |= batch.num_rows() > 0;
            continue;
        }
        let keep = batch.num_rows().min(limit - rows);
        more |= keep < batch.num_rows();
        rows += keep;
        batches.push(batch.slice(0, keep));
    }
    if batches.is_empty() {
        batches.push(arrow::record_batch::RecordBatch::new_empty(schema));
    }
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .map_err(|e| format!("cannot format the answer: {e}"))?;
    let noun = if rows == 1 { "row" } else { "rows" };
    let note = if more {
        format!("({rows} {noun} shown; there are more: pass --max-rows or another --format)")
    } else {
        format!("({rows} {noun})")
    };
    writeln!(out, "{text}\n{note}").map_err(|e| format!("cannot write the answer: {e}"))
}

/// The Iceberg REST path of a table at a ref spec (`ns.sub.table`).
fn table_path(at: &str, table: &str) -> Result<String, Failure> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(Failure::Usage(format!(
            "name a table as namespace.table, got {table:?}"
        )));
    }
    let (name, namespace) = parts.split_last().expect("two parts or more");
    let namespace: Vec<String> = namespace.iter().map(|p| encode(p)).collect();
    Ok(format!(
        "/iceberg/v1/{}/namespaces/{}/tables/{}",
        encode(at),
        namespace.join("%1F"),
        encode(name)
    ))
}

fn type_text(t: &Value) -> String {
    match t {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("list") => format!("list<{}>", type_text(&o["element"])),
            Some("map") => format!("map<{}, {}>", type_text(&o["key"]), type_text(&o["value"])),
            Some("struct") => {
                let fields: Vec<String> = o["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| {
                        format!(
                            "{}: {}",
                            f["name"].as_str().unwrap_or(""),
                            type_text(&f["type"])
                        )
                    })
                    .collect();
                format!("struct<{}>", fields.join(", "))
            }
            _ => t.to_string(),
        },
        other => other.to_string(),
    }
}

fn time_text(ms: Option<i64>) -> String {
    ms.and_then(|ms| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
    })
    .and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_default()
}

/// `floe table show`: what the Iceberg catalog answers for the table, for a human.
pub fn table_show(ctx: &Ctx, at: &str, name: &str) -> Result<(), Failure> {
    let answer = ctx.get(&table_path(at, name)?, &[])?;
    if ctx.json {
        ctx.print(&answer);
        return Ok(());
    }
    let m = &answer.value["metadata"];
    let current_schema = m["current-schema-id"].as_i64();
    let schema = m["schemas"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["schema-id"].as_i64() == current_schema)
        .cloned()
        .unwrap_or(Value::Null);
    println!("{}  at {at}", ctx.style.bold(&format!("table {name}")));
    println!("location     {}", m["location"].as_str().unwrap_or(""));
    println!("uuid         {}", m["table-uuid"].as_str().unwrap_or(""));
    println!("format       v{}", m["format-version"]);
    println!();
    println!("schema (id {}):", current_schema.unwrap_or(0));
    let mut rows = Vec::new();
    for f in schema["fields"].as_array().into_iter().flatten() {
        rows.push(vec![
            format!("  {}", f["id"]),
            f["name"].as_str().unwrap_or("").to_owned(),
            type_text(&f["type"]),
            if f["required"].as_bool().unwrap_or(false) {
                "required".to_owned()
            } else {
                "optional".to_owned()
            },
        ]);
    }
    table(&rows);
    let spec_id = m["default-spec-id"].as_i64();
    let spec = m["partition-specs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["spec-id"].as_i64() == spec_id);
    let fields: Vec<String> = spec
        .and_then(|s| s["fields"].as_array())
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "{} = {}(source {})",
                f["name"].as_str().unwrap_or(""),
                f["transform"].as_str().unwrap_or(""),
                f["source-id"]
            )
        })
        .collect();
    println!();
    if fields.is_empty() {
        println!("partition spec: unpartitioned");
    } else {
        println!(
            "partition spec (id {}): {}",
            spec_id.unwrap_or(0),
            fields.join(", ")
        );
    }
    let order_id = m["default-sort-order-id"].as_i64();
    let order: Vec<String> = m["sort-orders"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["order-id"].as_i64() == order_id)
        .and_then(|o| o["fields"].as_array())
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "{}(source {}) {} {}",
                f["transform"].as_str().unwrap_or(""),
                f["source-id"],
                f["direction"].as_str().unwrap_or(""),
                f["null-order"].as_str().unwrap_or("")
            )
        })
        .collect();
    if order.is_empty() {
        println!("sort order: unsorted");
    } else {
        println!(
            "sort order (id {}): {}",
            order_id.unwrap_or(0),
            order.join(", ")
        );
    }
    let props: Vec<Vec<String>> = m["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| vec![format!("  {k}"), v.as_str().unwrap_or("").to_owned()])
        .collect();
    println!();
    if props.is_empty() {
        println!("properties: none");
    } else {
        println!("properties:");
        table(&props);
    }
    let current = m["current-snapshot-id"].as_i64().filter(|id| *id >= 0);
    let mut snapshots: Vec<&Value> = m["snapshots"].as_array().into_iter().flatten().collect();
    snapshots.sort_by_key(|s| s["timestamp-ms"].as_i64());
    println!();
    match snapshots
        .iter()
        .find(|s| current.is_some() && s["snapshot-id"].as_i64() == current)
    {
        None => println!("current snapshot: none (the table is empty)"),
        Some(s) => {
            let summary = &s["summary"];
            println!(
                "current snapshot: {} ({}, {})",
                s["snapshot-id"],
                summary["operation"].as_str().unwrap_or(""),
                time_text(s["timestamp-ms"].as_i64())
            );
            println!(
                "rows {}, data files {}, delete files {}, size {} bytes",
                summary["total-records"].as_str().unwrap_or("?"),
                summary["total-data-files"].as_str().unwrap_or("?"),
                summary["total-delete-files"].as_str().unwrap_or("0"),
                summary["total-files-size"].as_str().unwrap_or("?"),
            );
        }
    }
    if !snapshots.is_empty() {
        println!();
        println!("snapshots ({}):", snapshots.len());
        let mut rows = vec![vec![
            "  snapshot".to_owned(),
            "parent".to_owned(),
            "time".to_owned(),
            "operation".to_owned(),
            "added rows".to_owned(),
            "total rows".to_owned(),
            "data files".to_owned(),
        ]];
        for s in &snapshots {
            let summary = &s["summary"];
            let get = |k: &str| summary[k].as_str().unwrap_or("").to_owned();
            rows.push(vec![
                format!("  {}", s["snapshot-id"]),
                s["parent-snapshot-id"]
                    .as_i64()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                time_text(s["timestamp-ms"].as_i64()),
                get("operation"),
                get("added-records"),
                get("total-records"),
                get("total-data-files"),
            ]);
        }
        table(&rows);
    }
    if let Some(location) = answer.value["metadata-location"].as_str() {
        println!();
        println!("metadata     {location}");
    }
    Ok(())
}

/// `floe import`: local files stream to the server as multipart parts; `file://` URLs
/// travel in the request and the server reads them under its import roots.
pub fn import(ctx: &Ctx, args: ImportArgs) -> Result<(), Failure> {
    let mut sources = Vec::new();
    let mut uploads = Vec::new();
    for path in &args.paths {
        if path.contains("://") {
            sources.push(path.clone());
            continue;
        }
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::Usage(format!("cannot open {path}: {e}")))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(Failure::Usage(format!("{path} is not a file")));
        }
        uploads.push((path.clone(), file));
    }
    let branch = args.at.clone().unwrap_or_else(|| ctx.current.clone());
    let mut request = json!({
        "table": args.table,
        "branch": branch,
        "dryRun": args.dry_run,
        "force": args.force,
        "sources": sources,
    });
    if let Some(mode) = args.mode {
        request["mode"] = json!(match mode {
            ImportMode::Create => "create",
            ImportMode::Append => "append",
            ImportMode::Replace => "replace",
        });
    }
    let boundary = format!("floe-{}", uuid::Uuid::now_v7().simple());
    let paths: Vec<String> = uploads.into_iter().map(|(path, _)| path).collect();
    // Opens the files again for each attempt: a retry sends the same bytes under the same
    // Idempotency-Key, so an import whose answer was lost applies once.
    let body = || -> Result<Box<dyn Read + Send>, String> {
        let mut body: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"request\"\r\nContent-Type: application/json\r\n\r\n{request}\r\n"
        )));
        for path in &paths {
            let file = std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
            let name: String = path
                .chars()
                .map(|c| {
                    if matches!(c, '"' | '\r' | '\n') {
                        '_'
                    } else {
                        c
                    }
                })
                .collect();
            let head = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            );
            body = Box::new(
                body.chain(std::io::Cursor::new(head))
                    .chain(file)
                    .chain(std::io::Cursor::new("\r\n")),
            );
        }
        Ok(Box::new(body.chain(std::io::Cursor::new(format!(
            "--{boundary}--\r\n"
        )))))
    };
    let answer = ctx
        .client
        .post_multipart("/api/v1/imports", &boundary, body)?
        .ok_or_else(|| Failure::Other("the server answered the import with no body".to_owned()))?;
    if ctx.json {
        ctx.print(&answer);
        return Ok(());
    }
    let v = &answer.value;
    let table_name = v["table"].as_str().unwrap_or("");
    let mode = v["mode"].as_str().unwrap_or("");
    let mut rows = vec![vec![
        "  file".to_owned(),
        "format".to_owned(),
        "action".to_owned(),
        "rows".to_owned(),
        "bytes".to_owned(),
    ]];
    for f in v["files"].as_array().into_iter().flatten() {
        rows.push(vec![
            format!("  {}", f["name"].as_str().unwrap_or("")),
            f["format"].as_str().unwrap_or("").to_owned(),
            f["action"].as_str().unwrap_or("").to_owned(),
            f["rows"].to_string(),
            f["bytes"].to_string(),
        ]);
    }
    if v["dryRun"].as_bool() == Some(true) {
        println!(
            "dry run: {mode} {table_name} on {}; nothing changed",
            v["branch"].as_str().unwrap_or("")
        );
        println!("schema:");
        let mut fields = Vec::new();
        for f in v["schema"]["fields"].as_array().into_iter().flatten() {
            fields.push(vec![
                format!("  {}", f["id"]),
                f["name"].as_str().unwrap_or("").to_owned(),
                type_text(&f["type"]),
            ]);
        }
        table(&fields);
        println!("files:");
        table(&rows);
        return Ok(());
    }
    println!(
        "imported {} rows into {table_name} ({mode}) on {}: commit {}",
        v["rows"],
        v["branch"].as_str().unwrap_or(""),
        ctx.style.hash(v["commit"].as_str().unwrap_or(""))
    );
    println!(
        "run {}, snapshot {}",
        v["run"]["id"].as_str().unwrap_or(""),
        v["snapshotId"]
    );
    table(&rows);
    for warning in v["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", warning.as_str().unwrap_or(""));
    }
    Ok(())
}
