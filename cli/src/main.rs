//! The `floe` binary: `floe serve` runs the server; every other verb (DESIGN §4) is an HTTP
//! client of a server (`--server`, `FLOE_SERVER`, default `http://127.0.0.1:8181`). A
//! branch left out means the checked-out one (`floe checkout`, default `main`). `--json`
//! prints the API's response bodies exactly. Exit codes: 0 ok, 1 error, 2 usage,
//! 3 conflict, 4 run failed, 5 not found.

mod access;
mod client;
mod config;
mod data;
mod logs;
mod output;
mod runs;
mod serve;
mod serve_args;
mod store_copy;
mod tls;
mod verbs;

pub use serve_args::{AuthMode, ServeArgs, VendMode};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "floe",
    version,
    about = "floe: a versioned lakehouse catalog (Git for data over Apache Iceberg)",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// The floe server to talk to.
    #[arg(
        long,
        global = true,
        env = "FLOE_SERVER",
        default_value = "http://127.0.0.1:8181"
    )]
    pub server: String,
    /// Print the API's JSON response bodies instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
    /// The token to send (a `floe_pat_...` from `floe token create`, or the admin token);
    /// never printed.
    #[arg(long, global = true, env = "FLOE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Option<Verb>,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Run the server: the version store on its data folder, over HTTP.
    Serve(ServeArgs),
    /// Move a catalog between stores (the embedded one to PostgreSQL).
    #[command(subcommand)]
    Store(StoreVerb),
    /// List, create, delete or show branches.
    #[command(subcommand)]
    Branch(BranchVerb),
    /// Make a branch the one verbs use when none is named (-b creates it first).
    Checkout {
        name: String,
        /// Create the branch first.
        #[arg(short = 'b')]
        create: bool,
        /// Where the new ref starts: any ref spec (default: the checked-out branch).
        #[arg(long, value_name = "SPEC")]
        from: Option<String>,
    },
    /// List, create or delete tags.
    #[command(subcommand)]
    Tag(TagVerb),
    /// Show history, newest first.
    Log(LogArgs),
    /// Show one commit and the keys it changed.
    Show {
        /// A hash (or unique prefix of 8+ characters), or any ref spec.
        commit: String,
    },
    /// Show what changes from one ref spec to another.
    Diff {
        from: String,
        /// Default: the checked-out branch.
        to: Option<String>,
    },
    /// Merge a ref spec into a branch.
    Merge(MergeArgs),
    /// Apply the changes of commits onto a branch, one commit each.
    CherryPick {
        #[arg(required = true)]
        commits: Vec<String>,
        /// The branch to write (default: the checked-out branch).
        #[arg(long = "ref", alias = "onto", value_name = "REF")]
        onto: Option<String>,
    },
    /// Undo the changes of a commit on a branch, as a new commit.
    Revert {
        commit: String,
        /// The branch to write (default: the checked-out branch).
        #[arg(long = "ref", alias = "on", value_name = "REF")]
        on: Option<String>,
    },
    /// Point a branch at any commit (the reflog keeps the old head).
    Reset { branch: String, target: String },
    /// Show how refs moved, newest first.
    Reflog {
        /// Only this ref (default: every ref).
        name: Option<String>,
        /// At most this many entries.
        #[arg(short = 'n', default_value_t = 50)]
        count: usize,
    },
    /// Create, list or revoke the tokens floe issues (needs manage on **).
    #[command(subcommand)]
    Token(TokenVerb),
    /// Show or replace the catalog's access policy (needs manage on **).
    #[command(subcommand)]
    Policy(PolicyVerb),
    /// List, create, drop or show namespaces.
    Namespace(NamespaceArgs),
    /// List tables, show one, or show the commits that changed one.
    Table(TableArgs),
    /// Run a SQL query at any ref spec (tables are namespace.table).
    Query(QueryArgs),
    /// Import Parquet or CSV files as a table, landed on a branch as one commit.
    Import(ImportArgs),
    /// Run a project's pipeline on a branch (landed as one commit if every model passed),
    /// or list, show, follow and promote runs.
    Run(RunArgs),
    /// Print the OpenAPI document of floe's own API.
    Openapi,
    /// Print shell completions.
    Completions { shell: Shell },
    /// Print the version.
    Version,
    /// Print this help.
    Help,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum StoreVerb {
    /// Copy a stopped server's catalog (objects, refs, reflog, meta) from its data folder
    /// to PostgreSQL. Run it again to resume after an interruption; it ends by checking
    /// that every ref's history reads on the target.
    Copy {
        /// The data folder of a stopped `floe serve` (or its catalog/ folder).
        #[arg(long)]
        data_dir: PathBuf,
        /// The PostgreSQL database: postgres://user@host/db, or host=... dbname=...
        #[arg(long)]
        to: String,
        /// The schema to copy into (created if missing; must hold no other catalog).
        #[arg(long, default_value = "public")]
        to_schema: String,
        /// A PEM file of CA certificates the database's certificate may chain to (with
        /// sslmode=require in --to), beside the system's.
        #[arg(long, env = "FLOE_STORE_CA", value_name = "PEM")]
        store_ca: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BranchVerb {
    /// List branches (the checked-out one is marked *).
    List {
        /// Include run branches (floe-run/...).
        #[arg(long)]
        all: bool,
    },
    /// Create a branch.
    Create {
        name: String,
        /// Where the new ref starts: any ref spec (default: the checked-out branch).
        #[arg(long, value_name = "SPEC")]
        from: Option<String>,
    },
    /// Delete a branch.
    Delete { name: String },
    /// Show a branch and its latest commit.
    Show { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TagVerb {
    /// List tags.
    List,
    /// Create a tag.
    Create {
        name: String,
        /// Where the new ref starts: any ref spec (default: the checked-out branch).
        #[arg(long = "from", alias = "at", value_name = "SPEC")]
        at: Option<String>,
    },
    /// Delete a tag.
    Delete { name: String },
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Any ref spec (default: the checked-out branch).
    pub spec: Option<String>,
    /// At most this many commits.
    #[arg(short = 'n', default_value_t = 20)]
    pub count: usize,
    /// Only commits whose author or committer contains this (case-insensitive).
    #[arg(long)]
    pub author: Option<String>,
    /// Only commits authored at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only commits authored at or before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only commits whose message contains this (case-insensitive).
    #[arg(long)]
    pub grep: Option<String>,
    /// Only commits that changed something at or under this key prefix (a.b.c).
    #[arg(long)]
    pub path: Option<String>,
    /// Only the commits of this run (its landing, and any revert of it); the spec defaults
    /// to the run's target.
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Strategy {
    Normal,
    Squash,
    FfOnly,
    NoFf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnConflict {
    Fail,
    Source,
    Target,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The ref spec to merge from.
    pub source: String,
    /// The branch to write: the one merged into (default: the checked-out branch).
    #[arg(long = "ref", alias = "into", value_name = "REF")]
    pub into: Option<String>,
    /// Show what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = Strategy::Normal)]
    pub strategy: Strategy,
    /// What to do with keys both sides changed.
    #[arg(long, value_enum, default_value_t = OnConflict::Fail)]
    pub on_conflict: OnConflict,
    /// The merge commit's message.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Take the source's side for this key (a table, a view, a namespace); repeatable.
    #[arg(long, value_name = "KEY")]
    pub take_source: Vec<String>,
    /// Keep the target's side for this key; repeatable.
    #[arg(long, value_name = "KEY")]
    pub keep_target: Vec<String>,
    /// For Iceberg tables both sides changed: which concurrent changes conflict (default:
    /// the table's `floe.merge.isolation-level`, else serializable).
    #[arg(long, value_enum)]
    pub isolation: Option<IsolationArg>,
    /// Do not merge Iceberg tables both sides changed at the level of their files: such a
    /// table conflicts like any key.
    #[arg(long)]
    pub no_table_merge: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationArg {
    /// Changes that read rows the other side added (overwrites by filter, row deletes)
    /// conflict with those additions, as Iceberg's writers validate.
    Serializable,
    /// Only changes to the same files conflict.
    Snapshot,
}

#[derive(Debug, clap::Args)]
pub struct NamespaceArgs {
    #[command(subcommand)]
    pub verb: NamespaceVerb,
    /// The ref spec to read or the branch to write (default: the checked-out branch).
    #[arg(long = "ref", global = true, value_name = "REF")]
    pub at: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct TableArgs {
    #[command(subcommand)]
    pub verb: TableVerb,
    /// The ref spec to read (default: the checked-out branch).
    #[arg(long = "ref", global = true, value_name = "REF")]
    pub at: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TableVerb {
    /// List the tables at a ref, everywhere or under one namespace.
    List {
        /// Only tables under this namespace (a.b).
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Show a table: schema, partition spec, sort order, properties, snapshots, counts.
    Show {
        /// The table, namespace.name.
        table: String,
    },
    /// Show the floe commits that changed a table, newest first.
    History {
        /// The table, namespace.name.
        table: String,
        /// At most this many commits.
        #[arg(short = 'n', default_value_t = 20)]
        count: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    /// Aligned columns (the default on a terminal).
    Table,
    /// CSV with a header (the default otherwise).
    Csv,
    /// A JSON array of row objects.
    Json,
    /// One JSON object per row.
    Ndjson,
    /// Arrow IPC stream.
    Arrow,
    /// A Parquet file.
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportMode {
    Create,
    Append,
    Replace,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Local files to upload, file:// URLs the server reads under its --import-root, or
    /// s3:// URLs (a key or a glob: `s3://bucket/in/*.parquet`) it reads under its
    /// --import-prefix.
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// The table, namespace.table.
    #[arg(long)]
    pub table: String,
    /// The branch to write: the one the import lands on (default: the checked-out branch).
    #[arg(long = "ref", alias = "branch", value_name = "REF")]
    pub at: Option<String>,
    /// Default: create when the table is absent; an existing table needs append or replace.
    #[arg(long, value_enum)]
    pub mode: Option<ImportMode>,
    /// Infer and show the schema and what each file would become; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Import files even if they were imported into the table before.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The SQL query.
    pub sql: String,
    /// The ref spec to read (default: the checked-out branch).
    #[arg(long = "ref", value_name = "REF")]
    pub at: Option<String>,
    /// The namespace bare table names resolve in (default: `default`).
    #[arg(long)]
    pub namespace: Option<String>,
    #[arg(long, value_enum)]
    pub format: Option<QueryFormat>,
    /// Write the answer to this file instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// At most this many rows (a table on a terminal shows 1000 unless told).
    #[arg(long)]
    pub max_rows: Option<u64>,
    /// Give up after this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
}

/// `floe run [DIR] [options]`, or `floe run list|show|logs|promote`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunArgs {
    #[command(subcommand)]
    pub verb: Option<RunVerb>,
    #[command(flatten)]
    pub start: RunStart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PreviewArg {
    Head,
    Tail,
    Off,
}

/// What `floe run DIR` runs.
#[derive(Debug, clap::Args)]
pub struct RunStart {
    /// The project folder (with bauplan_project.yml; default: the current folder).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub opts: RunOpts,
}

/// How a run runs (`floe run DIR` and `floe run rerun ID`).
#[derive(Debug, Clone, clap::Args)]
pub struct RunOpts {
    /// The branch the run lands on (default: the checked-out branch).
    #[arg(long = "ref", value_name = "REF")]
    pub at: Option<String>,
    /// Where bare table names resolve (default: the project's defaults.namespace, else bauplan).
    #[arg(long)]
    pub namespace: Option<String>,
    /// A parameter, key=value, parsed by its declared type (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Execute, materialize and land nothing; report each model's schema and rows.
    #[arg(long)]
    pub dry_run: bool,
    /// Plan only: print the DAG.
    #[arg(long)]
    pub plan: bool,
    /// An output whose columns differ from those declared fails the run.
    #[arg(long)]
    pub strict: bool,
    /// Land each materialized model as its own commit as soon as it is written (not atomic).
    #[arg(long)]
    pub no_transaction: bool,
    /// Execute every model, reusing no earlier run's output.
    #[arg(long)]
    pub no_cache: bool,
    /// Show a few rows of each model.
    #[arg(long, value_enum, default_value_t = PreviewArg::Off)]
    pub preview: PreviewArg,
    /// Print the run's id and return; `floe run logs ID -f` follows it.
    #[arg(long)]
    pub detach: bool,
    /// The run's deadline (such as 30m): past it the run is cancelled (at most the
    /// server's --run-timeout).
    #[arg(long, value_parser = duration_ms)]
    pub timeout: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum TokenVerb {
    /// Make a token for a principal; it is printed once, here.
    Create {
        /// Who the token stands for (mapped to roles by the policy's [principals]).
        #[arg(long)]
        principal: String,
        /// A role the token carries beside its principal's (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// How long it is valid (such as 30d; default: until revoked).
        #[arg(long, value_parser = duration_ms)]
        expires: Option<i64>,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token, on every server at once.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum PolicyVerb {
    /// Print the policy in force (TOML).
    Show,
    /// Replace the policy with a TOML file (checked first: a bad file changes nothing).
    Set { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum RunVerb {
    /// List runs, oldest first.
    List {
        /// Only runs in this state (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Only runs of this kind (run, import).
        #[arg(long)]
        kind: Option<String>,
        /// Only runs landing on this branch.
        #[arg(long, value_name = "BRANCH")]
        target: Option<String>,
        /// Only runs of this project (its id or name).
        #[arg(long)]
        project: Option<String>,
        /// Only runs that write this table (namespace.table).
        #[arg(long)]
        table: Option<String>,
    },
    /// Show one run's record.
    Show { id: String },
    /// Print a run's log.
    Logs {
        id: String,
        /// Keep printing until the run ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Let a failed or cancelled run's commits be used (branched from, merged, reset to).
    Promote { id: String },
    /// Undo a run's landing as one commit: every table it wrote, or none (refused, naming
    /// the tables, when any of them changed since).
    Revert {
        id: String,
        /// The branch to revert it on (default: the run's target).
        #[arg(long = "ref", alias = "on", value_name = "REF")]
        on: Option<String>,
    },
    /// Cancel a queued or running run: its workers are stopped, it ends `cancelled`, its
    /// branch sealed. Waits until it has ended and shows it.
    Cancel { id: String },
    /// Wait until a run ends, show it, and exit as `floe run` would (0 succeeded, 3
    /// landing conflict, 4 failed, 130 cancelled).
    Wait { id: String },
    /// Run a run's recorded code again, with its recorded ref, namespace and parameters
    /// unless given (secrets come from --param or the server's environment again); it
    /// behaves as `floe run`.
    Rerun {
        id: String,
        #[command(flatten)]
        opts: RunOpts,
    },
}

#[derive(Debug, Subcommand)]
pub enum NamespaceVerb {
    /// List namespaces.
    List,
    /// Create a namespace (a.b creates b inside a).
    Create {
        namespace: String,
        /// A property, key=value (repeatable).
        #[arg(long = "prop", value_name = "KEY=VALUE")]
        props: Vec<String>,
    },
    /// Drop an empty namespace.
    Drop { namespace: String },
    /// Show a namespace and its properties.
    Show { namespace: String },
}

/// A duration as a number and a unit (`s`, `m`, `h` or `d`), in ms.
pub(crate) fn duration_ms(text: &str) -> Result<i64, String> {
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: s, m, h or d (such as 7d)"))?;
    let (number, unit) = text.split_at(unit_at);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 15m, 12h or 7d"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use s, m, h or d"
            ));
        }
    };
    number
        .checked_mul(unit_ms)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn main() -> ExitCode {
    // A confined worker's launcher (floe's own, never a user's verb): before anything
    // starts a thread.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args
        .first()
        .is_some_and(|a| a == floe_rest::sandbox::SUBCOMMAND)
    {
        floe_rest::sandbox::enter(&args[1..]);
    }
    quiet_on_closed_stdout();
    // apache avro's allocation limit holds only if set before the first Avro decode.
    let _ = floe_catalog::limit_avro_allocations();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not errors; everything else is a usage error (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                client::EXIT_USAGE
            } else {
                0
            });
        }
    };
    let json = cli.json;
    match cli.command {
        None | Some(Verb::Help) => {
            let _ = Cli::command().print_help();
            ExitCode::SUCCESS
        }
        Some(Verb::Version) => {
            println!("floe {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(Verb::Serve(args)) => serve::run(args),
        Some(Verb::Store(StoreVerb::Copy {
            data_dir,
            to,
            to_schema,
            store_ca,
        })) => store_copy::run(&data_dir, &to, &to_schema, store_ca),
        Some(Verb::Openapi) => {
            print!("{}", floe_rest::v1::openapi_document());
            ExitCode::SUCCESS
        }
        Some(Verb::Completions { shell }) => {
            let mut command = Cli::command();
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut command, "floe", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Some(verb) => match verbs::run(&cli.server, cli.token.as_deref(), json, verb) {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => failure.report(json),
        },
    }
}

/// `floe log | head` ends quietly, as Unix tools do when their reader goes away: printing
/// to a closed pipe panics in Rust (SIGPIPE is ignored), so that panic exits with 141
/// (128 + SIGPIPE) and no message. Every other panic keeps the default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

#[cfg(test)]
mod vocabulary {
    //! One CLI vocabulary: a shared flag is spelled, named and explained the same way by
    //! every verb. This walks the clap definitions, so a new verb is held to it too.

    use clap::CommandFactory;

    use super::Cli;

    /// Flags that mean one thing everywhere: the long name, its value name, and the
    /// words its help must contain.
    const SHARED: &[(&str, &str, &str)] = &[
        // The ref a verb reads at or writes to.
        ("ref", "REF", "(default: the checked-out branch)"),
        // Where a new ref starts.
        ("from", "SPEC", "Where the new ref starts"),
        ("namespace", "NAMESPACE", "namespace"),
        ("message", "MESSAGE", "message"),
    ];

    /// Flags of a shared name whose default is another, by design, and the words that say
    /// which (a run is reverted where it landed, not where the CLI stands).
    const OTHER_DEFAULTS: &[(&str, &str)] =
        &[("floe run revert --ref", "(default: the run's target)")];

    /// Spellings that once named a ref (or would now): kept only as hidden aliases.
    const RETIRED: &[&str] = &["branch", "into", "onto", "on", "at", "spec", "target-ref"];

    fn walk(command: &clap::Command, path: &str, problems: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let at = format!("{path} --{long}");
            if RETIRED.contains(&long) {
                problems.push(format!(
                    "{at}: name the ref a verb reads or writes --ref, and where a new ref starts --from (the old spelling may stay as an alias)"
                ));
            }
            for alias in arg.get_all_aliases().into_iter().flatten() {
                if SHARED.iter().any(|(name, ..)| *name == alias) {
                    problems.push(format!("{at}: the alias --{alias} is a shared flag's name"));
                }
            }
            let Some((_, value, words)) = SHARED.iter().find(|(name, ..)| *name == long) else {
                continue;
            };
            let names = arg.get_value_names().unwrap_or_default();
            if names.len() != 1 || names[0].as_str() != *value {
                problems.push(format!("{at}: its value is called {value}, not {names:?}"));
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let words = OTHER_DEFAULTS
                .iter()
                .find(|(flag, _)| *flag == at)
                .map_or(*words, |(_, other)| *other);
            if !help.contains(words) {
                problems.push(format!(
                    "{at}: its help must say {words:?}, it says {help:?}"
                ));
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), problems);
        }
    }

    #[test]
    fn every_verb_spells_a_shared_flag_the_same_way() {
        let mut problems = Vec::new();
        walk(&Cli::command(), "floe", &mut problems);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_old_spellings_still_parse() {
        for (old, new) in [
            (
                vec![
                    "floe",
                    "import",
                    "a.parquet",
                    "--table",
                    "db.t",
                    "--branch",
                    "dev",
                ],
                "dev",
            ),
            (vec!["floe", "merge", "dev", "--into", "main"], "main"),
            (
                vec!["floe", "cherry-pick", "abc12345", "--onto", "main"],
                "main",
            ),
            (vec!["floe", "revert", "abc12345", "--on", "main"], "main"),
            (vec!["floe", "tag", "create", "v1", "--at", "main"], "main"),
        ] {
            let cli = <Cli as clap::Parser>::try_parse_from(&old).unwrap();
            let parsed = format!("{:?}", cli.command);
            assert!(parsed.contains(&format!("{new:?}")), "{old:?}: {parsed}");
        }
    }
}
