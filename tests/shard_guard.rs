//! `--max-delete N` is the namespace's limit, also when shards prune side by side (issue 22.3):
//! each shard may delete its part of N (rounded down), so that together they never pass it.
//! Before, two shards each allowed one of `--max-delete 1` and deleted two points.

use std::sync::Arc;

use futures_util::future::join_all;
use mongo2qdrant::pipeline::guard::MaxDelete;
use mongo2qdrant::shard::{Shard, shard_of};
use mongo2qdrant::sink::Sink;
use mongodb::bson::{Bson, Document, doc};

use crate::common::{self, Mongo, options, sync_of, unique};

async fn shards_never_delete_more_than_max_delete_together<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start();
    let n = 20;
    m.insert(
        "sg",
        "films",
        common::movie_docs(n, |i| Bson::Int32(i as i32)),
    )
    .await;
    let target = unique("shard_guard");
    let run = |shard: u32, prune: bool, max_delete: MaxDelete| {
        let mut o = options();
        o.shard = Some(Shard {
            index: shard,
            count: 2,
        });
        o.prune = prune;
        o.max_delete = max_delete;
        sync_of(&m, "sg", &["films"])
            .template(r"{title}\n{extract}")
            .target(Some(&target))
            .opts(o)
    };
    for i in 0..2 {
        run(i, false, MaxDelete::default())
            .run(&sink)
            .await
            .unwrap();
    }
    assert_eq!(sink.count(&target).await.unwrap(), n as u64);

    // One document of each shard goes; both shards prune under --max-delete 1.
    let coll = m
        .client()
        .await
        .database("sg")
        .collection::<Document>("films");
    for s in 0..2 {
        let k = (0..n as i32)
            .find(|k| shard_of(&Bson::Int32(*k), 2) == s)
            .unwrap();
        coll.delete_one(doc! {"_id": k}).await.unwrap();
    }
    let sink_ref = &sink;
    let results = join_all(
        (0..2).map(|i| async move { run(i, true, MaxDelete::Count(1)).run(sink_ref).await }),
    )
    .await;
    let left = sink.count(&target).await.unwrap();
    assert!(
        left >= n as u64 - 1,
        "two shards deleted {} points under --max-delete 1",
        n as u64 - left
    );
    let refused: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    assert!(!refused.is_empty());
    assert!(
        refused.iter().all(|e| e.contains("prune without --shard")),
        "{refused:?}"
    );

    // The prune the message names: without shards, under the same limit, one at a time.
    let mut o = options();
    o.prune = true;
    o.max_delete = MaxDelete::Count(2);
    sync_of(&m, "sg", &["films"])
        .template(r"{title}\n{extract}")
        .target(Some(&target))
        .opts(o)
        .run(&sink)
        .await
        .unwrap();
    assert_eq!(sink.count(&target).await.unwrap(), n as u64 - 2);
}

both_targets!(shards_never_delete_more_than_max_delete_together);
