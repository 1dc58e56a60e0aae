//! `floe-formal-models check <model> [--depth N] [--mutant NAME]`: explores a model
//! breadth-first to a depth and prints the states explored, the time, and every
//! property's verdict; exit 0 when every `always` property holds and every `sometimes`
//! property is reached, 1 otherwise. Models: `version-store` (default depth: the CI depth,
//! `version_store::CI_DEPTH`), `durability` (exhaustive), `runs` (default depth:
//! `runs::CI_DEPTH`). With `--mutant`, the checker searches (for the version store, normal
//! merges only; to each model's `MUTANT_DEPTH` by default) until it finds the
//! counterexample of the property that mutant breaks, prints it and exits 1.

use std::process::ExitCode;
use std::time::Instant;

use floe_formal_models::{durability, runs, version_store};
use std::collections::BTreeSet;

use stateright::{Checker, HasDiscoveries, Model};

const USAGE: &str = "usage: floe-formal-models check <version-store|durability|runs> [--depth N] [--mutant NAME] [--threads N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let [verb, model, rest @ ..] = args else {
        return Err("missing arguments".to_owned());
    };
    if verb != "check" {
        return Err(format!("unknown command `{verb}`"));
    }
    let mut depth = None;
    let mut mutant = None;
    let mut threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("`{flag}` needs a value"))?;
        match flag.as_str() {
            "--depth" => {
                depth = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| format!("--depth takes a number, not `{value}`"))?,
                )
            }
            "--threads" => {
                threads = value
                    .parse::<usize>()
                    .map_err(|_| format!("--threads takes a number, not `{value}`"))?
            }
            "--mutant" => mutant = Some(value.clone()),
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    match model.as_str() {
        "version-store" => match &mutant {
            None => Ok(check(
                version_store::VersionStore::default(),
                depth.unwrap_or(version_store::CI_DEPTH),
                threads,
                None,
            )),
            Some(name) => {
                let found = version_store::Mutant::ALL
                    .into_iter()
                    .find(|m| m.name() == name)
                    .ok_or_else(|| {
                        unknown_mutant(name, version_store::Mutant::ALL.map(|m| m.name()))
                    })?;
                let m = version_store::VersionStore {
                    all_merges: false,
                    ..version_store::VersionStore::with_mutant(found)
                };
                Ok(check(
                    m,
                    depth.unwrap_or(version_store::MUTANT_DEPTH),
                    threads,
                    Some(found.breaks()),
                ))
            }
        },
        "durability" => {
            let mut cfg = durability::Config::default();
            if let Some(name) = &mutant {
                cfg.mutant = Some(
                    durability::Mutant::ALL
                        .into_iter()
                        .find(|m| m.name() == name)
                        .ok_or_else(|| {
                            unknown_mutant(name, durability::Mutant::ALL.map(|m| m.name()))
                        })?,
                );
            }
            let breaks = cfg.mutant.map(|m| m.breaks());
            Ok(check(
                durability::model(cfg),
                depth.unwrap_or(usize::MAX),
                threads,
                breaks,
            ))
        }
        "runs" => match &mutant {
            None => Ok(check(
                runs::Runs::default(),
                depth.unwrap_or(runs::CI_DEPTH),
                threads,
                None,
            )),
            Some(name) => {
                let found = runs::Mutant::ALL
                    .into_iter()
                    .find(|m| m.name() == name)
                    .ok_or_else(|| unknown_mutant(name, runs::Mutant::ALL.map(|m| m.name())))?;
                Ok(check(
                    runs::Runs::with_mutant(found),
                    depth.unwrap_or(runs::MUTANT_DEPTH),
                    threads,
                    Some(found.breaks()),
                ))
            }
        },
        other => Err(format!("unknown model `{other}`")),
    }
}

fn unknown_mutant<const N: usize>(name: &str, known: [&str; N]) -> String {
    format!(
        "unknown mutant `{name}`; the mutants are {}",
        known.join(", ")
    )
}

/// Checks `model` to `depth`; with `stop_at`, only until that property's first discovery
/// (a mutant's counterexample).
fn check<M>(model: M, depth: usize, threads: usize, stop_at: Option<&'static str>) -> ExitCode
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + std::fmt::Debug + std::hash::Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static,
{
    let properties: Vec<(&'static str, bool)> = model
        .properties()
        .iter()
        .map(|p| (p.name, p.expectation == stateright::Expectation::Always))
        .collect();
    let started = Instant::now();
    let mut builder = model.checker().threads(threads).target_max_depth(depth);
    if let Some(property) = stop_at {
        builder = builder.finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])));
    }
    let checker = builder.spawn_bfs().join();
    println!(
        "explored {} states ({} unique) to depth {} in {:.2?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    let mut failed = false;
    for (name, always) in properties {
        let found = checker.discovery(name);
        let verdict = match (always, &found) {
            (true, None) => "holds".to_owned(),
            (true, Some(path)) => {
                failed = true;
                format!(
                    "VIOLATED in {} steps: {:#?}",
                    path.clone().into_actions().len(),
                    path.clone().into_actions()
                )
            }
            (false, Some(path)) => {
                format!("reached in {} steps", path.clone().into_actions().len())
            }
            // A search stopped at a counterexample says nothing of what it did not reach.
            (false, None) if stop_at.is_some() => {
                "not reached before the search stopped".to_owned()
            }
            (false, None) => {
                failed = true;
                "NEVER reached".to_owned()
            }
        };
        println!("- {name}: {verdict}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
