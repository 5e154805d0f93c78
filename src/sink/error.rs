//! Errors at the target, each naming the fix.

/// Errors at the target. Each names the fix.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(
        "collection `{collection}` exists with {found}, but the model needs {wanted}; use another --collection-name, or pass --recreate to drop and rebuild it"
    )]
    Incompatible {
        collection: String,
        found: String,
        wanted: String,
    },
    #[error("collection `{0}` does not exist; run `mongo2qdrant sync` first")]
    NoCollection(String),
    #[error("Qdrant at {url}: {reason}; check --qdrant-url and that the server is running")]
    Connect { url: String, reason: String },
    #[error("Qdrant request `{op}` on `{collection}` failed: {reason}")]
    Request {
        op: &'static str,
        collection: String,
        reason: String,
        transient: bool,
    },
    #[error(
        "Qdrant refused a `{op}` request on `{collection}` as too large ({reason}); raise the server's service.max_request_size_mb, or copy fewer or smaller fields with --payload"
    )]
    TooLarge {
        op: &'static str,
        collection: String,
        reason: String,
    },
    #[error("embedded store at {path}: {reason}")]
    Store { path: String, reason: String },
    #[error(
        "collection `{collection}` has {setting} = {found}, and {wanted} was asked; {target} cannot change it on an existing collection: pass --recreate to drop and rebuild `{collection}` with it (every document is embedded again), or leave the setting as it is"
    )]
    FixedSetting {
        collection: String,
        setting: &'static str,
        found: String,
        wanted: String,
        target: String,
    },
    #[error(
        "{target} keeps a named vector added to `{collection}` after its first in RAM (on-disk storage is set when a collection is created): drop --on-disk, or give each named vector its own collection"
    )]
    OnDiskAdded { collection: String, target: String },
    #[error(
        "vector `{vector}` of collection `{collection}` has its own HNSW or quantization settings, which win over the collection's that mongo2qdrant sets: remove them from the vector (Qdrant's update-collection API), or leave out --hnsw-m, --hnsw-ef-construct and --quantization"
    )]
    Overridden { collection: String, vector: String },
    #[error("{target} has no {setting} setting: drop it (it belongs to a Qdrant server cluster)")]
    Unsupported {
        setting: &'static str,
        target: String,
    },
}

impl crate::retry::Transient for SinkError {
    /// Whether a retry may succeed (server unavailable, timeouts).
    fn is_transient(&self) -> bool {
        match self {
            SinkError::Request { transient, .. } => *transient,
            SinkError::Connect { .. } => true,
            _ => false,
        }
    }
}
