//! The `floe` binary: `floe serve` runs the server; the other verbs (DESIGN §4) will be
//! HTTP clients of a server. Exit codes: 0 ok, 1 error, 2 usage.

mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "floe",
    version,
    about = "floe: a versioned lakehouse catalog (Git for data over Apache Iceberg)",
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Verb>,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Run the server: the version store on its data folder, over HTTP.
    Serve(ServeArgs),
    /// Print the version.
    Version,
    /// Print this help.
    Help,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "FLOE_ADDR", default_value = "127.0.0.1:8181")]
    pub addr: String,
    /// Folder that holds everything the server keeps (created on first start).
    #[arg(long, env = "FLOE_DATA_DIR", default_value = "./floe-data")]
    pub data_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not errors; everything else is a usage error (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
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
    }
}
