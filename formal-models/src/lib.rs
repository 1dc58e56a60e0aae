//! floe-formal-models: Stateright models of floe's semantics (DESIGN §1), and the real
//! `floe-commits` held to them.
//!
//! - `spec`: the executable specification of the version store — the transition functions
//!   every model and test here shares.
//! - `version_store`: the Stateright model of refs, commits, merges, cherry-picks, reverts
//!   and tags, with its `always` and `sometimes` properties and a mutant per property.
//! - `durability`: the actor model of the write-ahead log: group sync and acknowledgement,
//!   checkpoints, crashes and recovery.
//! - `runs`: the Stateright model of runs over the version store (fork, write, land, fail,
//!   seal, promote, prune, revert, crash and recovery) beside another client, with a
//!   mutant per property, and its traces as text (`runs::trace`) for the catalog's replay.
//! - `replay`: runs operation sequences against the real `Store` and the specification side
//!   by side, comparing them after every step.
//!
//! It depends only on `floe-commits` among floe's crates; `floe-commits` does not depend on
//! it, not even for tests (the tidy test checks).

pub mod durability;
pub mod replay;
pub mod runs;
pub mod spec;
pub mod version_store;
