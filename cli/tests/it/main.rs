//! The cli crate's one integration-test binary: tidy checks of the whole workspace, and
//! black-box tests of the `floe` binary through `env!("CARGO_BIN_EXE_floe")`.
//!
//! One binary rather than one per file: each test binary links everything again, and the
//! black-box tests share their server helpers (`harness`) (STYLE.md, rule 10).

mod access;
mod api;
mod authz_matrix;
mod bauplan_projects;
mod cli;
mod clients;
mod data;
mod durable_answers;
mod harness;
mod iceberg;
mod iceberg_rust;
mod idp;
mod names;
mod oidc;
mod pg_faults;
mod pg_tls;
mod pipelines;
mod python_client;
mod replays;
mod run_audit;
mod run_faults;
mod runs;
mod s3;
mod s3_engines;
mod scans;
mod schemathesis;
mod serve;
mod servers;
mod table_files;
mod tidy;
mod tidy_doors;
mod tidy_source;
mod tls;
mod usage;
mod worker_isolation;
