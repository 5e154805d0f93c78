//! Embedded target: Qdrant's own engine in-process (qdrant-edge). Each collection is one edge
//! shard in `<root>/<collection>/`; writes go through its write-ahead log before they return.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use qdrant_edge::{
    ConditionalInsertOperation, CountRequest, CreateVectorName, DeletePayloadOp, DenseVectorConfig,
    EdgeConfig, EdgeShard, EdgeVectorParams, Filter, JsonPath, PayloadOps, PointId,
    PointInsertOperations, PointOperations, PointStruct, PointVectorsPersisted, RetrieveRequest,
    ScrollRequest, SetPayloadOp, UpdateMode, UpdateOperation, UpdateVectorsOp, VectorNameConfig,
    VectorNameOperations, VectorOperations, VectorPersisted, VectorStructPersisted, WithVector,
};
use serde_json::{Map, Value};
use uuid::Uuid;

mod convert;
mod index;
mod settings;
mod sparse;
mod store;

use super::{
    Fields, Hit, IndexSpec, MatchFilter, Page, PageOffset, Point, Query, Settings, Shape, Sink,
    SinkError, SparseVector, StoredIndex, StoredPoint, VectorParams, VectorSpec, WriteIf,
};
use crate::sink::settings::{Key, Support};
use convert::{distance, point_ids, stored, to_filter, vector_key, with_payload};

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
}

impl Sink for EdgeSink {
    fn describe(&self) -> String {
        format!("embedded Qdrant at {}", self.root.display())
    }

    async fn shape(&self, collection: &str) -> Result<Option<Shape>, SinkError> {
        if !self.dir(collection).join("edge_config.json").is_file() {
            return Ok(None);
        }
        let shard = self.shard(collection)?;
        let config = shard.config();
        let params = |p: &EdgeVectorParams| VectorParams {
            dimension: p.size,
            distance: format!("{:?}", p.distance),
        };
        Ok(Some(match config.vectors.get("") {
            Some(p) if config.vectors.len() == 1 => Shape::Unnamed(params(p)),
            _ => Shape::Named(
                config
                    .vectors
                    .iter()
                    .map(|(k, p)| (k.clone(), params(p)))
                    .collect(),
            ),
        }))
    }

    async fn create_collection(
        &self,
        collection: &str,
        vectors: &VectorSpec,
        asked: &Settings,
    ) -> Result<(), SinkError> {
        let wanted =
            EdgeVectorParams::builder(vectors.dimension, distance(vectors.distance)).build();
        let config = EdgeConfig::builder()
            .vector(
                vector_key(vectors.name.as_deref()),
                settings::vector_params(wanted, asked),
            )
            .build();
        self.create_shard(collection, config, asked)
    }

    fn support(&self, key: Key) -> Support {
        settings::support(key)
    }

    async fn settings(&self, collection: &str) -> Result<Settings, SinkError> {
        Ok(settings::read(&self.shard(collection)?.config()))
    }

    async fn update_settings(&self, c: &str, s: &Settings, keys: &[Key]) -> Result<(), SinkError> {
        self.change_settings(c, s, keys).await
    }

    async fn add_vector(
        &self,
        collection: &str,
        name: &str,
        dimension: usize,
        d: crate::sink::Distance,
    ) -> Result<(), SinkError> {
        let op = CreateVectorName {
            vector_name: name.to_owned(),
            config: VectorNameConfig::dense(DenseVectorConfig {
                size: dimension,
                distance: distance(d),
                multivector_config: None,
                datatype: None,
            }),
        };
        self.apply(
            collection,
            UpdateOperation::VectorNameOperation(VectorNameOperations::CreateVectorName(op)),
        )
        .await
    }

    async fn drop_collection(&self, collection: &str) -> Result<(), SinkError> {
        // The open shard must be gone before its files are.
        self.shards
            .lock()
            .expect("shard map poisoned")
            .remove(collection);
        std::fs::remove_dir_all(self.dir(collection)).map_err(|e| self.store_err(collection, e))
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
                    let vectors = sparse::point_vectors(name.as_deref(), p.vector, p.sparse);
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
        fields: Fields<'_>,
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, SinkError> {
        let ids = point_ids(ids);
        let with_payload = with_payload(fields);
        self.blocking(collection, move |shard| {
            let mut req = RetrieveRequest::new(ids);
            req.with_payload = Some(with_payload);
            req.with_vector = Some(WithVector::Bool(with_vectors));
            let records = shard.retrieve(req).map_err(|e| e.to_string())?;
            Ok(records.into_iter().filter_map(stored).collect())
        })
        .await
    }

    async fn upsert_if(
        &self,
        collection: &str,
        point: Point,
        condition: WriteIf<'_>,
    ) -> Result<(), SinkError> {
        let (mode, filter) = match condition {
            WriteIf::Absent => (UpdateMode::InsertOnly, Filter::default()),
            WriteIf::Matches(f) => (
                UpdateMode::UpdateOnly,
                to_filter(Some(f))
                    .map_err(|e| self.store_err(collection, e))?
                    .unwrap_or_default(),
            ),
        };
        let vectors: qdrant_edge::Vectors = point.vector.into();
        let point = PointStruct::new(
            PointId::Uuid(point.id),
            vectors,
            Value::Object(point.payload),
        );
        let op = ConditionalInsertOperation {
            points_op: PointInsertOperations::PointsList(vec![point.into()]),
            condition: filter,
            update_mode: Some(mode),
        };
        self.apply(
            collection,
            UpdateOperation::PointOperation(PointOperations::UpsertPointsConditional(op)),
        )
        .await
    }

    async fn update_vectors(
        &self,
        collection: &str,
        name: &str,
        vectors: Vec<(Uuid, Vec<f32>)>,
    ) -> Result<(), SinkError> {
        if vectors.is_empty() {
            return Ok(());
        }
        let points = vectors
            .into_iter()
            .map(|(id, v)| PointVectorsPersisted {
                id: PointId::Uuid(id),
                vector: VectorStructPersisted::Named(
                    [(name.to_owned(), VectorPersisted::Dense(v))].into(),
                ),
            })
            .collect();
        let op = VectorOperations::UpdateVectors(UpdateVectorsOp {
            points,
            update_filter: None,
        });
        self.apply(collection, UpdateOperation::VectorOperation(op))
            .await
    }

    async fn set_payload(
        &self,
        collection: &str,
        ids: &[Uuid],
        payload: Map<String, Value>,
        replace: bool,
    ) -> Result<(), SinkError> {
        if ids.is_empty() {
            return Ok(());
        }
        let set = SetPayloadOp {
            payload: payload.into(),
            points: Some(point_ids(ids)),
            filter: None,
            key: None,
        };
        let op = if replace {
            PayloadOps::OverwritePayload(set)
        } else {
            PayloadOps::SetPayload(set)
        };
        self.apply(collection, UpdateOperation::PayloadOperation(op))
            .await
    }

    async fn remove_vector(
        &self,
        collection: &str,
        name: &str,
        ids: &[Uuid],
        keys: &[String],
    ) -> Result<(), SinkError> {
        if ids.is_empty() {
            return Ok(());
        }
        let op = VectorOperations::DeleteVectors(point_ids(ids).into(), vec![name.to_owned()]);
        self.apply(collection, UpdateOperation::VectorOperation(op))
            .await?;
        let keys = keys
            .iter()
            .map(|k| {
                JsonPath::try_from(k.as_str())
                    .map_err(|e| self.store_err(collection, format!("{e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let op = PayloadOps::DeletePayload(DeletePayloadOp {
            keys,
            points: Some(point_ids(ids)),
            filter: None,
        });
        self.apply(collection, UpdateOperation::PayloadOperation(op))
            .await
    }

    async fn delete(&self, collection: &str, ids: &[Uuid]) -> Result<(), SinkError> {
        if ids.is_empty() {
            return Ok(());
        }
        let op = PointOperations::DeletePoints {
            ids: point_ids(ids),
        };
        self.apply(collection, UpdateOperation::PointOperation(op))
            .await
    }

    async fn scroll(
        &self,
        collection: &str,
        filter: Option<&MatchFilter>,
        fields: Fields<'_>,
        offset: Option<PageOffset>,
        limit: usize,
    ) -> Result<Page, SinkError> {
        let filter = to_filter(filter).map_err(|e| self.store_err(collection, e))?;
        let with_payload = with_payload(fields);
        self.blocking(collection, move |shard| {
            let mut req = ScrollRequest::new();
            req.offset = offset.map(|o| match o {
                PageOffset::Uuid(u) => PointId::Uuid(u),
                PageOffset::Num(n) => PointId::NumId(n),
            });
            req.limit = Some(limit);
            req.filter = filter;
            req.with_payload = Some(with_payload);
            let (records, next) = shard.scroll(req).map_err(|e| e.to_string())?;
            let total = records.len() as u64;
            let points: Vec<StoredPoint> = records.into_iter().filter_map(stored).collect();
            let next = next.map(|id| match id {
                PointId::Uuid(u) => PageOffset::Uuid(u),
                PointId::NumId(n) => PageOffset::Num(n),
            });
            Ok(Page {
                foreign: total - points.len() as u64,
                points,
                next,
            })
        })
        .await
    }

    async fn sparse_vectors(
        &self,
        collection: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, bool>>, SinkError> {
        self.sparse_of(collection).await
    }

    async fn create_sparse_collection(
        &self,
        collection: &str,
        name: &str,
        asked: &Settings,
    ) -> Result<(), SinkError> {
        self.create_sparse_only(collection, name, asked)
    }

    async fn add_sparse(&self, collection: &str, name: &str) -> Result<(), SinkError> {
        self.add_sparse_vector(collection, name).await
    }

    async fn update_sparse(
        &self,
        collection: &str,
        name: &str,
        vectors: Vec<(Uuid, SparseVector)>,
    ) -> Result<(), SinkError> {
        self.update_sparse_vectors(collection, name, vectors).await
    }

    async fn query(&self, collection: &str, query: Query) -> Result<Vec<Hit>, SinkError> {
        self.query_points(collection, query).await
    }

    async fn payload_indexes(
        &self,
        c: &str,
    ) -> Result<std::collections::BTreeMap<String, StoredIndex>, SinkError> {
        self.indexes_of(c).await
    }

    async fn create_index(&self, c: &str, index: &IndexSpec) -> Result<(), SinkError> {
        self.create_index_of(c, index).await
    }

    async fn drop_index(&self, c: &str, field: &str) -> Result<(), SinkError> {
        self.drop_index_of(c, field).await
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
