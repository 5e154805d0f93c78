//! A checkpoint belongs to the incarnation of the target collection it was written for. A run
//! killed midway, then the target dropped (or dropped and recreated by anyone): the next run
//! "resumed after" the checkpoint into the new, empty collection and never wrote the documents
//! before it, exit 0, `status` complete. Now the checkpoint's anchor point is missing there,
//! and a full pass runs.

use std::sync::Arc;

use mongo2qdrant::sink::Sink;
use mongodb::bson::doc;

use crate::common::{self, Mongo, SyncOf, unique};

/// 120 short documents in `x.COLL`, and the sync of them in units of 16.
async fn notes<'a>(m: &'a Mongo, name: &str) -> (String, SyncOf<'a>) {
    let c = unique(name);
    let docs: Vec<_> = (0..120)
        .map(|i| doc! {"_id": i, "text": format!("note {i} about topic {}", i % 7)})
        .collect();
    m.insert("x", &c, docs).await;
    let mut o = common::options();
    o.batch_docs = 16;
    let sync = common::sync_of(m, "x", &[&c]).cursor_batch(20).opts(o);
    (c, sync)
}

/// A run of `sync` that fails midway (a getMore fails), leaving a checkpoint inside.
async fn stopped_midway<S: Sink>(m: &Mongo, sink: &Arc<S>, sync: &SyncOf<'_>, c: &str) {
    m.fail_once(2, doc! {"failCommands": ["getMore"], "errorCode": 2})
        .await;
    assert!(
        sync.run(sink).await.is_err(),
        "the injected error ends the run"
    );
    let first = sink.count(c).await.unwrap();
    assert!(first > 0 && first < 120, "stopped midway ({first} of 120)");
}

async fn a_dropped_target_means_a_full_pass<S: Sink>(sink: Arc<S>) {
    let m = Mongo::start_with(&["--enable-test-commands"]);
    let (c, sync) = notes(&m, "incarnation").await;
    stopped_midway(&m, &sink, &sync, &c).await;

    // Someone drops the target (and the next run creates it anew, empty).
    sink.drop_collection(&c).await.unwrap();
    let r = sync.run(&sink).await.unwrap();
    assert_eq!(r.namespaces[0].resumed_after, None, "{r:#?}");
    assert!(r.namespaces[0].complete);
    assert_eq!(r.counts.read, 120, "read from the start: {r:#?}");
    assert_eq!(sink.count(&c).await.unwrap(), 120, "no document missed");
    common::verify(&sink, sync.jobs().await).await;

    // A pass over unchanged documents, stopped midway, writes nothing: its checkpoint is
    // anchored by a point found current all the same, so a dropped target still means a full
    // pass.
    m.fail_once(2, doc! {"failCommands": ["getMore"], "errorCode": 2})
        .await;
    assert!(sync.run(&sink).await.is_err());
    sink.drop_collection(&c).await.unwrap();
    let r = sync.run(&sink).await.unwrap();
    assert_eq!(r.namespaces[0].resumed_after, None, "{r:#?}");
    assert_eq!(sink.count(&c).await.unwrap(), 120, "no document missed");

    // Into the same collection, a stopped run still resumes.
    let (c, sync) = notes(&m, "incarnation_same").await;
    stopped_midway(&m, &sink, &sync, &c).await;
    let r = sync.run(&sink).await.unwrap();
    assert!(r.namespaces[0].resumed_after.is_some(), "{r:#?}");
    assert_eq!(sink.count(&c).await.unwrap(), 120);
}

both_targets!(a_dropped_target_means_a_full_pass);
