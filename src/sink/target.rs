//! The target chosen once from the settings: the commands use one [`Target`] and never match on
//! its kind again.

use std::path::PathBuf;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    Distance, EdgeSink, Fields, GrpcSink, Hit, IndexState, MatchFilter, Page, PageOffset, Point,
    Query, Settings, Shape, Sink, SinkError, SparseVector, StoredPoint, VectorSpec, WriteIf,
};
use crate::sink::settings::{Key, Support};

/// Where points go, as configured.
#[derive(Debug, Clone)]
pub enum TargetKind {
    Grpc {
        url: String,
        api_key: Option<String>,
    },
    Embedded {
        path: PathBuf,
    },
}

/// An open target: the embedded store or a Qdrant server.
pub enum Target {
    Edge(EdgeSink),
    Grpc(GrpcSink),
}

impl Target {
    /// Open the target `kind` describes (a server is reached lazily, on the first call).
    pub fn open(kind: &TargetKind) -> Result<Self, SinkError> {
        Ok(match kind {
            TargetKind::Grpc { url, api_key } => {
                Target::Grpc(GrpcSink::connect(url, api_key.clone())?)
            }
            TargetKind::Embedded { path } => Target::Edge(EdgeSink::open(path)?),
        })
    }
}

/// Forward a call to whichever backend this is.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Target::Edge($s) => $call,
            Target::Grpc($s) => $call,
        }
    };
}

impl Sink for Target {
    fn describe(&self) -> String {
        each!(self, s => s.describe())
    }

    fn needs_lease(&self) -> bool {
        each!(self, s => s.needs_lease())
    }

    fn max_payload_depth(&self) -> Option<usize> {
        each!(self, s => s.max_payload_depth())
    }

    async fn shape(&self, c: &str) -> Result<Option<Shape>, SinkError> {
        each!(self, s => s.shape(c).await)
    }

    async fn create_collection(
        &self,
        c: &str,
        v: &VectorSpec,
        settings: &Settings,
    ) -> Result<(), SinkError> {
        each!(self, s => s.create_collection(c, v, settings).await)
    }

    fn support(&self, key: Key) -> Support {
        each!(self, s => s.support(key))
    }

    async fn settings(&self, c: &str) -> Result<Settings, SinkError> {
        each!(self, s => s.settings(c).await)
    }

    async fn update_settings(
        &self,
        c: &str,
        merged: &Settings,
        changed: &[Key],
    ) -> Result<(), SinkError> {
        each!(self, s => s.update_settings(c, merged, changed).await)
    }

    async fn add_vector(
        &self,
        c: &str,
        name: &str,
        dimension: usize,
        distance: Distance,
    ) -> Result<(), SinkError> {
        each!(self, s => s.add_vector(c, name, dimension, distance).await)
    }

    async fn sparse_vectors(
        &self,
        c: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, bool>>, SinkError> {
        each!(self, s => s.sparse_vectors(c).await)
    }

    async fn create_sparse_collection(
        &self,
        c: &str,
        name: &str,
        settings: &Settings,
    ) -> Result<(), SinkError> {
        each!(self, s => s.create_sparse_collection(c, name, settings).await)
    }

    async fn add_sparse(&self, c: &str, name: &str) -> Result<(), SinkError> {
        each!(self, s => s.add_sparse(c, name).await)
    }

    async fn update_sparse(
        &self,
        c: &str,
        name: &str,
        v: Vec<(Uuid, SparseVector)>,
    ) -> Result<(), SinkError> {
        each!(self, s => s.update_sparse(c, name, v).await)
    }

    async fn query(&self, c: &str, q: Query) -> Result<Vec<Hit>, SinkError> {
        each!(self, s => s.query(c, q).await)
    }

    async fn payload_indexes(
        &self,
        c: &str,
    ) -> Result<std::collections::BTreeMap<String, super::StoredIndex>, SinkError> {
        each!(self, s => s.payload_indexes(c).await)
    }

    async fn create_index(&self, c: &str, i: &super::IndexSpec) -> Result<(), SinkError> {
        each!(self, s => s.create_index(c, i).await)
    }

    async fn drop_index(&self, c: &str, f: &str) -> Result<(), SinkError> {
        each!(self, s => s.drop_index(c, f).await)
    }

    async fn drop_collection(&self, c: &str) -> Result<(), SinkError> {
        each!(self, s => s.drop_collection(c).await)
    }

    async fn exists(&self, c: &str) -> Result<bool, SinkError> {
        each!(self, s => s.exists(c).await)
    }

    async fn upsert(&self, c: &str, name: Option<&str>, p: Vec<Point>) -> Result<(), SinkError> {
        each!(self, s => s.upsert(c, name, p).await)
    }

    async fn retrieve(
        &self,
        c: &str,
        ids: &[Uuid],
        fields: Fields<'_>,
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, SinkError> {
        each!(self, s => s.retrieve(c, ids, fields, with_vectors).await)
    }

    async fn upsert_if(&self, c: &str, p: Point, cond: WriteIf<'_>) -> Result<(), SinkError> {
        each!(self, s => s.upsert_if(c, p, cond).await)
    }

    async fn update_vectors(
        &self,
        c: &str,
        name: &str,
        v: Vec<(Uuid, Vec<f32>)>,
    ) -> Result<(), SinkError> {
        each!(self, s => s.update_vectors(c, name, v).await)
    }

    async fn set_payload(
        &self,
        c: &str,
        ids: &[Uuid],
        p: Map<String, Value>,
        replace: bool,
    ) -> Result<(), SinkError> {
        each!(self, s => s.set_payload(c, ids, p, replace).await)
    }

    async fn remove_vector(
        &self,
        c: &str,
        name: &str,
        ids: &[Uuid],
        keys: &[String],
    ) -> Result<(), SinkError> {
        each!(self, s => s.remove_vector(c, name, ids, keys).await)
    }

    async fn delete(&self, c: &str, ids: &[Uuid]) -> Result<(), SinkError> {
        each!(self, s => s.delete(c, ids).await)
    }

    async fn scroll(
        &self,
        c: &str,
        f: Option<&MatchFilter>,
        fields: Fields<'_>,
        offset: Option<PageOffset>,
        limit: usize,
    ) -> Result<Page, SinkError> {
        each!(self, s => s.scroll(c, f, fields, offset, limit).await)
    }

    async fn search(
        &self,
        c: &str,
        name: Option<&str>,
        v: Vec<f32>,
        limit: usize,
    ) -> Result<Vec<Hit>, SinkError> {
        each!(self, s => s.search(c, name, v, limit).await)
    }

    async fn count(&self, c: &str) -> Result<u64, SinkError> {
        each!(self, s => s.count(c).await)
    }

    async fn flush(&self) -> Result<(), SinkError> {
        each!(self, s => s.flush().await)
    }

    async fn hnsw_m(&self, c: &str) -> Result<Option<u64>, SinkError> {
        each!(self, s => s.hnsw_m(c).await)
    }

    async fn set_hnsw_m(&self, c: &str, m: u64) -> Result<(), SinkError> {
        each!(self, s => s.set_hnsw_m(c, m).await)
    }

    async fn index_state(&self, c: &str) -> Result<Option<IndexState>, SinkError> {
        each!(self, s => s.index_state(c).await)
    }
}
