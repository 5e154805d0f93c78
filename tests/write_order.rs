//! The order of a unit's writes, by fault injection: the target fails one chosen operation
//! once (a wrapper around the real embedded engine), the run stops, and the next run, on the
//! plain target, must end exactly where an undisturbed run ends. The writes are ordered so that
//! what marks a document current (its content hash, its chunk count) is written last.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Mongo, movie_docs, options, unique};
use mongo2qdrant::pipeline::{self, Chunking, Job, SyncOptions};
use mongo2qdrant::report::RunReport;
use mongo2qdrant::sink::{
    EdgeSink, Hit, MatchFilter, Point, Shape, Sink, SinkError, StoredPoint, VectorSpec,
};
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Which operation fails (once, permanently, so the run stops there).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Upsert,
    UpdateVectors,
    Delete,
}

/// The embedded engine, but `fail` fails the first time it is called.
struct FailOnce {
    inner: Arc<EdgeSink>,
    fail: Op,
    armed: AtomicBool,
}

impl FailOnce {
    fn new(inner: Arc<EdgeSink>, fail: Op) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail,
            armed: AtomicBool::new(true),
        })
    }

    fn trip(&self, op: Op, collection: &str) -> Result<(), SinkError> {
        if op == self.fail && self.armed.swap(false, Ordering::SeqCst) {
            return Err(SinkError::Request {
                op: "injected",
                collection: collection.to_owned(),
                reason: "injected failure".into(),
                transient: false,
            });
        }
        Ok(())
    }
}

impl Sink for FailOnce {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn shape(&self, c: &str) -> Result<Option<Shape>, SinkError> {
        self.inner.shape(c).await
    }
    async fn create_collection(&self, c: &str, v: &VectorSpec) -> Result<(), SinkError> {
        self.inner.create_collection(c, v).await
    }
    async fn add_vector(&self, c: &str, n: &str, d: usize) -> Result<(), SinkError> {
        self.inner.add_vector(c, n, d).await
    }
    async fn drop_collection(&self, c: &str) -> Result<(), SinkError> {
        self.inner.drop_collection(c).await
    }
    async fn exists(&self, c: &str) -> Result<bool, SinkError> {
        self.inner.exists(c).await
    }
    async fn upsert(&self, c: &str, n: Option<&str>, p: Vec<Point>) -> Result<(), SinkError> {
        if c != mongo2qdrant::state::RECORDS_COLLECTION {
            self.trip(Op::Upsert, c)?;
        }
        self.inner.upsert(c, n, p).await
    }
    async fn retrieve(
        &self,
        c: &str,
        ids: &[Uuid],
        v: bool,
    ) -> Result<Vec<StoredPoint>, SinkError> {
        self.inner.retrieve(c, ids, v).await
    }
    async fn update_vectors(
        &self,
        c: &str,
        n: &str,
        v: Vec<(Uuid, Vec<f32>)>,
    ) -> Result<(), SinkError> {
        self.trip(Op::UpdateVectors, c)?;
        self.inner.update_vectors(c, n, v).await
    }
    async fn set_payload(
        &self,
        c: &str,
        ids: &[Uuid],
        p: Map<String, Value>,
        r: bool,
    ) -> Result<(), SinkError> {
        self.inner.set_payload(c, ids, p, r).await
    }
    async fn remove_vector(
        &self,
        c: &str,
        n: &str,
        ids: &[Uuid],
        k: &[String],
    ) -> Result<(), SinkError> {
        self.inner.remove_vector(c, n, ids, k).await
    }
    async fn delete(&self, c: &str, ids: &[Uuid]) -> Result<(), SinkError> {
        self.trip(Op::Delete, c)?;
        self.inner.delete(c, ids).await
    }
    async fn scroll(
        &self,
        c: &str,
        f: Option<&MatchFilter>,
        o: Option<Uuid>,
        l: usize,
    ) -> Result<(Vec<StoredPoint>, Option<Uuid>), SinkError> {
        self.inner.scroll(c, f, o, l).await
    }
    async fn search(
        &self,
        c: &str,
        n: Option<&str>,
        v: Vec<f32>,
        l: usize,
    ) -> Result<Vec<Hit>, SinkError> {
        self.inner.search(c, n, v, l).await
    }
    async fn count(&self, c: &str) -> Result<u64, SinkError> {
        self.inner.count(c).await
    }
    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
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

    let faulty = FailOnce::new(plain.clone(), Op::UpdateVectors);
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

    for fail in [Op::Delete, Op::Upsert] {
        set_extract(long.clone()).await;
        let (_d, plain) = common::edge_sink();
        run(&plain, jobs(&m, &c, "{extract}", None).await, o.clone())
            .await
            .unwrap();
        assert_eq!(plain.count(&c).await.unwrap(), long_count);
        set_extract("Short now.".into()).await;
        let faulty = FailOnce::new(plain.clone(), fail);
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
