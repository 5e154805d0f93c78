//! Between our types and the Qdrant server's gRPC messages: point ids, payloads, stored points,
//! payload selections and filters, and what a failed request means (transient or not).

use std::collections::{BTreeMap, HashMap};

use qdrant_client::qdrant::{
    CollectionInfo, CollectionStatus, Condition, Filter, PayloadIncludeSelector, PointId,
    PointsIdsList, VectorOutput, VectorsOutput, point_id::PointIdOptions, vector_output,
    vectors_output::VectorsOptions, with_payload_selector::SelectorOptions,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::GrpcSink;
use crate::sink::{Fields, IndexState, MatchFilter, PageOffset, SinkError, StoredPoint};

/// Whether a server of version `v` (`1.19.0`) has conditional upserts (`update_mode`, Qdrant
/// 1.17): an older one ignores the field and would overwrite unconditionally.
pub(super) fn has_update_mode(v: &str) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (1, 17)
}

pub(super) fn request_err(op: &'static str, collection: &str, e: QdrantError) -> SinkError {
    // A request over the server's limit (tonic: OutOfRange, "message length too large").
    if let QdrantError::ResponseError { status } = &e
        && (status.code() as i32 == 11 || status.message().contains("too large"))
    {
        return SinkError::TooLarge {
            op,
            collection: collection.to_owned(),
            reason: status.message().to_owned(),
        };
    }
    let transient = match &e {
        QdrantError::ResponseError { status } => {
            transient_status(status.code() as i32, status.message())
        }
        QdrantError::ResourceExhaustedError { .. } | QdrantError::Io(_) => true,
        _ => false,
    };
    SinkError::Request {
        op,
        collection: collection.to_owned(),
        // The client quotes the server's URL in a failed connection ("Failed to connect to").
        reason: crate::redact::redact_uris(&e.to_string()),
        transient,
    }
}

/// A collection's HNSW `m` as the server reports it (it always does; 16 is Qdrant's default
/// should it not).
pub(super) fn hnsw_m_of(info: CollectionInfo) -> u64 {
    let hnsw = info.config.and_then(|c| c.hnsw_config);
    hnsw.and_then(|h| h.m).unwrap_or(16)
}

/// How far the server has indexed a collection.
pub(super) fn index_state_of(info: CollectionInfo) -> IndexState {
    let queued = info.update_queue.map_or(0, |q| q.length);
    IndexState {
        settled: info.status == CollectionStatus::Green as i32 && queued == 0,
        failed: info.status == CollectionStatus::Red as i32,
        points: info.points_count.unwrap_or(0),
        indexed: info.indexed_vectors_count.unwrap_or(0),
    }
}

/// Whether a failed request with gRPC status `code` and `message` may succeed when tried again:
/// 2 Unknown, 4 DeadlineExceeded, 10 Aborted, 14 Unavailable; and 13 Internal
/// when it is the connection that failed, not the server: the client reports a server that
/// refuses connections (restarting, not up yet) as "Failed to connect to ..." with code 13.
pub(super) fn transient_status(code: i32, message: &str) -> bool {
    const CONNECTION: &[&str] = &[
        "failed to connect",
        "connection refused",
        "connection reset",
        "broken pipe",
        "transport error",
        "tcp connect error",
        "connection closed",
        "h2 protocol error",
    ];
    let message = message.to_lowercase();
    match code {
        2 | 4 | 10 | 14 => true,
        13 => CONNECTION.iter().any(|c| message.contains(c)),
        _ => false,
    }
}

/// A scroll offset as the server takes it.
pub(super) fn page_id(o: PageOffset) -> PointId {
    match o {
        PageOffset::Uuid(u) => pid(&u),
        PageOffset::Num(n) => PointId::from(n),
    }
}

/// The server's next-page offset, numeric or UUID (a numeric one is no end).
pub(super) fn page_offset(id: Option<PointId>) -> Option<PageOffset> {
    match id?.point_id_options? {
        PointIdOptions::Uuid(s) => s.parse().ok().map(PageOffset::Uuid),
        PointIdOptions::Num(n) => Some(PageOffset::Num(n)),
    }
}

pub(super) fn pid(u: &Uuid) -> PointId {
    PointId::from(u.to_string())
}

pub(super) fn id_list(ids: &[Uuid]) -> PointsIdsList {
    PointsIdsList {
        ids: ids.iter().map(pid).collect(),
    }
}

pub(super) fn uuid_of(id: Option<PointId>) -> Option<Uuid> {
    match id?.point_id_options? {
        PointIdOptions::Uuid(s) => s.parse().ok(),
        PointIdOptions::Num(_) => None,
    }
}

pub(super) fn json_payload(p: HashMap<String, qdrant_client::qdrant::Value>) -> Map<String, Value> {
    match Value::from(Payload::from(p)) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A stored point from a response's id, payload and vectors (points with numeric ids are not
/// ours).
pub(super) fn stored(
    id: Option<PointId>,
    payload: HashMap<String, qdrant_client::qdrant::Value>,
    vectors: Option<VectorsOutput>,
) -> Option<StoredPoint> {
    #[allow(deprecated)] // `data`: what servers before 1.12 send instead of `vector`.
    let split = |v: VectorOutput| match v.vector {
        Some(vector_output::Vector::Dense(d)) => (d.data, None),
        Some(vector_output::Vector::Sparse(s)) => (
            Vec::new(),
            Some(crate::sink::SparseVector {
                indices: s.indices,
                values: s.values,
            }),
        ),
        Some(_) => (Vec::new(), None),
        None => match v.indices {
            Some(i) => (
                Vec::new(),
                Some(crate::sink::SparseVector {
                    indices: i.data,
                    values: v.data,
                }),
            ),
            None => (v.data, None),
        },
    };
    let named: Vec<(String, VectorOutput)> = match vectors.and_then(|v| v.vectors_options) {
        None => Vec::new(),
        Some(VectorsOptions::Vector(v)) => vec![(String::new(), v)],
        Some(VectorsOptions::Vectors(named)) => named.vectors.into_iter().collect(),
    };
    let (mut values, mut sparse) = (BTreeMap::new(), BTreeMap::new());
    for (k, v) in named {
        let (dense, s) = split(v);
        match s {
            Some(s) => {
                sparse.insert(k, s);
            }
            None => {
                values.insert(k, dense);
            }
        }
    }
    Some(StoredPoint {
        id: uuid_of(id)?,
        payload: json_payload(payload),
        vectors: values.keys().chain(sparse.keys()).cloned().collect(),
        values,
        sparse,
    })
}

/// The payload selection for `fields`. The server reads each key as a JSON path, so a key that
/// is not a plain name (`a.b`) is quoted to stay one key.
pub(super) fn with_payload(fields: Fields<'_>) -> SelectorOptions {
    match fields {
        Fields::All => true.into(),
        Fields::Only([]) => false.into(),
        Fields::Only(keys) => {
            let plain = |k: &str| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            };
            let fields = keys
                .iter()
                .map(|k| {
                    if plain(k) {
                        k.clone()
                    } else {
                        format!("\"{k}\"")
                    }
                })
                .collect();
            SelectorOptions::Include(PayloadIncludeSelector { fields })
        }
    }
}

pub(super) fn to_filter(f: Option<&MatchFilter>) -> Option<Filter> {
    f.map(|f| Filter::must([Condition::matches(f.key.clone(), f.value.clone())]))
}

impl GrpcSink {
    pub(super) async fn info(
        &self,
        collection: &str,
    ) -> Result<qdrant_client::qdrant::CollectionInfo, SinkError> {
        self.client
            .collection_info(collection)
            .await
            .map_err(|e| request_err("collection_info", collection, e))?
            .result
            .ok_or_else(|| SinkError::Request {
                op: "collection_info",
                collection: collection.to_owned(),
                reason: "the server sent no collection info".into(),
                transient: false,
            })
    }
}

/// The target's name for a model's distance.
pub(super) fn distance(d: crate::sink::Distance) -> qdrant_client::qdrant::Distance {
    use crate::sink::Distance as D;
    match d {
        D::Cosine => qdrant_client::qdrant::Distance::Cosine,
        D::Dot => qdrant_client::qdrant::Distance::Dot,
        D::Euclid => qdrant_client::qdrant::Distance::Euclid,
        D::Manhattan => qdrant_client::qdrant::Distance::Manhattan,
    }
}

impl GrpcSink {
    /// Client for `url` (e.g. `http://localhost:6334`), with an optional API key.
    pub fn connect(url: &str, api_key: Option<String>) -> Result<Self, SinkError> {
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .timeout(std::time::Duration::from_secs(60))
            .skip_compatibility_check()
            .build()
            .map_err(|e| SinkError::Connect {
                url: crate::redact::redact_uri(url),
                reason: crate::redact::redact_in(&e.to_string(), url),
            })?;
        Ok(Self {
            url: url.to_owned(),
            client,
            conditional: tokio::sync::OnceCell::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_transient_and_a_bad_request_is_not() {
        // What qdrant-client reports while the server restarts (code 13, Internal).
        let refused = "Failed to connect to http://127.0.0.1:6334/: tonic::transport::Error(Transport, ConnectError(\"tcp connect error\", Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" }))";
        assert!(transient_status(13, refused));
        assert!(transient_status(14, "unavailable"));
        assert!(transient_status(13, "error trying to connect: broken pipe"));
        assert!(!transient_status(
            13,
            "Service internal error: segment is corrupted"
        ));
        assert!(!transient_status(3, "Wrong input: Vector dimension error"));
        assert!(!transient_status(
            5,
            "Not found: Collection `x` doesn't exist!"
        ));
    }

    #[test]
    fn conditional_writes_need_qdrant_1_17() {
        assert!(has_update_mode("1.19.0") && has_update_mode("1.17.0") && has_update_mode("2.0"));
        assert!(!has_update_mode("1.16.3") && !has_update_mode("0.9") && !has_update_mode(""));
    }
}
