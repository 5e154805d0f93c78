//! One iteration: a random source, rounds of mutations and faulty runs (each checked to delete
//! no point of a live document), a clean run, and the comparison with the oracle.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongo2qdrant::pipeline::guard::MaxDelete;
use mongo2qdrant::pipeline::{Chunking, SyncOptions};
use mongo2qdrant::sink::{Sink, VectorSpec};
use mongodb::bson::{Document, doc};

use super::faults::{self, Fault, Injector};
use super::oracle;
use super::source::{Dump, Spec, binary_args, export, jobs_of};
use super::{Rng, Tally, new_doc};
use crate::common::server::Server;
use crate::common::{self, Mongo, unique};

/// The target of an iteration: a sink, and on a Qdrant server its address (for the real binary
/// and planted points) and, where the harness started it, the server itself (which a round may
/// restart).
pub struct Target<S> {
    pub sink: Arc<S>,
    pub server: Option<Arc<Mutex<Server>>>,
    pub url: Option<String>,
}

/// One iteration. Panics (naming the seed) on any divergence.
pub async fn iteration<S: Sink>(t: &Target<S>, m: &Arc<Mongo>, seed: u64, tally: &mut Tally) {
    let sink = &t.sink;
    let url = t.url.clone();
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let c = unique("h");
    let coll = m.client().await.database("h").collection::<Document>(&c);
    let mut next_key = 0u64;
    let n = 8 + rng.below(40);
    let docs: Vec<Document> = (0..n)
        .map(|_| {
            next_key += 1;
            new_doc(&mut rng, next_key)
        })
        .collect();
    coll.insert_many(docs).await.unwrap();
    let vector = rng.chance(40).then_some("v");
    let chunking = rng.chance(50).then_some(Chunking {
        size: 32,
        overlap: 4,
    });
    let file: Option<(PathBuf, Dump)> = rng.chance(25).then(|| match rng.chance(50) {
        true => (dir.path().join("dump.jsonl"), Dump::Jsonl),
        false => (dir.path().join("dump.archive"), Dump::Archive),
    });
    if let Some((_, format)) = &file {
        tally.add(match format {
            Dump::Jsonl => "source: a JSONL dump",
            Dump::Archive => "source: a mongodump archive",
        });
    }
    let file = file.as_ref().map(|(p, d)| (p.as_path(), *d));
    // `watch` instead of `sync`: every round runs it for a while (stopped, or killed), and a
    // last clean `watch`, not a sync with prune, must reach the oracle.
    let watching = file.is_none() && rng.chance(35);
    if watching {
        tally.add("watch instead of sync");
    }
    // BM25 beside the dense vector, switched on before some round: the stored points get it
    // without being embedded again, under that round's fault.
    let sparse_from = rng.chance(35).then(|| rng.below(4));
    // ... and maybe off again later: nothing keeps it current then, and a gone document's
    // point must not stay behind for it.
    let sparse_until = sparse_from
        .filter(|_| rng.chance(30))
        .map(|from| from + 1 + rng.below(3));
    let run_id = format!("harness-{seed}");
    let injector = Arc::new(Injector::default());
    let faulty = {
        let injector = injector.clone();
        common::Faulty::new(sink.clone(), move |_, c: &str| injector.trip(c))
    };
    // Foreign points (numeric ids, our namespace key) planted so far.
    let mut planted = 0u64;
    let mut base = Spec {
        c: &c,
        vector,
        file,
        chunking,
        template: "{text}",
        filter: None,
        projection: None,
        cursor_batch: 100,
        sparse: false,
        hnsw_m: None,
        quantize: false,
    };

    for round in 0..(2 + rng.below(4)) {
        eprintln!("harness:  round {round}");
        if sparse_from == Some(round) {
            tally.add("sparse: BM25 switched on this round");
            base.sparse = true;
        }
        if sparse_until == Some(round) {
            tally.add("sparse: BM25 switched off this round");
            base.sparse = false;
        }
        faults::mutate_all(&coll, &mut rng, tally, sink.max_payload_depth()).await;
        for _ in 0..rng.below(6) {
            next_key += 1;
            coll.insert_one(new_doc(&mut rng, next_key)).await.unwrap();
        }
        // The target dropped between runs (by anyone), and maybe created again, empty: the
        // next run must write every document, not resume after the old checkpoint.
        if rng.chance(6) && sink.exists(&c).await.unwrap() {
            tally.add("target: dropped between runs");
            sink.drop_collection(&c).await.unwrap();
            planted = 0;
            if rng.chance(50) {
                tally.add("target: dropped and created again, empty");
                let spec = VectorSpec {
                    name: vector.map(str::to_owned),
                    dimension: 384,
                    distance: Default::default(),
                };
                sink.create_collection(&c, &spec, &Default::default())
                    .await
                    .unwrap();
            }
        }
        if let Some(url) = &url
            && rng.chance(15)
            && sink.exists(&c).await.unwrap()
        {
            tally.add("target: foreign points with numeric ids planted");
            let k = if rng.chance(20) {
                1_005
            } else {
                1 + rng.below(20)
            };
            oracle::plant_foreign(url, &c, vector, planted, k).await;
            planted += k;
        }
        if let Some(f) = file {
            let cut = f.1 == Dump::Archive && rng.chance(20);
            export(&coll, f, &mut rng, tally, cut, true).await;
        }

        // A run under a random fault.
        let mut o: SyncOptions = common::options();
        o.run_id = run_id.clone();
        o.batch_docs = 3 + rng.below(12) as usize;
        o.prune = rng.chance(50);
        o.write_concurrency = 1 + rng.below(3) as usize;
        if url.is_some() && !watching && rng.chance(15) {
            tally.add("bulk load (HNSW graph building off during the run)");
            o.bulk = true;
        }
        let mut spec = Spec {
            cursor_batch: 2 + rng.below(10) as u32,
            ..base
        };
        // A watch started with other settings, or --fresh, after the changes made while it
        // was down: a pass replaces the stored stream, and must prune what went meanwhile
        // (the clean watch at the end, with the iteration's own settings, is another).
        if watching {
            if rng.chance(20) {
                tally.add("watch: another --text this round");
                spec.template = "{text} {tag}";
            }
            if rng.chance(12) {
                tally.add("watch: a --filter this round");
                spec.filter = Some(r#"{"tag": {"$ne": "river"}}"#);
            }
            if rng.chance(12) {
                tally.add("watch: a --projection without the payload field this round");
                spec.projection = Some(r#"{"text": 1}"#);
            }
            if rng.chance(15) {
                tally.add("watch: --fresh");
                o.fresh = true;
            }
        }
        if rng.chance(20) {
            tally.add("collection settings changed online this round");
            spec.hnsw_m = Some([8, 16, 32][rng.below(3) as usize]);
            spec.quantize = url.is_some() && rng.chance(50);
        }
        o.chunking = chunking;
        o.retry.base = Duration::from_millis(5);
        o.retry.max = Duration::from_millis(20);
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        o.stop = stop;
        injector.arm(None);
        let (mut restart, mut kill, mut qdrant, mut drops) = (None, None, None, false);
        match rng.below(12) {
            0 => {
                tally.add("mongo: dropped connection on getMore");
                let skip = rng.below(3) as i32;
                m.fail_once(
                    skip,
                    doc! {"failCommands": ["getMore"], "closeConnection": true},
                )
                .await;
            }
            1 => {
                tally.add("mongo: cursor lost (43) on getMore");
                let skip = rng.below(3) as i32;
                m.fail_once(skip, doc! {"failCommands": ["getMore"], "errorCode": 43})
                    .await;
            }
            2 => {
                tally.add("mongo: failing find/getMore (fatal)");
                let skip = rng.below(4) as i32;
                m.fail_once(
                    skip,
                    doc! {"failCommands": ["getMore", "find"], "errorCode": 2},
                )
                .await;
            }
            3 | 4 => {
                tally.add("target: transient write failure");
                injector.arm(Some(Fault::Transient(rng.below(12))));
            }
            5 => {
                tally.add("stop request (SIGTERM)");
                let ms = rng.below(300);
                let stop_tx = stop_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let _ = stop_tx.send(true);
                });
            }
            6 => {
                tally.add("crash (every write from a random one on fails)");
                injector.arm(Some(Fault::Crash(rng.below(16))));
            }
            7 if file.is_none() => {
                tally.add("mongo: server restarted mid-run");
                restart = Some(Duration::from_millis(rng.below(400)));
            }
            8 if url.is_some() => {
                tally.add("kill -9 of the binary (Qdrant server)");
                kill = Some(Duration::from_millis(200 + rng.below(2500)));
            }
            9 if file.is_none() && !watching => {
                // Each drop after a resumed read made progress: retried every time (the
                // retries count consecutive failures), so the run must succeed.
                tally.add("mongo: many isolated dropped connections in one pass");
                let times = 3 + rng.below(8) as i32;
                m.fail_times(
                    times,
                    doc! {"failCommands": ["getMore"], "closeConnection": true},
                )
                .await;
                o.retry.attempts = 2;
                drops = true;
            }
            10 if t.server.is_some() => {
                tally.add("qdrant: the server restarted mid-run (kill -9, back on the same port)");
                let delay = Duration::from_millis(rng.below(600));
                let down = Duration::from_millis(200 + rng.below(2000));
                qdrant = Some((delay, down));
                o.retry.attempts = 12;
                o.retry.base = Duration::from_millis(100);
                o.retry.max = Duration::from_secs(1);
            }
            _ => tally.add("none"),
        }
        let concurrent = rng.chance(30).then(|| {
            tally.add("mutations during the run");
            next_key += 10;
            faults::concurrently(&coll, rng.next(), next_key - 10)
        });
        let before = oracle::point_ids(sink.as_ref(), &c).await;
        let restarter = restart.map(|delay| {
            let m = m.clone();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                m.restart();
            })
        });
        let qdrant_restarter = match (qdrant, &t.server) {
            (Some((delay, down)), Some(server)) => {
                Some(faults::restart_qdrant(server, delay, down))
            }
            _ => None,
        };
        if let Some(after) = kill {
            let mut child = common::bin();
            child
                .args(binary_args(m, &spec, &o, watching))
                .args(["--qdrant-url", url.as_deref().unwrap()]);
            if std::env::var_os("M2Q_LOG").is_some() {
                child.stderr(std::process::Stdio::inherit());
            }
            let mut child = child.spawn().unwrap();
            tokio::time::sleep(after).await;
            let _ = child.kill();
            let _ = child.wait();
        } else if watching {
            // The round's stop (also the SIGTERM fault's) stops the watch.
            let jobs = jobs_of(m, &spec).await;
            let (w, _) = start_watch(&faulty, jobs, o);
            tokio::time::sleep(Duration::from_millis(200 + rng.below(1500))).await;
            if rng.chance(30) {
                tally.add("watch: killed mid-stream (task aborted)");
                w.abort();
            }
            let _ = stop_tx.send(true);
            let _ = w.await;
        } else {
            let jobs = jobs_of(m, &spec).await;
            let r = common::sync_jobs(&faulty, jobs, o).await;
            if drops {
                r.unwrap_or_else(|e| panic!("seed {seed}: isolated read drops ended the run: {e}"));
            }
        }
        for t in [restarter, qdrant_restarter].into_iter().flatten() {
            t.join().unwrap();
        }
        let raced = concurrent.is_some();
        if let Some(t) = concurrent {
            t.await.unwrap();
        }
        m.fail_point_off().await;
        // What a run met concurrently may have been deleted and written again since; a filter
        // legitimately leaves documents out.
        if !raced && spec.filter.is_none() {
            let layout = oracle::Layout {
                vector,
                chunking,
                sparse: spec.sparse,
            };
            let want = oracle::expected(m, &c, layout).await;
            let after = oracle::point_ids(sink.as_ref(), &c).await;
            oracle::nothing_live_deleted(&before, &after, &want, seed);
        }
    }
    faults::fix_deep_tags(&coll).await;
    if let Some(f) = file {
        export(&coll, f, &mut rng, tally, false, false).await;
    }

    // A clean run with prune (or a clean watch), then the target must match the oracle.
    let mut o = common::options();
    o.run_id = run_id;
    o.prune = true;
    o.chunking = chunking;
    o.max_delete = MaxDelete::Share(100);
    let jobs = jobs_of(m, &base).await;
    if watching {
        clean_watch(sink, jobs.clone(), o.clone(), seed).await;
        let store = mongo2qdrant::state::StateStore::open(sink.as_ref(), false)
            .await
            .unwrap();
        let state = store.watch_state(&c, &format!("h.{c}")).await.unwrap();
        let owed = state.map(|s| s.owed).unwrap_or_default();
        assert!(owed.is_empty(), "seed {seed}: still owed: {owed:?}");
    } else {
        let r = common::sync_jobs(sink, jobs.clone(), o.clone()).await;
        let r = r.unwrap_or_else(|e| panic!("seed {seed}: the clean run failed: {e}"));
        // A resumed pass does not prune: one more full pass does.
        if r.namespaces.iter().any(|n| n.resumed_after.is_some()) {
            common::sync_jobs(sink, jobs.clone(), o.clone())
                .await
                .unwrap();
        }
    }
    let layout = oracle::Layout {
        vector,
        chunking,
        sparse: base.sparse,
    };
    oracle::check(sink, m, &c, layout, planted, seed).await;
    let report = mongo2qdrant::verify::verify(sink.clone(), common::embedder(), jobs, &o)
        .await
        .unwrap();
    assert!(report.in_sync, "seed {seed}: verify: {report:#?}");
    // Keep the store small: every later iteration would flush this collection too.
    sink.drop_collection(&c).await.unwrap();
}

type WatchTask = tokio::task::JoinHandle<
    Result<mongo2qdrant::report::RunReport, mongo2qdrant::pipeline::PipelineError>,
>;

/// `watch` of `jobs` into `sink` in a task of its own (100 ms micro-batches).
fn start_watch<S: Sink>(
    sink: &Arc<S>,
    jobs: Vec<mongo2qdrant::pipeline::Job>,
    o: SyncOptions,
) -> (WatchTask, Arc<mongo2qdrant::metrics::Metrics>) {
    let stats = Arc::new(mongo2qdrant::report::Stats::default());
    let metrics = Arc::new(mongo2qdrant::metrics::Metrics::new(1, stats.clone()));
    let mut w = mongo2qdrant::pipeline::WatchOptions::new(metrics.clone());
    w.delay = Duration::from_millis(100);
    let task = tokio::spawn(mongo2qdrant::pipeline::watch(
        sink.clone(),
        common::worker(),
        jobs,
        o,
        w,
        stats,
    ));
    (task, metrics)
}

/// A clean `watch`: ready, then quiet (nothing applied for a second, nothing pending), then
/// stopped.
async fn clean_watch<S: Sink>(
    sink: &Arc<S>,
    jobs: Vec<mongo2qdrant::pipeline::Job>,
    mut o: SyncOptions,
    seed: u64,
) {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    o.stop = stop;
    o.prune = false;
    let (task, metrics) = start_watch(sink, jobs, o);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        assert!(
            !task.is_finished(),
            "seed {seed}: the clean watch ended: {:?}",
            task.await
        );
        assert!(
            std::time::Instant::now() < deadline,
            "seed {seed}: the clean watch never settled"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = metrics.render();
        if metrics.health().is_ok() && now == last && oracle::settled(&now) {
            break;
        }
        last = now;
    }
    stop_tx.send(true).unwrap();
    let r = task.await.unwrap();
    r.unwrap_or_else(|e| panic!("seed {seed}: the clean watch failed: {e}"));
}
