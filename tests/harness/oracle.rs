//! What the target must hold, computed from the source alone (the pure preparation of every
//! document), and the checks against it: after each round, no point of a live document was
//! deleted; at the end, the target equals the oracle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mongo2qdrant::pipeline::Chunking;
use mongo2qdrant::point::{hash_context, keys, prepare_doc};
use mongo2qdrant::sink::{Fields, MatchFilter, Sink, scroll_all, scroll_counted};
use mongo2qdrant::source::SourceDoc;
use mongodb::bson::Document;
use serde_json::Value;
use uuid::Uuid;

use crate::common::{self, Mongo};

/// A point as the oracle sees it: content hash, payload hash, the copied `tag`, and with a
/// sparse vector its hash.
type Expected = (String, Option<String>, Value, Option<String>);

/// The vectors an iteration writes: the dense one (`None`: unnamed), its chunking, and
/// whether a BM25 vector is beside it.
#[derive(Clone, Copy)]
pub struct Layout<'a> {
    pub vector: Option<&'a str>,
    pub chunking: Option<Chunking>,
    pub sparse: bool,
}

/// The points the collection `h.c` calls for now (template `{text}`), by id.
pub async fn expected(m: &Mongo, c: &str, l: Layout<'_>) -> BTreeMap<Uuid, Expected> {
    expected_points(m, c, l)
        .await
        .into_iter()
        .map(|(id, (e, _))| (id, e))
        .collect()
}

/// [`expected`], and each point's BM25 vector when there is one.
async fn expected_points(
    m: &Mongo,
    c: &str,
    l: Layout<'_>,
) -> BTreeMap<Uuid, (Expected, Option<mongo2qdrant::sink::SparseVector>)> {
    let Layout {
        vector,
        chunking,
        sparse,
    } = l;
    let of = common::sync_of(m, "h", &[c])
        .template("{text}")
        .payload(&["tag"])
        .vector(vector);
    let job = super::source::with_sparse(of.jobs().await, sparse).remove(0);
    let embedder = common::embedder();
    let model = mongo2qdrant::embed::Embedder::model_id(embedder.as_ref()).to_owned();
    let context = hash_context(&job, chunking);
    let coll = m.client().await.database("h").collection::<Document>(c);
    let docs = common::all_docs(&coll).await;
    let mut want = BTreeMap::new();
    for d in docs {
        let sd = SourceDoc {
            id: d.get("_id").unwrap().clone(),
            doc: d,
        };
        let Some(p) = prepare_doc(&job, &model, &context, chunking, embedder.as_ref(), &sd) else {
            continue;
        };
        // A tag made to fail (nested too deep) is fixed before the end; only ids count then.
        let tag = match sd.doc.get("tag") {
            Some(t) => t.as_str().map_or(Value::Null, Value::from),
            None => Value::Null,
        };
        let spec = job.sparse.as_ref();
        let part = p.sparse.as_ref();
        for (i, (id, _)) in p.chunks.iter().enumerate() {
            let bm25 = spec
                .zip(part)
                .map(|(s, part)| s.bm25.document(&part.texts[i]));
            let e = (
                p.hash.clone(),
                p.payload_hash.clone(),
                tag.clone(),
                part.map(|s| s.hash.clone()),
            );
            want.insert(*id, (e, bm25));
        }
    }
    want
}

fn ours(c: &str) -> MatchFilter {
    MatchFilter {
        key: keys::NAMESPACE.into(),
        value: format!("h.{c}"),
    }
}

/// The ids of our points in `c` (none when it does not exist).
pub async fn point_ids<S: Sink>(sink: &S, c: &str) -> BTreeSet<Uuid> {
    if !sink.exists(c).await.unwrap() {
        return BTreeSet::new();
    }
    let keep = [keys::NAMESPACE.to_owned()];
    scroll_all(sink, c, Some(&ours(c)), Fields::Only(&keep))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect()
}

/// Nothing a user did not ask to delete is gone: every point there `before` a round that the
/// source still calls for (`want`) is there after it, whatever the round's fault.
pub fn nothing_live_deleted(
    before: &BTreeSet<Uuid>,
    after: &BTreeSet<Uuid>,
    want: &BTreeMap<Uuid, Expected>,
    seed: u64,
) {
    let lost: Vec<&Uuid> = before
        .iter()
        .filter(|id| want.contains_key(id) && !after.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: {} point(s) of live documents deleted in this round: {lost:?}",
        lost.len()
    );
}

/// Points this tool never writes (numeric ids) planted in `c`, carrying our namespace key: every
/// scroll pages through them, `verify` counts them, nothing deletes them.
pub async fn plant_foreign(url: &str, c: &str, vector: Option<&str>, from: u64, n: u64) {
    use qdrant_client::qdrant::{PointStruct, UpsertPointsBuilder, Vector};
    let client = qdrant_client::Qdrant::from_url(url)
        .skip_compatibility_check()
        .build()
        .unwrap();
    let points: Vec<PointStruct> = (from..from + n)
        .map(|i| {
            let payload = serde_json::json!({keys::NAMESPACE: format!("h.{c}"), keys::ID: i, keys::HASH: "planted"});
            let payload = qdrant_client::Payload::try_from(payload).unwrap();
            let v = vec![0.1f32; 384];
            match vector {
                Some(name) => PointStruct::new(
                    i,
                    std::collections::HashMap::from([(name.to_owned(), Vector::from(v))]),
                    payload,
                ),
                None => PointStruct::new(i, v, payload),
            }
        })
        .collect();
    client
        .upsert_points(UpsertPointsBuilder::new(c, points).wait(true))
        .await
        .unwrap();
}

/// The target against the oracle: every document's expected points and nothing else of ours,
/// `planted` foreign points left alone, and graph building on (no bulk load left behind).
pub async fn check<S: Sink>(
    sink: &Arc<S>,
    m: &Mongo,
    c: &str,
    l: Layout<'_>,
    planted: u64,
    seed: u64,
) {
    let (vector, sparse) = (l.vector, l.sparse);
    let points_wanted = expected_points(m, c, l).await;
    let want: BTreeMap<Uuid, Expected> = points_wanted
        .iter()
        .map(|(id, (e, _))| (*id, e.clone()))
        .collect();
    let (points, foreign) = scroll_counted(sink.as_ref(), c, Some(&ours(c)), Fields::All)
        .await
        .unwrap();
    assert_eq!(
        foreign, planted,
        "seed {seed}: the planted foreign points are left alone"
    );
    assert_ne!(
        sink.hnsw_m(c).await.unwrap(),
        Some(0),
        "seed {seed}: HNSW graph building left off"
    );
    let ids: Vec<Uuid> = points.iter().map(|p| p.id).collect();
    let with_vectors = sink.retrieve(c, &ids, Fields::All, true).await.unwrap();
    let mut got: BTreeMap<Uuid, Expected> = BTreeMap::new();
    for p in with_vectors {
        let name = vector.unwrap_or("");
        assert!(
            p.vectors.iter().any(|v| v == name),
            "seed {seed}: point {} lacks its vector `{name}`: {:?}",
            p.id,
            p.vectors
        );
        let text = |k: &str| p.payload.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some((_, Some(bm25))) = points_wanted.get(&p.id) {
            let stored = p.sparse.get("bm25").cloned().unwrap_or_default();
            assert!(
                mongo2qdrant::sparse::same(&stored, bm25),
                "seed {seed}: point {} holds {stored:?}, not BM25 of its text {bm25:?}",
                p.id
            );
        }
        got.insert(
            p.id,
            (
                text(&keys::hash(vector)).unwrap_or_default(),
                text(&keys::payload_hash(vector)),
                p.payload.get("tag").cloned().unwrap_or(Value::Null),
                sparse.then(|| text(&keys::hash(Some("bm25")))).flatten(),
            ),
        );
    }
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(k)).collect();
    for p in points.iter().filter(|p| extra.contains(&&p.id)) {
        eprintln!("seed {seed}: orphan {} {:?}", p.id, p.payload);
    }
    assert!(
        missing.is_empty() && extra.is_empty(),
        "seed {seed}: {} missing {missing:?}, {} orphaned {extra:?}",
        missing.len(),
        extra.len()
    );
    for (id, w) in &want {
        assert_eq!(&got[id], w, "seed {seed}: point {id} differs");
    }
}

/// Whether the metrics show a stream with nothing pending (a `pending_events` line for it, and
/// every such line 0).
pub fn settled(metrics: &str) -> bool {
    let pending: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("mongo2qdrant_pending_events{"))
        .collect();
    !pending.is_empty() && pending.iter().all(|l| l.ends_with(" 0"))
}
