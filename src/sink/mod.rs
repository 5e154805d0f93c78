//! Sinks: where points go. [`Sink`] is implemented by the embedded Qdrant engine
//! ([`EdgeSink`], qdrant-edge, a directory per collection) and by a Qdrant server over gRPC
//! ([`GrpcSink`]). Every write returns only once the target has acknowledged it.

pub mod edge;
pub mod grpc;

use std::future::Future;

use serde_json::{Map, Value};
use uuid::Uuid;

pub use edge::EdgeSink;
pub use grpc::GrpcSink;

/// A point to write.
#[derive(Debug, Clone)]
pub struct Point {
    pub id: Uuid,
    pub vector: Vec<f32>,
    pub payload: Map<String, Value>,
}

/// A stored point's id and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    pub id: Uuid,
    pub payload: Map<String, Value>,
}

/// A search result.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: Uuid,
    pub score: f32,
    pub payload: Map<String, Value>,
}

/// Shape of a target collection's vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorSpec {
    /// `None`: the collection's single unnamed vector.
    pub name: Option<String>,
    pub dimension: usize,
}

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
    #[error("embedded store at {path}: {reason}")]
    Store { path: String, reason: String },
}

impl SinkError {
    /// Whether a retry may succeed (server unavailable, timeouts).
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Request { transient, .. } => *transient,
            SinkError::Connect { .. } => true,
            _ => false,
        }
    }
}

/// Equality filter on one keyword payload field.
#[derive(Debug, Clone)]
pub struct MatchFilter {
    pub key: String,
    pub value: String,
}

/// A Qdrant-like target.
pub trait Sink: Send + Sync + 'static {
    /// Human-readable target (path or URL) for logs.
    fn describe(&self) -> String;

    /// Whether concurrent runs must be kept apart with lease records in the target (a shared
    /// server). The embedded store is locked as a whole by the process that opens it instead.
    fn needs_lease(&self) -> bool {
        false
    }

    /// Create `collection` for `vectors` with cosine distance, or check that the existing one
    /// matches; an incompatible one is refused and left untouched unless `recreate`.
    fn ensure_collection(
        &self,
        collection: &str,
        vectors: &VectorSpec,
        recreate: bool,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Whether `collection` exists.
    fn exists(&self, collection: &str) -> impl Future<Output = Result<bool, SinkError>> + Send;

    /// Write `points`; returns after the target acknowledged them.
    fn upsert(
        &self,
        collection: &str,
        vector_name: Option<&str>,
        points: Vec<Point>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Payloads of the points among `ids` that exist.
    fn retrieve(
        &self,
        collection: &str,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<Vec<StoredPoint>, SinkError>> + Send;

    /// Delete `ids` (missing ones are ignored); returns after acknowledgement.
    fn delete(
        &self,
        collection: &str,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// One page of points (id order) matching `filter`, and the offset of the next page.
    fn scroll(
        &self,
        collection: &str,
        filter: Option<&MatchFilter>,
        offset: Option<Uuid>,
        limit: usize,
    ) -> impl Future<Output = Result<(Vec<StoredPoint>, Option<Uuid>), SinkError>> + Send;

    /// Nearest points to `vector`.
    fn search(
        &self,
        collection: &str,
        vector_name: Option<&str>,
        vector: Vec<f32>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Hit>, SinkError>> + Send;

    /// Exact number of points.
    fn count(&self, collection: &str) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Persist everything written so far (no-op where writes are durable on acknowledgement).
    fn flush(&self) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Every point of `collection` matching `filter`, page by page.
pub async fn scroll_all<S: Sink>(
    sink: &S,
    collection: &str,
    filter: Option<&MatchFilter>,
) -> Result<Vec<StoredPoint>, SinkError> {
    let mut out = Vec::new();
    let mut offset = None;
    loop {
        let (page, next) = sink.scroll(collection, filter, offset, 1000).await?;
        out.extend(page);
        match next {
            Some(n) => offset = Some(n),
            None => return Ok(out),
        }
    }
}
