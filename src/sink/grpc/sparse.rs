//! Sparse vectors and queries on a Qdrant server: point vectors with a sparse part, the sparse
//! vectors of a collection, and the Query API (one vector's nearest, or both fused by RRF).

use std::collections::{BTreeMap, HashMap};

use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, CreateVectorNameRequestBuilder, Filter, Fusion, Modifier,
    PointVectors, PrefetchQueryBuilder, Query as QdrantQuery, QueryPointsBuilder, Range,
    SparseVectorCreationConfig, SparseVectorParamsBuilder, SparseVectorsConfigBuilder,
    UpdatePointVectorsBuilder, Vector, VectorInput, Vectors,
};
use uuid::Uuid;

use super::GrpcSink;
use super::convert::{json_payload, pid, request_err, uuid_of};
use crate::filter::{Cond, Scalar};
use crate::sink::{Hit, Query, SinkError, SparseVector};

/// The vectors of a point to write: the dense one under `name` (`None`: unnamed) unless it is
/// empty (a sparse-only point), and the sparse one under its own name.
pub(super) fn point_vectors(
    name: Option<&str>,
    dense: Vec<f32>,
    sparse: Option<(String, SparseVector)>,
) -> Vectors {
    if sparse.is_none() && name.is_none() {
        return dense.into();
    }
    let mut map: HashMap<String, Vector> = HashMap::new();
    if !dense.is_empty() {
        // The unnamed vector is the one named "" among named ones.
        map.insert(
            name.unwrap_or_default().to_owned(),
            Vector::new_dense(dense),
        );
    }
    if let Some((n, s)) = sparse {
        map.insert(n, Vector::new_sparse(s.indices, s.values));
    }
    map.into()
}

fn idf() -> SparseVectorCreationConfig {
    SparseVectorCreationConfig {
        modifier: Some(Modifier::Idf.into()),
        datatype: None,
    }
}

/// A `search --filter` condition as the server's filter.
fn qdrant_filter(c: &Cond) -> Filter {
    match c {
        Cond::All(v) => Filter::must(v.iter().map(condition)),
        other => Filter::must([condition(other)]),
    }
}

fn condition(c: &Cond) -> Condition {
    match c {
        Cond::All(v) => Filter::must(v.iter().map(condition)).into(),
        Cond::Any(v) => Filter::should(v.iter().map(condition)).into(),
        Cond::Not(c) => Filter::must_not([condition(c)]).into(),
        Cond::Eq(k, Scalar::Str(s)) => Condition::matches(k, s.clone()),
        Cond::Eq(k, Scalar::Bool(b)) => Condition::matches(k, *b),
        Cond::In(k, strings) => Condition::matches(k, strings.clone()),
        Cond::Range(k, b) => Condition::range(
            k,
            Range {
                gt: b.gt,
                gte: b.gte,
                lt: b.lt,
                lte: b.lte,
            },
        ),
        Cond::Null(k) => Condition::is_null(k),
        Cond::Empty(k) => Condition::is_empty(k),
    }
}

impl GrpcSink {
    pub(super) async fn sparse_of(
        &self,
        collection: &str,
    ) -> Result<Option<BTreeMap<String, bool>>, SinkError> {
        if !self
            .client
            .collection_exists(collection)
            .await
            .map_err(|e| request_err("collection_exists", collection, e))?
        {
            return Ok(None);
        }
        let config = self
            .info(collection)
            .await?
            .config
            .and_then(|c| c.params)
            .and_then(|p| p.sparse_vectors_config);
        Ok(Some(
            config
                .map(|c| {
                    c.map
                        .into_iter()
                        .map(|(k, p)| (k, p.modifier == Some(Modifier::Idf.into())))
                        .collect()
                })
                .unwrap_or_default(),
        ))
    }

    pub(super) async fn create_sparse_only(
        &self,
        collection: &str,
        name: &str,
        asked: &crate::sink::Settings,
    ) -> Result<(), SinkError> {
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(
            name,
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
        );
        self.client
            .create_collection(super::settings::create(
                CreateCollectionBuilder::new(collection).sparse_vectors_config(sparse),
                asked,
            ))
            .await
            .map_err(|e| request_err("create_collection", collection, e))?;
        Ok(())
    }

    pub(super) async fn add_sparse_vector(
        &self,
        collection: &str,
        name: &str,
    ) -> Result<(), SinkError> {
        let req =
            CreateVectorNameRequestBuilder::new(collection, name.to_owned(), idf()).wait(true);
        self.client
            .create_vector_name(req)
            .await
            .map_err(|e| request_err("create_vector_name", collection, e))?;
        Ok(())
    }

    pub(super) async fn update_sparse_vectors(
        &self,
        collection: &str,
        name: &str,
        vectors: Vec<(Uuid, SparseVector)>,
    ) -> Result<(), SinkError> {
        if vectors.is_empty() {
            return Ok(());
        }
        let points: Vec<PointVectors> = vectors
            .into_iter()
            .map(|(id, s)| PointVectors {
                id: Some(pid(&id)),
                vectors: Some(point_vectors(None, Vec::new(), Some((name.to_owned(), s)))),
            })
            .collect();
        self.client
            .update_vectors(UpdatePointVectorsBuilder::new(collection, points).wait(true))
            .await
            .map_err(|e| request_err("update_vectors", collection, e))?;
        Ok(())
    }

    pub(super) async fn query_points(
        &self,
        collection: &str,
        q: Query,
    ) -> Result<Vec<Hit>, SinkError> {
        let dense = q.dense.map(|(name, v)| (name, VectorInput::new_dense(v)));
        let sparse = q
            .sparse
            .map(|(name, s)| (Some(name), VectorInput::new_sparse(s.indices, s.values)));
        let filter = q.filter.as_ref().map(qdrant_filter);
        let params = search_params(&q.params);
        let mut req = QueryPointsBuilder::new(collection)
            .limit(q.limit as u64)
            .params(params.clone())
            .with_payload(true);
        if let Some(f) = &filter {
            req = req.filter(f.clone());
        }
        match (dense, sparse) {
            (Some(one), None) | (None, Some(one)) => {
                req = req.query(QdrantQuery::new_nearest(one.1));
                if let Some(n) = one.0 {
                    req = req.using(n);
                }
            }
            (Some(d), Some(s)) => {
                for (name, input) in [d, s] {
                    let mut p = PrefetchQueryBuilder::default()
                        .query(QdrantQuery::new_nearest(input))
                        .limit(q.prefetch as u64)
                        .params(params.clone());
                    if let Some(n) = name {
                        p = p.using(n);
                    }
                    if let Some(f) = &filter {
                        p = p.filter(f.clone());
                    }
                    req = req.add_prefetch(p);
                }
                req = req.query(QdrantQuery::new_fusion(Fusion::Rrf));
            }
            (None, None) => return Ok(Vec::new()),
        }
        let res = self
            .client
            .query(req)
            .await
            .map_err(|e| request_err("query", collection, e))?;
        Ok(res
            .result
            .into_iter()
            .filter_map(|p| {
                Some(Hit {
                    id: uuid_of(p.id)?,
                    score: p.score,
                    payload: json_payload(p.payload),
                })
            })
            .collect())
    }
}

/// The server's search params for `p`.
fn search_params(p: &crate::sink::SearchParams) -> qdrant_client::qdrant::SearchParams {
    qdrant_client::qdrant::SearchParams {
        quantization: Some(qdrant_client::qdrant::QuantizationSearchParams {
            rescore: Some(!p.no_rescore),
            oversampling: p.oversampling,
            // Exact search is the reference: the original vectors only.
            ignore: Some(p.exact),
        }),
        exact: Some(p.exact),
        ..Default::default()
    }
}
