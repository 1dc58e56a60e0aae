//! The verbs on refs: `branch`, `tag`, `checkout`, `reset` and `reflog`, each a few calls
//! to `/api/v1/refs` and `/api/v1/reflog`.

use super::*;

fn ref_rows(ctx: &Ctx, refs: &[Value], mark: Option<&str>) -> Vec<Vec<String>> {
    refs.iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap_or("");
            let marker = if mark == Some(name) { "*" } else { " " };
            vec![
                marker.to_owned(),
                if marker == "*" {
                    ctx.style.good(name)
                } else {
                    name.to_owned()
                },
                ctx.style.hash(r["head"].as_str().unwrap_or("")),
                r["createdBy"].as_str().unwrap_or("").to_owned(),
                r["createdAt"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect()
}

pub(super) fn branch(ctx: &Ctx, verb: BranchVerb) -> Result<(), Failure> {
    match verb {
        BranchVerb::List { all } => {
            let refs = ctx.list_refs("branch")?;
            if !ctx.json {
                let shown: Vec<Value> = refs
                    .into_iter()
                    .filter(|r| {
                        all || !r["name"]
                            .as_str()
                            .unwrap_or("")
                            .starts_with(RUN_BRANCH_PREFIX)
                    })
                    .collect();
                table(&ref_rows(ctx, &shown, Some(&ctx.current)));
            }
            Ok(())
        }
        BranchVerb::Create { name, from } => {
            let from = from.unwrap_or_else(|| ctx.current.clone());
            let created = create_ref(ctx, &name, "branch", &from)?;
            if !ctx.json {
                println!(
                    "created branch {} at {} (from {from})",
                    ctx.style.bold(&name),
                    ctx.style.hash(created.value["head"].as_str().unwrap_or(""))
                );
            }
            Ok(())
        }
        BranchVerb::Delete { name } => {
            if name == ctx.current {
                return Err(Failure::Other(format!(
                    "{name} is checked out; `floe checkout` another branch first"
                )));
            }
            delete_ref(ctx, &name, "branch")
        }
        BranchVerb::Show { name } => {
            let r = ctx.get_ref(&name)?;
            if ctx.json {
                ctx.print(&r);
                return Ok(());
            }
            let log = ctx.get(
                &format!("/api/v1/trees/{}/log", encode(&name)),
                &[("pageSize", "1".to_owned())],
            )?;
            let v = &r.value;
            let mut rows = vec![
                vec!["name".to_owned(), name.clone()],
                vec![
                    "kind".to_owned(),
                    v["kind"].as_str().unwrap_or("").to_owned(),
                ],
                vec![
                    "head".to_owned(),
                    v["head"].as_str().unwrap_or("").to_owned(),
                ],
                vec![
                    "created".to_owned(),
                    format!(
                        "{} by {}",
                        v["createdAt"].as_str().unwrap_or(""),
                        v["createdBy"].as_str().unwrap_or("")
                    ),
                ],
            ];
            if let Some(c) = log.value["commits"].get(0) {
                rows.push(vec![
                    "last commit".to_owned(),
                    format!(
                        "{} {}",
                        ctx.style.hash(c["hash"].as_str().unwrap_or("")),
                        subject(c["message"].as_str().unwrap_or(""))
                    ),
                ]);
            }
            if name == ctx.current {
                rows.push(vec!["checked out".to_owned(), "yes".to_owned()]);
            }
            table(&rows);
            Ok(())
        }
    }
}

fn create_ref(ctx: &Ctx, name: &str, kind: &str, from: &str) -> Result<Answer, Failure> {
    let answer = ctx
        .write(
            Method::Post,
            "/api/v1/refs",
            &[],
            Some(json!({ "name": name, "kind": kind, "from": from })),
        )?
        .ok_or_else(|| Failure::Other("the server answered a create with no body".to_owned()))?;
    if ctx.json {
        ctx.print(&answer);
    }
    Ok(answer)
}

/// Deletes a ref of the given kind, at the head it was seen at (never a newer one).
fn delete_ref(ctx: &Ctx, name: &str, kind: &str) -> Result<(), Failure> {
    let r = ctx.get_ref(name)?;
    if r.value["kind"] != kind {
        return Err(Failure::Other(format!(
            "{name} is a {}, not a {kind}; use `floe {} delete`",
            r.value["kind"].as_str().unwrap_or("?"),
            r.value["kind"].as_str().unwrap_or("?")
        )));
    }
    let head = r.value["head"].as_str().unwrap_or("").to_owned();
    ctx.write(
        Method::Delete,
        &format!("/api/v1/refs/{}", encode(name)),
        &[("expectedHead", head.clone())],
        None,
    )?;
    if !ctx.json {
        println!("deleted {kind} {name} (was at {})", ctx.style.hash(&head));
    }
    Ok(())
}

pub(super) fn checkout(
    ctx: &mut Ctx,
    name: &str,
    create: bool,
    from: Option<String>,
) -> Result<(), Failure> {
    let answer = if create {
        let from = from.unwrap_or_else(|| ctx.current.clone());
        create_ref(ctx, name, "branch", &from)?
    } else {
        if from.is_some() {
            return Err(Failure::Usage(
                "--from needs -b (create the branch)".to_owned(),
            ));
        }
        let r = ctx.get_ref(name)?;
        if r.value["kind"] != "branch" {
            return Err(Failure::Other(format!(
                "{name} is a tag; checkout takes a branch (read a tag with `floe log {name}`, or \
                 `floe checkout -b NEW --from {name}`)"
            )));
        }
        if ctx.json {
            ctx.print(&r);
        }
        r
    };
    let server = ctx.client.server().to_owned();
    ctx.config
        .set_branch(&server, name)
        .map_err(Failure::Other)?;
    if !ctx.json {
        println!(
            "on branch {} at {}",
            ctx.style.bold(name),
            ctx.style.hash(answer.value["head"].as_str().unwrap_or(""))
        );
    }
    Ok(())
}

pub(super) fn tag(ctx: &Ctx, verb: TagVerb) -> Result<(), Failure> {
    match verb {
        TagVerb::List => {
            let refs = ctx.list_refs("tag")?;
            if !ctx.json {
                table(&ref_rows(ctx, &refs, None));
            }
            Ok(())
        }
        TagVerb::Create { name, at } => {
            let at = at.unwrap_or_else(|| ctx.current.clone());
            let created = create_ref(ctx, &name, "tag", &at)?;
            if !ctx.json {
                println!(
                    "created tag {} at {} ({at})",
                    ctx.style.bold(&name),
                    ctx.style.hash(created.value["head"].as_str().unwrap_or(""))
                );
            }
            Ok(())
        }
        TagVerb::Delete { name } => delete_ref(ctx, &name, "tag"),
    }
}

pub(super) fn reset(ctx: &Ctx, branch: &str, target: &str) -> Result<(), Failure> {
    let before = ctx.get_ref(branch)?;
    let old = before.value["head"].as_str().unwrap_or("").to_owned();
    let answer = ctx
        .write(
            Method::Put,
            &format!("/api/v1/refs/{}", encode(branch)),
            &[],
            Some(json!({ "target": target, "expectedHead": old })),
        )?
        .ok_or_else(|| Failure::Other("the server answered a reset with no body".to_owned()))?;
    if ctx.json {
        ctx.print(&answer);
    } else {
        println!(
            "{branch} reset to {} (was {}; `floe reflog {branch}` keeps it)",
            ctx.style.hash(answer.value["head"].as_str().unwrap_or("")),
            ctx.style.hash(&old)
        );
    }
    Ok(())
}

pub(super) fn reflog(ctx: &Ctx, name: Option<String>, count: usize) -> Result<(), Failure> {
    let query: Vec<(&str, String)> = name.map(|n| ("ref", n)).into_iter().collect();
    let mut entries = Vec::new();
    ctx.each_page("/api/v1/reflog", &query, "entries", Some(count), |e| {
        entries.push(e.clone());
    })?;
    if !ctx.json {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                let hash = |k: &str| {
                    e[k].as_str()
                        .map_or_else(|| "-".to_owned(), |h| ctx.style.hash(h))
                };
                vec![
                    e["at"].as_str().unwrap_or("").to_owned(),
                    e["ref"].as_str().unwrap_or("").to_owned(),
                    e["operation"].as_str().unwrap_or("").to_owned(),
                    format!("{} -> {}", hash("old"), hash("new")),
                    e["principal"].as_str().unwrap_or("").to_owned(),
                ]
            })
            .collect();
        table(&rows);
    }
    Ok(())
}
