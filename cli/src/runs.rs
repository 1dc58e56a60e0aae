//! `floe run list|show|promote`: the records of runs (imports today) and the promotion of
//! a failed one, whose sealed commits may then be used.

use serde_json::Value;

use crate::RunVerb;
use crate::client::{Method, encode};
use crate::output::table;
use crate::verbs::{Ctx, Failure, PAGE_MAX};

pub fn run(ctx: &Ctx, verb: RunVerb) -> Result<(), Failure> {
    match verb {
        RunVerb::List => list(ctx),
        RunVerb::Show { id } => {
            let answer = ctx.get(&format!("/api/v1/runs/{}", encode(&id)), &[])?;
            if ctx.json {
                ctx.print(&answer);
            } else {
                show(ctx, &answer.value);
            }
            Ok(())
        }
        RunVerb::Promote { id } => {
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

fn list(ctx: &Ctx) -> Result<(), Failure> {
    let mut rows = vec![vec![
        "id".to_owned(),
        "kind".to_owned(),
        "state".to_owned(),
        "target".to_owned(),
        "source".to_owned(),
    ]];
    let query = [("pageSize", PAGE_MAX.to_string())];
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

fn show(ctx: &Ctx, r: &Value) {
    let field = |name: &str| r[name].as_str().unwrap_or("").to_owned();
    let mut rows = vec![
        vec!["run".to_owned(), field("id")],
        vec!["kind".to_owned(), field("kind")],
        vec!["state".to_owned(), state(ctx, r)],
        vec!["by".to_owned(), field("principal")],
        vec!["target".to_owned(), field("target")],
        vec!["fork".to_owned(), ctx.style.hash(&field("fork"))],
        vec!["branch".to_owned(), field("branch")],
        vec!["source".to_owned(), field("source")],
    ];
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
