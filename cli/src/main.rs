//! The `floe` binary: today it only reports its version and its usage.
//!
//! `floe serve` arrives with the sled-backed server (issue 3); every other verb will be an
//! HTTP client of that server (DESIGN §4). Until then the binary does only what is real and
//! keeps the exit-code contract: 0 ok, 2 usage.

use std::process::ExitCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

const USAGE: &str = "\
floe: a versioned lakehouse catalog (Git for data over Apache Iceberg)

Usage: floe <command>

Commands:
  version     print the version (also: --version, -V)
  help        print this help (also: --help, -h)

`floe serve` arrives with the sled-backed server (issue 3); the other verbs follow it.
";

/// Exit code for a command line floe does not understand (DESIGN §4).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // `args_os` rather than `args`: a non-UTF-8 argument is a usage error, not a panic.
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let verb = args.first().map(|arg| arg.to_str());
    match (verb, args.len()) {
        (None, _) | (Some(Some("help" | "--help" | "-h")), 1) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        (Some(Some("version" | "--version" | "-V")), 1) => {
            println!("floe {VERSION}");
            ExitCode::SUCCESS
        }
        (Some(Some("serve")), _) => usage_error(
            "`floe serve` is not built yet: it arrives with the sled-backed server (issue 3)",
        ),
        (Some(Some("help" | "--help" | "-h" | "version" | "--version" | "-V")), _) => usage_error(
            &format!("unexpected argument {:?}", args[1].to_string_lossy()),
        ),
        _ => usage_error(&format!("unknown command {:?}", args[0].to_string_lossy())),
    }
}

/// Reports a command line floe does not understand, on stderr, and exits with code 2.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("floe: {message}; run `floe --help` for usage");
    ExitCode::from(EXIT_USAGE)
}
