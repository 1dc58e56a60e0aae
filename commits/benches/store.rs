//! Benchmarks of the version store (filled below).
fn main() {}
