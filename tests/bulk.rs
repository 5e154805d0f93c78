//! Bulk loads into a Qdrant server (`--bulk`): two shards load one new collection with HNSW
//! graph building off; the first to finish leaves it off, the last switches it back on, waits
//! for the optimiser and reports it; the points are those of a plain run; a collection that
//! already has points is loaded as usual. Needs a server (QDRANT_URL); the embedded store
//! refuses `--bulk`.

mod common;

use std::sync::Arc;

use common::{Mongo, options, sync_of, unique};
use mongo2qdrant::report::RunReport;
use mongo2qdrant::shard::Shard;
use mongo2qdrant::sink::{GrpcSink, Sink};
use mongo2qdrant::state::StateStore;
use mongodb::bson::Bson;

const DB: &str = "bulk";

async fn load(m: &Mongo, sink: &Arc<GrpcSink>, target: &str, shard: Option<Shard>) -> RunReport {
    let mut o = options();
    o.bulk = true;
    o.shard = shard;
    o.write_concurrency = 4;
    sync_of(m, DB, &["films"])
        .template(r"{title}\n{extract}")
        .target(Some(target))
        .opts(o)
        .run(sink)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_load_with_the_graph_off_and_the_last_switches_it_on() {
    let Some(sink) = common::grpc_sink() else {
        return;
    };
    let m = Mongo::start();
    m.insert(
        DB,
        "films",
        common::movie_docs(120, |i| Bson::Int32(i as i32)),
    )
    .await;
    let target = unique("bulk");

    let first = load(&m, &sink, &target, Some(Shard { index: 0, count: 2 })).await;
    assert_eq!(
        sink.hnsw_m(&target).await.unwrap(),
        Some(0),
        "graph building is off"
    );
    let i = &first.indexing[0];
    assert!(!i.indexed && i.shards_pending == [1], "{i:?}");
    let store = StateStore::open(sink.as_ref(), false).await.unwrap();
    let bulk = store
        .bulk_load(&target)
        .await
        .unwrap()
        .expect("the load is recorded");
    assert_eq!((bulk.shards, bulk.restore_m), (2, 16));

    let last = load(&m, &sink, &target, Some(Shard { index: 1, count: 2 })).await;
    let i = &last.indexing[0];
    assert!(i.indexed, "{i:?}");
    assert_eq!(i.points, 120);
    assert_eq!(sink.hnsw_m(&target).await.unwrap(), Some(16), "restored");
    assert!(sink.index_state(&target).await.unwrap().unwrap().settled);
    assert!(
        store.bulk_load(&target).await.unwrap().is_none(),
        "records removed"
    );

    // The points of a plain run.
    let plain = unique("plain");
    sync_of(&m, DB, &["films"])
        .template(r"{title}\n{extract}")
        .target(Some(&plain))
        .run(&sink)
        .await
        .unwrap();
    let ids = |c: String| {
        let sink = sink.clone();
        async move {
            let mut v: Vec<_> = common::points_with_vectors(sink.as_ref(), &c)
                .await
                .into_iter()
                .map(|p| (p.id, p.payload))
                .collect();
            v.sort_by_key(|p| p.0);
            v
        }
    };
    assert_eq!(ids(target.clone()).await, ids(plain).await);

    // A collection with points is not a first load: written as usual, the graph stays on.
    let again = load(&m, &sink, &target, None).await;
    assert!(again.indexing.is_empty(), "{:?}", again.indexing);
    assert_eq!(sink.hnsw_m(&target).await.unwrap(), Some(16));
    assert!(store.bulk_load(&target).await.unwrap().is_none());
}

#[test]
fn the_embedded_store_refuses_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::bin()
        .args(["sync", "--database", DB, "--collection", "films", "--bulk"])
        .args(["--mongo-uri", "mongodb://127.0.0.1:1"])
        .arg("--qdrant-path")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--qdrant-url"));
}
