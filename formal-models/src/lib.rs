//! floe-formal-models: Stateright models of floe's semantics (DESIGN §1).
//!
//! This crate will own one model per protocol — the version store's refs, commits and
//! merges, sled durability, and pipeline runs — each with `Always` and `Sometimes`
//! properties, the mutants that show each property can fail, and the replay of model traces
//! against `floe-commits`. It depends only on `floe-commits` among floe's crates. Nothing is
//! implemented yet: the models arrive with a later issue.
