//! Points this tool did not write, in its target: numeric point ids (we only write UUIDs) that
//! even carry our namespace key. Qdrant orders numeric ids first, and a scroll that read a
//! numeric next-page offset as the end stopped there: `verify` reported every point missing and
//! `--prune` deleted nothing. Every scroll pages through numeric offsets; the planted points are
//! counted, never compared and never pruned.

use std::sync::Arc;

use mongodb::bson::doc;
use serde_json::json;

use crate::common::{self, Mongo, unique};
use mongo2qdrant::point::keys;
use mongo2qdrant::sink::{Fields, MatchFilter, Sink, scroll_counted};

const PLANTED: u64 = 1_005;

/// The payload of a planted point: our namespace key, an `_id` and a hash, as if ours.
fn planted_payload(namespace: &str, i: u64) -> serde_json::Map<String, serde_json::Value> {
    let v = json!({keys::NAMESPACE: namespace, keys::ID: i, keys::HASH: "planted"});
    v.as_object().unwrap().clone()
}

/// `open` gives the target (the embedded store is closed while `plant` writes into it with the
/// engine's own API, then opened again).
async fn numeric_ids_in_the_target_are_paged_through_and_left_alone<S: Sink>(
    open: impl Fn() -> Arc<S>,
    plant: impl AsyncFnOnce(&str, &str),
) {
    let m = Mongo::start();
    let c = unique("foreign");
    let docs: Vec<_> = (0..13)
        .map(|i| doc! {"_id": i, "text": format!("note {i} about topic {}", i % 3)})
        .collect();
    m.insert("x", &c, docs).await;
    let run = |prune| {
        let mut o = common::options();
        o.prune = prune;
        common::sync_of(&m, "x", &[&c]).opts(o)
    };
    run(false).run(&open()).await.unwrap();
    let namespace = format!("x.{c}");
    plant(&c, &namespace).await;
    let sink = open();
    let ours = MatchFilter {
        key: keys::NAMESPACE.into(),
        value: namespace.clone(),
    };
    let (points, foreign) = scroll_counted(sink.as_ref(), &c, Some(&ours), Fields::All)
        .await
        .unwrap();
    assert_eq!((points.len(), foreign), (13, PLANTED));
    common::verify(&sink, run(false).jobs().await).await;

    // Two documents go: prune finds their points past the numeric pages, and only them.
    let coll = m
        .client()
        .await
        .database("x")
        .collection::<mongodb::bson::Document>(&c);
    coll.delete_many(doc! {"_id": {"$in": [3, 7]}})
        .await
        .unwrap();
    let r = run(true).run(&sink).await.unwrap();
    assert_eq!(r.namespaces[0].pruned, 2, "{r:#?}");
    let (points, foreign) = scroll_counted(sink.as_ref(), &c, Some(&ours), Fields::All)
        .await
        .unwrap();
    assert_eq!(
        (points.len(), foreign),
        (11, PLANTED),
        "the planted points stay"
    );
    assert_eq!(sink.count(&c).await.unwrap(), 11 + PLANTED);
    common::verify(&sink, run(false).jobs().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_ids_are_paged_through_and_left_alone_edge() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let open = || Arc::new(mongo2qdrant::sink::EdgeSink::open(&root).unwrap());
    let plant = async |collection: &str, namespace: &str| {
        // The engine's own API on the collection's directory, beside the sink's shard.
        use qdrant_edge::{
            EdgeShard, PointId, PointInsertOperations, PointOperations, PointStruct,
            UpdateOperation,
        };
        let shard = EdgeShard::load(&root.join(collection), None).unwrap();
        let points = (0..PLANTED)
            .map(|i| {
                let payload = serde_json::Value::Object(planted_payload(namespace, i));
                PointStruct::new(PointId::NumId(i), vec![0.1f32; 384], payload).into()
            })
            .collect();
        shard
            .update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
            ))
            .unwrap();
    };
    numeric_ids_in_the_target_are_paged_through_and_left_alone(open, plant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Qdrant server: tests/run.sh starts one and runs these; or set QDRANT_URL and pass --include-ignored"]
async fn numeric_ids_are_paged_through_and_left_alone_grpc() {
    let plant = async |collection: &str, namespace: &str| {
        use qdrant_client::qdrant::{PointStruct, UpsertPointsBuilder};
        let client = qdrant_client::Qdrant::from_url(&common::server_url())
            .skip_compatibility_check()
            .build()
            .unwrap();
        let points: Vec<PointStruct> = (0..PLANTED)
            .map(|i| {
                let payload = qdrant_client::Payload::try_from(serde_json::Value::Object(
                    planted_payload(namespace, i),
                ))
                .unwrap();
                PointStruct::new(i, vec![0.1f32; 384], payload)
            })
            .collect();
        client
            .upsert_points(UpsertPointsBuilder::new(collection, points).wait(true))
            .await
            .unwrap();
    };
    numeric_ids_in_the_target_are_paged_through_and_left_alone(common::grpc_sink, plant).await;
}
