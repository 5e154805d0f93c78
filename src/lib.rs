//! mongo2qdrant: reindex MongoDB collections into Qdrant directly — no Kafka, no duplicates,
//! resumable.
//!
//! The crate follows the data flow: [`source`] (MongoDB cursors, mongoexport files) ->
//! [`text`] (template, payload) -> [`embed`] (ONNX Runtime) -> [`sink`] (embedded Qdrant or a
//! server over gRPC), with point identity in [`ids`], resumable progress in [`checkpoint`] and
//! the wiring in [`pipeline`]. The binary's command line lives in [`cli`] and [`config`].

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod embed;
pub mod ids;
pub mod lease;
pub mod pipeline;
pub mod progress;
pub mod sink;
pub mod source;
pub mod text;
pub mod verify;
