//! `RunState`, where a run is in its life: named by run records (`runs/`) and by the
//! `RunSealed` error (`error.rs`), so it lives apart from both and neither imports the
//! other.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Accepted and waiting for a turn (the server's bound on running runs); not forked.
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}
