//! Every integration suite in one test binary: each suite compiled on its own relinked the
//! whole generic pipeline, fifteen times over, and that dominated a clean build. A suite is a
//! module here and is still picked by name: `cargo test --release --test suites watch::`.
//!
//! Tests against a Qdrant server are `#[ignore]`d unless one is at hand: `tests/run.sh` starts
//! one (or uses `QDRANT_URL`) and then runs them with `--include-ignored`, so the runner's own
//! summary counts what did not run.

#[macro_use]
mod common;

mod bad_input;
mod collection_settings;
mod commands;
mod dump;
mod edges;
mod embedding;
mod embedding_models;
mod exactness;
mod faults;
mod filter;
mod foreign_points;
mod harness;
mod hub;
mod incarnation;
mod kill;
mod named_vectors;
mod projection;
mod reindex;
mod scale_out;
mod server_restart;
mod shard_guard;
mod sparse;
mod sync;
mod watch;
mod watch_restarts;
mod write_order;
