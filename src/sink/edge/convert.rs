//! Between our types and the embedded engine's: point ids, stored points, payload selections
//! and filters.

use qdrant_edge::{
    Condition, FieldCondition, Filter, JsonPath, Match, PointId, VectorStructInternal,
    WithPayloadInterface,
};
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
    let dense = |v: qdrant_edge::VectorInternal| match v {
        qdrant_edge::VectorInternal::Dense(d) => d,
        _ => Vec::new(),
    };
    let values: std::collections::BTreeMap<String, Vec<f32>> = match r.vector {
        None => Default::default(),
        Some(VectorStructInternal::Named(m)) => m
            .into_iter()
            .map(|(k, v)| (k.to_string(), dense(v)))
            .collect(),
        Some(VectorStructInternal::Single(v)) => [(String::new(), v)].into(),
        Some(_) => [(String::new(), Vec::new())].into(),
    };
    Some(StoredPoint {
        id: uuid_of(r.id)?,
        payload: r.payload.map(|p| p.0).unwrap_or_default(),
        vectors: values.keys().cloned().collect(),
        values,
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
