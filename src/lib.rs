//! mongo2qdrant: reindex MongoDB collections into Qdrant directly — no Kafka, no duplicates,
//! resumable.
//!
//! The crate follows the data flow: [`source`] (MongoDB cursors, mongoexport files) ->
//! [`point`] (template, payload, ids and hashes of a document's points) -> [`embed`] (ONNX
//! Runtime) -> [`writer`] (the write protocol) -> [`sink`] (embedded Qdrant or a server over
//! gRPC, one [`sink::Target`]). [`pipeline`] wires the stages; [`state`] owns the records
//! collection (checkpoints, leases, run reports); [`report`] the counters; [`retry`] the one
//! retry policy. The binary's command line lives in [`cli`] and [`config`], its commands in
//! [`commands`].

pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod embed;
pub mod fidelity;
pub mod filter;
pub mod ids;
pub mod metrics;
pub mod pipeline;
pub mod point;
pub mod progress;
pub mod redact;
pub mod report;
pub mod retry;
pub mod shard;
pub mod sink;
pub mod source;
pub mod sparse;
pub mod state;
pub mod text;
pub mod verify;
pub mod writer;
