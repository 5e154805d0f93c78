//! Sparse vectors and queries in the embedded store: point vectors with a sparse part, the
//! sparse vectors of a collection, and queries (one vector's nearest, or both fused by RRF with
//! qdrant-edge's own fusion, as the server does it).

use std::collections::BTreeMap;

use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    Condition, CreateVectorName, EdgeConfig, EdgeSparseVectorParams, FieldCondition, Filter,
    Fusion, JsonPath, Match, Modifier, NamedQuery, PointId, PointVectorsPersisted, Prefetch,
    QueryEnum, QueryRequest, Range, ScoringQuery, SparseVectorConfig, UpdateOperation,
    UpdateVectorsOp, VectorInternal, VectorNameConfig, VectorNameOperations, VectorOperations,
    VectorPersisted, VectorStructPersisted, WithPayloadInterface,
};
use uuid::Uuid;

use super::EdgeSink;
use super::convert::uuid_of;
use crate::filter::{Cond, Scalar};
use crate::sink::{Hit, Query, SinkError, SparseVector};

/// Qdrant's default `k` of reciprocal rank fusion (the server's, so both targets rank alike).
const RRF_K: usize = 2;

/// The vectors of a point to write: the dense one under `name` (`None`: unnamed) unless it is
/// empty (a sparse-only point), and the sparse one under its own name.
pub(super) fn point_vectors(
    name: Option<&str>,
    dense: Vec<f32>,
    sparse: Option<(String, SparseVector)>,
) -> qdrant_edge::Vectors {
    if sparse.is_none() && name.is_none() {
        return dense.into();
    }
    let mut named: Vec<(String, qdrant_edge::Vector)> = Vec::new();
    if !dense.is_empty() {
        named.push((name.unwrap_or_default().to_owned(), dense.into()));
    }
    if let Some((n, s)) = sparse {
        named.push((n, edge_sparse(s).into()));
    }
    qdrant_edge::Vectors::new_named(named)
}

fn edge_sparse(s: SparseVector) -> qdrant_edge::SparseVector {
    qdrant_edge::SparseVector {
        indices: s.indices,
        values: s.values,
    }
}

fn idf_params() -> EdgeSparseVectorParams {
    EdgeSparseVectorParams::builder()
        .modifier(Modifier::Idf)
        .build()
}

fn must_all(v: Vec<Condition>) -> Filter {
    Filter {
        must: Some(v),
        ..Filter::default()
    }
}

fn should_any(v: Vec<Condition>) -> Filter {
    Filter {
        should: Some(v),
        ..Filter::default()
    }
}

/// A `search --filter` condition as the engine's filter.
fn edge_filter(c: &Cond) -> Result<Filter, String> {
    Ok(match c {
        Cond::All(v) => must_all(v.iter().map(condition).collect::<Result<_, _>>()?),
        other => Filter::new_must(condition(other)?),
    })
}

fn condition(c: &Cond) -> Result<Condition, String> {
    let key = |k: &str| -> Result<JsonPath, String> {
        k.try_into()
            .map_err(|e| format!("--filter: key `{k}`: {e:?}"))
    };
    let field = |k: &str, m: Match| -> Result<Condition, String> {
        Ok(Condition::Field(FieldCondition::new_match(key(k)?, m)))
    };
    let all = |v: &[Cond]| v.iter().map(condition).collect::<Result<Vec<_>, _>>();
    Ok(match c {
        Cond::All(v) => Condition::Filter(must_all(all(v)?)),
        Cond::Any(v) => Condition::Filter(should_any(all(v)?)),
        Cond::Not(c) => Condition::Filter(Filter::new_must_not(condition(c)?)),
        Cond::Eq(k, Scalar::Str(s)) => field(k, Match::from(s.clone()))?,
        Cond::Eq(k, Scalar::Bool(b)) => field(k, Match::from(*b))?,
        Cond::In(k, strings) => field(k, Match::from(strings.clone()))?,
        Cond::Range(k, b) => {
            let f = |x: Option<f64>| x.map(OrderedFloat);
            let range = Range {
                gt: f(b.gt),
                gte: f(b.gte),
                lt: f(b.lt),
                lte: f(b.lte),
            };
            Condition::Field(FieldCondition::new_range(key(k)?, range))
        }
        Cond::Null(k) => Condition::IsNull(key(k)?.into()),
        Cond::Empty(k) => Condition::IsEmpty(key(k)?.into()),
    })
}

impl EdgeSink {
    pub(super) async fn sparse_of(
        &self,
        collection: &str,
    ) -> Result<Option<BTreeMap<String, bool>>, SinkError> {
        if !self.dir(collection).join("edge_config.json").is_file() {
            return Ok(None);
        }
        let shard = self.shard(collection)?;
        let config = shard.config();
        Ok(Some(
            config
                .sparse_vectors
                .iter()
                .map(|(k, p)| (k.clone(), p.modifier == Some(Modifier::Idf)))
                .collect(),
        ))
    }

    pub(super) fn create_sparse_only(
        &self,
        collection: &str,
        name: &str,
        asked: &crate::sink::Settings,
    ) -> Result<(), SinkError> {
        let config = EdgeConfig::builder()
            .sparse_vector(name, idf_params())
            .build();
        self.create_shard(collection, config, asked)
    }

    pub(super) async fn add_sparse_vector(
        &self,
        collection: &str,
        name: &str,
    ) -> Result<(), SinkError> {
        let op = CreateVectorName {
            vector_name: name.to_owned(),
            config: VectorNameConfig::sparse(SparseVectorConfig {
                modifier: Some(Modifier::Idf),
                datatype: None,
            }),
        };
        self.apply(
            collection,
            UpdateOperation::VectorNameOperation(VectorNameOperations::CreateVectorName(op)),
        )
        .await
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
        let points = vectors
            .into_iter()
            .map(|(id, s)| PointVectorsPersisted {
                id: PointId::Uuid(id),
                vector: VectorStructPersisted::Named(
                    [(name.to_owned(), VectorPersisted::Sparse(edge_sparse(s)))].into(),
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

    pub(super) async fn query_points(
        &self,
        collection: &str,
        q: Query,
    ) -> Result<Vec<Hit>, SinkError> {
        let dense = q.dense.map(|(name, v)| NamedQuery {
            query: VectorInternal::Dense(v),
            using: name,
        });
        let sparse = q.sparse.map(|(name, s)| NamedQuery {
            query: VectorInternal::Sparse(edge_sparse(s)),
            using: Some(name),
        });
        let nearest = |n: NamedQuery<VectorInternal>| ScoringQuery::Vector(QueryEnum::Nearest(n));
        let filter = q
            .filter
            .as_ref()
            .map(edge_filter)
            .transpose()
            .map_err(|e| self.store_err(collection, e))?;
        let mut req = QueryRequest::new(q.limit);
        req.filter = filter.clone();
        let params = search_params(&q.params);
        req.params = Some(params.clone());
        match (dense, sparse) {
            (Some(one), None) | (None, Some(one)) => req.query = Some(nearest(one)),
            (Some(d), Some(s)) => {
                for one in [d, s] {
                    req.prefetches.push(Prefetch {
                        prefetches: Vec::new(),
                        query: Some(nearest(one)),
                        limit: q.prefetch,
                        params: Some(params.clone()),
                        filter: filter.clone(),
                        score_threshold: None,
                    });
                }
                req.query = Some(ScoringQuery::Fusion(Fusion::Rrf {
                    k: RRF_K,
                    weights: None,
                }));
            }
            (None, None) => return Ok(Vec::new()),
        }
        req.with_payload = WithPayloadInterface::Bool(true);
        self.blocking(collection, move |shard| {
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
}

/// The embedded store's search params for `p`.
fn search_params(p: &crate::sink::SearchParams) -> qdrant_edge::SearchParams {
    qdrant_edge::SearchParams {
        quantization: Some(qdrant_edge::QuantizationSearchParams {
            rescore: Some(!p.no_rescore),
            oversampling: p.oversampling,
            ignore: p.exact,
        }),
        exact: p.exact,
        ..Default::default()
    }
}
