//! Qdrant server target over gRPC (qdrant-client). Writes use `wait=true`, so a returned upsert
//! or delete is applied and acknowledged.

use std::collections::{BTreeMap, HashMap};

use qdrant_client::qdrant::{
    CountPointsBuilder, CreateCollectionBuilder, CreateVectorNameRequestBuilder,
    DeletePayloadPointsBuilder, DeletePointVectorsBuilder, DeletePointsBuilder,
    DenseVectorCreationConfigBuilder, Distance, GetPointsBuilder, PointId, PointStruct,
    PointVectors, ScrollPointsBuilder, SetPayloadPointsBuilder, UpdateMode,
    UpdatePointVectorsBuilder, UpsertPointsBuilder, VectorParamsBuilder, VectorsConfig,
    vectors_config::Config,
};
use qdrant_client::{Payload, Qdrant};
use serde_json::{Map, Value};
use uuid::Uuid;

mod convert;
mod index;
mod settings;
mod sparse;

use super::{
    Fields, Hit, IndexSpec, IndexState, MatchFilter, Page, PageOffset, Point, Query, Settings,
    Shape, Sink, SinkError, SparseVector, StoredIndex, StoredPoint, VectorParams, VectorSpec,
    WriteIf,
};
use crate::sink::settings::{Key, Support};
use convert::{
    distance, has_update_mode, hnsw_m_of, id_list, page_id, page_offset, pid, request_err, stored,
    to_filter, with_payload,
};

/// A Qdrant server.
pub struct GrpcSink {
    url: String,
    client: Qdrant,
    /// Whether the server can make conditional writes, asked once.
    conditional: tokio::sync::OnceCell<()>,
}

impl Sink for GrpcSink {
    fn describe(&self) -> String {
        format!("Qdrant at {}", crate::redact::redact_uri(&self.url))
    }

    fn needs_lease(&self) -> bool {
        true
    }

    fn max_payload_depth(&self) -> Option<usize> {
        Some(super::MAX_GRPC_PAYLOAD_DEPTH)
    }

    async fn shape(&self, collection: &str) -> Result<Option<Shape>, SinkError> {
        if !self.exists(collection).await? {
            return Ok(None);
        }
        let info = self
            .client
            .collection_info(collection)
            .await
            .map_err(|e| request_err("collection_info", collection, e))?;
        let config = info
            .result
            .and_then(|r| r.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config);
        let params = |p: &qdrant_client::qdrant::VectorParams| VectorParams {
            dimension: p.size as usize,
            distance: format!(
                "{:?}",
                Distance::try_from(p.distance).unwrap_or(Distance::UnknownDistance)
            ),
        };
        Ok(Some(match config {
            Some(Config::Params(p)) => Shape::Unnamed(params(&p)),
            Some(Config::ParamsMap(m)) => {
                Shape::Named(m.map.iter().map(|(k, p)| (k.clone(), params(p))).collect())
            }
            None => Shape::Named(Default::default()),
        }))
    }

    async fn create_collection(
        &self,
        collection: &str,
        vectors: &VectorSpec,
        asked: &Settings,
    ) -> Result<(), SinkError> {
        let params = VectorParamsBuilder::new(vectors.dimension as u64, distance(vectors.distance));
        let params = settings::vector_params(params.build(), asked);
        let config: VectorsConfig = match &vectors.name {
            None => params.into(),
            Some(name) => {
                let mut map = qdrant_client::qdrant::VectorsConfigBuilder::default();
                map.add_named_vector_params(name.clone(), params);
                map.into()
            }
        };
        self.client
            .create_collection(settings::create(
                CreateCollectionBuilder::new(collection).vectors_config(config),
                asked,
            ))
            .await
            .map_err(|e| request_err("create_collection", collection, e))?;
        Ok(())
    }

    async fn add_vector(
        &self,
        collection: &str,
        name: &str,
        dimension: usize,
        d: crate::sink::Distance,
    ) -> Result<(), SinkError> {
        // Qdrant >= 1.18.
        self.client
            .create_vector_name(
                CreateVectorNameRequestBuilder::new(
                    collection,
                    name.to_owned(),
                    DenseVectorCreationConfigBuilder::new(dimension as u64, distance(d)),
                )
                .wait(true),
            )
            .await
            .map_err(|e| request_err("create_vector_name", collection, e))?;
        Ok(())
    }

    async fn drop_collection(&self, collection: &str) -> Result<(), SinkError> {
        self.client
            .delete_collection(collection)
            .await
            .map_err(|e| request_err("delete_collection", collection, e))?;
        Ok(())
    }

    async fn exists(&self, collection: &str) -> Result<bool, SinkError> {
        self.client
            .collection_exists(collection)
            .await
            .map_err(|e| request_err("collection_exists", collection, e))
    }

    async fn upsert(
        &self,
        collection: &str,
        vector_name: Option<&str>,
        points: Vec<Point>,
    ) -> Result<(), SinkError> {
        let points: Vec<PointStruct> = points
            .into_iter()
            .map(|p| {
                let vectors = sparse::point_vectors(vector_name, p.vector, p.sparse);
                PointStruct::new(p.id.to_string(), vectors, Payload::from(p.payload))
            })
            .collect();
        self.client
            .upsert_points(UpsertPointsBuilder::new(collection, points).wait(true))
            .await
            .map_err(|e| request_err("upsert", collection, e))?;
        Ok(())
    }

    async fn retrieve(
        &self,
        collection: &str,
        ids: &[Uuid],
        fields: Fields<'_>,
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, SinkError> {
        let ids: Vec<PointId> = ids.iter().map(pid).collect();
        let res = self
            .client
            .get_points(
                GetPointsBuilder::new(collection, ids)
                    .with_payload(with_payload(fields))
                    .with_vectors(with_vectors),
            )
            .await
            .map_err(|e| request_err("get_points", collection, e))?;
        Ok(res
            .result
            .into_iter()
            .filter_map(|p| stored(p.id, p.payload, p.vectors))
            .collect())
    }

    async fn upsert_if(
        &self,
        collection: &str,
        point: Point,
        condition: WriteIf<'_>,
    ) -> Result<(), SinkError> {
        self.conditional
            .get_or_try_init(|| async {
                let v = self
                    .client
                    .health_check()
                    .await
                    .map_err(|e| request_err("health_check", collection, e))?
                    .version;
                if has_update_mode(&v) {
                    Ok(())
                } else {
                    Err(SinkError::Request {
                        op: "upsert",
                        collection: collection.to_owned(),
                        reason: format!(
                            "Qdrant {v} cannot make the conditional writes leases need (Qdrant >= 1.17): upgrade the server"
                        ),
                        transient: false,
                    })
                }
            })
            .await?;
        let point = PointStruct::new(
            point.id.to_string(),
            point.vector,
            Payload::from(point.payload),
        );
        let req = UpsertPointsBuilder::new(collection, vec![point]).wait(true);
        let req = match condition {
            WriteIf::Absent => req.update_mode(UpdateMode::InsertOnly),
            WriteIf::Matches(f) => req
                .update_mode(UpdateMode::UpdateOnly)
                .update_filter(to_filter(Some(f)).expect("a filter")),
        };
        self.client
            .upsert_points(req)
            .await
            .map_err(|e| request_err("upsert", collection, e))?;
        Ok(())
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
        let points: Vec<PointVectors> = vectors
            .into_iter()
            .map(|(id, v)| PointVectors {
                id: Some(pid(&id)),
                vectors: Some(HashMap::from([(name.to_owned(), v)]).into()),
            })
            .collect();
        self.client
            .update_vectors(UpdatePointVectorsBuilder::new(collection, points).wait(true))
            .await
            .map_err(|e| request_err("update_vectors", collection, e))?;
        Ok(())
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
        let req = SetPayloadPointsBuilder::new(collection, Payload::from(payload))
            .points_selector(id_list(ids))
            .wait(true);
        let res = if replace {
            self.client.overwrite_payload(req).await
        } else {
            self.client.set_payload(req).await
        };
        res.map_err(|e| request_err("set_payload", collection, e))?;
        Ok(())
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
        self.client
            .delete_vectors(
                DeletePointVectorsBuilder::new(collection)
                    .points_selector(id_list(ids))
                    .vectors(vec![name.to_owned()])
                    .wait(true),
            )
            .await
            .map_err(|e| request_err("delete_vectors", collection, e))?;
        self.client
            .delete_payload(
                DeletePayloadPointsBuilder::new(collection, keys.to_vec())
                    .points_selector(id_list(ids))
                    .wait(true),
            )
            .await
            .map_err(|e| request_err("delete_payload", collection, e))?;
        Ok(())
    }

    async fn delete(&self, collection: &str, ids: &[Uuid]) -> Result<(), SinkError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.client
            .delete_points(
                DeletePointsBuilder::new(collection)
                    .points(id_list(ids))
                    .wait(true),
            )
            .await
            .map_err(|e| request_err("delete_points", collection, e))?;
        Ok(())
    }

    async fn scroll(
        &self,
        collection: &str,
        filter: Option<&MatchFilter>,
        fields: Fields<'_>,
        offset: Option<PageOffset>,
        limit: usize,
    ) -> Result<Page, SinkError> {
        let mut req = ScrollPointsBuilder::new(collection)
            .limit(limit as u32)
            .with_payload(with_payload(fields))
            .with_vectors(false);
        if let Some(f) = to_filter(filter) {
            req = req.filter(f);
        }
        if let Some(o) = offset {
            req = req.offset(page_id(o));
        }
        let res = self
            .client
            .scroll(req)
            .await
            .map_err(|e| request_err("scroll", collection, e))?;
        let total = res.result.len() as u64;
        let points: Vec<StoredPoint> = res
            .result
            .into_iter()
            .filter_map(|p| stored(p.id, p.payload, p.vectors))
            .collect();
        Ok(Page {
            foreign: total - points.len() as u64,
            points,
            next: page_offset(res.next_page_offset),
        })
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
        self.create_sparse_only(collection, name, asked).await
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

    async fn payload_indexes(&self, c: &str) -> Result<BTreeMap<String, StoredIndex>, SinkError> {
        self.indexes_of(c).await
    }

    async fn create_index(&self, c: &str, index: &IndexSpec) -> Result<(), SinkError> {
        self.create_index_of(c, index).await
    }

    async fn drop_index(&self, c: &str, field: &str) -> Result<(), SinkError> {
        self.drop_index_of(c, field).await
    }

    async fn count(&self, collection: &str) -> Result<u64, SinkError> {
        let res = self
            .client
            .count(CountPointsBuilder::new(collection).exact(true))
            .await
            .map_err(|e| request_err("count", collection, e))?;
        Ok(res.result.map_or(0, |r| r.count))
    }

    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn hnsw_m(&self, collection: &str) -> Result<Option<u64>, SinkError> {
        Ok(Some(hnsw_m_of(self.info(collection).await?)))
    }

    async fn set_hnsw_m(&self, collection: &str, m: u64) -> Result<(), SinkError> {
        self.switch_hnsw_m(collection, m).await
    }

    fn support(&self, key: Key) -> Support {
        settings::support(key)
    }

    async fn settings(&self, collection: &str) -> Result<Settings, SinkError> {
        self.read_settings(collection).await
    }

    async fn update_settings(&self, c: &str, s: &Settings, keys: &[Key]) -> Result<(), SinkError> {
        self.change_settings(c, s, keys).await
    }

    async fn index_state(&self, collection: &str) -> Result<Option<IndexState>, SinkError> {
        Ok(Some(self.index_state_woken(collection).await?))
    }
}
