//! Between our types and the embedded engine's: point ids, stored points, payload selections
//! and filters.

use qdrant_edge::{
    Condition, FieldCondition, Filter, JsonPath, Match, PointId, VectorStructInternal,
    WithPayloadInterface,
};
use std::collections::BTreeMap;

use uuid::Uuid;

use crate::sink::{Fields, MatchFilter, StoredPoint};

pub(super) fn vector_key(name: Option<&str>) -> String {
    name.unwrap_or("").to_owned()
}

pub(super) fn uuid_of(id: PointId) -> Option<Uuid> {
    match id {
        PointId::Uuid(u) => Some(u),
        PointId::NumId(_) => None,
    }
}

pub(super) fn point_ids(ids: &[Uuid]) -> Vec<PointId> {
    ids.iter().map(|u| PointId::Uuid(*u)).collect()
}

/// A stored point from an engine record (points with numeric ids are not ours).
pub(super) fn stored(r: qdrant_edge::Record) -> Option<StoredPoint> {
    let named: Vec<(String, qdrant_edge::VectorInternal)> = match r.vector {
        None => Vec::new(),
        Some(VectorStructInternal::Named(m)) => {
            m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
        }
        Some(VectorStructInternal::Single(v)) => {
            vec![(String::new(), qdrant_edge::VectorInternal::Dense(v))]
        }
        Some(_) => vec![(
            String::new(),
            qdrant_edge::VectorInternal::Dense(Vec::new()),
        )],
    };
    let (mut values, mut sparse) = (BTreeMap::new(), BTreeMap::new());
    for (k, v) in named {
        match v {
            qdrant_edge::VectorInternal::Dense(d) => {
                values.insert(k, d);
            }
            qdrant_edge::VectorInternal::Sparse(s) => {
                sparse.insert(
                    k,
                    crate::sink::SparseVector {
                        indices: s.indices,
                        values: s.values,
                    },
                );
            }
            _ => {
                values.insert(k, Vec::new());
            }
        }
    }
    Some(StoredPoint {
        id: uuid_of(r.id)?,
        payload: r.payload.map(|p| p.0).unwrap_or_default(),
        vectors: values.keys().chain(sparse.keys()).cloned().collect(),
        values,
        sparse,
    })
}

pub(super) fn to_filter(f: Option<&MatchFilter>) -> Result<Option<Filter>, String> {
    f.map(|f| {
        let key = f.key.as_str().try_into().map_err(|e| format!("{e:?}"))?;
        Ok(Filter::new_must(Condition::Field(
            FieldCondition::new_match(key, Match::from(f.value.clone())),
        )))
    })
    .transpose()
}

/// The payload selection for `fields`: keys taken literally (a copied field `a.b` is one key).
pub(super) fn with_payload(fields: Fields<'_>) -> WithPayloadInterface {
    match fields {
        Fields::All => WithPayloadInterface::Bool(true),
        Fields::Only([]) => WithPayloadInterface::Bool(false),
        Fields::Only(keys) => WithPayloadInterface::Fields(
            keys.iter()
                .map(|k| JsonPath {
                    first_key: k.clone(),
                    rest: Vec::new(),
                })
                .collect(),
        ),
    }
}

/// The target's name for a model's distance.
pub(super) fn distance(d: crate::sink::Distance) -> qdrant_edge::Distance {
    use crate::sink::Distance as D;
    match d {
        D::Cosine => qdrant_edge::Distance::Cosine,
        D::Dot => qdrant_edge::Distance::Dot,
        D::Euclid => qdrant_edge::Distance::Euclid,
        D::Manhattan => qdrant_edge::Distance::Manhattan,
    }
}
