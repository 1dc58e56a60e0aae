//! `floe token` and `floe policy`: the tokens floe issues and the catalog's access policy
//! (issue 19), over `/api/v1/tokens` and `/api/v1/policy`.

use serde_json::{Value, json};

use crate::client::{Method, encode};
use crate::output::table;
use crate::verbs::{Ctx, Failure};
use crate::{PolicyVerb, TokenVerb};

pub fn token(ctx: &Ctx, verb: TokenVerb) -> Result<(), Failure> {
    match verb {
        TokenVerb::Create {
            principal,
            roles,
            expires,
        } => {
            let body = json!({
                "principal": principal,
                "roles": roles,
                "expiresInSeconds": expires.map(|ms| ms.max(1000) / 1000),
            });
            let answer = ctx
                .write(Method::Post, "/api/v1/tokens", &[], Some(body))?
                .ok_or_else(|| Failure::Other("the server answered with no body".to_owned()))?;
            if ctx.json {
                ctx.print(&answer);
            } else {
                let v = &answer.value;
                eprintln!(
                    "token {} for {} (shown once: keep it now)",
                    v["id"].as_str().unwrap_or(""),
                    v["principal"].as_str().unwrap_or("")
                );
                println!("{}", v["token"].as_str().unwrap_or(""));
            }
            Ok(())
        }
        TokenVerb::List => {
            let answer = ctx.get("/api/v1/tokens", &[])?;
            if ctx.json {
                ctx.print(&answer);
                return Ok(());
            }
            let mut rows = vec![vec![
                "id".to_owned(),
                "principal".to_owned(),
                "roles".to_owned(),
                "created by".to_owned(),
                "expires".to_owned(),
            ]];
            for t in answer.value["tokens"].as_array().into_iter().flatten() {
                let roles: Vec<&str> = t["roles"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                rows.push(vec![
                    t["id"].as_str().unwrap_or("").to_owned(),
                    t["principal"].as_str().unwrap_or("").to_owned(),
                    roles.join(","),
                    t["createdBy"].as_str().unwrap_or("").to_owned(),
                    t["expiresMs"]
                        .as_i64()
                        .map_or_else(|| "never".to_owned(), |ms| ms.to_string()),
                ]);
            }
            table(&rows);
            Ok(())
        }
        TokenVerb::Revoke { id } => {
            ctx.write(
                Method::Delete,
                &format!("/api/v1/tokens/{}", encode(&id)),
                &[],
                None,
            )?;
            if !ctx.json {
                println!("revoked token {id}");
            }
            Ok(())
        }
    }
}

pub fn policy(ctx: &Ctx, verb: PolicyVerb) -> Result<(), Failure> {
    let answer = match verb {
        PolicyVerb::Show => ctx.get("/api/v1/policy", &[])?,
        PolicyVerb::Set { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                Failure::Usage(format!("cannot read the policy {}: {e}", file.display()))
            })?;
            ctx.write(
                Method::Put,
                "/api/v1/policy",
                &[],
                Some(json!({ "policy": text })),
            )?
            .ok_or_else(|| Failure::Other("the server answered with no body".to_owned()))?
        }
    };
    if ctx.json {
        ctx.print(&answer);
    } else {
        print!("{}", answer.value["policy"].as_str().unwrap_or(""));
    }
    Ok(())
}
