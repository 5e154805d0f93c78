//! The order of a unit's writes, by fault injection: the target fails one chosen operation
//! once (a wrapper around the real embedded engine), the run stops, and the next run, on the
//! plain target, must end exactly where an undisturbed run ends. The writes are ordered so that
//! what marks a document current (its content hash, its chunk count) is written last.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::{Faulty, Mongo, WriteOp, movie_docs, options, unique};
use mongo2qdrant::pipeline::{self, Chunking, Job, SyncOptions};
use mongo2qdrant::report::RunReport;
use mongo2qdrant::sink::{EdgeSink, Sink};
use mongo2qdrant::state::RECORDS_COLLECTION;
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The embedded engine, but the first `fail` write of the data (not of the records) fails,
/// permanently, so the run stops there.
fn fail_once(inner: Arc<EdgeSink>, fail: WriteOp) -> Arc<impl Sink> {
    let armed = AtomicBool::new(true);
    Faulty::new(inner, move |op, c: &str| {
        if op == fail && c != RECORDS_COLLECTION && armed.swap(false, Ordering::SeqCst) {
            Err(common::injected(c, false))
        } else {
            Ok(())
        }
    })
}

async fn jobs(m: &Mongo, c: &str, template: &str, vector: Option<&str>) -> Vec<Job> {
    common::sync_of(m, "wo", &[c])
        .template(template)
        .vector(vector)
        .jobs()
        .await
}

async fn run<S: Sink>(
    sink: &Arc<S>,
    jobs: Vec<Job>,
    opts: SyncOptions,
) -> Result<RunReport, pipeline::PipelineError> {
    common::sync_jobs(sink, jobs, opts).await
}

/// Every point with the names of its vectors and its payload.
async fn state(sink: &EdgeSink, c: &str) -> Vec<(Uuid, BTreeSet<String>, Map<String, Value>)> {
    common::points_with_vectors(sink, c)
        .await
        .into_iter()
        .map(|p| (p.id, p.vectors.into_iter().collect(), p.payload))
        .collect()
}

/// A second named vector whose write fails after the points exist: the next run must write it
/// (the hash that would mark it current was not written), and end with both vectors on every
/// point, like an undisturbed run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_vector_write_failing_midway_is_redone() {
    let m = Mongo::start();
    let c = unique("wo_named");
    m.insert("wo", &c, movie_docs(6, |i| Bson::Int32(i as i32)))
        .await;
    let (_d1, plain) = common::edge_sink();
    let (_d2, reference) = common::edge_sink();
    for sink in [&plain, &reference] {
        run(
            sink,
            jobs(&m, &c, "{title}", Some("title")).await,
            options(),
        )
        .await
        .unwrap();
    }
    run(
        &reference,
        jobs(&m, &c, "{extract}", Some("plot")).await,
        options(),
    )
    .await
    .unwrap();

    let faulty = fail_once(plain.clone(), WriteOp::UpdateVectors);
    let err = run(
        &faulty,
        jobs(&m, &c, "{extract}", Some("plot")).await,
        options(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    let r = run(
        &plain,
        jobs(&m, &c, "{extract}", Some("plot")).await,
        options(),
    )
    .await
    .unwrap();
    assert_eq!(r.counts.embedded, 6, "none was marked current: {r:?}");
    let got = state(&plain, &c).await;
    assert!(got.iter().all(|p| p.1.len() == 2), "{got:?}");
    assert_eq!(got, state(&reference, &c).await);
}

/// A document that shrinks to fewer chunks, and one of the unit's writes fails: the next run
/// must still find and delete the surplus chunks (chunk 0 must not claim the new count before
/// they are gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_document_with_a_failing_write_loses_its_surplus() {
    let m = Mongo::start();
    let c = unique("wo_chunks");
    let mut docs = movie_docs(4, |i| Bson::Int32(i as i32));
    let long: Vec<&str> = docs.iter().map(|d| d.get_str("extract").unwrap()).collect();
    let long = long.join(" ");
    docs[1].insert("extract", long.clone());
    m.insert("wo", &c, docs).await;
    let coll = m.client().await.database("wo").collection::<Document>(&c);
    let set_extract = |text: String| {
        let coll = coll.clone();
        async move {
            coll.update_one(doc! {"_id": 1}, doc! {"$set": {"extract": text}})
                .await
                .unwrap();
        }
    };
    let mut o = options();
    o.chunking = Some(Chunking {
        size: 48,
        overlap: 8,
    });

    // Reference: long, then short, undisturbed.
    let (_d, reference) = common::edge_sink();
    run(&reference, jobs(&m, &c, "{extract}", None).await, o.clone())
        .await
        .unwrap();
    let long_count = reference.count(&c).await.unwrap();
    assert!(
        long_count >= 6,
        "document 1 spans several chunks: {long_count} points"
    );
    set_extract("Short now.".into()).await;
    run(&reference, jobs(&m, &c, "{extract}", None).await, o.clone())
        .await
        .unwrap();
    let expected = state(&reference, &c).await;
    assert!(expected.len() < long_count as usize);

    for fail in [WriteOp::Delete, WriteOp::Upsert] {
        set_extract(long.clone()).await;
        let (_d, plain) = common::edge_sink();
        run(&plain, jobs(&m, &c, "{extract}", None).await, o.clone())
            .await
            .unwrap();
        assert_eq!(plain.count(&c).await.unwrap(), long_count);
        set_extract("Short now.".into()).await;
        let faulty = fail_once(plain.clone(), fail);
        let err = run(&faulty, jobs(&m, &c, "{extract}", None).await, o.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        let r = run(&plain, jobs(&m, &c, "{extract}", None).await, o.clone())
            .await
            .unwrap();
        assert_eq!(r.counts.embedded, 1, "{r:?}");
        assert_eq!(state(&plain, &c).await, expected, "no surplus chunk left");
    }
}

/// Several units' writes in flight (`write_concurrency`): one unit's upsert fails slowly while
/// later units' writes are acknowledged. The checkpoint must stay before the failed unit (never
/// at a later unit that overtook it), and the next run must end where an undisturbed run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_never_checkpoint_past_a_failed_unit() {
    let m = Mongo::start();
    let c = unique("wo_concurrent");
    m.insert("wo", &c, movie_docs(160, |i| Bson::Int32(i as i32)))
        .await;
    let mut o = options();
    o.batch_docs = 32;
    o.write_concurrency = 4;
    let (_d, reference) = common::edge_sink();
    run(&reference, jobs(&m, &c, "{extract}", None).await, o.clone())
        .await
        .unwrap();

    // The second unit's upsert fails, six seconds late: the later units overtake it.
    let (_d, plain) = common::edge_sink();
    let upserts = std::sync::atomic::AtomicUsize::new(0);
    let faulty = Arc::new(Faulty {
        inner: plain.clone(),
        before_write: move |op, c: &str| {
            let data = op == WriteOp::Upsert && c != RECORDS_COLLECTION;
            if data && upserts.fetch_add(1, Ordering::SeqCst) == 1 {
                Err(common::injected(c, false))
            } else {
                Ok(())
            }
        },
        request_limit: None,
        fail_delay: std::time::Duration::from_secs(6),
    });
    let err = run(&faulty, jobs(&m, &c, "{extract}", None).await, o.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    let third_unit = mongo2qdrant::ids::point_id("wo", &c, &Bson::Int32(70), 0);
    let stored = plain
        .retrieve(&c, &[third_unit], mongo2qdrant::sink::Fields::All, false)
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        1,
        "the third unit was written while the second failed"
    );
    let store = mongo2qdrant::state::StateStore::open(plain.as_ref(), false)
        .await
        .unwrap();
    let cp = store
        .checkpoint(&c, &format!("wo.{c}"), None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.last_id(), Some(Bson::Int32(31)), "{cp:?}");

    let r = run(&plain, jobs(&m, &c, "{extract}", None).await, o)
        .await
        .unwrap();
    assert_eq!(r.namespaces[0].resumed_after.as_deref(), Some("31"));
    assert!(r.counts.skipped_unchanged >= 32, "{r:?}");
    assert_eq!(state(&plain, &c).await, state(&reference, &c).await);
}
