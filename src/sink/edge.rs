//! Embedded target: Qdrant's own engine in-process (qdrant-edge). Each collection is one edge
//! shard in `<root>/<collection>/`; writes go through its write-ahead log before they return.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use qdrant_edge::{
    Condition, CountRequest, Distance, EdgeConfig, EdgeShard, EdgeVectorParams, FieldCondition,
    Filter, Match, PointId, PointInsertOperations, PointOperations, PointStruct, QueryEnum,
    QueryRequest, RetrieveRequest, ScoringQuery, ScrollRequest, UpdateOperation,
    WithPayloadInterface, WithVector,
};
use serde_json::Value;
use uuid::Uuid;

use super::{Hit, MatchFilter, Point, Sink, SinkError, StoredPoint, VectorSpec};

/// A directory of embedded Qdrant collections.
pub struct EdgeSink {
    root: PathBuf,
    shards: Mutex<HashMap<String, Arc<EdgeShard>>>,
}

impl EdgeSink {
    /// Open (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, SinkError> {
        std::fs::create_dir_all(root).map_err(|e| SinkError::Store {
            path: root.display().to_string(),
            reason: format!("cannot create the directory: {e}"),
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            shards: Mutex::new(HashMap::new()),
        })
    }

    fn dir(&self, collection: &str) -> PathBuf {
        self.root.join(collection)
    }

    fn store_err(&self, collection: &str, e: impl std::fmt::Display) -> SinkError {
        SinkError::Store {
            path: self.dir(collection).display().to_string(),
            reason: e.to_string(),
        }
    }

    /// The open shard of `collection`, loading it from disk on first use.
    fn shard(&self, collection: &str) -> Result<Arc<EdgeShard>, SinkError> {
        let mut shards = self.shards.lock().expect("shard map poisoned");
        if let Some(s) = shards.get(collection) {
            return Ok(s.clone());
        }
        let dir = self.dir(collection);
        if !dir.join("edge_config.json").is_file() {
            return Err(SinkError::NoCollection(collection.to_owned()));
        }
        let shard =
            Arc::new(EdgeShard::load(&dir, None).map_err(|e| self.store_err(collection, e))?);
        shards.insert(collection.to_owned(), shard.clone());
        Ok(shard)
    }

    /// Run blocking engine work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        collection: &str,
        f: impl FnOnce(Arc<EdgeShard>) -> Result<T, String> + Send + 'static,
    ) -> Result<T, SinkError> {
        let shard = self.shard(collection)?;
        tokio::task::spawn_blocking(move || f(shard))
            .await
            .map_err(|e| self.store_err(collection, e))?
            .map_err(|e| self.store_err(collection, e))
    }
}

fn vector_key(name: Option<&str>) -> String {
    name.unwrap_or("").to_owned()
}

fn describe_params(p: &EdgeVectorParams) -> String {
    format!("dimension {} and {:?} distance", p.size, p.distance)
}

fn uuid_of(id: PointId) -> Option<Uuid> {
    match id {
        PointId::Uuid(u) => Some(u),
        PointId::NumId(_) => None,
    }
}

/// A stored point from an engine record (points with numeric ids are not ours).
fn stored(r: qdrant_edge::Record) -> Option<StoredPoint> {
    Some(StoredPoint {
        id: uuid_of(r.id)?,
        payload: r.payload.map(|p| p.0).unwrap_or_default(),
    })
}

fn to_filter(f: Option<&MatchFilter>) -> Result<Option<Filter>, String> {
    f.map(|f| {
        let key = f.key.as_str().try_into().map_err(|e| format!("{e:?}"))?;
        Ok(Filter::new_must(Condition::Field(
            FieldCondition::new_match(key, Match::from(f.value.clone())),
        )))
    })
    .transpose()
}

impl Sink for EdgeSink {
    fn describe(&self) -> String {
        format!("embedded Qdrant at {}", self.root.display())
    }

    async fn ensure_collection(
        &self,
        collection: &str,
        vectors: &VectorSpec,
        recreate: bool,
    ) -> Result<(), SinkError> {
        let wanted = EdgeVectorParams::builder(vectors.dimension, Distance::Cosine).build();
        let key = vector_key(vectors.name.as_deref());
        let dir = self.dir(collection);
        if dir.join("edge_config.json").is_file() {
            let shard = self.shard(collection)?;
            let found = shard.config().vectors.get(&key).cloned();
            let ok = found
                .as_ref()
                .is_some_and(|f| f.size == wanted.size && f.distance == wanted.distance);
            if ok {
                return Ok(());
            }
            if !recreate {
                return Err(SinkError::Incompatible {
                    collection: collection.to_owned(),
                    found: found.map_or_else(
                        || format!("no vector named `{key}`"),
                        |f| describe_params(&f),
                    ),
                    wanted: describe_params(&wanted),
                });
            }
            self.shards
                .lock()
                .expect("shard map poisoned")
                .remove(collection);
            drop(shard);
            std::fs::remove_dir_all(&dir).map_err(|e| self.store_err(collection, e))?;
        }
        let config = EdgeConfig::builder().vector(key, wanted).build();
        let shard = EdgeShard::new(&dir, config).map_err(|e| self.store_err(collection, e))?;
        self.shards
            .lock()
            .expect("shard map poisoned")
            .insert(collection.to_owned(), Arc::new(shard));
        Ok(())
    }

    async fn exists(&self, collection: &str) -> Result<bool, SinkError> {
        Ok(self.dir(collection).join("edge_config.json").is_file())
    }

    async fn upsert(
        &self,
        collection: &str,
        vector_name: Option<&str>,
        points: Vec<Point>,
    ) -> Result<(), SinkError> {
        let name = vector_name.map(str::to_owned);
        self.blocking(collection, move |shard| {
            let points = points
                .into_iter()
                .map(|p| {
                    let vectors: qdrant_edge::Vectors = match &name {
                        None => p.vector.into(),
                        Some(n) => vec![(n.clone(), p.vector)].into(),
                    };
                    PointStruct::new(PointId::Uuid(p.id), vectors, Value::Object(p.payload)).into()
                })
                .collect();
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
                ))
                .map_err(|e| e.to_string())
        })
        .await
    }

    async fn retrieve(
        &self,
        collection: &str,
        ids: &[Uuid],
    ) -> Result<Vec<StoredPoint>, SinkError> {
        let ids: Vec<PointId> = ids.iter().map(|u| PointId::Uuid(*u)).collect();
        self.blocking(collection, move |shard| {
            let mut req = RetrieveRequest::new(ids);
            req.with_payload = Some(WithPayloadInterface::Bool(true));
            req.with_vector = Some(WithVector::Bool(false));
            let records = shard.retrieve(req).map_err(|e| e.to_string())?;
            Ok(records.into_iter().filter_map(stored).collect())
        })
        .await
    }

    async fn delete(&self, collection: &str, ids: &[Uuid]) -> Result<(), SinkError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<PointId> = ids.iter().map(|u| PointId::Uuid(*u)).collect();
        self.blocking(collection, move |shard| {
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::DeletePoints { ids },
                ))
                .map_err(|e| e.to_string())
        })
        .await
    }

    async fn scroll(
        &self,
        collection: &str,
        filter: Option<&MatchFilter>,
        offset: Option<Uuid>,
        limit: usize,
    ) -> Result<(Vec<StoredPoint>, Option<Uuid>), SinkError> {
        let filter = to_filter(filter).map_err(|e| self.store_err(collection, e))?;
        self.blocking(collection, move |shard| {
            let mut req = ScrollRequest::new();
            req.offset = offset.map(PointId::Uuid);
            req.limit = Some(limit);
            req.filter = filter;
            req.with_payload = Some(WithPayloadInterface::Bool(true));
            let (records, next) = shard.scroll(req).map_err(|e| e.to_string())?;
            let points = records.into_iter().filter_map(stored).collect();
            Ok((points, next.and_then(uuid_of)))
        })
        .await
    }

    async fn search(
        &self,
        collection: &str,
        vector_name: Option<&str>,
        vector: Vec<f32>,
        limit: usize,
    ) -> Result<Vec<Hit>, SinkError> {
        let using = vector_name.map(str::to_owned);
        self.blocking(collection, move |shard| {
            let mut req = QueryRequest::new(limit);
            req.query = Some(ScoringQuery::Vector(QueryEnum::Nearest(
                qdrant_edge::NamedQuery {
                    query: qdrant_edge::VectorInternal::Dense(vector),
                    using,
                },
            )));
            req.with_payload = WithPayloadInterface::Bool(true);
            let points = shard.query(req).map_err(|e| e.to_string())?;
            Ok(points
                .into_iter()
                .filter_map(|p| {
                    Some(Hit {
                        id: uuid_of(p.id)?,
                        score: p.score,
                        payload: p.payload.map(|p| p.0).unwrap_or_default(),
                    })
                })
                .collect())
        })
        .await
    }

    async fn count(&self, collection: &str) -> Result<u64, SinkError> {
        self.blocking(collection, |shard| {
            let mut req = CountRequest::new();
            req.exact = true;
            shard
                .count(req)
                .map(|n| n as u64)
                .map_err(|e| e.to_string())
        })
        .await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let shards: Vec<(String, Arc<EdgeShard>)> = self
            .shards
            .lock()
            .expect("shard map poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, shard) in shards {
            tokio::task::spawn_blocking(move || shard.flush())
                .await
                .map_err(|e| self.store_err(&name, e))?
                .map_err(|e| self.store_err(&name, e))?;
        }
        Ok(())
    }
}
