//! The retry policy as a layer: every call through [`Retrying`] is retried on transient errors,
//! so the code above it (writer, pipeline, state) calls the target plainly.

use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    Distance, Fields, Hit, IndexState, MatchFilter, Page, PageOffset, Point, Query, Settings,
    Shape, Sink, SinkError, SparseVector, StoredPoint, VectorSpec, WriteIf,
};
use crate::retry::RetryPolicy;
use crate::sink::settings::{Key, Support};

/// `inner` with `policy` applied around every call.
pub struct Retrying<S> {
    inner: Arc<S>,
    policy: RetryPolicy,
}

impl<S> Retrying<S> {
    pub fn new(inner: Arc<S>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }
}

impl<S: Sink> Sink for Retrying<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn needs_lease(&self) -> bool {
        self.inner.needs_lease()
    }

    fn max_payload_depth(&self) -> Option<usize> {
        self.inner.max_payload_depth()
    }

    async fn shape(&self, c: &str) -> Result<Option<Shape>, SinkError> {
        self.policy
            .run("collection info", || self.inner.shape(c))
            .await
    }

    async fn create_collection(
        &self,
        c: &str,
        v: &VectorSpec,
        settings: &Settings,
    ) -> Result<(), SinkError> {
        self.policy
            .run("create collection", || {
                self.inner.create_collection(c, v, settings)
            })
            .await
    }

    async fn add_vector(
        &self,
        c: &str,
        name: &str,
        dimension: usize,
        distance: Distance,
    ) -> Result<(), SinkError> {
        self.policy
            .run("add vector", || {
                self.inner.add_vector(c, name, dimension, distance)
            })
            .await
    }

    async fn sparse_vectors(
        &self,
        c: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, bool>>, SinkError> {
        self.policy
            .run("collection info", || self.inner.sparse_vectors(c))
            .await
    }

    async fn create_sparse_collection(
        &self,
        c: &str,
        name: &str,
        settings: &Settings,
    ) -> Result<(), SinkError> {
        self.policy
            .run("create collection", || {
                self.inner.create_sparse_collection(c, name, settings)
            })
            .await
    }

    async fn add_sparse(&self, c: &str, name: &str) -> Result<(), SinkError> {
        self.policy
            .run("add sparse vector", || self.inner.add_sparse(c, name))
            .await
    }

    async fn update_sparse(
        &self,
        c: &str,
        name: &str,
        v: Vec<(Uuid, SparseVector)>,
    ) -> Result<(), SinkError> {
        self.policy
            .run("update sparse vectors", || {
                self.inner.update_sparse(c, name, v.clone())
            })
            .await
    }

    async fn query(&self, c: &str, q: Query) -> Result<Vec<Hit>, SinkError> {
        self.policy
            .run("query", || self.inner.query(c, q.clone()))
            .await
    }

    async fn payload_indexes(
        &self,
        c: &str,
    ) -> Result<std::collections::BTreeMap<String, super::StoredIndex>, SinkError> {
        self.policy
            .run("collection info", || self.inner.payload_indexes(c))
            .await
    }

    async fn create_index(&self, c: &str, i: &super::IndexSpec) -> Result<(), SinkError> {
        self.policy
            .run("create payload index", || self.inner.create_index(c, i))
            .await
    }

    async fn drop_index(&self, c: &str, f: &str) -> Result<(), SinkError> {
        self.policy
            .run("drop payload index", || self.inner.drop_index(c, f))
            .await
    }

    async fn drop_collection(&self, c: &str) -> Result<(), SinkError> {
        self.policy
            .run("drop collection", || self.inner.drop_collection(c))
            .await
    }

    async fn exists(&self, c: &str) -> Result<bool, SinkError> {
        self.policy
            .run("collection exists", || self.inner.exists(c))
            .await
    }

    async fn upsert(&self, c: &str, name: Option<&str>, p: Vec<Point>) -> Result<(), SinkError> {
        self.policy
            .run("upsert", || self.inner.upsert(c, name, p.clone()))
            .await
    }

    async fn retrieve(
        &self,
        c: &str,
        ids: &[Uuid],
        fields: Fields<'_>,
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, SinkError> {
        self.policy
            .run("lookup", || {
                self.inner.retrieve(c, ids, fields, with_vectors)
            })
            .await
    }

    async fn upsert_if(&self, c: &str, p: Point, cond: WriteIf<'_>) -> Result<(), SinkError> {
        self.policy
            .run("conditional upsert", || {
                self.inner.upsert_if(c, p.clone(), cond)
            })
            .await
    }

    async fn update_vectors(
        &self,
        c: &str,
        name: &str,
        v: Vec<(Uuid, Vec<f32>)>,
    ) -> Result<(), SinkError> {
        self.policy
            .run("update vectors", || {
                self.inner.update_vectors(c, name, v.clone())
            })
            .await
    }

    async fn set_payload(
        &self,
        c: &str,
        ids: &[Uuid],
        p: Map<String, Value>,
        replace: bool,
    ) -> Result<(), SinkError> {
        self.policy
            .run("set payload", || {
                self.inner.set_payload(c, ids, p.clone(), replace)
            })
            .await
    }

    async fn remove_vector(
        &self,
        c: &str,
        name: &str,
        ids: &[Uuid],
        keys: &[String],
    ) -> Result<(), SinkError> {
        self.policy
            .run("remove vector", || {
                self.inner.remove_vector(c, name, ids, keys)
            })
            .await
    }

    async fn delete(&self, c: &str, ids: &[Uuid]) -> Result<(), SinkError> {
        self.policy
            .run("delete", || self.inner.delete(c, ids))
            .await
    }

    async fn scroll(
        &self,
        c: &str,
        f: Option<&MatchFilter>,
        fields: Fields<'_>,
        offset: Option<PageOffset>,
        limit: usize,
    ) -> Result<Page, SinkError> {
        self.policy
            .run("scroll", || self.inner.scroll(c, f, fields, offset, limit))
            .await
    }

    async fn search(
        &self,
        c: &str,
        name: Option<&str>,
        v: Vec<f32>,
        limit: usize,
    ) -> Result<Vec<Hit>, SinkError> {
        self.policy
            .run("search", || self.inner.search(c, name, v.clone(), limit))
            .await
    }

    async fn count(&self, c: &str) -> Result<u64, SinkError> {
        self.policy.run("count", || self.inner.count(c)).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.policy.run("flush", || self.inner.flush()).await
    }

    async fn hnsw_m(&self, c: &str) -> Result<Option<u64>, SinkError> {
        self.policy
            .run("collection info", || self.inner.hnsw_m(c))
            .await
    }

    async fn set_hnsw_m(&self, c: &str, m: u64) -> Result<(), SinkError> {
        self.policy
            .run("update collection", || self.inner.set_hnsw_m(c, m))
            .await
    }

    fn support(&self, key: Key) -> Support {
        self.inner.support(key)
    }

    async fn settings(&self, c: &str) -> Result<Settings, SinkError> {
        self.policy
            .run("collection info", || self.inner.settings(c))
            .await
    }

    async fn update_settings(
        &self,
        c: &str,
        merged: &Settings,
        changed: &[Key],
    ) -> Result<(), SinkError> {
        self.policy
            .run("update collection", || {
                self.inner.update_settings(c, merged, changed)
            })
            .await
    }

    async fn index_state(&self, c: &str) -> Result<Option<IndexState>, SinkError> {
        self.policy
            .run("collection info", || self.inner.index_state(c))
            .await
    }
}
