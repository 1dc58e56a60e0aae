//! A run's log (DESIGN §7): one append-only file per run in the data folder, each line
//! `<RFC 3339 time> <node> <stream> <text>`; every planning and execution step writes to
//! it, with the run's secret values masked. Followers are woken on each line and at the end (`Notify`), and read the file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

pub use crate::limits::LOG_LINE_BYTES_MAX;

/// The node name of lines about the run as a whole.
pub const RUN: &str = "run";

#[derive(Debug)]
pub struct RunLog {
    file: Mutex<Option<File>>,
    path: PathBuf,
    pub(super) wake: Arc<Notify>,
    clock: floe_catalog::Catalog,
    /// Masked in every line.
    secrets: super::project::Secrets,
}

/// `ms` since the epoch as RFC 3339 with milliseconds, UTC.
fn stamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

impl RunLog {
    /// Creates (or opens, to append) the log at `path`.
    pub fn open(
        path: &Path,
        clock: floe_catalog::Catalog,
        secrets: super::project::Secrets,
    ) -> std::io::Result<RunLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(RunLog {
            file: Mutex::new(Some(file)),
            path: path.to_owned(),
            wake: Arc::new(Notify::new()),
            clock,
            secrets,
        })
    }

    /// `text` with the run's secrets masked (for what the run records beside its log).
    pub fn mask(&self, text: &str) -> String {
        self.secrets.mask(text)
    }

    /// Woken on every line and at the run's end.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `text` (each of its lines) for `node` on `stream` (`info`, `error`, ...).
    /// A log that cannot be written is said in the server's log, once, and then closed:
    /// a run does not fail for its log.
    pub fn line(&self, node: &str, stream: &str, text: &str) {
        let at = stamp(self.clock.now_ms());
        // Masked whole, then cut: a secret is never split by the cut.
        let text = self.secrets.mask(text);
        let mut out = String::new();
        for l in text.lines() {
            if l.len() > LOG_LINE_BYTES_MAX {
                let mut end = LOG_LINE_BYTES_MAX;
                while !l.is_char_boundary(end) {
                    end -= 1;
                }
                out.push_str(&format!("{at} {node} {stream} {} [cut]\n", &l[..end]));
            } else {
                out.push_str(&format!("{at} {node} {stream} {l}\n"));
            }
        }
        let mut file = self.file.lock();
        if let Some(f) = file.as_mut()
            && let Err(e) = f.write_all(out.as_bytes())
        {
            tracing::warn!(path = %self.path.display(), error = %e, "a run log cannot be written; its later lines are lost");
            *file = None;
        }
        drop(file);
        self.wake.notify_waiters();
    }
}
