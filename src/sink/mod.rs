//! Sinks: where points go. [`Sink`] is implemented by the embedded Qdrant engine
//! ([`EdgeSink`], qdrant-edge, a directory per collection) and by a Qdrant server over gRPC
//! ([`GrpcSink`]), chosen once as a [`Target`]; [`Retrying`] applies the retry policy around
//! every call. Every write returns only once the target has acknowledged it.

mod depth;
pub mod edge;
mod error;
pub mod fit;
pub mod grpc;
pub mod index;
mod retrying;
mod scroll;
pub mod settings;
mod shape;
mod target;

use std::future::Future;

use serde_json::{Map, Value};
use uuid::Uuid;

pub use depth::{MAX_GRPC_PAYLOAD_DEPTH, depth};
pub use edge::EdgeSink;
pub use error::SinkError;
pub use fit::{Ensure, ensure_collection};
pub use grpc::GrpcSink;
pub use index::{IndexSpec, StoredIndex};
pub use retrying::Retrying;
pub use scroll::{scroll_all, scroll_counted};
pub use settings::Settings;
pub use shape::{Distance, Shape, VectorParams, VectorSpec};
pub use target::{Target, TargetKind};

pub use crate::sparse::SparseVector;

/// A point to write.
#[derive(Debug, Clone)]
pub struct Point {
    pub id: Uuid,
    /// The dense vector; empty for a sparse-only job's point (none is written).
    pub vector: Vec<f32>,
    /// The sparse vector by name, when the job writes one.
    pub sparse: Option<(String, SparseVector)>,
    pub payload: Map<String, Value>,
}

/// A stored point's id and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    pub id: Uuid,
    pub payload: Map<String, Value>,
    /// Names of the vectors the point has (`""` for the unnamed one); filled only when asked
    /// for.
    pub vectors: Vec<String>,
    /// The dense vectors themselves by name (as `vectors`), when asked for.
    pub values: std::collections::BTreeMap<String, Vec<f32>>,
    /// The sparse vectors by name, when asked for (their names are in `vectors` too).
    pub sparse: std::collections::BTreeMap<String, SparseVector>,
}

/// Where a scroll goes on: a point id of either kind. Qdrant orders numeric ids before UUIDs,
/// so a collection that also holds points written by others (numeric ids) pages through both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageOffset {
    Uuid(Uuid),
    Num(u64),
}

/// One page of a scroll.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Our points (UUID ids).
    pub points: Vec<StoredPoint>,
    /// Points on the page with numeric ids: never written by this tool, so never trusted (not
    /// compared, not pruned), only counted.
    pub foreign: u64,
    /// Where the next page begins; `None` at the end.
    pub next: Option<PageOffset>,
}

/// A query: the dense vector, the sparse one, or both (fused by reciprocal rank).
#[derive(Debug, Clone)]
pub struct Query {
    /// The dense vector's name (`None`: the unnamed one) and the query vector.
    pub dense: Option<(Option<String>, Vec<f32>)>,
    /// The sparse vector's name and the query vector.
    pub sparse: Option<(String, SparseVector)>,
    pub limit: usize,
    /// Candidates each vector contributes to a fused query.
    pub prefetch: usize,
    /// Only points whose payload satisfies this (`search --filter`).
    pub filter: Option<crate::filter::Cond>,
    /// How the dense vector is searched.
    pub params: SearchParams,
}

/// How a dense vector is searched: with quantization, the candidates are rescored with the
/// original vectors unless `no_rescore`; `oversampling` candidates per result are taken from
/// the quantized vectors; `exact` compares every original vector (no HNSW, no quantization).
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchParams {
    pub no_rescore: bool,
    pub oversampling: Option<f64>,
    pub exact: bool,
}

/// A search result.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: Uuid,
    pub score: f32,
    pub payload: Map<String, Value>,
}

/// Which payload keys a read returns. Reading only the keys a decision needs keeps a point
/// readable whatever its other fields hold (a copied field nested too deep for gRPC's decoder
/// must not wedge every later run).
#[derive(Debug, Clone, Copy)]
pub enum Fields<'a> {
    All,
    /// These top-level keys, taken literally (a `.` in a key is not a path).
    Only(&'a [String]),
}

/// Equality filter on one keyword payload field.
#[derive(Debug, Clone)]
pub struct MatchFilter {
    pub key: String,
    pub value: String,
}

/// The condition of a conditional write ([`Sink::upsert_if`]), checked by the target in the
/// same operation as the write.
#[derive(Debug, Clone, Copy)]
pub enum WriteIf<'a> {
    /// Only if no point with this id exists.
    Absent,
    /// Only if the point exists and matches the filter.
    Matches(&'a MatchFilter),
}

/// A Qdrant-like target: the primitives each backend supplies. Decisions built on them (which
/// collection fits, the write protocol) live once, beside the trait ([`fit`], [`crate::writer`]).
pub trait Sink: Send + Sync + 'static {
    /// Human-readable target (path or URL) for logs.
    fn describe(&self) -> String;

    /// Whether concurrent runs must be kept apart with lease records in the target (a shared
    /// server). The embedded store is locked as a whole by the process that opens it instead.
    fn needs_lease(&self) -> bool {
        false
    }

    /// The deepest payload value (see [`depth`]) the target can return, if it is bounded.
    fn max_payload_depth(&self) -> Option<usize> {
        None
    }

    /// The vectors of `collection`, or `None` when it does not exist.
    fn shape(
        &self,
        collection: &str,
    ) -> impl Future<Output = Result<Option<Shape>, SinkError>> + Send;

    /// Create `collection` for `vectors` with the `settings` asked ([`settings`]).
    fn create_collection(
        &self,
        collection: &str,
        vectors: &VectorSpec,
        settings: &Settings,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// How the target handles the setting `key`.
    fn support(&self, key: settings::Key) -> settings::Support;

    /// The settings `collection` has.
    fn settings(
        &self,
        collection: &str,
    ) -> impl Future<Output = Result<Settings, SinkError>> + Send;

    /// Change the `changed` settings of `collection` to their values in `merged` (which holds
    /// every other setting as found); returns after acknowledgement.
    fn update_settings(
        &self,
        collection: &str,
        merged: &Settings,
        changed: &[settings::Key],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Add the named vector `name` (`dimension`, `distance`) to a collection of named vectors.
    fn add_vector(
        &self,
        collection: &str,
        name: &str,
        dimension: usize,
        distance: Distance,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The sparse vectors of `collection` by name, each with whether it has the `idf`
    /// modifier; `None` when the collection does not exist.
    fn sparse_vectors(
        &self,
        collection: &str,
    ) -> impl Future<Output = Result<Option<std::collections::BTreeMap<String, bool>>, SinkError>> + Send;

    /// Create `collection` with no dense vector and the sparse vector `name` (`idf` modifier),
    /// with the `settings` asked.
    fn create_sparse_collection(
        &self,
        collection: &str,
        name: &str,
        settings: &Settings,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Add the sparse vector `name` (`idf` modifier) to an existing collection.
    fn add_sparse(
        &self,
        collection: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Replace the sparse vector `name` of existing points, leaving their other vectors and
    /// their payload as they are; returns after acknowledgement.
    fn update_sparse(
        &self,
        collection: &str,
        name: &str,
        vectors: Vec<(Uuid, SparseVector)>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The best points for `query`: one vector's nearest, or both fused by reciprocal rank
    /// (Qdrant's Query API: a prefetch per vector, `rrf` over them).
    fn query(
        &self,
        collection: &str,
        query: Query,
    ) -> impl Future<Output = Result<Vec<Hit>, SinkError>> + Send;

    /// The payload indexes of `collection` by field.
    fn payload_indexes(
        &self,
        collection: &str,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<String, StoredIndex>, SinkError>> + Send;

    /// Create the payload index `index`; returns after acknowledgement.
    fn create_index(
        &self,
        collection: &str,
        index: &IndexSpec,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Drop the payload index on `field`; returns after acknowledgement.
    fn drop_index(
        &self,
        collection: &str,
        field: &str,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Drop `collection` with all its points.
    fn drop_collection(
        &self,
        collection: &str,
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

    /// The `fields` of the points among `ids` that exist, and the names of their vectors when
    /// `with_vectors`.
    fn retrieve(
        &self,
        collection: &str,
        ids: &[Uuid],
        fields: Fields<'_>,
        with_vectors: bool,
    ) -> impl Future<Output = Result<Vec<StoredPoint>, SinkError>> + Send;

    /// Write `point` (the collection's unnamed vector) only if `condition` holds, atomically on
    /// the target; whether it held is for the caller to read back. Returns after
    /// acknowledgement.
    fn upsert_if(
        &self,
        collection: &str,
        point: Point,
        condition: WriteIf<'_>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Replace the named vector `name` of existing points, leaving their other vectors and
    /// their payload as they are; returns after acknowledgement.
    fn update_vectors(
        &self,
        collection: &str,
        name: &str,
        vectors: Vec<(Uuid, Vec<f32>)>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Set the keys of `payload` on the existing points `ids`, keeping their other keys, or
    /// with `replace` instead of all their keys; returns after acknowledgement.
    fn set_payload(
        &self,
        collection: &str,
        ids: &[Uuid],
        payload: Map<String, Value>,
        replace: bool,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Remove the named vector `name` and the payload `keys` from `ids`, leaving the points,
    /// their other vectors and their other keys; returns after acknowledgement.
    fn remove_vector(
        &self,
        collection: &str,
        name: &str,
        ids: &[Uuid],
        keys: &[String],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Delete `ids` (missing ones are ignored); returns after acknowledgement.
    fn delete(
        &self,
        collection: &str,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// One page of points (id order) matching `filter` with their `fields`, and the offset of
    /// the next page (numeric or UUID).
    fn scroll(
        &self,
        collection: &str,
        filter: Option<&MatchFilter>,
        fields: Fields<'_>,
        offset: Option<PageOffset>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, SinkError>> + Send;

    /// Nearest points to `vector` (the dense vector `vector_name`): a [`Sink::query`].
    fn search(
        &self,
        collection: &str,
        vector_name: Option<&str>,
        vector: Vec<f32>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Hit>, SinkError>> + Send {
        let q = Query {
            dense: Some((vector_name.map(str::to_owned), vector)),
            sparse: None,
            limit,
            prefetch: limit,
            filter: None,
            params: SearchParams::default(),
        };
        self.query(collection, q)
    }

    /// Exact number of points.
    fn count(&self, collection: &str) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Persist everything written so far (no-op where writes are durable on acknowledgement).
    fn flush(&self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The HNSW `m` of `collection` (0: no graph is built), or `None` where the target has no
    /// such setting to change (the embedded store).
    fn hnsw_m(
        &self,
        _collection: &str,
    ) -> impl Future<Output = Result<Option<u64>, SinkError>> + Send {
        async { Ok(None) }
    }

    /// Set the HNSW `m` of `collection` (0 switches graph building off, a server's bulk-load
    /// setting); returns after acknowledgement.
    fn set_hnsw_m(
        &self,
        _collection: &str,
        _m: u64,
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Where the index of `collection` stands (`None` where the target does not say).
    fn index_state(
        &self,
        _collection: &str,
    ) -> impl Future<Output = Result<Option<IndexState>, SinkError>> + Send {
        async { Ok(None) }
    }
}

/// Where a collection's index stands on a server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexState {
    /// No optimisation running or pending (Qdrant's status green).
    pub settled: bool,
    /// The server reports the collection failed (Qdrant's status red).
    pub failed: bool,
    pub points: u64,
    /// Vectors in the HNSW graph.
    pub indexed: u64,
}
