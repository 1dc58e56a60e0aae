//! The server's structured logs (`tracing`): text or JSON lines on standard error,
//! filtered like `RUST_LOG` (`FLOE_LOG` first, then `RUST_LOG`, default `info`).
//!
//! What is logged: per request, a `debug` span (method, route, principal; so a busy
//! server's default log creates none) and one line when it ends with its method, route,
//! status, latency and, for an error answer, the error id and type (at `debug` below 500;
//! at `error` for a 5xx, beside the error chain logged under the same id); the maintenance
//! passes;
//! the commit and run spans of the catalog and the store. The startup line and the
//! shutdown line stay plain lines on standard output, which scripts and tests read.

use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event, with its spans' fields.
    Text,
    /// One JSON object per event: `timestamp`, `level`, `target`, `fields`, and the fields
    /// of the span it happened in (`span`) and of every enclosing one (`spans`).
    Json,
}

/// The filter: `FLOE_LOG`, else `RUST_LOG`, else `info`. A filter that does not parse is
/// an error that says which variable to fix.
fn filter() -> Result<EnvFilter, String> {
    for var in ["FLOE_LOG", "RUST_LOG"] {
        if let Ok(text) = std::env::var(var) {
            return EnvFilter::try_new(&text).map_err(|e| {
                format!("{var}={text:?} is not a log filter (e.g. info,floe_rest=debug): {e}")
            });
        }
    }
    Ok(EnvFilter::new("info"))
}

/// Installs the subscriber for the rest of the process.
pub fn init(format: LogFormat) -> Result<(), String> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter()?)
        .with_writer(std::io::stderr)
        .with_target(true);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the log subscriber: {e}"))
}
